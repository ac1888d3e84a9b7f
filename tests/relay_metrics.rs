//! `imds-shim relay --metrics ADDR`: scraped and read with a real parser (Python's
//! `prometheus_client`, its OpenMetrics parser, from Debian), the numbers move as builds make
//! requests; no secret is in them; and the metrics port, an input path of its own, cannot hurt
//! serving (slow, oversized, malformed and too many requests).
//!
//! The relay runs in a simulated instance's host namespace (netns backend), the metrics on
//! that namespace's loopback, the builds' requests from a leaf one routing hop away.
#![expect(
    clippy::float_cmp,
    reason = "the samples compared exactly are counts: whole numbers, exact in an f64"
)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use imds_e2e::output::show;
use imds_e2e::relay_process::RelayProcess;
use imds_e2e::require::{require, Requirement, PYTHON3};
use imds_harness::backend::endpoints::{IMDS_URL, STS_URL};
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};

const METRICS: &str = "127.0.0.1:9464";
const RELAY: &str = "169.254.170.2:80";

/// Scrapes the metrics from inside `ns` and parses them with `prometheus_client`'s
/// OpenMetrics parser: every sample as `name{label="value",...}` -> value.
fn scrape(ns: &Namespace) -> BTreeMap<String, f64> {
    let script = format!(
        r#"
import json, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://{METRICS}/metrics", timeout=10).read().decode()
samples = {{}}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join('{{}}="{{}}"'.format(k, v) for k, v in sorted(s.labels.items()))
        samples[s.name + ("{{" + labels + "}}" if labels else "")] = s.value
print(json.dumps(samples))
"#
    );
    let out = ns
        .exec(PYTHON3, ["-c", script.as_str()])
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The raw text of a scrape (for what must not be in it).
fn scrape_text(ns: &Namespace) -> String {
    exchange(
        ns,
        METRICS,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

/// One request `raw` to `addr` from inside `ns`: what came back before the server closed.
fn exchange(ns: &Namespace, addr: &str, raw: &str) -> String {
    let addr: SocketAddr = addr.parse().unwrap();
    let raw = raw.to_owned();
    ns.run_in(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(8)))?;
        // A server that refuses an oversized head may close before it is all written.
        let _ = s.write_all(raw.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .unwrap()
    .unwrap()
}

/// A GET of `path` at the relay from `ns`: the status line.
fn get(ns: &Namespace, path: &str) -> String {
    let response = exchange(
        ns,
        RELAY,
        &format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n"),
    );
    response.lines().next().unwrap_or_default().to_owned()
}

fn requests(samples: &BTreeMap<String, f64>, outcome: &str) -> f64 {
    samples[&format!("imds_shim_relay_requests_total{{outcome=\"{outcome}\"}}")]
}

fn upstream(samples: &BTreeMap<String, f64>, what: &str, upstream: &str) -> f64 {
    samples[&format!("imds_shim_relay_upstream_{what}_total{{upstream=\"{upstream}\"}}")]
}

const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::PrometheusParser,
];

/// A `docker-run` site of `config` at hop limit 1, tokens required, and `imds-shim relay
/// <extra>` in its host namespace (its files in the directory returned). In a Tokio runtime.
fn relay_at(config: MockConfig, extra: &[&str]) -> (NetnsSite, tempfile::TempDir, RelayProcess) {
    let site = NetnsSite::start(&Topology::parse("docker-run").unwrap(), config).unwrap();
    site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(1).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let dir = tempfile::Builder::new()
        .prefix("imdsh-metrics-test-")
        .tempdir()
        .unwrap();
    let env = ClientEnv::new(dir.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL);
    let relay = RelayProcess::start(site.host(), dir.path(), &env, extra);
    (site, dir, relay)
}

#[test]
fn the_numbers_move_with_requests_and_hold_no_secret() {
    if !require("relay_metrics", NEEDS) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let mut config = MockConfig {
        credential_lifetime: Duration::from_secs(8),
        ..MockConfig::default()
    };
    config.iam.assumable_roles.insert("deploy".into(), None);
    let (site, _dir, relay) = relay_at(
        config,
        &[
            "--metrics",
            METRICS,
            "--rate",
            "0.01",
            "--burst",
            "3",
            "--sts-endpoint",
            STS_URL,
        ],
    );
    let (host, leaf) = (site.host(), site.leaf());

    let before = scrape(host);
    assert_eq!(before["imds_shim_relay_grants_active"], 0.0, "{before:#?}");
    assert_eq!(requests(&before, "served"), 0.0);
    let first_calls = upstream(&before, "calls", "imds");
    assert!(first_calls >= 1.0, "the first fetch: {before:#?}");
    assert_eq!(upstream(&before, "failures", "imds"), 0.0);
    assert_eq!(upstream(&before, "calls", "assume_role"), 0.0);
    assert_eq!(
        before["imds_shim_relay_request_duration_seconds_count"],
        0.0
    );

    let path = |grant: &[(String, String)]| {
        grant
            .iter()
            .find(|(k, _)| k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .unwrap()
            .1
            .clone()
    };
    let a = relay.grant(&["--instance-role", "--label", "a"]);
    // A scoped grant: one AssumeRole at grant time; a role STS refuses: one failed call.
    let b = relay.grant(&[
        "--role-arn",
        "arn:aws:iam::123456789012:role/deploy",
        "--label",
        "b",
    ]);
    let refused = relay.command(&[
        "grant",
        "--role-arn",
        "arn:aws:iam::123456789012:role/nobody",
        "--label",
        "c",
    ]);
    assert!(!refused.status.success(), "{}", show(&refused));
    let b_id = b
        .iter()
        .find(|(k, _)| k == "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .unwrap()
        .1
        .split_once('.')
        .unwrap()
        .0
        .to_owned();
    assert!(relay.command(&["revoke", &b_id]).status.success());
    let (a_path, b_path) = (path(&a), path(&b));
    let last = if a_path.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &a_path[..a_path.len() - 1]);

    // Three served (the burst), then over the rate; each refusal reason once.
    let served = exchange(
        leaf,
        RELAY,
        &format!("GET {a_path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n"),
    );
    assert!(served.starts_with("HTTP/1.1 200 OK"), "{served}");
    for _ in 0..2 {
        assert_eq!(get(leaf, &a_path), "HTTP/1.1 200 OK");
    }
    assert_eq!(get(leaf, &a_path), "HTTP/1.1 429 Too Many Requests");
    assert_eq!(get(leaf, &b_path), "HTTP/1.1 403 Forbidden");
    assert_eq!(get(leaf, &wrong), "HTTP/1.1 403 Forbidden");
    assert_eq!(
        get(
            leaf,
            &format!(
                "/imds-shim/credentials/{}.{}",
                "ab".repeat(8),
                "0".repeat(64)
            )
        ),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(get(leaf, "/latest/meta-data/"), "HTTP/1.1 404 Not Found");
    assert_eq!(
        get(leaf, "/imds-shim/credentials"),
        "HTTP/1.1 403 Forbidden"
    );

    let after = scrape(host);
    assert_eq!(after["imds_shim_relay_grants_active"], 1.0, "{after:#?}");
    for (outcome, n) in [
        ("served", 3.0),
        ("rate_limited", 1.0),
        ("revoked", 1.0),
        ("wrong_secret", 1.0),
        ("unknown_grant", 1.0),
        ("not_found", 1.0),
        ("no_authorization", 1.0),
        ("expired", 0.0),
        ("no_credentials", 0.0),
    ] {
        assert_eq!(requests(&after, outcome), n, "{outcome}: {after:#?}");
    }
    assert_eq!(upstream(&after, "calls", "assume_role"), 2.0, "{after:#?}");
    assert_eq!(
        upstream(&after, "failures", "assume_role"),
        1.0,
        "{after:#?}"
    );
    assert_eq!(after["imds_shim_relay_request_duration_seconds_count"], 9.0);
    assert!(after["imds_shim_relay_request_duration_seconds_sum"] > 0.0);
    assert_eq!(
        after["imds_shim_relay_served_credentials_age_seconds_count"],
        3.0
    );

    // No secret: neither a grant's nor the role's (the served body's).
    let text = scrape_text(host);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for (_, value) in a.iter().chain(&b) {
        let secret = value.rsplit_once('.').map_or(value.as_str(), |(_, s)| s);
        assert!(!text.contains(secret), "a grant's secret in the metrics");
    }
    let (_, json) = served.split_once("\r\n\r\n").unwrap();
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    for key in ["AccessKeyId", "SecretAccessKey", "Token"] {
        let value = doc[key].as_str().unwrap();
        assert!(!text.contains(value), "{key} in the metrics");
    }
    for id in ["a", "b", &b_id] {
        assert!(
            !text.contains(&format!("\"{id}\"")),
            "a grant's label or id in the metrics"
        );
    }

    // The credentials (8 s) are refreshed from IMDS: the upstream calls move; with IMDS off,
    // the failures do.
    let deadline = Instant::now() + Duration::from_secs(15);
    while upstream(&scrape(host), "calls", "imds") <= first_calls {
        assert!(Instant::now() < deadline, "no refresh counted");
        std::thread::sleep(Duration::from_millis(500));
    }
    site.mock().modify(&MetadataOptionsChange {
        http_endpoint: Some(HttpEndpoint::Disabled),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream(&scrape(host), "failures", "imds") < 1.0 {
        assert!(Instant::now() < deadline, "no failed refresh counted");
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = relay.stop();
    assert!(
        log.contains("metrics on http://127.0.0.1:9464/metrics"),
        "{log}"
    );
}

/// The metrics port is an input path: slow, oversized, malformed and too many requests there
/// neither stop the credentials being served nor the metrics once the bad clients are gone.
#[test]
fn a_hostile_scraper_does_not_hurt_serving() {
    if !require("relay_metrics_hostile", NEEDS) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (site, _dir, relay) = relay_at(MockConfig::default(), &["--metrics", METRICS]);
    let (host, leaf) = (site.host(), site.leaf());
    let grant = relay.grant(&["--instance-role", "--label", "busy"]);
    let path = grant
        .iter()
        .find(|(k, _)| k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .unwrap()
        .1
        .clone();

    // Answers to what is not a scrape.
    let post = exchange(
        host,
        METRICS,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let other = exchange(host, METRICS, "GET /debug HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let garbage = exchange(host, METRICS, "\x00\x01 not http at all\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let huge = exchange(
        host,
        METRICS,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(20_000)
        ),
    );
    assert!(
        huge.is_empty() || huge.starts_with("HTTP/1.1 431"),
        "{huge}"
    );

    // Slow clients take every place of the metrics port (and more try): each sends half a head.
    let addr: SocketAddr = METRICS.parse().unwrap();
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            host.run_in(move || {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost:");
                s
            })
            .unwrap()
        })
        .collect();
    // Serving goes on meanwhile (each GET gives up after 2 s to connect, 8 s to answer).
    for _ in 0..5 {
        assert_eq!(get(leaf, &path), "HTTP/1.1 200 OK");
    }
    // The slow ones are closed after the head timeout; the metrics answer again and counted
    // every credentials request.
    std::thread::sleep(Duration::from_secs(6));
    drop(slow);
    let samples = scrape(host);
    assert_eq!(requests(&samples, "served"), 5.0, "{samples:#?}");
    relay.stop();
}
