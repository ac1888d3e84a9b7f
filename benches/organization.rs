//! Benchmark of `imds-shim audit --organization` over the mock's organization of 100
//! accounts × 4 regions × 500 instances (200,000; 127.0.0.1 only), 10 % of EC2's
//! answers throttled in every account and region: the whole process's wall time, its
//! peak RSS (GNU time's maximum resident set size), the records it streamed, the EC2
//! calls per scope; and in the same run the single-account audit of 5,000 instances,
//! equally throttled, for the cost per instance of each.
//!
//! Where the time goes, each run: the shim's CPU (user + system, GNU time), the mock's
//! (this process's, which serves it), and the same organization unthrottled, whose wall
//! time less the throttled one's is what the retries' backoff costs.
//!
//! `cargo bench --profile release --bench organization [-- RUNS]` (default 3 runs; the
//! shim of the same profile must be built: `cargo build --release -p imds-shim --bins`).
//! Prints the medians and every run.

use std::io::{BufRead as _, BufReader};
use std::time::Instant;

use imds_e2e::aws_env::isolated;
use imds_e2e::bins;
use imds_e2e::stats::median;
use imds_mock::MockAws;

const ACCOUNTS: usize = 100;
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-2", "af-south-1"];
const PER_SCOPE: usize = 500;
const SINGLE: usize = 5000;
const SEED: u64 = 42;
const THROTTLE: f64 = 0.1;
const GNU_TIME: &str = "/usr/bin/time";
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");

struct Run {
    seconds: f64,
    /// The shim's user + system CPU seconds.
    shim_cpu: f64,
    /// This process's (the mock's) CPU seconds meanwhile.
    mock_cpu: f64,
    peak_rss_mb: f64,
    instances: u64,
    records: u64,
    summary: serde_json::Value,
}

/// This process's user + system CPU seconds so far (`/proc/self/stat`, 100 ticks a
/// second).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `imds-shim audit ...` under GNU time, its stdout to a file; the summary is its last
/// line (`--organization`) or its only JSON (one account).
fn audit(mock: &MockAws, args: &[&str], organization: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let rss_path = dir.path().join("rss");
    let env = isolated(dir.path(), &mock.endpoints().imds)
        .with("AWS_ENDPOINT_URL", &mock.endpoints().ec2);
    let mut argv: Vec<String> = vec![
        "-f".into(),
        "%M %U %S".into(),
        "-o".into(),
        rss_path.display().to_string(),
        bins::shim().display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let started = Instant::now();
    let cpu_before = own_cpu();
    let status = env
        .apply(duct::cmd(GNU_TIME, argv))
        .stdout_path(&out_path)
        .unchecked()
        .run()
        .unwrap()
        .status;
    let seconds = started.elapsed().as_secs_f64();
    let mock_cpu = own_cpu() - cpu_before;
    assert!(
        status.code().is_some_and(|c| c <= 3),
        "audit failed: {status:?}"
    );
    let measured: Vec<f64> = std::fs::read_to_string(&rss_path)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (kb, shim_cpu) = (measured[0], measured[1] + measured[2]);
    let file = std::fs::File::open(&out_path).unwrap();
    let mut records = 0;
    let mut last = String::new();
    for line in BufReader::new(file).lines() {
        records += 1;
        last = line.unwrap();
    }
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    let instances = if organization {
        summary["verdicts"]["instance"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    } else {
        summary["summary"]["instances"].as_u64().unwrap()
    };
    Run {
        seconds,
        shim_cpu,
        mock_cpu,
        peak_rss_mb: kb / 1024.0,
        instances,
        records,
        summary,
    }
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(3);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "organization audit benchmark, {runs} runs, {}, load average {}",
        imds_e2e::stats::machine(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?"),
    );
    let organization = runtime
        .block_on(
            MockAws::builder()
                .fleet(PER_SCOPE, SEED)
                .throttle(THROTTLE)
                .organization(ACCOUNTS, REGIONS)
                .start(),
        )
        .unwrap();
    let unthrottled = runtime
        .block_on(
            MockAws::builder()
                .fleet(PER_SCOPE, SEED)
                .organization(ACCOUNTS, REGIONS)
                .start(),
        )
        .unwrap();
    let single = runtime
        .block_on(
            MockAws::builder()
                .fleet(SINGLE, SEED)
                .throttle(THROTTLE)
                .start(),
        )
        .unwrap();
    let regions = REGIONS.join(",");
    let org_args = [
        "audit",
        "--organization",
        "--json",
        "--baseline",
        BASELINE,
        "--regions",
        &regions,
        "--concurrency",
        "16",
    ];
    let mut org_runs = Vec::new();
    let mut single_runs = Vec::new();
    let mut unthrottled_runs = Vec::new();
    for _ in 0..runs {
        single_runs.push(audit(
            &single,
            &["audit", "--json", "--baseline", BASELINE],
            false,
        ));
        org_runs.push(audit(&organization, &org_args, true));
        unthrottled_runs.push(audit(&unthrottled, &org_args, true));
    }
    let med = |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let org_seconds = med(&org_runs, &|r| r.seconds);
    let single_seconds = med(&single_runs, &|r| r.seconds);
    let s = &org_runs[0].summary;
    let scopes = s["scopes_audited"].as_u64().unwrap();
    println!(
        "organization: {ACCOUNTS} accounts × {} regions × {PER_SCOPE}, {} % throttled: median {org_seconds:.2} s, \
         peak RSS median {:.1} MB, {} instances in {scopes} scopes ({} not audited), {} records streamed; \
         EC2 calls {} ({:.1} a scope, at most {}), {} throttled and retried",
        REGIONS.len(),
        THROTTLE * 100.0,
        med(&org_runs, &|r| r.peak_rss_mb),
        org_runs[0].instances,
        s["not_audited"].as_array().unwrap().len(),
        org_runs[0].records,
        s["api"]["calls"],
        s["api"]["calls"].as_f64().unwrap() / scopes as f64,
        s["max_calls_per_scope"],
        s["api"]["throttled"],
    );
    println!(
        "single account: {} instances, {} % throttled: median {single_seconds:.2} s, peak RSS median {:.1} MB",
        single_runs[0].instances,
        THROTTLE * 100.0,
        med(&single_runs, &|r| r.peak_rss_mb),
    );
    let unthrottled_seconds = med(&unthrottled_runs, &|r| r.seconds);
    println!(
        "where the time goes (medians): organization wall {org_seconds:.2} s, shim CPU {:.2} s, \
         mock CPU {:.2} s; unthrottled wall {unthrottled_seconds:.2} s (shim CPU {:.2} s, mock \
         CPU {:.2} s): the backoff costs {:.2} s",
        med(&org_runs, &|r| r.shim_cpu),
        med(&org_runs, &|r| r.mock_cpu),
        med(&unthrottled_runs, &|r| r.shim_cpu),
        med(&unthrottled_runs, &|r| r.mock_cpu),
        org_seconds - unthrottled_seconds,
    );
    println!(
        "per instance: organization {:.1} µs, single account {:.1} µs",
        org_seconds / org_runs[0].instances as f64 * 1e6,
        single_seconds / single_runs[0].instances as f64 * 1e6,
    );
    for (i, ((o, one), u)) in org_runs
        .iter()
        .zip(&single_runs)
        .zip(&unthrottled_runs)
        .enumerate()
    {
        println!(
            "run {}: organization {:.2} s {:.1} MB (shim CPU {:.2} s, mock CPU {:.2} s); single \
             {:.2} s {:.1} MB; unthrottled organization {:.2} s (shim CPU {:.2} s, mock CPU {:.2} s)",
            i + 1,
            o.seconds,
            o.peak_rss_mb,
            o.shim_cpu,
            o.mock_cpu,
            one.seconds,
            one.peak_rss_mb,
            u.seconds,
            u.shim_cpu,
            u.mock_cpu,
        );
    }
    runtime.block_on(organization.shutdown());
    runtime.block_on(unthrottled.shutdown());
    runtime.block_on(single.shutdown());
}
