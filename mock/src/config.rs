//! What a mock starts with: the simulated instance and the account around it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::ec2::launch_templates::LaunchTemplateSpec;
use crate::ec2::metadata_defaults::MetadataDefaults;
use crate::iam::IamConfig;
use crate::imds::notices::Notices;
use crate::instance::InstanceIdentity;
use crate::options::MetadataOptions;

/// EC2's default lifetime of instance-role credentials.
const DEFAULT_CREDENTIAL_LIFETIME: Duration = Duration::from_hours(6);

/// Everything about the simulated instance that a mock starts with.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Who the instance and its role are.
    pub identity: InstanceIdentity,
    /// The metadata options at start.
    pub options: MetadataOptions,
    /// The tags and notices the instance's metadata serves at start.
    pub notices: Notices,
    /// What `/latest/user-data` serves; `None`: 404, as for an instance launched without.
    pub user_data: Option<bytes::Bytes>,
    /// How long issued credentials live (they rotate after half of it).
    pub credential_lifetime: Duration,
    /// How long `DescribeInstances` reports a modification as `pending`.
    pub apply_delay: Duration,
    /// EC2 actions (`ModifyInstanceMetadataOptions`, ...) refused with `UnauthorizedOperation`.
    pub denied_actions: BTreeSet<String>,
    /// Build hosts beside the mock's own instance, generated from a seed.
    pub fleet: Option<FleetSpec>,
    /// Launch templates besides the fleet's.
    pub launch_templates: Vec<LaunchTemplateSpec>,
    /// The account's instance metadata defaults for the region.
    pub metadata_defaults: MetadataDefaults,
    /// The share of EC2 calls answered with `RequestLimitExceeded` (0.0..1.0).
    pub throttle_rate: f64,
    /// The account's roles, managed policies and the instance role's policy.
    pub iam: IamConfig,
    /// An organization around the account: member accounts and regions, each with
    /// their own EC2 ([`MockConfig::fleet`] is then the fleet of every one of them).
    pub organization: Option<OrganizationSpec>,
}

/// How many fleet instances to generate, and from which seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetSpec {
    /// How many instances besides the mock's own.
    pub size: usize,
    /// The seed of the generator: the same seed gives the same fleet.
    pub seed: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            identity: InstanceIdentity::default(),
            options: MetadataOptions::default(),
            notices: Notices::default(),
            user_data: None,
            credential_lifetime: DEFAULT_CREDENTIAL_LIFETIME,
            apply_delay: Duration::ZERO,
            denied_actions: BTreeSet::new(),
            fleet: None,
            launch_templates: Vec::new(),
            metadata_defaults: MetadataDefaults::default(),
            throttle_rate: 0.0,
            iam: IamConfig::default(),
            organization: None,
        }
    }
}

/// How big an organization to make, and from which seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationSpec {
    /// Accounts, the management account (the mock's own) included.
    pub accounts: usize,
    /// The regions every account's EC2 answers in (the mock's own region among them).
    pub regions: Vec<String>,
    /// Instances per account and region.
    pub fleet: usize,
    /// The seed of everything generated.
    pub seed: u64,
}
