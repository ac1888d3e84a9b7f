//! What a sweep is asked to measure, and what it reports as it goes.

use std::time::{Duration, Instant};

use imds_vocab::{HopLimit, HttpTokens};

use super::search::Strategy;
use crate::cell::Cell;
use crate::probe::Probe;
use crate::topology::Topology;

/// What to measure.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// The nestings to realise, each measured on its own.
    pub topologies: Vec<Topology>,
    /// The clients to run at each topology's leaf, in any order: the TTL probe runs first
    /// and the CLI last whatever the order given.
    pub clients: Vec<Probe>,
    /// The tokens modes the mock is set to, in turn, for every topology.
    pub modes: Vec<HttpTokens>,
    /// How the hop limits are searched.
    pub strategy: Strategy,
    /// The IMDS timeout the `sdk` and `ttl` probes use. The AWS CLI keeps its own (1 s).
    pub probe_timeout: Duration,
    /// How many topologies are measured at once.
    pub parallel: usize,
}

/// Where a cell is: its topology, client and tokens mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellKey {
    /// The topology whose leaf the client runs at.
    pub topology: Topology,
    /// The client.
    pub client: Probe,
    /// The tokens mode the cell's mock is set to.
    pub http_tokens: HttpTokens,
}

/// What a sweep reports as it goes, from its worker threads.
#[derive(Clone, Copy, Debug)]
pub enum SweepEvent<'a> {
    /// A client starts a run at a hop limit (`None`: the TTL probe, which needs none).
    Probing {
        /// The cell.
        key: CellKey,
        /// The hop limit its mock is set to.
        hop_limit: Option<HopLimit>,
    },
    /// That run ended.
    Probed {
        /// The cell.
        key: CellKey,
        /// The hop limit its mock was set to.
        hop_limit: Option<HopLimit>,
        /// Whether the client got the role's identity.
        ok: bool,
        /// When the run started.
        started: Instant,
        /// How long it took (for a failure, mostly the client's time-out).
        elapsed: Duration,
    },
    /// A cell is settled.
    Settled(&'a Cell),
}
