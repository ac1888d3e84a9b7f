//! A running mock: the three services on the listeners it was given, the simulated
//! instance they share, and what a test changes and reads while they serve.
//!
//! The services are plain HTTP servers on listeners the caller provides, so a backend
//! can bind them wherever the topology needs them (inside a network namespace at
//! 169.254.169.254:80, or on loopback). Metadata options change at run time, through
//! [`MockAws::modify`] or the EC2 API, without restarting any listener: a listener
//! restarted right after dropped responses may fail to bind while their sockets drain.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use imds_vocab::HopLimit;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::MockConfig;
use crate::ec2::fleet::Fleet;
use crate::ec2::launch_templates::LaunchTemplates;
use crate::ec2::metadata_defaults::MetadataDefaults;
use crate::events::EventCounts;
use crate::iam::principal::AssumedSession;
use crate::imds::notices::{LifecycleState, MaintenanceEvent, Notices, SpotAction};
use crate::imds::service::Imds;
use crate::instance::InstanceIdentity;
use crate::options::{MetadataOptions, MetadataOptionsChange};
use crate::organizations::model::Account;
use crate::request_log::{RequestLog, RequestMark, RequestRecord, Service};
use crate::router::Router;
use crate::server::{self, Handler, ServerStats};
use crate::state::MockState;
use crate::sts::service::Sts;

/// The URLs of a running mock's services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// The IMDS's URL, with the trailing slash the AWS CLI needs.
    pub imds: String,
    /// STS's URL.
    pub sts: String,
    /// The EC2 API's URL.
    pub ec2: String,
}

/// With a trailing slash: the AWS CLI refuses an IMDS endpoint without one.
fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// The three listening sockets a mock serves.
#[derive(Debug)]
pub struct Listeners {
    /// The IMDS's socket.
    pub imds: TcpListener,
    /// STS's socket.
    pub sts: TcpListener,
    /// The EC2 API's socket.
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
        let imds: Arc<dyn Handler> = Arc::new(Imds::new(state.clone()));
        let sts: Arc<dyn Handler> = Arc::new(Sts::new(state.clone()));
        let ec2: Arc<dyn Handler> = Arc::new(Router::new(&state));
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

    /// Where the services listen.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Who the simulated instance and its role are.
    pub fn identity(&self) -> &InstanceIdentity {
        &self.state.identity
    }

    /// The metadata options in force now.
    pub fn options(&self) -> MetadataOptions {
        self.state.options()
    }

    /// Changes the metadata options as `ModifyInstanceMetadataOptions` would.
    pub fn modify(&self, change: &MetadataOptionsChange) -> MetadataOptions {
        self.state.modify_options(*change)
    }

    /// Changes the hop limit alone, as `ModifyInstanceMetadataOptions` would.
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
        self.state.denied.set(action, denied);
    }

    /// The fleet beside the mock's own instance, as it is now.
    pub fn fleet(&self) -> Fleet {
        self.state.home.fleet.read().expect("fleet lock").clone()
    }

    /// The launch templates, as they are now.
    pub fn launch_templates(&self) -> LaunchTemplates {
        self.state
            .home
            .launch_templates
            .read()
            .expect("launch templates lock")
            .clone()
    }

    /// The account's instance metadata defaults, as they are now.
    pub fn metadata_defaults(&self) -> MetadataDefaults {
        *self
            .state
            .home
            .metadata_defaults
            .read()
            .expect("metadata defaults lock")
    }

    /// EC2 calls answered with `RequestLimitExceeded` so far (in an organization, in
    /// the mock's own account and region: [`Self::throttled_in`] for the others).
    pub fn throttled(&self) -> u64 {
        self.state.home.throttle.refused()
    }

    /// EC2 calls answered with `RequestLimitExceeded` in `account`'s `region` so far
    /// (`None`: the mock does not serve that account there).
    pub fn throttled_in(&self, account: &str, region: &str) -> Option<u64> {
        Some(self.state.scope(account, region).ok()?.throttle.refused())
    }

    /// EC2 calls answered with `RequestLimitExceeded` in every account and region.
    pub fn throttled_everywhere(&self) -> u64 {
        let members = self.state.organization.as_ref().map_or(0, |org| {
            org.scopes()
                .map(|(_, scope)| scope.throttle.refused())
                .sum()
        });
        self.throttled() + members
    }

    /// The organization's accounts, the management account (the mock's own) first;
    /// empty without an organization.
    pub fn organization_accounts(&self) -> Vec<Account> {
        self.state
            .organization
            .as_ref()
            .map(|org| org.accounts.clone())
            .unwrap_or_default()
    }

    /// The fleet of `account` in `region`, as it is now (`None`: not served there).
    pub fn fleet_in(&self, account: &str, region: &str) -> Option<Fleet> {
        let scope = self.state.scope(account, region).ok()?;
        Some(scope.fleet.read().expect("fleet lock").clone())
    }

    /// Refuses (`true`) or allows the EC2 action `action` in `account`'s `region` only,
    /// as a service control policy's explicit deny (`UnauthorizedOperation`); `false`
    /// when the mock has no such scope.
    pub fn deny_in(&self, account: &str, region: &str, action: &str, denied: bool) -> bool {
        match self.state.scope(account, region) {
            Ok(scope) => {
                scope.denied.set(action, denied);
                true
            }
            Err(_) => false,
        }
    }

    /// The launch templates of `account` in `region`, as they are now.
    pub fn launch_templates_in(&self, account: &str, region: &str) -> Option<LaunchTemplates> {
        let scope = self.state.scope(account, region).ok()?;
        Some(scope.launch_templates.read().expect("lt lock").clone())
    }

    /// The instance metadata defaults of `account` in `region`, as they are now.
    pub fn metadata_defaults_in(&self, account: &str, region: &str) -> Option<MetadataDefaults> {
        let scope = self.state.scope(account, region).ok()?;
        Some(*scope.metadata_defaults.read().expect("defaults lock"))
    }

    /// The sessions STS `AssumeRole` made (kept until an hour past their expiry),
    /// oldest first; no secret in them.
    pub fn assumed_sessions(&self) -> Vec<AssumedSession> {
        self.state.assumed_sessions()
    }

    /// What the services have been asked so far.
    pub fn events(&self) -> EventCounts {
        self.state.events.snapshot()
    }

    /// The requests answered so far (the newest [`RequestLog::CAPACITY`], within
    /// [`RequestLog::BYTE_BUDGET`] bytes), oldest first:
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

    /// Connections the IMDS has admitted and not closed: at most its caps (512, and 128
    /// from one address). An idle one closed to make room leaves this count at once and
    /// [`Self::imds_open_connections`] once its task has run.
    pub fn imds_admitted_connections(&self) -> usize {
        self.imds_stats.admission.open()
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
