//! Step 1: the hop limit this place needs, measured with TCP connects whose IP TTL is set.
//!
//! A connect with TTL `k` reaches the IMDS host only if at most `k - 1` routers forward it on the
//! way, the same condition under which a token response sent with hop limit `k` reaches this place.
//! A router that drops the SYN answers with ICMP time-exceeded, which fails the connect at once
//! (`EHOSTUNREACH`), so all attempts run in parallel and the answer is known as soon as some `k`
//! connected and `k - 1` failed. The connections are closed at once; no request is sent.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::net::TcpSocket;

/// Why one connect attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// No route, or the TTL ran out on the way (ICMP time-exceeded or unreachable).
    Unreachable(String),
    /// The host answered with a reset: it was reached, but nothing listens on the port.
    Refused,
    /// No answer within the attempt timeout.
    TimedOut,
    /// Any other socket error.
    Other(String),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) | Self::Other(e) => f.write_str(e),
            Self::Refused => f.write_str("connection refused"),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The outcome of one attempt: connected, or why not.
pub type Attempt = Result<(), AttemptError>;

/// What the attempts so far tell, assuming success is monotone in the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not known yet: wait for more attempts.
    Pending,
    /// The smallest TTL that connects.
    Needed(u8),
    /// Every attempt has failed.
    NoneConnected,
}

/// Decides from `results[i]`, the outcome of TTL `i + 1` (`None` while it runs).
///
/// `k` is the answer as soon as `k` connected and `k - 1` failed (or `k` is 1): by monotonicity
/// every smaller TTL fails too, so the attempts still running need not be waited for.
pub(crate) fn decide(results: &[Option<bool>]) -> Decision {
    for (i, r) in results.iter().enumerate() {
        if *r == Some(true) && (i == 0 || results[i - 1] == Some(false)) {
            return Decision::Needed(u8::try_from(i + 1).unwrap_or(u8::MAX));
        }
    }
    if results.iter().all(|r| *r == Some(false)) {
        Decision::NoneConnected
    } else {
        Decision::Pending
    }
}

/// Why no TTL up to the maximum connected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TtlError {
    /// The endpoint's host name did not resolve.
    #[error("could not resolve the IMDS host {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// A reset came back: the host is reached, but nothing listens there.
    #[error("connection refused by {addr} (tried TTL 1 to {max}): nothing listens there; check the IMDS endpoint")]
    Refused {
        /// The address tried.
        addr: SocketAddr,
        /// The largest TTL tried.
        max: u8,
    },
    /// No route, or the TTL ran out even at the maximum.
    #[error("no route to {addr} even with TTL {max}: {reason}")]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// The largest TTL tried.
        max: u8,
        /// The socket error.
        reason: String,
    },
    /// Silence: the SYN or its answer was dropped without an ICMP error.
    #[error("no answer from {addr} within {timeout_ms} ms even with TTL {max}: packets to it are dropped on the way, or nothing is there")]
    TimedOut {
        /// The address tried.
        addr: SocketAddr,
        /// The largest TTL tried.
        max: u8,
        /// The attempt timeout.
        timeout_ms: u128,
    },
    /// Any other socket error.
    #[error("could not connect to {addr} with TTL {max}: {reason}")]
    Other {
        /// The address tried.
        addr: SocketAddr,
        /// The largest TTL tried.
        max: u8,
        /// The socket error.
        reason: String,
    },
}

impl TtlError {
    fn from_attempt(addr: SocketAddr, max: u8, timeout: Duration, err: &AttemptError) -> Self {
        match err {
            AttemptError::Refused => Self::Refused { addr, max },
            AttemptError::Unreachable(reason) => Self::Unreachable {
                addr,
                max,
                reason: reason.clone(),
            },
            AttemptError::TimedOut => Self::TimedOut {
                addr,
                max,
                timeout_ms: timeout.as_millis(),
            },
            AttemptError::Other(reason) => Self::Other {
                addr,
                max,
                reason: reason.clone(),
            },
        }
    }
}

/// One TCP connect to `addr` with IP TTL (IPv6: unicast hop limit) `ttl`, bounded by `timeout`.
pub async fn attempt(addr: SocketAddr, ttl: u8, timeout: Duration) -> Attempt {
    let socket = open(addr, ttl).map_err(|e| AttemptError::Other(e.to_string()))?;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(AttemptError::TimedOut),
    }
}

fn open(addr: SocketAddr, ttl: u8) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let sock = socket2::SockRef::from(&socket);
    if addr.is_ipv4() {
        sock.set_ttl_v4(u32::from(ttl))?;
    } else {
        sock.set_unicast_hops_v6(u32::from(ttl))?;
    }
    Ok(socket)
}

fn classify(e: &io::Error) -> AttemptError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => AttemptError::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            AttemptError::Unreachable(e.to_string())
        }
        io::ErrorKind::TimedOut => AttemptError::TimedOut,
        _ => AttemptError::Other(e.to_string()),
    }
}

/// How many TTLs are tried at once. Real nesting is a few routers deep, so the first
/// window almost always holds the answer, and 64 sockets at once cost more than the
/// network does.
const WINDOW: u8 = 8;

/// How much longer the attempts below a found TTL get when one of them timed out.
const RECHECK_FACTOR: u32 = 4;

/// The smallest TTL in `1..=max` whose connect to `addr` succeeds.
///
/// TTLs are tried [`WINDOW`] at a time, all of a window at once; the function returns as
/// soon as [`decide`] knows the answer and drops (closes) the attempts still running. A
/// window whose attempts all fail moves the search to the next one. When none connects,
/// the reason is that of the attempt with the largest TTL, the one that went farthest.
///
/// Only an ICMP error proves that a TTL falls short; silence does not (a busy machine
/// can miss a window's timeout). So when the answer `k` stands on a TTL `k - 1` that
/// timed out, TTLs `1..k` are tried again with [`RECHECK_FACTOR`] times the timeout, and
/// a smaller TTL that connects then is the answer. Where ICMP is filtered, that second
/// look times out too and `k` stands.
pub async fn hop_limit_needed(
    addr: SocketAddr,
    max: u8,
    timeout: Duration,
) -> Result<u8, TtlError> {
    search(max, timeout, |k, timeout| attempt(addr, k, timeout))
        .await
        .map_err(|err| TtlError::from_attempt(addr, max.max(1), timeout, &err))
}

/// [`hop_limit_needed`] with the attempt given, so that its decisions can be tested
/// without a network.
async fn search<F, Fut>(max: u8, timeout: Duration, attempt: F) -> Result<u8, AttemptError>
where
    F: Fn(u8, Duration) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let found = windows(max, timeout, &attempt).await?;
    match found {
        Found {
            needed,
            below_timed_out: true,
        } if needed > 1 => {
            let longer = timeout.saturating_mul(RECHECK_FACTOR);
            match windows(needed - 1, longer, &attempt).await {
                Ok(Found { needed: lower, .. }) => Ok(lower),
                Err(_) => Ok(needed),
            }
        }
        Found { needed, .. } => Ok(needed),
    }
}

/// A TTL that connected, and whether the one below it timed out (rather than failing
/// with an ICMP error).
struct Found {
    needed: u8,
    below_timed_out: bool,
}

async fn windows<F, Fut>(max: u8, timeout: Duration, attempt: &F) -> Result<Found, AttemptError>
where
    F: Fn(u8, Duration) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let max = max.max(1);
    let mut results: Vec<Option<bool>> = vec![None; usize::from(max)];
    let mut timed_out = vec![false; usize::from(max)];
    let mut last_error = None;
    let mut first = 1u8;
    while first <= max {
        let last = first.saturating_add(WINDOW - 1).min(max);
        let mut running: FuturesUnordered<_> = (first..=last)
            .map(|k| async move { (k, attempt(k, timeout).await) })
            .collect();
        while let Some((k, outcome)) = running.next().await {
            let i = usize::from(k) - 1;
            results[i] = Some(outcome.is_ok());
            if let Err(e) = outcome {
                timed_out[i] = e == AttemptError::TimedOut;
                if k == last {
                    last_error = Some(e);
                }
            }
            if let Decision::Needed(k) = decide(&results[..usize::from(last)]) {
                let below = usize::from(k).checked_sub(2);
                return Ok(Found {
                    needed: k,
                    below_timed_out: below.is_some_and(|b| timed_out[b]),
                });
            }
        }
        first = last.saturating_add(1);
        if last == max {
            break;
        }
    }
    Err(last_error.unwrap_or(AttemptError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const P: Option<bool> = None;

    #[test]
    fn decides_when_k_connects_and_k_minus_1_failed() {
        assert_eq!(decide(&[T, P, P]), Decision::Needed(1));
        assert_eq!(decide(&[F, T, P, P]), Decision::Needed(2));
        assert_eq!(decide(&[P, F, T, T]), Decision::Needed(3));
        assert_eq!(decide(&[F, F, F, T]), Decision::Needed(4));
    }

    #[test]
    fn waits_while_the_boundary_is_unknown() {
        assert_eq!(decide(&[P, P, P]), Decision::Pending);
        // 3 connects but 2 is still running: 2 might connect too.
        assert_eq!(decide(&[F, P, T, T]), Decision::Pending);
        assert_eq!(decide(&[P, T, T]), Decision::Pending);
        // Failures alone decide nothing until all are in.
        assert_eq!(decide(&[F, F, P]), Decision::Pending);
    }

    #[test]
    fn all_failed_is_none_connected() {
        assert_eq!(decide(&[F, F, F]), Decision::NoneConnected);
        assert_eq!(decide(&[]), Decision::NoneConnected);
    }

    /// A fake network `needs` routers deep: below it, an attempt gets ICMP at once, or,
    /// when `busy`, no answer within anything shorter than `slow`.
    fn network(
        needs: u8,
        busy: bool,
        slow: Duration,
    ) -> impl Fn(u8, Duration) -> std::future::Ready<Attempt> {
        move |k, timeout| {
            std::future::ready(if busy && timeout < slow {
                Err(AttemptError::TimedOut)
            } else if k >= needs {
                Ok(())
            } else {
                Err(AttemptError::Unreachable("time exceeded".into()))
            })
        }
    }

    #[tokio::test]
    async fn a_busy_machine_that_misses_a_timeout_does_not_raise_the_answer() {
        let t = Duration::from_millis(300);
        // Everything times out at first, as on a machine too busy for 300 ms; the
        // attempts at TTL 25 and up "connect" (a late answer). The second look, with a
        // longer timeout, finds the real boundary.
        let late = |k: u8, timeout: Duration| {
            std::future::ready(if k >= 25 || (timeout > t && k >= 3) {
                Ok(())
            } else if timeout > t {
                Err(AttemptError::Unreachable("time exceeded".into()))
            } else {
                Err(AttemptError::TimedOut)
            })
        };
        assert_eq!(search(64, t, late).await, Ok(3));
        // A quiet network answers at once, and the boundary needs no second look.
        assert_eq!(search(64, t, network(3, false, t)).await, Ok(3));
        // ICMP filtered: below the boundary is silence even with the longer timeout.
        let filtered = |k: u8, _: Duration| {
            std::future::ready(if k >= 4 {
                Ok(())
            } else {
                Err(AttemptError::TimedOut)
            })
        };
        assert_eq!(search(64, t, filtered).await, Ok(4));
        // Nothing ever answers: the timeout is the reason.
        assert_eq!(
            search(16, t, network(99, true, Duration::MAX)).await,
            Err(AttemptError::TimedOut)
        );
    }

    #[test]
    fn non_monotone_results_give_the_lowest_boundary() {
        assert_eq!(decide(&[F, T, F, T]), Decision::Needed(2));
    }

    #[tokio::test]
    async fn loopback_listener_needs_ttl_1() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = hop_limit_needed(addr, 64, Duration::from_secs(2)).await;
        assert_eq!(got, Ok(1));
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        // Bind then drop to get a port that nothing listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = hop_limit_needed(addr, 8, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err, TtlError::Refused { addr, max: 8 });
        assert!(err.to_string().contains("nothing listens"), "{err}");
    }

    #[tokio::test]
    async fn attempt_sets_the_ttl_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = open(addr, 7).unwrap();
        assert_eq!(socket2::SockRef::from(&socket).ttl_v4().unwrap(), 7);
        assert_eq!(attempt(addr, 1, Duration::from_secs(2)).await, Ok(()));
    }

    #[tokio::test]
    async fn ipv6_loopback_uses_the_unicast_hop_limit() {
        // Skipped where the machine has no IPv6 loopback.
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            return;
        };
        let addr = listener.local_addr().unwrap();
        let socket = open(addr, 5).unwrap();
        assert_eq!(
            socket2::SockRef::from(&socket).unicast_hops_v6().unwrap(),
            5
        );
        assert_eq!(
            hop_limit_needed(addr, 16, Duration::from_secs(2)).await,
            Ok(1)
        );
    }
}
