//! Where one instance came from, read from the tags EC2 puts on it: the Auto Scaling
//! group that launched it (`aws:autoscaling:groupName`) and the launch template and
//! version (`aws:ec2launchtemplate:id`, `aws:ec2launchtemplate:version`). A change made
//! to the instance alone is undone when the group replaces it, or when the next instance
//! is launched from a template version with other options.

use std::collections::BTreeMap;

use imds_vocab::HttpTokens;

use super::launch_template::hop_limit_of;
use crate::baseline::Need;
use crate::instance::InstanceError;
use imds_vocab::tags::{
    ASG as ASG_TAG, LAUNCH_TEMPLATE_ID as LAUNCH_TEMPLATE_ID_TAG,
    LAUNCH_TEMPLATE_VERSION as LAUNCH_TEMPLATE_VERSION_TAG,
};

/// What the instance's tags say about where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The Auto Scaling group.
    pub auto_scaling_group: Option<String>,
    /// The launch template's id and the version it was launched from.
    pub launch_template: Option<(String, String)>,
}

impl Origin {
    /// From the instance's tags.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Self {
        Origin {
            auto_scaling_group: tags.get(ASG_TAG).cloned(),
            launch_template: tags.get(LAUNCH_TEMPLATE_ID_TAG).map(|id| {
                let version = tags
                    .get(LAUNCH_TEMPLATE_VERSION_TAG)
                    .cloned()
                    .unwrap_or_else(|| "$Default".into());
                (id.clone(), version)
            }),
        }
    }
}

/// The notes `enforce` prints about where the instance came from; empty for an
/// instance launched on its own.
pub async fn notes(ec2: &aws_sdk_ec2::Client, origin: &Origin, need: &Need) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(group) = &origin.auto_scaling_group {
        notes.push(format!(
            "note: this instance belongs to Auto Scaling group {group}: the group replaces instances \
             (scale-in, health checks, instance refresh) and a replacement comes with its launch \
             template's metadata options, not with this change"
        ));
    }
    let Some((id, version)) = &origin.launch_template else {
        if origin.auto_scaling_group.is_some() {
            notes.push("note: fix the group's launch template: imds-shim enforce --launch-template ID --set-default --apply".into());
        }
        return notes;
    };
    let read = ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(version)
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("DescribeLaunchTemplateVersions", &e));
    let options = match read {
        Ok(out) => out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.metadata_options())
            .cloned(),
        Err(e) => {
            notes.push(format!(
                "note: it was launched from launch template {id} version {version}, which could not be read ({e})"
            ));
            return notes;
        }
    };
    let hop_limit = hop_limit_of(options.as_ref());
    let tokens_required = options
        .as_ref()
        .and_then(|m| m.http_tokens())
        .is_some_and(|t| t.as_str() == HttpTokens::Required.as_ref());
    if hop_limit == Some(need.hop_limit) && tokens_required {
        notes.push(format!(
            "note: it was launched from launch template {id} version {version}, which already sets hop limit {} and tokens required",
            need.hop_limit
        ));
    } else {
        let gives = hop_limit.map_or_else(
            || "no hop limit (the account's default, else the AMI's, else 1)".to_owned(),
            |h| format!("hop limit {h}"),
        );
        notes.push(format!(
            "note: it was launched from launch template {id} version {version}, which sets {gives}{}: \
             instances launched from it will undo this change; fix the template too: \
             imds-shim enforce --launch-template {id} --set-default --apply",
            if tokens_required { "" } else { " and does not require tokens" }
        ));
    }
    notes
}
