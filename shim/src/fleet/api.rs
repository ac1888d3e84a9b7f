//! The EC2 client for fleet-wide commands: credentials and region from the SDK's default
//! chains (environment, profile, then this instance's role through IMDS), the standard
//! retry mode with [`MAX_ATTEMPTS`] attempts (throttling, `RequestLimitExceeded`, is
//! retried with the SDK's exponential backoff and jitter), and an interceptor that
//! counts what was sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::Credentials;
use aws_sdk_ec2::config::Intercept;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

use crate::instance::InstanceError;
use crate::probe::clients;
use crate::probe::diagnosis::chain;

/// Attempts per call: at a 30 % throttling rate, ten in a row fail once in 170,000 calls.
pub const MAX_ATTEMPTS: u32 = 10;
/// The SDK's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// An upper bound for one call, retries and backoff included.
const OPERATION_TIMEOUT: Duration = Duration::from_mins(2);
/// The HTTP status EC2 throttles with.
const THROTTLED_STATUS: u16 = 503;
/// The error code it says.
const THROTTLED_CODE: &[u8] = b"RequestLimitExceeded";

/// What the client sent and got, counted by its interceptor.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    attempts: AtomicU64,
    throttled: AtomicU64,
}

/// A snapshot of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Operations (a paginated listing counts one per page).
    pub calls: u64,
    /// HTTP requests sent: the calls and their retries.
    pub attempts: u64,
    /// Answers that were `RequestLimitExceeded` (each one retried).
    pub throttled: u64,
}

#[derive(Debug)]
struct CountCalls(Arc<Counters>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "imds-shim::CountCalls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        // The status first: a page of instances is not searched (a sixth of the audit's
        // CPU when it was).
        let throttled = context.response().is_some_and(|response| {
            response.status().as_u16() == THROTTLED_STATUS
                && response.body().bytes().is_none_or(|body| {
                    body.windows(THROTTLED_CODE.len())
                        .any(|w| w == THROTTLED_CODE)
                })
        });
        if throttled {
            self.0.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The SDK's configuration from its default chains (environment, profile, then the
/// instance role through IMDS with `imds_timeout`), the standard retry mode with
/// [`MAX_ATTEMPTS`] attempts and a bound on each call. Fails when no credentials are
/// found, saying why.
pub async fn sdk_config(imds_timeout: Duration) -> Result<SdkConfig, InstanceError> {
    let conf = clients::provider_config();
    let imds = aws_config::imds::Client::builder()
        .configure(&conf)
        .connect_timeout(imds_timeout)
        .read_timeout(imds_timeout)
        .build();
    let credentials = DefaultCredentialsChain::builder()
        .configure(conf)
        .imds_client(imds)
        .build()
        .await;
    // Asked once here, so that a missing credential is said as such (the SDK caches
    // what it gets for the calls).
    if let Err(e) = credentials.provide_credentials().await {
        return Err(InstanceError::NoCredentials(chain(&e)));
    }
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(clients::http_client())
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await)
}

/// The EC2 client and its counts.
#[derive(Debug, Clone)]
pub struct FleetApi {
    /// The client.
    pub ec2: aws_sdk_ec2::Client,
    /// The region it calls.
    pub region: String,
    counters: Arc<Counters>,
}

impl FleetApi {
    /// A client from the SDK's default chains, whose IMDS step (the instance role) has
    /// `imds_timeout` as its connect and read timeout; the endpoint from
    /// `AWS_ENDPOINT_URL_EC2` or `AWS_ENDPOINT_URL` as the SDK reads them.
    pub async fn connect(imds_timeout: Duration) -> Result<Self, InstanceError> {
        let sdk = sdk_config(imds_timeout).await?;
        let region = sdk
            .region()
            .map(ToString::to_string)
            .ok_or(InstanceError::NoFleetRegion)?;
        Ok(Self::for_scope(&sdk, None, &region))
    }

    /// A client of `sdk`'s for `region`, signing with `credentials` (`None`: `sdk`'s),
    /// with counts of its own.
    pub fn for_scope(sdk: &SdkConfig, credentials: Option<Credentials>, region: &str) -> Self {
        let counters = Arc::new(Counters::default());
        let mut config = aws_sdk_ec2::config::Builder::from(sdk)
            .region(Region::new(region.to_owned()))
            .interceptor(CountCalls(counters.clone()));
        if let Some(credentials) = credentials {
            config = config.credentials_provider(credentials);
        }
        FleetApi {
            ec2: aws_sdk_ec2::Client::from_conf(config.build()),
            region: region.to_owned(),
            counters,
        }
    }

    /// What was sent so far.
    pub fn counts(&self) -> CallCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CallCounts {
            calls: get(&self.counters.calls),
            attempts: get(&self.counters.attempts),
            throttled: get(&self.counters.throttled),
        }
    }
}
