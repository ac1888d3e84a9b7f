//! Least privilege once the relay has started: when its address is claimed and both sockets are
//! bound, it keeps `CAP_NET_ADMIN` only (to delete its link at exit), in every set: a program it
//! runs (`ip`) gets no more, even as uid 0, and no exec can gain privileges again.
//!
//! Capabilities are per thread: [`keep_net_admin_only`] is called while the relay has one thread,
//! before its runtime starts, so every thread it starts afterwards inherits the reduced sets.

use std::io;

use rustix::thread::{self, CapabilitySet, CapabilitySets};
use thiserror::Error;

/// The capabilities could not be dropped.
#[derive(Debug, Error)]
#[error("could not drop the relay's privileges ({step}): {source}")]
pub struct PrivilegeError {
    step: &'static str,
    #[source]
    source: io::Error,
}

/// What the relay keeps.
pub const KEPT: CapabilitySet = CapabilitySet::NET_ADMIN;

/// Drops every capability but [`KEPT`] from this thread's bounding, permitted, effective and
/// inheritable sets, and sets `no_new_privs`. A process without `CAP_SETPCAP` (not root) has
/// nothing to drop from its bounding set: only its other sets are reduced.
pub fn keep_net_admin_only() -> Result<(), PrivilegeError> {
    let now = thread::capabilities(None).map_err(|e| failed("reading", e))?;
    if now.effective.contains(CapabilitySet::SETPCAP) {
        for cap in CapabilitySet::all().iter().filter(|c| *c != KEPT) {
            match thread::remove_capability_from_bounding_set(cap) {
                // A capability this kernel does not know.
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(failed("the bounding set", e)),
            }
        }
    }
    let kept = now.permitted & KEPT;
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| failed("capset", e))?;
    thread::set_no_new_privs(true).map_err(|e| failed("no_new_privs", e))?;
    Ok(())
}

fn failed(step: &'static str, e: rustix::io::Errno) -> PrivilegeError {
    PrivilegeError {
        step,
        source: e.into(),
    }
}
