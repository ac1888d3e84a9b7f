//! Throughput and latency of the mock on loopback with 64 concurrent clients:
//! IMDSv2 credential GETs (a new connection each, as IMDS closes every one) and
//! SigV4-signed STS GetCallerIdentity calls (kept-alive connections).
//!
//! `cargo bench -p imds-harness --bench mock [-- SECONDS RUNS]` prints the median of
//! RUNS runs of SECONDS each (defaults 3 and 5).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use imds_harness::mock::{ImdsVersion, Listeners, MockAws, MockConfig};

const CLIENTS: usize = 64;

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn summarise(mut latencies: Vec<Duration>, elapsed: Duration) -> Run {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

async fn imds_get(addr: &str, path: &str, token: &str) -> Bytes {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", addr)
        .header("x-aws-ec2-metadata-token", token)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

async fn imds_run(mock: &MockAws, token: Arc<str>, seconds: u64) -> Run {
    let addr: Arc<str> = mock
        .endpoints()
        .imds
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .into();
    let path = "/latest/meta-data/iam/security-credentials/imds-harness-build-role";
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, token) = (addr.clone(), token.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    imds_get(&addr, path, &token).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    summarise(all, start.elapsed())
}

fn signed_sts_request(addr: &str, creds: &Credentials) -> Request<Full<Bytes>> {
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let mut request = Request::post("/")
        .header("host", addr)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sts")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", addr),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let signable = SignableRequest::new(
        "POST",
        format!("http://{addr}/"),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut request);
    request
}

async fn sts_run(mock: &MockAws, creds: Credentials, seconds: u64) -> Run {
    let addr: Arc<str> = mock
        .endpoints()
        .sts
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .into();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, creds) = (addr.clone(), creds.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(&*addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let response = sender
                        .send_request(signed_sts_request(&addr, &creds))
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    summarise(all, start.elapsed())
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs.swap_remove(runs.len() / 2)
}

fn report(name: &str, runs: Vec<Run>) {
    let all: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}", r.per_second))
        .collect();
    let m = median(runs);
    println!(
        "{name:<28} median {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms   (runs: {})",
        m.per_second,
        m.p50.as_secs_f64() * 1e3,
        m.p99.as_secs_f64() * 1e3,
        all.join(", ")
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(3);
    let runs = args.get(1).copied().unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mock = MockAws::start(MockConfig::default(), Listeners::loopback().unwrap()).unwrap();
        let token: Arc<str> = mock
            .state()
            .mint
            .issue(Duration::from_secs(21600), SystemTime::now())
            .as_str()
            .into();
        let issued = mock
            .state()
            .credentials
            .current(ImdsVersion::V2, SystemTime::now());
        let creds = Credentials::new(
            &issued.access_key_id,
            &issued.secret_access_key,
            Some(issued.session_token.clone()),
            None,
            "bench",
        );
        println!(
            "mock on loopback, {CLIENTS} concurrent clients, {runs} runs of {seconds} s, {} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        let mut imds = Vec::new();
        for _ in 0..runs {
            imds.push(imds_run(&mock, token.clone(), seconds).await);
        }
        report("IMDS credential GETs", imds);
        let mut sts = Vec::new();
        for _ in 0..runs {
            sts.push(sts_run(&mock, creds.clone(), seconds).await);
        }
        report("STS GetCallerIdentity", sts);
    });
}
