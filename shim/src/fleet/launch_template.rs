//! `imds-shim enforce --launch-template ID|NAME [--set-default]`: a new version of the
//! template, based on its default version, whose `MetadataOptions` carry exactly the
//! need, tokens required and the endpoint enabled (IPv6 and instance tags as they were);
//! every other launch parameter is inherited unchanged (`SourceVersion`). With
//! `--set-default`, the new version becomes the default.

use std::fmt::Write as _;

use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataEndpointState,
    LaunchTemplateInstanceMetadataOptions, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceMetadataProtocolIpv6, LaunchTemplateInstanceMetadataTagsState,
    LaunchTemplateVersion, RequestLaunchTemplateData,
};
use imds_vocab::HopLimit;

use super::api::FleetApi;
use super::Wanted;
use crate::baseline::Need;
use crate::instance::InstanceError;

/// The version a new one is based on.
const DEFAULT_VERSION: &str = "$Default";

/// A launch template, by id (`lt-...`) or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    /// `lt-...`.
    Id(String),
    /// Its name.
    Name(String),
}

impl TemplateRef {
    /// `lt-...` is an id; anything else a name.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("lt-") {
            Self::Id(text.to_owned())
        } else {
            Self::Name(text.to_owned())
        }
    }

    fn cli_flag(&self) -> String {
        match self {
            Self::Id(id) => format!("--launch-template-id {id}"),
            Self::Name(name) => format!("--launch-template-name {name}"),
        }
    }
}

/// One metadata option of a template version: the value, if the version sets it.
fn field(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "(not set)".to_owned(), |v| v.to_string())
}

/// The fields of `current` that differ from `wanted`, as (field, from, to).
pub fn plan(
    current: Option<&LaunchTemplateInstanceMetadataOptions>,
    wanted: &Wanted,
) -> Vec<(&'static str, String, String)> {
    let hop_limit = current.and_then(
        aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptions::http_put_response_hop_limit,
    );
    let tokens = current
        .and_then(|m| m.http_tokens())
        .map(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::as_str);
    let endpoint = current
        .and_then(|m| m.http_endpoint())
        .map(aws_sdk_ec2::types::LaunchTemplateInstanceMetadataEndpointState::as_str);
    [
        (
            "HttpPutResponseHopLimit",
            field(hop_limit),
            wanted.hop_limit.to_string(),
        ),
        ("HttpTokens", field(tokens), wanted.http_tokens.to_string()),
        (
            "HttpEndpoint",
            field(endpoint),
            wanted.http_endpoint.to_string(),
        ),
    ]
    .into_iter()
    .filter(|(_, from, to)| from != to)
    .collect()
}

/// The `MetadataOptions` of the new version: the wanted three, the rest as they were.
pub(crate) fn request_options(
    current: Option<&LaunchTemplateInstanceMetadataOptions>,
    wanted: Wanted,
) -> LaunchTemplateInstanceMetadataOptionsRequest {
    LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_put_response_hop_limit(wanted.hop_limit.into())
        .http_tokens(LaunchTemplateHttpTokensState::from(
            wanted.http_tokens.as_ref(),
        ))
        .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::from(
            wanted.http_endpoint.as_ref(),
        ))
        .set_http_protocol_ipv6(
            current
                .and_then(|m| m.http_protocol_ipv6())
                .map(|v| LaunchTemplateInstanceMetadataProtocolIpv6::from(v.as_str())),
        )
        .set_instance_metadata_tags(
            current
                .and_then(|m| m.instance_metadata_tags())
                .map(|v| LaunchTemplateInstanceMetadataTagsState::from(v.as_str())),
        )
        .build()
}

/// The AWS CLI commands that do the same.
pub fn cli_commands(
    template: &TemplateRef,
    source_version: i64,
    new_version: i64,
    wanted: &Wanted,
    description: &str,
    set_default: bool,
) -> String {
    let mut out = format!(
        "  aws ec2 create-launch-template-version {} --source-version {source_version} \
         --version-description '{description}' --launch-template-data \
         '{{\"MetadataOptions\":{{\"HttpTokens\":\"{}\",\"HttpPutResponseHopLimit\":{},\"HttpEndpoint\":\"{}\"}}}}'\n",
        template.cli_flag(),
        wanted.http_tokens,
        wanted.hop_limit,
        wanted.http_endpoint,
    );
    if set_default {
        let _ = writeln!(
            out,
            "  aws ec2 modify-launch-template {} --default-version {new_version}",
            template.cli_flag()
        );
    }
    out
}

fn version_of(
    out: &[LaunchTemplateVersion],
    what: &str,
) -> Result<LaunchTemplateVersion, InstanceError> {
    out.first().cloned().ok_or_else(|| InstanceError::Api {
        action: "DescribeLaunchTemplateVersions",
        code: "NoVersion".into(),
        message: format!("EC2 listed no {what} version"),
    })
}

/// What `enforce --launch-template` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOutcome {
    /// The default version already has exactly the wanted options.
    NoChange,
    /// Dry run.
    DryRun,
    /// The new version (and the default, with `--set-default`) is in place.
    Applied {
        /// The new version's number.
        version: i64,
    },
}

/// A template's default version, as EC2 has it now.
#[derive(Debug, Clone)]
pub(crate) struct DefaultVersion {
    /// `lt-...`.
    pub(crate) id: String,
    /// Its name.
    pub(crate) name: String,
    /// The default version's number.
    pub(crate) number: i64,
    /// The latest version's number.
    pub(crate) latest: i64,
    /// The default version's `MetadataOptions`.
    pub(crate) options: Option<LaunchTemplateInstanceMetadataOptions>,
}

async fn describe_versions(
    api: &FleetApi,
    template: &TemplateRef,
    versions: &[&str],
) -> Result<Vec<LaunchTemplateVersion>, InstanceError> {
    let mut call = api.ec2.describe_launch_template_versions();
    call = match template {
        TemplateRef::Id(id) => call.launch_template_id(id),
        TemplateRef::Name(name) => call.launch_template_name(name),
    };
    for v in versions {
        call = call.versions(*v);
    }
    let out = call
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("DescribeLaunchTemplateVersions", &e))?;
    Ok(out.launch_template_versions().to_vec())
}

/// Reads `template`'s default (and latest) version.
pub(crate) async fn read_default(
    api: &FleetApi,
    template: &TemplateRef,
) -> Result<DefaultVersion, InstanceError> {
    let versions = describe_versions(api, template, &[DEFAULT_VERSION, "$Latest"]).await?;
    let current = versions
        .iter()
        .find(|v| v.default_version() == Some(true))
        .cloned()
        .map_or_else(|| version_of(&versions, "default"), Ok)?;
    let latest = versions
        .iter()
        .filter_map(LaunchTemplateVersion::version_number)
        .max()
        .unwrap_or(1);
    Ok(DefaultVersion {
        id: current.launch_template_id().unwrap_or_default().to_owned(),
        name: current
            .launch_template_name()
            .unwrap_or_default()
            .to_owned(),
        number: current.version_number().unwrap_or(1),
        latest,
        options: current
            .launch_template_data()
            .and_then(|d| d.metadata_options())
            .cloned(),
    })
}

/// The one writer of a template fix: a new version from `current` (`SourceVersion`,
/// every other parameter inherited) whose `MetadataOptions` are `wanted` with IPv6 and
/// instance tags as `current` has them, made the default with `set_default`, read back.
/// Its number.
pub(crate) async fn write_version(
    api: &FleetApi,
    template: &TemplateRef,
    current: &DefaultVersion,
    wanted: Wanted,
    description: &str,
    set_default: bool,
) -> Result<i64, InstanceError> {
    let asked = request_options(current.options.as_ref(), wanted);
    let mut create = api
        .ec2
        .create_launch_template_version()
        .source_version(current.number.to_string())
        .version_description(description)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .metadata_options(asked.clone())
                .build(),
        );
    create = match template {
        TemplateRef::Id(id) => create.launch_template_id(id),
        TemplateRef::Name(name) => create.launch_template_name(name),
    };
    let created = create
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("CreateLaunchTemplateVersion", &e))?;
    let version = created
        .launch_template_version()
        .and_then(LaunchTemplateVersion::version_number)
        .ok_or_else(|| InstanceError::Api {
            action: "CreateLaunchTemplateVersion",
            code: "NoVersionNumber".into(),
            message: "the answer named no version".into(),
        })?;
    if set_default {
        let mut modify = api
            .ec2
            .modify_launch_template()
            .default_version(version.to_string());
        modify = match template {
            TemplateRef::Id(id) => modify.launch_template_id(id),
            TemplateRef::Name(name) => modify.launch_template_name(name),
        };
        modify
            .send()
            .await
            .map_err(|e| InstanceError::from_sdk("ModifyLaunchTemplate", &e))?;
    }
    let check = describe_versions(api, template, &[&version.to_string()]).await?;
    let made = version_of(&check, "new")?;
    let options = made
        .launch_template_data()
        .and_then(|d| d.metadata_options());
    let left = plan(options, &wanted);
    // What the request carried over must read back; what it left unset EC2 may fill.
    let kept = asked.http_protocol_ipv6().is_none_or(|v| {
        options.and_then(LaunchTemplateInstanceMetadataOptions::http_protocol_ipv6) == Some(v)
    }) && asked.instance_metadata_tags().is_none_or(|v| {
        options.and_then(LaunchTemplateInstanceMetadataOptions::instance_metadata_tags) == Some(v)
    });
    if !left.is_empty() || !kept {
        return Err(InstanceError::Api {
            action: "CreateLaunchTemplateVersion",
            code: "NotAsAsked".into(),
            message: format!("version {version} reads back with {options:?}, not as asked"),
        });
    }
    Ok(version)
}

/// Runs `enforce --launch-template`, printing as it goes.
pub async fn enforce(
    api: &FleetApi,
    template: &TemplateRef,
    need: &Need,
    set_default: bool,
    apply: bool,
) -> Result<TemplateOutcome, InstanceError> {
    let wanted = Wanted::for_need(need.hop_limit);
    let current = read_default(api, template).await?;
    let default_number = current.number;
    let changes = plan(current.options.as_ref(), &wanted);
    println!(
        "launch template {} ({}), default version {default_number}: {} needs hop limit {} (from {})",
        current.id, current.name, need.topology, need.hop_limit, need.source
    );
    if changes.is_empty() {
        println!("no change needed: the default version has exactly the need, tokens required and the endpoint enabled");
        return Ok(TemplateOutcome::NoChange);
    }
    for (field, from, to) in &changes {
        println!("  {field:<24} {from} -> {to}");
    }
    let new_version = current.latest + 1;
    let description = format!(
        "imds-shim: hop limit {} for {}",
        need.hop_limit, need.topology
    );
    println!(
        "a new version {new_version} from version {default_number}, every other parameter unchanged{}",
        if set_default { ", made the default" } else { "" }
    );
    print!(
        "the same with the AWS CLI:\n{}",
        cli_commands(
            template,
            default_number,
            new_version,
            &wanted,
            &description,
            set_default
        )
    );
    if !set_default {
        println!(
            "note: without --set-default the default version stays {default_number}: Auto Scaling groups and \
             launches that use $Default keep getting its options (those that use $Latest get the new one)"
        );
    }
    if !apply {
        println!("dry run: nothing changed; run again with --apply to make this change");
        return Ok(TemplateOutcome::DryRun);
    }
    let version = write_version(api, template, &current, wanted, &description, set_default).await?;
    println!("created version {version}");
    if set_default {
        println!("version {version} is now the default");
    }
    println!(
        "read back: version {version} has hop limit {}, tokens {}, endpoint {}",
        wanted.hop_limit, wanted.http_tokens, wanted.http_endpoint
    );
    Ok(TemplateOutcome::Applied { version })
}

/// The hop limit a template version's options give, for messages: `None` when unset.
pub fn hop_limit_of(options: Option<&LaunchTemplateInstanceMetadataOptions>) -> Option<HopLimit> {
    options
        .and_then(
            aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptions::http_put_response_hop_limit,
        )
        .and_then(|h| u32::try_from(h).ok())
        .and_then(|h| HopLimit::new(h).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_commands() {
        let wanted = Wanted::for_need(HopLimit::new(3).unwrap());
        insta::assert_snapshot!(cli_commands(
            &TemplateRef::parse("earthly-builders"),
            1,
            4,
            &wanted,
            "imds-shim: hop limit 3 for earthly-run",
            true
        ));
        assert!(
            cli_commands(&TemplateRef::parse("lt-0123"), 1, 2, &wanted, "d", false).starts_with(
                "  aws ec2 create-launch-template-version --launch-template-id lt-0123 "
            )
        );
    }

    #[test]
    fn the_plan_names_unset_fields() {
        let wanted = Wanted::for_need(HopLimit::new(3).unwrap());
        let changes = plan(None, &wanted);
        assert_eq!(changes.len(), 3);
        assert_eq!(
            changes[0],
            ("HttpPutResponseHopLimit", "(not set)".into(), "3".into())
        );
        let right = LaunchTemplateInstanceMetadataOptions::builder()
            .http_put_response_hop_limit(3)
            .http_tokens(LaunchTemplateHttpTokensState::Required)
            .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
            .build();
        assert!(plan(Some(&right), &wanted).is_empty());
    }
}
