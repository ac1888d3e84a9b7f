//! How a [`Topology`](crate::topology::Topology) is realised.
//!
//! - [`netns`]: Linux network namespaces, bridges and veths, built with `ip` and
//!   `iptables` (needs root). Fast; the default.
//! - [`docker`]: real containers on the Docker Engine: a simulated EC2 instance with an
//!   engine of its own, `docker run`, `docker build`, an Earthly-shaped BuildKit
//!   container, CNI, docker-in-docker.
//! - [`earthly`]: the real Earthly, running the top-level Earthfile's probe targets on
//!   the machine it runs on (an EC2 build host), where `earthly` is installed.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray, VariantNames};

pub mod docker;
pub mod earthly;
pub mod endpoints;
pub mod netns;

use crate::probe::Leaf;
use crate::topology::Topology;
use imds_mock::MockAws;

/// A realised topology with its mock, as the sweep uses it.
pub trait Site: Sync {
    /// The mock AWS side the topology's instance talks to, at the URLs of [`endpoints`].
    fn mock(&self) -> &MockAws;
    /// Where the clients run.
    fn leaf(&self) -> &dyn Leaf;
    /// A new mock AWS side for one cell of the sweep, serving where [`Site::mock`] does
    /// (reached from the leaf through the same chain) on ports of its own, which its
    /// [`MockAws::endpoints`] name: the cells of a site that makes them probe at the same
    /// time, each with its own hop limit, tokens mode, events and request log. `None`:
    /// the site has its one mock only, and its cells run one after another.
    fn cell_mock(&self) -> Option<Result<MockAws, Box<dyn std::error::Error + Send + Sync>>> {
        None
    }
}

/// A backend as the sweep uses it: each sweep worker realises topologies in a
/// [`Lab::Worker`] of its own.
pub trait Lab: Sync {
    /// What one sweep worker keeps between the topologies it measures (for the docker
    /// backend, a simulated instance with its engine and images).
    type Worker;
    /// Why a worker's state or a topology could not be made.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A new worker's state, in the calling worker's thread.
    fn worker(&self) -> Result<Self::Worker, Self::Error>;

    /// Realises `topology` in `worker`; dropping the site takes it down.
    fn realise<'b>(
        &self,
        worker: &'b mut Self::Worker,
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, Self::Error>;

    /// What a worker sets up for `topology` on first use and keeps for the next topology
    /// that needs it (a nested engine, say): the sweep gives topologies with the same
    /// setup to one worker, so that it is made once. `None`: nothing worth sharing.
    fn shared_setup(&self, _topology: &Topology) -> Option<&'static str> {
        None
    }
}

/// A way of realising topologies, as chosen on the command line (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(VariantArray, VariantNames, IntoStaticStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = BackendError, parse_err_fn = BackendError::new)]
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
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A backend name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}`; valid backends: {names}", names = <Backend as VariantNames>::VARIANTS.join(", "))]
pub struct BackendError(pub String);

impl BackendError {
    fn new(name: &str) -> Self {
        BackendError(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        for &b in <Backend as VariantArray>::VARIANTS {
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
