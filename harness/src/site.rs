//! A simulated EC2 instance on the netns backend: a realised topology with the mock
//! AWS side serving inside its mock namespace, at 169.254.169.254 as on EC2.

use std::net::{SocketAddr, SocketAddrV4};

use crate::backend::docker::DockerError;
use crate::backend::netns::{Namespace, NetnsError, NetnsInstance, IMDS_ADDR};
use crate::backend::{Lab, Site};
use crate::mock::{Listeners, MockAws, MockConfig};
use crate::probe::{Leaf, NamespaceLeaf, Tools};
use crate::topology::Topology;

/// Ports of the mock's services in the mock namespace. STS and EC2 are reached through
/// the same routing chain as IMDS, but their responses are not TTL-limited.
pub const IMDS_PORT: u16 = 80;
pub const STS_PORT: u16 = 8080;
pub const EC2_PORT: u16 = 8081;

/// The endpoints as a client inside the topology names them.
pub const IMDS_URL: &str = "http://169.254.169.254/";
pub const STS_URL: &str = "http://169.254.169.254:8080/";
pub const EC2_URL: &str = "http://169.254.169.254:8081/";

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("binding the mock in namespace {namespace}: {source}")]
    Bind {
        namespace: String,
        source: std::io::Error,
    },
}

/// A topology with its mock. Dropping it stops the mock, then removes the namespaces.
pub struct NetnsSite {
    mock: MockAws,
    instance: NetnsInstance,
}

impl NetnsSite {
    /// Realises `topology` and starts the mock in it. Must be called in a Tokio runtime.
    pub fn start(topology: &Topology, config: MockConfig) -> Result<NetnsSite, SiteError> {
        let instance = NetnsInstance::create(topology)?;
        let mock = start_mock(instance.mock_ns(), config)?;
        Ok(NetnsSite { mock, instance })
    }

    pub fn mock(&self) -> &MockAws {
        &self.mock
    }

    pub fn topology(&self) -> &Topology {
        self.instance.topology()
    }

    /// Where a build of this topology runs.
    pub fn leaf(&self) -> &Namespace {
        self.instance.leaf_ns()
    }

    /// The EC2 host's own namespace (depth 0).
    pub fn host(&self) -> &Namespace {
        self.instance.host_ns()
    }
}

/// Starts the mock in `ns`, at [`IMDS_ADDR`] on the ports above.
pub fn start_mock(ns: &Namespace, config: MockConfig) -> Result<MockAws, SiteError> {
    let bind_error = |source| SiteError::Bind {
        namespace: ns.name().to_string(),
        source,
    };
    let at = |port| SocketAddr::V4(SocketAddrV4::new(IMDS_ADDR, port));
    let listeners = Listeners {
        imds: ns.bind_tcp(at(IMDS_PORT)).map_err(bind_error)?,
        sts: ns.bind_tcp(at(STS_PORT)).map_err(bind_error)?,
        ec2: ns.bind_tcp(at(EC2_PORT)).map_err(bind_error)?,
    };
    MockAws::start(config, listeners).map_err(bind_error)
}

/// The netns backend for the sweep: every topology gets namespaces and a mock of its
/// own; clients are this machine's programs.
pub struct NetnsLab {
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
    type Bench = ();

    fn bench(&self) -> Result<(), SiteError> {
        Ok(())
    }

    fn realise<'b>(
        &self,
        _bench: &'b mut (),
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, SiteError> {
        let site = NetnsSite::start(topology, MockConfig::default())?;
        let leaf = NamespaceLeaf {
            namespace: site.leaf().clone(),
            tools: self.tools.clone(),
        };
        Ok(Box::new(NetnsSweepSite { site, leaf }))
    }
}
