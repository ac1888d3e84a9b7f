//! Benchmark of `imds-shim audit` over a fleet of 5,000 instances in the mock EC2
//! (127.0.0.1 only): the whole process's wall time (credentials from the mock's IMDS,
//! then `DescribeInstances` paged 1,000 at a time), the calls it made and the EC2
//! requests the mock answered; once as EC2 answers when calm, once with 30 % of the
//! calls throttled (`RequestLimitExceeded`, retried with the SDK's backoff).
//!
//! `cargo bench --profile dev --bench fleet [-- RUNS]` (default 3 runs of each; the shim
//! of the same profile must be built: `cargo build --workspace --bins`). Prints the
//! medians and every run.

use std::time::Instant;

use imds_e2e::aws_env::isolated;
use imds_e2e::bins;
use imds_e2e::stats::median;
use imds_mock::{MockAws, Service};

const FLEET: usize = 5000;
const SEED: u64 = 42;
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");

struct Run {
    seconds: f64,
    calls: u64,
    attempts: u64,
    throttled: u64,
    ec2_requests: usize,
    instances: u64,
}

fn audit(mock: &MockAws) -> Run {
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds)
        .with("AWS_ENDPOINT_URL_EC2", &mock.endpoints().ec2);
    let before = ec2_requests(mock);
    let started = Instant::now();
    let out = env
        .apply(duct::cmd(
            bins::shim(),
            ["audit", "--json", "--baseline", BASELINE],
        ))
        .stdout_capture()
        .unchecked()
        .run()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the seed's fleet has hosts too low"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = &report["summary"]["api"];
    let get = |v: &serde_json::Value| v.as_u64().unwrap();
    Run {
        seconds,
        calls: get(&api["calls"]),
        attempts: get(&api["attempts"]),
        throttled: get(&api["throttled"]),
        ec2_requests: ec2_requests(mock) - before,
        instances: get(&report["summary"]["instances"]),
    }
}

fn ec2_requests(mock: &MockAws) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.service == Service::Ec2)
        .count()
}

fn report(name: &str, runs: &[Run]) {
    let seconds: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let shown: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{:.2} s ({} calls, {} attempts, {} throttled, {} EC2 requests)",
                r.seconds, r.calls, r.attempts, r.throttled, r.ec2_requests
            )
        })
        .collect();
    println!(
        "{name}: median {:.2} s for {} instances; runs: {}",
        median(seconds),
        runs[0].instances,
        shown.join("; ")
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default()
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(3);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "fleet audit benchmark, {runs} runs each, {} cores ({}), load average {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?"),
    );
    for (name, rate) in [("calm", 0.0), ("30 % throttled", 0.3)] {
        let mock = runtime
            .block_on(MockAws::builder().fleet(FLEET, SEED).throttle(rate).start())
            .unwrap();
        let results: Vec<Run> = (0..runs).map(|_| audit(&mock)).collect();
        report(name, &results);
        runtime.block_on(mock.shutdown());
    }
}
