//! How a [`Topology`](crate::topology::Topology) is realised.
//!
//! - [`netns`]: Linux network namespaces, bridges and veths, built with `ip` and
//!   `iptables` (needs root). Fast; the default.
//! - [`docker`]: real containers on the Docker Engine: a simulated EC2 instance with an
//!   engine of its own, `docker run`, `docker build`, an Earthly-shaped BuildKit
//!   container, CNI, docker-in-docker.
//! - [`earthly`]: the real Earthly, running the top-level Earthfile's probe targets on
//!   the machine it runs on (an EC2 build host), where `earthly` is installed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod docker;
pub mod earthly;
pub mod endpoints;
pub mod netns;

use crate::probe::Leaf;
use crate::topology::Topology;
use imds_mock::MockAws;

/// A realised topology with its mock, as the sweep uses it.
pub trait Site {
    /// The mock AWS side the topology's instance talks to.
    fn mock(&self) -> &MockAws;
    /// Where the clients run.
    fn leaf(&self) -> &dyn Leaf;
}

/// A backend as the sweep uses it: it realises topologies on benches.
pub trait Lab: Sync {
    /// What one sweep worker keeps between the topologies it measures (for the docker
    /// backend, a simulated instance with its engine and images).
    type Bench;
    /// Why a bench or a topology could not be made.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A new bench, in the calling worker's thread.
    fn bench(&self) -> Result<Self::Bench, Self::Error>;

    /// Realises `topology` on `bench`; dropping the site takes it down.
    fn realise<'b>(
        &self,
        bench: &'b mut Self::Bench,
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, Self::Error>;

    /// What a bench sets up for `topology` on first use and keeps for the next topology
    /// that needs it (a nested engine, say): the sweep gives topologies with the same
    /// setup to one worker, so that it is made once. `None`: nothing worth sharing.
    fn shared_setup(&self, _topology: &Topology) -> Option<&'static str> {
        None
    }
}

/// A way of realising topologies, as chosen on the command line (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Linux network namespaces ([`netns`]).
    #[default]
    Netns,
    /// Docker containers ([`docker`]).
    Docker,
    /// The real Earthly on this machine ([`earthly`]).
    Earthly,
}

impl Backend {
    /// All backends, in the order they are listed.
    pub const ALL: [Backend; 3] = [Backend::Netns, Backend::Docker, Backend::Earthly];

    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Netns => "netns",
            Backend::Docker => "docker",
            Backend::Earthly => "earthly",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}`; valid backends: netns, docker, earthly")]
pub struct BackendError(pub String);

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| BackendError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        for b in Backend::ALL {
            assert_eq!(b.to_string().parse::<Backend>().unwrap(), b);
            assert_eq!(
                serde_json::to_string(&b).unwrap(),
                format!("\"{}\"", b.name())
            );
        }
        assert_eq!(Backend::default(), Backend::Netns);
        let err = "podman".parse::<Backend>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown backend `podman`; valid backends: netns, docker, earthly"
        );
    }
}
