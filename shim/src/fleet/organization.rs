//! `imds-shim audit --organization`: every account of the organization (Organizations
//! `ListAccounts`, paged; accounts not active skipped and counted) or the ones given, a
//! session in each (STS `AssumeRole` into `--role-name`; the caller's own account with
//! its own credentials), the regions each has enabled (`DescribeRegions`), then every
//! account × region audited, at most `--concurrency` at a time, each with its own EC2
//! client: its throttling retried and counted on its own. Records go to the writer as
//! they come; what cannot be audited is said, with why, and never counted as right.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use futures_util::stream::{self, StreamExt as _};
use tokio::sync::mpsc::Sender;

use super::api::{CallCounts, FleetApi};
use super::audit::{self, AuditRequest, AuditVerdict};
use super::org_report::{
    add_counts, empty_counts, FixCounts, OrgSummary, Record, ScopeSummary, Unaudited,
};
use super::scope_audit::{audit_scope, Out};
use crate::instance::InstanceError;
use crate::probe::diagnosis::chain;

/// The role Organizations creates in the accounts it creates.
pub const DEFAULT_ROLE_NAME: &str = "OrganizationAccountAccessRole";
/// The session name the audit's sessions carry (CloudTrail shows it).
const SESSION_NAME: &str = "imds-shim-audit";
/// `ListAccounts`' largest page.
const ACCOUNTS_PAGE: i32 = 20;

/// Which regions to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regions {
    /// Every region each account has enabled (`DescribeRegions`).
    All,
    /// These; one an account has not enabled is a scope that cannot be audited.
    Listed(Vec<String>),
}

impl FromStr for Regions {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Regions::All);
        }
        let listed: Vec<String> = s.split(',').map(str::to_owned).collect();
        if listed.iter().any(|r| {
            r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }) {
            return Err(format!(
                "{s:?}: regions are `all` or names such as us-east-1,eu-west-1"
            ));
        }
        Ok(Regions::Listed(listed))
    }
}

/// `--accounts ID,...`: 12 digits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountIds(pub Vec<String>);

impl FromStr for AccountIds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ids: Vec<String> = s.split(',').map(str::to_owned).collect();
        match ids
            .iter()
            .find(|id| id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(bad) => Err(format!("{bad:?}: an account id is 12 digits")),
            None => Ok(AccountIds(ids)),
        }
    }
}

/// What `audit --organization` looks at.
#[derive(Debug, Clone)]
pub struct OrgAuditRequest {
    /// These accounts instead of `ListAccounts`'.
    pub accounts: Option<Vec<String>>,
    /// The regions.
    pub regions: Regions,
    /// The role assumed in each account.
    pub role_name: String,
    /// Scopes (and account look-ups) at a time.
    pub concurrency: usize,
    /// The need and the filters, as for one account.
    pub audit: AuditRequest,
    /// Exit by the verdicts even when some scope could not be audited.
    pub allow_partial: bool,
}

/// Why the audit could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum OrgAuditError {
    /// Who the caller is.
    #[error("sts:GetCallerIdentity failed: {0}")]
    Identity(String),
    /// The account list.
    #[error("organizations:ListAccounts failed: {0}; run this with the management account's credentials (or a delegated administrator's), or name the accounts with --accounts")]
    ListAccounts(String),
}

fn sdk_reason<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or("unknown error"),
            e.message().unwrap_or_default()
        ),
        None => chain(err),
    }
}

/// An account ready to audit: its credentials (`None`: the caller's own) and regions.
struct Ready {
    account: String,
    credentials: Option<Credentials>,
    regions: Vec<String>,
}

/// What [`prepare`] found of an account.
struct Prepared {
    ready: Option<Ready>,
    counts: CallCounts,
    regions_skipped: usize,
    failed: Vec<Unaudited>,
}

/// The accounts to audit: given, or the organization's active ones (the others sent on
/// as skipped). Returns (accounts, how many listed, how many skipped).
async fn accounts(
    sdk: &SdkConfig,
    request: &OrgAuditRequest,
    tx: &Sender<Record>,
) -> Result<(Vec<String>, usize, usize), OrgAuditError> {
    if let Some(given) = &request.accounts {
        return Ok((given.clone(), given.len(), 0));
    }
    let client = aws_sdk_organizations::Client::new(sdk);
    let mut pages = client
        .list_accounts()
        .max_results(ACCOUNTS_PAGE)
        .into_paginator()
        .send();
    let (mut active, mut listed, mut skipped) = (Vec::new(), 0, 0);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| OrgAuditError::ListAccounts(sdk_reason(&e)))?;
        for account in page.accounts() {
            listed += 1;
            let id = account.id().unwrap_or_default().to_owned();
            match account
                .status()
                .map(aws_sdk_organizations::types::AccountStatus::as_str)
            {
                Some("ACTIVE") => active.push(id),
                other => {
                    skipped += 1;
                    let _ = tx
                        .send(Record::AccountSkipped {
                            account: id,
                            status: other.unwrap_or("unknown").to_owned(),
                        })
                        .await;
                }
            }
        }
    }
    Ok((active, listed, skipped))
}

/// A session in `account` and its regions; what it could not audit is sent on.
async fn prepare(
    sdk: &SdkConfig,
    own: &str,
    home_region: &str,
    account: String,
    request: &OrgAuditRequest,
    tx: &Sender<Record>,
) -> Prepared {
    let not_audited = |region: Option<String>, reason: String| Unaudited {
        account: account.clone(),
        region,
        reason,
    };
    let mut failed = Vec::new();
    let credentials = if account == own {
        None
    } else {
        let role_arn = format!("arn:aws:iam::{account}:role/{}", request.role_name);
        let sts = aws_sdk_sts::Client::new(sdk);
        match sts
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name(SESSION_NAME)
            .send()
            .await
        {
            Ok(out) => match out.credentials() {
                Some(c) => Some(Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_owned()),
                    std::time::SystemTime::try_from(*c.expiration()).ok(),
                    "imds-shim-assume-role",
                )),
                None => {
                    return Prepared {
                        ready: None,
                        counts: CallCounts::default(),
                        regions_skipped: 0,
                        failed: vec![not_audited(
                            None,
                            format!("AssumeRole of {role_arn} answered without credentials"),
                        )],
                    };
                }
            },
            Err(e) => {
                let reason = format!("cannot assume {role_arn}: {}", sdk_reason(&e));
                return Prepared {
                    ready: None,
                    counts: CallCounts::default(),
                    regions_skipped: 0,
                    failed: vec![not_audited(None, reason)],
                };
            }
        }
    };
    let api = FleetApi::for_scope(sdk, credentials.clone(), home_region);
    let described = api.ec2.describe_regions().all_regions(true).send().await;
    let counts = api.counts();
    let listed: BTreeMap<String, String> = match described {
        Ok(out) => out
            .regions()
            .iter()
            .map(|r| {
                (
                    r.region_name().unwrap_or_default().to_owned(),
                    r.opt_in_status().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        Err(e) => {
            let reason = format!("ec2:DescribeRegions failed: {}", sdk_reason(&e));
            return Prepared {
                ready: None,
                counts,
                regions_skipped: 0,
                failed: vec![not_audited(None, reason)],
            };
        }
    };
    let enabled = |status: &str| status != "not-opted-in";
    let mut regions = Vec::new();
    let mut skipped = 0;
    match &request.regions {
        Regions::All => {
            for (region, status) in &listed {
                if enabled(status) {
                    regions.push(region.clone());
                } else {
                    skipped += 1;
                    let _ = tx
                        .send(Record::RegionSkipped {
                            account: account.clone(),
                            region: region.clone(),
                            opt_in_status: status.clone(),
                        })
                        .await;
                }
            }
        }
        Regions::Listed(wanted) => {
            for region in wanted {
                let reason = match listed.get(region) {
                    Some(status) if enabled(status) => {
                        regions.push(region.clone());
                        continue;
                    }
                    Some(status) => format!(
                        "the account has not enabled {region} (opt-in status {status})"
                    ),
                    None => format!("{region} is not a region of the account (DescribeRegions does not list it)"),
                };
                failed.push(not_audited(Some(region.clone()), reason));
            }
        }
    }
    Prepared {
        ready: Some(Ready {
            account,
            credentials,
            regions,
        }),
        counts,
        regions_skipped: skipped,
        failed,
    }
}

fn add_api(into: &mut CallCounts, from: CallCounts) {
    into.calls += from.calls;
    into.attempts += from.attempts;
    into.throttled += from.throttled;
}

/// Runs the audit, sending every record to `tx` and returning the summary (which the
/// caller sends last, with its exit status).
pub async fn audit_organization(
    sdk: &SdkConfig,
    request: &OrgAuditRequest,
    tx: Sender<Record>,
) -> Result<OrgSummary, OrgAuditError> {
    let audit_request = Arc::new(request.audit.clone());
    walk(sdk, request, tx, move |api, account, region, tx| {
        let audit_request = audit_request.clone();
        async move {
            let out = Out {
                tx: &tx,
                account: &account,
                region: &region,
            };
            audit_scope(&api, &audit_request, &out).await
        }
    })
    .await
}

/// Every account and region of `request`, each handed to `per_scope` with an EC2
/// client of its own (at most `--concurrency` at a time); every record to `tx`.
pub async fn walk<F, Fut>(
    sdk: &SdkConfig,
    request: &OrgAuditRequest,
    tx: Sender<Record>,
    per_scope: F,
) -> Result<OrgSummary, OrgAuditError>
where
    F: Fn(FleetApi, String, String, Sender<Record>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<ScopeSummary, InstanceError>> + Send + 'static,
{
    let concurrency = request.concurrency.max(1);
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| OrgAuditError::Identity(sdk_reason(&e)))?;
    let own = identity.account().unwrap_or_default().to_owned();
    let home_region = sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
    let (accounts, listed, accounts_skipped) = accounts(sdk, request, &tx).await?;

    let mut api = CallCounts::default();
    let mut regions_skipped = 0;
    let prepared: Vec<_> = stream::iter(accounts.clone())
        .map(|account| prepare(sdk, &own, &home_region, account, request, &tx))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut scopes = Vec::new();
    let mut not_audited = Vec::new();
    for Prepared {
        ready,
        counts,
        regions_skipped: skipped,
        failed,
    } in prepared
    {
        add_api(&mut api, counts);
        regions_skipped += skipped;
        for f in failed {
            let _ = tx
                .send(Record::NotAudited {
                    account: f.account.clone(),
                    region: f.region.clone(),
                    reason: f.reason.clone(),
                })
                .await;
            not_audited.push(f);
        }
        if let Some(ready) = ready {
            let credentials = ready.credentials.clone();
            scopes.extend(
                ready
                    .regions
                    .iter()
                    .map(|r| (ready.account.clone(), r.clone(), credentials.clone())),
            );
        }
    }

    let results: Vec<_> = stream::iter(scopes)
        .map(|(account, region, credentials)| {
            let tx = tx.clone();
            let sdk = sdk.clone();
            let per_scope = per_scope.clone();
            // Each scope on a task of its own: the runtime's threads share the work.
            tokio::spawn(async move {
                let api = FleetApi::for_scope(&sdk, credentials, &region);
                let counted = api.clone();
                let result = per_scope(api, account.clone(), region.clone(), tx.clone()).await;
                let counts = counted.counts();
                match result {
                    Ok(summary) => {
                        let _ = tx.send(Record::Scope(summary.clone())).await;
                        (Ok(summary), counts)
                    }
                    Err(e) => {
                        let failed = Unaudited {
                            account: account.clone(),
                            region: Some(region.clone()),
                            reason: e.to_string(),
                        };
                        let _ = tx
                            .send(Record::NotAudited {
                                account,
                                region: Some(region),
                                reason: failed.reason.clone(),
                            })
                            .await;
                        (Err(failed), counts)
                    }
                }
            })
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    let mut verdicts = empty_counts();
    let (mut scopes_audited, mut max_calls) = (0, 0);
    let mut fixes = FixCounts::default();
    for joined in results {
        let Ok((result, counts)) = joined else {
            continue;
        };
        add_api(&mut api, counts);
        max_calls = max_calls.max(counts.calls);
        match result {
            Ok(summary) => {
                scopes_audited += 1;
                add_counts(&mut verdicts, &summary.verdicts);
                fixes.add(summary.fixes);
            }
            Err(failed) => not_audited.push(failed),
        }
    }
    Ok(OrgSummary {
        accounts: listed,
        accounts_skipped,
        scopes_audited,
        regions_skipped,
        not_audited,
        exit_code: 0,
        verdicts,
        api,
        max_calls_per_scope: max_calls,
        fixes,
    })
}

/// The exit status: 2 when something could not be audited (unless `allow_partial`),
/// else as for one account, over every kind of resource.
pub fn exit_code(summary: &OrgSummary, allow_partial: bool) -> u8 {
    if !summary.not_audited.is_empty() && !allow_partial {
        return 2;
    }
    let mut all: BTreeMap<AuditVerdict, usize> = BTreeMap::new();
    for verdicts in summary.verdicts.values() {
        for (v, n) in verdicts {
            *all.entry(*v).or_default() += n;
        }
    }
    audit::exit_code(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_accounts_parse() {
        assert_eq!("all".parse::<Regions>().unwrap(), Regions::All);
        assert_eq!(
            "us-east-1,af-south-1".parse::<Regions>().unwrap(),
            Regions::Listed(vec!["us-east-1".into(), "af-south-1".into()])
        );
        assert!("us-east-1,".parse::<Regions>().is_err());
        assert!("US_EAST".parse::<Regions>().is_err());
        assert_eq!(
            "111122223333".parse::<AccountIds>().unwrap().0,
            ["111122223333"]
        );
        assert!("1111,111122223333"
            .parse::<AccountIds>()
            .unwrap_err()
            .contains("12 digits"));
    }
}
