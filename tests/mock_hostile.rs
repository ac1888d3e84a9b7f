//! The mock against hostile or buggy neighbours: malformed and oversized heads, oversized
//! bodies, slow heads, idle sockets by the thousand, floods of garbage signatures. Each
//! gets a clear refusal, nothing panics (a panic hook counts any outside this file), no
//! state changes, and a real client (the Rust SDK, Debian's AWS CLI) is served
//! afterwards or meanwhile. Everything listens on loopback; nothing reaches real AWS.

use std::net::SocketAddr;
use std::time::Duration;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use http::StatusCode;
use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::panics;
use imds_e2e::raw_http::send;
use imds_e2e::require::{require, Requirement};
use imds_mock::{EventCounts, Listeners, MockAws, MockConfig, RequestLog};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

mod sdk;
use sdk::{imds_credentials, sts};

/// The connection caps of docs/mock.md ("Limits"): per server, and per peer address.
const MAX_PER_PEER: usize = 128;
/// Bodies each service takes at most (docs/mock.md, "Limits").
const MAX_BODY_IMDS: usize = 1 << 10;
const MAX_BODY_STS: usize = 64 << 10;
const MAX_BODY_EC2: usize = 256 << 10;
/// How long a test waits for an answer before calling the mock hung (a guard, not a
/// measure: every answer here comes in milliseconds or after the 3 s head timeout).
const HANG: Duration = Duration::from_secs(9);

// ------------------------------------------------------------------- the mock

fn start() -> MockAws {
    panics::watch(file!());
    MockAws::start(
        MockConfig::default(),
        Listeners::loopback().expect("loopback ports"),
    )
    .expect("mock starts")
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("an endpoint is host:port")
}

fn addrs(mock: &MockAws) -> [(&'static str, SocketAddr); 3] {
    let e = mock.endpoints();
    [
        ("imds", addr(&e.imds)),
        ("sts", addr(&e.sts)),
        ("ec2", addr(&e.ec2)),
    ]
}

/// Sends `bytes` on a fresh connection and reads until the mock closes it (or [`HANG`]).
async fn exchange(to: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(to).await.expect("connect");
    // The mock may answer and close before it has read everything: not an error here.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "{to}: no answer and no close to {:?}",
        head(bytes)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The mock still serves a real client on all three services: the Rust SDK gets
/// credentials from IMDS, an identity from STS and the instance from EC2.
async fn assert_serves_the_sdk(mock: &MockAws) {
    let http = HttpClientBuilder::new().build_http();
    let provider = ProviderConfig::without_region().with_http_client(http.clone());
    let imds_client = imds::Client::builder()
        .configure(&provider)
        .endpoint(&mock.endpoints().imds)
        .expect("endpoint URL")
        .build();
    let credentials = imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&provider)
        .imds_client(imds_client)
        .build()
        .provide_credentials()
        .await
        .expect("the SDK gets credentials from IMDS");
    let config = |endpoint: &str| {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http.clone())
            .credentials_provider(credentials.clone())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
    };
    let sts = aws_sdk_sts::Client::new(&config(&mock.endpoints().sts).await);
    let identity = sts.get_caller_identity().send().await.expect("STS answers");
    assert_eq!(identity.account(), Some(mock.identity().account.as_str()));
    let ec2 = aws_sdk_ec2::Client::new(&config(&mock.endpoints().ec2).await);
    let described = ec2
        .describe_instances()
        .instance_ids(&mock.identity().instance_id)
        .send()
        .await
        .expect("EC2 answers");
    assert_eq!(described.reservations().len(), 1);
}

// ------------------------------------------------------------------- heads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_get_400_and_the_mock_keeps_serving() {
    let mock = start();
    let mark = mock.request_mark();
    let malformed: [&[u8]; 9] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"\x00\xff\xfe\xfd\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \x7f\x00\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for (service, to) in addrs(&mock) {
        for bytes in malformed {
            let answer = exchange(to, bytes).await;
            assert_eq!(
                status_of(&answer),
                Some(400),
                "{service} answered {answer:?} to {:?}",
                head(bytes)
            );
        }
        // An HTTP/2 preface is no HTTP/1.1 request: refused, never served.
        let h2 = exchange(to, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        assert!(
            h2.is_empty() || status_of(&h2) == Some(400),
            "{service}: {h2:?}"
        );
    }
    // A chunked body whose chunks are garbage reaches the service as a failed read.
    let logged = mock.requests_since(mark);
    assert!(
        logged.iter().all(|r| r.status >= 400),
        "nothing malformed was served: {logged:?}"
    );
    assert_serves_the_sdk(&mock).await;
    panics::assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_long_paths_are_logged_cut() {
    let mock = start();
    let huge_header = format!(
        "GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "h".repeat(20 << 10)
    );
    let huge_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(64 << 10));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-Many: v\r\n".repeat(200)
    );
    for (service, to) in addrs(&mock) {
        for request in [&huge_header, &huge_path, &many_headers] {
            let answer = exchange(to, request.as_bytes()).await;
            assert_eq!(status_of(&answer), Some(431), "{service}: {answer:?}");
        }
    }
    // A path within the head's bound but past what the log keeps: answered, logged cut.
    let mark = mock.request_mark();
    let long = format!("/latest/meta-data/{}", "q".repeat(10 << 10));
    let answer = exchange(
        addrs(&mock)[0].1,
        format!("GET {long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), Some(401), "{answer:?}");
    let logged = mock.requests_since(mark);
    assert_eq!(logged.len(), 1);
    assert!(logged[0].truncated);
    assert_eq!(logged[0].path.len(), RequestLog::MAX_PATH);
    assert!(long.starts_with(&logged[0].path));
    assert_serves_the_sdk(&mock).await;
    panics::assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_closed_before_the_connection_deadline() {
    let mock = start();
    for (service, to) in addrs(&mock) {
        let mut stream = TcpStream::connect(to).await.expect("connect");
        stream
            .write_all(b"GET /latest/meta-data/ HTTP/1.1\r\n")
            .await
            .unwrap();
        // One header byte every 200 ms, never the blank line: the head never completes.
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
                let mut byte = [0; 1];
                let read =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await;
                if let Ok(Ok(0) | Err(_)) = read {
                    return;
                }
            }
        };
        // 9 s: under the 10 s connection deadline, so the head timeout closed it.
        assert!(
            tokio::time::timeout(HANG, trickle).await.is_ok(),
            "{service} kept a slow head open"
        );
    }
    assert_serves_the_sdk(&mock).await;
    panics::assert_none();
}

// ------------------------------------------------------------------- bodies

fn post(path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_in_the_services_shape_without_being_read() {
    let mock = start();
    let [(_, imds), (_, sts), (_, ec2)] = addrs(&mock);
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n";
    let cases = [
        (
            "imds",
            imds,
            "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n".to_string() + ttl,
            MAX_BODY_IMDS,
        ),
        ("sts", sts, post("/", ""), MAX_BODY_STS),
        ("ec2", ec2, post("/", ""), MAX_BODY_EC2),
    ];
    for (service, to, head_lines, limit) in &cases {
        let head_lines = head_lines.trim_end_matches("\r\n");
        // Declared larger than the limit (10 MiB), and not one byte sent: the answer
        // comes at once, so the body was never waited for.
        let declared = format!("{head_lines}\r\nContent-Length: {}\r\n\r\n", 10 << 20);
        let answer = exchange(*to, declared.as_bytes()).await;
        assert_eq!(status_of(&answer), Some(413), "{service}: {answer:?}");
        match *service {
            "imds" => assert!(answer.contains("<title>413 - Payload Too Large</title>")),
            "sts" => assert!(
                answer.contains("<ErrorResponse")
                    && answer.contains("<Code>RequestEntityTooLarge</Code>"),
                "{answer}"
            ),
            _ => assert!(
                answer.contains("<Response><Errors>")
                    && answer.contains("<Code>RequestEntityTooLarge</Code>"),
                "{answer}"
            ),
        }
        // Chunked, one byte past the limit, the end never sent: refused without
        // waiting for the rest.
        let mut chunked =
            format!("{head_lines}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        chunked.extend(format!("{:x}\r\n", limit + 1).as_bytes());
        chunked.extend(std::iter::repeat_n(b'a', limit + 1));
        chunked.extend(b"\r\n");
        let answer = exchange(*to, &chunked).await;
        assert_eq!(
            status_of(&answer),
            Some(413),
            "{service} chunked: {answer:?}"
        );
        // At the limit: the body is read and the service answers (here: no signature).
        let at_limit = format!(
            "{head_lines}\r\nContent-Length: {limit}\r\n\r\n{}",
            "a".repeat(*limit)
        );
        let answer = exchange(*to, at_limit.as_bytes()).await;
        let expected = match *service {
            "imds" => 200, // a token: the body of a token PUT is not looked at
            "sts" => 403,  // MissingAuthenticationToken
            _ => 401,      // MissingAuthenticationToken, EC2's status
        };
        assert_eq!(
            status_of(&answer),
            Some(expected),
            "{service} at the limit: {answer:?}"
        );
    }
    assert_serves_the_sdk(&mock).await;
    panics::assert_none();
}

// ------------------------------------------------------------------- signatures

/// Authorization headers no client sends: each must get a SigV4 refusal.
fn garbage_authorizations() -> Vec<String> {
    let scope = "20260101/us-east-1/sts/aws4_request";
    vec![
        "AWS4-HMAC-SHA256".into(),
        "AWS4-HMAC-SHA256 ".into(),
        "Basic dXNlcjpwYXNz".into(),
        format!("AWS4-HMAC-SHA256 Credential=ASIAFAKE/{scope}, SignedHeaders=host, Signature=00"),
        format!("AWS4-HMAC-SHA256 Credential=ASIAFAKE/{scope}, SignedHeaders=host, Signature=zz"),
        "AWS4-HMAC-SHA256 Credential=////////, SignedHeaders=;;;;, Signature=".into(),
        "AWS4-HMAC-SHA256 Credential=, Credential=, Credential=".into(),
        format!("AWS4-HMAC-SHA256 Credential=ASIAFAKE/{scope}/extra/parts, SignedHeaders=host, Signature=ab"),
        format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host, Signature=ab", "A".repeat(8 << 10)),
        format!("AWS4-HMAC-SHA256 SignedHeaders={}, Credential=ASIAFAKE/{scope}, Signature=ab", "h;".repeat(2000)),
        "AWS4-HMAC-SHA256 Credential=ASIAFAKE/99999999/xx/sts/aws4_request, SignedHeaders=host, Signature=ab".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_signatures_are_refused_and_a_flood_of_them_changes_nothing() {
    let mock = start();
    let options = mock.options();
    let events = mock.events();
    assert_eq!(events, EventCounts::default());
    let mark = mock.request_mark();
    // A change the mock would make if any of these were accepted.
    let modify = "Action=ModifyInstanceMetadataOptions&Version=2016-11-15\
                  &InstanceId=i-0123456789abcdef0&HttpPutResponseHopLimit=9&HttpTokens=optional";
    let identity = "Action=GetCallerIdentity&Version=2011-06-15";
    let mut flood = JoinSet::new();
    for task in 0..64 {
        let endpoints = mock.endpoints().clone();
        flood.spawn(async move {
            let mut statuses = Vec::new();
            for (i, authorization) in garbage_authorizations().into_iter().enumerate() {
                let (url, body) = if (task + i) % 2 == 0 {
                    (&endpoints.sts, identity)
                } else {
                    (&endpoints.ec2, modify)
                };
                let headers = [
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("authorization", authorization.as_str()),
                    ("x-amz-date", "20260101T000000Z"),
                    ("x-amz-security-token", "garbage"),
                ];
                let answer = send("POST", url, &headers, body).await;
                assert!(answer.body.contains("<Code>"), "{}", answer.body);
                statuses.push(answer.status);
            }
            statuses
        });
    }
    let mut refused = 0;
    while let Some(statuses) = flood.join_next().await {
        for status in statuses.expect("a flooding task ends") {
            assert!(
                matches!(
                    status,
                    StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ),
                "{status}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 64 * garbage_authorizations().len());
    // The real credentials' key with a wrong secret, signed by the real SDK.
    let real = imds_credentials(&mock).await.expect("IMDS credentials");
    let forged = Credentials::new(
        real.access_key_id(),
        "not-the-secret",
        real.session_token().map(str::to_owned),
        None,
        "forged",
    );
    let sts = sts(&mock, forged).await;
    let error = sts.get_caller_identity().send().await.unwrap_err();
    let code = aws_sdk_sts::error::ProvideErrorMetadata::code(&error);
    assert_eq!(code, Some("SignatureDoesNotMatch"));
    // Nothing changed, every refusal was logged, and the real client is served.
    assert_eq!(mock.options(), options);
    assert_eq!(mock.events().identity_v1 + mock.events().identity_v2, 0);
    let logged = mock.requests_since(mark);
    assert!(logged.iter().filter(|r| r.status >= 400).count() > refused);
    assert_serves_the_sdk(&mock).await;
    panics::assert_none();
}

// ------------------------------------------------------------------- connections

/// A neighbour holding `count` sockets from `from` to each of `targets`: each connects,
/// sends nothing, and reconnects as soon as the mock closes it. It runs on its own
/// thread and runtime, as another process would, until dropped.
struct IdleNeighbour {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdleNeighbour {
    fn start(from: std::net::IpAddr, targets: Vec<SocketAddr>, count: usize) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the neighbour's runtime");
            runtime.block_on(async move {
                let mut held = JoinSet::new();
                for to in targets {
                    for _ in 0..count {
                        held.spawn(hold_one(from, to));
                    }
                }
                let _ = stopped.await;
                held.abort_all();
            });
        });
        IdleNeighbour {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for IdleNeighbour {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn hold_one(from: std::net::IpAddr, to: SocketAddr) {
    loop {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(from, 0)).expect("bind");
        let Ok(mut stream) = socket.connect(to).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut sink = [0; 512];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_is_served_while_a_thousand_idle_sockets_are_held() {
    if !require(
        "the_aws_cli_is_served_while_a_thousand_idle_sockets_are_held",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start();
    let [(_, imds), (_, sts), _] = addrs(&mock);
    // Another address of this machine's loopback: a neighbour, not the client.
    let neighbour = IdleNeighbour::start([127, 0, 0, 2].into(), vec![imds, sts], 1000);
    // Let the neighbour's sockets pile up to the cap (each reconnects when closed).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = (
        mock.imds_admitted_connections(),
        mock.imds_open_connections(),
    );
    let home = tempfile::tempdir().unwrap();
    let sts_url = mock.endpoints().sts.clone();
    let expr = duct::cmd(
        AWS_CLI,
        [
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &sts_url,
            "--output",
            "json",
        ],
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked();
    let env = isolated(home.path(), &mock.endpoints().imds);
    let out = tokio::task::spawn_blocking(move || env.apply(expr).run().expect("the AWS CLI runs"))
        .await
        .unwrap();
    let still_held = (
        mock.imds_admitted_connections(),
        mock.imds_open_connections(),
    );
    drop(neighbour);
    eprintln!(
        "IMDS connections (admitted, open): {held:?} before the CLI ran, {still_held:?} after"
    );
    assert!(
        out.status.success(),
        "aws sts get-caller-identity: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let identity: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(identity["Account"], mock.identity().account.as_str());
    assert_eq!(mock.events().identity_v2, 1);
    // The neighbour's 1,000 were held down to its cap; the sockets of those closed to
    // make room are released when their tasks run, far below the 1,000.
    for (admitted, open) in [held, still_held] {
        assert!(
            (MAX_PER_PEER / 2..=MAX_PER_PEER).contains(&admitted),
            "IMDS admitted {admitted} of the neighbour's 1,000 idle sockets"
        );
        assert!(
            open <= 2 * MAX_PER_PEER,
            "IMDS holds {open} of the neighbour's 1,000 idle sockets"
        );
    }
    panics::assert_none();
}
