//! `ListAccounts`' `NextToken`: opaque, as the service's are. It holds the index of the
//! next account, bound to the caller that listed (its ARN) and sealed with a key of this
//! mock's own, so that a forged token, a changed one or another caller's is refused
//! (`InvalidInputException`, `INVALID_NEXT_TOKEN`) and never read as an index.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// What a token starts with, then URL-safe base64 of the index and the seal.
const PREFIX: &str = "imdsh-accounts-";
const INDEX_LEN: usize = 4;
const SEAL_LEN: usize = 16;
/// The longest token [`PageTokens::open`] decodes (one it issued is far shorter).
const MAX_LEN: usize = 128;

/// Issues and opens page tokens.
pub(crate) struct PageTokens {
    key: [u8; 32],
}

impl fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageTokens { key: ** redacted ** }")
    }
}

impl PageTokens {
    pub(crate) fn new() -> Self {
        PageTokens {
            key: rand::random(),
        }
    }

    fn seal(&self, caller: &str, index: [u8; INDEX_LEN]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(caller.as_bytes());
        mac.update(&[0]);
        mac.update(&index);
        mac
    }

    /// The token that resumes `caller`'s listing at `index`.
    pub(crate) fn issue(&self, caller: &str, index: usize) -> String {
        let index = u32::try_from(index)
            .expect("an organization's accounts fit in u32")
            .to_be_bytes();
        let seal = self.seal(caller, index).finalize().into_bytes();
        let mut raw = index.to_vec();
        raw.extend_from_slice(&seal[..SEAL_LEN]);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// The index `token` resumes at, if this mock issued it to `caller`.
    pub(crate) fn open(&self, caller: &str, token: &str) -> Option<usize> {
        if token.len() > MAX_LEN {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.strip_prefix(PREFIX)?)
            .ok()?;
        if raw.len() != INDEX_LEN + SEAL_LEN {
            return None;
        }
        let index: [u8; INDEX_LEN] = raw[..INDEX_LEN].try_into().ok()?;
        self.seal(caller, index)
            .verify_truncated_left(&raw[INDEX_LEN..])
            .ok()?;
        usize::try_from(u32::from_be_bytes(index)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_for_its_caller_only_and_forged_ones_never() {
        let tokens = PageTokens::new();
        let me = "arn:aws:sts::123456789012:assumed-role/r/i-1";
        let token = tokens.issue(me, 20);
        assert!(token.starts_with(PREFIX) && token.len() < MAX_LEN);
        assert_eq!(tokens.open(me, &token), Some(20));
        assert_eq!(
            tokens.open("arn:aws:sts::123456789012:assumed-role/r/x", &token),
            None
        );
        assert_eq!(PageTokens::new().open(me, &token), None);
        let mut changed = token.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let forged = [
            String::from_utf8(changed).unwrap(),
            format!("{PREFIX}20"),
            format!("{PREFIX}{}", "A".repeat(27)),
            "imdsh-accounts-".into(),
            "x".repeat(1 << 20),
            "imdsh-accounts-\u{1f600}".into(),
            String::new(),
        ];
        for bad in &forged {
            assert_eq!(tokens.open(me, bad), None, "{bad:.40}");
        }
    }
}
