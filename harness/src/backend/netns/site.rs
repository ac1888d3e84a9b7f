//! A simulated EC2 instance on the netns backend: a realised topology with the mock AWS
//! side serving inside its mock namespace, at 169.254.169.254 as on EC2; and the lab
//! the sweep uses.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};

use super::error::{io_error, NetnsError};
use super::layout::{cell_mock_addr, IMDS_ADDR, LINK_PREFIX_LEN, UPLINK};
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

    /// [`Self::start`] with the topology's user-space stacks running as `uid`, as rootless
    /// Podman's do (see [`NetnsRealisation::create_with_stack_owner`]).
    pub fn start_with_stack_owner(
        topology: &Topology,
        config: MockConfig,
        uid: u32,
    ) -> Result<NetnsSite, NetnsError> {
        let realisation = NetnsRealisation::create_with_stack_owner(topology, uid)?;
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
    start_mock_at(ns, config, IMDS_ADDR)
}

/// Starts a mock in `ns` at `addr`, on the ports of
/// [`endpoints`](crate::backend::endpoints).
fn start_mock_at(
    ns: &Namespace,
    config: MockConfig,
    addr: Ipv4Addr,
) -> Result<MockAws, NetnsError> {
    let bind_error = || {
        io_error(format!(
            "binding the mock at {addr} in namespace {}",
            ns.name()
        ))
    };
    let at = |port| SocketAddr::V4(SocketAddrV4::new(addr, port));
    let listeners = Listeners {
        imds: ns.bind_tcp(at(IMDS_PORT)).map_err(bind_error())?,
        sts: ns.bind_tcp(at(STS_PORT)).map_err(bind_error())?,
        ec2: ns.bind_tcp(at(EC2_PORT)).map_err(bind_error())?,
    };
    MockAws::start(config, listeners).map_err(bind_error())
}

/// The netns backend for the sweep: every topology gets namespaces of its own, and every
/// cell a mock of its own in them ([`Site::cell_mock`]); clients are this machine's
/// programs.
pub struct NetnsLab {
    /// This machine's programs, run as the clients at each leaf.
    pub tools: Tools,
}

struct NetnsSweepSite {
    site: NetnsSite,
    leaf: NamespaceLeaf,
    /// How many cell mocks it has made.
    cell_mocks: AtomicU32,
}

/// The `made`th mock of a site's cells in the mock namespace `ns`, at [`cell_mock_addr`]`(made)`,
/// given to the namespace's link first unless it has it (a simulated instance of the
/// docker backend keeps its link from one topology to the next, and the mocks of one
/// topology's cells are gone before the next topology's start).
pub(crate) fn start_cell_mock(ns: &Namespace, made: &AtomicU32) -> Result<MockAws, NetnsError> {
    let made = made.fetch_add(1, Ordering::SeqCst);
    let addr = cell_mock_addr(made).ok_or(NetnsError::NoCellMockAddress { made })?;
    ns.ip_batch(&format!(
        "addr replace {addr}/{LINK_PREFIX_LEN} dev {UPLINK}\n"
    ))?;
    start_mock_at(ns, MockConfig::default(), addr)
}

impl Site for NetnsSweepSite {
    fn mock(&self) -> &MockAws {
        self.site.mock()
    }

    fn leaf(&self) -> &dyn Leaf {
        &self.leaf
    }

    /// Another mock in the mock namespace, on an address of its own on the host–mock
    /// link ([`cell_mock_addr`]): the host reaches it on-link as it reaches
    /// [`IMDS_ADDR`], and every layer routes, masquerades or proxies to it alike.
    fn cell_mock(&self) -> Option<Result<MockAws, Box<dyn std::error::Error + Send + Sync>>> {
        Some(start_cell_mock(self.site.realisation.mock_ns(), &self.cell_mocks).map_err(Into::into))
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
        Ok(Box::new(NetnsSweepSite {
            site,
            leaf,
            cell_mocks: AtomicU32::new(0),
        }))
    }
}
