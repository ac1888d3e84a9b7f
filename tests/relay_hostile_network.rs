//! `imds-shim relay` under attack from its network side and its neighbours on the host (issue
//! 21): idle sockets from another namespace, callers of the control socket who are not root
//! or who hold it idle, a second relay, SIGHUP, `--listen` outside what SDKs accept, the
//! pre-start check's packets and the privileges the relay keeps. Each test failed on the
//! relay before these fixes, but the one for idle control callers, which guards a deadline
//! the relay already had.
//!
//! The relay runs in the EC2 host's namespace of the netns backend (as in `tests/relay.rs`);
//! the attackers run in the leaf or in a neighbour namespace of their own attached to the host
//! ([`Neighbour`]); nothing is sent outside the namespaces the test created.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::neighbour::Neighbour;
use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::endpoints::IMDS_URL;
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};

const NEEDS: &[Requirement] = &[Requirement::Root, Requirement::NetTools];
const RELAY_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(169, 254, 170, 2), 80));
const LINK: &str = "imdsh-relay0";
/// The SDKs' timeout for the container credentials endpoint (botocore, the Rust SDK: 1 s-ish).
const SDK_TIMEOUT: Duration = Duration::from_secs(1);
const NOBODY: &str = "65534";

/// The simulated instance at hop limit 1, tokens required, and a scratch directory.
struct Sim {
    site: NetnsSite,
    dir: tempfile::TempDir,
}

fn sim() -> Sim {
    let topology = Topology::parse("docker-run").unwrap();
    let site = NetnsSite::start(&topology, MockConfig::default()).unwrap();
    site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(1).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-hostile-")
        .tempdir()
        .unwrap();
    Sim { site, dir }
}

/// A running relay, killed on drop if still running.
struct Relay {
    handle: duct::Handle,
    log: PathBuf,
    control: PathBuf,
}

impl Sim {
    fn env(&self) -> ClientEnv {
        ClientEnv::new(self.dir.path(), IMDS_URL)
    }

    fn control(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.sock"))
    }

    /// Starts `imds-shim relay` in the host namespace with `umask 000` (control socket
    /// `<name>.sock`, log `<name>.log`); waits until it serves.
    fn start_relay(&self, name: &str, extra: &[&str]) -> Relay {
        let log = self.dir.path().join(format!("{name}.log"));
        let control = self.control(name);
        let shim = bins::shim();
        let mut args = vec![
            "-c",
            "umask 000 && exec \"$0\" \"$@\"",
            shim.to_str().unwrap(),
            "relay",
            "--control",
            control.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let handle = self
            .env()
            .apply(self.site.host().exec("/bin/sh", &args))
            .stdout_null()
            .stderr_path(&log)
            .unchecked()
            .start()
            .unwrap();
        let relay = Relay {
            handle,
            log,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = relay.log();
            if log.contains("serving on") {
                return relay;
            }
            if let Ok(Some(out)) = relay.handle.try_wait() {
                panic!("the relay exited: {:?}\n{log}", out.status);
            }
            assert!(Instant::now() < deadline, "the relay did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A GET from the leaf: the status line, or why there is none within `wait`.
    fn get(&self, addr: SocketAddr, path: &str, auth: Option<&str>, wait: Duration) -> String {
        get_in(self.site.leaf(), addr, path, auth, wait)
    }

    fn link_exists(&self, link: &str) -> bool {
        ip(&["-n", self.site.host().name(), "link", "show", "dev", link])
            .status
            .success()
    }
}

fn get_in(
    ns: &Namespace,
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    wait: Duration,
) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    ns.run_in(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, wait)?;
        s.set_read_timeout(Some(wait))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .unwrap()
    .map_or_else(
        |e| format!("no answer: {e}"),
        |r| r.lines().next().unwrap_or("an empty answer").to_owned(),
    )
}

fn ip(args: &[&str]) -> Output {
    duct::cmd("/usr/sbin/ip", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
}

impl Relay {
    /// A grant's relative URI, from root.
    fn grant(&self) -> String {
        let out = self.cmd(&[], &["grant", "--instance-role"]);
        assert!(out.status.success(), "{}", show(&out));
        text(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="))
            .map_or_else(|| panic!("{}", show(&out)), str::to_owned)
    }

    /// A grant's full URI and token, from root.
    fn grant_full(&self) -> (String, String) {
        let out = self.cmd(&[], &["grant", "--instance-role"]);
        assert!(out.status.success(), "{}", show(&out));
        let var = |name: &str| {
            text(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("{name}: {}", show(&out)))
        };
        (
            var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        )
    }

    /// `imds-shim relay <args> --control <relay's>` from the root namespace, run by `user`
    /// (`setpriv` arguments) or root.
    fn cmd(&self, user: &[&str], args: &[&str]) -> Output {
        let shim = bins::shim();
        let mut all: Vec<&str> = Vec::new();
        if !user.is_empty() {
            all.extend_from_slice(user);
            all.push("--");
        }
        all.push(shim.to_str().unwrap());
        all.push("relay");
        all.extend_from_slice(args);
        all.extend_from_slice(&["--control", self.control.to_str().unwrap()]);
        let (program, rest) = if user.is_empty() {
            (all[0], &all[1..])
        } else {
            ("setpriv", &all[..])
        };
        duct::cmd(program, rest)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.handle.pids()[0]
    }

    /// Sends `signal`, then waits for a clean exit; the log.
    fn stop_with(self, signal: &str) -> String {
        duct::cmd!("kill", format!("-{signal}"), self.pid().to_string())
            .run()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(out) = self.handle.try_wait().unwrap() {
                assert_eq!(out.status.code(), Some(0), "{signal}: {}", self.log());
                return self.log();
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.handle.kill();
    }
}

/// 1,000 idle sockets from a neighbour (reopened as soon as the relay closes them) do not
/// delay a granted request from the build beyond an SDK's 1 s. Before: every connection slot
/// was taken before `accept` and held by an idle socket; the granted request timed out.
#[tokio::test(flavor = "multi_thread")]
async fn idle_sockets_from_a_neighbour_do_not_delay_a_granted_request() {
    if !require("relay_hostile_idle", NEEDS) {
        return;
    }
    let sim = sim();
    let relay = sim.start_relay("relay", &[]);
    let path = relay.grant();
    let neighbour = Neighbour::attach(sim.site.host(), 1);
    let idle = neighbour.hold_idle(RELAY_ADDR, 1000);
    // Let the 1,000 sockets fill every place the relay has.
    std::thread::sleep(Duration::from_secs(2));
    let statuses: Vec<String> = (0..20)
        .map(|_| sim.get(RELAY_ADDR, &path, None, SDK_TIMEOUT))
        .collect();
    let reopened = idle.stop();
    assert!(
        statuses.iter().all(|s| s == "HTTP/1.1 200 OK"),
        "{statuses:?}\n{}",
        relay.log()
    );
    // The attack was real: the relay closed the neighbour's sockets over its cap (32 per
    // client), and they were reopened.
    assert!(reopened >= 900, "{reopened}");
    relay.stop_with("TERM");
}

/// The control socket answers root and the members of `--control-group`, whatever its file's
/// permissions: under `umask 000`, with the socket then made world-writable, `nobody` gets no
/// grant and the refusal is logged with its uid; with `--control-group nogroup`, the socket
/// is 0660 root:nogroup from the start and `nobody` (gid nogroup) gets a grant, while a caller
/// outside the group does not. Before: any caller who could open the socket got a grant.
#[tokio::test(flavor = "multi_thread")]
async fn only_root_and_the_control_group_get_grants() {
    if !require("relay_hostile_control", NEEDS) {
        return;
    }
    let sim = sim();
    // `nobody` must reach the socket's directory.
    fs::set_permissions(sim.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = ["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"];
    // uid 1 (daemon): neither root nor in nogroup.
    let daemon = ["--reuid", "1", "--regid", "1", "--clear-groups"];

    let relay = sim.start_relay("root-only", &[]);
    let meta = fs::metadata(&relay.control).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "created under umask 000");
    // The window of old, or a careless chmod: the socket is open to all.
    fs::set_permissions(&relay.control, fs::Permissions::from_mode(0o666)).unwrap();
    let out = relay.cmd(&nobody, &["grant", "--instance-role", "--label", "stolen"]);
    assert!(!out.status.success(), "nobody got a grant: {}", show(&out));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        show(&out)
    );
    assert!(
        !text(&out.stdout).contains("AWS_CONTAINER"),
        "{}",
        show(&out)
    );
    let list = relay.cmd(&[], &["list", "--json"]);
    assert_eq!(text(&list.stdout).trim(), "[]", "{}", show(&list));
    let log = relay.stop_with("TERM");
    assert!(
        log.contains("control: refused a caller: uid 65534 (gid 65534)"),
        "{log}"
    );

    let relay = sim.start_relay("group", &["--control-group", "nogroup"]);
    let meta = fs::metadata(&relay.control).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 65534));
    let out = relay.cmd(&nobody, &["grant", "--instance-role", "--label", "member"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stdout).contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="));
    fs::set_permissions(&relay.control, fs::Permissions::from_mode(0o666)).unwrap();
    let out = relay.cmd(&daemon, &["grant", "--instance-role"]);
    assert!(!out.status.success(), "{}", show(&out));
    let log = relay.stop_with("TERM");
    assert!(
        log.contains("uid 1 (gid 1) is neither root nor a member of --control-group nogroup"),
        "{log}"
    );
}

/// Callers of the control socket that connect and say nothing, or half a request, do not
/// hold it: a grant asked meanwhile is made, and the relay closes each of them, without a
/// reply, at its deadline for a control exchange (5 s).
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_control_callers_are_cut_at_the_deadline_and_delay_no_grant() {
    if !require("relay_hostile_control_slow", NEEDS) {
        return;
    }
    let sim = sim();
    let relay = sim.start_relay("slow", &[]);
    let mut callers: Vec<UnixStream> = (0..50)
        .map(|_| UnixStream::connect(&relay.control).unwrap())
        .collect();
    let mut slow = UnixStream::connect(&relay.control).unwrap();
    slow.write_all(b"{\"op\":\"gra").unwrap();
    callers.push(slow);
    let uri = relay.grant();
    assert!(uri.starts_with('/'), "{uri}");
    for (i, mut caller) in callers.into_iter().enumerate() {
        caller
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reply = Vec::new();
        let read = caller.read_to_end(&mut reply);
        assert!(
            matches!(read, Ok(0)),
            "caller {i}: {read:?}, {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    let list = relay.cmd(&[], &["list", "--json"]);
    assert!(list.status.success(), "{}", show(&list));
    relay.stop_with("TERM");
}

/// A second relay on 169.254.170.23 runs beside the first on its own link; then a third on
/// 169.254.170.23 that names the first's link is refused, and the first still serves. Before: the second deleted the
/// first's link (the default name was the same for every address), and the first became
/// unreachable.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_relay_does_not_take_the_first_ones_address() {
    if !require("relay_hostile_second", NEEDS) {
        return;
    }
    let sim = sim();
    let first = sim.start_relay("first", &[]);
    let first_path = first.grant();
    let eks: SocketAddr = "169.254.170.23:80".parse().unwrap();
    let second = sim.start_relay("second", &["--listen", "169.254.170.23:80"]);
    let (full_uri, token) = second.grant_full();
    assert_eq!(full_uri, "http://169.254.170.23/imds-shim/credentials");
    let ok = "HTTP/1.1 200 OK";
    let wait = Duration::from_secs(2);
    assert_eq!(
        sim.get(RELAY_ADDR, &first_path, None, wait),
        ok,
        "{}",
        second.log()
    );
    assert_eq!(
        sim.get(eks, "/imds-shim/credentials", Some(&token), wait),
        ok
    );
    assert!(sim.link_exists(LINK) && sim.link_exists("imdsh-r23"));

    second.stop_with("TERM");
    assert!(!sim.link_exists("imdsh-r23"));
    assert_eq!(sim.get(RELAY_ADDR, &first_path, None, wait), ok);

    // A third relay told to use the first's link is refused; the first keeps it.
    let third = sim.control("third");
    let out = sim
        .env()
        .apply(sim.site.host().exec(
            bins::shim(),
            [
                "relay",
                "--listen",
                "169.254.170.23:80",
                "--link",
                LINK,
                "--control",
                third.to_str().unwrap(),
            ],
        ))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "link {LINK} belongs to a running relay (pid {})",
            first.pid()
        )),
        "{}",
        show(&out)
    );
    assert_eq!(sim.get(RELAY_ADDR, &first_path, None, wait), ok);

    first.stop_with("TERM");
    assert!(!sim.link_exists(LINK));
}

/// SIGHUP stops the relay as SIGTERM does: no link, no control socket left. Before: SIGHUP
/// killed it and left both.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_leaves_no_link_and_no_socket() {
    if !require("relay_hostile_sighup", NEEDS) {
        return;
    }
    let sim = sim();
    let relay = sim.start_relay("relay", &[]);
    let control = relay.control.clone();
    assert!(sim.link_exists(LINK) && control.exists());
    let log = relay.stop_with("HUP");
    assert!(log.contains("SIGHUP: stopping"), "{log}");
    assert!(!sim.link_exists(LINK), "{log}");
    assert!(!control.exists(), "{log}");
}

/// The check that nothing serves the address yet reads the host's tables and sends nothing:
/// with 169.254.170.2 routed to a capture link (as a real host's default route would take
/// it), the host namespace has sent no TCP packet to 169.254.170.2 (an iptables counter) once
/// the relay serves, nor after a second relay was refused. Before: the check's connect went
/// out there.
#[tokio::test(flavor = "multi_thread")]
async fn the_pre_start_check_sends_no_packet() {
    if !require("relay_hostile_no_packet", NEEDS) {
        return;
    }
    let sim = sim();
    let h = sim.site.host().name();
    let kind = if ip(&["-n", h, "link", "add", "imdsh-cap0", "type", "dummy"])
        .status
        .success()
    {
        "dummy"
    } else {
        // No dummy driver (as on the machine this was written on): a bridge without ports.
        "bridge"
    };
    if kind == "bridge" {
        let out = ip(&["-n", h, "link", "add", "imdsh-cap0", "type", "bridge"]);
        assert!(out.status.success(), "{}", show(&out));
    }
    for args in [
        vec!["-n", h, "link", "set", "imdsh-cap0", "up"],
        vec![
            "-n",
            h,
            "route",
            "add",
            "169.254.170.2/32",
            "dev",
            "imdsh-cap0",
        ],
    ] {
        let out = ip(&args);
        assert!(out.status.success(), "ip {args:?}: {}", show(&out));
    }
    let iptables = |args: &[&str]| {
        let out = sim
            .site
            .host()
            .exec("/usr/sbin/iptables", args)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap();
        assert!(out.status.success(), "iptables {args:?}: {}", show(&out));
        text(&out.stdout)
    };
    iptables(&["-w", "-A", "OUTPUT", "-d", "169.254.170.2/32", "-p", "tcp"]);
    let sent = || -> u64 {
        let table = iptables(&["-w", "-nvxL", "OUTPUT"]);
        table
            .lines()
            .find(|l| l.contains("169.254.170.2"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{table}"))
            .parse()
            .unwrap()
    };
    let before = sent();
    let relay = sim.start_relay("relay", &[]);
    assert_eq!(
        sent() - before,
        0,
        "the relay sent packets towards 169.254.170.2\n{}",
        relay.log()
    );
    // The check still finds a relay already serving (by its listening socket).
    let out = sim
        .env()
        .apply(sim.site.host().exec(
            bins::shim(),
            [
                "relay",
                "--control",
                sim.control("second").to_str().unwrap(),
            ],
        ))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr)
            .contains("169.254.170.2:80 is already served (a socket listens on 169.254.170.2:80)"),
        "{}",
        show(&out)
    );
    assert_eq!(sent() - before, 0);
    relay.stop_with("TERM");
}

/// Once serving, every thread of the relay holds CAP_NET_ADMIN only (bounding set included)
/// with no_new_privs, and it still removes its link at exit. Before: all capabilities.
#[tokio::test(flavor = "multi_thread")]
async fn after_start_the_relay_keeps_cap_net_admin_only() {
    if !require("relay_hostile_caps", NEEDS) {
        return;
    }
    let sim = sim();
    let relay = sim.start_relay("relay", &[]);
    let net_admin = format!("{:016x}", 1u64 << 12);
    let tasks = Path::new("/proc")
        .join(relay.pid().to_string())
        .join("task");
    let mut threads = 0;
    for task in fs::read_dir(&tasks).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_owned())
                .unwrap()
        };
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(set), net_admin, "{set}:\n{status}");
        }
        assert_eq!(field("CapInh"), "0".repeat(16));
        assert_eq!(field("NoNewPrivs"), "1");
        threads += 1;
    }
    assert!(threads >= 3, "{threads} threads");
    relay.stop_with("TERM");
    assert!(
        !sim.link_exists(LINK),
        "the link is left after the privileges were dropped"
    );
}

/// `--listen` takes what SDKs accept over http and explains the refusal otherwise (no root
/// needed: refused before anything is done). Before: 0.0.0.0:80 was accepted.
#[test]
fn listen_outside_what_sdks_accept_is_refused_with_the_reason() {
    for bad in ["0.0.0.0:80", "10.0.0.5:80", "169.254.169.254:80"] {
        let out = duct::cmd(
            bins::shim(),
            ["relay", "--listen", bad, "--control", "/nonexistent/x.sock"],
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{bad} is not an address AWS SDKs fetch container credentials from over http"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("169.254.170.23 and [fd00:ec2::23]"),
            "{stderr}"
        );
    }
}
