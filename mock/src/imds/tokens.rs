//! IMDSv2 session tokens: unforgeable, expiring, checked server-side without a table.
//!
//! A token is 42 bytes, base64-encoded to the 56 characters a real token has:
//! `version (1) | expiry, unix seconds (8, BE) | nonce (9) | HMAC-SHA256 truncated (24)`.
//! The MAC key is random per mock, so only this mock can mint tokens it accepts.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const EXPIRY_LEN: usize = 8;
const NONCE_LEN: usize = 9;
const MAC_LEN: usize = 24;
const BODY_LEN: usize = 1 + EXPIRY_LEN + NONCE_LEN;
const TOKEN_LEN: usize = BODY_LEN + MAC_LEN;

/// The token TTL a PUT may ask for, in seconds (`X-aws-ec2-metadata-token-ttl-seconds`).
pub(crate) const TTL_RANGE: std::ops::RangeInclusive<u64> = 1..=21_600;

/// Why a presented token is not accepted. Both map to 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRejection {
    Invalid,
    Expired,
}

/// An issued token. Its `Debug` does not show the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SessionToken(String);

impl SessionToken {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(** redacted **)")
    }
}

/// Mints and checks tokens with a key of its own.
pub(crate) struct TokenMint {
    key: [u8; 32],
}

impl fmt::Debug for TokenMint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenMint { key: ** redacted ** }")
    }
}

impl Default for TokenMint {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenMint {
    pub(crate) fn new() -> Self {
        TokenMint {
            key: rand::random(),
        }
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(body);
        mac
    }

    /// A token valid for `ttl` from `now`.
    pub(crate) fn issue(&self, ttl: Duration, now: SystemTime) -> SessionToken {
        let expiry = (now + ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut token = [0u8; TOKEN_LEN];
        token[0] = VERSION;
        token[1..=EXPIRY_LEN].copy_from_slice(&expiry.to_be_bytes());
        rand::fill(&mut token[1 + EXPIRY_LEN..BODY_LEN]);
        let tag = self.mac(&token[..BODY_LEN]).finalize().into_bytes();
        token[BODY_LEN..].copy_from_slice(&tag[..MAC_LEN]);
        SessionToken(base64::engine::general_purpose::STANDARD.encode(token))
    }

    /// Accepts a token this mint issued that has not expired at `now`.
    pub(crate) fn verify(&self, presented: &str, now: SystemTime) -> Result<(), TokenRejection> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(presented.trim())
            .map_err(|_| TokenRejection::Invalid)?;
        if raw.len() != TOKEN_LEN || raw[0] != VERSION {
            return Err(TokenRejection::Invalid);
        }
        self.mac(&raw[..BODY_LEN])
            .verify_truncated_left(&raw[BODY_LEN..])
            .map_err(|_| TokenRejection::Invalid)?;
        let expiry = u64::from_be_bytes(raw[1..=EXPIRY_LEN].try_into().expect("8 bytes"));
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if now >= expiry {
            return Err(TokenRejection::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_56_characters_and_distinct() {
        let mint = TokenMint::new();
        let now = SystemTime::now();
        let a = mint.issue(Duration::from_mins(1), now);
        let b = mint.issue(Duration::from_mins(1), now);
        assert_eq!(a.as_str().len(), 56);
        assert_ne!(a, b);
        assert_eq!(mint.verify(a.as_str(), now), Ok(()));
        assert_eq!(format!("{a:?}"), "SessionToken(** redacted **)");
    }

    #[test]
    fn tokens_expire_after_their_ttl() {
        let mint = TokenMint::new();
        let now = SystemTime::now();
        let token = mint.issue(Duration::from_secs(2), now);
        assert_eq!(
            mint.verify(token.as_str(), now + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            mint.verify(token.as_str(), now + Duration::from_secs(3)),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn forged_or_foreign_tokens_are_invalid() {
        let mint = TokenMint::new();
        let other = TokenMint::new();
        let now = SystemTime::now();
        let foreign = other.issue(Duration::from_mins(1), now);
        assert_eq!(
            mint.verify(foreign.as_str(), now),
            Err(TokenRejection::Invalid)
        );

        // Push the expiry out by a day without the key: the MAC no longer matches.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(mint.issue(Duration::from_secs(1), now).as_str())
            .unwrap();
        let expiry = u64::from_be_bytes(raw[1..9].try_into().unwrap()) + 86_400;
        raw[1..9].copy_from_slice(&expiry.to_be_bytes());
        let forged = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(mint.verify(&forged, now), Err(TokenRejection::Invalid));

        assert_eq!(
            mint.verify("not a token", now),
            Err(TokenRejection::Invalid)
        );
        assert_eq!(mint.verify("", now), Err(TokenRejection::Invalid));
    }
}
