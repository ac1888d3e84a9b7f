//! The audit of one account in one region: its instance metadata defaults, every
//! instance (paged), every launch template's default version; each a record sent on as
//! soon as it is judged, so that nothing of the scope is kept but counts.

use std::collections::HashMap;

use aws_sdk_ec2::types::{
    InstanceMetadataDefaultsResponse, LaunchTemplate, LaunchTemplateInstanceMetadataOptions,
    LaunchTemplateVersion, Reservation,
};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};
use tokio::sync::mpsc::Sender;

use super::api::FleetApi;
use super::audit::{self, AuditRequest, AuditVerdict, Needs};
use super::compliance::{Compliance, ResourceKind};
use super::org_report::{
    empty_counts, FixCounts, Record, ScopeSummary, SetOptions, SourceNeedFrom, SourceRecord,
};
use crate::instance::InstanceError;

/// `DescribeLaunchTemplates` page size: EC2's largest.
const TEMPLATE_PAGE: i32 = 200;

/// Where the records go. A closed receiver (the reader stopped) ends nothing: the
/// counts still come back.
pub(crate) struct Out<'a> {
    pub(crate) tx: &'a Sender<Record>,
    pub(crate) account: &'a str,
    pub(crate) region: &'a str,
}

impl Out<'_> {
    async fn send(&self, record: Record) {
        let _ = self.tx.send(record).await;
    }
}

fn parse_hops(value: Option<i32>) -> Option<HopLimit> {
    value
        .and_then(|v| u32::try_from(v).ok())
        .and_then(|v| HopLimit::new(v).ok())
}

fn template_options(options: Option<&LaunchTemplateInstanceMetadataOptions>) -> SetOptions {
    SetOptions {
        hop_limit: parse_hops(
            options.and_then(LaunchTemplateInstanceMetadataOptions::http_put_response_hop_limit),
        ),
        http_tokens: options
            .and_then(|o| o.http_tokens())
            .and_then(|t| t.as_str().parse().ok()),
        http_endpoint: options
            .and_then(|o| o.http_endpoint())
            .and_then(|e| e.as_str().parse().ok()),
    }
}

fn source_record(
    kind: ResourceKind,
    set: SetOptions,
    under: Option<SetOptions>,
    need: Option<HopLimit>,
    need_from: SourceNeedFrom,
) -> SourceRecord {
    let effective = set.effective(under);
    SourceRecord {
        launch_template_id: None,
        name: None,
        default_version: None,
        set,
        effective,
        need,
        need_from,
        verdict: AuditVerdict::of(
            effective.hop_limit,
            effective.http_tokens,
            effective.http_endpoint,
            need,
        ),
        compliance: Compliance::of(kind, effective.hop_limit, effective.http_tokens, need),
    }
}

/// The command that fixes a running instance in place.
fn instance_fix(
    instance_id: &str,
    verdict: AuditVerdict,
    need: Option<HopLimit>,
) -> Option<String> {
    let need = need?;
    (verdict != AuditVerdict::Right).then(|| {
        format!(
            "replace it (new instances get the source's options) or: aws ec2 \
             modify-instance-metadata-options --instance-id {instance_id} \
             --http-put-response-hop-limit {need} --http-tokens {} --http-endpoint {}",
            HttpTokens::Required,
            HttpEndpoint::Enabled
        )
    })
}

/// Audits the scope `api` calls, sending each record to `out`.
pub(crate) async fn audit_scope(
    api: &FleetApi,
    request: &AuditRequest,
    out: &Out<'_>,
) -> Result<ScopeSummary, InstanceError> {
    let mut verdicts = empty_counts();
    let mut count = |kind: ResourceKind, verdict: AuditVerdict| {
        *verdicts
            .get_mut(&kind)
            .and_then(|v| v.get_mut(&verdict))
            .expect("every kind and verdict") += 1;
    };
    let default_need = request.default_need.hop_limit;

    let defaults = api
        .ec2
        .get_instance_metadata_defaults()
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("GetInstanceMetadataDefaults", &e))?;
    let level = defaults.account_level();
    let defaults_set = SetOptions {
        hop_limit: parse_hops(
            level.and_then(InstanceMetadataDefaultsResponse::http_put_response_hop_limit),
        ),
        http_tokens: level
            .and_then(|d| d.http_tokens())
            .and_then(|t| t.as_str().parse().ok()),
        http_endpoint: level
            .and_then(|d| d.http_endpoint())
            .and_then(|e| e.as_str().parse().ok()),
    };
    let record = source_record(
        ResourceKind::AccountDefaults,
        defaults_set,
        None,
        Some(default_need),
        SourceNeedFrom::Default,
    );
    count(ResourceKind::AccountDefaults, record.verdict);
    out.send(Record::AccountDefaults {
        account: out.account.to_owned(),
        region: out.region.to_owned(),
        source: record,
    })
    .await;

    // The largest known need of the instances launched from each template.
    let mut template_needs: HashMap<String, HopLimit> = HashMap::new();
    let mut needs = Needs::new(request);
    let mut pages = audit::instance_pages(api, request).send();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| InstanceError::from_sdk("DescribeInstances", &e))?;
        page_count += 1;
        for instance in page.reservations().iter().flat_map(Reservation::instances) {
            let Some(row) = audit::row(instance, &mut needs)? else {
                continue;
            };
            if let (Some(template), Some(need)) = (&row.launch_template, row.need) {
                let id = template.split(':').next().unwrap_or(template);
                let slot = template_needs.entry(id.to_owned()).or_insert(need);
                *slot = (*slot).max(need);
            }
            count(ResourceKind::Instance, row.verdict);
            let compliance = Compliance::of(
                ResourceKind::Instance,
                row.hop_limit,
                row.http_tokens,
                row.need,
            );
            let fix = instance_fix(&row.instance_id, row.verdict, row.need);
            out.send(Record::Instance {
                account: out.account.to_owned(),
                region: out.region.to_owned(),
                row,
                compliance,
                fix,
            })
            .await;
        }
    }

    let mut templates = api
        .ec2
        .describe_launch_templates()
        .max_results(TEMPLATE_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = templates.next().await {
        let page = page.map_err(|e| InstanceError::from_sdk("DescribeLaunchTemplates", &e))?;
        for template in page.launch_templates() {
            let record =
                audit_template(api, template, defaults_set, &template_needs, default_need).await?;
            count(ResourceKind::LaunchTemplate, record.verdict);
            out.send(Record::LaunchTemplate {
                account: out.account.to_owned(),
                region: out.region.to_owned(),
                source: record,
            })
            .await;
        }
    }
    Ok(ScopeSummary {
        account: out.account.to_owned(),
        region: out.region.to_owned(),
        verdicts,
        pages: page_count,
        api: api.counts(),
        fixes: FixCounts::default(),
    })
}

async fn audit_template(
    api: &FleetApi,
    template: &LaunchTemplate,
    defaults: SetOptions,
    template_needs: &HashMap<String, HopLimit>,
    default_need: HopLimit,
) -> Result<SourceRecord, InstanceError> {
    let id = template.launch_template_id().unwrap_or_default().to_owned();
    let versions = api
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions("$Default")
        .send()
        .await
        .map_err(|e| InstanceError::from_sdk("DescribeLaunchTemplateVersions", &e))?;
    let version = versions.launch_template_versions().first();
    let set = template_options(
        version
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.metadata_options()),
    );
    let (need, need_from) = match template_needs.get(&id) {
        Some(need) => (*need, SourceNeedFrom::Instances),
        None => (default_need, SourceNeedFrom::Default),
    };
    let mut record = source_record(
        ResourceKind::LaunchTemplate,
        set,
        Some(defaults),
        Some(need),
        need_from,
    );
    record.name = template.launch_template_name().map(str::to_owned);
    record.default_version = template
        .default_version_number()
        .or_else(|| version.and_then(LaunchTemplateVersion::version_number));
    record.launch_template_id = Some(id);
    Ok(record)
}
