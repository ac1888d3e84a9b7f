//! `imds-shim enforce --organization --launch-templates --account-defaults`: in every
//! account and region (the walk of `audit --organization`), the sources whose options
//! are not exactly what their builds need (each launch template's default version
//! against the largest need of the instances launched from it; the account's defaults
//! against `--topology`/`--need`), the change that fixes each, and with `--apply` the
//! change made: a new template version from the default one with the need, tokens
//! required, the endpoint enabled, made the default; the defaults set likewise. Running
//! instances keep their options: the audit after names them.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{LaunchTemplateVersion, RequestLaunchTemplateData};
use tokio::sync::mpsc::{self, Sender};

use super::api::FleetApi;
use super::audit::{AuditRequest, AuditVerdict};
use super::defaults;
use super::launch_template::request_options;
use super::org_report::{FixStatus, OrgSummary, Record, ScopeSummary, SourceRecord};
use super::organization::{walk, OrgAuditError, OrgAuditRequest};
use super::scope_audit::{audit_scope, Out};
use super::Wanted;
use crate::instance::InstanceError;

/// What `enforce --organization` fixes.
#[derive(Debug, Clone)]
pub struct OrgEnforceRequest {
    /// Where, and the need.
    pub walk: OrgAuditRequest,
    /// The launch templates' default versions.
    pub launch_templates: bool,
    /// The accounts' instance metadata defaults.
    pub account_defaults: bool,
    /// Make the changes (else plan them only).
    pub apply: bool,
}

/// The fields of `source` that differ from `wanted`, as `FIELD from -> to`.
fn changes(source: &SourceRecord, wanted: Wanted) -> Vec<String> {
    let show = |v: Option<String>| v.unwrap_or_else(|| "(not set)".to_owned());
    [
        (
            "HttpPutResponseHopLimit",
            show(source.set.hop_limit.map(|h| h.to_string())),
            wanted.hop_limit.to_string(),
        ),
        (
            "HttpTokens",
            show(source.set.http_tokens.map(|t| t.to_string())),
            wanted.http_tokens.to_string(),
        ),
        (
            "HttpEndpoint",
            show(source.set.http_endpoint.map(|e| e.to_string())),
            wanted.http_endpoint.to_string(),
        ),
    ]
    .into_iter()
    .filter(|(_, from, to)| from != to)
    .map(|(field, from, to)| format!("{field} {from} -> {to}"))
    .collect()
}

async fn fix_template(
    api: &FleetApi,
    source: &SourceRecord,
    wanted: Wanted,
) -> Result<i64, InstanceError> {
    let id = source.launch_template_id.clone().unwrap_or_default();
    let mut create = api
        .ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .version_description(format!(
            "imds-shim enforce --organization: hop limit {}, tokens required",
            wanted.hop_limit
        ))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .metadata_options(request_options(None, wanted))
                .build(),
        );
    if let Some(version) = source.default_version {
        create = create.source_version(version.to_string());
    }
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
    api.ec2
        .modify_launch_template()
        .launch_template_id(&id)
        .default_version(version.to_string())
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("ModifyLaunchTemplate", &e))?;
    Ok(version)
}

/// Audits one scope (its records kept here), then plans and makes its fixes.
async fn enforce_scope(
    api: FleetApi,
    audit_request: Arc<AuditRequest>,
    request: Arc<OrgEnforceRequest>,
    account: String,
    region: String,
    tx: Sender<Record>,
) -> Result<ScopeSummary, InstanceError> {
    let (local, mut sources_rx) = mpsc::channel(256);
    let collect = tokio::spawn(async move {
        let mut sources = Vec::new();
        while let Some(record) = sources_rx.recv().await {
            match record {
                Record::LaunchTemplate { source, .. } if request_wants(&request, true) => {
                    sources.push((true, source));
                }
                Record::AccountDefaults { source, .. } if request_wants(&request, false) => {
                    sources.push((false, source));
                }
                _ => {}
            }
        }
        (sources, request)
    });
    let summary = audit_scope(
        &api,
        &audit_request,
        &Out {
            tx: &local,
            account: &account,
            region: &region,
        },
    )
    .await;
    drop(local);
    let (sources, request) = collect.await.map_err(|e| InstanceError::Api {
        action: "DescribeLaunchTemplates",
        code: "Internal".into(),
        message: format!("reading the scope's sources: {e}"),
    })?;
    let summary = summary?;
    for (is_template, source) in sources {
        let Some(need) = source.need else { continue };
        if source.verdict == AuditVerdict::Right {
            continue;
        }
        let wanted = Wanted::for_need(need);
        let resource = if is_template {
            format!(
                "launch template {} ({}) version {}",
                source.launch_template_id.as_deref().unwrap_or("?"),
                source.name.as_deref().unwrap_or("?"),
                source.default_version.unwrap_or(0)
            )
        } else {
            "account defaults".to_owned()
        };
        let status = if !request.apply {
            FixStatus::Planned
        } else if is_template {
            match fix_template(&api, &source, wanted).await {
                Ok(version) => FixStatus::Applied(format!("version {version}, now the default")),
                Err(e) => FixStatus::Failed(e.to_string()),
            }
        } else {
            match defaults::set(&api, wanted).await {
                Ok(()) => FixStatus::Applied("set".to_owned()),
                Err(e) => FixStatus::Failed(e.to_string()),
            }
        };
        let _ = tx
            .send(Record::Fix {
                account: account.clone(),
                region: region.clone(),
                resource,
                was: source.verdict,
                changes: changes(&source, wanted),
                status,
            })
            .await;
    }
    Ok(summary)
}

fn request_wants(request: &OrgEnforceRequest, template: bool) -> bool {
    if template {
        request.launch_templates
    } else {
        request.account_defaults
    }
}

/// Plans (and with `apply` makes) the fixes in every account and region; each a
/// [`Record::Fix`] to `tx`. The summary's verdicts are those before the fixes.
pub async fn enforce_organization(
    sdk: &SdkConfig,
    request: &OrgEnforceRequest,
    tx: Sender<Record>,
) -> Result<OrgSummary, OrgAuditError> {
    let audit_request = Arc::new(request.walk.audit.clone());
    let shared = Arc::new(request.clone());
    walk(sdk, &request.walk, tx, move |api, account, region, tx| {
        enforce_scope(
            api,
            audit_request.clone(),
            shared.clone(),
            account,
            region,
            tx,
        )
    })
    .await
}
