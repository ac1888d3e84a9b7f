//! The sweep: for each topology, client and tokens mode (a cell), the smallest hop limit
//! at which the client gets the role's identity at the topology's leaf.
//!
//! A client working at hop limit H works at every larger one, so the search is a binary
//! search over 1..=64 ([`search`]), seeded where possible by a measurement already made
//! (the TTL probe, or another client). Its answer H always stands on two probes of its
//! neighbours: H worked and H-1 failed (with a right seed, those two are all).
//!
//! Almost all of a sweep is waiting: a failing probe waits for its client's time-out.
//! Where the site can start a mock per cell ([`Site::cell_mock`]: both backends), the
//! cells of a topology probe at the same time, each against a mock of its own (its own
//! hop limit, tokens mode, events and request log, so each verdict and each "via IMDSv1"
//! is its client's alone); the first client measured seeds the others unless the model
//! does. Elsewhere (a site with one mock) that mock serves the topology, its hop limit
//! and tokens mode changed between probes, and the cells run one after another.
//! Topologies run on [`SweepPlan::parallel`] workers.
//!
//! - [`plan`]: what a sweep is asked to measure, and the events it reports.
//! - [`search`]: the search over hop limits.
//! - [`cell`]: one cell's measurement at a mock: the retry rule and the attribution.
//! - [`client`]: one run of one client at a leaf.
//! - [`start_ups`]: how many clients may be starting at once.
//! - [`error`]: the first error, which stops the sweep.

mod cell;
mod client;
mod error;
mod plan;
mod search;
mod start_ups;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::backend::endpoints::{IMDS_URL, STS_URL};
use crate::backend::{Lab, Site};
use crate::cell::Cell;
use crate::probe::env::ClientEnv;
pub use crate::probe::Tools;
use crate::probe::{Client, Probe};
use crate::topology::Topology;
use cell::CellRun;
pub use client::{run_client, run_client_at};
pub use error::SweepError;
use error::{Stop, Stopped};
use imds_mock::{MetadataOptionsChange, MockAws};
use imds_vocab::{HopLimit, HttpTokens};
pub use plan::{CellKey, SweepEvent, SweepPlan};
pub use search::{search, Search, Strategy};
use start_ups::StartUps;

/// The order in which a topology's clients run: the cheap TTL probe first, to seed the
/// others, then the Rust SDK, the SDK programs, and the slow CLI.
fn ordered(clients: &[Probe]) -> Vec<Probe> {
    let rank = |probe: &Probe| match probe {
        Probe::Ttl => 0,
        Probe::Client(Client::RustSdk) => 1,
        Probe::Client(Client::GoSdkV2) => 2,
        Probe::Client(Client::GoSdkV1) => 3,
        Probe::Client(Client::RubySdk) => 4,
        Probe::Client(Client::Boto3) => 5,
        Probe::Client(Client::Cli) => 6,
    };
    let mut ordered = clients.to_vec();
    ordered.sort_by_key(rank);
    ordered.dedup();
    ordered
}

/// The seed of a topology's searches before any client is measured: behind a user-space
/// stack, where the TTL probe sees only part of the chain, the model's figure (every
/// answer is confirmed by probes anyway); elsewhere none, and the first client measured
/// (the TTL probe, when asked for) seeds the others.
fn model_seed(topology: &Topology) -> Option<HopLimit> {
    topology.is_proxied().then(|| topology.min_hop_limit())
}

/// A folder for the clients' HOME, removed when dropped.
fn home(stop: &Stop) -> Result<tempfile::TempDir, Stopped> {
    tempfile::Builder::new()
        .prefix("imdsh-home-")
        .tempdir()
        .map_err(|err| stop.fail(SweepError::Home(err)))
}

/// What every cell of one topology's measurement shares.
struct TopologyRun<'a> {
    site: &'a dyn Site,
    topology: Topology,
    plan: &'a SweepPlan,
    events: &'a (dyn Fn(SweepEvent<'_>) + Sync),
    stop: &'a Stop,
    start_ups: &'a StartUps,
}

impl TopologyRun<'_> {
    fn key(&self, client: Probe, http_tokens: HttpTokens) -> CellKey {
        CellKey {
            topology: self.topology,
            client,
            http_tokens,
        }
    }

    /// Measures every cell of the topology: at once if the site makes a mock per cell,
    /// else one after another.
    fn measure(&self) -> Result<Vec<Cell>, Stopped> {
        match self.site.cell_mock() {
            None => self.one_by_one(),
            Some(first) => {
                let first = first.map_err(|source| self.site_failed(source))?;
                self.at_once(first)
            }
        }
    }

    fn site_failed(&self, source: Box<dyn std::error::Error + Send + Sync>) -> Stopped {
        self.stop.fail(SweepError::Site {
            topology: self.topology,
            source,
        })
    }

    /// One mock for every cell, at the endpoints every backend serves at: the modes in
    /// turn, the clients in turn.
    fn one_by_one(&self) -> Result<Vec<Cell>, Stopped> {
        let home = home(self.stop)?;
        let env = ClientEnv::new(home.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL);
        let mut cells = Vec::new();
        for &mode in &self.plan.modes {
            set_tokens(self.site.mock(), mode);
            let mut seed = model_seed(&self.topology);
            for client in ordered(&self.plan.clients) {
                let cell = CellRun {
                    key: self.key(client, mode),
                    leaf: self.site.leaf(),
                    mock: self.site.mock(),
                    env: &env,
                    sts_url: STS_URL,
                    plan: self.plan,
                    events: self.events,
                    stop: self.stop,
                    start_ups: self.start_ups,
                    precedence: precedence(client),
                }
                .measure(seed)?;
                if seed.is_none() {
                    seed = cell.minimal_hop_limit;
                }
                cells.push(cell);
            }
        }
        Ok(cells)
    }

    /// A mock per cell (`first` is the first one), every cell in a thread of its own; in
    /// each mode the first client runs before the others when its answer seeds them.
    fn at_once(&self, first: MockAws) -> Result<Vec<Cell>, Stopped> {
        let first = Mutex::new(Some(first));
        let mock = || -> Result<MockAws, Stopped> {
            if let Some(mock) = first.lock().expect("first mock").take() {
                return Ok(mock);
            }
            self.site
                .cell_mock()
                .expect("a site that made a mock for one cell makes one for every cell")
                .map_err(|source| self.site_failed(source))
        };
        let runtime = tokio::runtime::Handle::current();
        let clients = ordered(&self.plan.clients);
        let seed = model_seed(&self.topology);
        let (leaders, followers) = clients.split_at(usize::from(seed.is_none()).min(clients.len()));
        std::thread::scope(|scope| {
            let modes: Vec<_> = self
                .plan
                .modes
                .iter()
                .map(|&mode| {
                    let (runtime, mock) = (&runtime, &mock);
                    scope.spawn(move || {
                        let _runtime = runtime.enter();
                        let mut cells = Vec::new();
                        let mut seed = seed;
                        for &client in leaders {
                            let cell =
                                self.cell_with_own_mock(&mock()?, client, mode, seed, LEADS)?;
                            seed = cell.minimal_hop_limit;
                            cells.push(cell);
                        }
                        let measured: Vec<Result<Cell, Stopped>> = std::thread::scope(|scope| {
                            let threads: Vec<_> = followers
                                .iter()
                                .map(|&client| {
                                    scope.spawn(move || {
                                        let _runtime = runtime.enter();
                                        let precedence = precedence(client);
                                        self.cell_with_own_mock(
                                            &mock()?,
                                            client,
                                            mode,
                                            seed,
                                            precedence,
                                        )
                                    })
                                })
                                .collect();
                            threads.into_iter().map(join).collect()
                        });
                        for cell in measured {
                            cells.push(cell?);
                        }
                        Ok(cells)
                    })
                })
                .collect();
            let mut cells = Vec::new();
            for mode in modes {
                cells.extend(join(mode)?);
            }
            Ok(cells)
        })
    }

    /// One cell against `mock`, which serves it alone; its runs start up in the order
    /// `precedence` gives ([`StartUps::enter`]).
    fn cell_with_own_mock(
        &self,
        mock: &MockAws,
        client: Probe,
        mode: HttpTokens,
        seed: Option<HopLimit>,
        precedence: Duration,
    ) -> Result<Cell, Stopped> {
        set_tokens(mock, mode);
        let home = home(self.stop)?;
        let endpoints = mock.endpoints();
        let env = ClientEnv::new(home.path(), &endpoints.imds)
            .with("AWS_ENDPOINT_URL_STS", &endpoints.sts);
        CellRun {
            key: self.key(client, mode),
            leaf: self.site.leaf(),
            mock,
            env: &env,
            sts_url: &endpoints.sts,
            plan: self.plan,
            events: self.events,
            stop: self.stop,
            start_ups: self.start_ups,
            precedence,
        }
        .measure(seed)
    }
}

/// The precedence of a cell whose answer the others of its topology and mode wait for
/// (the TTL probe's seed): before every other start-up.
const LEADS: Duration = Duration::MAX;

/// Where a cell's runs stand in the line for starting up: the TTL probe, which waits for
/// nothing and takes milliseconds, first (behind it, it would wait for every other run,
/// however late they came); the clients by how long they wait when they fail.
fn precedence(client: Probe) -> Duration {
    if client == Probe::Ttl {
        LEADS
    } else {
        client.time_to_fail()
    }
}

/// A scoped thread's result; its panic, passed on.
fn join<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Sets `mock`'s tokens mode.
fn set_tokens(mock: &MockAws, mode: HttpTokens) {
    mock.modify(&MetadataOptionsChange {
        http_tokens: Some(mode),
        ..Default::default()
    });
}

/// The plan's topologies in the batches a worker takes at once: those with the same
/// [`Lab::shared_setup`] together (in the plan's order), the largest batches first so
/// that the longest work starts first; the rest one at a time.
fn batches<'p>(
    topologies: &'p [Topology],
    shared_setup: impl Fn(&Topology) -> Option<&'static str>,
) -> VecDeque<VecDeque<&'p Topology>> {
    let mut batches: Vec<(Option<&'static str>, VecDeque<&'p Topology>)> = Vec::new();
    for topology in topologies {
        let setup = shared_setup(topology);
        match batches
            .iter_mut()
            .find(|(s, _)| setup.is_some() && *s == setup)
        {
            Some((_, batch)) => batch.push_back(topology),
            None => batches.push((setup, VecDeque::from([topology]))),
        }
    }
    batches.sort_by_key(|(_, batch)| std::cmp::Reverse(batch.len()));
    batches.into_iter().map(|(_, batch)| batch).collect()
}

/// Runs the plan on `lab`; `events` is told of every run and settled cell (from worker
/// threads). Each worker keeps one [`Lab::Worker`] for the topologies it measures,
/// taking them in [`batches`]. The first error stops the sweep: no run starts after it.
/// Must be called inside a Tokio runtime (the mocks run on it).
pub fn run<L: Lab>(
    lab: &L,
    plan: &SweepPlan,
    events: &(dyn Fn(SweepEvent<'_>) + Sync),
) -> Result<Vec<Cell>, SweepError> {
    let runtime = tokio::runtime::Handle::current();
    let queue = Mutex::new(batches(&plan.topologies, |t| lab.shared_setup(t)));
    let results = Mutex::new(Vec::new());
    let stop = Stop::default();
    let start_ups = StartUps::for_this_machine();
    let workers = plan.parallel.max(1).min(plan.topologies.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let _runtime = runtime.enter();
                let mut worker: Option<L::Worker> = None;
                let mut batch = VecDeque::new();
                while stop.check().is_ok() {
                    if batch.is_empty() {
                        match queue.lock().expect("queue").pop_front() {
                            Some(next) => batch = next,
                            None => return,
                        }
                    }
                    let topology = batch.pop_front().expect("a batch is never empty");
                    let site = match &mut worker {
                        Some(worker) => Ok(worker),
                        None => lab.worker().map(|w| worker.insert(w)),
                    }
                    .and_then(|worker| lab.realise(worker, topology));
                    let site = match site {
                        Ok(site) => site,
                        Err(source) => {
                            stop.fail(SweepError::Site {
                                topology: *topology,
                                source: Box::new(source),
                            });
                            return;
                        }
                    };
                    let measured = TopologyRun {
                        site: &*site,
                        topology: *topology,
                        plan,
                        events,
                        stop: &stop,
                        start_ups: &start_ups,
                    }
                    .measure();
                    if let Ok(cells) = measured {
                        results.lock().expect("results").extend(cells);
                    }
                }
            });
        }
    });
    let mut cells = stop.into_result(results.into_inner().expect("results"))?;
    let order = |c: &Cell| {
        (
            plan.topologies.iter().position(|t| *t == c.topology),
            plan.modes.iter().position(|m| *m == c.http_tokens),
            plan.clients.iter().position(|k| *k == c.client),
        )
    };
    cells.sort_by_key(order);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_sharing_a_setup_go_to_one_worker_in_the_plans_order() {
        let plan: Vec<Topology> = [
            "host",
            "earthly-run",
            "podman-run",
            "earthly-cni",
            "docker-run",
            "earthly-with-docker",
            "buildah-run",
        ]
        .iter()
        .map(|n| Topology::parse(n).unwrap())
        .collect();
        let setup = |t: &Topology| {
            let name = t.name();
            ["earthly", "podman", "buildah"]
                .into_iter()
                .find(|p| name.starts_with(p))
                .map(|p| if p == "buildah" { "podman" } else { p })
        };
        let names: Vec<Vec<String>> = batches(&plan, setup)
            .into_iter()
            .map(|b| b.iter().map(|t| t.name().into_owned()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["earthly-run", "earthly-cni", "earthly-with-docker"],
                vec!["podman-run", "buildah-run"],
                vec!["host"],
                vec!["docker-run"],
            ]
        );
        // Without shared setups: one at a time, in the plan's order.
        let one_by_one = batches(&plan, |_| None);
        assert_eq!(one_by_one.len(), plan.len());
        assert!(one_by_one.iter().zip(&plan).all(|(b, t)| b == &[t]));
    }

    #[test]
    fn the_ttl_probe_runs_first_and_the_cli_last_each_once() {
        let mut asked: Vec<Probe> = Probe::all().collect();
        asked.reverse();
        asked.push(Probe::Ttl);
        let names: Vec<&str> = ordered(&asked).into_iter().map(Probe::name).collect();
        assert_eq!(names, ["ttl", "sdk", "go", "go-v1", "ruby", "boto3", "cli"]);
        assert_eq!(
            ordered(&[Probe::Client(Client::Cli), Probe::Ttl]),
            [Probe::Ttl, Probe::Client(Client::Cli)]
        );
    }
}
