//! Benchmarks of the netns backend (root only):
//! - the TTL probe at depth 3 (earthly-with-docker), as `imds-shim probe --only ttl`
//!   reports it and as a whole process;
//! - the full preset matrix with sdk and ttl, and with cli too (seeded bisect);
//! - the same matrix found the naive way: linear sweep, the clients' default timeouts;
//! - what each preset costs to realise (namespaces, links, routers, and the real
//!   slirp4netns or pasta of a proxied layer) until its mock serves, against
//!   `docker-run` (one routed layer) in the same runs;
//! - `imds-harness measure` as a user runs it (every installed client, both tokens
//!   modes, its defaults; `$IMDS_HARNESS` or the workspace's binary), with the CPU its
//!   clients took, against its bound in the same run: the slowest client's time to fail
//!   (its token dropped) times the two runs of the failure below every answer.
//!
//! `cargo bench --profile dev --bench netns [-- RUNS] [SECTION]` (default 5 runs of
//! each; SECTION one of ttl, realise, matrix, linear, measure: only that). Prints
//! medians and every run.

use std::time::{Duration, Instant};

use imds_e2e::stats;
use imds_harness::backend::endpoints::{IMDS_URL, STS_URL};
use imds_harness::backend::netns::{NamespaceLeaf, NetnsLab, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::probe::warm::Starts;
use imds_harness::probe::{shim, Client, Probe};
use imds_harness::sweep::{self, Strategy, SweepPlan, Tools};
use imds_harness::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};

fn matrix(clients: &[Probe], strategy: Strategy, timeout_ms: u64) -> f64 {
    let plan = SweepPlan {
        topologies: Topology::presets(),
        clients: clients.to_vec(),
        modes: vec![HttpTokens::Required, HttpTokens::Optional],
        strategy,
        probe_timeout: Duration::from_millis(timeout_ms),
        parallel: 4,
    };
    let lab = NetnsLab {
        tools: Tools::locate(clients).unwrap(),
    };
    let started = Instant::now();
    let cells = sweep::run(&lab, &plan, &|_| {}).unwrap();
    assert_eq!(cells.len(), Topology::presets().len() * 2 * clients.len());
    started.elapsed().as_secs_f64()
}

/// CPU time (user + system, s) of this process's children that have been waited for,
/// and of theirs: what the clients of a sweep cost.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command's closing parenthesis: field 3 onwards; cutime, cstime are 16, 17.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[13].parse::<f64>().unwrap() + fields[14].parse::<f64>().unwrap();
    // USER_HZ, 100 on every Linux this runs on.
    ticks / 100.0
}

/// `imds-harness measure` with its defaults (netns, every installed client, both modes),
/// the interpreted clients started as `starts` says: its wall time, the CPU it and its
/// clients took, and its cells.
fn measure_command(starts: Starts) -> (f64, f64, serde_json::Value) {
    let harness = std::env::var_os("IMDS_HARNESS").map_or_else(imds_e2e::bins::harness, Into::into);
    let json = tempfile::NamedTempFile::new().unwrap();
    let cpu = children_cpu();
    let started = Instant::now();
    let starts = match starts {
        Starts::Warm => "warm",
        Starts::Cold => "cold",
    };
    let out = duct::cmd!(
        harness,
        "measure",
        "--starts",
        starts,
        "--json",
        json.path()
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    assert_eq!(
        report["cells"].as_array().unwrap().len(),
        Topology::presets().len() * 2 * Probe::installed().len()
    );
    (wall, children_cpu() - cpu, report["cells"].clone())
}

/// A cell's answer: what the warm and cold starts must agree on.
fn answers(cells: &serde_json::Value) -> Vec<(String, String, String, String, String)> {
    let mut answers: Vec<_> = cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].to_string();
            (
                field("topology"),
                field("client"),
                field("http_tokens"),
                field("minimal_hop_limit"),
                field("via"),
            )
        })
        .collect();
    answers.sort();
    answers
}

/// Each client's time to fail: a run at a leaf (`docker-run`) whose token response the
/// hop limit (1) drops, tokens required: its IMDS time-out, start-up included.
fn times_to_fail(clients: &[Probe]) -> Vec<(Probe, f64)> {
    let site = NetnsSite::start(
        &Topology::parse("docker-run").unwrap(),
        MockConfig::default(),
    )
    .unwrap();
    site.mock().set_hop_limit(HopLimit::MIN);
    site.mock().modify(&MetadataOptionsChange {
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let leaf = NamespaceLeaf {
        namespace: site.leaf().clone(),
        tools: Tools::locate(clients).unwrap(),
    };
    let home = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(home.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL);
    clients
        .iter()
        .filter(|c| **c != Probe::Ttl)
        .map(|&client| {
            let started = Instant::now();
            let outcome =
                sweep::run_client(&leaf, &env, Duration::from_millis(300), client).unwrap();
            assert!(
                !outcome.ok,
                "{client} got a token at hop limit 1 behind a router"
            );
            (client, started.elapsed().as_secs_f64())
        })
        .collect()
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(5);
    let section = std::env::args()
        .skip(1)
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'));
    let wanted = |name: &str| section.as_deref().is_none_or(|s| s == name);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    println!(
        "netns benchmarks, {runs} runs, {}",
        imds_e2e::stats::machine()
    );
    if wanted("measure") {
        bench_measure(runs);
    }

    if wanted("ttl") {
        let site = NetnsSite::start(
            &Topology::parse("earthly-with-docker").unwrap(),
            MockConfig::default(),
        )
        .unwrap();
        site.mock().set_hop_limit(HopLimit::new(4).unwrap());
        let home = tempfile::tempdir().unwrap();
        let env = ClientEnv::new(home.path(), IMDS_URL);
        let shim_path = shim::locate().unwrap();
        let (mut inside, mut whole) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(11) {
            let started = Instant::now();
            let out = env
                .apply(
                    site.leaf()
                        .exec(&shim_path, ["probe", "--json", "--only", "ttl"]),
                )
                .stdout_capture()
                .run()
                .unwrap();
            whole.push(started.elapsed().as_secs_f64() * 1e3);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["ttl"]["hop_limit_needed"], 4);
            inside.push(report["ttl"]["elapsed_ms"].as_f64().unwrap());
        }
        println!(
            "TTL probe at depth 3          median {:>7.2} ms (the probe's own timing; runs: {})",
            stats::median(inside.clone()),
            stats::runs(&inside, 2)
        );
        println!(
            "  as a whole process          median {:>7.2} ms (ip netns exec + imds-shim start-up)",
            stats::median(whole)
        );
        drop(site);
    }

    if wanted("realise") {
        let reference = Topology::parse("docker-run").unwrap();
        let realise = |topology: &Topology| {
            let started = Instant::now();
            let site = NetnsSite::start(topology, MockConfig::default()).unwrap();
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            drop(site);
            elapsed
        };
        println!(
            "realising a preset until its mock serves (ms), against docker-run in the same runs:"
        );
        for topology in Topology::presets() {
            let (mut own, mut ratios) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let base = realise(&reference);
                let ms = realise(&topology);
                own.push(ms);
                ratios.push(ms / base);
            }
            println!(
                "  {:<22} {:<5} median {:>7.1} ms, {:>5.2}x docker-run (runs: {})",
                topology.to_string(),
                topology.spelling(),
                stats::median(own.clone()),
                stats::median(ratios),
                stats::runs(&own, 1)
            );
        }
    }
    if wanted("matrix") {
        for (name, clients) in [
            (
                "matrix sdk+ttl (bisect)",
                vec![Probe::Client(Client::RustSdk), Probe::Ttl],
            ),
            (
                "matrix sdk+cli+ttl (bisect)",
                vec![
                    Probe::Client(Client::RustSdk),
                    Probe::Client(Client::Cli),
                    Probe::Ttl,
                ],
            ),
        ] {
            let walls: Vec<f64> = (0..runs)
                .map(|_| matrix(&clients, Strategy::Bisect, 300))
                .collect();
            println!(
                "{name:<29} median {:>7.2} s  (runs: {})",
                stats::median(walls.clone()),
                stats::runs(&walls, 2)
            );
        }
    }
    if wanted("linear") {
        for (name, clients) in [
            (
                "matrix sdk+ttl (linear, 1 s)",
                vec![Probe::Client(Client::RustSdk), Probe::Ttl],
            ),
            (
                "matrix sdk+cli+ttl (linear, 1 s)",
                vec![
                    Probe::Client(Client::RustSdk),
                    Probe::Client(Client::Cli),
                    Probe::Ttl,
                ],
            ),
        ] {
            let walls: Vec<f64> = (0..runs)
                .map(|_| matrix(&clients, Strategy::Linear, 1000))
                .collect();
            println!(
                "{name:<29} median {:>7.2} s  (runs: {})",
                stats::median(walls.clone()),
                stats::runs(&walls, 2)
            );
        }
    }
}

/// `imds-harness measure` against its bound and against its cold starts, `runs` times,
/// in turns (warm first in even runs, cold first in odd ones).
fn bench_measure(runs: usize) {
    let clients = Probe::installed();
    let (mut walls, mut cpus, mut bounds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_walls, mut cold_cpus) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let fails = times_to_fail(&clients);
        let (slowest, time_to_fail) = fails
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let (warm, cold) = if run % 2 == 0 {
            let warm = measure_command(Starts::Warm);
            (warm, measure_command(Starts::Cold))
        } else {
            let cold = measure_command(Starts::Cold);
            (measure_command(Starts::Warm), cold)
        };
        let ((wall, cpu, cells), (cold_wall, cold_cpu, cold_cells)) = (warm, cold);
        assert_eq!(
            answers(&cells),
            answers(&cold_cells),
            "warm and cold starts measured different answers"
        );
        cold_walls.push(cold_wall);
        cold_cpus.push(cold_cpu);
        println!(
            "  measure {wall:.1} s, clients' CPU {cpu:.1} s (cold starts: {cold_wall:.1} s, \
             CPU {cold_cpu:.1} s); times to fail: {} (slowest {slowest})",
            fails
                .iter()
                .map(|(c, t)| format!("{c} {t:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        walls.push(wall);
        cpus.push(cpu);
        bounds.push(time_to_fail * 2.0);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (wall, bound, cpu) = (
        stats::median(walls.clone()),
        stats::median(bounds),
        stats::median(cpus),
    );
    println!(
        "measure, every client, both modes median {wall:>7.1} s (runs: {}); bound {bound:.1} s \
         (slowest time to fail x 2), {:.2}x it; CPU {cpu:.1} s, {:.1} s on {cores} cores",
        stats::runs(&walls, 1),
        wall / bound,
        cpu / cores as f64,
    );
    let (cold_wall, cold_cpu) = (stats::median(cold_walls.clone()), stats::median(cold_cpus));
    println!(
        "measure, cold starts           median {cold_wall:>7.1} s (runs: {}); CPU {cold_cpu:.1} s; \
         warm starts take {:.2}x its time and {:.2}x its CPU",
        stats::runs(&cold_walls, 1),
        wall / cold_wall,
        cpu / cold_cpu,
    );
}
