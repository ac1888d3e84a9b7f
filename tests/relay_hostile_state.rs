//! The relay under attack through its state, its upstream and its log (issue 21): a state file
//! someone else could write or that holds a bad record, a revoke that cannot be saved, stderr
//! closed, a flood of refusals, IMDS forgetting the relay's session token.
//!
//! The relay runs in the netns site's EC2 host namespace and listens on that namespace's own
//! loopback (no link needed); every request is sent from inside that namespace.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::endpoints::IMDS_URL;
use imds_harness::backend::netns::NetnsSite;
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::Topology;
use imds_mock::{Listeners, MockAws, MockConfig};

const NEEDS: &[Requirement] = &[Requirement::Root, Requirement::NetTools];
/// Where the relay listens, inside the host namespace.
const LISTEN: &str = "127.0.0.1:8300";

struct Sim {
    site: NetnsSite,
    dir: tempfile::TempDir,
}

/// How the relay's stderr is set up.
#[derive(Clone, Copy)]
enum Stderr {
    /// Into `<name>.log` in the scratch directory.
    Log,
    /// A pipe whose reading end is closed.
    ClosedPipe,
}

struct Relay {
    handle: duct::Handle,
    log: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.handle.kill();
    }
}

impl Relay {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sim() -> Sim {
    let site = NetnsSite::start(
        &Topology::parse("docker-run").unwrap(),
        MockConfig::default(),
    )
    .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-state-test-")
        .tempdir()
        .unwrap();
    Sim { site, dir }
}

impl Sim {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn control(&self) -> PathBuf {
        self.path("relay.sock")
    }

    /// Starts the relay (IMDS at `imds`); returns it once it serves, or its output if it
    /// exited first.
    fn start(
        &self,
        name: &str,
        imds: &str,
        stderr: Stderr,
        extra: &[&str],
    ) -> Result<Relay, Output> {
        let log = self.path(&format!("{name}.log"));
        let control = self.control();
        let mut args = vec![
            "relay",
            "--listen",
            LISTEN,
            "--control",
            control.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let expr = ClientEnv::new(self.dir.path(), imds)
            .apply(self.site.host().exec(bins::shim(), &args))
            .stdout_null()
            .unchecked();
        let handle = match stderr {
            Stderr::Log => expr.stderr_path(&log).start().unwrap(),
            Stderr::ClosedPipe => {
                let (reader, writer) = std::io::pipe().unwrap();
                drop(reader);
                expr.stderr_file(writer).start().unwrap()
            }
        };
        let relay = Relay { handle, log };
        // A guard against a hang, not a time limit: reading 100,000 grants back took over
        // 20 s at a load average of 19.
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            if let Some(out) = relay.handle.try_wait().unwrap() {
                let mut out = out.clone();
                out.stderr = relay.log().into_bytes();
                return Err(out);
            }
            // Serving: the control socket answers (the log may be gone).
            if self.control().exists() && self.relay_cmd(&["list"]).status.success() {
                return Ok(relay);
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not start:\n{}",
                relay.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn relay_cmd(&self, args: &[&str]) -> Output {
        let control = self.control();
        let mut all = vec!["relay"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--control", control.to_str().unwrap()]);
        duct::cmd(bins::shim(), &all)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    }

    /// A new grant: its id and its path (`/imds-shim/credentials/<id>.<secret>`, the form the
    /// relay takes on any address; only the default one prints it as a relative URI).
    fn grant(&self) -> (String, String) {
        let out = self.relay_cmd(&["grant", "--instance-role", "--label", "t"]);
        assert!(out.status.success(), "{}", show(&out));
        let stdout = text(&out.stdout);
        let token = stdout
            .lines()
            .find_map(|l| l.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN="))
            .unwrap_or_else(|| panic!("{stdout}"));
        let (id, _) = token.split_once('.').unwrap();
        // The path capability is not printed here: ask with the token in the header instead.
        (id.to_owned(), format!("TOKEN {token}"))
    }

    /// The status line of a GET of `path` (or, for `TOKEN <token>`, of the full URI with the
    /// token), sent from the host namespace.
    fn get(&self, path: &str) -> String {
        let request = match path.strip_prefix("TOKEN ") {
            Some(token) => format!(
                "GET /imds-shim/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
            ),
            None => format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            ),
        };
        let addr: SocketAddr = LISTEN.parse().unwrap();
        self.site
            .host()
            .run_in(move || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(request.as_bytes())?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out.lines().next().unwrap_or("").to_owned())
            })
            .unwrap()
            .unwrap_or_else(|e| format!("no answer: {e}"))
    }
}

/// Makes a state file untrustworthy, one way.
type Setup = Box<dyn Fn(&Path)>;

/// `chattr +i` for as long as it lives, even when the test fails.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = duct::cmd!("chattr", "-i", self.0).run();
    }
}

/// The flood: requests, each on a connection of its own, and the threads that send them.
const FLOOD: usize = 25_000;
const CONNECTIONS: usize = 25;
/// The grants of the volume test: live (the cap) and ended.
const LIVE: usize = 10_000;
const ENDED: usize = 90_000;

/// A state file record, as the relay writes it, for a grant whose secret the writer chose.
fn record(id: &str, secret: &str, expires: u64) -> serde_json::Value {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    serde_json::json!({
        "id": id, "label": "injected", "created": now_secs() - 60, "expires": expires,
        "revoked": null, "path_digest": digest, "token_digest": digest,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A state file that someone other than root could have written, a symlink, or one with a
/// record out of range: the relay names the problem and exits 2 before it serves. Before:
/// every one of them was served (an injected grant got credentials: 200).
#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_not_to_be_trusted_stops_the_relay_before_it_serves() {
    if !require("relay_state_untrusted", NEEDS) {
        return;
    }
    let sim = sim();
    let id = "0123456789abcdef";
    let secret = "chosen-by-the-attacker";
    let now = now_secs();
    // A grant the attacker wrote: valid for an hour, with a secret they know.
    let injected = serde_json::json!({ "version": 1, "grants": [record(id, secret, now + 3600)] });
    let state_dir = sim.path("state");
    fs::create_dir(&state_dir).unwrap();
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let state = state_dir.join("grants.json");
    let state_arg = state.to_str().unwrap().to_owned();

    // (setup, what the refusal names)
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "owned by nobody",
            Box::new(|p: &Path| std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap()),
            "owned by uid 65534",
        ),
        (
            "group-writable",
            Box::new(|p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o660)).unwrap()),
            "writable by group or others",
        ),
        (
            "in a directory others can write",
            Box::new(|p: &Path| {
                let dir = p.parent().unwrap();
                fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
            }),
            "its directory is writable by group or others",
        ),
        (
            "a symlink",
            Box::new(|p: &Path| {
                let target = p.with_extension("target");
                fs::rename(p, &target).unwrap();
                std::os::unix::fs::symlink(&target, p).unwrap();
            }),
            "symbolic link",
        ),
    ];
    for (what, setup, named) in cases {
        let _ = fs::remove_file(&state);
        let _ = fs::remove_file(state.with_extension("target"));
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(&state, injected.to_string()).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();
        setup(&state);
        match sim.start(what, IMDS_URL, Stderr::Log, &["--state", &state_arg]) {
            Ok(relay) => {
                let status = sim.get(&format!("/imds-shim/credentials/{id}.{secret}"));
                panic!(
                    "{what}: the relay serves (injected grant: {status})\n{}",
                    relay.log()
                );
            }
            Err(out) => {
                assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
                let stderr = text(&out.stderr);
                assert!(stderr.contains(named), "{what}: {stderr}");
            }
        }
        assert!(!sim.control().exists(), "{what}");
    }

    // A record out of range (expires 2^63; before: `relay list` panicked while holding the
    // grants lock, and every request after that failed) and a malformed digest.
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let _ = fs::remove_file(&state);
    let mut bad_digest = record(id, secret, now + 3600);
    bad_digest["token_digest"] = "not hex".into();
    for (what, bad, named) in [
        (
            "expires 2^63",
            record(id, secret, 1 << 63),
            "expires of grant",
        ),
        ("a malformed digest", bad_digest, "token_digest of grant"),
    ] {
        let file = serde_json::json!({ "version": 1, "grants": [bad] });
        fs::write(&state, file.to_string()).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();
        match sim.start(what, IMDS_URL, Stderr::Log, &["--state", &state_arg]) {
            Ok(relay) => {
                let list = sim.relay_cmd(&["list"]);
                panic!(
                    "{what}: the relay serves; list: {}\n{}",
                    show(&list),
                    relay.log()
                );
            }
            Err(out) => {
                assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
                let stderr = text(&out.stderr);
                assert!(
                    stderr.contains(named) && stderr.contains(id),
                    "{what}: {stderr}"
                );
            }
        }
    }
}

/// A revoke the relay cannot save (the state file made immutable) is refused and not in
/// force: the grant is served before and after a restart alike, and the reply says so. Before:
/// the reply was an error, yet the grant got 403 until the restart brought it back (200).
#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_that_cannot_be_saved_is_not_in_force_anywhere() {
    if !require("relay_revoke_unsaved", NEEDS) {
        return;
    }
    let sim = sim();
    let state = sim.path("grants.json");
    let state_arg = ["--state", state.to_str().unwrap()];
    let relay = sim
        .start("first", IMDS_URL, Stderr::Log, &state_arg)
        .unwrap();
    let (id, uri) = sim.grant();
    assert_eq!(sim.get(&uri), "HTTP/1.1 200 OK");

    duct::cmd!("chattr", "+i", &state).run().unwrap();
    let guard = Immutable(&state);
    let out = sim.relay_cmd(&["revoke", &id]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("NOT revoked"),
        "the reply does not say the grant is still in force: {}",
        show(&out)
    );
    let now = sim.get(&uri);
    drop(guard);
    drop(relay);
    let second = sim
        .start("second", IMDS_URL, Stderr::Log, &state_arg)
        .unwrap();
    let after_restart = sim.get(&uri);
    assert_eq!(
        (now.as_str(), after_restart.as_str()),
        ("HTTP/1.1 200 OK", "HTTP/1.1 200 OK"),
        "{}",
        second.log()
    );
    // Once it can be saved, the revoke holds, across a restart too.
    assert!(sim.relay_cmd(&["revoke", &id]).status.success());
    assert_eq!(sim.get(&uri), "HTTP/1.1 403 Forbidden");
    drop(second);
    let _third = sim
        .start("third", IMDS_URL, Stderr::Log, &state_arg)
        .unwrap();
    assert_eq!(sim.get(&uri), "HTTP/1.1 403 Forbidden");
}

/// With stderr a pipe nobody reads (closed), the relay keeps serving: a granted request gets
/// 200, also after refusals that are logged. Before: the first log line panicked the request's
/// task, and every credential request got an empty response.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stderr_does_not_stop_serving() {
    if !require("relay_closed_stderr", NEEDS) {
        return;
    }
    let sim = sim();
    let _relay = sim
        .start("closed", IMDS_URL, Stderr::ClosedPipe, &[])
        .unwrap();
    let (_, uri) = sim.grant();
    let refused = sim.get("/imds-shim/credentials/0123456789abcdef.wrong");
    let granted = sim.get(&uri);
    assert_eq!(
        (refused.as_str(), granted.as_str()),
        ("HTTP/1.1 403 Forbidden", "HTTP/1.1 200 OK")
    );
}

/// 25,000 wrong-secret requests from one address write a bounded log: the first in full, then
/// one line per 10 s window with the counts, which add up to every request. Before: 25,000
/// lines.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refusals_writes_a_bounded_log() {
    if !require("relay_refusal_flood", NEEDS) {
        return;
    }
    let sim = sim();
    let relay = sim.start("flood", IMDS_URL, Stderr::Log, &[]).unwrap();
    let (id, _) = sim.grant();
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let forbidden = sim
        .site
        .host()
        .run_in(move || -> std::io::Result<usize> {
            // The relay closes a connection after refusing on it, so each wrong secret
            // comes on a connection of its own, from CONNECTIONS threads at once.
            let threads: Vec<_> = (0..CONNECTIONS)
                .map(|c| {
                    let id = id.clone();
                    std::thread::spawn(move || -> std::io::Result<usize> {
                        let mut forbidden = 0;
                        for i in 0..FLOOD / CONNECTIONS {
                            let mut s = TcpStream::connect(addr)?;
                            s.set_read_timeout(Some(Duration::from_secs(10)))?;
                            write!(
                                s,
                                "GET /imds-shim/credentials/{id}.guess{c}x{i} HTTP/1.1\r\nHost: x\r\n\r\n"
                            )?;
                            let mut status = String::new();
                            BufReader::new(s).read_line(&mut status)?;
                            forbidden += usize::from(status.starts_with("HTTP/1.1 403"));
                        }
                        Ok(forbidden)
                    })
                })
                .collect();
            let mut forbidden = 0;
            for t in threads {
                forbidden += t.join().expect("a flooding thread")?;
            }
            Ok(forbidden)
        })
        .unwrap()
        .unwrap();
    assert_eq!(forbidden, FLOOD);

    // Every refusal is accounted for, in full or in a summary, within a window and a bit.
    let deadline = Instant::now() + Duration::from_secs(25);
    let (lines, accounted) = loop {
        let log = relay.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("from 127.0.0.1"))
            .collect();
        let accounted: usize = lines
            .iter()
            .map(|l| match l.split_once(" more refusal(s) from 127.0.0.1") {
                Some((head, _)) => head.rsplit(' ').next().unwrap().parse().unwrap(),
                None => 1,
            })
            .sum();
        if accounted >= FLOOD || Instant::now() > deadline {
            break (lines.len(), accounted);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(lines <= 20, "{lines} log lines for {FLOOD} refusals");
    assert_eq!(accounted, FLOOD, "{}", relay.log());
}

/// IMDS restarted (it forgets every session token it gave): the relay gets a new token at once
/// and serves the new credentials as the old ones expire. Before: the relay kept its rejected
/// token, logged 401 with a growing pause and answered 503 for minutes.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_imds_token_is_replaced_at_once() {
    if !require("relay_imds_restart", NEEDS) {
        return;
    }
    let sim = sim();
    // An IMDS of our own on the host namespace's loopback, restarted below.
    let addrs: [SocketAddr; 3] = [
        "127.0.0.1:8310".parse().unwrap(),
        "127.0.0.1:8311".parse().unwrap(),
        "127.0.0.1:8312".parse().unwrap(),
    ];
    let config = MockConfig {
        credential_lifetime: Duration::from_secs(6),
        ..MockConfig::default()
    };
    let start_mock = || -> MockAws {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bound = sim
                .site
                .host()
                .run_in(|| Listeners::bind(addrs[0], addrs[1], addrs[2]))
                .unwrap();
            match bound {
                Ok(listeners) => return MockAws::start(config.clone(), listeners).unwrap(),
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mock = start_mock();
    let relay = sim
        .start("upstream", "http://127.0.0.1:8310/", Stderr::Log, &[])
        .unwrap();
    let (_, uri) = sim.grant();
    assert_eq!(sim.get(&uri), "HTTP/1.1 200 OK");
    mock.stop();
    drop(mock);
    let _mock = start_mock();

    // Over three credential lifetimes: no gap of more than 2 s without credentials.
    let started = Instant::now();
    let mut last_ok = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut statuses = Vec::new();
    while started.elapsed() < Duration::from_secs(18) {
        let status = sim.get(&uri);
        if status == "HTTP/1.1 200 OK" {
            last_ok = Instant::now();
        }
        longest_gap = longest_gap.max(last_ok.elapsed());
        statuses.push(status);
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = relay.log();
    assert!(
        longest_gap <= Duration::from_secs(2),
        "no credentials for {longest_gap:?} after IMDS restarted: {statuses:?}\n{log}"
    );
    assert!(
        log.matches("refreshed the role's credentials").count() >= 2,
        "{log}"
    );
}

/// 100,000 grants (10,000 live, the cap, and 90,000 revoked in the last day): `relay list`
/// shows every one (in pages), the cap counts live grants only (a revoke frees a place), and
/// `relay grant --output` writes the secret readable by root only. Before: `list` failed past
/// ~8,400 grants (a reply over 1 MiB), the ended grants filled the cap for 24 h, and there was
/// no `--output` (`> build.env` under umask 022 is world-readable).
#[tokio::test(flavor = "multi_thread")]
async fn list_and_the_cap_work_at_100000_grants_and_grants_can_be_written_privately() {
    if !require("relay_grants_volume", NEEDS) {
        return;
    }
    let sim = sim();
    let now = now_secs();
    let records: Vec<serde_json::Value> = (0..LIVE + ENDED)
        .map(|i| {
            let mut r = record(&format!("{i:016x}"), "s", now + 3600);
            if i >= LIVE {
                r["revoked"] = (now - 30).into();
            }
            r
        })
        .collect();
    let state = sim.path("grants.json");
    fs::write(
        &state,
        serde_json::json!({ "version": 1, "grants": records }).to_string(),
    )
    .unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();
    let _relay = sim
        .start(
            "volume",
            IMDS_URL,
            Stderr::Log,
            &["--state", state.to_str().unwrap()],
        )
        .unwrap();

    let out = sim.relay_cmd(&["list", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), LIVE + ENDED);
    let mut ids: Vec<&str> = listed.iter().map(|g| g["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), LIVE + ENDED);

    let full = sim.relay_cmd(&["grant", "--instance-role"]);
    assert!(!full.status.success(), "{}", show(&full));
    assert!(
        text(&full.stderr).contains("10000 grants"),
        "{}",
        show(&full)
    );
    assert!(sim
        .relay_cmd(&["revoke", &format!("{:016x}", 0)])
        .status
        .success());

    // The freed place, with the environment written to a file only root can read (an
    // existing, world-readable one is narrowed first).
    let env_file = sim.path("build.env");
    fs::write(&env_file, "old").unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o644)).unwrap();
    let out = sim.relay_cmd(&[
        "grant",
        "--instance-role",
        "--output",
        env_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let mode = fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = fs::read_to_string(&env_file).unwrap();
    assert!(
        written.starts_with("AWS_CONTAINER_CREDENTIALS_FULL_URI=")
            && written.contains("\nAWS_CONTAINER_AUTHORIZATION_TOKEN="),
        "{written}"
    );
    // A symlink is not followed.
    let target = sim.path("elsewhere");
    fs::write(&target, "").unwrap();
    let link = sim.path("link.env");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = sim.relay_cmd(&[
        "grant",
        "--instance-role",
        "--output",
        link.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(fs::read_to_string(&target).unwrap(), "");
}
