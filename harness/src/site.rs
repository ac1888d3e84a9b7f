//! A simulated EC2 instance on the netns backend: a realised topology with the mock
//! AWS side serving inside its mock namespace, at 169.254.169.254 as on EC2.

use std::net::{SocketAddr, SocketAddrV4};

use crate::backend::netns::{Namespace, NetnsError, NetnsInstance, IMDS_ADDR};
use crate::mock::{Listeners, MockAws, MockConfig};
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
        let ns = instance.mock_ns();
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
        let mock = MockAws::start(config, listeners).map_err(bind_error)?;
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
