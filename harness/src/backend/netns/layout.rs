//! The addresses and names every realisation has.

use std::net::Ipv4Addr;

/// The address of the instance metadata service, held by the mock namespace.
pub(crate) const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The host namespace's address on the link to the mock (the link is 169.254.0.0/16).
pub(crate) const HOST_LINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// The host's default gateway, held by the mock's namespace, which refuses to forward
/// anything: an EC2 host has a default route (pasta copies it), and this one leads
/// nowhere.
pub(crate) const GATEWAY_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 254);

/// The prefix length of the host–mock link.
pub(super) const LINK_PREFIX_LEN: u8 = 16;

/// Where `ip netns` keeps its namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// The name of every namespace's uplink (towards the host, or the mock's towards the
/// host).
pub(super) const UPLINK: &str = "eth0";
