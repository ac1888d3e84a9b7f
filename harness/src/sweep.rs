//! The sweep: for each topology, client and tokens mode, the smallest hop limit at which
//! the client gets the role's identity at the topology's leaf.
//!
//! One mock per topology lives for the whole sweep of that topology; its hop limit
//! changes at run time between probes. Topologies run in parallel, each in namespaces
//! of its own. A client working at hop limit H works at every larger one, so the search
//! is a binary search over 1..=64, seeded where possible by a measurement already made
//! (the TTL probe, or another client). Its answer H always stands on two probes of
//! its neighbours: H worked and H-1 failed (with a right seed, those two are all).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imds_vocab::report::Steps;
use serde::Serialize;

use crate::backend::endpoints::{IMDS_URL, STS_URL};
use crate::backend::{Lab, Site};
use crate::cell::Cell;
use crate::model;
use crate::probe::env::ClientEnv;
pub use crate::probe::Tools;
use crate::probe::{cli, sdk, shim, Client, Leaf, Probe, ProbeError, ProbeOutcome, Program};
use crate::topology::Topology;
use imds_mock::{ImdsVersion, MetadataOptionsChange, RequestRecord, Service};
use imds_vocab::{HopLimit, HttpTokens};

/// How often a failed run that shows no dropped token is run again.
const RETRIES: u32 = 2;

/// An IMDS GET the mock answered with 200: with tokens required its caller had a token.
fn answered_imds_get(request: &RequestRecord) -> bool {
    request.service == Service::Imds && request.method == "GET" && request.status == 200
}

/// How the minimal hop limit is searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Binary search, seeded by earlier measurements, confirmed at the neighbours.
    Bisect,
    /// 1, 2, 3, ... until the client works: the naive sweep, for comparison.
    Linear,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// The nestings to realise, each measured on its own.
    pub topologies: Vec<Topology>,
    /// The clients to run at each topology's leaf, in any order: the TTL probe runs first
    /// and the CLI last whatever the order given.
    pub clients: Vec<Probe>,
    /// The tokens modes the mock is set to, in turn, for every topology.
    pub modes: Vec<HttpTokens>,
    /// How the hop limits are searched.
    pub strategy: Strategy,
    /// The IMDS timeout the `sdk` and `ttl` probes use. The AWS CLI keeps its own (1 s).
    pub probe_timeout: Duration,
    /// How many topologies are measured at once.
    pub parallel: usize,
}

/// Why a sweep stopped: the first error ends it, and nothing after it is measured.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The backend could not make a worker or realise a topology.
    #[error("topology {topology}: {source}")]
    Site {
        /// The topology being realised.
        topology: Topology,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A client could not be run at all (as opposed to running and getting no identity).
    #[error("topology {topology}, client {client}: {source}")]
    Probe {
        /// The topology whose leaf the client ran at.
        topology: Topology,
        /// The client that could not be run.
        client: Probe,
        /// Why it could not be run.
        source: ProbeError,
    },
    #[error(
        "topology {topology}, client {client}, tokens {http_tokens}: the mock stopped \
         serving during the measurement, so nothing after it can be trusted"
    )]
    /// The mock stopped serving while a client ran, so the client's result means nothing.
    MockDied {
        /// The topology being measured.
        topology: Topology,
        /// The client that had just run.
        client: Probe,
        /// The tokens mode the mock was set to.
        http_tokens: HttpTokens,
    },
    /// The clients' temporary HOME folder could not be made.
    #[error("a temporary folder for the clients' HOME: {0}")]
    Home(std::io::Error),
}

/// The result of a search over hop limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// The smallest hop limit that works; `None`: none up to 64 does.
    pub minimal: Option<HopLimit>,
    /// Every hop limit probed, in order, and whether it worked (one may appear twice
    /// when a failure was probed again to confirm it).
    pub tried: Vec<(HopLimit, bool)>,
}

/// The smallest hop limit in 1..=64 at which `works` holds, assuming it then holds at
/// every larger one. A `seed` (the expected answer) is checked first: if the one below
/// it fails and `seed` works, two probes suffice. Whatever the path, the answer H was
/// probed and worked, and H-1 (if any) was probed and failed.
pub fn search<E>(
    strategy: Strategy,
    seed: Option<HopLimit>,
    mut works: impl FnMut(HopLimit) -> Result<bool, E>,
) -> Result<Search, E> {
    // The search runs on indices into every hop limit, in order.
    let all: Vec<HopLimit> = HopLimit::all().collect();
    let (min, max) = (0, all.len() - 1);
    let mut tried: Vec<(HopLimit, bool)> = Vec::new();
    let mut known: BTreeMap<usize, bool> = BTreeMap::new();
    // `fresh`: probe even if the answer is known (and replace it).
    let mut probe = |i: usize, fresh: bool, tried: &mut Vec<(HopLimit, bool)>| -> Result<bool, E> {
        if let Some(&ok) = known.get(&i).filter(|_| !fresh) {
            return Ok(ok);
        }
        let ok = works(all[i])?;
        known.insert(i, ok);
        tried.push((all[i], ok));
        Ok(ok)
    };

    let minimal = match strategy {
        Strategy::Linear => {
            let mut found = None;
            for i in min..=max {
                if probe(i, false, &mut tried)? {
                    found = Some(i);
                    break;
                }
            }
            found
        }
        Strategy::Bisect => {
            let (mut lo, mut hi) = (min, max);
            let mut settled = None;
            if let Some(seed) = seed.and_then(|s| all.iter().position(|h| *h == s)) {
                if probe(seed, false, &mut tried)? {
                    if seed == min || !probe(seed - 1, false, &mut tried)? {
                        settled = Some(Some(seed));
                    } else {
                        hi = seed - 1;
                    }
                } else {
                    lo = seed + 1;
                }
            }
            match settled {
                Some(answer) => answer,
                None if lo > max || !probe(hi, false, &mut tried)? => None,
                None => {
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if probe(mid, false, &mut tried)? {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    Some(hi)
                }
            }
        }
    };

    // A failure is trusted only when it happens twice: a busy machine can delay a token
    // past the client's timeout, which looks like a dropped one. The failure just below
    // the answer is probed again; if it works now, the answer moves down.
    let mut minimal = minimal;
    for _ in 0..CONFIRMATIONS {
        let Some(m) = minimal.filter(|m| *m > min) else {
            break;
        };
        if !probe(m - 1, true, &mut tried)? {
            break;
        }
        let mut lower = m - 1;
        while lower > min && probe(lower - 1, false, &mut tried)? {
            lower -= 1;
        }
        minimal = Some(lower);
    }

    Ok(Search {
        minimal: minimal.map(|i| all[i]),
        tried,
    })
}

/// How often the failure below an answer is probed again before it is trusted.
const CONFIRMATIONS: usize = 2;

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

/// Runs one client at `leaf`, STS at the leaf's [`STS_URL`]; `timeout` is the IMDS
/// timeout of the `sdk` and `ttl` probes (the other clients keep their own).
pub fn run_client(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    timeout: Duration,
    client: Probe,
) -> Result<ProbeOutcome, ProbeError> {
    match client.program() {
        Program::Shim if client == Probe::Ttl => shim::run(leaf, env, Steps::Ttl, timeout),
        Program::Shim => shim::run(leaf, env, Steps::Sdk, timeout),
        Program::AwsCli => cli::run(leaf, env, STS_URL),
        Program::Sdk(program) => sdk::run(leaf, env, program, STS_URL),
    }
}

fn measure_topology(
    site: &dyn Site,
    topology: &Topology,
    plan: &SweepPlan,
    on_cell: &(dyn Fn(&Cell) + Sync),
) -> Result<Vec<Cell>, SweepError> {
    let home = tempfile::Builder::new()
        .prefix("imdsh-home-")
        .tempdir()
        .map_err(SweepError::Home)?;
    let env = ClientEnv::new(home.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL);
    // A client's failure counts only while the mock serves: checked after every run.
    let run = |client, http_tokens| -> Result<ProbeOutcome, SweepError> {
        let outcome =
            run_client(site.leaf(), &env, plan.probe_timeout, client).map_err(|source| {
                SweepError::Probe {
                    topology: *topology,
                    client,
                    source,
                }
            })?;
        if !site.mock().is_serving() {
            return Err(SweepError::MockDied {
                topology: *topology,
                client,
                http_tokens,
            });
        }
        Ok(outcome)
    };

    let mut cells = Vec::new();
    for &mode in &plan.modes {
        site.mock().modify(&MetadataOptionsChange {
            http_tokens: Some(mode),
            ..Default::default()
        });
        // The TTL probe sees only as far as the nearest user-space stack; behind one the
        // model seeds the search instead (every answer is confirmed by probes anyway).
        let mut seed: Option<HopLimit> = topology.is_proxied().then(|| topology.min_hop_limit());
        for client in ordered(&plan.clients) {
            let started = Instant::now();
            let mut via_at: BTreeMap<HopLimit, ImdsVersion> = BTreeMap::new();
            let mut reasons: BTreeMap<HopLimit, String> = BTreeMap::new();
            let mut ttl_reason = None;
            let searched = if client == Probe::Ttl {
                let outcome = run(client, mode)?;
                // A place that needs a TTL above 64 gets no token at any hop limit.
                let needed = outcome
                    .hop_limit_needed
                    .and_then(|h| HopLimit::new(h.into()).ok());
                ttl_reason = outcome.reason;
                Search {
                    minimal: needed,
                    tried: needed.map(|h| vec![(h, true)]).unwrap_or_default(),
                }
            } else {
                search(
                    plan.strategy,
                    seed.filter(|_| plan.strategy == Strategy::Bisect),
                    |h| {
                        site.mock().set_hop_limit(h);
                        // The hop limit drops only the answers to token requests. A failed
                        // run that shows no dropped token says nothing about it, and is run
                        // again, up to RETRIES times: one the mock saw nothing of (a
                        // connect that timed out on a busy machine), or one whose token
                        // came through (a GET was answered, then something timed out).
                        let mut attempt = 0;
                        let (before, outcome, after) = loop {
                            let before = site.mock().events();
                            let mark = site.mock().request_mark();
                            let outcome = run(client, mode)?;
                            let after = site.mock().events();
                            if outcome.ok || attempt == RETRIES {
                                break (before, outcome, after);
                            }
                            let token_came_through = site
                                .mock()
                                .requests_since(mark)
                                .iter()
                                .any(answered_imds_get);
                            if after != before && !token_came_through {
                                break (before, outcome, after);
                            }
                            attempt += 1;
                            tracing::debug!(%topology, %client, hop_limit = %h, attempt, "the mock saw nothing of a failed run; again");
                        };
                        if outcome.ok {
                            let via = if after.identity_v1 > before.identity_v1 {
                                ImdsVersion::V1
                            } else {
                                ImdsVersion::V2
                            };
                            via_at.insert(h, via);
                        } else if let Some(reason) = outcome.reason {
                            reasons.insert(h, reason);
                        }
                        Ok(outcome.ok)
                    },
                )?
            };
            if seed.is_none() {
                seed = searched.minimal;
            }
            let minimal = searched.minimal;
            let cell = Cell {
                topology: *topology,
                depth: topology.depth(),
                layers: topology.spelling(),
                model: model::predicted(topology, client),
                client,
                http_tokens: mode,
                minimal_hop_limit: minimal,
                works_at_any_hop_limit: client != Probe::Ttl
                    && minimal == Some(HopLimit::MIN)
                    && topology.routed_hops() > 0,
                via: minimal.and_then(|h| via_at.get(&h).copied()),
                failure_below: minimal
                    .and_then(HopLimit::below)
                    .and_then(|h| reasons.get(&h).cloned())
                    .or(ttl_reason),
                tried: searched.tried,
                elapsed: started.elapsed(),
            };
            on_cell(&cell);
            cells.push(cell);
        }
    }
    Ok(cells)
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

/// Runs the plan on `lab`; `on_cell` is called as each cell is settled (from worker
/// threads). Each worker keeps one [`Lab::Worker`] for the topologies it measures,
/// taking them in [`batches`]. Must be called inside a Tokio runtime (the mocks run
/// on it).
pub fn run<L: Lab>(
    lab: &L,
    plan: &SweepPlan,
    on_cell: &(dyn Fn(&Cell) + Sync),
) -> Result<Vec<Cell>, SweepError> {
    let runtime = tokio::runtime::Handle::current();
    let queue = Mutex::new(batches(&plan.topologies, |t| lab.shared_setup(t)));
    let results = Mutex::new(Vec::new());
    let workers = plan.parallel.max(1).min(plan.topologies.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let _runtime = runtime.enter();
                let mut worker: Option<L::Worker> = None;
                let mut batch = VecDeque::new();
                loop {
                    if batch.is_empty() {
                        match queue.lock().expect("queue").pop_front() {
                            Some(next) => batch = next,
                            None => return,
                        }
                    }
                    let topology = batch.pop_front().expect("a batch is never empty");
                    let site_error = |source: L::Error| SweepError::Site {
                        topology: *topology,
                        source: Box::new(source),
                    };
                    let measured = match &mut worker {
                        Some(worker) => Ok(worker),
                        None => lab.worker().map(|w| worker.insert(w)),
                    }
                    .and_then(|worker| lab.realise(worker, topology))
                    .map_err(site_error)
                    .and_then(|site| measure_topology(&*site, topology, plan, on_cell));
                    let failed = measured.is_err();
                    results.lock().expect("results").push(measured);
                    if failed {
                        queue.lock().expect("queue").clear();
                        batch.clear();
                    }
                }
            });
        }
    });
    let mut cells = Vec::new();
    for measured in results.into_inner().expect("results") {
        cells.extend(measured?);
    }
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

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn needs(n: u32) -> impl FnMut(HopLimit) -> Result<bool, ()> {
        move |h| Ok(h >= hop(n))
    }

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
    fn bisect_finds_every_threshold_and_confirms_its_neighbours() {
        for n in 1..=64 {
            let s = search(Strategy::Bisect, None, needs(n)).unwrap();
            assert_eq!(s.minimal, Some(hop(n)));
            assert!(s.tried.contains(&(hop(n), true)));
            if n > 1 {
                assert!(s.tried.contains(&(hop(n - 1), false)), "{n}: {:?}", s.tried);
            }
            // At most 9 for the bisect, and the failure below the answer once more.
            assert!(s.tried.len() <= 10, "{n}: {} probes", s.tried.len());
        }
    }

    #[test]
    fn a_right_seed_takes_three_probes_and_a_wrong_one_still_finds_the_answer() {
        let s = search(Strategy::Bisect, Some(hop(3)), needs(3)).unwrap();
        assert_eq!(
            s.tried,
            [(hop(3), true), (hop(2), false), (hop(2), false)],
            "the seed, the one below, and that failure once more"
        );
        for seed in [1, 2, 5, 64] {
            let s = search(Strategy::Bisect, Some(hop(seed)), needs(3)).unwrap();
            assert_eq!(s.minimal, Some(hop(3)), "seed {seed}");
        }
        let always = search(Strategy::Bisect, Some(hop(4)), needs(1)).unwrap();
        assert_eq!(always.minimal, Some(HopLimit::MIN));
    }

    #[test]
    fn never_working_is_none_and_linear_agrees() {
        let never = search(Strategy::Bisect, Some(hop(3)), |_| Ok::<_, ()>(false)).unwrap();
        assert_eq!(never.minimal, None);
        for n in [1, 2, 7] {
            let s = search(Strategy::Linear, None, needs(n)).unwrap();
            let confirmation = usize::from(n > 1);
            assert_eq!(
                (s.minimal, s.tried.len()),
                (Some(hop(n)), n as usize + confirmation)
            );
        }
    }

    /// A failure that does not happen again (a token delayed past the timeout on a busy
    /// machine) does not raise the answer.
    #[test]
    fn a_failure_that_does_not_happen_again_does_not_raise_the_answer() {
        for strategy in [Strategy::Bisect, Strategy::Linear] {
            for seed in [None, Some(hop(3))] {
                let mut noisy_once = true;
                let s = search(strategy, seed, |h| {
                    if h == hop(3) && std::mem::take(&mut noisy_once) {
                        return Ok::<_, ()>(false);
                    }
                    Ok(h >= hop(3))
                })
                .unwrap();
                assert_eq!(
                    s.minimal,
                    Some(hop(3)),
                    "{strategy:?} {seed:?}: {:?}",
                    s.tried
                );
                assert_eq!(s.tried.last(), Some(&(hop(2), false)), "{:?}", s.tried);
            }
        }
        // A failure that happens every time stands.
        let s = search(Strategy::Bisect, Some(hop(3)), needs(4)).unwrap();
        assert_eq!(s.minimal, Some(hop(4)));
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
