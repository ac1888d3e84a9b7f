//! `imds-shim audit`: every instance `DescribeInstances` lists (paged as EC2 pages it),
//! its hop limit and tokens mode against what its builds need, and a verdict.
//!
//! The need of an instance: its `imds-shim:topology` tag, looked up in the baseline; an
//! instance without the tag gets the need of `--topology`/`--need`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_ec2::operation::describe_instances::paginator::DescribeInstancesPaginator;
use aws_sdk_ec2::types::{Filter, Instance};
use imds_vocab::tags::{
    ASG as ASG_TAG, LAUNCH_TEMPLATE_ID as LAUNCH_TEMPLATE_ID_TAG,
    LAUNCH_TEMPLATE_VERSION as LAUNCH_TEMPLATE_VERSION_TAG, NAME as NAME_TAG,
    TOPOLOGY as TOPOLOGY_TAG,
};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, OptionError, Topology};
use serde::Serialize;
use strum::VariantArray;

use super::api::{CallCounts, FleetApi};
use crate::baseline::{self, Need};
use crate::instance::InstanceError;

/// `DescribeInstances` page size: EC2's largest.
const PAGE_SIZE: i32 = 1000;

/// One instance's verdict, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, VariantArray)]
#[serde(rename_all = "kebab-case")]
pub enum AuditVerdict {
    /// `HttpEndpoint=disabled`: no build there gets credentials from IMDS.
    EndpointDisabled,
    /// The hop limit is below the need: builds fail.
    TooLow,
    /// Its topology tag names nothing the baseline records: no need to compare with.
    UnknownTopology,
    /// `HttpTokens=optional`: IMDSv1 answers at any depth, whatever the hop limit.
    TokensOptional,
    /// The hop limit is above the need: more exposure than needed.
    TooHigh,
    /// Exactly the need, tokens required.
    Right,
}

impl AuditVerdict {
    /// As the table and the summary say it.
    pub fn label(self) -> &'static str {
        match self {
            Self::EndpointDisabled => "endpoint disabled (builds fail)",
            Self::TooLow => "too low (builds fail)",
            Self::UnknownTopology => "unknown topology",
            Self::TokensOptional => "tokens optional (IMDSv1 open)",
            Self::TooHigh => "too high (more exposure than needed)",
            Self::Right => "right",
        }
    }

    pub(crate) fn short(self) -> &'static str {
        match self {
            Self::EndpointDisabled => "endpoint disabled",
            Self::TooLow => "too low",
            Self::UnknownTopology => "unknown topology",
            Self::TokensOptional => "tokens optional",
            Self::TooHigh => "too high",
            Self::Right => "right",
        }
    }

    /// The verdict for these options against `need` (`None`: the need is unknown).
    pub fn of(
        hop_limit: HopLimit,
        http_tokens: HttpTokens,
        http_endpoint: HttpEndpoint,
        need: Option<HopLimit>,
    ) -> Self {
        let Some(need) = need else {
            return Self::UnknownTopology;
        };
        if http_endpoint == HttpEndpoint::Disabled {
            Self::EndpointDisabled
        } else if hop_limit < need {
            Self::TooLow
        } else if http_tokens == HttpTokens::Optional {
            Self::TokensOptional
        } else if hop_limit > need {
            Self::TooHigh
        } else {
            Self::Right
        }
    }
}

/// Where an instance's need came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeedFrom {
    /// Its `imds-shim:topology` tag.
    Tag,
    /// `--topology`/`--need`, for instances without the tag.
    Default,
}

/// One audited instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// `i-...`.
    pub instance_id: String,
    /// Its `Name` tag.
    pub name: Option<String>,
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: HopLimit,
    /// `HttpTokens`.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`.
    pub http_endpoint: HttpEndpoint,
    /// Where its builds run, as tagged or by default.
    pub topology: String,
    /// What they need (`None`: the topology is not in the baseline).
    pub need: Option<HopLimit>,
    /// Whether the need came from the instance's tag.
    pub need_from: NeedFrom,
    /// The verdict.
    pub verdict: AuditVerdict,
    /// The Auto Scaling group that launched it.
    pub auto_scaling_group: Option<String>,
    /// The launch template (id and version) it was launched from.
    pub launch_template: Option<String>,
}

/// The audit's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// Instances audited.
    pub instances: usize,
    /// Instances listed without metadata options (terminated), left out.
    pub skipped: usize,
    /// `DescribeInstances` pages.
    pub pages: u64,
    /// Instances per verdict (every verdict, zeros included).
    pub verdicts: BTreeMap<AuditVerdict, usize>,
    /// What was sent: calls, attempts, throttled answers.
    pub api: CallCounts,
    /// The exit status.
    pub exit_code: u8,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The totals.
    pub summary: AuditSummary,
    /// Every instance, worst verdict first, then by id.
    pub instances: Vec<AuditRow>,
    /// How long it took (not in the JSON: it differs from run to run).
    #[serde(skip)]
    pub elapsed: Duration,
}

/// What the audit looks at and compares with.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    /// `DescribeInstances` filters: name and values.
    pub filters: Vec<(String, Vec<String>)>,
    /// The need of an instance without a topology tag.
    pub default_need: Need,
    /// The baseline file the tags' topologies are looked up in (`None`: the usual one).
    pub baseline: Option<PathBuf>,
}

/// Parses `tag:KEY=VALUE` (or any `NAME=V1,V2` EC2 filter).
pub fn parse_filter(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, values) = text
        .split_once('=')
        .filter(|(name, values)| !name.is_empty() && !values.is_empty())
        .ok_or_else(|| format!("{text:?}: a filter is NAME=VALUE, e.g. tag:team=build"))?;
    Ok((
        name.to_owned(),
        values.split(',').map(str::to_owned).collect(),
    ))
}

/// The needs of topologies named by tags, each looked up once.
pub(crate) struct Needs<'a> {
    request: &'a AuditRequest,
    known: BTreeMap<String, Option<HopLimit>>,
}

impl<'a> Needs<'a> {
    /// None looked up yet.
    pub(crate) fn new(request: &'a AuditRequest) -> Self {
        Needs {
            request,
            known: BTreeMap::new(),
        }
    }
}

impl Needs<'_> {
    fn of(&mut self, tag: Option<&str>) -> (String, Option<HopLimit>, NeedFrom) {
        let Some(tag) = tag else {
            let need = &self.request.default_need;
            return (
                need.topology.to_string(),
                Some(need.hop_limit),
                NeedFrom::Default,
            );
        };
        let request = self.request;
        let need = *self.known.entry(tag.to_owned()).or_insert_with(|| {
            let topology = Topology::parse(tag).ok()?;
            baseline::resolve(topology, request.baseline.as_deref(), None)
                .ok()
                .map(|n| n.hop_limit)
        });
        (tag.to_owned(), need, NeedFrom::Tag)
    }
}

fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// One row, or `None` when the instance has no metadata options.
pub(crate) fn row(
    instance: &Instance,
    needs: &mut Needs<'_>,
) -> Result<Option<AuditRow>, InstanceError> {
    let Some(options) = instance.metadata_options() else {
        return Ok(None);
    };
    let instance_id = instance.instance_id().unwrap_or_default().to_owned();
    let unexpected = |source| InstanceError::Unexpected {
        instance_id: instance_id.clone(),
        source,
    };
    let (Some(hops), Some(tokens), Some(endpoint)) = (
        options.http_put_response_hop_limit(),
        options.http_tokens(),
        options.http_endpoint(),
    ) else {
        return Ok(None);
    };
    let hop_limit = u32::try_from(hops)
        .map_err(|_| OptionError::HopLimitOutOfRange(hops.to_string()))
        .and_then(HopLimit::new)
        .map_err(unexpected)?;
    let http_tokens: HttpTokens = tokens.as_str().parse().map_err(unexpected)?;
    let http_endpoint: HttpEndpoint = endpoint.as_str().parse().map_err(unexpected)?;
    let (topology, need, need_from) = needs.of(tag(instance, TOPOLOGY_TAG));
    let launch_template = tag(instance, LAUNCH_TEMPLATE_ID_TAG).map(|id| {
        match tag(instance, LAUNCH_TEMPLATE_VERSION_TAG) {
            Some(version) => format!("{id}:{version}"),
            None => id.to_owned(),
        }
    });
    Ok(Some(AuditRow {
        name: tag(instance, NAME_TAG).map(str::to_owned),
        hop_limit,
        http_tokens,
        http_endpoint,
        topology,
        need,
        need_from,
        verdict: AuditVerdict::of(hop_limit, http_tokens, http_endpoint, need),
        auto_scaling_group: tag(instance, ASG_TAG).map(str::to_owned),
        launch_template,
        instance_id,
    }))
}

/// `DescribeInstances` with `request`'s filters, [`PAGE_SIZE`] a page.
pub(crate) fn instance_pages(api: &FleetApi, request: &AuditRequest) -> DescribeInstancesPaginator {
    let filters: Vec<Filter> = request
        .filters
        .iter()
        .map(|(name, values)| {
            Filter::builder()
                .name(name)
                .set_values(Some(values.clone()))
                .build()
        })
        .collect();
    api.ec2
        .describe_instances()
        .set_filters((!filters.is_empty()).then_some(filters))
        .max_results(PAGE_SIZE)
        .into_paginator()
}

/// Pages through `DescribeInstances` and judges every instance.
pub async fn audit(api: &FleetApi, request: &AuditRequest) -> Result<AuditReport, InstanceError> {
    const ACTION: &str = "DescribeInstances";
    let started = Instant::now();
    let mut pages = instance_pages(api, request).send();
    let mut needs = Needs::new(request);
    let (mut rows, mut skipped, mut page_count) = (Vec::new(), 0, 0);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| InstanceError::from_sdk(ACTION, &e))?;
        page_count += 1;
        for instance in page
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
        {
            match row(instance, &mut needs)? {
                Some(r) => rows.push(r),
                None => skipped += 1,
            }
        }
    }
    rows.sort_by(|a, b| (a.verdict, &a.instance_id).cmp(&(b.verdict, &b.instance_id)));
    let mut verdicts: BTreeMap<AuditVerdict, usize> =
        AuditVerdict::VARIANTS.iter().map(|v| (*v, 0)).collect();
    for r in &rows {
        *verdicts.entry(r.verdict).or_default() += 1;
    }
    let exit_code = exit_code(&verdicts);
    Ok(AuditReport {
        summary: AuditSummary {
            instances: rows.len(),
            skipped,
            pages: page_count,
            verdicts,
            api: api.counts(),
            exit_code,
        },
        instances: rows,
        elapsed: started.elapsed(),
    })
}

/// `1 page`, `6 pages`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// 1 when builds fail somewhere, 2 when an instance cannot be judged, 3 when some
/// instance is more exposed than needed, 0 when every one is right.
pub(crate) fn exit_code(verdicts: &BTreeMap<AuditVerdict, usize>) -> u8 {
    let any = |v: &[AuditVerdict]| v.iter().any(|v| verdicts.get(v).copied().unwrap_or(0) > 0);
    if any(&[AuditVerdict::EndpointDisabled, AuditVerdict::TooLow]) {
        1
    } else if any(&[AuditVerdict::UnknownTopology]) {
        2
    } else if any(&[AuditVerdict::TokensOptional, AuditVerdict::TooHigh]) {
        3
    } else {
        0
    }
}

impl AuditReport {
    /// The summary line.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let counts: Vec<String> = AuditVerdict::VARIANTS
            .iter()
            .filter_map(|v| {
                let n = s.verdicts.get(v).copied().unwrap_or(0);
                (n > 0 || *v == AuditVerdict::Right).then(|| format!("{n} {}", v.short()))
            })
            .collect();
        let mut line = format!(
            "audited {} ({}, {}",
            plural(s.instances as u64, "instance"),
            plural(s.pages, "page"),
            plural(s.api.calls, "call")
        );
        if s.api.throttled > 0 {
            let _ = write!(
                line,
                ", {} throttled (RequestLimitExceeded) and retried",
                s.api.throttled
            );
        }
        let _ = write!(line, "): {}", counts.join(", "));
        if s.skipped > 0 {
            let _ = write!(line, "; {} without metadata options left out", s.skipped);
        }
        line
    }

    /// The summary line, then the table; ends with a newline.
    pub fn render(&self) -> String {
        let header = [
            "INSTANCE",
            "NAME",
            "HOPS",
            "TOKENS",
            "NEED",
            "FOR",
            "VERDICT",
            "LAUNCHED BY",
        ];
        let cells: Vec<[String; 8]> = self
            .instances
            .iter()
            .map(|r| {
                let need = r.need.map_or("?".to_owned(), |n| n.to_string());
                let topology = match r.need_from {
                    NeedFrom::Tag => format!("{} (tag)", r.topology),
                    NeedFrom::Default => r.topology.clone(),
                };
                let tokens = if r.http_endpoint == HttpEndpoint::Disabled {
                    format!("{} (endpoint disabled)", r.http_tokens)
                } else {
                    r.http_tokens.to_string()
                };
                let launched_by = [
                    r.auto_scaling_group.as_ref().map(|g| format!("asg {g}")),
                    r.launch_template.as_ref().map(|t| format!("lt {t}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
                [
                    r.instance_id.clone(),
                    r.name.clone().unwrap_or_default(),
                    r.hop_limit.to_string(),
                    tokens,
                    need,
                    topology,
                    r.verdict.label().to_owned(),
                    launched_by,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!("{}\n", self.summary_line());
        let mut line = |cells: &[&str]| {
            let text: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", text.join("  ").trim_end());
        };
        line(&header);
        for row in &cells {
            line(&row.each_ref().map(String::as_str));
        }
        if let Some(note) = self.user_space_note() {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// For instances whose builds run behind a user-space network stack: the hop limit does
    /// not keep those builds from the role, and a fence on the host, which the EC2 API cannot
    /// show, is what does.
    pub fn user_space_note(&self) -> Option<String> {
        let behind: Vec<&str> = self
            .instances
            .iter()
            .filter(|r| {
                Topology::parse(&r.topology)
                    .is_ok_and(|t| crate::baseline::user_space_why(&t).is_some())
            })
            .map(|r| r.instance_id.as_str())
            .collect();
        if behind.is_empty() {
            return None;
        }
        Some(format!(
            "{} instance(s) run builds behind a user-space network stack ({}): no hop limit \
             keeps those builds from the instance role, only a fence on the host does, which \
             the EC2 API cannot show; check each with `imds-shim fence --user NAME --check` \
             (or `imds-shim check --topology ...`) on the host",
            behind.len(),
            behind.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    #[test]
    fn verdicts_in_order_of_what_matters() {
        use AuditVerdict::*;
        let (req, opt) = (HttpTokens::Required, HttpTokens::Optional);
        let (on, off) = (HttpEndpoint::Enabled, HttpEndpoint::Disabled);
        assert_eq!(AuditVerdict::of(hop(3), req, on, Some(hop(3))), Right);
        assert_eq!(AuditVerdict::of(hop(2), req, on, Some(hop(3))), TooLow);
        assert_eq!(AuditVerdict::of(hop(2), opt, on, Some(hop(3))), TooLow);
        assert_eq!(
            AuditVerdict::of(hop(3), opt, on, Some(hop(3))),
            TokensOptional
        );
        assert_eq!(
            AuditVerdict::of(hop(4), opt, on, Some(hop(3))),
            TokensOptional
        );
        assert_eq!(AuditVerdict::of(hop(4), req, on, Some(hop(3))), TooHigh);
        assert_eq!(
            AuditVerdict::of(hop(3), req, off, Some(hop(3))),
            EndpointDisabled
        );
        assert_eq!(AuditVerdict::of(hop(3), req, on, None), UnknownTopology);
    }

    #[test]
    fn exit_codes() {
        use AuditVerdict::*;
        let with = |v: &[AuditVerdict]| {
            let mut m: BTreeMap<AuditVerdict, usize> = BTreeMap::new();
            for x in v {
                *m.entry(*x).or_default() += 1;
            }
            exit_code(&m)
        };
        assert_eq!(with(&[Right]), 0);
        assert_eq!(with(&[Right, TooHigh]), 3);
        assert_eq!(with(&[Right, TokensOptional]), 3);
        assert_eq!(with(&[TooHigh, UnknownTopology]), 2);
        assert_eq!(with(&[TooHigh, UnknownTopology, TooLow]), 1);
        assert_eq!(with(&[EndpointDisabled]), 1);
    }

    #[test]
    fn filters_parse() {
        assert_eq!(
            parse_filter("tag:team=build,data").unwrap(),
            (
                "tag:team".to_owned(),
                vec!["build".to_owned(), "data".to_owned()]
            )
        );
        assert!(parse_filter("tag:team").is_err());
        assert!(parse_filter("=x").is_err());
    }

    fn sample() -> AuditReport {
        use HttpTokens::*;
        let row = |id: &str,
                   name: &str,
                   hops: u32,
                   tokens: HttpTokens,
                   topology: &str,
                   from: NeedFrom| {
            let need = match topology {
                "kaniko-run" => None,
                t => Some(Topology::parse(t).unwrap().min_hop_limit()),
            };
            AuditRow {
                instance_id: id.into(),
                name: Some(name.into()),
                hop_limit: hop(hops),
                http_tokens: tokens,
                http_endpoint: HttpEndpoint::Enabled,
                topology: topology.into(),
                need,
                need_from: from,
                verdict: AuditVerdict::of(hop(hops), tokens, HttpEndpoint::Enabled, need),
                auto_scaling_group: name.starts_with("gha").then(|| "gha-runners".into()),
                launch_template: name
                    .starts_with("gha")
                    .then(|| "lt-0aaaabbbbccccdddd:1".into()),
            }
        };
        let mut instances = vec![
            row(
                "i-0000000000000000a",
                "gha-runners-00001",
                2,
                Required,
                "docker-run",
                NeedFrom::Tag,
            ),
            row(
                "i-0000000000000000b",
                "earthly-builders-00002",
                1,
                Required,
                "earthly-run",
                NeedFrom::Tag,
            ),
            row(
                "i-0000000000000000c",
                "pets-00003",
                64,
                Required,
                "earthly-run",
                NeedFrom::Default,
            ),
            row(
                "i-0000000000000000d",
                "gha-runners-00004",
                2,
                Optional,
                "docker-run",
                NeedFrom::Tag,
            ),
            row(
                "i-0000000000000000e",
                "pets-00005",
                3,
                Required,
                "kaniko-run",
                NeedFrom::Tag,
            ),
        ];
        instances.sort_by(|a, b| (a.verdict, &a.instance_id).cmp(&(b.verdict, &b.instance_id)));
        let mut verdicts: BTreeMap<AuditVerdict, usize> =
            AuditVerdict::VARIANTS.iter().map(|v| (*v, 0)).collect();
        for r in &instances {
            *verdicts.entry(r.verdict).or_default() += 1;
        }
        AuditReport {
            summary: AuditSummary {
                instances: instances.len(),
                skipped: 0,
                pages: 1,
                api: CallCounts {
                    calls: 1,
                    attempts: 2,
                    throttled: 1,
                },
                exit_code: exit_code(&verdicts),
                verdicts,
            },
            instances,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn the_table() {
        insta::assert_snapshot!(sample().render());
    }

    #[test]
    fn builds_behind_a_user_space_stack_get_a_note_on_the_fence() {
        let mut report = sample();
        assert_eq!(report.user_space_note(), None);
        report.instances[0].topology = "podman-rootless-pasta".into();
        let id = report.instances[0].instance_id.clone();
        let note = report.user_space_note().unwrap();
        assert!(
            note.starts_with(&format!(
                "1 instance(s) run builds behind a user-space network stack ({id}): no hop \
                 limit keeps those builds from the instance role, only a fence on the host does"
            )),
            "{note}"
        );
        assert!(report.render().ends_with(&format!("note: {note}\n")));
    }

    #[test]
    fn the_json() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&sample()).unwrap());
    }
}
