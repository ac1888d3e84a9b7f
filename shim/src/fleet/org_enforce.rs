//! `imds-shim enforce --organization --launch-templates --account-defaults`: in every
//! account and region (the walk of `audit --organization`), the sources whose options
//! are not exactly what their builds need (each launch template's default version
//! against the largest need of the instances launched from it; the account's defaults
//! against `--topology`/`--need`), the change that fixes each, and with `--apply` the
//! change made: a new template version from the default one with the need, tokens
//! required, the endpoint enabled (IPv6 and instance tags kept), made the default, by
//! the writer of `enforce --launch-template`; the defaults set likewise. Running
//! instances keep their options: the audit after names them.

use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::sync::mpsc::{self, Sender};

use super::api::FleetApi;
use super::audit::{AuditRequest, AuditVerdict};
use super::defaults;
use super::launch_template::{read_default, write_version, TemplateRef};
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

/// A new default version of the template `source` names, by the one writer of
/// `enforce --launch-template` (IPv6 and instance tags as the default version has them).
async fn fix_template(
    api: &FleetApi,
    source: &SourceRecord,
    wanted: Wanted,
) -> Result<i64, InstanceError> {
    let template = TemplateRef::Id(source.launch_template_id.clone().unwrap_or_default());
    let current = read_default(api, &template).await?;
    let description = format!(
        "imds-shim enforce --organization: hop limit {}, tokens required",
        wanted.hop_limit
    );
    write_version(api, &template, &current, wanted, &description, true).await
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
    let mut summary = summary?;
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
        summary.fixes.count(&status);
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

/// The exit status: 2 when a scope could not be audited (unless `allow_partial`), else
/// 1 when a fix could not be made (whatever `allow_partial`), else 0.
pub fn exit_code(summary: &OrgSummary, allow_partial: bool) -> u8 {
    if !summary.not_audited.is_empty() && !allow_partial {
        2
    } else {
        u8::from(summary.fixes.failed > 0)
    }
}

/// Plans (and with `apply` makes) the fixes in every account and region; each a
/// [`Record::Fix`] to `tx`. The summary's verdicts are those before the fixes; its
/// `fixes` count what became of them.
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
