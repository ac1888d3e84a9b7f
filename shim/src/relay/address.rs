//! Owning the relay's address: 169.254.170.2 (by default) added to a link the relay creates
//! (a dummy link; a bridge without ports where the kernel has no dummy driver, as on the machine
//! this was built on), removed again when the relay exits. Containers and build steps reach it
//! through their default route to the host, as they reach the ECS agent on ECS hosts.
//!
//! - Only the addresses SDKs accept over plain http are served ([`check_listen`]).
//! - Each address has a link name of its own by default ([`default_link`]), so two relays on
//!   two addresses run side by side.
//! - The relay marks the link it creates as its own (its alias names the relay's pid and
//!   address); it removes only a link that carries its mark, replaces one left by a relay that
//!   is gone, and refuses a link of a live relay or one no relay created.
//! - Whether the address is taken is read from this host's own tables (addresses and listening
//!   sockets), never by a connection: on a real host a connection to an address nothing holds
//!   leaves by the default route.
//! - `ip` is run by absolute path, never found through `PATH`.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use thiserror::Error;

/// The longest interface name Linux accepts.
const MAX_LINK_NAME: usize = 15;
/// Where `ip` (iproute2) is looked for, in this order; `PATH` is never used.
const IP_PATHS: [&str; 4] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];
/// The start of the alias that marks a link as a relay's: `imds-shim relay pid=<pid> <ip>`.
const MARK: &str = "imds-shim relay pid=";
/// The ECS agent's credentials port on loopback, to which it forwards 169.254.170.2:80.
const ECS_AGENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 51679);

/// The ECS (and default) container credentials address.
const ECS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The EKS Pod Identity address.
const EKS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
/// The EKS Pod Identity address over IPv6, `fd00:ec2::23`.
const EKS_ADDRESS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);

/// The address cannot be taken.
#[derive(Debug, Error)]
pub enum AddressError {
    /// Something answers there already.
    #[error(
        "{addr} is already served ({by}): refusing to start; use --listen for another address"
    )]
    Served {
        /// The address.
        addr: SocketAddr,
        /// What the tables show.
        by: String,
    },
    /// Another interface holds the address.
    #[error("{ip} is already assigned to interface {link}: refusing to start (remove it, or use --listen for another address)")]
    Assigned {
        /// The address.
        ip: IpAddr,
        /// The interface holding it.
        link: String,
    },
    /// The link belongs to a relay that is running.
    #[error("link {link} belongs to a running relay (pid {pid}): refusing to take it; use --link for another name")]
    HeldByRelay {
        /// The link.
        link: String,
        /// The relay's pid.
        pid: u32,
    },
    /// The link exists and no relay created it.
    #[error("link {link} exists and was not created by a relay: refusing to delete it (remove it yourself, or use --link for another name)")]
    NotOurs {
        /// The link.
        link: String,
    },
    /// The link name is not usable.
    #[error("{0:?} is not a usable interface name (1..=15 characters, letters, digits, - and _)")]
    BadLinkName(String),
    /// No `ip` where it is looked for.
    #[error("iproute2's `ip` is not at any of {IP_PATHS:?}: install iproute2")]
    NoIp,
    /// `ip` failed.
    #[error("`ip {args}` failed: {reason} (the relay needs CAP_NET_ADMIN: run it as root)")]
    Ip {
        /// The arguments.
        args: String,
        /// Its stderr, or the spawn error.
        reason: String,
    },
    /// A table of this host could not be read.
    #[error("cannot read {what}: {reason}")]
    Table {
        /// The table.
        what: String,
        /// Why.
        reason: String,
    },
}

/// `--listen` is not an address SDKs fetch container credentials from over plain http.
#[derive(Debug, Error)]
#[error(
    "{0} is not an address AWS SDKs fetch container credentials from over http: they accept \
     169.254.170.2 (ECS), 169.254.170.23 and [fd00:ec2::23] (EKS Pod Identity) and loopback \
     addresses only (e.g. --listen 169.254.170.2:80, --listen 127.0.0.1:8080)"
)]
pub struct ListenError(pub SocketAddr);

/// Connections the kernel completes and keeps for the relay before it accepts them (the
/// kernel caps it at `net.core.somaxconn`, 4096 by default). Rust's standard listener asks
/// for 128: a neighbour cycling a thousand connections (each closed at once over its cap,
/// then reopened) kept that queue full, and a build's connection attempt was dropped and
/// retried after a second, past an SDK's 1 s time-out.
const BACKLOG: i32 = 4096;

/// A TCP listener on `addr` (`SO_REUSEADDR`, as the standard library sets it) with a
/// backlog of [`BACKLOG`].
pub fn listen_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Checks that SDKs would accept `listen` in `AWS_CONTAINER_CREDENTIALS_FULL_URI` over http.
pub fn check_listen(listen: SocketAddr) -> Result<SocketAddr, ListenError> {
    let accepted = match listen.ip() {
        IpAddr::V4(ip) => ip == ECS_ADDRESS || ip == EKS_ADDRESS || ip.is_loopback(),
        IpAddr::V6(ip) => ip == EKS_ADDRESS_V6 || ip.is_loopback(),
    };
    if accepted && listen.port() != 0 {
        Ok(listen)
    } else {
        Err(ListenError(listen))
    }
}

/// `--listen`'s parser: an `IP:PORT` that [`check_listen`] accepts.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not IP:PORT ({e})"))?;
    check_listen(addr).map_err(|e| e.to_string())
}

/// The link that holds `ip` unless `--link` names another: one name per address, so that
/// relays on two addresses never share a link.
pub fn default_link(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) if ip == ECS_ADDRESS => "imdsh-relay0".to_owned(),
        IpAddr::V4(ip) => format!("imdsh-r{}", ip.octets()[3]),
        IpAddr::V6(ip) => format!("imdsh-r6-{:x}", ip.segments()[7]),
    }
}

/// The address, held on the relay's link until dropped.
#[derive(Debug)]
pub struct OwnedAddress {
    link: String,
    ip: IpAddr,
    kind: &'static str,
    mark: String,
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
        // Only a link that still carries this relay's mark: deleting it removes its address.
        if let Ok(Some(link)) = link_info(&self.link) {
            if link.alias.as_deref() == Some(self.mark.as_str()) {
                let _ = ip(&["link", "del", &self.link]);
            }
        }
    }
}

/// What is known of a link.
#[derive(Debug)]
struct LinkInfo {
    alias: Option<String>,
}

/// Who owns an existing link of the relay's name.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// A relay that is running.
    LiveRelay(u32),
    /// A relay that is gone: the link is a leftover.
    GoneRelay,
    /// Not a relay.
    Other,
}

/// Takes `listen`'s address for the relay: nothing may serve it yet; unless it is a loopback
/// address (which needs no link), it is added to a new link named `link`, marked as this
/// relay's.
pub fn claim(listen: SocketAddr, link: &str) -> Result<Option<OwnedAddress>, AddressError> {
    if link.is_empty()
        || link.len() > MAX_LINK_NAME
        || !link
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AddressError::BadLinkName(link.to_owned()));
    }
    if let Some(by) = served_by(listen)? {
        return Err(AddressError::Served { addr: listen, by });
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
    if let Some(existing) = link_info(link)? {
        match owner(existing.alias.as_deref()) {
            Owner::LiveRelay(pid) => {
                return Err(AddressError::HeldByRelay {
                    link: link.to_owned(),
                    pid,
                })
            }
            Owner::Other => {
                return Err(AddressError::NotOurs {
                    link: link.to_owned(),
                })
            }
            Owner::GoneRelay => {
                ip(&["link", "del", link])?;
            }
        }
    }
    let kind = add_link(link)?;
    let mark = format!("{MARK}{} {addr}", std::process::id());
    let owned = OwnedAddress {
        link: link.to_owned(),
        ip: addr,
        kind,
        mark,
    };
    ip(&["link", "set", "dev", link, "alias", &owned.mark])?;
    // An IPv6 address is usable at once, not after duplicate address detection (which never
    // ends on a link without carrier, a bridge without ports).
    if addr.is_ipv4() {
        ip(&["addr", "add", &cidr, "dev", link])?;
    } else {
        ip(&["addr", "add", &cidr, "dev", link, "nodad"])?;
    }
    ip(&["link", "set", link, "up"])?;
    Ok(Some(owned))
}

/// Who made a link with `alias`: a relay's mark names its pid, which is running when
/// `/proc/<pid>` is an `imds-shim` process that is not a zombie.
fn owner(alias: Option<&str>) -> Owner {
    let Some(pid) = alias
        .and_then(|a| a.strip_prefix(MARK))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return Owner::Other;
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // `pid (comm) S ...`: a zombie (Z) or dead (X) process has let its link go.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']));
    if comm.trim_end() == "imds-shim" && running && pid != std::process::id() {
        Owner::LiveRelay(pid)
    } else {
        Owner::GoneRelay
    }
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

/// The link `name`, if there is one.
fn link_info(name: &str) -> Result<Option<LinkInfo>, AddressError> {
    let out = match ip(&["-j", "link", "show", "dev", name]) {
        Ok(out) => out,
        Err(AddressError::Ip { reason, .. }) if reason.contains("does not exist") => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let links: Vec<serde_json::Value> = json_table("ip -j link show", &out)?;
    Ok(links.first().map(|l| LinkInfo {
        alias: l["ifalias"].as_str().map(str::to_owned),
    }))
}

/// The interface holding `cidr`, if any.
fn holder_of(cidr: &str) -> Result<Option<String>, AddressError> {
    let out = ip(&["-j", "addr", "show", "to", cidr])?;
    let links: Vec<serde_json::Value> = json_table("ip -j addr show", &out)?;
    Ok(links
        .iter()
        .find(|l| l["addr_info"].as_array().is_some_and(|a| !a.is_empty()))
        .and_then(|l| l["ifname"].as_str())
        .map(str::to_owned))
}

fn json_table(what: &str, out: &str) -> Result<Vec<serde_json::Value>, AddressError> {
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(out).map_err(|e| AddressError::Table {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// What already serves `listen`, read from this host's tables of listening TCP sockets
/// (`/proc/net/tcp` and `tcp6`): a socket listening on it or on every address at its port, or
/// for 169.254.170.2:80, the ECS agent on 127.0.0.1:51679. No packet is sent.
pub fn served_by(listen: SocketAddr) -> Result<Option<String>, AddressError> {
    let listening = listening_sockets()?;
    if let Some(found) = listening
        .iter()
        .find(|l| l.port() == listen.port() && (l.ip() == listen.ip() || l.ip().is_unspecified()))
    {
        return Ok(Some(format!("a socket listens on {found}")));
    }
    let ecs = SocketAddr::new(IpAddr::V4(ECS_ADDRESS), 80);
    if listen == ecs && listening.contains(&ECS_AGENT) {
        return Ok(Some(format!(
            "the ECS agent listens on {ECS_AGENT} and is forwarded {ecs}"
        )));
    }
    Ok(None)
}

/// The local addresses of this network namespace's listening TCP sockets.
fn listening_sockets() -> Result<Vec<SocketAddr>, AddressError> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(table) {
            Ok(text) => found.extend(text.lines().skip(1).filter_map(listening_entry)),
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound && table.ends_with('6') => {}
            Err(e) => {
                return Err(AddressError::Table {
                    what: table.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(found)
}

/// The local address of one `/proc/net/tcp{,6}` line (`sl local rem st ...`, addresses as the
/// kernel's words in hex, the port in hex) when its state is LISTEN (`0A`).
fn listening_entry(line: &str) -> Option<SocketAddr> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != "0A" {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        ip.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// iproute2's `ip`, at the first of [`IP_PATHS`] that exists.
pub fn ip_program() -> Result<&'static Path, AddressError> {
    IP_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or(AddressError::NoIp)
}

fn ip(args: &[&str]) -> Result<String, AddressError> {
    let failed = |reason: String| AddressError::Ip {
        args: args.join(" "),
        reason,
    };
    let out = Command::new(ip_program()?)
        .args(args)
        .env_clear()
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

    /// The kernel keeps [`BACKLOG`] connections (or `somaxconn`, if less) for the relay,
    /// as `ss` reads a listener's queue.
    #[test]
    fn the_listener_keeps_a_long_queue() {
        let listener = listen_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (Debian's iproute2, which the project needs anyway)");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let queue: i32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .map_or(BACKLOG, |s| s.trim().parse().unwrap());
        assert_eq!(queue, BACKLOG.min(somaxconn), "{line}");
        assert!(queue > 128, "{line}");
    }

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
            Err(AddressError::Served { addr: a, .. }) if a == addr
        ));
        drop(listener);
        assert!(claim(addr, "imdsh-relay0").unwrap().is_none());
    }

    #[test]
    fn only_the_addresses_sdks_accept_over_http_are_served() {
        for good in [
            "169.254.170.2:80",
            "169.254.170.23:80",
            "[fd00:ec2::23]:80",
            "127.0.0.1:8080",
            "127.0.0.2:80",
            "[::1]:80",
        ] {
            assert!(parse_listen(good).is_ok(), "{good}");
        }
        for bad in [
            "0.0.0.0:80",
            "[::]:80",
            "10.0.0.5:80",
            "192.168.1.10:80",
            "169.254.169.254:80",
            "169.254.170.3:80",
            "169.254.170.2:0",
        ] {
            let why = parse_listen(bad).unwrap_err();
            assert!(why.contains("169.254.170.2 (ECS)"), "{bad}: {why}");
        }
        assert!(parse_listen("169.254.170.2")
            .unwrap_err()
            .contains("IP:PORT"));
    }

    #[test]
    fn each_address_has_a_link_name_of_its_own() {
        let names: Vec<String> = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
            .iter()
            .map(|ip| default_link(ip.parse().unwrap()))
            .collect();
        assert_eq!(names, ["imdsh-relay0", "imdsh-r23", "imdsh-r6-23"]);
        assert!(names.iter().all(|n| n.len() <= MAX_LINK_NAME));
    }

    #[test]
    fn listening_sockets_are_read_from_the_kernel_tables() {
        // 127.0.0.1:8080 listening; 0.0.0.0:22 established (not listening); [::1]:80.
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1";
        let v4_established = "   1: 00000000:0016 0100007F:D431 01 00000000:00000000";
        let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0";
        assert_eq!(listening_entry(v4), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(listening_entry(v4_established), None);
        assert_eq!(listening_entry(v6), Some("[::1]:80".parse().unwrap()));
        assert_eq!(listening_entry("garbage"), None);
        assert_eq!(listening_entry("0: ZZ:1 0 0A"), None);
    }

    #[test]
    fn a_link_is_a_live_relays_only_while_that_relay_runs() {
        assert_eq!(owner(None), Owner::Other);
        assert_eq!(owner(Some("uplink to the office")), Owner::Other);
        // pid 1 is never an imds-shim: its mark is a leftover's.
        assert_eq!(
            owner(Some("imds-shim relay pid=1 169.254.170.2")),
            Owner::GoneRelay
        );
    }
}
