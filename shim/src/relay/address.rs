//! Owning the relay's address: 169.254.170.2 (by default) added to a dummy link the relay
//! creates (`imdsh-relay0`; a bridge without ports where the kernel has no dummy driver, as on
//! the machine this was built on), removed again when the relay exits. Containers and build steps reach
//! it through their default route to the host, as they reach the ECS agent on ECS hosts.
//!
//! The relay refuses to start when something already answers on the address and port (the ECS
//! agent does, through iptables), or when another interface already holds the address. A dummy
//! link of the relay's name left by a relay that was killed is replaced.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use thiserror::Error;

/// How long the check that nothing serves the address waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest interface name Linux accepts.
const MAX_LINK_NAME: usize = 15;

/// The address cannot be taken.
#[derive(Debug, Error)]
pub enum AddressError {
    /// Something answers there already.
    #[error("{0} is already served (by the ECS agent, or another relay?): refusing to start; use --listen for another address")]
    Served(SocketAddr),
    /// Another interface holds the address.
    #[error("{ip} is already assigned to interface {link}: refusing to start (remove it, or use --listen for another address)")]
    Assigned {
        /// The address.
        ip: IpAddr,
        /// The interface holding it.
        link: String,
    },
    /// The link name is not usable.
    #[error("{0:?} is not a usable interface name (1..=15 characters, letters, digits, - and _)")]
    BadLinkName(String),
    /// `ip` failed.
    #[error("`ip {args}` failed: {reason} (the relay needs CAP_NET_ADMIN: run it as root)")]
    Ip {
        /// The arguments.
        args: String,
        /// Its stderr, or the spawn error.
        reason: String,
    },
}

/// The address, held on the relay's dummy link until dropped.
#[derive(Debug)]
pub struct OwnedAddress {
    link: String,
    ip: IpAddr,
    kind: &'static str,
}

impl OwnedAddress {
    /// The link holding the address.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The link's type: `dummy`, or `bridge` (with no port) where the kernel has no dummy driver.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl Drop for OwnedAddress {
    fn drop(&mut self) {
        // Deleting the link removes its address.
        let _ = ip(&["link", "del", &self.link]);
    }
}

/// Whether something accepts TCP connections at `addr`.
pub fn is_served(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok()
}

/// Takes `listen`'s address for the relay: nothing may serve it yet; unless it is a loopback
/// address (which needs no link), it is added to a new dummy link named `link`.
pub fn claim(listen: SocketAddr, link: &str) -> Result<Option<OwnedAddress>, AddressError> {
    if link.is_empty()
        || link.len() > MAX_LINK_NAME
        || !link
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AddressError::BadLinkName(link.to_owned()));
    }
    if is_served(listen) {
        return Err(AddressError::Served(listen));
    }
    let addr = listen.ip();
    if addr.is_loopback() {
        return Ok(None);
    }
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let cidr = format!("{addr}/{prefix}");
    if let Some(holder) = holder_of(&cidr)? {
        if holder != link {
            return Err(AddressError::Assigned {
                ip: addr,
                link: holder,
            });
        }
    }
    // A link of this name is a leftover of a relay that was killed: nothing serves it.
    if ip(&["link", "show", "dev", link]).is_ok() {
        ip(&["link", "del", link])?;
    }
    let kind = add_link(link)?;
    let owned = OwnedAddress {
        link: link.to_owned(),
        ip: addr,
        kind,
    };
    ip(&["addr", "add", &cidr, "dev", link])?;
    ip(&["link", "set", link, "up"])?;
    Ok(Some(owned))
}

/// Creates `link`: a dummy link, or where the kernel has no dummy driver, a bridge without
/// ports (it holds an address and forwards nothing, as a dummy link does).
fn add_link(link: &str) -> Result<&'static str, AddressError> {
    match ip(&["link", "add", link, "type", "dummy"]) {
        Ok(_) => Ok("dummy"),
        Err(AddressError::Ip { reason, .. }) if reason.contains("Unknown device type") => {
            ip(&["link", "add", link, "type", "bridge"])?;
            Ok("bridge")
        }
        Err(e) => Err(e),
    }
}

/// The interface holding `cidr`, if any.
fn holder_of(cidr: &str) -> Result<Option<String>, AddressError> {
    let out = ip(&["-o", "addr", "show", "to", cidr])?;
    // `3: imdsh-relay0    inet 169.254.170.2/32 scope global imdsh-relay0 ...`
    Ok(out.lines().find_map(|line| {
        line.split_whitespace()
            .nth(1)
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
    }))
}

fn ip(args: &[&str]) -> Result<String, AddressError> {
    let failed = |reason: String| AddressError::Ip {
        args: args.join(" "),
        reason,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e: io::Error| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_checked_before_anything_is_done() {
        let listen: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for bad in ["", "a-name-far-too-long", "bad name", "x/y"] {
            assert!(matches!(
                claim(listen, bad),
                Err(AddressError::BadLinkName(_))
            ));
        }
    }

    #[test]
    fn a_served_loopback_address_is_refused_and_a_free_one_needs_no_link() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(matches!(
            claim(addr, "imdsh-relay0"),
            Err(AddressError::Served(a)) if a == addr
        ));
        drop(listener);
        assert!(claim(addr, "imdsh-relay0").unwrap().is_none());
    }
}
