//! The addresses and names every realisation has.

use std::net::Ipv4Addr;

/// The address of the instance metadata service, held by the mock namespace.
pub(crate) const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The address of a site's `n`th cell mock ([`Site::cell_mock`]), `n` from 0:
/// 169.254.100.1 and up to 169.254.100.250, held by the mock namespace beside
/// [`IMDS_ADDR`] on the host–mock link, so one link away from the host like it. An
/// address of its own, not a port: the Ruby SDK takes the host of
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` but always port 80.
///
/// [`Site::cell_mock`]: crate::backend::Site::cell_mock
pub(super) fn cell_mock_addr(n: u32) -> Option<Ipv4Addr> {
    let last = u8::try_from(n.checked_add(1)?)
        .ok()
        .filter(|last| *last <= 250)?;
    Some(Ipv4Addr::new(169, 254, 100, last))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_mock_addresses_are_on_the_link_and_apart_from_the_others() {
        assert_eq!(cell_mock_addr(0), Some(Ipv4Addr::new(169, 254, 100, 1)));
        assert_eq!(cell_mock_addr(249), Some(Ipv4Addr::new(169, 254, 100, 250)));
        assert_eq!(cell_mock_addr(250), None);
        assert_eq!(cell_mock_addr(u32::MAX), None);
        for n in 0..250 {
            let addr = cell_mock_addr(n).unwrap();
            assert!(addr.is_link_local(), "{addr}");
            assert!(![IMDS_ADDR, HOST_LINK_ADDR, GATEWAY_ADDR].contains(&addr));
        }
    }
}
