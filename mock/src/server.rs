//! The HTTP/1.1 serving loop shared by the mock IMDS, STS and EC2: hyper parses, a
//! [`Handler`] answers with a whole response, and every connection is bounded in time.

#![allow(
    unsafe_code,
    reason = "borrowing the listener's fd to set IP_TTL on each accepted socket"
)]

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use socket2::SockRef;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::credentials::ImdsVersion;

/// How long one connection may live, whatever happens to it.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// How long the kernel keeps retransmitting unacknowledged data (a response the hop
/// limit dropped) before it gives the socket up.
pub(crate) const UNACKED_DATA_TIMEOUT: Duration = Duration::from_secs(3);
/// Larger request bodies get 413.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// The accepted connection a request came in on.
pub(crate) struct Connection {
    pub(crate) peer: SocketAddr,
    fd: RawFd,
}

impl Connection {
    /// Sets the IP TTL (IPv6: unicast hop limit) of everything this connection sends
    /// from now on, which is the response being answered and its FIN.
    pub(crate) fn set_response_hop_limit(&self, hops: u8) -> io::Result<()> {
        // SAFETY: a handler runs while hyper still owns the connection's stream, so the
        // descriptor is open for the whole borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let socket = SockRef::from(&fd);
        // Both ends of a connection share its family: a v4-mapped peer means IPv4.
        match self.peer {
            SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none() => {
                socket.set_unicast_hops_v6(hops.into())
            }
            _ => socket.set_ttl_v4(hops.into()),
        }
    }
}

/// Answers one request. Bodies arrive whole (at most [`MAX_BODY`]).
pub(crate) trait Handler: Send + Sync + 'static {
    /// The whole response to `request`, which came in on `connection`.
    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes>;

    /// Whether a connection accepted on `local` is served at all; one that is not is
    /// closed before a byte is read.
    fn admits(&self, _local: SocketAddr) -> bool {
        true
    }
}

/// Counters a test or benchmark can read.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    pub(crate) open_connections: AtomicUsize,
    pub(crate) accepted: AtomicU64,
}

struct OpenGuard(Arc<ServerStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `listener` with `handler` until `shutdown` turns true; every request goes
/// into `log` as `service`'s.
pub(crate) fn spawn(
    listener: std::net::TcpListener,
    handler: Arc<dyn Handler>,
    keep_alive: bool,
    stats: Arc<ServerStats>,
    log: (Service, Arc<RequestLog>),
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<JoinHandle<()>> {
    configure(&listener)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if !stream.local_addr().is_ok_and(|local| handler.admits(local)) {
                continue;
            }
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
            let guard = OpenGuard(stats.clone());
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let _guard = guard;
                serve_connection(stream, peer, handler, keep_alive, log).await;
            });
        }
    }))
}

/// Which of the mock's services answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The instance metadata service.
    Imds,
    /// STS.
    Sts,
    /// The EC2 API.
    Ec2,
}

/// One request the mock answered: no header, body or query is kept, so nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Which service answered.
    pub service: Service,
    /// The request's method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The response's status code.
    pub status: u16,
    /// The client's address.
    pub peer: IpAddr,
    /// For a signed API call: which credential set signed it (the one IMDS handed to
    /// IMDSv1 or to IMDSv2 callers).
    pub signed_with: Option<ImdsVersion>,
}

/// The requests a mock answered, the newest [`RequestLog::CAPACITY`] of them.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: std::sync::Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    kept: std::collections::VecDeque<RequestRecord>,
    /// How many were ever recorded, the dropped ones included.
    recorded: u64,
}

/// A point in a [`RequestLog`]: what was recorded after it is
/// [`RequestLog::since`] it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestMark(u64);

impl RequestLog {
    /// How many records are kept; older ones are dropped.
    pub const CAPACITY: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, record: RequestRecord) {
        let mut records = self.lock();
        if records.kept.len() == Self::CAPACITY {
            records.kept.pop_front();
        }
        records.kept.push_back(record);
        records.recorded += 1;
    }

    /// The records kept, oldest first.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.lock().kept.iter().cloned().collect()
    }

    /// Now: the records that come after this are [`Self::since`] it.
    pub fn mark(&self) -> RequestMark {
        RequestMark(self.lock().recorded)
    }

    /// The records made after `mark` (those still kept), oldest first.
    pub fn since(&self, mark: RequestMark) -> Vec<RequestRecord> {
        let records = self.lock();
        let newer = usize::try_from(records.recorded.saturating_sub(mark.0)).unwrap_or(usize::MAX);
        let skip = records.kept.len().saturating_sub(newer);
        records.kept.iter().skip(skip).cloned().collect()
    }
}

/// Sets the options of every connection once, on the listener: Linux copies them into
/// each socket it accepts.
fn configure(listener: &std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let socket = SockRef::from(listener);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_user_timeout(Some(UNACKED_DATA_TIMEOUT))
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    keep_alive: bool,
    (service, log): (Service, Arc<RequestLog>),
) {
    let connection = Arc::new(Connection {
        peer,
        fd: stream.as_raw_fd(),
    });
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let connection = connection.clone();
        let log = log.clone();
        async move {
            let (parts, body) = request.into_parts();
            let (method, path) = (parts.method.to_string(), parts.uri.path().to_owned());
            let response = match Limited::new(body, MAX_BODY).collect().await {
                Ok(body) => {
                    handler.handle(Request::from_parts(parts, body.to_bytes()), &connection)
                }
                Err(_) => plain_status(StatusCode::PAYLOAD_TOO_LARGE),
            };
            log.record(RequestRecord {
                service,
                method,
                path,
                status: response.status().as_u16(),
                peer: connection.peer.ip(),
                signed_with: response.extensions().get::<ImdsVersion>().copied(),
            });
            Ok::<_, Infallible>(response.map(Full::new))
        }
    });
    let serving = http1::Builder::new()
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_DEADLINE, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%peer, %err, "connection ended with an error"),
        Err(_) => tracing::debug!(%peer, "connection reached its deadline"),
    }
}

fn plain_status(status: StatusCode) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .body(Bytes::new())
        .expect("a status-only response builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16) -> RequestRecord {
        RequestRecord {
            service: Service::Imds,
            method: "GET".into(),
            path: "/".into(),
            status,
            peer: IpAddr::from([127, 0, 0, 1]),
            signed_with: None,
        }
    }

    #[test]
    fn since_a_mark_is_what_came_after_it_even_once_the_log_is_full() {
        let log = RequestLog::default();
        let start = log.mark();
        log.record(record(200));
        let one = log.mark();
        assert_eq!(log.since(start).len(), 1);
        assert!(log.since(one).is_empty());
        for _ in 1..RequestLog::CAPACITY {
            log.record(record(200));
        }
        let full = log.mark();
        log.record(record(401));
        log.record(record(404));
        assert_eq!(log.snapshot().len(), RequestLog::CAPACITY);
        let statuses: Vec<u16> = log.since(full).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 404]);
        // A mark older than what is kept gets all that is kept.
        assert_eq!(log.since(start).len(), RequestLog::CAPACITY);
    }
}
