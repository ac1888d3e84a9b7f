//! The Rust SDK against a mock on loopback, with explicit endpoints: the instance role's
//! credentials from its IMDS, and STS and EC2 clients signed with given credentials.
//! Shared by the mock's test files (`mod sdk;`), each of which uses a part.
#![allow(
    dead_code,
    reason = "each test file that includes this module uses a part of it"
)]

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use imds_mock::MockAws;

fn provider_config() -> ProviderConfig {
    ProviderConfig::without_region().with_http_client(HttpClientBuilder::new().build_http())
}

/// The SDK's IMDS client, at the mock's IMDS.
pub(crate) fn imds_client(mock: &MockAws) -> imds::Client {
    imds::Client::builder()
        .configure(&provider_config())
        .endpoint(&mock.endpoints().imds)
        .expect("endpoint URL")
        .build()
}

/// The instance role's credentials as the SDK's IMDS provider gets them, or its error with
/// its source.
pub(crate) async fn imds_credentials(mock: &MockAws) -> Result<Credentials, String> {
    imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&provider_config())
        .imds_client(imds_client(mock))
        .build()
        .provide_credentials()
        .await
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
}

/// A configuration for `endpoint` in us-east-1, signing with `credentials`.
pub(crate) async fn sdk_config(endpoint: &str, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(HttpClientBuilder::new().build_http())
        .credentials_provider(credentials)
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// An STS client at the mock's STS.
pub(crate) async fn sts(mock: &MockAws, credentials: Credentials) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(&sdk_config(&mock.endpoints().sts, credentials).await)
}

/// An EC2 client at the mock's EC2 API.
pub(crate) async fn ec2(mock: &MockAws, credentials: Credentials) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk_config(&mock.endpoints().ec2, credentials).await)
}
