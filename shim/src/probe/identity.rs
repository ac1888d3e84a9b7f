//! Step 4: who the credentials are, by `sts:GetCallerIdentity` through aws-sdk-sts.
//!
//! The STS endpoint and other settings come from aws-config's usual sources
//! (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the config file); the credentials are exactly the
//! ones the credentials step got, never any others from the environment.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use imds_vocab::report::IdentityDetail;
use thiserror::Error;

use super::clients::http_client;
use super::credentials::RoleCredentials;
use super::diagnosis::chain;

/// The STS connect timeout (the SDK's default).
const STS_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// An upper bound for the whole call, retries included, so that the probe always ends.
const STS_OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Why GetCallerIdentity did not say who the credentials are.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// Neither the environment nor IMDS gave a region.
    #[error("no region to call STS in: set AWS_REGION (IMDS did not provide one)")]
    NoRegion,
    /// The credentials step failed.
    #[error("not attempted: the credentials step got no credentials")]
    NoCredentials,
    /// STS answered with an error.
    #[error("STS refused GetCallerIdentity: {code}: {message}")]
    Rejected {
        /// The error code, e.g. `InvalidClientTokenId`.
        code: String,
        /// The error message.
        message: String,
    },
    /// STS could not be reached.
    #[error("could not reach STS: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("no answer from STS within {} s", STS_OPERATION_TIMEOUT.as_secs())]
    TimedOut,
    /// Anything else, with the full error chain.
    #[error("GetCallerIdentity failed: {0}")]
    Other(String),
}

/// Calls `GetCallerIdentity` in `region` with `credentials`.
pub async fn fetch(
    region: &str,
    credentials: &RoleCredentials,
) -> Result<IdentityDetail, IdentityError> {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials.credentials().clone())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(STS_CONNECT_TIMEOUT)
                .operation_timeout(STS_OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    let out = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| match &e {
            SdkError::ServiceError(ctx) => IdentityError::Rejected {
                code: ctx.err().code().unwrap_or("unknown error").to_owned(),
                message: ctx.err().message().map_or_else(
                    || format!("HTTP {}", ctx.raw().status().as_u16()),
                    str::to_owned,
                ),
            },
            SdkError::DispatchFailure(_) => IdentityError::Unreachable(chain(&e)),
            SdkError::TimeoutError(_) => IdentityError::TimedOut,
            _ => IdentityError::Other(chain(&e)),
        })?;
    Ok(IdentityDetail {
        arn: out.arn().map(str::to_owned),
        account: out.account().map(str::to_owned),
        user_id: out.user_id().map(str::to_owned),
    })
}
