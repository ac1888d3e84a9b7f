//! The HTTP and IMDS clients every step builds afresh, configured as the AWS SDK configures them.
//!
//! aws-config is built without its default HTTPS client, so one is made here (hyper with rustls
//! and ring). Each step gets its own, so no step reuses another's connection or cached token.

use std::time::Duration;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::diagnosis::ImdsFailure;
use crate::endpoint::ImdsEndpoint;

/// A new HTTP(S) client: hyper, rustls with ring, no proxy.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Provider configuration with a new HTTP client, the Tokio sleep and the latest behaviour version.
pub fn provider_config() -> ProviderConfig {
    ProviderConfig::without_region()
        .with_http_client(http_client())
        .with_behavior_version(Some(BehaviorVersion::latest()))
}

/// An IMDSv2 client for `endpoint` with `timeout` as both its connect and read timeout and the
/// SDK's other defaults (4 attempts, timeouts not retried, 6-hour token TTL).
pub fn imds_client(
    endpoint: &ImdsEndpoint,
    timeout: Duration,
    conf: &ProviderConfig,
) -> Result<imds::Client, ImdsFailure> {
    Ok(imds::Client::builder()
        .configure(conf)
        .endpoint(endpoint.url())
        .map_err(|e| ImdsFailure::Other(format!("invalid IMDS endpoint {}: {e}", endpoint.url())))?
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build())
}
