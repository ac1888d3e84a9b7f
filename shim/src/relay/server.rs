//! The HTTP side of the relay (hyper, HTTP/1.1): `GET /imds-shim/credentials/<id>.<secret>`
//! (the relative URI form) and `GET /imds-shim/credentials` with `Authorization: <id>.<secret>`
//! (the full URI form) answer with the container credentials JSON. Nothing else is served, and
//! nothing is passed to IMDS.
//!
//! Limits: connections are accepted at once and kept under a cap per client address and one in
//! all, the oldest idle ones closed first to make room ([`super::admission`]); request heads of
//! at most 8 KiB read within 5 s, no request body, each connection closed after 30 s, and after
//! any refusal; a rate limit per grant. Refusals: 403 (no valid grant), 429 (over the rate limit), 404
//! (another path), 405 (another method), 413 (a body), 503 (no credentials from IMDS), each with
//! a JSON body `{"code": ..., "message": ...}` and a log line naming the grant's id and label and
//! the client's address, never a secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::admission::{Admission, Admitted, Busy, Caps};
use super::grants::{Presented, Refusal};
use super::metrics::Outcome;
use super::{log, Relay, CREDENTIALS_PATH};

/// hyper's smallest read buffer, which bounds a request head.
const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` turns true: each connection is accepted at once and kept
/// or not by [`Admission`] under `caps`.
pub async fn serve(
    listener: TcpListener,
    relay: Arc<Relay>,
    caps: Caps,
    shutdown: watch::Receiver<bool>,
) {
    serve_all(vec![listener], relay, caps, shutdown).await;
}

/// Serves every one of `listeners` (`--listen` repeated) under one [`Admission`] until
/// `shutdown` turns true.
pub async fn serve_all(
    listeners: Vec<TcpListener>,
    relay: Arc<Relay>,
    caps: Caps,
    shutdown: watch::Receiver<bool>,
) {
    let admission = Admission::new(caps);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            tokio::spawn(accept(
                listener,
                relay.clone(),
                admission.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    for task in loops {
        let _ = task.await;
    }
}

async fn accept(
    listener: TcpListener,
    relay: Arc<Relay>,
    admission: Arc<Admission>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    log(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // Every place within the caps is answering a request: this one is closed unanswered.
        let Ok(admitted) = admission.admit(peer.ip()) else {
            continue;
        };
        tokio::spawn(connection(stream, peer, relay.clone(), Arc::new(admitted)));
    }
}

/// One connection, until it ends, times out or is closed to make room for another.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    relay: Arc<Relay>,
    admitted: Arc<Admitted>,
) {
    let this = admitted.clone();
    let service = service_fn(move |req| {
        let busy = this.busy();
        let relay = relay.clone();
        async move {
            let started = Instant::now();
            let (mut response, outcome) = answer(&relay, peer, req).await;
            relay.metrics.request(outcome, started.elapsed());
            // A refused client gets no kept-alive connection to hold on to.
            if response.status() != StatusCode::OK {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response.map(|body| Held { body, _busy: busy }))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
        () = admitted.evicted() => {}
    }
}

/// A response body that keeps its connection marked busy (not closed to make room) until it
/// has been sent.
struct Held {
    body: Full<Bytes>,
    _busy: Busy,
}

impl Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn reply(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    json(status, Bytes::from(body))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body))
        .expect("a valid response")
}

/// The answer to one request. Refusals are logged through [`Relay::refusals`]: the first from
/// an address in full, the rest as counts.
async fn answer(
    relay: &Relay,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Response<Full<Bytes>>, Outcome) {
    let from = peer.ip();
    let refused = |kind: &'static str, line: &dyn Fn() -> String| {
        relay
            .refusals
            .refused(from, kind, line, Instant::now(), &mut |l| log(l));
    };
    if req.method() != Method::GET {
        refused("405 method", &|| {
            format!("405 from {from}: method {}", req.method())
        });
        return (
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "only GET",
            ),
            Outcome::MethodNotAllowed,
        );
    }
    let has_body = req.body().size_hint().upper() != Some(0);
    if has_body {
        refused("413 body", &|| format!("413 from {from}: a request body"));
        return (
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "no request body is accepted",
            ),
            Outcome::Body,
        );
    }
    let path = req.uri().path();
    let presented = if path == CREDENTIALS_PATH {
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|value| (Presented::Token, value.to_str().unwrap_or("")))
    } else {
        path.strip_prefix(CREDENTIALS_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|cap| (Presented::Path, cap))
    };
    let Some((how, capability)) = presented else {
        if path == CREDENTIALS_PATH {
            refused("403 no Authorization header", &|| {
                format!("403 from {from}: no Authorization header")
            });
            return (
                reply(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    Refusal::Malformed { what: "" }.public_message(),
                ),
                Outcome::NoAuthorization,
            );
        }
        // The path is not logged: it may hold a mistyped secret.
        refused("404 path", &|| {
            format!(
                "404 from {from}: not a credentials path ({} bytes)",
                path.len()
            )
        });
        return (
            reply(StatusCode::NOT_FOUND, "NotFound", "no such path"),
            Outcome::NotFound,
        );
    };
    let authorized = relay
        .grants()
        .authorize(how, capability, SystemTime::now(), Instant::now());
    let grant = match authorized {
        Ok(grant) => grant,
        Err(refusal) => {
            let (status, code) = match refusal {
                Refusal::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
                Refusal::Malformed { .. }
                | Refusal::Unknown { .. }
                | Refusal::WrongSecret { .. }
                | Refusal::Expired { .. }
                | Refusal::Revoked { .. } => (StatusCode::FORBIDDEN, "AccessDenied"),
            };
            refused(refusal.kind(), &|| {
                format!("{} from {from}: {refusal}", status.as_u16())
            });
            return (
                reply(status, code, refusal.public_message()),
                refusal.outcome(),
            );
        }
    };
    let now = SystemTime::now();
    let (served, what) = match &grant.session {
        None => (relay.role.current(now), "instance role".to_owned()),
        Some(session) => (
            session
                .cache
                .credentials(&relay.assumer, &session.role, grant.expires)
                .await,
            format!(
                "role {} session {}",
                session.role.role_name(),
                session.role.session_name
            ),
        ),
    };
    match served {
        Ok(served) => {
            relay.metrics.served_age(served.fetched, now);
            log(&format!(
                "200 to {from}: grant {} ({:?}), {what}: {}",
                grant.id, grant.label, served.access_key_id
            ));
            (json(StatusCode::OK, served.body()), Outcome::Served)
        }
        Err(why) => {
            log(&format!(
                "503 to {from}: grant {} ({:?}), {what}: {why}",
                grant.id, grant.label
            ));
            (
                reply(StatusCode::SERVICE_UNAVAILABLE, "NoCredentials", &why),
                Outcome::NoCredentials,
            )
        }
    }
}
