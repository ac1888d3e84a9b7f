//! The simulated instance as the three services share it: its options and notices
//! (changed at run time), its credentials and tokens (the assumed roles' sessions
//! among them), its fleet and account.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use imds_vocab::MetadataState;

use crate::config::MockConfig;
use crate::credentials::CredentialStore;
use crate::ec2::denied::DeniedActions;
use crate::ec2::scope::Scope;
use crate::events::MockEvents;
use crate::iam::principal::{AssumedSession, Principal};
use crate::iam::{Iam, Role};
use crate::imds::notices::Notices;
use crate::imds::tokens::TokenMint;
use crate::instance::InstanceIdentity;
use crate::options::{MetadataOptions, MetadataOptionsChange};
use crate::organizations::model::{AccountStatus, Organization};

/// The seed of the throttle's draws when there is no fleet seed to derive it from.
const THROTTLE_SEED: u64 = 0x1d5_7a7e;

#[derive(Debug)]
struct OptionsCell {
    options: MetadataOptions,
    changed_at: SystemTime,
}

/// The simulated instance, shared by the three services.
#[derive(Debug)]
pub(crate) struct MockState {
    pub(crate) identity: InstanceIdentity,
    options: RwLock<OptionsCell>,
    notices: RwLock<Notices>,
    pub(crate) user_data: Option<bytes::Bytes>,
    apply_delay: Duration,
    pub(crate) mint: TokenMint,
    pub(crate) credentials: CredentialStore,
    pub(crate) events: MockEvents,
    /// EC2 actions refused to every caller of the account ([`crate::MockAws::deny`]).
    pub(crate) denied: DeniedActions,
    /// EC2 of the mock's own account in its own region.
    pub(crate) home: Scope,
    /// The organization around the account, if there is one.
    pub(crate) organization: Option<Organization>,
    pub(crate) iam: Iam,
}

/// Why EC2 of an account in a region does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeRefusal {
    /// The account is suspended.
    Suspended,
    /// The region is not one the account has enabled (or not one the mock simulates).
    RegionDisabled,
}

impl MockState {
    pub(crate) fn new(config: MockConfig) -> Self {
        let throttle_seed = config
            .fleet
            .map_or(THROTTLE_SEED, |f| f.seed ^ THROTTLE_SEED);
        let home = Scope::new(
            None,
            config.fleet,
            &config.launch_templates,
            config.metadata_defaults,
            config.throttle_rate,
            throttle_seed,
        );
        let organization = config.organization.as_ref().map(|spec| {
            Organization::generate(
                spec,
                &config.identity.account,
                &config.identity.region,
                config.throttle_rate,
            )
        });
        MockState {
            home,
            organization,
            iam: Iam::new(&config.identity.account, config.iam),
            identity: config.identity,
            options: RwLock::new(OptionsCell {
                options: config.options,
                changed_at: SystemTime::UNIX_EPOCH,
            }),
            notices: RwLock::new(config.notices),
            user_data: config.user_data,
            apply_delay: config.apply_delay,
            mint: TokenMint::new(),
            credentials: CredentialStore::new(config.credential_lifetime),
            events: MockEvents::default(),
            denied: DeniedActions::new(config.denied_actions),
        }
    }

    pub(crate) fn options(&self) -> MetadataOptions {
        self.options.read().expect("options lock").options
    }

    /// The tags and notices the instance's metadata serves now.
    pub(crate) fn notices(&self) -> Notices {
        self.notices.read().expect("notices lock").clone()
    }

    pub(crate) fn change_notices(&self, change: impl FnOnce(&mut Notices)) {
        change(&mut self.notices.write().expect("notices lock"));
    }

    /// Applies `change` (effective on the next IMDS request) and returns the result.
    pub(crate) fn modify_options(&self, change: MetadataOptionsChange) -> MetadataOptions {
        let mut cell = self.options.write().expect("options lock");
        cell.options.apply(&change);
        cell.changed_at = SystemTime::now();
        cell.options
    }

    /// `pending` for [`MockConfig::apply_delay`] after a change, then `applied`.
    pub(crate) fn options_state(&self, now: SystemTime) -> MetadataState {
        let changed_at = self.options.read().expect("options lock").changed_at;
        if now < changed_at + self.apply_delay {
            MetadataState::Pending
        } else {
            MetadataState::Applied
        }
    }

    /// The sessions STS `AssumeRole` made and the store still keeps, oldest first.
    pub(crate) fn assumed_sessions(&self) -> Vec<AssumedSession> {
        self.credentials
            .sessions()
            .iter()
            .filter_map(|creds| match &creds.principal {
                Principal::RoleSession(session) => Some(AssumedSession {
                    role: session.role.name.clone(),
                    session_name: session.session_name.clone(),
                    arn: session.arn(),
                    assumed_by: session.assumed_by.clone(),
                    access_key_id: creds.access_key_id.clone(),
                    expiration: creds.expiration,
                    session_policies: session.session_policies.len(),
                    tags: session.tags.clone(),
                }),
                Principal::InstanceRole(_) => None,
            })
            .collect()
    }

    /// The role an ARN names: one of the account's assumable roles, or a member's
    /// access role.
    pub(crate) fn role_by_arn(&self, arn: &str) -> Option<std::sync::Arc<Role>> {
        self.iam.role_by_arn(arn).or_else(|| {
            self.organization
                .as_ref()
                .and_then(|org| org.role_by_arn(arn))
        })
    }

    /// EC2 of `account` in `region`. Without an organization every request is the
    /// mock's own account and region, whatever region it was signed for.
    pub(crate) fn scope(&self, account: &str, region: &str) -> Result<&Scope, ScopeRefusal> {
        let Some(org) = &self.organization else {
            return Ok(&self.home);
        };
        if account == self.identity.account && region == self.identity.region {
            return Ok(&self.home);
        }
        if org
            .account(account)
            .is_some_and(|a| a.status == AccountStatus::Suspended)
        {
            return Err(ScopeRefusal::Suspended);
        }
        org.scope(account, region)
            .ok_or(ScopeRefusal::RegionDisabled)
    }
}
