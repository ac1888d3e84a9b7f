//! What kind of network this place reaches IMDS through, from its own files only: no
//! packet is sent, no socket opened, nothing resolved.
//!
//! - the route to the IMDS address: `/proc/net/route` (IPv4; the main table, longest
//!   prefix, then the lowest metric) or `/proc/net/ipv6_route`;
//! - whether its interface is a TUN/TAP device: `/sys/class/net/<dev>/tun_flags` exists
//!   for one (a veth, a bridge port, a NIC has none). A user-space network stack
//!   (slirp4netns, pasta, rootlesskit's) serves a TAP device, so this says "user-space";
//! - which stack: libslirp (slirp4netns) answers ARP for its virtual hosts with the MAC
//!   `52:55` + their IPv4 address, so the gateway `10.0.2.2` is `52:55:0a:00:02:02` in
//!   `/proc/net/arp` (after traffic). pasta answers with the MAC of the interface of the
//!   namespace it runs in, which says nothing, so it is not named.
//!
//! `/proc/net` follows the caller's network namespace; `/sys` shows the namespace of
//! whoever mounted it (`ip netns exec` and container runtimes mount it anew). When the
//! interfaces listed in `/sys/class/net` are not this namespace's (those of
//! `/proc/net/dev`), the kind is [`NetworkKind::Unknown`] unless the MAC says slirp4netns.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use imds_vocab::report::{NetworkDetail, NetworkKind};

/// The stack named when the gateway's MAC is libslirp's.
pub const SLIRP4NETNS: &str = "slirp4netns";

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
const RTF_REJECT: u32 = 0x200;
/// `/proc/net/arp`'s flag of a complete entry.
const ATF_COM: u32 = 0x2;

/// The route to `imds` as this namespace's files describe it; `None` for a loopback
/// address or when no route (or no file) says.
pub fn detect(imds: IpAddr) -> Option<NetworkDetail> {
    detect_in(Path::new("/"), imds)
}

/// [`detect`] with the files under `root` (`root/proc/net/route`, `root/sys/class/net`).
pub fn detect_in(root: &Path, imds: IpAddr) -> Option<NetworkDetail> {
    if imds.is_loopback() {
        return None;
    }
    let read = |rel: &str| fs::read_to_string(root.join(rel)).ok();
    let route = match imds {
        IpAddr::V4(addr) => route_v4(&read("proc/net/route")?, addr)?,
        IpAddr::V6(addr) => route_v6(&read("proc/net/ipv6_route")?, addr)?,
    };
    if route.device == "lo" {
        // One of this namespace's own addresses.
        return None;
    }
    let neighbour = route.gateway.unwrap_or(imds);
    let gateway_mac = match neighbour {
        IpAddr::V4(n) => read("proc/net/arp").and_then(|arp| arp_mac(&arp, n, &route.device)),
        // The IPv6 neighbour table is only in netlink.
        IpAddr::V6(_) => None,
    };
    let slirp = match (neighbour, &gateway_mac) {
        (IpAddr::V4(n), Some(mac)) => is_slirp_mac(mac, n),
        _ => false,
    };
    let sys_net = root.join("sys/class/net");
    let sysfs_is_ours = read("proc/net/dev").is_some_and(|dev| sysfs_matches(&dev, &sys_net));
    let kind = if slirp || (sysfs_is_ours && is_tun_tap(&sys_net, &route.device)) {
        NetworkKind::UserSpace
    } else if sysfs_is_ours {
        NetworkKind::Routed
    } else {
        NetworkKind::Unknown
    };
    Some(NetworkDetail {
        kind,
        interface: route.device,
        gateway: route.gateway.map(|g| g.to_string()),
        gateway_mac,
        stack: slirp.then(|| SLIRP4NETNS.to_owned()),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    device: String,
    gateway: Option<IpAddr>,
}

/// The best route to `addr` in `/proc/net/route`: the longest matching prefix, then the
/// lowest metric.
fn route_v4(table: &str, addr: Ipv4Addr) -> Option<Route> {
    // `/proc/net/route` prints the network-order words as the host reads them.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    let addr = u32::from(addr);
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (device, dest, gateway, flags, metric, mask) = (
                f.first()?,
                f.get(1)?,
                f.get(2)?,
                f.get(3)?,
                f.get(6)?,
                f.get(7)?,
            );
            let dest = u32::from(Ipv4Addr::from(hex(dest)?));
            let mask = u32::from(Ipv4Addr::from(hex(mask)?));
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric: u32 = metric.parse().ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && *device != "*";
            (usable && addr & mask == dest & mask).then(|| {
                let gateway = (flags & RTF_GATEWAY != 0)
                    .then(|| hex(gateway).map(|g| IpAddr::V4(Ipv4Addr::from(g))))
                    .flatten();
                (
                    mask.count_ones(),
                    metric,
                    Route {
                        device: (*device).to_owned(),
                        gateway,
                    },
                )
            })
        })
        .min_by_key(|(len, metric, _)| (std::cmp::Reverse(*len), *metric))
        .map(|(_, _, route)| route)
}

/// The best route to `addr` in `/proc/net/ipv6_route` (every table; `lo` for the
/// namespace's own addresses).
fn route_v6(table: &str, addr: Ipv6Addr) -> Option<Route> {
    let addr = u128::from(addr);
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let dest = u128::from_str_radix(f[0], 16).ok()?;
            let len = u32::from_str_radix(f[1], 16).ok()?;
            let next_hop = u128::from_str_radix(f[4], 16).ok()?;
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            (usable && len <= 128 && addr & mask == dest & mask).then(|| {
                let gateway = (flags & RTF_GATEWAY != 0 && next_hop != 0)
                    .then(|| Ipv6Addr::from(next_hop).into());
                (
                    len,
                    metric,
                    Route {
                        device: f[9].to_owned(),
                        gateway,
                    },
                )
            })
        })
        .min_by_key(|(len, metric, _)| (std::cmp::Reverse(*len), *metric))
        .map(|(_, _, route)| route)
}

/// The MAC of a complete entry for `ip` on `device` in `/proc/net/arp`.
fn arp_mac(table: &str, ip: Ipv4Addr, device: &str) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags, mac, dev) = (f.first()?, f.get(2)?, f.get(3)?, f.get(5)?);
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        (addr.parse::<Ipv4Addr>().ok()? == ip
            && *dev == device
            && flags & ATF_COM != 0
            && *mac != "00:00:00:00:00:00")
            .then(|| mac.to_ascii_lowercase())
    })
}

/// libslirp's MAC for its virtual host `ip`: `52:55` + the address's four bytes.
fn is_slirp_mac(mac: &str, ip: Ipv4Addr) -> bool {
    let [a, b, c, d] = ip.octets();
    mac == format!("52:55:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Whether `/sys/class/net` lists exactly the interfaces of this namespace.
fn sysfs_matches(proc_net_dev: &str, sys_net: &Path) -> bool {
    let ours: BTreeSet<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .collect();
    let listed: Option<BTreeSet<String>> = fs::read_dir(sys_net).ok().map(|dir| {
        dir.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    });
    !ours.is_empty() && listed.as_ref() == Some(&ours)
}

/// Whether `device` is a TUN/TAP device.
fn is_tun_tap(sys_net: &Path, device: &str) -> bool {
    let path: PathBuf = sys_net.join(device).join("tun_flags");
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLIRP_ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
tap0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
tap0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
    const SLIRP_ARP: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.0.2.2         0x1         0x2         52:55:0a:00:02:02     *        tap0
";
    const DEV: &str = "\
Inter-|   Receive
 face |bytes    packets errs drop fifo frame compressed multicast|bytes
    lo:       0       0    0    0    0     0          0         0        0
";

    /// A fake root with these files, and `devices` in /sys/class/net (`tap` ones with
    /// `tun_flags`).
    fn root(route: &str, arp: &str, devices: &[(&str, bool)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("proc/net");
        fs::create_dir_all(&net).unwrap();
        fs::write(net.join("route"), route).unwrap();
        fs::write(net.join("arp"), arp).unwrap();
        let mut dev = DEV.replace(
            "    lo:       0       0    0    0    0     0          0         0        0\n",
            "",
        );
        for (name, tap) in devices {
            dev.push_str(&format!("  {name}: 0 0 0 0 0 0 0 0 0\n"));
            let sys = dir.path().join("sys/class/net").join(name);
            fs::create_dir_all(&sys).unwrap();
            if *tap {
                fs::write(sys.join("tun_flags"), "0x1002\n").unwrap();
            }
        }
        fs::write(net.join("dev"), dev).unwrap();
        dir
    }

    const IMDS: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));

    #[test]
    fn behind_slirp4netns_it_is_user_space_and_named() {
        let r = root(SLIRP_ROUTE, SLIRP_ARP, &[("lo", false), ("tap0", true)]);
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!(
            got,
            NetworkDetail {
                kind: NetworkKind::UserSpace,
                interface: "tap0".into(),
                gateway: Some("10.0.2.2".into()),
                gateway_mac: Some("52:55:0a:00:02:02".into()),
                stack: Some(SLIRP4NETNS.into()),
            }
        );
        // Before any traffic the neighbour table is empty: a TAP device, stack unnamed.
        let r = root(
            SLIRP_ROUTE,
            "IP address HW type Flags HW address Mask Device\n",
            &[("lo", false), ("tap0", true)],
        );
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!((got.kind, got.stack), (NetworkKind::UserSpace, None));
    }

    #[test]
    fn a_tap_device_with_another_mac_is_user_space_unnamed() {
        // pasta: the TAP device takes the parent's name, address and (for the gateway) MAC.
        let route = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";
        let arp = "\
IP address       HW type     Flags       HW address            Mask     Device
172.17.0.1       0x1         0x2         fe:31:4a:4b:0e:57     *        eth0
";
        let r = root(route, arp, &[("lo", false), ("eth0", true)]);
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!(got.kind, NetworkKind::UserSpace);
        assert_eq!(got.interface, "eth0");
        assert_eq!(got.gateway.as_deref(), Some("172.17.0.1"));
        assert_eq!(got.gateway_mac.as_deref(), Some("fe:31:4a:4b:0e:57"));
        assert_eq!(got.stack, None);
        assert_eq!(got.stack_name(), "a user-space network stack (e.g. pasta)");
        // The same files with eth0 a veth: routed.
        let r = root(route, arp, &[("lo", false), ("eth0", false)]);
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!((got.kind, got.stack), (NetworkKind::Routed, None));
    }

    #[test]
    fn another_namespaces_sysfs_makes_the_kind_unknown() {
        let route = SLIRP_ROUTE.replace("tap0", "eth0");
        let r = root(&route, "", &[("lo", false), ("eth0", true)]);
        // /proc/net/dev lists a device /sys does not.
        fs::write(
            r.path().join("proc/net/dev"),
            format!("{DEV}  eth0: 0 0\n  veth9: 0 0\n").replace("    lo:", "  lo:"),
        )
        .unwrap();
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!(got.kind, NetworkKind::Unknown);
        // The slirp MAC still names the stack.
        fs::write(
            r.path().join("proc/net/arp"),
            SLIRP_ARP.replace("tap0", "eth0"),
        )
        .unwrap();
        let got = detect_in(r.path(), IMDS).unwrap();
        assert_eq!(got.kind, NetworkKind::UserSpace);
        assert_eq!(got.stack.as_deref(), Some(SLIRP4NETNS));
    }

    #[test]
    fn the_longest_prefix_and_the_lowest_metric_win() {
        let route = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ens5\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
ens5\tFEA9FEA9\t00000000\t0005\t0\t0\t200\tFFFFFFFF\t0\t0\t0
ens6\tFEA9FEA9\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0
ens7\tFEA9FEA9\t00000000\t0201\t0\t0\t0\tFFFFFFFF\t0\t0\t0
";
        let got = route_v4(route, Ipv4Addr::new(169, 254, 169, 254)).unwrap();
        assert_eq!(
            got,
            Route {
                device: "ens6".into(),
                gateway: None
            }
        );
        let got = route_v4(route, Ipv4Addr::new(172, 17, 0, 2)).unwrap();
        assert_eq!(got.device, "docker0");
        let got = route_v4(route, Ipv4Addr::new(8, 8, 8, 8)).unwrap();
        assert_eq!(
            got,
            Route {
                device: "ens5".into(),
                gateway: Some(Ipv4Addr::new(192, 168, 0, 1).into())
            }
        );
        assert_eq!(route_v4("Iface\n", Ipv4Addr::new(8, 8, 8, 8)), None);
    }

    #[test]
    fn ipv6_routes() {
        let table = "\
fd000ec2000000000000000000000000 40 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        let got = route_v6(table, "fd00:ec2::254".parse().unwrap()).unwrap();
        assert_eq!(got.device, "eth0");
        assert_eq!(got.gateway, Some("fe80::1".parse().unwrap()));
        assert_eq!(route_v6(table, "2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn loopback_and_missing_files_say_nothing() {
        let r = root(SLIRP_ROUTE, SLIRP_ARP, &[("lo", false), ("tap0", true)]);
        assert_eq!(detect_in(r.path(), Ipv4Addr::LOCALHOST.into()), None);
        assert_eq!(detect_in(Path::new("/nonexistent/imds-shim"), IMDS), None);
    }

    #[test]
    fn slirp_macs() {
        assert!(is_slirp_mac(
            "52:55:0a:00:02:02",
            Ipv4Addr::new(10, 0, 2, 2)
        ));
        assert!(!is_slirp_mac(
            "52:55:0a:00:02:03",
            Ipv4Addr::new(10, 0, 2, 2)
        ));
        assert!(!is_slirp_mac(
            "52:54:00:12:34:56",
            Ipv4Addr::new(10, 0, 2, 2)
        ));
        assert_eq!(
            arp_mac(SLIRP_ARP, Ipv4Addr::new(10, 0, 2, 2), "tap0").as_deref(),
            Some("52:55:0a:00:02:02")
        );
        assert_eq!(arp_mac(SLIRP_ARP, Ipv4Addr::new(10, 0, 2, 2), "eth0"), None);
        let incomplete = SLIRP_ARP.replace("0x2 ", "0x0 ");
        assert_eq!(
            arp_mac(&incomplete, Ipv4Addr::new(10, 0, 2, 2), "tap0"),
            None
        );
    }

    #[test]
    fn this_machine_reads_without_error() {
        // Whatever the route here is, reading it sends nothing, does not panic, and
        // costs the probe nothing noticeable (a few small files).
        let started = std::time::Instant::now();
        let got = detect(IMDS);
        let took = started.elapsed();
        eprintln!("detect(169.254.169.254) here: {got:?} in {took:?}");
        assert!(took < std::time::Duration::from_millis(100), "{took:?}");
    }
}
