//! Debian's `wrk`, run inside a namespace, and the figures of its `--latency` report.

use std::process::Command;

use imds_harness::backend::netns::Namespace;

/// wrk's figures: requests/s, p50 and p99 latency in µs, and what went wrong.
#[derive(Debug, Clone)]
pub struct Wrk {
    /// Requests per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50: f64,
    /// 99th percentile latency, µs.
    pub p99: f64,
    /// The `Socket errors:` line (connect, read, write, timeout), if any.
    pub socket_errors: Option<String>,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// The whole report.
    pub text: String,
}

fn micros(text: &str) -> f64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("wrk latency {text:?}"));
    n * match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        other => panic!("wrk latency unit {other:?}"),
    }
}

/// `wrk -t<threads> -c<connections> -d<duration> --latency [-H header]... url` in `ns`.
pub fn wrk(
    ns: &Namespace,
    threads: u32,
    connections: u32,
    duration: &str,
    headers: &[String],
    url: &str,
) -> Wrk {
    let mut args = vec![
        "netns".to_owned(),
        "exec".to_owned(),
        ns.name().to_owned(),
        "wrk".to_owned(),
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{duration}"),
        "--latency".to_owned(),
    ];
    for h in headers {
        args.push("-H".to_owned());
        args.push(h.clone());
    }
    args.push(url.to_owned());
    let out = Command::new("ip").args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let needed =
        |prefix: &str| field(prefix).unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    Wrk {
        rate: needed("Requests/sec:").parse().unwrap(),
        p50: micros(needed("50%")),
        p99: micros(needed("99%")),
        socket_errors: field("Socket errors:").map(str::to_owned),
        non_2xx: field("Non-2xx or 3xx responses:").map_or(0, |n| n.parse().unwrap()),
        text,
    }
}
