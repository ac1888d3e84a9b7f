//! The relay's grants at volume (root only; `cargo bench --bench relay_grants`, or
//! `--profile dev` for the unoptimised relay): issue 10,000 grants with `--state` (each a
//! control connection of its own, as `relay grant` makes, acknowledged once durable) while one
//! client GETs credentials over and over, then a mixed load, watching the relay's RSS.
//!
//! - grants: per-grant p50/p99/max, and the HTTP p50/p99 before (3 s alone) and during.
//! - unknown vs known id: 3,000 GETs each, alternating, with an unknown id and with a known
//!   id and a wrong secret: the medians (they should not differ).
//! - mixed: `IMDSH_BENCH_MIXED_SECS` (default 150) of grants, revokes, granted GETs and
//!   wrong-secret GETs; the RSS every 15 s.
//!
//! The relay is the `imds-shim` of the profile this is built with, or `IMDSH_BENCH_RELAY` (a
//! release build, with this client side unoptimised: `cargo build --release -p imds-shim`,
//! then `IMDSH_BENCH_RELAY=target/release/imds-shim cargo bench --profile dev --bench
//! relay_grants`); it runs in the netns site's EC2 host namespace, listening on that
//! namespace's loopback, with the mock's IMDS.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::stats::machine;
use imds_harness::backend::endpoints::IMDS_URL;
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::MockConfig;

const LISTEN: &str = "127.0.0.1:8400";
const GRANTS: usize = 10_000;

/// One control request, one reply line.
fn control(path: &Path, request: &serde_json::Value) -> serde_json::Value {
    let mut s = UnixStream::connect(path).unwrap();
    let mut line = request.to_string();
    line.push('\n');
    s.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}

fn grant(path: &Path) -> serde_json::Value {
    let reply = control(
        path,
        &serde_json::json!({"op": "grant", "ttl_secs": 3600, "label": "bench", "scope": "instance_role"}),
    );
    assert_eq!(reply["reply"], "granted", "{reply}");
    reply
}

fn token(reply: &serde_json::Value) -> String {
    reply["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One GET on a new connection: its status code and how long it took.
fn get(token: &str) -> (u16, Duration) {
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /imds-shim/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, t.elapsed())
}

fn percentile(xs: &mut [Duration], p: f64) -> f64 {
    xs.sort_unstable();
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// GETs with `token` from `ns` until `stop`: their latencies.
fn prober(ns: &Namespace, token: &str, stop: &AtomicBool) -> Vec<Duration> {
    ns.run_in(|| {
        let mut all = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let (status, took) = get(token);
            assert_eq!(status, 200);
            all.push(took);
        }
        all
    })
    .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mixed_secs: u64 = std::env::var("IMDSH_BENCH_MIXED_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let shim = std::env::var_os("IMDSH_BENCH_RELAY").map_or_else(bins::shim, Into::into);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    println!(
        "relay grants benchmark, relay {}, {}",
        shim.display(),
        machine()
    );
    let site = NetnsSite::start(
        &Topology::parse("docker-run").unwrap(),
        MockConfig::default(),
    )
    .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-grants-bench-")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("relay.sock");
    let state = dir.path().join("grants.json");
    let relay = ClientEnv::new(dir.path(), IMDS_URL)
        .apply(site.host().exec(
            &shim,
            [
                "relay",
                "--listen",
                LISTEN,
                "--control",
                sock.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
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
    let pid = relay.pids()[0];
    let started = Instant::now();
    while !sock.exists() || UnixStream::connect(&sock).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the relay did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let probe = token(&grant(&sock));
    let host = site.host();

    // HTTP alone, 3 s.
    let stop = AtomicBool::new(false);
    let mut alone = std::thread::scope(|s| {
        let h = s.spawn(|| prober(host, &probe, &stop));
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap()
    });
    let rss_start = rss_kib(pid);

    // 10,000 grants, one client after another, while the prober runs.
    stop.store(false, Ordering::Relaxed);
    let (mut per_grant, mut during) = std::thread::scope(|s| {
        let h = s.spawn(|| prober(host, &probe, &stop));
        let per_grant: Vec<Duration> = (1..GRANTS)
            .map(|_| {
                let t = Instant::now();
                grant(&sock);
                t.elapsed()
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        (per_grant, h.join().unwrap())
    });
    let state_bytes = std::fs::metadata(&state).map_or(0, |m| m.len());
    println!(
        "grants: {GRANTS} issued with --state: per grant p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; state file {} KiB",
        percentile(&mut per_grant, 0.5),
        percentile(&mut per_grant, 0.99),
        percentile(&mut per_grant, 1.0),
        state_bytes / 1024
    );
    println!(
        "http: alone {} GETs p50 {:.2} ms p99 {:.2} ms; while granting {} GETs p50 {:.2} ms p99 {:.2} ms",
        alone.len(),
        percentile(&mut alone, 0.5),
        percentile(&mut alone, 0.99),
        during.len(),
        percentile(&mut during, 0.5),
        percentile(&mut during, 0.99)
    );
    let rss_after_grants = rss_kib(pid);

    // An unknown id against a known one with a wrong secret.
    let known_wrong = format!("{}.{}", &probe[..16], "1".repeat(64));
    let unknown = format!("{}.{}", "f".repeat(16), "1".repeat(64));
    let (mut known_times, mut unknown_times) = host
        .run_in(|| {
            let (mut k, mut u) = (Vec::new(), Vec::new());
            for _ in 0..3000 {
                let (status, took) = get(&known_wrong);
                assert_eq!(status, 403);
                k.push(took);
                let (status, took) = get(&unknown);
                assert_eq!(status, 403);
                u.push(took);
            }
            (k, u)
        })
        .unwrap();
    println!(
        "refusals: known id, wrong secret p50 {:.1} µs; unknown id p50 {:.1} µs (3000 each, alternating)",
        percentile(&mut known_times, 0.5) * 1e3,
        percentile(&mut unknown_times, 0.5) * 1e3
    );

    // Mixed load: grants and revokes (the cap is full: revoke first), granted and wrong GETs.
    let list = control(&sock, &serde_json::json!({"op": "list"}));
    let mut live: Vec<String> = list["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    live.retain(|id| !probe.starts_with(id.as_str()));
    let mut samples = vec![(0u64, rss_after_grants)];
    let mut counts = [0u64; 3];
    let mixed_start = Instant::now();
    let mut next_sample = Duration::from_secs(15);
    while mixed_start.elapsed() < Duration::from_secs(mixed_secs) {
        if let Some(id) = live.pop() {
            let r = control(&sock, &serde_json::json!({"op": "revoke", "id": id}));
            assert_eq!(r["reply"], "revoked", "{r}");
        }
        let g = grant(&sock);
        live.insert(0, g["grant"]["id"].as_str().unwrap().to_owned());
        counts[0] += 1;
        let wrong = format!("{}.{}", &token(&g)[..16], "0".repeat(64));
        host.run_in(|| {
            for _ in 0..20 {
                assert_eq!(get(&probe).0, 200);
                assert_eq!(get(&wrong).0, 403);
            }
        })
        .unwrap();
        counts[1] += 20;
        counts[2] += 20;
        if mixed_start.elapsed() >= next_sample {
            samples.push((next_sample.as_secs(), rss_kib(pid)));
            next_sample += Duration::from_secs(15);
        }
    }
    samples.push((mixed_start.elapsed().as_secs(), rss_kib(pid)));
    println!(
        "mixed: {mixed_secs} s, {} grant+revoke pairs, {} granted GETs, {} wrong-secret GETs",
        counts[0], counts[1], counts[2]
    );
    println!(
        "rss KiB: start {rss_start}, after {GRANTS} grants {rss_after_grants}; during the mixed load (s: KiB) {}",
        samples
            .iter()
            .map(|(s, k)| format!("{s}: {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = relay.kill();
}
