//! `imds-harness measure` and `cleanup` as a user and a CI gate run them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::measure;
use imds_e2e::require::{require, Requirement};
use imds_e2e::runs::{namespaces, namespaces_left_since, namespaces_of, run_of};

const NEEDS: &[Requirement] = &[Requirement::Root, Requirement::NetTools];

/// Held around every `imds-harness cleanup` of this file's tests, which run at once: one
/// test's cleanup would otherwise reap what another set up for its own.
static CLEANUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cleanup() -> std::process::Output {
    Command::new(bins::harness())
        .arg("cleanup")
        .output()
        .unwrap()
}

#[test]
fn a_baseline_that_records_less_than_needed_fails_the_gate_and_names_the_topology() {
    if !require("baseline_gate", NEEDS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("hop-limits.toml");
    std::fs::write(&baseline, "[hop-limits]\nhost = 1\nearthly-run = 2\n").unwrap();
    let json = dir.path().join("result.json");
    let out = Command::new(bins::harness())
        .args([
            "measure",
            "--topology",
            "host,earthly-run",
            "--clients",
            "ttl,sdk",
        ])
        .args(["--http-tokens", "required", "--baseline"])
        .arg(&baseline)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains("nesting-depth regression: earthly-run now needs hop limit 3"),
        "{stderr}"
    );
    assert!(
        stdout.contains("host needs hop limit 1, as recorded"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["cells"].as_array().unwrap().len(), 4);

    // Recording, then comparing with the recording, passes.
    let recorded = dir.path().join("recorded.toml");
    let earthly_ttl = |flag: &str, file: &Path| {
        Command::new(bins::harness())
            .args(["measure", "--topology", "earthly-run", "--clients", "ttl"])
            .args(["--http-tokens", "required", flag])
            .arg(file)
            .output()
            .unwrap()
    };
    assert_eq!(earthly_ttl("--record", &recorded).status.code(), Some(0));
    assert!(std::fs::read_to_string(&recorded)
        .unwrap()
        .contains("earthly-run = 3"));
    let again = earthly_ttl("--baseline", &recorded);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");

    // Needing fewer hops than recorded is reported and passes.
    std::fs::write(&baseline, "[hop-limits]\nearthly-run = 5\n").unwrap();
    let fewer = earthly_ttl("--baseline", &baseline);
    assert_eq!(fewer.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&fewer.stdout).contains("less than the 5"));
}

#[test]
fn bad_arguments_and_bad_baselines_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[hop-limits]\nhost = 99\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--topology".into(), "chain:99".into()], "chain"),
        (
            vec!["--topology".into(), "kubernetes".into()],
            "earthly-run",
        ),
        (
            vec!["--clients".into(), "curl".into()],
            "sdk, cli, go, go-v1, ruby, boto3 and ttl",
        ),
        (
            vec!["--backend".into(), "vm".into()],
            "netns, docker, earthly",
        ),
        (
            vec!["--baseline".into(), broken.display().to_string()],
            "outside 1..=64",
        ),
        (
            vec!["--baseline".into(), "/nonexistent/b.toml".into()],
            "cannot read the baseline",
        ),
    ];
    for (args, expect) in cases {
        let out = Command::new(bins::harness())
            .arg("measure")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// `earthly` in one of the folders of `path`.
fn earthly_on(path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join("earthly"))
        .find(|candidate| candidate.exists())
}

#[test]
fn the_earthly_backend_says_clearly_when_earthly_is_absent() {
    // `measure --backend earthly` runs the real Earthly, whose RUN steps talk to this
    // machine's own IMDS and STS: it must never start here. Its PATH is an empty folder
    // of our own (the harness needs nothing from PATH before it looks for earthly), its
    // environment is cleared, and that PATH is checked before anything runs. It runs in
    // that folder too, where there is no Earthfile for an earthly to build.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().as_os_str();
    if let Some(earthly) = earthly_on(path) {
        panic!(
            "refusing to run `measure --backend earthly`: {} is on the test's PATH, and it \
             would run against this machine's own IMDS",
            earthly.display()
        );
    }
    let out = Command::new(bins::harness())
        .args(["measure", "--backend", "earthly"])
        .env_clear()
        .env("PATH", path)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("earthly is not on PATH"), "{stderr}");
    assert!(stderr.contains("--backend netns"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran: {:?}", out.stdout);
}

#[test]
fn ctrl_c_removes_the_runs_namespaces_and_cleanup_reaps_a_killed_run() {
    if !require("measure_cleanup", NEEDS) {
        return;
    }
    for (signal, expect_left) in [("INT", false), ("TERM", false), ("KILL", true)] {
        let mut child = Command::new(bins::harness())
            .args([
                "measure",
                "--topology",
                "earthly-with-docker,chain:6",
                "--clients",
                "sdk",
            ])
            .args(["--strategy", "linear", "--probe-timeout-ms", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Only this run's: the other tests of this file run beside it.
        let (run, mine) = loop {
            let run = run_of(child.id());
            let now = run.as_deref().map(namespaces_of).unwrap_or_default();
            if now.len() >= 10 || Instant::now() > deadline {
                break (run, now);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!mine.is_empty(), "the run created namespaces ({run:?})");
        Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let left: Vec<String> = namespaces()
            .into_iter()
            .filter(|n| mine.contains(n))
            .collect();
        if expect_left {
            assert!(!left.is_empty(), "SIGKILL leaves namespaces behind");
            let out = {
                let _one = CLEANUP
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cleanup()
            };
            assert_eq!(out.status.code(), Some(0));
            let still: Vec<String> = namespaces()
                .into_iter()
                .filter(|n| mine.contains(n))
                .collect();
            assert!(still.is_empty(), "cleanup left {still:?}\n{stderr}");
        } else {
            assert_eq!(status.code(), Some(130), "SIG{signal} exits 130");
            assert!(left.is_empty(), "SIG{signal} left {left:?}\n{stderr}");
        }
    }
}

/// Runs `measure` with `args`; its exit code, stdout and stderr.
fn measure(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bins::harness())
        .arg("measure")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_runs_at_once_both_measure_right_and_leave_nothing() {
    if !require("measure_concurrent", NEEDS) {
        return;
    }
    let before = namespaces();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--topology",
        "docker-run,earthly-with-docker",
        "--clients",
        "ttl,sdk",
    ];
    let reports = measure::at_once(
        2,
        &[&args[..], &["--http-tokens", "required"]].concat(),
        dir.path(),
    );
    for report in reports {
        let needs: Vec<(String, u64)> = report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["topology"].as_str().unwrap().to_owned(),
                    c["minimal_hop_limit"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            needs,
            [
                ("docker-run".to_owned(), 2),
                ("docker-run".to_owned(), 2),
                ("earthly-with-docker".to_owned(), 4),
                ("earthly-with-docker".to_owned(), 4)
            ]
        );
        assert_eq!(report["exit_code"], 0);
    }
    let left = namespaces_left_since(&before);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_full_run_that_does_not_cover_the_baseline_says_so_and_exits_2() {
    if !require("measure_baseline_coverage", NEEDS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("hop-limits.toml");
    std::fs::write(
        &baseline,
        "[hop-limits]
host = 1
\"chain:2\" = 3
",
    )
    .unwrap();
    let baseline = baseline.to_str().unwrap();
    // Restricted to host: chain:2 is not asked for, and host is as recorded.
    let (code, stdout, stderr) = measure(&[
        "--topology",
        "host",
        "--clients",
        "ttl",
        "--baseline",
        baseline,
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // A full run (every preset) that cannot say anything about chain:2.
    let (code, _, stderr) = measure(&["--clients", "ttl", "--baseline", baseline]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("records chain:2, which this run did not measure"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_docker_engine_is_a_clear_error_and_exit_2() {
    if !require("measure_no_engine", NEEDS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-engine.sock");
    let out = Command::new(bins::harness())
        .args(["measure", "--backend", "docker", "--topology", "docker-run"])
        .args(["--clients", "ttl"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Docker Engine"), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
}

#[test]
fn a_client_that_crashes_is_a_failed_measurement_with_its_stderr_redacted() {
    use std::os::unix::fs::PermissionsExt as _;
    if !require("measure_client_crash", NEEDS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let fake_cli = dir.path().join("aws");
    std::fs::write(
        &fake_cli,
        format!(
            "#!/bin/sh\n\
             echo 'Traceback (most recent call last):' >&2\n\
             echo '  aws_secret_access_key = {secret}' >&2\n\
             echo \"KeyError: 'Arn'\" >&2\n\
             exit 255\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake_cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(bins::harness())
        .args(["measure", "--topology", "host", "--clients", "cli"])
        .args(["--http-tokens", "required"])
        .env("IMDS_AWS_CLI", &fake_cli)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("topology host, client cli"), "{stderr}");
    assert!(stderr.contains("the AWS CLI crashed"), "{stderr}");
    assert!(stderr.contains("KeyError: 'Arn'"), "{stderr}");
    assert!(
        stderr.contains("aws_secret_access_key = <redacted>"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
}

/// A client asked for whose Debian packages are not installed is exit 2, naming them and
/// the install. Here the packages are installed, so the run gets a PATH on which
/// `dpkg-query` is missing (nothing can confirm them), with the network tools the
/// netns backend checks for first.
#[test]
fn a_requested_client_that_is_not_installed_is_exit_2_with_its_install() {
    if !require("missing_client", NEEDS) {
        return;
    }
    let path = tempfile::tempdir().unwrap();
    for tool in ["ip", "iptables", "iptables-restore", "iptables-save"] {
        std::os::unix::fs::symlink(Path::new("/usr/sbin").join(tool), path.path().join(tool))
            .unwrap();
    }
    let out = Command::new(bins::harness())
        .args(["measure", "--topology", "host", "--clients", "ruby,ttl"])
        .env("PATH", path.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the ruby client (aws-sdk-core) was not found")
            && stderr.contains("apt-get install ruby-aws-sdk-core"),
        "{stderr}"
    );
}

/// The command lines of the user-space stacks (slirp4netns, pasta) that serve this
/// run's namespaces.
fn stacks_of(run: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args([
            "-af",
            &format!("^(slirp4netns|pasta) .*/run/netns/imdsh-{run}-"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            line.split_once(' ')
                .map(|(_pid, command)| command.to_string())
        })
        .collect()
}

/// Waits up to `within` for `done`.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The real slirp4netns and pasta of proxied layers go with the run, on Ctrl-C and on
/// SIGKILL alike (slirp4netns's exit pipe closes with the run, pasta has the run's
/// thread as its parent-death signal), and `imds-harness cleanup` finds none left.
#[test]
fn a_runs_user_space_stacks_go_with_it_on_ctrl_c_and_after_sigkill_with_cleanup() {
    if !require(
        "measure_stacks_cleanup",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::UserStacks,
        ],
    ) {
        return;
    }
    for signal in ["INT", "KILL"] {
        let mut child = Command::new(bins::harness())
            .args([
                "measure",
                "--topology",
                // Both slow enough to be caught alive: the CLI twice behind pasta, five
                // failing SDK runs of 1 s before slirp4netns's hop limit.
                "podman-rootless-pasta,chain:rrrrrp",
                "--clients",
                "cli,sdk",
                "--http-tokens",
                "required,optional",
                "--parallel",
                "2",
            ])
            .args(["--strategy", "linear", "--probe-timeout-ms", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut run = None;
        let started = eventually(Duration::from_secs(20), || {
            run = run.take().or_else(|| run_of(child.id()));
            run.as_deref().is_some_and(|r| {
                let stacks = stacks_of(r);
                stacks.iter().any(|s| s.starts_with("pasta "))
                    && stacks.iter().any(|s| s.starts_with("slirp4netns "))
            })
        });
        let run = run.expect("the run has an id");
        assert!(started, "the run started its stacks: {:?}", stacks_of(&run));
        Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        if signal == "INT" {
            assert!(
                eventually(Duration::from_secs(5), || stacks_of(&run).is_empty()),
                "Ctrl-C left {:?}",
                stacks_of(&run)
            );
            continue;
        }
        assert!(
            eventually(Duration::from_secs(5), || stacks_of(&run).is_empty()),
            "a stack outlived a killed run: {:?}",
            stacks_of(&run)
        );
        let out = {
            let _one = CLEANUP
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cleanup()
        };
        assert_eq!(out.status.code(), Some(0));
        assert!(
            eventually(Duration::from_secs(5), || stacks_of(&run).is_empty()),
            "cleanup left {:?}",
            stacks_of(&run)
        );
    }
}

/// A user-space stack that outlived its run (as pasta may on a busy machine) is killed by
/// `imds-harness cleanup`, which says so; one of a live run (this test's) is left alone.
/// The stand-ins are processes named `slirp4netns` whose arguments name a run's
/// namespace, as the real one's do.
#[test]
fn cleanup_kills_and_names_the_stacks_of_dead_runs_only() {
    if !require("cleanup_stacks", NEEDS) {
        return;
    }
    let live_run = imds_harness::lifecycle::run_id().unwrap();
    let dead = format!("/run/netns/imdsh-dead{live_run}-0-p1");
    let live = format!("/run/netns/imdsh-{live_run}-0-p1");
    let stand_in = |netns: &str| {
        Command::new("bash")
            .args([
                "-c",
                &format!("exec -a slirp4netns tail -F {netns} 2>/dev/null"),
            ])
            .spawn()
            .unwrap()
    };
    let _one = CLEANUP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut stale = stand_in(&dead);
    let mut alive = stand_in(&live);
    // Until both have become `slirp4netns`.
    let named = |child: &std::process::Child| {
        std::fs::read(format!("/proc/{}/cmdline", child.id()))
            .is_ok_and(|c| c.starts_with(b"slirp4netns\0"))
    };
    assert!(eventually(Duration::from_secs(5), || named(&stale) && named(&alive)));
    let out = cleanup();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let status = stale.wait().unwrap();
    assert!(
        !status.success(),
        "the stale stack was not killed: {status}"
    );
    assert!(
        stdout.contains("killed 1 user-space network stack(s) of dead runs:")
            && stdout.contains(&format!("slirp4netns -F {dead}")),
        "{stdout}"
    );
    assert!(!stdout.contains("nothing to clean up"), "{stdout}");
    assert_eq!(
        alive.try_wait().unwrap(),
        None,
        "a live run's stack was killed"
    );
    alive.kill().unwrap();
    alive.wait().unwrap();
}
