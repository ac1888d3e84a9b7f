//! Which connections the relay keeps: every connection is accepted at once (no slot is taken
//! before `accept`), then admitted by [`Admission::admit`] under two caps, one per client
//! address and one in all. When a cap is reached, the oldest idle connection (accepted, no
//! request being answered) is closed to make room, from the same client first; a connection is
//! refused only when every connection within the cap is answering a request. Idle sockets and
//! floods of refused requests therefore cost their sender its own connections, and a granted
//! request, which is answered within a millisecond of its head, is never the oldest idle one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections at once, in all.
    pub total: usize,
    /// Connections at once from one client address.
    pub per_client: usize,
}

/// The connections being served.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// By age: the smallest id is the oldest.
    conns: BTreeMap<u64, Entry>,
    by_client: HashMap<IpAddr, BTreeSet<u64>>,
}

#[derive(Debug)]
struct Entry {
    client: IpAddr,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    busy: AtomicBool,
    close: Notify,
}

/// An admitted connection: its place is given back when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    id: u64,
    state: Arc<State>,
}

/// A connection that was not admitted: every connection within its cap is answering a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Whose cap: the client's own, or the one in all.
    pub per_client: bool,
}

impl Admission {
    /// No connection yet.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            caps: Caps {
                total: caps.total.max(1),
                per_client: caps.per_client.max(1),
            },
            table: Mutex::new(Table::default()),
        })
    }

    /// Admits a new connection from `client`, closing the oldest idle ones to make room.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Full> {
        let mut table = self.table();
        let mine = table.by_client.get(&client).map_or(0, BTreeSet::len);
        if mine >= self.caps.per_client {
            let oldest = table
                .oldest_idle(Some(client))
                .ok_or(Full { per_client: true })?;
            table.evict(oldest);
        }
        if table.conns.len() >= self.caps.total {
            let oldest = table.oldest_idle(None).ok_or(Full { per_client: false })?;
            table.evict(oldest);
        }
        let id = table.next;
        table.next += 1;
        let state = Arc::new(State::default());
        table.conns.insert(
            id,
            Entry {
                client,
                state: state.clone(),
            },
        );
        table.by_client.entry(client).or_default().insert(id);
        Ok(Admitted {
            admission: self.clone(),
            id,
            state,
        })
    }

    /// Connections admitted and not yet closed.
    pub fn len(&self) -> usize {
        self.table().conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding it; were it poisoned, the table is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    fn oldest_idle(&self, client: Option<IpAddr>) -> Option<u64> {
        let idle = |id: &u64| {
            self.conns
                .get(id)
                .is_some_and(|e| !e.state.busy.load(Ordering::Acquire))
        };
        match client {
            Some(client) => self.by_client.get(&client)?.iter().copied().find(idle),
            None => self.conns.keys().copied().find(idle),
        }
    }

    /// Takes the connection out of the table and tells it to close.
    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.remove(id) {
            entry.state.close.notify_one();
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.conns.remove(&id)?;
        if let Some(ids) = self.by_client.get_mut(&entry.client) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_client.remove(&entry.client);
            }
        }
        Some(entry)
    }
}

impl Admitted {
    /// Resolves when the connection was closed to make room for another.
    pub async fn evicted(&self) {
        self.state.close.notified().await;
    }

    /// Marks the connection as answering a request (not closed to make room) until the guard
    /// is dropped.
    pub fn busy(&self) -> Busy {
        self.state.busy.store(true, Ordering::Release);
        Busy(self.state.clone())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.table().remove(self.id);
    }
}

/// A request being answered; see [`Admitted::busy`].
#[derive(Debug)]
pub struct Busy(Arc<State>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn a_client_at_its_cap_loses_its_oldest_idle_connection_not_others() {
        let admission = Admission::new(Caps {
            total: 4,
            per_client: 2,
        });
        let a1 = admission.admit(ip(1)).unwrap();
        let a2 = admission.admit(ip(1)).unwrap();
        let b1 = admission.admit(ip(2)).unwrap();
        // A third from client 1 closes its oldest, a1.
        let a3 = admission.admit(ip(1)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), a1.evicted())
            .await
            .unwrap();
        drop(a1);
        assert_eq!(admission.len(), 3);
        // Busy connections are kept: with both of client 1's busy, a new one is refused.
        let _busy = (a2.busy(), a3.busy());
        assert_eq!(
            admission.admit(ip(1)).unwrap_err(),
            Full { per_client: true }
        );
        // Client 2 is not affected.
        let b2 = admission.admit(ip(2)).unwrap();
        // Full in all: the oldest idle one (b1) goes, not a busy one.
        let c1 = admission.admit(ip(3)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), b1.evicted())
            .await
            .unwrap();
        drop((b1, b2, c1));
        assert_eq!(admission.len(), 2);
    }

    #[test]
    fn when_every_connection_is_busy_a_new_one_is_refused() {
        let admission = Admission::new(Caps {
            total: 1,
            per_client: 1,
        });
        let a = admission.admit(ip(1)).unwrap();
        let busy = a.busy();
        assert_eq!(
            admission.admit(ip(2)).unwrap_err(),
            Full { per_client: false }
        );
        drop(busy);
        assert!(admission.admit(ip(2)).is_ok());
    }
}
