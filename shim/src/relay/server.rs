//! The HTTP side of the relay (hyper, HTTP/1.1): `GET /imds-shim/credentials/<id>.<secret>`
//! (the relative URI form) and `GET /imds-shim/credentials` with `Authorization: <id>.<secret>`
//! (the full URI form) answer with the container credentials JSON. Nothing else is served, and
//! nothing is passed to IMDS.
//!
//! Limits: at most `max_connections` connections at once (more wait in the listen backlog),
//! request heads of at most 8 KiB read within 5 s, no request body, each connection closed after
//! 30 s; a rate limit per grant. Refusals: 403 (no valid grant), 429 (over the rate limit), 404
//! (another path), 405 (another method), 413 (a body), 503 (no credentials from IMDS), each with
//! a JSON body `{"code": ..., "message": ...}` and a log line naming the grant's id and label and
//! the client's address, never a secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::grants::{Presented, Refusal};
use super::{log, Relay, CREDENTIALS_PATH};

/// hyper's smallest read buffer, which bounds a request head.
const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    relay: Arc<Relay>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.changed() => return,
        };
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
        let relay = relay.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let relay = relay.clone();
                async move { Ok::<_, Infallible>(answer(&relay, peer, &req)) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
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
fn answer(relay: &Relay, peer: SocketAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET",
        );
    }
    let has_body = req.body().size_hint().upper() != Some(0);
    if has_body {
        refused("413 body", &|| format!("413 from {from}: a request body"));
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            "no request body is accepted",
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
            return reply(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                Refusal::Malformed { what: "" }.public_message(),
            );
        }
        // The path is not logged: it may hold a mistyped secret.
        refused("404 path", &|| {
            format!(
                "404 from {from}: not a credentials path ({} bytes)",
                path.len()
            )
        });
        return reply(StatusCode::NOT_FOUND, "NotFound", "no such path");
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
            return reply(status, code, refusal.public_message());
        }
    };
    match relay.role.current(SystemTime::now()) {
        Ok(served) => {
            log(&format!(
                "200 to {from}: grant {} ({:?}): {}",
                grant.id, grant.label, served.access_key_id
            ));
            json(StatusCode::OK, served.body())
        }
        Err(why) => {
            log(&format!(
                "503 to {from}: grant {} ({:?}): {why}",
                grant.id, grant.label
            ));
            reply(StatusCode::SERVICE_UNAVAILABLE, "NoCredentials", &why)
        }
    }
}
