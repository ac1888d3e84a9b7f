//! The credentials of a scoped grant: a session of the grant's role, assumed with STS
//! `AssumeRole` signed by the instance role's current credentials, and cached per grant.
//!
//! One `AssumeRole` per refresh however many builds fetch: a fetch that finds the session due
//! for refresh (past [`super::role::refresh_after`] of its lifetime) is served the current one
//! while one refresh runs in the background; fetches that find no valid session wait for the one
//! refresh in flight (single flight). `DurationSeconds` is what the grant asked, but never more
//! than the grant has left, with STS's 15-minute floor ([`AssumedRole::duration_for`]). A failed
//! refresh is remembered for a second, so a build hammering an expired session does not hammer
//! STS.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use parking_lot::Mutex;
use thiserror::Error;

use super::metrics::{Metrics, Upstream};
use super::role::{refresh_after, RoleCache, Served};
use super::scope::AssumedRole;
use crate::probe::clients::http_client;
use crate::probe::credentials::RoleCredentials;
use crate::probe::diagnosis::chain;

/// How long a failed refresh is remembered before the next fetch tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The connect timeout of STS calls.
const STS_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// An upper bound for one `AssumeRole`, retries included: within the control socket's 5 s, so
/// that `relay grant` hears why STS did not answer.
const STS_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);

/// Why a scoped grant has no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssumeError {
    /// No region to find the STS endpoint in.
    #[error("no region for STS: give the relay --region or --sts-endpoint (IMDS gave none: {0})")]
    NoRegion(String),
    /// The instance role's credentials, which sign `AssumeRole`, are missing.
    #[error("no instance role credentials to call STS with: {0}")]
    NoInstanceCredentials(String),
    /// STS refused.
    #[error("STS refused AssumeRole of {role_arn}: {code}: {message}")]
    Refused {
        /// The role.
        role_arn: String,
        /// STS's error code.
        code: String,
        /// STS's message.
        message: String,
    },
    /// STS could not be reached or answered nonsense.
    #[error("AssumeRole of {role_arn} failed: {reason}")]
    Failed {
        /// The role.
        role_arn: String,
        /// Why.
        reason: String,
    },
}

/// Where sessions come from: STS, signed with the instance role's current credentials.
pub struct Assumer {
    instance: Arc<RoleCache>,
    region: Result<String, String>,
    endpoint: Option<String>,
    http: SharedHttpClient,
    /// Where each call to STS is counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Assumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assumer")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Assumer {
    /// Calls STS at `endpoint` (the regional endpoint of `region` when `None`) with the
    /// credentials `instance` holds. `region` is the error that said why there is none when
    /// there is none.
    pub fn new(
        instance: Arc<RoleCache>,
        region: Result<String, String>,
        endpoint: Option<String>,
    ) -> Self {
        Self {
            instance,
            region,
            endpoint,
            http: http_client(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Counts its calls to STS in `metrics`.
    #[must_use]
    pub fn counted_in(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Assumes `role` for `duration` (whole seconds, 900..=3600).
    pub async fn assume(
        &self,
        role: &AssumedRole,
        duration: Duration,
    ) -> Result<Served, AssumeError> {
        let failed = |reason: String| AssumeError::Failed {
            role_arn: role.role_arn.clone(),
            reason,
        };
        let region = match (&self.region, &self.endpoint) {
            (Ok(r), _) => r.clone(),
            // An explicit endpoint needs a region only to sign: the SDK's default one.
            (Err(_), Some(_)) => "us-east-1".to_owned(),
            (Err(why), None) => return Err(AssumeError::NoRegion(why.clone())),
        };
        let signer = self
            .instance
            .current(SystemTime::now())
            .map_err(AssumeError::NoInstanceCredentials)?;
        let mut config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .http_client(self.http.clone())
            .credentials_provider(signer.credentials().clone())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(STS_CONNECT_TIMEOUT)
                    .operation_timeout(STS_OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(url) = &self.endpoint {
            config = config.endpoint_url(url);
        }
        let client = aws_sdk_sts::Client::from_conf(config.build());
        let mut call = client
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(&role.session_name)
            .duration_seconds(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX))
            .set_policy(role.policy.clone());
        for arn in &role.policy_arns {
            call = call.policy_arns(
                aws_sdk_sts::types::PolicyDescriptorType::builder()
                    .arn(arn)
                    .build(),
            );
        }
        for (key, value) in &role.tags {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| failed(e.to_string()))?;
            call = call.tags(tag);
        }
        let out = call.send().await;
        self.metrics.upstream(Upstream::AssumeRole, out.is_ok());
        let out = out.map_err(|e| match &e {
            SdkError::ServiceError(ctx) => AssumeError::Refused {
                role_arn: role.role_arn.clone(),
                code: ctx.err().code().unwrap_or("unknown error").to_owned(),
                message: ctx.err().message().map_or_else(
                    || format!("HTTP {}", ctx.raw().status().as_u16()),
                    str::to_owned,
                ),
            },
            _ => failed(chain(&e)),
        })?;
        let creds = out
            .credentials()
            .ok_or_else(|| failed("STS answered without credentials".to_owned()))?;
        let expiration = SystemTime::try_from(*creds.expiration())
            .map_err(|_| failed("STS answered an expiry out of range".to_owned()))?;
        Served::new(&RoleCredentials::new(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            Some(expiration),
            "imds-shim-relay",
        )))
        .map_err(|e| failed(e.to_string()))
    }
}

/// A scoped grant's current session, and the refresh in flight.
#[derive(Debug, Default)]
pub struct SessionCache {
    state: Mutex<SessionState>,
    /// Held by the one refresh in flight.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct SessionState {
    current: Option<Held>,
    failure: Option<(Instant, String)>,
}

#[derive(Debug, Clone)]
struct Held {
    served: Arc<Served>,
    refresh_at: SystemTime,
}

impl Held {
    fn new(served: Served, now: SystemTime) -> Self {
        let lifetime = served.expiration.duration_since(now).unwrap_or_default();
        Self {
            refresh_at: now + refresh_after(lifetime),
            served: Arc::new(served),
        }
    }
}

/// What a fetch found in the cache.
enum Found {
    Fresh(Arc<Served>),
    /// Valid, but due for refresh; whether a refresh failed within the last second.
    Due(Arc<Served>, bool),
    /// Nothing valid; the last failure, if recent.
    Nothing(Option<String>),
}

impl SessionCache {
    /// A cache holding `first` (assumed when the grant was given).
    pub fn with(first: Served) -> Self {
        let cache = Self::default();
        cache.state.lock().current = Some(Held::new(first, SystemTime::now()));
        cache
    }

    fn find(&self, now: SystemTime) -> Found {
        let state = self.state.lock();
        let failed = state
            .failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RETRY_AFTER)
            .map(|(_, why)| why.clone());
        match &state.current {
            Some(h) if now < h.refresh_at && !h.served.is_expired(now) => {
                Found::Fresh(h.served.clone())
            }
            Some(h) if !h.served.is_expired(now) => Found::Due(h.served.clone(), failed.is_some()),
            _ => Found::Nothing(failed),
        }
    }

    /// The session to serve for a grant of `role` that ends at `grant_ends`: the cached one, or
    /// a new one (one `AssumeRole` for every fetch that waits on it).
    pub async fn credentials(
        self: &Arc<Self>,
        assumer: &Arc<Assumer>,
        role: &Arc<AssumedRole>,
        grant_ends: SystemTime,
    ) -> Result<Arc<Served>, String> {
        match self.find(SystemTime::now()) {
            Found::Fresh(served) => return Ok(served),
            Found::Due(served, failed) => {
                let guard = (!failed)
                    .then(|| self.refreshing.clone().try_lock_owned().ok())
                    .flatten();
                if let Some(guard) = guard {
                    let (cache, assumer, role) = (self.clone(), assumer.clone(), role.clone());
                    tokio::spawn(async move {
                        let _guard = guard;
                        let _ = cache.refresh(&assumer, &role, grant_ends).await;
                    });
                }
                return Ok(served);
            }
            Found::Nothing(Some(why)) => return Err(why),
            Found::Nothing(None) => {}
        }
        let _guard = self.refreshing.lock().await;
        match self.find(SystemTime::now()) {
            Found::Fresh(served) | Found::Due(served, _) => Ok(served),
            Found::Nothing(Some(why)) => Err(why),
            Found::Nothing(None) => self.refresh(assumer, role, grant_ends).await,
        }
    }

    /// One `AssumeRole`, its outcome kept.
    async fn refresh(
        &self,
        assumer: &Assumer,
        role: &AssumedRole,
        grant_ends: SystemTime,
    ) -> Result<Arc<Served>, String> {
        let now = SystemTime::now();
        let remaining = grant_ends.duration_since(now).unwrap_or_default();
        let outcome = assumer.assume(role, role.duration_for(remaining)).await;
        let mut state = self.state.lock();
        match outcome {
            Ok(served) => {
                let held = Held::new(served, SystemTime::now());
                let served = held.served.clone();
                super::logging::log(&format!(
                    "assumed {} as session {:?}: {} until {}",
                    role.role_arn,
                    role.session_name,
                    served.access_key_id,
                    super::role::rfc3339(served.expiration)
                ));
                state.current = Some(held);
                state.failure = None;
                Ok(served)
            }
            Err(e) => {
                let why = e.to_string();
                super::logging::log(&format!("refreshing a session failed: {why}"));
                state.failure = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// When the session being served expires, if there is one.
    pub fn expires(&self) -> Option<SystemTime> {
        self.state
            .lock()
            .current
            .as_ref()
            .map(|h| h.served.expiration)
    }
}
