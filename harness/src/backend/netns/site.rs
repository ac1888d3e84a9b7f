//! A simulated EC2 instance on the netns backend: a realised topology with the mock AWS
//! side serving inside its mock namespace, at 169.254.169.254 as on EC2; and the lab
//! the sweep uses.

use std::net::{SocketAddr, SocketAddrV4};

use super::error::{io_error, NetnsError};
use super::layout::IMDS_ADDR;
use super::leaf::NamespaceLeaf;
use super::namespace::Namespace;
use super::realisation::NetnsRealisation;
use crate::backend::{Lab, Site};
use crate::probe::{Leaf, Tools};
use crate::topology::Topology;
use imds_mock::{Listeners, MockAws, MockConfig, EC2_PORT, IMDS_PORT, STS_PORT};

/// A topology with its mock. Dropping it stops the mock, then removes the namespaces.
pub struct NetnsSite {
    // Dropped in this order: the mock before its namespace.
    mock: MockAws,
    realisation: NetnsRealisation,
}

impl NetnsSite {
    /// Realises `topology` and starts the mock in it. Must be called in a Tokio runtime.
    pub fn start(topology: &Topology, config: MockConfig) -> Result<NetnsSite, NetnsError> {
        let realisation = NetnsRealisation::create(topology)?;
        let mock = start_mock(realisation.mock_ns(), config)?;
        Ok(NetnsSite { mock, realisation })
    }

    /// The mock AWS side, serving in the topology's mock namespace.
    pub fn mock(&self) -> &MockAws {
        &self.mock
    }

    /// The topology realised.
    pub fn topology(&self) -> &Topology {
        self.realisation.topology()
    }

    /// Where a build of this topology runs.
    pub fn leaf(&self) -> &Namespace {
        self.realisation.leaf_ns()
    }

    /// The EC2 host's own namespace (depth 0).
    pub fn host(&self) -> &Namespace {
        self.realisation.host_ns()
    }
}

/// Starts the mock in `ns`, at [`IMDS_ADDR`] on the ports of
/// [`endpoints`](crate::backend::endpoints).
pub(crate) fn start_mock(ns: &Namespace, config: MockConfig) -> Result<MockAws, NetnsError> {
    let bind_error = || io_error(format!("binding the mock in namespace {}", ns.name()));
    let at = |port| SocketAddr::V4(SocketAddrV4::new(IMDS_ADDR, port));
    let listeners = Listeners {
        imds: ns.bind_tcp(at(IMDS_PORT)).map_err(bind_error())?,
        sts: ns.bind_tcp(at(STS_PORT)).map_err(bind_error())?,
        ec2: ns.bind_tcp(at(EC2_PORT)).map_err(bind_error())?,
    };
    MockAws::start(config, listeners).map_err(bind_error())
}

/// The netns backend for the sweep: every topology gets namespaces and a mock of its
/// own; clients are this machine's programs.
pub struct NetnsLab {
    /// This machine's programs, run as the clients at each leaf.
    pub tools: Tools,
}

struct NetnsSweepSite {
    site: NetnsSite,
    leaf: NamespaceLeaf,
}

impl Site for NetnsSweepSite {
    fn mock(&self) -> &MockAws {
        self.site.mock()
    }

    fn leaf(&self) -> &dyn Leaf {
        &self.leaf
    }
}

impl Lab for NetnsLab {
    type Worker = ();
    type Error = NetnsError;

    fn worker(&self) -> Result<(), NetnsError> {
        Ok(())
    }

    fn realise<'b>(
        &self,
        _worker: &'b mut (),
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, NetnsError> {
        let site = NetnsSite::start(topology, MockConfig::default())?;
        let leaf = NamespaceLeaf {
            namespace: site.leaf().clone(),
            tools: self.tools.clone(),
        };
        Ok(Box::new(NetnsSweepSite { site, leaf }))
    }
}
