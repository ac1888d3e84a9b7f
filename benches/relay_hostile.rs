//! A granted request under attack (root only, needs Debian's `wrk`; issue 21): its p50 and p99
//! from the build (docker-run, the relay in the EC2 host's namespace) with nobody else, then
//! while two neighbours on the host hammer the relay: one holds 1,000 idle connections
//! (reopened as soon as the relay closes them), the other runs 1,000 wrong-secret requesters
//! (`wrk -c1000` with a guessed `Authorization`). The goal: p99 under 100 ms.
//!
//! The relay measured is the release build, `$CARGO_TARGET_DIR/release/imds-shim` (`cargo build
//! --release -p imds-shim` first); this driver and wrk only generate load and time it.
//! `cargo bench --profile dev --bench relay_hostile [-- RUNS]` (default 1 run).

use std::path::PathBuf;
use std::time::Duration;

use imds_e2e::bins;
use imds_e2e::neighbour::Neighbour;
use imds_e2e::relay_grant::first_grant;
use imds_e2e::stats::{machine, median, runs as runs_of};
use imds_e2e::wrk::{wrk, Wrk};
use imds_harness::backend::endpoints::IMDS_URL;
use imds_harness::backend::netns::NetnsSite;
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};

/// How long the granted request is timed.
const DURATION: &str = "4s";
/// How long the flood runs: long enough to cover the timing, with a start-up margin.
const FLOOD: &str = "8s";
const IDLE: usize = 1000;
const REQUESTERS: u32 = 1000;
const URL: &str = "http://169.254.170.2/imds-shim/credentials";

/// The relay measured: `$IMDSH_RELAY_BENCH_BIN` if set (printed with the figures), else the
/// release build.
fn release_shim() -> PathBuf {
    if let Some(path) = std::env::var_os("IMDSH_RELAY_BENCH_BIN") {
        return PathBuf::from(path);
    }
    let path = bins::target_profile_dir()
        .parent()
        .unwrap()
        .join("release/imds-shim");
    assert!(
        path.exists(),
        "{} is not built: cargo build --release -p imds-shim",
        path.display()
    );
    path
}

fn show(name: &str, w: &Wrk) {
    println!(
        "  {name:<34} p50 {:>9.0} µs  p99 {:>9.0} µs  {:>7.0} req/s  non-2xx {}  socket errors: {}",
        w.p50,
        w.p99,
        w.rate,
        w.non_2xx,
        w.socket_errors.as_deref().unwrap_or("none")
    );
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(1);
    let shim = release_shim();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    println!("relay under attack, {runs} run(s), {}", machine());
    println!("relay: {}", shim.display());

    let site = NetnsSite::start(
        &Topology::parse("docker-run").unwrap(),
        MockConfig::default(),
    )
    .unwrap();
    site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(1).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-bench-")
        .tempdir()
        .unwrap();
    let control = dir.path().join("relay.sock");
    let env = ClientEnv::new(dir.path(), IMDS_URL);
    let relay = env
        .apply(site.host().exec(
            &shim,
            [
                "relay",
                "--control",
                control.to_str().unwrap(),
                "--rate",
                "1000000000",
                "--burst",
                "1000000000",
            ],
        ))
        .stdout_null()
        .stderr_path(dir.path().join("relay.log"))
        .unchecked()
        .start()
        .unwrap();
    let grant = first_grant(&shim, &control, &["--instance-role"]);
    let token = grant
        .lines()
        .find_map(|l| l.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN="))
        .unwrap()
        .to_owned();
    let (id, _) = token.split_once('.').unwrap();
    let granted = vec![
        format!("Authorization: {token}"),
        "Connection: close".to_owned(),
    ];
    let wrong = vec![format!("Authorization: {id}.{}", "0".repeat(64))];
    let idle_neighbour = Neighbour::attach(site.host(), 1);
    let flood_neighbour = Neighbour::attach(site.host(), 2);
    let leaf = site.leaf().clone();

    let (mut alone, mut attacked) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let quiet = wrk(&leaf, 1, 1, DURATION, &granted, URL);
        show("granted, alone", &quiet);
        alone.push(quiet);

        let idle = idle_neighbour.hold_idle("169.254.170.2:80".parse().unwrap(), IDLE);
        let flood_ns = flood_neighbour.ns.clone();
        let wrong = wrong.clone();
        let flood = std::thread::spawn(move || wrk(&flood_ns, 2, REQUESTERS, FLOOD, &wrong, URL));
        std::thread::sleep(Duration::from_secs(2));
        let under = wrk(&leaf, 1, 1, DURATION, &granted, URL);
        let flood = flood.join().unwrap();
        let reopened = idle.stop();
        show("granted, under attack", &under);
        show("the wrong-secret flood (-c1000)", &flood);
        println!("  idle sockets reopened after the relay closed them: {reopened}");
        assert_eq!(under.non_2xx, 0, "{}", under.text);
        attacked.push(under);
    }
    let p = |xs: &[Wrk], f: fn(&Wrk) -> f64| xs.iter().map(f).collect::<Vec<f64>>();
    println!("a granted request, one at a time, a connection each (wrk -t1 -c1 -d{DURATION}, µs):");
    for (name, xs) in [("alone", &alone), ("under attack", &attacked)] {
        println!(
            "  {name:<13} p50 median {:>8.0}  p99 median {:>8.0}  (p99 runs: {})",
            median(p(xs, |w| w.p50)),
            median(p(xs, |w| w.p99)),
            runs_of(&p(xs, |w| w.p99), 0)
        );
    }
    let _ = relay.kill();
}
