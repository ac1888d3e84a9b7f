//! Step 2: an IMDSv2 session token, as the AWS SDK for Rust gets it.
//!
//! The aws-config IMDS client sends `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds: 21600` before its first GET, so asking for the
//! instance id exercises the token exchange; the region is read with the same token.

use std::time::Duration;

use aws_config::imds;
use serde::{Deserialize, Serialize};

use super::diagnosis::ImdsFailure;

/// What the token step learnt about the instance.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDetail {
    /// The instance id (`/latest/meta-data/instance-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The instance's region (`/latest/meta-data/placement/region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Gets a token and, with it, the instance id and (if IMDS serves it) the region.
pub async fn fetch(client: &imds::Client, timeout: Duration) -> Result<TokenDetail, ImdsFailure> {
    let instance_id = client
        .get("/latest/meta-data/instance-id")
        .await
        .map_err(|e| ImdsFailure::diagnose(&e, timeout))?;
    // The region is a convenience: the token is proven by the first GET already.
    let region = client
        .get("/latest/meta-data/placement/region")
        .await
        .ok()
        .map(|r| r.as_ref().trim().to_owned())
        .filter(|r| !r.is_empty());
    Ok(TokenDetail {
        instance_id: Some(instance_id.as_ref().trim().to_owned()),
        region,
    })
}
