//! Removing namespaces: this run's on Ctrl-C, those of killed runs on `cleanup`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use super::command::run;
use super::error::{io_error, NetnsError};
use super::layout::NETNS_DIR;
use crate::lifecycle::{self, Registry, NAME_PREFIX};

/// The prefixes of this process's live realisations.
pub(super) static LIVE: Registry = Registry::new();

/// The names in [`NETNS_DIR`] that start with `prefix`.
pub(super) fn list_namespaces(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("listing {NETNS_DIR}"))(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!("listing {NETNS_DIR}")))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes those of `names` that exist, in one `ip` process; returns them.
pub(super) fn delete_namespaces(names: &[String]) -> Result<Vec<String>, NetnsError> {
    let existing: Vec<String> = names
        .iter()
        .filter(|name| name.starts_with(NAME_PREFIX) && Path::new(NETNS_DIR).join(name).exists())
        .cloned()
        .collect();
    if existing.is_empty() {
        return Ok(existing);
    }
    let script = existing.iter().fold(String::new(), |mut script, name| {
        let _ = writeln!(script, "netns del {name}");
        script
    });
    run(&["ip", "-force", "-batch", "-"], Some(&script))?;
    Ok(existing)
}

/// Deletes every namespace of the realisation with this prefix (`<prefix>-*`).
fn delete_prefix(prefix: &str) -> Result<Vec<String>, NetnsError> {
    delete_namespaces(&list_namespaces(&format!("{prefix}-"))?)
}

/// Removes the namespaces of every live realisation of this process, for the CLI's
/// Ctrl-C handler, after [`lifecycle::shut_down`] (so that nothing new is made).
/// Returns the names removed; errors are logged.
pub fn remove_all_live() -> Vec<String> {
    let mut removed = Vec::new();
    for prefix in LIVE.drain() {
        match delete_prefix(&prefix) {
            Ok(names) => removed.extend(names),
            Err(e) => tracing::warn!(%prefix, "removing namespaces: {e}"),
        }
    }
    // Then whatever else carries this run's id (a realisation's `ip` still finishing
    // when the signal came), until none is left or a few tries have passed.
    if let Some(run) = lifecycle::current_run_id() {
        let mine = format!("{NAME_PREFIX}{run}-");
        for attempt in 0..5 {
            match list_namespaces(&mine).and_then(|left| delete_namespaces(&left)) {
                Ok(names) if names.is_empty() => break,
                Ok(names) => removed.extend(names),
                Err(e) => tracing::warn!(run, "removing namespaces: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
        }
    }
    removed
}

/// What [`cleanup_stale`] took away.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The names of the namespaces deleted.
    pub namespaces: Vec<String>,
    /// The command lines of the user-space stacks (slirp4netns, pasta) killed.
    pub stacks: Vec<String>,
}

/// Deletes every namespace named `imdsh-*` whose run is no longer alive (left by a
/// killed run), for `imds-harness cleanup`, after killing the user-space stacks that
/// serve them. Namespaces and stacks of runs that are still going (in this or another
/// process) are left alone.
pub fn cleanup_stale() -> Result<Reaped, NetnsError> {
    let stacks = super::user_stack::kill_stale(|run| !lifecycle::run_is_alive(run));
    if !stacks.is_empty() {
        tracing::info!(
            count = stacks.len(),
            ?stacks,
            "killed the user-space stacks of dead runs"
        );
    }
    let mut alive: HashMap<String, bool> = HashMap::new();
    let stale: Vec<String> = list_namespaces(NAME_PREFIX)?
        .into_iter()
        .filter(|name| match lifecycle::run_of(name) {
            None => true,
            Some(run) => !*alive
                .entry(run.to_owned())
                .or_insert_with(|| lifecycle::run_is_alive(run)),
        })
        .collect();
    let namespaces = delete_namespaces(&stale)?;
    if !namespaces.is_empty() {
        tracing::info!(count = namespaces.len(), "removed stale namespaces");
    }
    Ok(Reaped { namespaces, stacks })
}
