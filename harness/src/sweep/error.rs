//! How a sweep ends early: its first error, which every cell sees before its next run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use imds_vocab::HttpTokens;

use crate::probe::{Probe, ProbeError};
use crate::topology::Topology;

/// Why a sweep stopped: the first error ends it, and nothing after it is measured.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The backend could not make a worker or realise a topology.
    #[error("topology {topology}: {source}")]
    Site {
        /// The topology being realised.
        topology: Topology,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A client could not be run at all (as opposed to running and getting no identity).
    #[error("topology {topology}, client {client}: {source}")]
    Probe {
        /// The topology whose leaf the client ran at.
        topology: Topology,
        /// The client that could not be run.
        client: Probe,
        /// Why it could not be run.
        source: ProbeError,
    },
    #[error(
        "topology {topology}, client {client}, tokens {http_tokens}: the mock stopped \
         serving during the measurement, so nothing after it can be trusted"
    )]
    /// The mock stopped serving while a client ran, so the client's result means nothing.
    MockDied {
        /// The topology being measured.
        topology: Topology,
        /// The client that had just run.
        client: Probe,
        /// The tokens mode the mock was set to.
        http_tokens: HttpTokens,
    },
    /// The clients' temporary HOME folder could not be made.
    #[error("a temporary folder for the clients' HOME: {0}")]
    Home(std::io::Error),
}

/// The first error of a sweep, which stops it: every cell sees it before its next run.
#[derive(Default)]
pub(super) struct Stop {
    first: Mutex<Option<SweepError>>,
    stopped: AtomicBool,
}

/// A measurement ended because the sweep stopped; the [`Stop`] says why.
#[derive(Debug)]
pub(super) struct Stopped;

impl Stop {
    /// Stops the sweep with `err`, unless an earlier error stopped it already.
    pub(super) fn fail(&self, err: SweepError) -> Stopped {
        self.first.lock().expect("stop").get_or_insert(err);
        self.stopped.store(true, Ordering::SeqCst);
        Stopped
    }

    /// `Err` once the sweep is stopping.
    pub(super) fn check(&self) -> Result<(), Stopped> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    /// `value`, or the error that stopped the sweep.
    pub(super) fn into_result<T>(self, value: T) -> Result<T, SweepError> {
        match self.first.into_inner().expect("stop") {
            Some(err) => Err(err),
            None => Ok(value),
        }
    }
}
