//! `imds-harness mock`: the mock AWS side on its own, for any client to test against.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use imds_mock::{
    LaunchTemplateData, LifecycleState, MaintenanceCode, MaintenanceEvent, MockAws, MockBuilder,
    MockError, PolicyDocument, SpotAction, TemplateMetadataOptions,
};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

use super::exit::Exit;

#[derive(Args, Debug)]
pub(super) struct MockArgs {
    /// Where the IMDS listens (host:port; port 0 picks a free one).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        env = "IMDS_HARNESS_MOCK_IMDS"
    )]
    imds: SocketAddr,
    /// Where STS listens.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        env = "IMDS_HARNESS_MOCK_STS"
    )]
    sts: SocketAddr,
    /// Where the EC2 API listens.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        env = "IMDS_HARNESS_MOCK_EC2"
    )]
    ec2: SocketAddr,
    /// HttpPutResponseHopLimit: the IP TTL of the token response (1..=64).
    #[arg(long, value_name = "N", default_value = "1")]
    hop_limit: HopLimit,
    /// HttpTokens: `required` (IMDSv2 only) or `optional` (IMDSv1 too).
    #[arg(long, value_name = "MODE", default_value = "required")]
    http_tokens: HttpTokens,
    /// HttpEndpoint: `disabled` answers 403 to everything.
    #[arg(long, value_name = "STATE", default_value = "enabled")]
    http_endpoint: HttpEndpoint,
    /// The instance role's name.
    #[arg(long, value_name = "NAME")]
    role: Option<String>,
    /// The account id (12 digits).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// The instance id (i- and 8 or 17 hex digits).
    #[arg(long, value_name = "ID")]
    instance_id: Option<String>,
    /// The region; the availability zone is its `a` zone.
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// Lifetime of issued credentials, in seconds (they rotate after half of it).
    #[arg(long, value_name = "SECONDS", default_value = "21600", value_parser = clap::value_parser!(u64).range(1..))]
    credential_lifetime: u64,
    /// How long DescribeInstances reports a modification as `pending`, in milliseconds.
    #[arg(long, value_name = "MS", default_value = "0")]
    apply_delay_ms: u64,
    /// Refuse an EC2 action with UnauthorizedOperation (repeatable), e.g. ModifyInstanceMetadataOptions.
    #[arg(long, value_name = "ACTION")]
    deny: Vec<String>,
    /// HttpProtocolIpv6: `enabled` lets the IMDS answer on an IPv6 --imds address
    /// (EC2's is [fd00:ec2::254]:80); while disabled such connections are closed unanswered.
    #[arg(long, value_name = "STATE", default_value = "disabled")]
    http_protocol_ipv6: Toggle,
    /// InstanceMetadataTags: `enabled` serves the instance's tags under tags/instance/.
    #[arg(long, value_name = "STATE", default_value = "disabled")]
    instance_metadata_tags: Toggle,
    /// An instance tag, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    tag: Vec<(String, String)>,
    /// Post a Spot interruption notice from the start (spot/instance-action), two
    /// minutes from now: terminate, stop or hibernate.
    #[arg(long, value_name = "ACTION")]
    spot_action: Option<SpotAction>,
    /// Post a rebalance recommendation from the start (events/recommendations/rebalance).
    #[arg(long)]
    rebalance: bool,
    /// Put the instance in an Auto Scaling group moving it to STATE
    /// (autoscaling/target-lifecycle-state): InService, Terminated, Warmed:Stopped, ...
    #[arg(long, value_name = "STATE")]
    lifecycle_state: Option<LifecycleState>,
    /// Schedule a maintenance event (events/maintenance/scheduled) a week from now, two
    /// hours long: instance-reboot, system-reboot, system-maintenance,
    /// instance-retirement or instance-stop (repeatable).
    #[arg(long, value_name = "CODE")]
    maintenance: Vec<MaintenanceCode>,
    /// Serve this file's content as /latest/user-data (at most 16 KB).
    #[arg(long, value_name = "PATH")]
    user_data_file: Option<PathBuf>,
    /// N more instances beside the mock's own: build hosts with tags and a spread of
    /// metadata options, with their launch templates; DescribeInstances pages them.
    #[arg(long, value_name = "N", default_value = "0")]
    fleet: usize,
    /// The seed the fleet is generated from (the same seed, the same fleet).
    #[arg(long, value_name = "SEED", default_value = "1")]
    seed: u64,
    /// An organization of N accounts around the mock's (its management account): each
    /// account has its own EC2 in every --regions region, with a --fleet of its own
    /// (seeded by --seed); Organizations ListAccounts and DescribeOrganization, and
    /// AssumeRole into each member's OrganizationAccountAccessRole, on the EC2 endpoint.
    #[arg(long, value_name = "N")]
    accounts: Option<usize>,
    /// The organization's regions (with --accounts; the mock's --region among them):
    /// requests go to the region their signature's credential scope names.
    #[arg(
        long,
        value_name = "R,...",
        value_delimiter = ',',
        requires = "accounts"
    )]
    regions: Vec<String>,
    /// Answer RequestLimitExceeded (HTTP 503) to this share of EC2 calls (0 up to, not
    /// including, 1); with --accounts, in every account and region on its own.
    #[arg(long, value_name = "RATE", default_value = "0")]
    throttle: f64,
    /// A launch template, NAME or NAME:HOPS (its MetadataOptions: that hop limit, tokens
    /// required); repeatable.
    #[arg(long, value_name = "NAME[:HOPS]", value_parser = parse_template)]
    launch_template: Vec<(String, Option<HopLimit>)>,
    /// A role of the account that STS AssumeRole may assume (repeatable), with its
    /// identity policy from POLICY_FILE (IAM policy JSON); without one it may do
    /// everything. AssumeRole on any other role is AccessDenied.
    #[arg(long, value_name = "NAME[=POLICY_FILE]", value_parser = parse_role)]
    assumable_role: Vec<(String, Option<PathBuf>)>,
    /// A managed policy that AssumeRole's PolicyArns may name: ARN=POLICY_FILE
    /// (repeatable), e.g. arn:aws:iam::aws:policy/ReadOnlyAccess=readonly.json.
    #[arg(long, value_name = "ARN=POLICY_FILE", value_parser = parse_managed_policy)]
    managed_policy: Vec<(String, PathBuf)>,
    /// The instance role's identity policy (IAM policy JSON); without one the instance
    /// role may do everything. The EC2 API and AssumeRole evaluate it.
    #[arg(long, value_name = "POLICY_FILE")]
    instance_role_policy: Option<PathBuf>,
    /// Assumed sessions live at most this many seconds, whatever DurationSeconds asks
    /// (their Expiration says so): for tests of refreshing across expiry.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    session_lifetime: Option<u64>,
}

fn parse_role(s: &str) -> Result<(String, Option<PathBuf>), String> {
    match s.split_once('=') {
        None => Ok((s.to_owned(), None)),
        Some((name, path)) if !path.is_empty() => Ok((name.to_owned(), Some(path.into()))),
        Some(_) => Err(format!("{s:?}: NAME or NAME=POLICY_FILE")),
    }
}

fn parse_managed_policy(s: &str) -> Result<(String, PathBuf), String> {
    // Policy names may hold a `=`: the file is what follows the last one.
    match s.rsplit_once('=') {
        Some((arn, path)) if !arn.is_empty() && !path.is_empty() => {
            Ok((arn.to_owned(), path.into()))
        }
        _ => Err(format!("{s:?}: a managed policy is ARN=POLICY_FILE")),
    }
}

/// The policy in `path`, or what is wrong with it, naming the flag and the file.
fn read_policy(flag: &str, path: &Path) -> Result<PolicyDocument, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag} {}: {e}; give a readable file", path.display()))?;
    PolicyDocument::parse(&text)
        .map_err(|e| format!("{flag} {}: not an IAM policy: {e}", path.display()))
}

/// The policies the flags name, read and parsed.
#[derive(Default)]
struct Policies {
    roles: Vec<(String, Option<PolicyDocument>)>,
    managed: Vec<(String, PolicyDocument)>,
    instance_role: Option<PolicyDocument>,
}

impl Policies {
    fn read(args: &MockArgs) -> Result<Self, String> {
        let mut policies = Policies::default();
        for (name, path) in &args.assumable_role {
            let policy = path
                .as_deref()
                .map(|p| read_policy("--assumable-role", p))
                .transpose()?;
            policies.roles.push((name.clone(), policy));
        }
        for (arn, path) in &args.managed_policy {
            policies
                .managed
                .push((arn.clone(), read_policy("--managed-policy", path)?));
        }
        if let Some(path) = &args.instance_role_policy {
            policies.instance_role = Some(read_policy("--instance-role-policy", path)?);
        }
        Ok(policies)
    }
}

fn parse_template(s: &str) -> Result<(String, Option<HopLimit>), String> {
    match s.split_once(':') {
        None => Ok((s.to_owned(), None)),
        Some((name, hops)) => {
            let hops: HopLimit = hops.parse().map_err(|e| format!("{s:?}: {e}"))?;
            Ok((name.to_owned(), Some(hops)))
        }
    }
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: a tag is KEY=VALUE"))
}

impl MockArgs {
    /// The mock these flags describe (`user_data`: the content of `--user-data-file`).
    fn builder(&self, user_data: Option<Vec<u8>>, policies: Policies) -> MockBuilder {
        /// How far ahead a `--maintenance` event is scheduled.
        const WEEK: Duration = Duration::from_hours(168);
        let mut builder = MockAws::builder()
            .imds_addr(self.imds)
            .sts_addr(self.sts)
            .ec2_addr(self.ec2)
            .hop_limit(self.hop_limit)
            .http_tokens(self.http_tokens)
            .http_endpoint(self.http_endpoint)
            .credential_lifetime(Duration::from_secs(self.credential_lifetime))
            .apply_delay(Duration::from_millis(self.apply_delay_ms));
        let named = [
            (
                &self.role,
                MockBuilder::role as fn(MockBuilder, String) -> MockBuilder,
            ),
            (&self.account, MockBuilder::account),
            (&self.instance_id, MockBuilder::instance_id),
            (&self.region, MockBuilder::region),
        ];
        for (value, set) in named {
            if let Some(value) = value {
                builder = set(builder, value.clone());
            }
        }
        builder = builder
            .instance_metadata_tags(self.instance_metadata_tags)
            .http_protocol_ipv6(self.http_protocol_ipv6);
        for (key, value) in &self.tag {
            builder = builder.tag(key.clone(), value.clone());
        }
        let now = SystemTime::now();
        if let Some(action) = self.spot_action {
            builder = builder.spot_action(action, now + Duration::from_mins(2));
        }
        if self.rebalance {
            builder = builder.rebalance(now);
        }
        if let Some(state) = self.lifecycle_state {
            builder = builder.lifecycle_state(state);
        }
        for &code in &self.maintenance {
            let not_before = now + WEEK;
            let event =
                MaintenanceEvent::new(code, not_before, not_before + Duration::from_hours(2));
            builder = builder.maintenance(event);
        }
        if let Some(data) = user_data {
            builder = builder.user_data(data);
        }
        if self.fleet > 0 {
            builder = builder.fleet(self.fleet, self.seed);
        }
        builder = builder.throttle(self.throttle);
        if let Some(accounts) = self.accounts {
            builder = builder.organization(accounts, self.regions.clone());
        }
        for (name, hops) in &self.launch_template {
            let data = LaunchTemplateData {
                image_id: Some("ami-0abcdef1234567890".into()),
                instance_type: Some("m5.large".into()),
                metadata_options: hops.map(|hops| TemplateMetadataOptions {
                    http_tokens: Some(HttpTokens::Required),
                    hop_limit: Some(hops),
                    ..TemplateMetadataOptions::default()
                }),
                ..LaunchTemplateData::default()
            };
            builder = builder.launch_template(name.clone(), data);
        }
        for (name, policy) in policies.roles {
            builder = builder.assumable_role(name, policy);
        }
        for (arn, policy) in policies.managed {
            builder = builder.managed_policy(arn, policy);
        }
        if let Some(policy) = policies.instance_role {
            builder = builder.instance_role_policy(policy);
        }
        if let Some(seconds) = self.session_lifetime {
            builder = builder.session_lifetime(Duration::from_secs(seconds));
        }
        self.deny
            .iter()
            .fold(builder, |builder, action| builder.deny(action.clone()))
    }
}

pub(super) fn run(args: &MockArgs) -> anyhow::Result<Exit> {
    let user_data = match &args.user_data_file {
        Some(path) => match std::fs::read(path) {
            Ok(data) => Some(data),
            Err(err) => {
                eprintln!(
                    "imds-harness mock: --user-data-file {}: {err}; give a readable file",
                    path.display()
                );
                return Ok(Exit::Usage);
            }
        },
        None => None,
    };
    let policies = match Policies::read(args) {
        Ok(policies) => policies,
        Err(err) => {
            eprintln!("imds-harness mock: {err}");
            return Ok(Exit::Usage);
        }
    };
    let builder = args.builder(user_data, policies);
    if let Err(err) = builder.config() {
        eprintln!("imds-harness mock: {err}");
        return Ok(Exit::Usage);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    runtime.block_on(async move {
        let mock = match builder.start().await {
            Ok(mock) => mock,
            Err(err @ MockError::Bind(_)) => {
                eprintln!("imds-harness mock: {err}");
                return Ok(Exit::Usage);
            }
            Err(err) => return Err(err).context("starting the mock services"),
        };
        println!("{}", serde_json::to_string(mock.endpoints())?);
        let options = mock.options();
        tracing::info!(
            imds = %mock.endpoints().imds,
            hop_limit = %options.hop_limit,
            http_tokens = %options.http_tokens,
            http_endpoint = %options.http_endpoint,
            "mock AWS serving; SIGINT or SIGTERM stops it"
        );
        wait_for_termination().await?;
        mock.shutdown().await;
        Ok(Exit::Ok)
    })
}

async fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
