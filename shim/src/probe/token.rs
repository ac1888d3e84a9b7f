//! Step 2: an IMDSv2 session token, as the AWS SDK for Rust gets it.
//!
//! The aws-config IMDS client sends `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds: 21600` before its first GET, so asking for the
//! instance id exercises the token exchange; the region is read with the same token.

use std::time::Duration;

use aws_config::imds;
use imds_vocab::report::TokenDetail;

use super::diagnosis::ImdsFailure;

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
