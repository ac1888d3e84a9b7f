//! The mock configured in code: every setting checked before anything is bound, then
//! served on the addresses given (the crate's documentation shows it at work).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

use crate::config::OrganizationSpec;
use crate::config::{FleetSpec, MockConfig};
use crate::ec2::launch_template_data::LaunchTemplateData;
use crate::ec2::launch_templates::LaunchTemplateSpec;
use crate::ec2::metadata_defaults::MetadataDefaults;
use crate::iam::policy::PolicyDocument;
use crate::iam::{is_valid_policy_arn, is_valid_role_name};
use crate::imds::notices::{LifecycleState, MaintenanceEvent, SpotAction};
use crate::instance::InstanceIdentity;
use crate::mock_aws::{Listeners, MockAws};

/// EC2's limit on user data, before base64 encoding.
const MAX_USER_DATA: usize = 16 * 1024;
/// The most accounts an organization of the mock has.
pub(crate) const MAX_ACCOUNTS: usize = 10_000;

fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// What is wrong with a mock's configuration, or why it could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The role name.
    #[error("role {0:?}: a role name is non-empty and has no '/'")]
    Role(String),
    /// The account id.
    #[error("account {0:?}: an account id is 12 digits")]
    Account(String),
    /// The instance id.
    #[error("instance id {0:?}: an instance id is i- followed by 8 or 17 hex digits")]
    InstanceId(String),
    /// The region.
    #[error("region {0:?}: a region looks like us-east-1")]
    Region(String),
    /// A tag key.
    #[error("tag key {0:?}: a tag key is 1 to 128 characters, none of them '/'")]
    TagKey(String),
    /// The user data's size.
    #[error("user data of {0} bytes: EC2 takes at most 16 KB (16384 bytes) of user data")]
    UserData(usize),
    /// The credential lifetime.
    #[error("credential lifetime 0: credentials must live at least a second")]
    CredentialLifetime,
    /// The assumed sessions' lifetime.
    #[error("session lifetime 0: assumed sessions must live at least a second")]
    SessionLifetime,
    /// The throttle rate.
    #[error("throttle rate {0}: a share of calls from 0 up to, not including, 1")]
    Throttle(f64),
    /// A launch template's name.
    #[error("launch template name {0:?}: 3 to 128 letters, digits and ( ) . / - _")]
    LaunchTemplateName(String),
    /// An assumable role's name.
    #[error("assumable role {0:?}: a role name is 1 to 64 letters, digits and + = , . @ _ -")]
    AssumableRole(String),
    /// A managed policy's ARN.
    #[error(
        "managed policy ARN {0:?}: a policy ARN looks like arn:aws:iam::123456789012:policy/NAME \
         or arn:aws:iam::aws:policy/NAME"
    )]
    PolicyArn(String),
    /// The organization's size.
    #[error(
        "organization of {0} accounts: from 1 (the management account alone) to {MAX_ACCOUNTS}"
    )]
    OrganizationAccounts(usize),
    /// The organization's regions.
    #[error(
        "organization regions {regions:?}: each looks like us-east-1, and the mock's own region          {home} must be one of them"
    )]
    OrganizationRegions {
        /// The regions given.
        regions: Vec<String>,
        /// The mock's region.
        home: String,
    },
    /// A listener could not be bound.
    #[error("{0}; pick another address or port 0")]
    Bind(std::io::Error),
    /// The services could not start.
    #[error("starting the mock's services: {0}")]
    Start(std::io::Error),
}

/// A mock being configured; [`MockBuilder::start`] serves it. Every setting not given
/// is EC2's default for a new instance (hop limit 1, tokens required), on 127.0.0.1
/// with free ports.
#[derive(Clone, Debug)]
pub struct MockBuilder {
    config: MockConfig,
    imds: SocketAddr,
    sts: SocketAddr,
    ec2: SocketAddr,
    role: Option<String>,
    account: Option<String>,
    instance_id: Option<String>,
    region: Option<String>,
    organization: Option<(usize, Vec<String>)>,
}

impl Default for MockBuilder {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        MockBuilder {
            config: MockConfig::default(),
            imds: any,
            sts: any,
            ec2: any,
            role: None,
            account: None,
            instance_id: None,
            region: None,
            organization: None,
        }
    }
}

impl MockBuilder {
    /// `HttpPutResponseHopLimit`: the IP TTL of the token response.
    pub fn hop_limit(mut self, hop_limit: HopLimit) -> Self {
        self.config.options.hop_limit = hop_limit;
        self
    }

    /// `HttpTokens`: `Required` (IMDSv2 only) or `Optional` (IMDSv1 too).
    pub fn http_tokens(mut self, http_tokens: HttpTokens) -> Self {
        self.config.options.http_tokens = http_tokens;
        self
    }

    /// `HttpEndpoint`: `Disabled` answers 403 to everything.
    pub fn http_endpoint(mut self, http_endpoint: HttpEndpoint) -> Self {
        self.config.options.http_endpoint = http_endpoint;
        self
    }

    /// `HttpProtocolIpv6`: whether the IMDS answers on an IPv6 address (bind it to one
    /// with [`MockBuilder::imds_addr`], e.g. `[fd00:ec2::254]:80` or `[::1]:0`).
    pub fn http_protocol_ipv6(mut self, toggle: Toggle) -> Self {
        self.config.options.http_protocol_ipv6 = toggle;
        self
    }

    /// `InstanceMetadataTags`: whether IMDS serves the instance's tags.
    pub fn instance_metadata_tags(mut self, toggle: Toggle) -> Self {
        self.config.options.instance_metadata_tags = toggle;
        self
    }

    /// An instance tag (served under `tags/instance/` with `InstanceMetadataTags`
    /// enabled).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.notices.tags.insert(key.into(), value.into());
        self
    }

    /// A Spot interruption notice from the start: `action` at `time`.
    pub fn spot_action(mut self, action: SpotAction, time: SystemTime) -> Self {
        self.config.notices.spot_action = Some((action, time));
        self
    }

    /// A rebalance recommendation from the start, made at `time`.
    pub fn rebalance(mut self, time: SystemTime) -> Self {
        self.config.notices.rebalance = Some(time);
        self
    }

    /// Puts the instance in an Auto Scaling group, Auto Scaling moving it to `state`
    /// (`autoscaling/target-lifecycle-state`).
    pub fn lifecycle_state(mut self, state: LifecycleState) -> Self {
        self.config.notices.lifecycle = Some(state);
        self
    }

    /// A scheduled maintenance event (`events/maintenance/scheduled`; repeatable).
    pub fn maintenance(mut self, event: MaintenanceEvent) -> Self {
        self.config.notices.maintenance.push(event);
        self
    }

    /// What `/latest/user-data` serves (without it: 404).
    pub fn user_data(mut self, data: impl Into<bytes::Bytes>) -> Self {
        self.config.user_data = Some(data.into());
        self
    }

    /// The instance role's name.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The account id (12 digits).
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// The instance id (`i-` and 8 or 17 hex digits).
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// The region; the availability zone is its `a` zone.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// How long issued credentials live (they rotate after half of it).
    pub fn credential_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.credential_lifetime = lifetime;
        self
    }

    /// How long DescribeInstances reports a modification as `pending`.
    pub fn apply_delay(mut self, delay: Duration) -> Self {
        self.config.apply_delay = delay;
        self
    }

    /// Refuses an EC2 action (e.g. `ModifyInstanceMetadataOptions`) with
    /// `UnauthorizedOperation`.
    pub fn deny(mut self, action: impl Into<String>) -> Self {
        self.config.denied_actions.insert(action.into());
        self
    }

    /// A role of the account that STS `AssumeRole` may assume, with its identity policy
    /// (`None`: it may do everything). Undeclared roles are `AccessDenied`.
    pub fn assumable_role(
        mut self,
        name: impl Into<String>,
        policy: Option<PolicyDocument>,
    ) -> Self {
        self.config.iam.assumable_roles.insert(name.into(), policy);
        self
    }

    /// A managed policy that `AssumeRole`'s `PolicyArns` may name.
    pub fn managed_policy(mut self, arn: impl Into<String>, policy: PolicyDocument) -> Self {
        self.config.iam.managed_policies.insert(arn.into(), policy);
        self
    }

    /// How long assumed sessions live at most, whatever `DurationSeconds` asks (their
    /// `Expiration` says so): for tests of refreshing across expiry.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.iam.session_lifetime = Some(lifetime);
        self
    }

    /// The instance role's identity policy (without one it may do everything).
    pub fn instance_role_policy(mut self, policy: PolicyDocument) -> Self {
        self.config.iam.instance_role_policy = Some(policy);
        self
    }

    /// `size` more instances beside the mock's own, generated from `seed` (the same seed
    /// gives the same fleet), with their launch templates; `DescribeInstances` pages them.
    pub fn fleet(mut self, size: usize, seed: u64) -> Self {
        self.config.fleet = Some(FleetSpec { size, seed });
        self
    }

    /// An organization around the mock's account: `accounts` accounts (the mock's own,
    /// the management account, among them), each with its own EC2 in every one of
    /// `regions` (empty: the mock's region alone), each with a fleet of the size and
    /// seed [`MockBuilder::fleet`] gives, its templates and defaults, its own throttle.
    /// Which accounts are odd (one cannot be assumed, one is suspended, one has not
    /// enabled the opt-in regions) is said in the module of [`crate::Account`].
    pub fn organization<R: Into<String>>(
        mut self,
        accounts: usize,
        regions: impl IntoIterator<Item = R>,
    ) -> Self {
        self.organization = Some((accounts, regions.into_iter().map(Into::into).collect()));
        self
    }

    /// Answers `RequestLimitExceeded` (HTTP 503) to `rate` (0.0..1.0) of the EC2 calls.
    pub fn throttle(mut self, rate: f64) -> Self {
        self.config.throttle_rate = rate;
        self
    }

    /// A launch template whose version 1 (its default) holds `data`.
    pub fn launch_template(mut self, name: impl Into<String>, data: LaunchTemplateData) -> Self {
        self.config.launch_templates.push(LaunchTemplateSpec {
            name: name.into(),
            data,
        });
        self
    }

    /// The account's instance metadata defaults for the region.
    pub fn metadata_defaults(mut self, defaults: MetadataDefaults) -> Self {
        self.config.metadata_defaults = defaults;
        self
    }

    /// Where IMDS listens (port 0: a free one).
    pub fn imds_addr(mut self, addr: SocketAddr) -> Self {
        self.imds = addr;
        self
    }

    /// Where STS listens.
    pub fn sts_addr(mut self, addr: SocketAddr) -> Self {
        self.sts = addr;
        self
    }

    /// Where the EC2 API listens.
    pub fn ec2_addr(mut self, addr: SocketAddr) -> Self {
        self.ec2 = addr;
        self
    }

    /// The configuration, checked.
    pub fn config(&self) -> Result<MockConfig, MockError> {
        let mut config = self.config.clone();
        let identity: &mut InstanceIdentity = &mut config.identity;
        if let Some(role) = &self.role {
            if role.is_empty() || role.contains('/') {
                return Err(MockError::Role(role.clone()));
            }
            identity.role.clone_from(role);
        }
        if let Some(account) = &self.account {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MockError::Account(account.clone()));
            }
            identity.account.clone_from(account);
        }
        if let Some(id) = &self.instance_id {
            if !InstanceIdentity::is_well_formed_instance_id(id) {
                return Err(MockError::InstanceId(id.clone()));
            }
            identity.instance_id.clone_from(id);
        }
        if let Some(region) = &self.region {
            if !is_region_name(region) {
                return Err(MockError::Region(region.clone()));
            }
            identity.region.clone_from(region);
            identity.availability_zone = format!("{region}a");
        }
        if let Some(key) = config
            .notices
            .tags
            .keys()
            .find(|k| k.is_empty() || k.len() > 128 || k.contains('/'))
        {
            return Err(MockError::TagKey(key.clone()));
        }
        if let Some(data) = config
            .user_data
            .as_ref()
            .filter(|d| d.len() > MAX_USER_DATA)
        {
            return Err(MockError::UserData(data.len()));
        }
        if config.credential_lifetime.is_zero() {
            return Err(MockError::CredentialLifetime);
        }
        if config.iam.session_lifetime.is_some_and(|l| l.is_zero()) {
            return Err(MockError::SessionLifetime);
        }
        if !(0.0..1.0).contains(&config.throttle_rate) {
            return Err(MockError::Throttle(config.throttle_rate));
        }
        if let Some(name) = config
            .iam
            .assumable_roles
            .keys()
            .find(|n| !is_valid_role_name(n))
        {
            return Err(MockError::AssumableRole(name.clone()));
        }
        if let Some(arn) = config
            .iam
            .managed_policies
            .keys()
            .find(|a| !is_valid_policy_arn(a))
        {
            return Err(MockError::PolicyArn(arn.clone()));
        }
        if let Some(spec) = config.launch_templates.iter().find(|t| {
            !(3..=128).contains(&t.name.len())
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"()./-_".contains(&b))
        }) {
            return Err(MockError::LaunchTemplateName(spec.name.clone()));
        }
        if let Some((accounts, regions)) = &self.organization {
            if !(1..=MAX_ACCOUNTS).contains(accounts) {
                return Err(MockError::OrganizationAccounts(*accounts));
            }
            let home = config.identity.region.clone();
            let mut regions = regions.clone();
            if regions.is_empty() {
                regions.push(home.clone());
            }
            let mut unique = regions.clone();
            unique.sort();
            unique.dedup();
            if !regions.iter().all(|r| is_region_name(r))
                || !regions.contains(&home)
                || unique.len() != regions.len()
            {
                return Err(MockError::OrganizationRegions { regions, home });
            }
            config.organization = Some(OrganizationSpec {
                accounts: *accounts,
                regions,
                fleet: config.fleet.map_or(0, |f| f.size),
                seed: config.fleet.map_or(0, |f| f.seed),
            });
        }
        Ok(config)
    }

    /// Binds the three listeners and serves. Must be called inside a Tokio runtime.
    #[expect(
        clippy::unused_async,
        reason = "public API that the harness, the tests and the benches await: it spawns \
                  the servers on the current Tokio runtime, which an awaiting caller is in"
    )]
    pub async fn start(self) -> Result<MockAws, MockError> {
        let config = self.config()?;
        let listeners = Listeners::bind(self.imds, self.sts, self.ec2).map_err(MockError::Bind)?;
        MockAws::start(config, listeners).map_err(MockError::Start)
    }
}

impl MockAws {
    /// A mock to configure, then [`MockBuilder::start`].
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reach_the_config_and_bad_ones_are_named() {
        let config = MockAws::builder()
            .hop_limit(HopLimit::new(3).unwrap())
            .http_tokens(HttpTokens::Optional)
            .role("build-role")
            .account("210987654321")
            .instance_id("i-0fedcba9876543210")
            .region("eu-west-1")
            .deny("ModifyInstanceMetadataOptions")
            .config()
            .unwrap();
        assert_eq!(config.options.hop_limit.get(), 3);
        assert_eq!(config.options.http_tokens, HttpTokens::Optional);
        assert_eq!(config.identity.role, "build-role");
        assert_eq!(config.identity.account, "210987654321");
        assert_eq!(config.identity.availability_zone, "eu-west-1a");
        assert!(config
            .denied_actions
            .contains("ModifyInstanceMetadataOptions"));
        let err = |b: MockBuilder| b.config().unwrap_err().to_string();
        assert!(err(MockAws::builder().role("a/b")).contains("no '/'"));
        assert!(err(MockAws::builder().account("12")).contains("12 digits"));
        assert!(err(MockAws::builder().instance_id("vm-1")).contains("instance id"));
        assert!(err(MockAws::builder().region("us east")).contains("us-east-1"));
        assert!(err(MockAws::builder().credential_lifetime(Duration::ZERO)).contains("lifetime"));
        assert!(
            err(MockAws::builder().session_lifetime(Duration::ZERO)).contains("session lifetime")
        );
        assert!(err(MockAws::builder().tag("a/b", "c")).contains("tag key"));
        assert!(err(MockAws::builder().user_data(vec![b'x'; 16385])).contains("16 KB"));
        assert!(MockAws::builder()
            .user_data(vec![b'x'; 16384])
            .config()
            .is_ok());
        assert!(err(MockAws::builder().throttle(1.0)).contains("throttle rate 1"));
        assert!(err(MockAws::builder().throttle(-0.1)).contains("throttle rate"));
        assert!(
            err(MockAws::builder().launch_template("a b", LaunchTemplateData::default()))
                .contains("launch template name")
        );
        assert!(err(MockAws::builder().assumable_role("a/b", None)).contains("assumable role"));
        let policy = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}"#,
        )
        .unwrap();
        assert!(
            err(MockAws::builder().managed_policy("ReadOnly", policy.clone()))
                .contains("managed policy ARN")
        );
        let config = MockAws::builder()
            .assumable_role("deploy", Some(policy.clone()))
            .managed_policy("arn:aws:iam::aws:policy/ReadOnlyAccess", policy.clone())
            .instance_role_policy(policy.clone())
            .config()
            .unwrap();
        assert_eq!(config.iam.assumable_roles["deploy"], Some(policy.clone()));
        assert_eq!(config.iam.instance_role_policy, Some(policy));
        let config = MockAws::builder()
            .fleet(10, 3)
            .throttle(0.3)
            .config()
            .unwrap();
        assert_eq!(config.fleet, Some(FleetSpec { size: 10, seed: 3 }));
        let config = MockAws::builder()
            .fleet(10, 3)
            .organization(5, ["us-east-1", "af-south-1"])
            .config()
            .unwrap();
        assert_eq!(
            config.organization,
            Some(OrganizationSpec {
                accounts: 5,
                regions: vec!["us-east-1".into(), "af-south-1".into()],
                fleet: 10,
                seed: 3
            })
        );
        assert!(err(MockAws::builder().organization(0, ["us-east-1"])).contains("from 1"));
        assert!(err(MockAws::builder().organization(3, ["eu-west-1"])).contains("us-east-1 must"));
        assert!(
            err(MockAws::builder().organization(3, ["us-east-1", "us-east-1"]))
                .contains("must be one of them")
        );
        assert!(err(MockAws::builder().organization(3, ["us-east-1", "a b"])).contains("a b"));
    }
}
