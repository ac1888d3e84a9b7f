//! One run's lifecycle, the same for every backend.
//!
//! - **Run id.** Every namespace, container and volume a process makes carries its run
//!   id (6 hex digits) in its name (`imdsh-<run>-...`) or label. The run is alive while
//!   its process holds the abstract Unix socket `@imdsh-run-<run>`, so `imds-harness
//!   cleanup` can tell what a killed run left from what a live run still uses.
//! - **Registries.** Each backend keeps a [`Registry`] of what it made and has not
//!   removed yet. Ctrl-C or SIGTERM calls [`shut_down`]: from then on no registry
//!   registers anything (a creation fails with [`ShuttingDown`]), and each backend
//!   removes what its registry holds.

use std::collections::BTreeSet;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The common prefix of every namespace and container name the harness makes.
pub(crate) const NAME_PREFIX: &str = "imdsh-";

/// This run's id and the socket that shows the run is alive.
static RUN: Mutex<Option<(String, UnixListener)>> = Mutex::new(None);
/// Set by [`shut_down`].
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The run is shutting down (Ctrl-C or SIGTERM): nothing new is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run is shutting down (interrupted): nothing new is made")]
pub struct ShuttingDown;

/// This run's liveness socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding this run's liveness socket @{NAME_PREFIX}run-<id>: {0}")]
pub struct RunIdError(#[source] io::Error);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The abstract Unix socket a run holds while it is alive. Abstract sockets belong to
/// the network namespace they are bound in: the root one, where the CLI runs.
fn bind_run_token(run: &str) -> io::Result<UnixListener> {
    let addr = UnixSocketAddr::from_abstract_name(format!("{NAME_PREFIX}run-{run}"))?;
    UnixListener::bind_addr(&addr)
}

/// Whether the run `run` is still going (in this or another process).
pub fn run_is_alive(run: &str) -> bool {
    // If the name can be bound, nobody holds it; the probe socket is closed at once.
    bind_run_token(run).is_err()
}

/// This process's run id, taken (and its liveness socket bound) on first use.
pub fn run_id() -> Result<String, RunIdError> {
    let mut run = lock(&RUN);
    if let Some((id, _)) = run.as_ref() {
        return Ok(id.clone());
    }
    let mut last = None;
    for _ in 0..16 {
        let id = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
        match bind_run_token(&id) {
            Ok(socket) => {
                *run = Some((id.clone(), socket));
                return Ok(id);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(RunIdError(
        last.unwrap_or_else(|| io::Error::other("no attempt")),
    ))
}

/// This process's run id, if it has taken one.
pub fn current_run_id() -> Option<String> {
    lock(&RUN).as_ref().map(|(id, _)| id.clone())
}

/// The run id in a name made by this module's convention (`imdsh-<run>-...`).
pub(crate) fn run_of(name: &str) -> Option<&str> {
    name.strip_prefix(NAME_PREFIX)?
        .split('-')
        .next()
        .filter(|run| !run.is_empty())
}

/// Stops every registry from registering anything; afterwards each backend removes
/// what its registry holds ([`Registry::drain`]).
pub fn shut_down() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

/// What one backend made in this process and has not removed yet, by name.
#[derive(Debug)]
pub struct Registry {
    live: Mutex<BTreeSet<String>>,
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Registry {
        Registry {
            live: Mutex::new(BTreeSet::new()),
        }
    }

    /// Registers `name`, then runs `make` (which makes it) under the registry's lock, so
    /// that a shutdown either sees `name` or makes this fail first. What `make` leaves
    /// half made stays registered: the owner removes it, or the shutdown does.
    pub fn create<T, E: From<ShuttingDown>>(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut live = lock(&self.live);
        if SHUTTING_DOWN.load(Ordering::SeqCst) {
            return Err(ShuttingDown.into());
        }
        live.insert(name.to_owned());
        make()
    }

    /// Takes `name` out, and runs `remove` under the lock if it was still there (it is
    /// not when the shutdown took it first, and is removing it).
    pub(crate) fn release<R>(&self, name: &str, remove: impl FnOnce() -> R) -> Option<R> {
        let mut live = lock(&self.live);
        live.remove(name).then(remove)
    }

    /// Everything still registered, taken out for removal after [`shut_down`].
    pub(crate) fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.live)).into_iter().collect()
    }

    /// The names registered now.
    pub fn names(&self) -> Vec<String> {
        lock(&self.live).iter().cloned().collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// An exclusive flock(2) on `path` (made if missing), held until the file returned is
/// dropped; waits for whoever holds it, in this process (each call opens the file anew:
/// flock(2) locks an open file) or another. A process that dies holds nothing.
pub(crate) fn lock_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_names_that_live_with_the_process() {
        let id = run_id().unwrap();
        assert_eq!(id.len(), 6);
        assert_eq!(run_id().unwrap(), id);
        assert!(run_is_alive(&id));
        assert!(!run_is_alive("zzzzzz"));
        assert_eq!(run_of(&format!("{NAME_PREFIX}{id}-3-h")), Some(id.as_str()));
        assert_eq!(run_of("imdsh--x"), None);
        assert_eq!(run_of("other-abc"), None);
    }

    #[test]
    fn a_released_name_is_removed_once_and_drained_names_are_not_removed_again() {
        let registry = Registry::new();
        registry.create("a", || Ok::<_, ShuttingDown>(())).unwrap();
        registry.create("b", || Ok::<_, ShuttingDown>(())).unwrap();
        assert_eq!(registry.release("a", || 1), Some(1));
        assert_eq!(registry.release("a", || 1), None);
        assert_eq!(registry.drain(), ["b"]);
        assert_eq!(registry.release("b", || 1), None);
        assert!(registry.names().is_empty());
    }

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let first = lock_file(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let path = path.clone();
            move || {
                let lock = lock_file(&path).unwrap();
                tx.send(()).unwrap();
                lock
            }
        });
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "the second took the lock the first holds"
        );
        drop(first);
        rx.recv().unwrap();
        drop(second.join().unwrap());
    }
}
