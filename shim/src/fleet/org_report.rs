//! What `imds-shim audit --organization` writes: one record per resource as it is
//! audited (JSON lines with `--json`), one per account and region when it is done, the
//! accounts, regions and scopes it skipped or could not audit, and the totals last.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};
use serde::Serialize;
use strum::VariantArray;

use super::api::CallCounts;
use super::audit::{AuditRow, AuditVerdict};
use super::compliance::{Compliance, ResourceKind};

/// Metadata options as a resource sets them: `None` where it sets nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SetOptions {
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: Option<HopLimit>,
    /// `HttpTokens`.
    pub http_tokens: Option<HttpTokens>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<HttpEndpoint>,
}

/// The options a new instance gets from a source: what it sets, else the account's
/// defaults, else EC2's own (hop limit 1, tokens optional unless the AMI says
/// otherwise, endpoint enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: HopLimit,
    /// `HttpTokens`.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`.
    pub http_endpoint: HttpEndpoint,
}

impl SetOptions {
    /// These, then `under` where these set nothing, then EC2's own defaults.
    pub fn effective(self, under: Option<SetOptions>) -> Effective {
        let under = under.unwrap_or(SetOptions {
            hop_limit: None,
            http_tokens: None,
            http_endpoint: None,
        });
        Effective {
            hop_limit: self.hop_limit.or(under.hop_limit).unwrap_or(HopLimit::MIN),
            http_tokens: self
                .http_tokens
                .or(under.http_tokens)
                .unwrap_or(HttpTokens::Optional),
            http_endpoint: self
                .http_endpoint
                .or(under.http_endpoint)
                .unwrap_or(HttpEndpoint::Enabled),
        }
    }
}

/// Where a source's need came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceNeedFrom {
    /// The largest need of the running instances launched from it.
    Instances,
    /// `--topology`/`--need`.
    Default,
}

/// A launch template's default version, or an account's defaults in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRecord {
    /// `lt-...` (launch templates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_template_id: Option<String>,
    /// Its name (launch templates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its default version (launch templates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_version: Option<i64>,
    /// What it sets.
    pub set: SetOptions,
    /// What a new instance gets from it.
    pub effective: Effective,
    /// What the builds launched from it need (`None`: unknown).
    pub need: Option<HopLimit>,
    /// Where that need came from.
    pub need_from: SourceNeedFrom,
    /// The verdict of the effective options against the need.
    pub verdict: AuditVerdict,
    /// The checks it trips, today and after the fix.
    pub compliance: Compliance,
}

/// One line of the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// A running instance.
    Instance {
        /// Its account.
        account: String,
        /// Its region.
        region: String,
        /// The audit of it.
        #[serde(flatten)]
        row: AuditRow,
        /// The checks it trips.
        compliance: Compliance,
        /// How to fix it in place (new instances get the source's options).
        #[serde(skip_serializing_if = "Option::is_none")]
        fix: Option<String>,
    },
    /// A launch template's default version.
    LaunchTemplate {
        /// Its account.
        account: String,
        /// Its region.
        region: String,
        /// The audit of it.
        #[serde(flatten)]
        source: SourceRecord,
    },
    /// An account's instance metadata defaults in a region.
    AccountDefaults {
        /// The account.
        account: String,
        /// The region.
        region: String,
        /// The audit of them.
        #[serde(flatten)]
        source: SourceRecord,
    },
    /// An account left out: not active.
    AccountSkipped {
        /// The account.
        account: String,
        /// Its status (`SUSPENDED`, `PENDING_CLOSURE`).
        status: String,
    },
    /// A region left out of `--regions all`: the account has not enabled it.
    RegionSkipped {
        /// The account.
        account: String,
        /// The region.
        region: String,
        /// Its opt-in status.
        opt_in_status: String,
    },
    /// An account (`region` none: all of its regions) or a region of it that could
    /// not be audited, and why. Never counted as right.
    NotAudited {
        /// The account.
        account: String,
        /// The region, if the failure is of one.
        region: Option<String>,
        /// Why.
        reason: String,
    },
    /// A fix at the source (`enforce --organization`), planned or made.
    Fix {
        /// The account.
        account: String,
        /// The region.
        region: String,
        /// The launch template (id, name, version) or `account defaults`.
        resource: String,
        /// Its verdict before.
        was: AuditVerdict,
        /// `FIELD from -> to`, each field that changes.
        changes: Vec<String>,
        /// Planned, applied or failed.
        status: FixStatus,
    },
    /// One account in one region, audited.
    Scope(ScopeSummary),
    /// The totals, last.
    Summary(OrgSummary),
}

/// What became of a fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "detail")]
pub enum FixStatus {
    /// A dry run: nothing changed.
    Planned,
    /// Made, with what was made.
    Applied(String),
    /// Refused, with why.
    Failed(String),
}

impl Record {
    /// One line of text for a fix.
    pub fn fix_line(&self) -> Option<String> {
        let Record::Fix {
            account,
            region,
            resource,
            was,
            changes,
            status,
        } = self
        else {
            return None;
        };
        let status = match status {
            FixStatus::Planned => "planned (dry run; --apply makes it)".to_owned(),
            FixStatus::Applied(what) => format!("applied: {what}"),
            FixStatus::Failed(why) => format!("FAILED: {why}"),
        };
        Some(format!(
            "{account} {region} {resource} ({}): {}; {status}\n",
            was.short(),
            changes.join(", ")
        ))
    }
}

/// Verdict counts of each kind of resource, every verdict listed.
pub type KindCounts = BTreeMap<ResourceKind, BTreeMap<AuditVerdict, usize>>;

/// An empty [`KindCounts`].
pub fn empty_counts() -> KindCounts {
    [
        ResourceKind::Instance,
        ResourceKind::LaunchTemplate,
        ResourceKind::AccountDefaults,
    ]
    .into_iter()
    .map(|k| (k, AuditVerdict::VARIANTS.iter().map(|v| (*v, 0)).collect()))
    .collect()
}

/// Adds `from` to `into`.
pub fn add_counts(into: &mut KindCounts, from: &KindCounts) {
    for (kind, verdicts) in from {
        let slot = into.entry(*kind).or_default();
        for (v, n) in verdicts {
            *slot.entry(*v).or_default() += n;
        }
    }
}

/// How many fixes at the source (`enforce --organization`) were planned, made, refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FixCounts {
    /// Planned (a dry run).
    pub planned: usize,
    /// Made and read back.
    pub applied: usize,
    /// Refused or not as asked.
    pub failed: usize,
}

impl FixCounts {
    /// Counts `status`.
    pub fn count(&mut self, status: &FixStatus) {
        match status {
            FixStatus::Planned => self.planned += 1,
            FixStatus::Applied(_) => self.applied += 1,
            FixStatus::Failed(_) => self.failed += 1,
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: FixCounts) {
        self.planned += other.planned;
        self.applied += other.applied;
        self.failed += other.failed;
    }

    /// `N planned, N applied, N FAILED`, the non-zero ones.
    pub fn text(&self) -> String {
        [
            (self.planned, "planned"),
            (self.applied, "applied"),
            (self.failed, "FAILED"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// No fix at all (an audit).
    pub fn is_empty(&self) -> bool {
        *self == FixCounts::default()
    }
}

/// One account in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeSummary {
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
    /// Verdicts by kind of resource.
    pub verdicts: KindCounts,
    /// `DescribeInstances` pages.
    pub pages: u64,
    /// EC2 calls, attempts and throttled answers (retried) in this scope.
    pub api: CallCounts,
    /// Its fixes at the source (`enforce --organization` only).
    #[serde(skip_serializing_if = "FixCounts::is_empty")]
    pub fixes: FixCounts,
}

/// A scope that could not be audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unaudited {
    /// The account.
    pub account: String,
    /// The region (`None`: the whole account).
    pub region: Option<String>,
    /// Why.
    pub reason: String,
}

/// The totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgSummary {
    /// Accounts listed (or given).
    pub accounts: usize,
    /// Accounts left out as not active.
    pub accounts_skipped: usize,
    /// Account × region scopes audited in full.
    pub scopes_audited: usize,
    /// Regions left out as not enabled (with `--regions all`).
    pub regions_skipped: usize,
    /// What could not be audited, and why.
    pub not_audited: Vec<Unaudited>,
    /// Verdicts by kind of resource, over every audited scope.
    pub verdicts: KindCounts,
    /// EC2 calls, attempts and throttled answers, over every scope and the region
    /// look-ups.
    pub api: CallCounts,
    /// The largest number of EC2 calls one scope made.
    pub max_calls_per_scope: u64,
    /// The fixes at the source (`enforce --organization` only).
    #[serde(skip_serializing_if = "FixCounts::is_empty")]
    pub fixes: FixCounts,
    /// The exit status.
    pub exit_code: u8,
}

fn counts_text(verdicts: &BTreeMap<AuditVerdict, usize>) -> String {
    let parts: Vec<String> = AuditVerdict::VARIANTS
        .iter()
        .filter_map(|v| {
            let n = verdicts.get(v).copied().unwrap_or(0);
            (n > 0).then(|| format!("{n} {}", v.short()))
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl ScopeSummary {
    /// One line: account, region, then each kind's verdicts.
    pub fn line(&self) -> String {
        let of = |k| counts_text(&self.verdicts[&k]);
        let mut line = format!(
            "{} {:<14} instances: {}; launch templates: {}; account defaults: {}",
            self.account,
            self.region,
            of(ResourceKind::Instance),
            of(ResourceKind::LaunchTemplate),
            of(ResourceKind::AccountDefaults),
        );
        if self.api.throttled > 0 {
            let _ = write!(line, " ({} throttled and retried)", self.api.throttled);
        }
        if !self.fixes.is_empty() {
            let _ = write!(line, "; fixes: {}", self.fixes.text());
        }
        line
    }
}

impl OrgSummary {
    /// The closing lines: what was not audited, then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for u in &self.not_audited {
            let _ = writeln!(
                out,
                "NOT AUDITED {} {}: {}",
                u.account,
                u.region.as_deref().unwrap_or("(every region)"),
                u.reason
            );
        }
        let of = |k| counts_text(&self.verdicts[&k]);
        let _ = writeln!(
            out,
            "audited {} scopes of {} accounts ({} not active skipped, {} regions not enabled \
             skipped, {} not audited; {} EC2 calls, {} throttled and retried)",
            self.scopes_audited,
            self.accounts,
            self.accounts_skipped,
            self.regions_skipped,
            self.not_audited.len(),
            self.api.calls,
            self.api.throttled,
        );
        let _ = writeln!(out, "  instances:        {}", of(ResourceKind::Instance));
        let _ = writeln!(
            out,
            "  launch templates: {}",
            of(ResourceKind::LaunchTemplate)
        );
        let _ = writeln!(
            out,
            "  account defaults: {}",
            of(ResourceKind::AccountDefaults)
        );
        if !self.fixes.is_empty() {
            let _ = writeln!(out, "  fixes:            {}", self.fixes.text());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_options_fall_through_to_the_defaults_then_ec2s() {
        let nothing = SetOptions {
            hop_limit: None,
            http_tokens: None,
            http_endpoint: None,
        };
        let e = nothing.effective(None);
        assert_eq!(e.hop_limit.get(), 1);
        assert_eq!(e.http_tokens, HttpTokens::Optional);
        let defaults = SetOptions {
            hop_limit: HopLimit::new(2).ok(),
            http_tokens: Some(HttpTokens::Required),
            http_endpoint: None,
        };
        let e = nothing.effective(Some(defaults));
        assert_eq!(
            (e.hop_limit.get(), e.http_tokens),
            (2, HttpTokens::Required)
        );
        let template = SetOptions {
            hop_limit: HopLimit::new(3).ok(),
            ..nothing
        };
        assert_eq!(template.effective(Some(defaults)).hop_limit.get(), 3);
    }

    #[test]
    fn records_say_what_they_are() {
        let r = Record::NotAudited {
            account: "111122223333".into(),
            region: None,
            reason: "AccessDenied".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["record"], "not-audited");
        assert_eq!(v["region"], serde_json::Value::Null);
        let mut a = empty_counts();
        let mut b = empty_counts();
        *b.get_mut(&ResourceKind::Instance)
            .unwrap()
            .get_mut(&AuditVerdict::TooLow)
            .unwrap() = 2;
        add_counts(&mut a, &b);
        add_counts(&mut a, &b);
        assert_eq!(a[&ResourceKind::Instance][&AuditVerdict::TooLow], 4);
    }
}
