//! An AWS Organization around the mock's account: member accounts, each with its own
//! EC2 in every region of the organization (fleet, launch templates, metadata defaults,
//! throttle), a role the management account may assume in each, and the regions each
//! account has enabled. Seeded: the same spec gives the same organization.
//!
//! Besides the seed, a few accounts are made unusual on purpose, so that the tests of
//! whatever audits an organization meet what real ones have (with `N` accounts, the
//! first being the management account, which is the mock's own):
//!
//! - the last (`N >= 3`) was invited and has no `OrganizationAccountAccessRole`: it
//!   cannot be assumed;
//! - the one before it (`N >= 4`) is `SUSPENDED`;
//! - the second (`N >= 2`) has not opted in to the opt-in regions among the regions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng};
use serde::Serialize;

use crate::config::{FleetSpec, OrganizationSpec};
use crate::ec2::metadata_defaults::MetadataDefaults;
use crate::ec2::scope::Scope;
use crate::iam::Role;

/// The role AWS Organizations creates in the accounts it creates.
pub const ACCESS_ROLE: &str = "OrganizationAccountAccessRole";

/// Regions an account must opt in to (AWS's list; every other one is enabled).
pub const OPT_IN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
];

/// An account's status, as `ListAccounts` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    /// In use.
    Active,
    /// Suspended: nothing in it answers.
    Suspended,
}

/// How an account joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JoinedMethod {
    /// Created by the organization (with its access role).
    Created,
    /// Invited (no access role unless someone made one).
    Invited,
}

/// An account of the organization, as a test reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// 12 digits.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its root email.
    pub email: String,
    /// Active or suspended.
    pub status: AccountStatus,
    /// Created or invited.
    pub joined: JoinedMethod,
    /// When it joined, in seconds since the epoch.
    pub joined_at: u64,
    /// Whether the management account may assume its [`ACCESS_ROLE`].
    pub assumable: bool,
    /// The opt-in regions of the organization it has not enabled.
    pub disabled_regions: BTreeSet<String>,
}

impl Account {
    /// Whether its EC2 answers in `region` (of the organization's regions).
    pub fn is_enabled(&self, region: &str) -> bool {
        !self.disabled_regions.contains(region)
    }
}

/// Whether `region` must be opted in to.
pub fn is_opt_in(region: &str) -> bool {
    OPT_IN_REGIONS.contains(&region)
}

/// The organization while the mock serves.
#[derive(Debug)]
pub(crate) struct Organization {
    /// `o-` and 10 characters.
    pub(crate) id: String,
    pub(crate) management: String,
    pub(crate) accounts: Vec<Account>,
    pub(crate) regions: Vec<String>,
    /// Every active account's EC2 in every region it enabled, but the mock's own
    /// account in its own region (the mock's state holds that one).
    scopes: HashMap<(String, String), Scope>,
    /// The members' access roles, by ARN.
    roles: HashMap<String, Arc<Role>>,
}

/// A scope's instance metadata defaults, varied so that some are right and some not.
fn defaults_for(n: usize) -> MetadataDefaults {
    match n % 3 {
        0 => MetadataDefaults::default(),
        1 => MetadataDefaults {
            http_tokens: Some(HttpTokens::Required),
            hop_limit: HopLimit::new(1).ok(),
            ..MetadataDefaults::default()
        },
        _ => MetadataDefaults {
            http_tokens: Some(HttpTokens::Optional),
            hop_limit: HopLimit::new(2).ok(),
            http_endpoint: Some(HttpEndpoint::Enabled),
            ..MetadataDefaults::default()
        },
    }
}

impl Organization {
    /// The organization `spec` describes around `management` (the mock's account),
    /// whose scope in `home_region` the caller keeps; `throttle_rate` of every
    /// scope's calls are refused, each scope drawing on its own.
    pub(crate) fn generate(
        spec: &OrganizationSpec,
        management: &str,
        home_region: &str,
        throttle_rate: f64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let n = spec.accounts.max(1);
        let mut ids = BTreeSet::from([management.to_owned()]);
        let mut accounts = Vec::with_capacity(n);
        for i in 0..n {
            let id = if i == 0 {
                management.to_owned()
            } else {
                loop {
                    let id = format!(
                        "{:012}",
                        rng.random_range(100_000_000_000u64..1_000_000_000_000)
                    );
                    if ids.insert(id.clone()) {
                        break id;
                    }
                }
            };
            let name = if i == 0 {
                "management".to_owned()
            } else {
                format!("builds-{i:03}")
            };
            let invited = n >= 3 && i == n - 1;
            let suspended = n >= 4 && i == n - 2;
            let disabled_regions = if n >= 2 && i == 1 {
                spec.regions
                    .iter()
                    .filter(|r| is_opt_in(r))
                    .cloned()
                    .collect()
            } else {
                BTreeSet::new()
            };
            accounts.push(Account {
                email: format!("aws+{name}@example.com"),
                name,
                id,
                status: if suspended {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                },
                joined: if invited {
                    JoinedMethod::Invited
                } else {
                    JoinedMethod::Created
                },
                joined_at: 1_700_000_000 + 86_400 * i as u64,
                assumable: i > 0 && !invited && !suspended,
                disabled_regions,
            });
        }
        let mut scopes = HashMap::new();
        let mut roles = HashMap::new();
        for (a, account) in accounts.iter().enumerate() {
            if account.status != AccountStatus::Active {
                continue;
            }
            if account.assumable {
                let role = Arc::new(Role::new(&account.id, ACCESS_ROLE, None));
                roles.insert(role.arn.clone(), role);
            }
            for (r, region) in spec.regions.iter().enumerate() {
                if !account.is_enabled(region) || (a == 0 && region == home_region) {
                    continue;
                }
                let scope_seed =
                    spec.seed ^ (((a as u64) << 20) | r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let scope = Scope::new(
                    Some((&account.id, region)),
                    (spec.fleet > 0).then_some(FleetSpec {
                        size: spec.fleet,
                        seed: scope_seed,
                    }),
                    &[],
                    defaults_for(a + r),
                    throttle_rate,
                    scope_seed.rotate_left(17),
                );
                scopes.insert((account.id.clone(), region.clone()), scope);
            }
        }
        let id_tail: String = (0..10)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
            .collect();
        Organization {
            id: format!("o-{id_tail}"),
            management: management.to_owned(),
            accounts,
            regions: spec.regions.clone(),
            scopes,
            roles,
        }
    }

    /// The account `id`, if it is a member.
    pub(crate) fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The EC2 of `account` in `region`, other than the mock's own.
    pub(crate) fn scope(&self, account: &str, region: &str) -> Option<&Scope> {
        self.scopes.get(&(account.to_owned(), region.to_owned()))
    }

    /// Every scope the organization holds, by account and region.
    pub(crate) fn scopes(&self) -> impl Iterator<Item = (&(String, String), &Scope)> {
        self.scopes.iter()
    }

    /// A member's access role, by its ARN.
    pub(crate) fn role_by_arn(&self, arn: &str) -> Option<Arc<Role>> {
        self.roles.get(arn).cloned()
    }

    /// `arn:aws:organizations::MANAGEMENT:organization/o-...`.
    pub(crate) fn arn(&self) -> String {
        format!(
            "arn:aws:organizations::{}:organization/{}",
            self.management, self.id
        )
    }

    /// `arn:aws:organizations::MANAGEMENT:account/o-.../ID`.
    pub(crate) fn account_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:organizations::{}:account/{}/{id}",
            self.management, self.id
        )
    }

    /// `DescribeRegions` for `account`: every region of the organization with its
    /// opt-in status, enabled ones only unless `all`.
    pub(crate) fn regions_of(&self, account: &str, all: bool) -> Vec<(String, &'static str)> {
        let disabled = self
            .account(account)
            .map(|a| a.disabled_regions.clone())
            .unwrap_or_default();
        self.regions
            .iter()
            .filter_map(|region| {
                let status = if !is_opt_in(region) {
                    "opt-in-not-required"
                } else if disabled.contains(region) {
                    "not-opted-in"
                } else {
                    "opted-in"
                };
                (all || status != "not-opted-in").then(|| (region.clone(), status))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accounts: usize) -> OrganizationSpec {
        OrganizationSpec {
            accounts,
            regions: vec!["us-east-1".into(), "eu-west-1".into(), "af-south-1".into()],
            fleet: 5,
            seed: 42,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_organization_with_its_odd_accounts() {
        let a = Organization::generate(&spec(6), "123456789012", "us-east-1", 0.0);
        let b = Organization::generate(&spec(6), "123456789012", "us-east-1", 0.0);
        assert_eq!(a.accounts, b.accounts);
        assert_eq!(a.id, b.id);
        assert_eq!(a.accounts[0].id, "123456789012");
        let ids: BTreeSet<&str> = a.accounts.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        assert_eq!(a.accounts[5].joined, JoinedMethod::Invited);
        assert!(!a.accounts[5].assumable);
        assert_eq!(a.accounts[4].status, AccountStatus::Suspended);
        assert!(!a.accounts[1].is_enabled("af-south-1"));
        assert!(a.accounts[1].is_enabled("eu-west-1"));
        assert!(a.accounts[2].assumable && a.accounts[2].is_enabled("af-south-1"));
        // Every active account's enabled regions, but the home one.
        assert_eq!(a.scopes().count(), 2 + 2 + 3 + 3 + 3);
        assert!(a.scope("123456789012", "us-east-1").is_none());
        assert!(a.scope(&a.accounts[4].id, "us-east-1").is_none());
        assert!(a
            .role_by_arn(&format!(
                "arn:aws:iam::{}:role/{ACCESS_ROLE}",
                a.accounts[2].id
            ))
            .is_some());
        assert!(a
            .role_by_arn(&format!(
                "arn:aws:iam::{}:role/{ACCESS_ROLE}",
                a.accounts[5].id
            ))
            .is_none());
        let regions = a.regions_of(&a.accounts[1].id, true);
        assert_eq!(regions[2], ("af-south-1".to_owned(), "not-opted-in"));
        assert_eq!(a.regions_of(&a.accounts[1].id, false).len(), 2);
        assert_eq!(a.regions_of(&a.accounts[2].id, false)[2].1, "opted-in");
        let c = Organization::generate(
            &OrganizationSpec {
                seed: 43,
                ..spec(6)
            },
            "123456789012",
            "us-east-1",
            0.0,
        );
        assert_ne!(a.accounts[1].id, c.accounts[1].id);
    }
}
