//! The instance role's credentials as the relay serves them: fetched from IMDS on the host
//! (depth 0, where hop limit 1 reaches) with the same aws-config IMDS client the probe uses,
//! and refreshed before they expire.
//!
//! Each fetch uses a new client, so a new session token: a token IMDS no longer accepts (IMDS
//! restarted, or forgot it) costs one failed fetch, never minutes of them. The credentials
//! document is read as IMDS gives it, not through aws-config's credentials provider, which
//! gives credentials that IMDS returned already expired a made-up expiry in the future (its
//! "static stability"): the relay serves the real `Expiration`, and never credentials past it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_smithy_types::date_time::{DateTime, Format};
use bytes::Bytes;
use parking_lot::RwLock;
use serde::Deserialize;

use super::metrics::{Metrics, Upstream};
use crate::endpoint::ImdsEndpoint;
use crate::probe::clients;
use crate::probe::credentials::RoleCredentials;
use crate::probe::diagnosis::ImdsFailure;
use crate::probe::Place;

/// Refresh this long before expiry at most (the AWS SDKs refresh 5 to 15 minutes before).
const REFRESH_MARGIN: Duration = Duration::from_mins(15);
/// Never refresh more often than this.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest wait between retries after a failed refresh.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Credentials rendered as the container credentials endpoint serves them. `Debug` redacts.
#[derive(Clone)]
pub struct Served {
    /// The access key id (not a secret).
    pub access_key_id: String,
    /// When they expire.
    pub expiration: SystemTime,
    /// When the relay got them (for the served credentials' age in the metrics).
    pub fetched: SystemTime,
    /// The JSON body: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`.
    body: Bytes,
    /// The same, to sign with (`AssumeRole` for a scoped grant); its `Debug` redacts.
    credentials: Credentials,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &rfc3339(self.expiration))
            .field("fetched", &rfc3339(self.fetched))
            .field("body", &"** redacted **")
            .finish_non_exhaustive()
    }
}

impl Served {
    /// Renders `creds` (which must have an expiry: IMDS always gives one).
    pub fn new(creds: &RoleCredentials) -> Result<Self, ImdsFailure> {
        let c = creds.credentials();
        let expiration = c.expiry().ok_or_else(|| {
            ImdsFailure::Other("IMDS gave credentials without an expiry".to_owned())
        })?;
        let body = serde_json::json!({
            "AccessKeyId": c.access_key_id(),
            "SecretAccessKey": c.secret_access_key(),
            "Token": c.session_token().unwrap_or_default(),
            "Expiration": rfc3339(expiration),
        })
        .to_string()
        .into();
        Ok(Self {
            access_key_id: c.access_key_id().to_owned(),
            expiration,
            fetched: SystemTime::now(),
            body,
            credentials: c.clone(),
        })
    }

    /// The credentials, to sign requests with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// Whether they have expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expiration
    }
}

/// `2026-11-29T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::from(t)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "?".to_owned())
}

/// Where the credentials come from: IMDS on the host.
pub struct RoleSource {
    endpoint: ImdsEndpoint,
    conf: ProviderConfig,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

/// The document at `/latest/meta-data/iam/security-credentials/<role>`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsDocument {
    code: String,
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";

impl RoleSource {
    /// The IMDS of `place` (its endpoint from `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    pub fn new(place: &Place, timeout: Duration) -> Result<Self, ImdsFailure> {
        if place.imds.disabled {
            return Err(ImdsFailure::Disabled);
        }
        let conf = clients::provider_config();
        // Checks the endpoint once, here.
        clients::imds_client(&place.imds.endpoint, timeout, &conf)?;
        Ok(Self {
            endpoint: place.imds.endpoint.clone(),
            conf,
            timeout,
            metrics: None,
        })
    }

    /// The same, each fetch counted in `metrics`.
    #[must_use]
    pub fn observed(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Fetches the role's current credentials, with a new session token.
    pub async fn fetch(&self) -> Result<Served, ImdsFailure> {
        let fetched = self.fetch_uncounted().await;
        if let Some(metrics) = &self.metrics {
            metrics.upstream(Upstream::Imds, fetched.is_ok());
        }
        fetched
    }

    async fn fetch_uncounted(&self) -> Result<Served, ImdsFailure> {
        let client = clients::imds_client(&self.endpoint, self.timeout, &self.conf)?;
        let diagnose = |e: imds::client::error::ImdsError| ImdsFailure::diagnose(&e, self.timeout);
        let roles = client.get(ROLE_PATH).await.map_err(diagnose)?;
        let role = roles.as_ref().lines().next().unwrap_or_default().trim();
        if role.is_empty() {
            return Err(ImdsFailure::Other(
                "IMDS names no role: the instance has no instance profile".to_owned(),
            ));
        }
        let text = client
            .get(&format!("{ROLE_PATH}{role}"))
            .await
            .map_err(diagnose)?;
        served_from(text.as_ref(), role, SystemTime::now())
    }

    /// The instance's region, from IMDS.
    pub async fn region(&self) -> Result<String, ImdsFailure> {
        let client = clients::imds_client(&self.endpoint, self.timeout, &self.conf)?;
        let region = client
            .get("/latest/meta-data/placement/region")
            .await
            .map_err(|e| ImdsFailure::diagnose(&e, self.timeout))?;
        Ok(region.as_ref().trim().to_owned())
    }
}

/// The credentials of `role` in IMDS's document `text`, as they are to be served at `now`: with
/// IMDS's own expiry, and refused when that has passed.
fn served_from(text: &str, role: &str, now: SystemTime) -> Result<Served, ImdsFailure> {
    let doc: CredentialsDocument = serde_json::from_str(text).map_err(|e| {
        ImdsFailure::Other(format!(
            "IMDS gave a credentials document that is not JSON: {e}"
        ))
    })?;
    if doc.code != "Success" {
        return Err(ImdsFailure::Other(format!(
            "IMDS gave no credentials for role {role}: code {}",
            doc.code
        )));
    }
    let expiration = DateTime::from_str(&doc.expiration, Format::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| {
            ImdsFailure::Other(format!(
                "IMDS gave credentials with an expiry that is not a date: {:?}",
                doc.expiration
            ))
        })?;
    if expiration <= now {
        return Err(ImdsFailure::Other(format!(
            "IMDS gave credentials {} that expired already, at {}",
            doc.access_key_id, doc.expiration
        )));
    }
    Served::new(&RoleCredentials::new(Credentials::new(
        doc.access_key_id,
        doc.secret_access_key,
        Some(doc.token),
        Some(expiration),
        "imds-shim-relay",
    )))
}

/// When to refresh credentials that have `remaining` left: 15 minutes before expiry, or halfway
/// through what is left when that is less than 30 minutes (short-lived credentials).
pub fn refresh_after(remaining: Duration) -> Duration {
    let after = if remaining > 2 * REFRESH_MARGIN {
        remaining.checked_sub(REFRESH_MARGIN).unwrap()
    } else {
        remaining / 2
    };
    after.max(MIN_REFRESH)
}

/// The credentials being served, and why there are none when there are none.
#[derive(Debug, Default)]
pub struct RoleCache {
    inner: RwLock<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    current: Option<Arc<Served>>,
    last_error: Option<String>,
}

impl RoleCache {
    /// A cache holding `first`.
    pub fn with(first: Served) -> Self {
        Self {
            inner: RwLock::new(CacheState {
                current: Some(Arc::new(first)),
                last_error: None,
            }),
        }
    }

    /// The credentials to serve at `now`, or why there are none.
    pub fn current(&self, now: SystemTime) -> Result<Arc<Served>, String> {
        let state = self.inner.read();
        match &state.current {
            Some(c) if !c.is_expired(now) => Ok(c.clone()),
            Some(_) => Err(format!(
                "the role's credentials expired and IMDS on the host gave no new ones ({})",
                state.last_error.as_deref().unwrap_or("no refresh yet")
            )),
            None => Err(format!(
                "IMDS on the host gave no credentials ({})",
                state.last_error.as_deref().unwrap_or("not fetched yet")
            )),
        }
    }

    fn store(&self, served: Served) {
        let mut state = self.inner.write();
        state.current = Some(Arc::new(served));
        state.last_error = None;
    }

    fn failed(&self, error: String) {
        self.inner.write().last_error = Some(error);
    }
}

/// Keeps `cache` fresh from `source` forever: refreshes before expiry; after a failure, retries
/// with a growing pause (1 s, 2 s, ... 30 s). `log` gets one line per refresh or failure.
pub async fn refresh_forever(cache: Arc<RoleCache>, source: RoleSource, log: impl Fn(String)) {
    let mut retry = MIN_REFRESH;
    loop {
        let remaining = cache
            .current(SystemTime::now())
            .ok()
            .and_then(|c| c.expiration.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        let wait = if remaining.is_zero() {
            Duration::ZERO
        } else {
            refresh_after(remaining)
        };
        tokio::time::sleep(wait).await;
        match source.fetch().await {
            Ok(served) => {
                log(format!(
                    "refreshed the role's credentials: {} until {}",
                    served.access_key_id,
                    rfc3339(served.expiration)
                ));
                cache.store(served);
                retry = MIN_REFRESH;
            }
            Err(e) => {
                log(format!(
                    "refreshing the role's credentials failed: {e}; retrying in {} s",
                    retry.as_secs()
                ));
                cache.failed(e.to_string());
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    fn served(expiry: SystemTime) -> Served {
        Served::new(&RoleCredentials::new(Credentials::new(
            "ASIAKEY",
            "sEcReT",
            Some("ToKeN".into()),
            Some(expiry),
            "test",
        )))
        .unwrap()
    }

    #[test]
    fn the_body_is_the_container_credentials_json_and_debug_redacts() {
        let s = served(SystemTime::UNIX_EPOCH + Duration::from_secs(1_632_197_813));
        let v: serde_json::Value = serde_json::from_slice(&s.body()).unwrap();
        assert_eq!(v["AccessKeyId"], "ASIAKEY");
        assert_eq!(v["SecretAccessKey"], "sEcReT");
        assert_eq!(v["Token"], "ToKeN");
        assert_eq!(v["Expiration"], "2021-09-21T04:16:53Z");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("sEcReT") && !shown.contains("ToKeN"),
            "{shown}"
        );
    }

    #[test]
    fn the_served_expiry_is_imds_own_and_expired_credentials_are_refused() {
        let doc = |expiration: &str| {
            serde_json::json!({
                "Code": "Success", "AccessKeyId": "ASIAKEY", "SecretAccessKey": "sEcReT",
                "Token": "ToKeN", "Expiration": expiration,
            })
            .to_string()
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_632_197_000);
        let s = served_from(&doc("2021-09-21T04:16:53Z"), "role", now).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&s.body()).unwrap();
        assert_eq!(v["Expiration"], "2021-09-21T04:16:53Z");
        let later = now + Duration::from_hours(1);
        let err = served_from(&doc("2021-09-21T04:16:53Z"), "role", later)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired already"), "{err}");
        assert!(!err.contains("sEcReT") && !err.contains("ToKeN"), "{err}");
        for bad in [doc("tomorrow"), "{}".to_owned(), "not json".to_owned()] {
            assert!(served_from(&bad, "role", now).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_comes_before_expiry() {
        assert_eq!(
            refresh_after(Duration::from_hours(6)),
            Duration::from_mins(345)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(refresh_after(Duration::from_millis(10)), MIN_REFRESH);
    }

    #[test]
    fn expired_or_missing_credentials_say_why() {
        let now = SystemTime::now();
        let cache = RoleCache::with(served(now + Duration::from_secs(10)));
        assert!(cache.current(now).is_ok());
        cache.failed("could not connect to IMDS".into());
        let err = cache.current(now + Duration::from_secs(11)).unwrap_err();
        assert!(
            err.contains("expired") && err.contains("could not connect"),
            "{err}"
        );
        let empty = RoleCache::default();
        assert!(empty
            .current(now)
            .unwrap_err()
            .contains("gave no credentials"));
    }
}
