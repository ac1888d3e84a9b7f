//! Tests of the netns backend. Those that build namespaces need root, `ip` and
//! `iptables`: without them they print `SKIPPED: ...`, or fail when `CI=true`.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::Duration;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use socket2::SockRef;

use super::command::run;
use super::layout::IMDS_ADDR;
use super::reap::LIVE;
use super::*;
use crate::lifecycle::{self, lock, NAME_PREFIX};
use crate::topology::Topology;

/// Whether the namespace tests can run here; see the module documentation. In the fast
/// tier (`make check`, `IMDS_TIER=fast`; tests/support/require.rs) a test that needs root
/// fails: the `check` profile of `.config/nextest.toml` must leave it out.
fn privileged() -> bool {
    assert!(
        std::env::var("IMDS_TIER").as_deref() != Ok("fast"),
        "this netns test needs root, which the fast tier (`make check`, IMDS_TIER=fast) must \
         not run: add it to the slow tier, the `default-filter` of [profile.check] in \
         .config/nextest.toml (`make test` runs it)"
    );
    match check_prerequisites() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the netns tests need root, ip and iptables (CI=true): {e}")
        }
        Err(e) => {
            // Written to the real stderr, past libtest's capture, so that it shows, and
            // to the suite's list of skips (see the Makefile's `test`).
            let line = format!("the netns tests need root, ip and iptables: {e}");
            let _ = writeln!(io::stderr(), "!!!!! SKIPPED {line} !!!!!");
            if let Some(list) = std::env::var_os("IMDS_SKIPPED_FILE") {
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(list)
                    .and_then(|mut f| writeln!(f, "imds-harness backend::netns::tests: {line}"));
            }
            false
        }
    }
}

/// Serves `connections` connections on 169.254.169.254:80 in the mock namespace: reads
/// one byte H from the client, sets the connection's IP_TTL to H and writes "hello"
/// (what the mock IMDS does with a token response, with H the hop limit).
fn hello_server(realisation: &NetnsRealisation, connections: usize) -> thread::JoinHandle<()> {
    let listener = realisation
        .mock_ns()
        .bind_tcp((IMDS_ADDR, 80).into())
        .expect("bind 169.254.169.254:80 in the mock namespace");
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < connections && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut ttl = [0u8];
                    if stream.read_exact(&mut ttl).is_ok() {
                        SockRef::from(&stream)
                            .set_ttl_v4(u32::from(ttl[0]))
                            .unwrap();
                        let _ = stream.write_all(b"hello");
                    }
                    served += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    })
}

/// From inside `ns`: connects to 169.254.169.254:80, asks for a reply with TTL `ttl`
/// and returns what arrives within 300 ms.
fn fetch(ns: &Namespace, ttl: u8) -> Option<String> {
    ns.run_in(move || {
        let addr = SocketAddr::from((IMDS_ADDR, 80));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .expect("connect to 169.254.169.254:80");
        stream.write_all(&[ttl]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        match stream.read(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read: {e}"),
        }
    })
    .expect("enter namespace")
}

/// At every depth d of the topology a reply with TTL d + 1 arrives; at the leaf (depth
/// D) one with TTL D does not.
fn assert_hop_limit_physics(name: &str) {
    if !privileged() {
        return;
    }
    let topology = Topology::parse(name).unwrap();
    let depth = topology.depth();
    let realisation = NetnsRealisation::create(&topology).unwrap();
    let leaf_fails = depth > 0;
    let server = hello_server(&realisation, depth + 1 + usize::from(leaf_fails));
    for d in 0..=depth {
        let ns = realisation.ns_at_depth(d).unwrap();
        let ttl = u8::try_from(d + 1).unwrap();
        assert_eq!(
            fetch(ns, ttl).as_deref(),
            Some("hello"),
            "{name}: TTL {ttl} should reach depth {d} ({})",
            ns.name
        );
    }
    if leaf_fails {
        let ttl = u8::try_from(depth).unwrap();
        assert_eq!(
            fetch(realisation.leaf_ns(), ttl),
            None,
            "{name}: TTL {ttl} should not reach the leaf at depth {depth}"
        );
    }
    server.join().unwrap();
}

#[test]
fn physics_chain_2() {
    assert_hop_limit_physics("chain:2");
}

#[test]
fn physics_earthly_run() {
    assert_hop_limit_physics("earthly-run");
}

#[test]
fn physics_earthly_with_docker() {
    assert_hop_limit_physics("earthly-with-docker");
}

#[test]
fn physics_host() {
    assert_hop_limit_physics("host");
}

/// `ip netns list` (its complaints about namespaces that other tests are deleting
/// meanwhile are dropped).
fn netns_list() -> String {
    duct::cmd!("ip", "netns", "list")
        .stderr_null()
        .read()
        .unwrap()
}

#[test]
fn layout_of_earthly_run() {
    if !privileged() {
        return;
    }
    let realisation = NetnsRealisation::create(&Topology::parse("earthly-run").unwrap()).unwrap();
    let read = |ns: &Namespace, program: &str, args: &[&str]| -> String {
        ns.exec(program, args).read().unwrap()
    };
    let [mock, host, l1, l2] = [
        realisation.mock_ns(),
        realisation.host_ns(),
        realisation.ns_at_depth(1).unwrap(),
        realisation.ns_at_depth(2).unwrap(),
    ];
    assert_eq!(l2, realisation.leaf_ns());
    assert_eq!(realisation.leaf_addr(), Ipv4Addr::new(172, 30, 0, 2));
    let prefix = realisation.prefix();
    assert!(prefix.starts_with(NAME_PREFIX));
    assert_eq!(
        realisation
            .namespaces()
            .map(Namespace::name)
            .collect::<Vec<_>>(),
        ["m", "h", "1", "2"].map(|s| format!("{prefix}-{s}"))
    );

    let mock_addrs = read(mock, "ip", &["-o", "-4", "addr"]);
    assert!(
        mock_addrs.contains("eth0    inet 169.254.169.254/16"),
        "{mock_addrs}"
    );
    let host_addrs = read(host, "ip", &["-o", "-4", "addr"]);
    assert!(
        host_addrs.contains("eth0    inet 169.254.0.1/16"),
        "{host_addrs}"
    );
    assert!(
        host_addrs.contains("docker0    inet 172.17.0.1/16"),
        "{host_addrs}"
    );
    let l1_addrs = read(l1, "ip", &["-o", "-4", "addr"]);
    assert!(
        l1_addrs.contains("eth0    inet 172.17.0.2/16"),
        "{l1_addrs}"
    );
    assert!(
        l1_addrs.contains("cni0    inet 172.30.0.1/16"),
        "{l1_addrs}"
    );
    let l2_addrs = read(l2, "ip", &["-o", "-4", "addr"]);
    assert!(
        l2_addrs.contains("eth0    inet 172.30.0.2/16"),
        "{l2_addrs}"
    );
    for ns in realisation.namespaces() {
        let lo = read(ns, "ip", &["-o", "link", "show", "lo"]);
        assert!(lo.contains("UP"), "{}: {lo}", ns.name);
    }

    // IMDS is on-link from the host; the others go via their gateway.
    let route = read(host, "ip", &["route", "get", "169.254.169.254"]);
    assert!(
        route.starts_with("169.254.169.254 dev eth0 src 169.254.0.1"),
        "{route}"
    );
    let route = read(l2, "ip", &["route", "get", "169.254.169.254"]);
    assert!(route.contains("via 172.30.0.1 dev eth0"), "{route}");

    for (ns, rule) in [
        (
            host,
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        ),
        (
            l1,
            "-A POSTROUTING -s 172.30.0.0/16 ! -o cni0 -j MASQUERADE",
        ),
    ] {
        let forward = read(ns, "cat", &["/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(forward, "1", "{}", ns.name);
        let nat = read(ns, "iptables", &["-t", "nat", "-S", "POSTROUTING"]);
        assert!(nat.lines().any(|l| l == rule), "{}: {nat}", ns.name);
    }
    let nat = read(l2, "iptables", &["-t", "nat", "-S", "POSTROUTING"]);
    assert!(
        !nat.contains("MASQUERADE"),
        "the leaf routes nothing: {nat}"
    );
}

#[test]
fn drop_removes_every_namespace() {
    if !privileged() {
        return;
    }
    let realisation = NetnsRealisation::create(&Topology::chain(3).unwrap()).unwrap();
    let prefix = realisation.prefix().to_owned();
    let names: Vec<String> = realisation.namespaces().map(|ns| ns.name.clone()).collect();
    assert_eq!(names.len(), 5);
    let listed = netns_list();
    assert!(
        names.iter().all(|n| listed.contains(n.as_str())),
        "{listed}"
    );
    assert!(LIVE.names().contains(&prefix));
    drop(realisation);
    let listed = netns_list();
    assert!(!listed.contains(&format!("{prefix}-")), "{listed}");
    assert!(!LIVE.names().contains(&prefix));

    // And explicitly, reporting errors.
    let realisation = NetnsRealisation::create(&Topology::chain(1).unwrap()).unwrap();
    let prefix = realisation.prefix().to_owned();
    realisation.try_remove().unwrap();
    assert!(!netns_list().contains(&format!("{prefix}-")));
}

#[test]
fn drop_on_panic_removes_namespaces() {
    if !privileged() {
        return;
    }
    let prefix = Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let realisation = NetnsRealisation::create(&Topology::chain(1).unwrap()).unwrap();
        *lock(&prefix) = realisation.prefix().to_owned();
        // Unwinds like a panic, without the panic message.
        std::panic::resume_unwind(Box::new("boom"));
    });
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert!(!netns_list().contains(&format!("{prefix}-")));
}

#[test]
fn cleanup_stale_reaps_dead_runs_only() {
    if !privileged() {
        return;
    }
    let live = NetnsRealisation::create(&Topology::chain(0).unwrap()).unwrap();
    // A namespace as a killed run leaves it: its run id's liveness socket is unbound.
    let stale = format!(
        "{NAME_PREFIX}dead{:06x}-0-h",
        rand::random::<u32>() & 0xff_ffff
    );
    duct::cmd!("ip", "netns", "add", &stale).run().unwrap();
    let removed = cleanup_stale().unwrap().namespaces;
    assert!(removed.contains(&stale), "{removed:?}");
    for ns in live.namespaces() {
        assert!(!removed.contains(&ns.name), "{removed:?}");
    }
    let listed = netns_list();
    assert!(!listed.contains(&stale), "{listed}");
    assert!(listed.contains(&live.host_ns().name), "{listed}");
}

/// The root namespace's state that this backend must never touch.
fn root_snapshot() -> Vec<String> {
    let strip_lifetimes = |s: String| -> String {
        s.lines()
            .map(|l| l.split("\\ ").next().unwrap_or(l).trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    vec![
        duct::cmd!("ip", "route", "show", "table", "all")
            .read()
            .unwrap(),
        duct::cmd!("ip", "-6", "route").read().unwrap(),
        strip_lifetimes(duct::cmd!("ip", "-o", "addr").read().unwrap()),
        duct::cmd!("ip", "-o", "link").read().unwrap(),
        duct::cmd!("iptables", "-t", "nat", "-S").read().unwrap(),
        duct::cmd!("iptables", "-t", "filter", "-S").read().unwrap(),
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
    ]
}

#[test]
fn root_namespace_is_unchanged() {
    if !privileged() {
        return;
    }
    let before = root_snapshot();
    let realisation =
        NetnsRealisation::create(&Topology::parse("earthly-with-docker").unwrap()).unwrap();
    assert_eq!(root_snapshot(), before, "changed by create");
    drop(realisation);
    assert_eq!(root_snapshot(), before, "changed by drop");
}

#[test]
fn bind_tcp_binds_inside_the_namespace() {
    if !privileged() {
        return;
    }
    let realisation = NetnsRealisation::create(&Topology::chain(1).unwrap()).unwrap();
    // 169.254.169.254 is only assigned in the mock namespace.
    let err = realisation
        .host_ns()
        .bind_tcp((IMDS_ADDR, 80).into())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    let listener = realisation
        .mock_ns()
        .bind_tcp((IMDS_ADDR, 0).into())
        .unwrap();
    assert_eq!(listener.local_addr().unwrap().ip(), IMDS_ADDR);
}

/// Prints how long create and remove take (median and worst of 5); a removal's
/// namespaces are torn down by the kernel asynchronously, which can stall the next
/// create by tens of milliseconds.
#[test]
fn create_and_remove_time() {
    if !privileged() {
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for name in ["host", "earthly-with-docker", "chain:8"] {
        let topology = Topology::parse(name).unwrap();
        let (mut create, mut remove) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            let realisation = NetnsRealisation::create(&topology).unwrap();
            create.push(started.elapsed());
            let started = Instant::now();
            realisation.try_remove().unwrap();
            remove.push(started.elapsed());
        }
        create.sort();
        remove.sort();
        eprintln!(
            "TIMING {name} (depth {}): create median {:.1} ms, max {:.1} ms; \
             remove median {:.1} ms, max {:.1} ms",
            topology.depth(),
            ms(create[2]),
            ms(create[4]),
            ms(remove[2]),
            ms(remove[4]),
        );
        assert!(create[2] < Duration::from_secs(2), "{name}: {create:?}");
    }
    // Five at once, then all removed: no teardown runs while creating.
    let topology = Topology::parse("earthly-with-docker").unwrap();
    let started = Instant::now();
    let realisations: Vec<NetnsRealisation> = (0..5)
        .map(|_| NetnsRealisation::create(&topology).unwrap())
        .collect();
    let create = started.elapsed() / 5;
    let started = Instant::now();
    drop(realisations);
    eprintln!(
        "TIMING 5 x earthly-with-docker alive together: create {:.1} ms each, \
         remove {:.1} ms each",
        ms(create),
        ms(started.elapsed() / 5)
    );
}

#[test]
fn error_messages_tell_what_to_do() {
    let not_root = NetnsError::NotRoot { euid: 1000 }.to_string();
    assert!(
        not_root.starts_with("run as root (sudo imds-harness ...)"),
        "{not_root}"
    );
    let missing = NetnsError::MissingTool {
        program: "iptables".into(),
    }
    .to_string();
    assert!(
        missing.contains("install iproute2 and iptables: apt-get install iproute2 iptables"),
        "{missing}"
    );
    let failed = run(
        &["ip", "-n", "imdsh-no-such-namespace", "-batch", "-"],
        Some("link show\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        failed.starts_with("`ip -n imdsh-no-such-namespace -batch - <<< 'link show'` failed"),
        "{failed}"
    );
}

#[test]
fn a_namespace_name_that_exists_already_is_skipped_and_left_alone() {
    if !privileged() {
        return;
    }
    let run = lifecycle::run_id().unwrap();
    // The next few prefixes an index source far from this process's own would give,
    // taken by someone else.
    let first = 1_000_000;
    let indices = std::sync::atomic::AtomicU32::new(first);
    let foreign: Vec<String> = (first..first + 4)
        .map(|i| format!("{NAME_PREFIX}{run}-{i}-m"))
        .collect();
    for name in &foreign {
        run_ok(&["ip", "netns", "add", name]);
    }
    let realisation =
        NetnsRealisation::create_indexed(&Topology::chain(1).unwrap(), &indices, None).unwrap();
    assert_eq!(
        realisation.prefix(),
        format!("{NAME_PREFIX}{run}-{}", first + 4)
    );
    assert!(
        !foreign
            .iter()
            .any(|f| f.starts_with(&format!("{}-", realisation.prefix()))),
        "{} reused a taken prefix",
        realisation.prefix()
    );
    drop(realisation);
    let listed = netns_list();
    for name in &foreign {
        assert!(
            listed.contains(name.as_str()),
            "{name} was removed: {listed}"
        );
        run_ok(&["ip", "netns", "del", name]);
    }
}

fn run_ok(argv: &[&str]) {
    let status = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .unwrap();
    assert!(status.success(), "{argv:?}");
}

/// EC2's IPv6 endpoint with the real AWS CLI in its IPv6 endpoint mode, one routed hop
/// away (chain:1, with IPv6 addresses added beside the IPv4 ones): the token response
/// carries the hop limit as its IPv6 hop limit, so 1 gives no credentials and 2 does.
#[test]
fn ipv6_endpoint_carries_the_hop_limit_to_the_cli() {
    use crate::probe::env::ClientEnv;
    use imds_mock::{Listeners, MetadataOptionsChange, MockAws, MockConfig};
    use imds_vocab::{HopLimit, Toggle};
    const AWS_CLI: &str = "/usr/bin/aws";
    if !privileged() {
        return;
    }
    if !std::path::Path::new(AWS_CLI).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{AWS_CLI} is missing (CI=true)"
        );
        let _ = writeln!(
            io::stderr(),
            "!!!!! SKIPPED ipv6 endpoint test: no {AWS_CLI} !!!!!"
        );
        return;
    }
    let realisation = NetnsRealisation::create(&Topology::parse("chain:1").unwrap()).unwrap();
    let (mock_ns, host, leaf) = (
        realisation.mock_ns(),
        realisation.host_ns(),
        realisation.leaf_ns(),
    );
    let bridge = Topology::parse("chain:1").unwrap().layers()[0]
        .bridge()
        .expect("chain:1 is routed")
        .name()
        .to_string();
    for (ns, argv) in [
        (
            mock_ns,
            vec!["addr", "add", "fd00:ec2::254/64", "dev", "eth0", "nodad"],
        ),
        (
            mock_ns,
            vec!["route", "add", "default", "via", "fd00:ec2::1"],
        ),
        (
            host,
            vec!["addr", "add", "fd00:ec2::1/64", "dev", "eth0", "nodad"],
        ),
        (
            host,
            vec!["addr", "add", "fd00:17::1/64", "dev", &bridge, "nodad"],
        ),
        (
            leaf,
            vec!["addr", "add", "fd00:17::2/64", "dev", "eth0", "nodad"],
        ),
        (leaf, vec!["route", "add", "default", "via", "fd00:17::1"]),
    ] {
        let mut full = vec!["ip", "-n", ns.name(), "-6"];
        full.extend(argv);
        run_ok(&full);
    }
    run_ok(&[
        "ip",
        "netns",
        "exec",
        host.name(),
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.forwarding=1",
    ]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let v6: SocketAddr = "[fd00:ec2::254]:80".parse().unwrap();
    let listeners = Listeners {
        imds: mock_ns.bind_tcp(v6).unwrap(),
        sts: mock_ns.bind_tcp((IMDS_ADDR, 8080).into()).unwrap(),
        ec2: mock_ns.bind_tcp((IMDS_ADDR, 8081).into()).unwrap(),
    };
    let mock = MockAws::start(MockConfig::default(), listeners).unwrap();
    mock.modify(&MetadataOptionsChange {
        http_protocol_ipv6: Some(Toggle::Enabled),
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(home.path(), "http://[fd00:ec2::254]/")
        .with("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")
        .with("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1");
    let whoami = || {
        let expr = leaf.exec(
            AWS_CLI,
            [
                "sts",
                "get-caller-identity",
                "--endpoint-url",
                "http://169.254.169.254:8080/",
            ],
        );
        env.apply(expr)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    };
    let refused = whoami();
    assert!(
        !refused.status.success(),
        "hop limit 1, one hop away over IPv6"
    );
    mock.set_hop_limit(HopLimit::new(2).unwrap());
    let served = whoami();
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(served.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&served.stdout).contains(":assumed-role/"));
    assert!(mock.requests().iter().any(|r| r.peer.is_ipv6()));
}
