//! Benchmarks of the netns backend (root only):
//! - the TTL probe at depth 3 (earthly-with-docker), as `imds-shim probe --only ttl`
//!   reports it and as a whole process;
//! - the full preset matrix with sdk and ttl, and with cli too (seeded bisect);
//! - the same matrix found the naive way: linear sweep, the clients' default timeouts;
//! - what each preset costs to realise (namespaces, links, routers, and the real
//!   slirp4netns or pasta of a proxied layer) until its mock serves, against
//!   `docker-run` (one routed layer) in the same runs.
//!
//! `cargo bench --profile dev --bench netns [-- RUNS]` (default 5 runs of each). Prints
//! medians and every run.

use std::time::{Duration, Instant};

use imds_e2e::stats;
use imds_harness::backend::endpoints::IMDS_URL;
use imds_harness::backend::netns::{NetnsLab, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::probe::{shim, Client, Probe};
use imds_harness::sweep::{self, Strategy, SweepPlan, Tools};
use imds_harness::topology::Topology;
use imds_mock::MockConfig;
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

fn main() {
    let runs = imds_e2e::stats::runs_requested(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    println!(
        "netns benchmarks, {runs} runs, {}",
        imds_e2e::stats::machine()
    );

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

    let reference = Topology::parse("docker-run").unwrap();
    let realise = |topology: &Topology| {
        let started = Instant::now();
        let site = NetnsSite::start(topology, MockConfig::default()).unwrap();
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        drop(site);
        elapsed
    };
    println!("realising a preset until its mock serves (ms), against docker-run in the same runs:");
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
