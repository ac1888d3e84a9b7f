//! The model: what each client needs at a topology's leaf.
//!
//! A client at the leaf needs 1 + the routed layers before the first proxied one
//! ([`Topology::min_hop_limit`]); the TTL probe's connect ends at the nearest
//! user-space stack, so it reports 1 + the routed layers after the last proxied one
//! ([`Topology::ttl_probe_hop_limit`]).

use imds_vocab::HopLimit;

use crate::probe::Probe;
use crate::topology::Topology;

/// What the model predicts `client` needs (or, for the TTL probe, reports) at the leaf.
pub fn predicted(topology: &Topology, client: Probe) -> HopLimit {
    match client {
        Probe::Ttl => topology.ttl_probe_hop_limit(),
        Probe::Client(_) => topology.min_hop_limit(),
    }
}
