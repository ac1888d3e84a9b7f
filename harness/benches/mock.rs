//! Throughput and latency of the mock on loopback with 64 concurrent clients:
//! IMDSv2 credential GETs (a new connection each, as IMDS closes every one) and
//! SigV4-signed STS GetCallerIdentity calls (kept-alive connections).
//!
//! `cargo bench -p imds-harness --bench mock [-- SECONDS RUNS]` prints RUNS runs of
//! SECONDS each (defaults 3 and 5) and their median. The clients run in the mock's
//! process, so the CPU time per request it reports covers both sides, kernel included.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use imds_harness::mock::{ImdsVersion, Listeners, MockAws, MockConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 64;

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    user_per_request: Duration,
    system_per_request: Duration,
}

/// User and system CPU time this process has used so far.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage only writes the struct it is given; all-zero is a valid rusage.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    (time(usage.ru_utime), time(usage.ru_stime))
}

/// Runs [`CLIENTS`] clients until `seconds` have passed; each returns its latencies.
async fn drive<C, F>(seconds: u64, client: C) -> Run
where
    C: Fn(Instant) -> F,
    F: Future<Output = Vec<Duration>> + Send + 'static,
{
    let (user, system) = cpu_time();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(deadline)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    let (user_now, system_now) = cpu_time();
    latencies.sort();
    let n = latencies.len() as u32;
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        user_per_request: (user_now - user) / n,
        system_per_request: (system_now - system) / n,
    }
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// One credentials GET on a connection of its own (IMDS closes every one), checked
/// with a real parser: status 200, and exactly the credentials document as its body.
async fn imds_get(addr: SocketAddr, request: &[u8], expected: &[u8], buf: &mut Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    buf.clear();
    stream.read_to_end(buf).await.expect("receive");
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf).expect("an HTTP response") else {
        panic!("a truncated response head");
    };
    assert_eq!(response.code, Some(200));
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value);
    assert_eq!(length, Some(expected.len().to_string().as_bytes()));
    assert_eq!(&buf[head..], expected, "the credentials document");
}

async fn imds_run(mock: &MockAws, token: &str, seconds: u64) -> Run {
    let addr: SocketAddr = host_port(&mock.endpoints().imds).parse().unwrap();
    let role = &mock.state().identity.role;
    let request: Arc<[u8]> = format!(
        "GET /latest/meta-data/iam/security-credentials/{role} HTTP/1.1\r\n\
         Host: {addr}\r\nx-aws-ec2-metadata-token: {token}\r\n\r\n"
    )
    .into_bytes()
    .into();
    let expected = mock
        .state()
        .credentials
        .current(ImdsVersion::V2, SystemTime::now())
        .imds_json();
    drive(seconds, |deadline| {
        let (request, expected) = (request.clone(), expected.clone());
        async move {
            let mut latencies = Vec::new();
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t = Instant::now();
                imds_get(addr, &request, &expected, &mut buf).await;
                latencies.push(t.elapsed());
            }
            latencies
        }
    })
    .await
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
    let addr: Arc<str> = host_port(&mock.endpoints().sts).into();
    drive(seconds, |deadline| {
        let (addr, creds) = (addr.clone(), creds.clone());
        async move {
            let stream = tokio::net::TcpStream::connect(&*addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
        }
    })
    .await
}

fn print_run(label: &str, run: &Run) {
    println!(
        "{label:<28} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU/request {:>4} µs user + {:>4} µs system",
        run.per_second,
        run.p50.as_secs_f64() * 1e3,
        run.p99.as_secs_f64() * 1e3,
        run.user_per_request.as_micros(),
        run.system_per_request.as_micros(),
    );
}

/// Runs `run` `runs` times, printing each, then the median by throughput.
async fn measure<F: Future<Output = Run>>(name: &str, runs: u64, run: impl Fn() -> F) {
    let mut all = Vec::new();
    for i in 1..=runs {
        let r = run().await;
        print_run(&format!("{name}, run {i}"), &r);
        all.push(r);
    }
    all.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    print_run(&format!("{name}, median"), &all[all.len() / 2]);
}

/// Moves this process into a network namespace of its own (root only), so the
/// hundreds of thousands of connections neither fill the root namespace's conntrack
/// table nor pass its firewall rules. It vanishes with the process.
fn isolate_network() -> &'static str {
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return "the current network namespace (not root: could not make a private one)";
    }
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(
        up.is_ok_and(|s| s.success()),
        "bringing up loopback in the private namespace"
    );
    "a private network namespace"
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(3);
    let runs = args.get(1).copied().unwrap_or(5).max(1);
    let place = isolate_network();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mock = MockAws::start(MockConfig::default(), Listeners::loopback().unwrap()).unwrap();
        let token = mock
            .state()
            .mint
            .issue(Duration::from_secs(21600), SystemTime::now());
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
            "mock on loopback in {place}, {CLIENTS} concurrent clients, {runs} runs of {seconds} s, {} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        measure("IMDS credential GETs", runs, || {
            imds_run(&mock, token.as_str(), seconds)
        })
        .await;
        measure("STS GetCallerIdentity", runs, || {
            sts_run(&mock, creds.clone(), seconds)
        })
        .await;
    });
}
