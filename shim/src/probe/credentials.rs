//! Step 3: the instance role's credentials, through aws-config's `ImdsCredentialsProvider`
//! (IMDSv2 only, never falling back to IMDSv1, as the AWS SDK for Rust does).
//!
//! Only the access key id (not a secret) and the expiry are reported; the secret access key and
//! the session token stay inside [`RoleCredentials`], whose `Debug` redacts them.

use std::fmt;
use std::time::Duration;

use aws_config::imds::{self, credentials::ImdsCredentialsProvider};
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_smithy_types::date_time::{DateTime, Format};
use imds_vocab::report::CredentialsDetail;

use super::diagnosis::ImdsFailure;

/// Credentials from IMDS, kept for the identity step. Never printed: `Debug` redacts the secrets.
#[derive(Clone)]
pub struct RoleCredentials(Credentials);

impl RoleCredentials {
    /// Wraps credentials.
    pub fn new(credentials: Credentials) -> Self {
        Self(credentials)
    }

    /// The credentials, for an SDK client.
    pub fn credentials(&self) -> &Credentials {
        &self.0
    }

    /// The part that may be shown.
    pub(crate) fn detail(&self) -> CredentialsDetail {
        CredentialsDetail {
            access_key_id: Some(self.0.access_key_id().to_owned()),
            expiration: self
                .0
                .expiry()
                .and_then(|t| DateTime::from(t).fmt(Format::DateTime).ok()),
        }
    }
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail();
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &detail.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &detail.expiration)
            .finish()
    }
}

/// Loads the role's credentials through a new `ImdsCredentialsProvider` on `client`.
pub async fn fetch(
    client: imds::Client,
    conf: &ProviderConfig,
    timeout: Duration,
) -> Result<RoleCredentials, ImdsFailure> {
    let provider = ImdsCredentialsProvider::builder()
        .configure(conf)
        .imds_client(client)
        .build();
    provider
        .provide_credentials()
        .await
        .map(RoleCredentials::new)
        .map_err(|e| ImdsFailure::diagnose(&e, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn creds() -> RoleCredentials {
        RoleCredentials::new(Credentials::new(
            "ASIATESTKEYID",
            "sEcReTaCcEsSkEy",
            Some("SeSsIoNtOkEn".into()),
            Some(UNIX_EPOCH + Duration::from_secs(1_632_197_813)),
            "test",
        ))
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!("{:?} {:#?}", creds(), creds());
        assert!(shown.contains("ASIATESTKEYID"), "{shown}");
        assert!(!shown.contains("sEcReTaCcEsSkEy"), "{shown}");
        assert!(!shown.contains("SeSsIoNtOkEn"), "{shown}");
    }

    #[test]
    fn detail_has_key_id_and_rfc3339_expiry_only() {
        let detail = creds().detail();
        assert_eq!(detail.access_key_id.as_deref(), Some("ASIATESTKEYID"));
        assert_eq!(detail.expiration.as_deref(), Some("2021-09-21T04:16:53Z"));
        let json = serde_json::to_string(&detail).unwrap();
        assert!(
            !json.contains("sEcReT") && !json.contains("SeSsIoN"),
            "{json}"
        );
    }
}
