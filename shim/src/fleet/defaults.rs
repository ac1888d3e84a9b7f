//! `imds-shim enforce --account-defaults`: the account's instance metadata defaults for
//! the region (`GetInstanceMetadataDefaults`, `ModifyInstanceMetadataDefaults`): what a
//! new instance gets when neither its launch request nor its launch template sets
//! metadata options. Set to the need, tokens required, the endpoint enabled.

use aws_sdk_ec2::types::{
    DefaultInstanceMetadataEndpointState, InstanceMetadataDefaultsResponse,
    MetadataDefaultHttpTokensState,
};

use super::api::FleetApi;
use super::Wanted;
use crate::baseline::Need;
use crate::instance::InstanceError;

/// `no-preference`, as the API says an unset default.
const NOT_SET: &str = "(no preference)";

fn read(defaults: Option<&InstanceMetadataDefaultsResponse>) -> [(&'static str, String); 3] {
    let text = |v: Option<String>| v.unwrap_or_else(|| NOT_SET.to_owned());
    [
        (
            "HttpPutResponseHopLimit",
            text(
                defaults
                    .and_then(aws_sdk_ec2::types::InstanceMetadataDefaultsResponse::http_put_response_hop_limit)
                    .map(|h| h.to_string()),
            ),
        ),
        (
            "HttpTokens",
            text(
                defaults
                    .and_then(|d| d.http_tokens())
                    .map(|t| t.as_str().to_owned()),
            ),
        ),
        (
            "HttpEndpoint",
            text(
                defaults
                    .and_then(|d| d.http_endpoint())
                    .map(|e| e.as_str().to_owned()),
            ),
        ),
    ]
}

fn wanted_fields(wanted: Wanted) -> [String; 3] {
    [
        wanted.hop_limit.to_string(),
        wanted.http_tokens.to_string(),
        wanted.http_endpoint.to_string(),
    ]
}

/// The AWS CLI command that does the same (a CLI released after the operation, late
/// 2023: Debian's 2.9.19 does not know it).
pub fn cli_command(wanted: &Wanted) -> String {
    format!(
        "aws ec2 modify-instance-metadata-defaults --http-put-response-hop-limit {} --http-tokens {} --http-endpoint {}",
        wanted.hop_limit, wanted.http_tokens, wanted.http_endpoint
    )
}

/// What `enforce --account-defaults` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultsOutcome {
    /// Already as wanted.
    NoChange,
    /// Dry run.
    DryRun,
    /// Set and read back.
    Applied,
}

async fn get(api: &FleetApi) -> Result<Option<InstanceMetadataDefaultsResponse>, InstanceError> {
    Ok(api
        .ec2
        .get_instance_metadata_defaults()
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("GetInstanceMetadataDefaults", &e))?
        .account_level()
        .cloned())
}

/// Sets the defaults to `wanted` (`ModifyInstanceMetadataDefaults`).
pub(crate) async fn set(api: &FleetApi, wanted: Wanted) -> Result<(), InstanceError> {
    api.ec2
        .modify_instance_metadata_defaults()
        .http_put_response_hop_limit(wanted.hop_limit.into())
        .http_tokens(MetadataDefaultHttpTokensState::from(
            wanted.http_tokens.as_ref(),
        ))
        .http_endpoint(DefaultInstanceMetadataEndpointState::from(
            wanted.http_endpoint.as_ref(),
        ))
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("ModifyInstanceMetadataDefaults", &e))?;
    Ok(())
}

/// Runs `enforce --account-defaults`, printing as it goes.
pub async fn enforce(
    api: &FleetApi,
    need: &Need,
    apply: bool,
) -> Result<DefaultsOutcome, InstanceError> {
    let wanted = Wanted::for_need(need.hop_limit);
    let now = read(get(api).await?.as_ref());
    println!(
        "instance metadata defaults of this account in {}: {} needs hop limit {} (from {})",
        api.region, need.topology, need.hop_limit, need.source
    );
    let changes: Vec<_> = now
        .iter()
        .zip(wanted_fields(wanted))
        .filter(|((_, from), to)| from != to)
        .collect();
    if changes.is_empty() {
        println!("no change needed: new instances that set no metadata options get exactly the need, tokens required, the endpoint enabled");
        return Ok(DefaultsOutcome::NoChange);
    }
    for ((field, from), to) in &changes {
        println!("  {field:<24} {from} -> {to}");
    }
    println!(
        "the same with an AWS CLI from late 2023 or later:\n  {}",
        cli_command(&wanted)
    );
    println!(
        "note: the defaults apply to instances launched from now on in {} whose launch request or launch \
         template sets no metadata options; running instances keep theirs",
        api.region
    );
    if !apply {
        println!("dry run: nothing changed; run again with --apply to make this change");
        return Ok(DefaultsOutcome::DryRun);
    }
    set(api, wanted).await?;
    let after = read(get(api).await?.as_ref());
    let left: Vec<_> = after
        .iter()
        .zip(wanted_fields(wanted))
        .filter(|((_, from), to)| from != to)
        .map(|((field, from), _)| format!("{field} {from}"))
        .collect();
    if !left.is_empty() {
        return Err(InstanceError::Api {
            action: "ModifyInstanceMetadataDefaults",
            code: "NotAsAsked".into(),
            message: format!("the defaults read back with {}", left.join(", ")),
        });
    }
    println!(
        "set and read back: hop limit {}, tokens {}, endpoint {}",
        wanted.hop_limit, wanted.http_tokens, wanted.http_endpoint
    );
    Ok(DefaultsOutcome::Applied)
}
