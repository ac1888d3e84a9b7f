//! The instance this runs on, as the EC2 API sees it: its id and region from IMDS, its
//! `MetadataOptions` from `DescribeInstances`, changed with `ModifyInstanceMetadataOptions`, all
//! with the instance role's own credentials (aws-config's IMDS credentials provider).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Region;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{HttpTokensState, InstanceMetadataEndpointState};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, MetadataState, OptionError};
use thiserror::Error;

use crate::probe::clients;
use crate::probe::credentials::{self, RoleCredentials};
use crate::probe::diagnosis::{chain, ImdsFailure};
use crate::probe::token;
use crate::probe::Place;

/// Attempts per EC2 call: a refusal is reported, not retried for long.
const EC2_MAX_ATTEMPTS: u32 = 2;
/// The EC2 connect timeout (the SDK's default).
const EC2_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// An upper bound for one EC2 call, retries included.
const EC2_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The instance and the role credentials to call EC2 with.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `i-...`, from IMDS.
    pub instance_id: String,
    /// The instance's region, from IMDS (or `AWS_REGION` when IMDS has none).
    pub region: String,
    credentials: RoleCredentials,
}

/// The instance's metadata options as `DescribeInstances` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataOptions {
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: HopLimit,
    /// `HttpTokens`.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`.
    pub http_endpoint: HttpEndpoint,
    /// `State`: whether the last change is in force.
    pub state: MetadataState,
}

/// Why the instance or its options could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InstanceError {
    /// IMDS is turned off here.
    #[error("cannot check: IMDS is turned off here (AWS_EC2_METADATA_DISABLED=true); run this on the EC2 host itself")]
    ImdsDisabled,
    /// IMDS refused the token: the endpoint is disabled on the instance.
    #[error("cannot check: IMDS refused the token request (HTTP 403): the instance's metadata endpoint is disabled (HttpEndpoint=disabled) — enable it from outside the instance with `aws ec2 modify-instance-metadata-options --instance-id <id> --http-endpoint enabled`")]
    ImdsForbidden,
    /// No IMDS reachable: not on EC2, or blocked.
    #[error("cannot check: no instance metadata service here ({0}); run this on the EC2 host itself, not in a container")]
    NoImds(#[source] ImdsFailure),
    /// IMDS answered without what the check needs.
    #[error("cannot check: IMDS gave no {0}")]
    Incomplete(&'static str),
    /// The instance has no role.
    #[error("cannot check: the instance has no IAM role to call EC2 with ({0})")]
    NoRole(#[source] ImdsFailure),
    /// Neither IMDS nor the environment named a region.
    #[error("cannot check: no region (IMDS did not give one; set AWS_REGION)")]
    NoRegion,
    /// No credentials from any source of the SDK's default chain (fleet commands).
    #[error("no AWS credentials: none in the environment (AWS_ACCESS_KEY_ID ...), no profile (AWS_PROFILE, ~/.aws), no instance role through IMDS; give one of them ({0})")]
    NoCredentials(String),
    /// The SDK's default chain found no region (fleet commands).
    #[error(
        "no region: set AWS_REGION (or a profile's region; on EC2 the instance's comes from IMDS)"
    )]
    NoFleetRegion,
    /// The role may not call this action.
    #[error("the instance role may not call ec2:{action} (UnauthorizedOperation): allow ec2:{action} on this instance in the role's IAM policy, or run the printed `aws ec2` command with other credentials")]
    Unauthorized {
        /// `DescribeInstances` or `ModifyInstanceMetadataOptions`.
        action: &'static str,
    },
    /// EC2 answered with another error.
    #[error("ec2:{action} failed: {code}: {message}")]
    Api {
        /// The action.
        action: &'static str,
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// EC2 could not be reached or did not answer.
    #[error("ec2:{action} failed: could not reach the EC2 API: {detail}")]
    Unreachable {
        /// The action.
        action: &'static str,
        /// The error chain.
        detail: String,
    },
    /// DescribeInstances did not list the instance's metadata options.
    #[error("DescribeInstances did not return the metadata options of {0}")]
    NotListed(String),
    /// The change was not applied in time.
    #[error("the change was still {state} after {} s; check again later with `imds-shim check`", after.as_secs())]
    NotApplied {
        /// The options' state at the last look.
        state: MetadataState,
        /// How long it was given.
        after: Duration,
    },
    /// The change was applied, but the hop limit is not the one asked for (someone
    /// else changed it meanwhile).
    #[error("the change is applied but the hop limit is {now}, not {wanted}: something else changed it meanwhile")]
    AppliedOtherwise {
        /// The hop limit now.
        now: HopLimit,
        /// The hop limit asked for.
        wanted: HopLimit,
    },
    /// DescribeInstances listed a metadata option this tool does not know.
    #[error("DescribeInstances returned metadata options of {instance_id} that EC2 does not document: {source}")]
    Unexpected {
        /// The instance.
        instance_id: String,
        /// What was wrong.
        source: OptionError,
    },
}

impl InstanceError {
    fn from_imds(failure: ImdsFailure) -> Self {
        match failure {
            ImdsFailure::Disabled => Self::ImdsDisabled,
            ImdsFailure::TokenForbidden => Self::ImdsForbidden,
            ImdsFailure::NoRole => Self::NoRole(failure),
            other => Self::NoImds(other),
        }
    }

    pub(crate) fn from_sdk<E, R>(action: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().unwrap_or("unknown error").to_owned();
                if code == "UnauthorizedOperation" {
                    Self::Unauthorized { action }
                } else {
                    Self::Api {
                        action,
                        code,
                        message: ctx.err().message().unwrap_or_default().to_owned(),
                    }
                }
            }
            _ => Self::Unreachable {
                action,
                detail: chain(err),
            },
        }
    }
}

impl Instance {
    /// Learns the instance id and region from IMDS and gets the role's credentials.
    pub(crate) async fn discover(place: &Place, timeout: Duration) -> Result<Self, InstanceError> {
        if place.imds.disabled {
            return Err(InstanceError::ImdsDisabled);
        }
        let conf = clients::provider_config();
        let client = clients::imds_client(&place.imds.endpoint, timeout, &conf)
            .map_err(InstanceError::from_imds)?;
        let detail = token::fetch(&client, timeout)
            .await
            .map_err(InstanceError::from_imds)?;
        let instance_id = detail
            .instance_id
            .ok_or(InstanceError::Incomplete("instance id"))?;
        let region = detail
            .region
            .or_else(|| place.region.clone())
            .ok_or(InstanceError::NoRegion)?;
        let credentials = credentials::fetch(client, &conf, timeout)
            .await
            .map_err(InstanceError::from_imds)?;
        Ok(Self {
            instance_id,
            region,
            credentials,
        })
    }

    /// An EC2 client with the role's credentials, few retries and bounded timeouts. The endpoint
    /// comes from aws-config's usual sources (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`).
    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(clients::http_client())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials.credentials().clone())
            .retry_config(RetryConfig::standard().with_max_attempts(EC2_MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(EC2_CONNECT_TIMEOUT)
                    .operation_timeout(EC2_OPERATION_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        aws_sdk_ec2::Client::new(&sdk)
    }

    /// `DescribeInstances` for this instance: its metadata options.
    pub async fn describe(
        &self,
        ec2: &aws_sdk_ec2::Client,
    ) -> Result<MetadataOptions, InstanceError> {
        Ok(self.describe_with_tags(ec2).await?.0)
    }

    /// `DescribeInstances` for this instance: its metadata options and its tags.
    pub async fn describe_with_tags(
        &self,
        ec2: &aws_sdk_ec2::Client,
    ) -> Result<(MetadataOptions, BTreeMap<String, String>), InstanceError> {
        const ACTION: &str = "DescribeInstances";
        let out = ec2
            .describe_instances()
            .instance_ids(&self.instance_id)
            .send()
            .await
            .map_err(|e| InstanceError::from_sdk(ACTION, &e))?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
            .find(|i| i.instance_id() == Some(self.instance_id.as_str()))
            .ok_or_else(|| InstanceError::NotListed(self.instance_id.clone()))?;
        let tags = instance
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let options = instance
            .metadata_options()
            .ok_or_else(|| InstanceError::NotListed(self.instance_id.clone()))?;
        let not_listed = || InstanceError::NotListed(self.instance_id.clone());
        let unexpected = |source| InstanceError::Unexpected {
            instance_id: self.instance_id.clone(),
            source,
        };
        let hop_limit = options
            .http_put_response_hop_limit()
            .ok_or_else(not_listed)?;
        let hop_limit = u32::try_from(hop_limit)
            .map_err(|_| OptionError::HopLimitOutOfRange(hop_limit.to_string()))
            .and_then(HopLimit::new)
            .map_err(unexpected)?;
        let http_tokens = options.http_tokens().ok_or_else(not_listed)?.as_str();
        let http_endpoint = options.http_endpoint().ok_or_else(not_listed)?.as_str();
        let state = options.state().ok_or_else(not_listed)?.as_str();
        let options = MetadataOptions {
            hop_limit,
            http_tokens: http_tokens.parse().map_err(unexpected)?,
            http_endpoint: http_endpoint.parse().map_err(unexpected)?,
            state: state.parse().map_err(unexpected)?,
        };
        Ok((options, tags))
    }

    /// `ModifyInstanceMetadataOptions`: hop limit `hop_limit`, tokens required, endpoint enabled.
    pub async fn modify(
        &self,
        ec2: &aws_sdk_ec2::Client,
        hop_limit: HopLimit,
    ) -> Result<(), InstanceError> {
        const ACTION: &str = "ModifyInstanceMetadataOptions";
        ec2.modify_instance_metadata_options()
            .instance_id(&self.instance_id)
            .http_put_response_hop_limit(hop_limit.into())
            .http_tokens(HttpTokensState::Required)
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .send()
            .await
            .map_err(|e| InstanceError::from_sdk(ACTION, &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imds_failures_become_clear_check_errors() {
        assert_eq!(
            InstanceError::from_imds(ImdsFailure::Disabled),
            InstanceError::ImdsDisabled
        );
        assert_eq!(
            InstanceError::from_imds(ImdsFailure::TokenForbidden),
            InstanceError::ImdsForbidden
        );
        let e = InstanceError::from_imds(ImdsFailure::Connect {
            reason: "Connection refused".into(),
        });
        assert!(e.to_string().starts_with("cannot check: no instance metadata service here (could not connect to IMDS: Connection refused)"), "{e}");
    }
}
