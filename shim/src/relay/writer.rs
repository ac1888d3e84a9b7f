//! The state file's writer: one thread of its own (file writes and syncs never run on the async
//! workers) that takes the changes queued while it was writing and makes them durable together,
//! in one append and one sync. A change is acknowledged only once it is durable; a change that
//! could not be written is undone in memory before it is acknowledged as failed, so that
//! nothing is in force that a restart would forget.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::grants::{self, GrantRecord, Grants};
use super::state::{self, Change, StateFile};

/// The most changes written in one batch.
const MAX_BATCH: usize = 4096;

/// How to take a change back from memory when it could not be written.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Forget the grant: it was never given.
    Forget(String),
    /// Un-revoke the grant: this revoke was the one that revoked it.
    Unrevoke(String),
    /// Nothing (the grant was revoked before).
    Nothing,
}

struct Job {
    change: Change,
    undo: Undo,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle of the writer thread: where changes are sent.
#[derive(Debug)]
pub struct StateWriter {
    jobs: mpsc::Sender<Job>,
}

impl StateWriter {
    /// Starts the writer of `file`, which holds `records`; `grants` is where failed changes are
    /// undone.
    pub fn start(
        file: StateFile,
        records: &[GrantRecord],
        grants: Arc<Mutex<Grants>>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let durable: HashMap<String, GrantRecord> =
            records.iter().map(|r| (r.id.clone(), r.clone())).collect();
        std::thread::Builder::new()
            .name("imdsh-relay-state".into())
            .spawn(move || write_forever(&queue, file, durable, &grants))?;
        Ok(Self { jobs })
    }

    /// Makes `change` durable; `undo` takes it back from memory if it cannot be.
    pub async fn commit(&self, change: Change, undo: Undo) -> Result<(), String> {
        let (done, acked) = oneshot::channel();
        self.jobs
            .send(Job { change, undo, done })
            .map_err(|_| "the state file's writer has stopped".to_owned())?;
        acked
            .await
            .map_err(|_| "the state file's writer has stopped".to_owned())?
    }
}

fn write_forever(
    queue: &mpsc::Receiver<Job>,
    mut file: StateFile,
    mut durable: HashMap<String, GrantRecord>,
    grants: &Mutex<Grants>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let changes: Vec<Change> = batch.iter().map(|j| j.change.clone()).collect();
        let written = write(&mut file, &mut durable, changes);
        if written.is_err() {
            let mut grants = grants.lock();
            for job in &batch {
                match &job.undo {
                    Undo::Forget(id) => grants.forget(id),
                    Undo::Unrevoke(id) => grants.unrevoke(id),
                    Undo::Nothing => {}
                }
            }
        }
        for job in batch {
            let _ = job.done.send(written.clone());
        }
    }
}

/// Writes `changes` (appended; or the whole file when the last write failed) and applies
/// them to `durable`, the file's content; compacts the file when it has grown.
fn write(
    file: &mut StateFile,
    durable: &mut HashMap<String, GrantRecord>,
    changes: Vec<Change>,
) -> Result<(), String> {
    let appended = file.append(&changes);
    if appended.is_err() {
        // After a failed write the file's end is unknown: write it whole, once, with these
        // changes; if that fails too, they fail.
        let mut next = durable.clone();
        for change in changes {
            let _ = state::apply(&mut next, change);
        }
        file.rewrite(next.values()).map_err(|e| e.to_string())?;
        *durable = next;
        return Ok(());
    }
    for change in changes {
        let _ = state::apply(durable, change);
    }
    if file.wants_compaction(durable.len()) {
        let keep: Vec<GrantRecord> = grants::remembered(durable.values(), SystemTime::now())
            .cloned()
            .collect();
        durable.clear();
        durable.extend(keep.into_iter().map(|r| (r.id.clone(), r)));
        // The changes are durable already: a failed compaction only means the next write
        // rewrites the file whole.
        let _ = file.rewrite(durable.values());
    }
    Ok(())
}
