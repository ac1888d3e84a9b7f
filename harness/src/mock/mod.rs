//! The mock AWS side: an EC2 instance metadata service whose token response really
//! leaves with the instance's hop limit as its IP TTL, STS `GetCallerIdentity`, and the
//! EC2 metadata-options API, all sharing one simulated instance.
//!
//! The three services are plain HTTP servers on listeners the caller provides, so a
//! backend can bind them wherever the topology needs them (inside a network namespace
//! at 169.254.169.254:80, or on loopback). Metadata options change at run time, through
//! [`MockAws::modify`] or the EC2 API, without restarting any listener: a listener
//! restarted right after dropped responses may fail to bind while their sockets drain.

pub mod builder;
pub mod credentials;
pub mod describe_instances;
pub mod ec2;
pub mod fleet;
pub mod imds;
pub mod instance;
pub mod launch_templates;
pub mod metadata_defaults;
pub mod network;
pub mod notices;
pub mod options;
pub mod query;
pub mod server;
pub mod sigv4;
pub mod sts;
pub mod testcontainer;
pub mod throttle;
pub mod tokens;

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use builder::{MockBuilder, MockError};
pub use credentials::{CredentialStore, ImdsVersion, SessionCredentials};
pub use fleet::{Fleet, FleetInstance};
pub use instance::InstanceIdentity;
pub use launch_templates::{
    LaunchTemplateData, LaunchTemplateSpec, LaunchTemplates, TemplateMetadataOptions,
};
pub use metadata_defaults::MetadataDefaults;
pub use network::NetworkInterface;
pub use notices::{LifecycleState, MaintenanceCode, MaintenanceEvent, Notices, SpotAction};
pub use options::{
    HopLimit, HttpEndpoint, HttpTokens, MetadataOptions, MetadataOptionsChange, OptionError, Toggle,
};
use server::{Handler, ServerStats};
pub use server::{RequestLog, RequestMark, RequestRecord, Service};
pub use testcontainer::{ImdsMock, ImdsMockContainer};
use tokens::TokenMint;

/// EC2's default lifetime of instance-role credentials.
pub(crate) const DEFAULT_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// Everything about the simulated instance that a mock starts with.
#[derive(Clone, Debug)]
pub struct MockConfig {
    pub identity: InstanceIdentity,
    pub options: MetadataOptions,
    pub notices: Notices,
    /// What `/latest/user-data` serves; `None`: 404, as for an instance launched without.
    pub user_data: Option<bytes::Bytes>,
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
}

/// How many fleet instances to generate, and from which seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetSpec {
    pub size: usize,
    pub seed: u64,
}

/// The seed of the throttle's draws when there is no fleet seed to derive it from.
const THROTTLE_SEED: u64 = 0x1d5_7a7e;

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
        }
    }
}

/// What the services have been asked, for a sweep to tell which path a client took.
#[derive(Debug, Default)]
pub struct MockEvents {
    tokens_issued: AtomicU64,
    credentials_v1: AtomicU64,
    credentials_v2: AtomicU64,
    identity_v1: AtomicU64,
    identity_v2: AtomicU64,
}

/// A snapshot of [`MockEvents`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub tokens_issued: u64,
    pub credentials_v1: u64,
    pub credentials_v2: u64,
    /// `GetCallerIdentity` calls signed with IMDSv1 credentials.
    pub identity_v1: u64,
    pub identity_v2: u64,
}

impl MockEvents {
    fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    fn credentials_served(&self, version: ImdsVersion) {
        match version {
            ImdsVersion::V1 => &self.credentials_v1,
            ImdsVersion::V2 => &self.credentials_v2,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn caller_identity(&self, version: ImdsVersion) {
        match version {
            ImdsVersion::V1 => &self.identity_v1,
            ImdsVersion::V2 => &self.identity_v2,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EventCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventCounts {
            tokens_issued: get(&self.tokens_issued),
            credentials_v1: get(&self.credentials_v1),
            credentials_v2: get(&self.credentials_v2),
            identity_v1: get(&self.identity_v1),
            identity_v2: get(&self.identity_v2),
        }
    }
}

#[derive(Debug)]
struct OptionsCell {
    options: MetadataOptions,
    changed_at: SystemTime,
}

/// The simulated instance, shared by the three services.
#[derive(Debug)]
pub struct MockState {
    pub identity: InstanceIdentity,
    options: RwLock<OptionsCell>,
    notices: RwLock<Notices>,
    pub user_data: Option<bytes::Bytes>,
    apply_delay: Duration,
    pub mint: TokenMint,
    pub credentials: CredentialStore,
    pub events: MockEvents,
    denied: RwLock<BTreeSet<String>>,
    pub(crate) fleet: RwLock<Fleet>,
    pub(crate) launch_templates: RwLock<LaunchTemplates>,
    pub(crate) metadata_defaults: RwLock<MetadataDefaults>,
    pub throttle: throttle::Throttle,
}

impl MockState {
    pub fn new(config: MockConfig) -> Self {
        let (fleet, mut templates) = match config.fleet {
            Some(spec) => {
                let generated = Fleet::generate(spec.size, spec.seed);
                (generated.fleet, generated.templates)
            }
            None => (Fleet::default(), Vec::new()),
        };
        templates.extend(config.launch_templates.iter().cloned());
        let throttle_seed = config
            .fleet
            .map_or(THROTTLE_SEED, |f| f.seed ^ THROTTLE_SEED);
        MockState {
            fleet: RwLock::new(fleet),
            launch_templates: RwLock::new(LaunchTemplates::new(&templates)),
            metadata_defaults: RwLock::new(config.metadata_defaults),
            throttle: throttle::Throttle::new(config.throttle_rate, throttle_seed),
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
            denied: RwLock::new(config.denied_actions),
        }
    }

    pub fn options(&self) -> MetadataOptions {
        self.options.read().expect("options lock").options
    }

    /// The tags and notices the instance's metadata serves now.
    pub fn notices(&self) -> Notices {
        self.notices.read().expect("notices lock").clone()
    }

    pub(crate) fn change_notices(&self, change: impl FnOnce(&mut Notices)) {
        change(&mut self.notices.write().expect("notices lock"));
    }

    /// Applies `change` (effective on the next IMDS request) and returns the result.
    pub(crate) fn modify_options(&self, change: &MetadataOptionsChange) -> MetadataOptions {
        let mut cell = self.options.write().expect("options lock");
        cell.options.apply(change);
        cell.changed_at = SystemTime::now();
        cell.options
    }

    /// `pending` for [`MockConfig::apply_delay`] after a change, then `applied`.
    pub(crate) fn options_state(&self, now: SystemTime) -> &'static str {
        let changed_at = self.options.read().expect("options lock").changed_at;
        if now < changed_at + self.apply_delay {
            "pending"
        } else {
            "applied"
        }
    }

    pub(crate) fn is_denied(&self, action: &str) -> bool {
        self.denied.read().expect("denied lock").contains(action)
    }
}

/// The URLs of a running mock's services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub imds: String,
    pub sts: String,
    pub ec2: String,
}

/// With a trailing slash: the AWS CLI refuses an IMDS endpoint without one.
fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// The three listening sockets a mock serves.
#[derive(Debug)]
pub struct Listeners {
    pub imds: TcpListener,
    pub sts: TcpListener,
    pub ec2: TcpListener,
}

impl Listeners {
    /// Binds all three in the current network namespace (port 0 picks a free port).
    pub fn bind(imds: SocketAddr, sts: SocketAddr, ec2: SocketAddr) -> io::Result<Self> {
        let bind = |addr: SocketAddr| {
            TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        Ok(Listeners {
            imds: bind(imds)?,
            sts: bind(sts)?,
            ec2: bind(ec2)?,
        })
    }

    /// All three on 127.0.0.1 with free ports.
    pub fn loopback() -> io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(any, any, any)
    }
}

/// A running mock. Dropping it stops the services.
pub struct MockAws {
    state: Arc<MockState>,
    endpoints: Endpoints,
    log: Arc<RequestLog>,
    imds_stats: Arc<ServerStats>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl MockAws {
    /// Starts serving on `listeners`. Must be called inside a Tokio runtime.
    pub fn start(config: MockConfig, listeners: Listeners) -> io::Result<MockAws> {
        let state = Arc::new(MockState::new(config));
        let endpoints = Endpoints {
            imds: url_of(listeners.imds.local_addr()?),
            sts: url_of(listeners.sts.local_addr()?),
            ec2: url_of(listeners.ec2.local_addr()?),
        };
        let (shutdown, watcher) = watch::channel(false);
        let imds_stats = Arc::new(ServerStats::default());
        let imds: Arc<dyn Handler> = Arc::new(imds::Imds::new(state.clone()));
        let sts: Arc<dyn Handler> = Arc::new(sts::Sts::new(state.clone()));
        let ec2: Arc<dyn Handler> = Arc::new(ec2::Ec2::new(state.clone()));
        // IMDS closes every connection, as the real one does; the APIs keep them alive.
        let log = Arc::new(RequestLog::default());
        let tasks = vec![
            server::spawn(
                listeners.imds,
                imds,
                false,
                imds_stats.clone(),
                (Service::Imds, log.clone()),
                watcher.clone(),
            )?,
            server::spawn(
                listeners.sts,
                sts,
                true,
                Arc::default(),
                (Service::Sts, log.clone()),
                watcher.clone(),
            )?,
            server::spawn(
                listeners.ec2,
                ec2,
                true,
                Arc::default(),
                (Service::Ec2, log.clone()),
                watcher,
            )?,
        ];
        Ok(MockAws {
            state,
            endpoints,
            log,
            imds_stats,
            shutdown,
            tasks,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    pub fn options(&self) -> MetadataOptions {
        self.state.options()
    }

    /// Changes the metadata options as `ModifyInstanceMetadataOptions` would.
    pub fn modify(&self, change: &MetadataOptionsChange) -> MetadataOptions {
        self.state.modify_options(change)
    }

    pub fn set_hop_limit(&self, hop_limit: HopLimit) {
        self.modify(&MetadataOptionsChange {
            hop_limit: Some(hop_limit),
            ..Default::default()
        });
    }

    /// Posts a Spot interruption notice (`spot/instance-action`): `action` at `time`.
    pub fn interrupt_spot(&self, action: SpotAction, time: SystemTime) {
        self.state
            .change_notices(|n| n.spot_action = Some((action, time)));
    }

    /// Posts a rebalance recommendation (`events/recommendations/rebalance`) made at
    /// `time`.
    pub fn recommend_rebalance(&self, time: SystemTime) {
        self.state.change_notices(|n| n.rebalance = Some(time));
    }

    /// Sets the instance's tag `key` (served with `InstanceMetadataTags=enabled`).
    pub fn set_tag(&self, key: &str, value: &str) {
        self.state
            .change_notices(|n| drop(n.tags.insert(key.to_owned(), value.to_owned())));
    }

    /// Sets the Auto Scaling target lifecycle state (`None`: not in a group).
    pub fn set_lifecycle_state(&self, state: Option<LifecycleState>) {
        self.state.change_notices(|n| n.lifecycle = state);
    }

    /// Schedules a maintenance event (`events/maintenance/scheduled`).
    pub fn schedule_maintenance(&self, event: MaintenanceEvent) {
        self.state.change_notices(|n| n.maintenance.push(event));
    }

    /// Withdraws every notice and tag.
    pub fn clear_notices(&self) {
        self.state.change_notices(|n| *n = Notices::default());
    }

    /// Refuses (`true`) or allows an EC2 action from now on.
    pub fn deny(&self, action: &str, denied: bool) {
        let mut set = self.state.denied.write().expect("denied lock");
        if denied {
            set.insert(action.to_string());
        } else {
            set.remove(action);
        }
    }

    /// The fleet beside the mock's own instance, as it is now.
    pub fn fleet(&self) -> Fleet {
        self.state.fleet.read().expect("fleet lock").clone()
    }

    /// The launch templates, as they are now.
    pub fn launch_templates(&self) -> LaunchTemplates {
        self.state
            .launch_templates
            .read()
            .expect("launch templates lock")
            .clone()
    }

    /// The account's instance metadata defaults, as they are now.
    pub fn metadata_defaults(&self) -> MetadataDefaults {
        *self
            .state
            .metadata_defaults
            .read()
            .expect("metadata defaults lock")
    }

    /// EC2 calls answered with `RequestLimitExceeded` so far.
    pub fn throttled(&self) -> u64 {
        self.state.throttle.refused()
    }

    pub fn events(&self) -> EventCounts {
        self.state.events.snapshot()
    }

    /// The requests answered so far (the newest [`RequestLog::CAPACITY`]), oldest first:
    /// service, method, path, status, peer, and for STS which credential set signed.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.snapshot()
    }

    /// Now, in the request log: what is answered after this is [`Self::requests_since`]
    /// it.
    pub fn request_mark(&self) -> RequestMark {
        self.log.mark()
    }

    /// The requests answered after `mark`, oldest first.
    pub fn requests_since(&self, mark: RequestMark) -> Vec<RequestRecord> {
        self.log.since(mark)
    }

    /// Connections the IMDS holds open right now.
    pub fn imds_open_connections(&self) -> usize {
        self.imds_stats.open_connections.load(Ordering::Relaxed)
    }

    /// Whether every service still serves: false once one has stopped (it failed, or
    /// [`Self::stop`] was called).
    pub fn is_serving(&self) -> bool {
        !*self.shutdown.borrow() && self.tasks.iter().all(|task| !task.is_finished())
    }

    /// Stops serving now, as a crash would: the listeners close and every later
    /// connection is refused. The state stays readable.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Stops accepting and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for MockAws {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
