//! Which connections a server keeps: at most [`MAX_OPEN`] in all and [`MAX_PER_PEER`]
//! from one address. A newcomer over a cap takes the place of the connection that has
//! been idle the longest (oldest first), so sockets held open and silent cannot keep a
//! real client out; only when every connection is answering is it refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Connections a server holds at most.
pub(crate) const MAX_OPEN: usize = 512;
/// Connections a server holds at most from one address: more than a load generator's 64
/// and an SDK's connection pool, a quarter of [`MAX_OPEN`].
pub(crate) const MAX_PER_PEER: usize = 128;

/// The connections one server holds.
#[derive(Debug)]
pub(crate) struct Admission {
    max_open: usize,
    max_per_peer: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Ticks at every admission and every time a connection turns idle: the order in
    /// which connections turned idle.
    clock: u64,
    next_id: u64,
    open: HashMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    peer: IpAddr,
    /// When the connection last turned idle (on the table's clock); `None` while it is
    /// answering a request.
    idle_since: Option<u64>,
    close: Arc<Notify>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every one of the server's connections is answering a request.
    AllBusy,
    /// Every connection from this address is answering a request.
    PeerBusy,
}

/// What an admission did besides admitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Admitted {
    /// Idle connections closed to make room.
    pub(crate) closed_idle: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(MAX_OPEN, MAX_PER_PEER)
    }
}

impl Admission {
    pub(crate) fn new(max_open: usize, max_per_peer: usize) -> Self {
        Admission {
            max_open,
            max_per_peer,
            table: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing in the table can be left half-changed by a panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `peer`, closing the longest idle connection (of that peer
    /// when the peer is at its cap) to make room; the ticket holds its place until
    /// dropped. The connection counts as idle until [`Ticket::busy`].
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Ticket, Admitted), Refusal> {
        let peer = peer.to_canonical();
        let mut table = self.lock();
        let mut admitted = Admitted::default();
        if table.open.values().filter(|s| s.peer == peer).count() >= self.max_per_peer {
            table
                .close_longest_idle(|s| s.peer == peer)
                .ok_or(Refusal::PeerBusy)?;
            admitted.closed_idle += 1;
        }
        if table.open.len() >= self.max_open {
            table.close_longest_idle(|_| true).ok_or(Refusal::AllBusy)?;
            admitted.closed_idle += 1;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.clock += 1;
        let close = Arc::new(Notify::new());
        let slot = Slot {
            peer,
            idle_since: Some(table.clock),
            close: close.clone(),
        };
        table.open.insert(id, slot);
        let ticket = Ticket {
            admission: self.clone(),
            id,
            close,
        };
        Ok((ticket, admitted))
    }

    /// How many connections are admitted and not closed now.
    pub(crate) fn open(&self) -> usize {
        self.lock().open.len()
    }
}

impl Table {
    /// Closes the connection matching `which` that turned idle first; `None` when every
    /// one that matches is busy.
    fn close_longest_idle(&mut self, which: impl Fn(&Slot) -> bool) -> Option<()> {
        let (&id, _) = self
            .open
            .iter()
            .filter(|(_, slot)| which(slot))
            .filter_map(|(id, slot)| slot.idle_since.map(|since| (id, since)))
            .min_by_key(|&(_, since)| since)?;
        let slot = self.open.remove(&id)?;
        slot.close.notify_one();
        Some(())
    }
}

/// A connection's place in its server's [`Admission`].
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    close: Arc<Notify>,
}

impl Ticket {
    /// The connection is answering a request: it is not closed to make room.
    pub(crate) fn busy(&self) {
        if let Some(slot) = self.admission.lock().open.get_mut(&self.id) {
            slot.idle_since = None;
        }
    }

    /// The connection has answered and waits (for the next request, or a slow client):
    /// it may be closed to make room, after those idle longer.
    pub(crate) fn idle(&self) {
        let mut table = self.admission.lock();
        table.clock += 1;
        let now = table.clock;
        if let Some(slot) = table.open.get_mut(&self.id) {
            slot.idle_since = Some(now);
        }
    }

    /// Resolves when the connection was closed to make room for another.
    pub(crate) async fn closed(&self) {
        self.close.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    async fn was_closed(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(1), ticket.closed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_newcomer_over_the_peer_cap_closes_that_peers_longest_idle() {
        let admission = Arc::new(Admission::new(10, 3));
        let (other, _) = admission.admit(B).unwrap();
        let (first, _) = admission.admit(A).unwrap();
        let (second, _) = admission.admit(A).unwrap();
        let (third, _) = admission.admit(A).unwrap();
        // The first turns idle again after answering: the second is now idle longest.
        first.busy();
        first.idle();
        let (_fourth, admitted) = admission.admit(A).unwrap();
        assert_eq!(admitted.closed_idle, 1);
        assert!(was_closed(&second).await);
        assert!(!was_closed(&first).await);
        assert!(!was_closed(&third).await);
        assert!(!was_closed(&other).await, "another peer's connection stays");
        assert_eq!(admission.open(), 4);
    }

    #[tokio::test]
    async fn busy_connections_are_never_closed_and_a_full_busy_peer_is_refused() {
        let admission = Arc::new(Admission::new(10, 2));
        let (one, _) = admission.admit(A).unwrap();
        let (two, _) = admission.admit(A).unwrap();
        one.busy();
        two.busy();
        assert_eq!(admission.admit(A).unwrap_err(), Refusal::PeerBusy);
        assert!(!was_closed(&one).await && !was_closed(&two).await);
        // Another address still gets in.
        assert!(admission.admit(B).is_ok());
        two.idle();
        let (_three, admitted) = admission.admit(A).unwrap();
        assert_eq!(admitted.closed_idle, 1);
        assert!(was_closed(&two).await);
        assert!(!was_closed(&one).await);
    }

    #[tokio::test]
    async fn the_overall_cap_closes_the_longest_idle_of_any_peer() {
        let admission = Arc::new(Admission::new(3, 3));
        let (a, _) = admission.admit(A).unwrap();
        let (b, _) = admission.admit(B).unwrap();
        let (c, _) = admission.admit(B).unwrap();
        a.busy();
        let (_d, admitted) = admission.admit(B).unwrap();
        assert_eq!(admitted.closed_idle, 1);
        assert!(was_closed(&b).await);
        assert!(!was_closed(&c).await && !was_closed(&a).await);
        c.busy();
        let (_e, admitted) = admission.admit(A).expect("d is idle");
        assert_eq!(admitted.closed_idle, 1);
        assert_eq!(admission.open(), 3);
    }

    #[tokio::test]
    async fn all_busy_is_refused_and_a_dropped_ticket_frees_its_place() {
        let admission = Arc::new(Admission::new(2, 2));
        let (one, _) = admission.admit(A).unwrap();
        let (two, _) = admission.admit(B).unwrap();
        one.busy();
        two.busy();
        assert_eq!(admission.admit(A).unwrap_err(), Refusal::AllBusy);
        drop(two);
        assert_eq!(admission.open(), 1);
        assert!(admission.admit(A).is_ok());
    }

    #[tokio::test]
    async fn a_v4_mapped_peer_counts_as_its_ipv4_address() {
        let admission = Arc::new(Admission::new(10, 1));
        let (v4, _) = admission.admit(A).unwrap();
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let (_m, admitted) = admission.admit(mapped).unwrap();
        assert_eq!(admitted.closed_idle, 1);
        assert!(was_closed(&v4).await);
    }
}
