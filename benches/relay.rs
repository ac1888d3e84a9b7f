//! The relay's cost (root only, needs Debian's `wrk`; `make bench-relay`):
//! credential fetches per second through `imds-shim relay` and the latency it adds over a direct
//! IMDS credentials GET, both from the deepest preset (earthly-with-docker, 3 routing hops).
//!
//! - relay: the relay in the host namespace (the instance at hop limit 1), wrk in the leaf
//!   GETting the grant's relative URI. With `Connection: close` (each fetch a new connection,
//!   as a fresh SDK client or `aws` process makes) and kept alive; for an `--instance-role`
//!   grant and for a scoped one (a session of the mock's `deploy` role, assumed with the mock's
//!   STS and cached per grant), with the AssumeRole calls per 1,000 fetches it cost.
//! - direct: the instance at hop limit 4 (depth + 1, so the leaf gets a token), a token PUT
//!   from the leaf, then wrk GETting the role's credentials from IMDS with it. The mock closes
//!   every connection, as IMDS does.
//!
//! Each case: wrk 2 threads, 32 connections, 4 s for the rate; 1 thread, 1 connection, 4 s for
//! the latency (p50 and p99). Then the latency again, interleaved: one fetch at a time (a
//! connection each) from the leaf, the relay's `--instance-role` grant, its scoped one and IMDS
//! directly in turn, [`INTERLEAVED`] of each, so that the three share whatever else the
//! machine does while they run; p50 and p99 of each and the p99 added (the relay's minus
//! IMDS's). The cases alternate, RUNS times (default 5); medians are printed with every run. The relay is the binary of the `dev` profile this is built with
//! (`cargo bench --profile dev`): unoptimised, as is the mock; or `IMDSH_BENCH_RELAY` (a
//! release build: `IMDSH_BENCH_RELAY=target/release/imds-shim cargo bench --profile dev
//! --bench relay`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use imds_e2e::bins;
use imds_e2e::relay_grant::first_grant;
use imds_e2e::stats::{machine, median, runs as runs_of};
use imds_e2e::wrk::Wrk;
use imds_harness::backend::endpoints::{IMDS_URL, STS_URL};
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::MockConfig;
use imds_vocab::HopLimit;

const DURATION: &str = "4s";
/// Fetches of each kind in one interleaved latency run.
const INTERLEAVED: usize = 5_000;
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/imds-harness-build-role";

fn wrk(leaf: &Namespace, threads: u32, connections: u32, headers: &[String], url: &str) -> Wrk {
    let run = imds_e2e::wrk::wrk(leaf, threads, connections, DURATION, headers, url);
    assert!(
        run.non_2xx == 0 && run.socket_errors.is_none(),
        "wrk saw errors:\n{}",
        run.text
    );
    run
}

/// An IMDSv2 token fetched from inside `leaf`.
fn token(leaf: &Namespace) -> String {
    leaf.run_in(|| -> std::io::Result<String> {
        let imds = SocketAddr::from(([169, 254, 169, 254], 80));
        let mut s = TcpStream::connect_timeout(&imds, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(
            b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
              X-aws-ec2-metadata-token-ttl-seconds: 600\r\nContent-Length: 0\r\n\r\n",
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .unwrap()
    .unwrap()
    .rsplit("\r\n\r\n")
    .next()
    .unwrap()
    .to_owned()
}

/// One GET of `path` at `addr` on a new connection, closed after the answer, from the thread's
/// namespace: its time in µs, from before the connect to the end of the answer (the server
/// closes, as IMDS does and the relay does for `Connection: close`).
fn timed_fetch(addr: SocketAddr, host: &str, path: &str, header: &str) -> f64 {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{header}Connection: close\r\n\r\n");
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::with_capacity(2048);
    s.read_to_end(&mut answer).unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1e6;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    elapsed
}

/// The `q` quantile of `xs` (nearest rank).
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a few thousand samples"
    )]
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// p50 and p99 in µs of [`INTERLEAVED`] fetches of each of `paths` (relay paths, then IMDS's
/// role path with `token`), taken in turn from `leaf`.
fn interleaved(leaf: &Namespace, relay_paths: &[&str], token: &str) -> Vec<(f64, f64)> {
    let relay = SocketAddr::from(([169, 254, 170, 2], 80));
    let imds = SocketAddr::from(([169, 254, 169, 254], 80));
    let token = format!("X-aws-ec2-metadata-token: {token}\r\n");
    let relay_paths: Vec<String> = relay_paths.iter().map(|p| (*p).to_owned()).collect();
    leaf.run_in(move || {
        let mut times = vec![Vec::with_capacity(INTERLEAVED); relay_paths.len() + 1];
        for _ in 0..INTERLEAVED {
            for (path, times) in relay_paths.iter().zip(&mut times) {
                times.push(timed_fetch(relay, "169.254.170.2", path, ""));
            }
            let direct = times.last_mut().unwrap();
            direct.push(timed_fetch(imds, "169.254.169.254", ROLE_PATH, &token));
        }
        times
            .iter_mut()
            .map(|xs| (quantile(xs, 0.5), quantile(xs, 0.99)))
            .collect()
    })
    .unwrap()
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    println!("relay benchmark, {runs} runs, {}", machine());
    let shim = std::env::var_os("IMDSH_BENCH_RELAY").map_or_else(bins::shim, Into::into);
    println!("relay: {}", std::path::Path::new(&shim).display());

    let topology = Topology::parse("earthly-with-docker").unwrap();
    let mut config = MockConfig::default();
    config.iam.assumable_roles.insert("deploy".into(), None);
    let site = NetnsSite::start(&topology, config).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-bench-")
        .tempdir()
        .unwrap();
    let control = dir.path().join("relay.sock");
    let home = dir.path();
    let env = ClientEnv::new(home, IMDS_URL);
    let relay = env
        .apply(site.host().exec(
            shim.clone(),
            [
                "relay",
                "--control",
                control.to_str().unwrap(),
                "--rate",
                "1000000000",
                "--burst",
                "1000000000",
                "--max-connections",
                "1024",
                "--max-connections-per-client",
                "1024",
                "--sts-endpoint",
                STS_URL,
            ],
        ))
        .stdout_null()
        .stderr_path(dir.path().join("relay.log"))
        .unchecked()
        .start()
        .unwrap();
    let grant = first_grant(&shim, &control, &["--instance-role", "--label", "bench"]);
    let relative = grant
        .lines()
        .find_map(|l| l.strip_prefix("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="))
        .unwrap()
        .to_owned();
    let relay_url = format!("http://169.254.170.2{relative}");
    let scoped = std::process::Command::new(&shim)
        .args(["relay", "grant", "--control"])
        .arg(&control)
        .args([
            "--role-arn",
            "arn:aws:iam::123456789012:role/deploy",
            "--label",
            "bench-scoped",
        ])
        .output()
        .unwrap();
    assert!(scoped.status.success(), "{scoped:?}");
    let scoped_url = format!(
        "http://169.254.170.2{}",
        String::from_utf8(scoped.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="))
            .unwrap()
    );
    let direct_url = format!("http://169.254.169.254{ROLE_PATH}");
    let close = vec!["Connection: close".to_owned()];
    let leaf = site.leaf();
    // A connection per fetch at thousands a second runs through the leaf's ephemeral ports
    // within a run or two (TIME_WAIT lasts 60 s): reuse them, and use more of them. Only the
    // leaf namespace, which this benchmark made, is changed.
    leaf.run_in(|| {
        std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1")?;
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65000")
    })
    .unwrap()
    .unwrap();

    let (mut relay_close, mut relay_alive, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    let (mut scoped_close, mut scoped_alive, mut scoped_lat) = (Vec::new(), Vec::new(), Vec::new());
    let (mut relay_lat, mut direct_lat) = (Vec::new(), Vec::new());
    let mut turns: Vec<Vec<(f64, f64)>> = Vec::new();
    let path_of = |url: &str| url.strip_prefix("http://169.254.170.2").unwrap().to_owned();
    let (relay_path, scoped_path) = (path_of(&relay_url), path_of(&scoped_url));
    for _ in 0..runs {
        site.mock().set_hop_limit(HopLimit::new(1).unwrap());
        relay_close.push(wrk(leaf, 2, 32, &close, &relay_url).rate);
        relay_alive.push(wrk(leaf, 2, 32, &[], &relay_url).rate);
        relay_lat.push(wrk(leaf, 1, 1, &close, &relay_url));
        scoped_close.push(wrk(leaf, 2, 32, &close, &scoped_url).rate);
        scoped_alive.push(wrk(leaf, 2, 32, &[], &scoped_url).rate);
        scoped_lat.push(wrk(leaf, 1, 1, &close, &scoped_url));

        site.mock().set_hop_limit(HopLimit::new(4).unwrap());
        let imds_token = token(leaf);
        let header = vec![format!("X-aws-ec2-metadata-token: {imds_token}")];
        direct.push(wrk(leaf, 2, 32, &header, &direct_url).rate);
        direct_lat.push(wrk(leaf, 1, 1, &header, &direct_url));
        turns.push(interleaved(leaf, &[&relay_path, &scoped_path], &imds_token));
    }
    let p = |xs: &[Wrk], f: fn(&Wrk) -> f64| xs.iter().map(f).collect::<Vec<f64>>();
    println!("credential fetches/s from depth 3 (wrk -t2 -c32 -d{DURATION}):");
    println!(
        "  relay, a connection per fetch  median {:>8.0}  (runs: {})",
        median(relay_close.clone()),
        runs_of(&relay_close, 0)
    );
    println!(
        "  relay, kept alive              median {:>8.0}  (runs: {})",
        median(relay_alive.clone()),
        runs_of(&relay_alive, 0)
    );
    println!(
        "  scoped, a connection per fetch median {:>8.0}  (runs: {})",
        median(scoped_close.clone()),
        runs_of(&scoped_close, 0)
    );
    println!(
        "  scoped, kept alive             median {:>8.0}  (runs: {})",
        median(scoped_alive.clone()),
        runs_of(&scoped_alive, 0)
    );
    println!(
        "  direct IMDS (hop limit 4)      median {:>8.0}  (runs: {})",
        median(direct.clone()),
        runs_of(&direct, 0)
    );
    println!("latency of one fetch at a time from depth 3 (wrk -t1 -c1 -d{DURATION}, µs, a connection per fetch):");
    for (name, xs) in [
        ("relay", &relay_lat),
        ("scoped", &scoped_lat),
        ("direct IMDS", &direct_lat),
    ] {
        println!(
            "  {name:<12} p50 median {:>7.0}  p99 median {:>7.0}  (p99 runs: {})",
            median(p(xs, |w| w.p50)),
            median(p(xs, |w| w.p99)),
            runs_of(&p(xs, |w| w.p99), 0)
        );
    }
    let added: Vec<f64> = relay_lat
        .iter()
        .zip(&direct_lat)
        .map(|(r, d)| r.p99 - d.p99)
        .collect();
    println!(
        "  p99 added by the relay (relay p99 - direct p99, same run): median {:.0} µs (runs: {})",
        median(added.clone()),
        runs_of(&added, 0)
    );
    let added: Vec<f64> = scoped_lat
        .iter()
        .zip(&direct_lat)
        .map(|(r, d)| r.p99 - d.p99)
        .collect();
    println!(
        "  p99 added by the relay, scoped grant: median {:.0} µs (runs: {})",
        median(added.clone()),
        runs_of(&added, 0)
    );
    println!(
        "latency interleaved ({INTERLEAVED} fetches of each per run, one at a time, in turn, a \
         connection each, µs):"
    );
    for (i, name) in ["relay", "scoped", "direct IMDS"].iter().enumerate() {
        let of = |f: fn(&(f64, f64)) -> f64| turns.iter().map(|t| f(&t[i])).collect::<Vec<f64>>();
        println!(
            "  {name:<12} p50 median {:>7.0}  p99 median {:>7.0}  (p99 runs: {})",
            median(of(|t| t.0)),
            median(of(|t| t.1)),
            runs_of(&of(|t| t.1), 0)
        );
    }
    for (i, name) in ["instance role", "scoped grant"].iter().enumerate() {
        let added: Vec<f64> = turns.iter().map(|t| t[i].1 - t[2].1).collect();
        let added_p50: Vec<f64> = turns.iter().map(|t| t[i].0 - t[2].0).collect();
        println!(
            "  added by the relay, {name}: p99 median {:.0} µs (runs: {}), p50 median {:.0} µs",
            median(added.clone()),
            runs_of(&added, 0),
            median(added_p50)
        );
    }
    let _ = relay.kill();
    let _ = relay.wait();
    // Every fetch the relay answered is a line of its log; the scoped ones name the role.
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
    let scoped_fetches = log
        .lines()
        .filter(|l| l.contains("200 to ") && l.contains("role deploy"))
        .count();
    // The relay is the mock's only STS caller: every AssumeRole, the grant's own included.
    let assumed = site.mock().events().assume_role;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_thousand = assumed as f64 * 1000.0 / scoped_fetches.max(1) as f64;
    println!(
        "upstream calls of the scoped grant: {assumed} AssumeRole for {scoped_fetches} fetches \
         ({per_thousand:.4} per 1,000)"
    );
}
