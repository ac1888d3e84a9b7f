//! The HTTP/1.1 serving loop shared by the mock IMDS, STS and EC2: connections admitted
//! within caps, hyper parses, a [`Handler`] answers with a whole response, and every
//! connection is bounded in time and every request in size.

#![allow(
    unsafe_code,
    reason = "borrowing the listener's fd to set IP_TTL on each accepted socket"
)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::{Admission, Ticket};
use crate::imds_version::ImdsVersion;
use crate::request_log::{RequestLog, RequestRecord, Service};

/// How long one connection may live, whatever happens to it.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// How long the kernel keeps retransmitting unacknowledged data (a response the hop
/// limit dropped) before it gives the socket up.
pub(crate) const UNACKED_DATA_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request head may take to arrive, counted from the connection's start or
/// the previous response: a slow or silent client is closed after it.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest request head (request line and headers): larger gets 431. An SDK's
/// signed request head is under 2 KiB.
pub(crate) const MAX_HEAD: usize = 16 << 10;

/// Connections closed to make room whose tasks have yet to release their sockets, at
/// most: past this the accept loop waits for them.
const MAX_CLOSING: usize = 64;

/// The accept queue asked for; Linux caps it at `net.core.somaxconn` (4096 by default).
const ACCEPT_BACKLOG: i32 = 4096;

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

/// Answers one request. Bodies arrive whole (at most the service's
/// [`Service::max_body`]).
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
    /// The connections admitted: [`Self::open_connections`] less those closed whose
    /// task has yet to run.
    pub(crate) admission: Arc<Admission>,
    /// Connections whose task runs.
    pub(crate) open_connections: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    /// Connections closed unserved because every place was busy answering.
    pub(crate) refused: AtomicU64,
    /// Idle connections closed to make room for a newcomer.
    pub(crate) closed_idle: AtomicU64,
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
    let admission = stats.admission.clone();
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
            let ticket = match admission.admit(peer.ip()) {
                Ok((ticket, admitted)) => {
                    stats
                        .closed_idle
                        .fetch_add(admitted.closed_idle as u64, Ordering::Relaxed);
                    // Closed connections release their sockets when their tasks run:
                    // a flood of reconnects must not outrun them by more than this.
                    // (Yielding after every close would make each accept wait a
                    // scheduling round, and a client queued behind the flood wait
                    // for all of them.)
                    while stats.open_connections.load(Ordering::Relaxed)
                        > admission.open() + MAX_CLOSING
                    {
                        tokio::task::yield_now().await;
                    }
                    ticket
                }
                Err(refusal) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, ?refusal, "connection refused: no room");
                    continue;
                }
            };
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
            let guard = OpenGuard(stats.clone());
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let _guard = guard;
                serve_connection(stream, peer, ticket, handler, keep_alive, log).await;
            });
        }
    }))
}

/// Sets the options of every connection once, on the listener: Linux copies them into
/// each socket it accepts. The accept queue is made as long as the kernel allows
/// (`listen` again on a listening socket only changes it), so that a flood of
/// reconnecting sockets waits in it beside a real client's instead of having the
/// client's SYN dropped, which costs the client a 1 s retransmission.
fn configure(listener: &std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let socket = SockRef::from(listener);
    socket.listen(ACCEPT_BACKLOG)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_user_timeout(Some(UNACKED_DATA_TIMEOUT))
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    handler: Arc<dyn Handler>,
    keep_alive: bool,
    (service, log): (Service, Arc<RequestLog>),
) {
    let ticket = Arc::new(ticket);
    let connection = Arc::new(Connection {
        peer,
        fd: stream.as_raw_fd(),
    });
    let serving_ticket = ticket.clone();
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let connection = connection.clone();
        let log = log.clone();
        let ticket = serving_ticket.clone();
        async move {
            let (parts, body) = request.into_parts();
            let (method, uri) = (parts.method.clone(), parts.uri.clone());
            let limit = service.max_body();
            // A declared length over the limit is refused unread; an undeclared one
            // (chunked) is read up to the limit and no further.
            let declared = body.size_hint().lower();
            let body = if usize::try_from(declared).is_ok_and(|n| n <= limit) {
                Limited::new(body, limit).collect().await.map_err(|err| {
                    if err.is::<LengthLimitError>() {
                        BodyRefusal::TooLarge
                    } else {
                        BodyRefusal::Broken
                    }
                })
            } else {
                Err(BodyRefusal::TooLarge)
            };
            // Busy from a whole request to the end of its response: a client slow to
            // send its body stays idle, and may be closed to make room.
            ticket.busy();
            let response = match body {
                Ok(body) => {
                    handler.handle(Request::from_parts(parts, body.to_bytes()), &connection)
                }
                Err(BodyRefusal::TooLarge) => service.body_too_large_for(&parts.headers),
                Err(BodyRefusal::Broken) => broken_body(),
            };
            log.record(RequestRecord::new(
                service,
                (method.as_str(), uri.path()),
                response.status().as_u16(),
                connection.peer.ip(),
                response.extensions().get::<ImdsVersion>().copied(),
            ));
            // Idle again once hyper has written the body and dropped it.
            let idle = IdleWhenDropped(ticket);
            let (head, bytes) = response.into_parts();
            let body = Full::new(bytes).map_frame(move |frame| {
                let _held = &idle;
                frame
            });
            Ok::<_, Infallible>(Response::from_parts(head, body))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(keep_alive)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = tokio::time::timeout(CONNECTION_DEADLINE, serving) => match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(%peer, %err, "connection ended with an error"),
            Err(_) => tracing::debug!(%peer, "connection reached its deadline"),
        },
        () = ticket.closed() => tracing::debug!(%peer, "idle connection closed to make room"),
    }
}

/// Marks its connection idle when dropped.
struct IdleWhenDropped(Arc<Ticket>);

impl Drop for IdleWhenDropped {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// Why a request's body did not reach its handler.
enum BodyRefusal {
    /// Over the service's [`Service::max_body`].
    TooLarge,
    /// Not a body: chunks that do not parse, or the client went away mid-body.
    Broken,
}

/// The answer to a body that could not be read: 400, and the connection closed.
fn broken_body() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
