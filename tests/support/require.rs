//! What a test needs from the machine. Missing: under `CI=true` the test fails; elsewhere
//! it is skipped, loudly: a SKIPPED line on the terminal and an entry in the list that
//! `make test` prints at the end ([`skipped_file`]).
//!
//! The tiers: `make check` runs, with `IMDS_TIER=fast`, every test that needs neither root
//! nor Docker; `make test` runs them all. A test that asks for [`Requirement::Root`] or
//! [`Requirement::Docker`] in the fast tier fails (see [`require`]), so a new one cannot
//! land there unnoticed: the `check` profile of `.config/nextest.toml` must leave it out.

#![allow(
    unsafe_code,
    reason = "geteuid(2), to tell whether the tests run as root"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Something a test needs that may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// euid 0, to create network namespaces.
    Root,
    /// `ip` and `iptables`.
    NetTools,
    /// Debian's AWS CLI at [`crate::aws_env::AWS_CLI`].
    AwsCli,
    /// A Docker Engine that answers `docker info`.
    Docker,
    /// The Debian packages of the SDK clients (`go`, `go-v1`, `ruby`, `boto3`).
    SdkClients,
    /// Python's `junitparser` (PyPI), the JUnit reader the JUnit report is checked with.
    JunitParser,
    /// The user-space network stacks of the proxied layers: slirp4netns and pasta.
    UserStacks,
    /// `cargo deb` (cargo-deb, a cargo subcommand) and Debian's `lintian`: the package.
    DebTools,
    /// Debian's Python `prometheus_client` (its OpenMetrics parser reads the relay's metrics).
    PrometheusParser,
    /// `setfacl` (Debian's `acl`): POSIX ACLs on test directories.
    AclTools,
    /// Python's `cfn-lint` (PyPI, AWS's CloudFormation linter): its IAM policy grammar and
    /// service authorization data, and the linter itself.
    CfnLint,
}

impl Requirement {
    /// What a test that needs this asks of the machine, when that puts it in the slow tier
    /// (`make test` only): root or a Docker Engine.
    fn slow_tier(self) -> Option<&'static str> {
        match self {
            Requirement::Root => Some("root"),
            Requirement::Docker => Some("a Docker Engine"),
            Requirement::NetTools
            | Requirement::AwsCli
            | Requirement::SdkClients
            | Requirement::JunitParser
            | Requirement::UserStacks
            | Requirement::DebTools
            | Requirement::PrometheusParser
            | Requirement::AclTools
            | Requirement::CfnLint => None,
        }
    }

    fn missing(self) -> Option<String> {
        match self {
            Requirement::Root => (nix_euid() != 0).then(|| "not running as root".to_string()),
            Requirement::NetTools => ["/usr/sbin/ip", "/usr/sbin/iptables"]
                .iter()
                .find(|p| !Path::new(p).exists())
                .map(|p| format!("{p} is missing (apt-get install iproute2 iptables)")),
            Requirement::AwsCli => (!Path::new(crate::aws_env::AWS_CLI).exists()).then(|| {
                format!(
                    "{} is missing (apt-get install awscli)",
                    crate::aws_env::AWS_CLI
                )
            }),
            Requirement::Docker => docker_missing(),
            Requirement::SdkClients => {
                use imds_harness::probe::programs::SdkProgram;
                use strum::VariantArray;
                let missing: Vec<&str> = SdkProgram::VARIANTS
                    .iter()
                    .filter(|p| !p.is_installed())
                    .flat_map(|p| p.packages().iter().copied())
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "the SDK clients' Debian packages are missing (apt-get install {}; make test installs them)",
                        missing.join(" ")
                    )
                })
            }
            Requirement::UserStacks => [
                ("/usr/bin/slirp4netns", "slirp4netns"),
                ("/usr/bin/pasta", "passt"),
            ]
            .iter()
            .find(|(p, _)| !Path::new(p).exists())
            .map(|(p, package)| {
                format!("{p} is missing (apt-get install {package}; make test installs it)")
            }),
            Requirement::AclTools => (!Path::new("/usr/bin/setfacl").exists()).then(|| {
                "/usr/bin/setfacl is missing (apt-get install acl; make test installs it)"
                    .to_string()
            }),
            Requirement::DebTools => {
                let cargo_deb = std::process::Command::new(env!("CARGO"))
                    .args(["deb", "--version"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .is_ok_and(|out| out.status.success());
                if cargo_deb {
                    (!Path::new("/usr/bin/lintian").exists()).then(|| {
                        "/usr/bin/lintian is missing (apt-get install lintian; make test installs it)"
                            .to_string()
                    })
                } else {
                    Some(
                        "cargo-deb is missing (cargo install --locked cargo-deb; make test installs it)"
                            .to_string(),
                    )
                }
            }
            Requirement::JunitParser => {
                let found = imports("python3", "junitparser");
                (!found).then(|| {
                    "python3 cannot import junitparser (python3 -m pip install junitparser; \
                     make test installs it)"
                        .to_string()
                })
            }
            Requirement::CfnLint => {
                let found = imports("python3", "cfnlint");
                (!found).then(|| {
                    "python3 cannot import cfnlint (python3 -m pip install cfn-lint; make test \
                     installs it)"
                        .to_string()
                })
            }
            Requirement::PrometheusParser => {
                let found = imports(PYTHON3, "prometheus_client.openmetrics.parser");
                (!found).then(|| {
                    format!(
                        "{PYTHON3} cannot import prometheus_client (apt-get install \
                         python3-prometheus-client; make test installs it)"
                    )
                })
            }
        }
    }
}

/// Debian's Python, whose packages the tests install.
pub const PYTHON3: &str = "/usr/bin/python3";

/// Whether `python` can import `module`.
fn imports(python: &str, module: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success())
}

fn docker_missing() -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(err) => Some(format!(
            "the docker CLI cannot run ({err}): apt-get install docker.io"
        )),
        Ok(out) if !out.status.success() => Some(format!(
            "the Docker Engine is not reachable (`docker info`: {}): start the Docker Engine",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Whether this run is the fast tier (`IMDS_TIER=fast`, what `make check` sets).
pub fn fast_tier() -> bool {
    std::env::var("IMDS_TIER").as_deref() == Ok("fast")
}

/// True when every need is met. Otherwise panics under `CI=true`, or skips loudly (see
/// [`skip`]) and returns false so the test can return early.
///
/// In the fast tier ([`fast_tier`]) a need of root or Docker panics, whether the machine
/// has it or not: the test belongs to the slow tier, and the `check` profile's filter must
/// leave it out.
pub fn require(test: &str, needs: &[Requirement]) -> bool {
    if fast_tier() {
        let slow: Vec<&str> = needs.iter().filter_map(|n| n.slow_tier()).collect();
        assert!(
            slow.is_empty(),
            "{}: needs {}, which the fast tier (`make check`, IMDS_TIER=fast) must not run: \
             add it to the slow tier, the `default-filter` of [profile.check] in \
             .config/nextest.toml (`make test` runs it)",
            qualified(test),
            slow.join(" and ")
        );
    }
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    skip(test, &missing.join("; "));
    false
}

/// The list of skipped tests: `IMDS_SKIPPED_FILE`, or `skipped-tests.txt` beside the
/// workspace's binaries (`$CARGO_TARGET_DIR/debug/`), where `make test` clears it before
/// the suite and prints it after.
pub fn skipped_file() -> PathBuf {
    match std::env::var_os("IMDS_SKIPPED_FILE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => crate::bins::target_profile_dir().join("skipped-tests.txt"),
    }
}

/// `test` cannot run here, for `why`. Under `CI=true` that is a failure (nothing may be
/// skipped in CI): this panics. Elsewhere it writes a SKIPPED line to the real standard
/// error (file descriptor 2, past libtest's capture, which takes only what `print!` and
/// `eprint!` write, so the line shows for a passing test too) and appends
/// `<test>: <why>` to [`skipped_file`].
pub fn skip(test: &str, why: &str) {
    let test = qualified(test);
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: cannot run under CI=true: {why}"
    );
    let line = format!("\n!!!!! SKIPPED {test}: {why} !!!!!\n\n");
    // Not eprintln!: libtest captures that and shows it only for failing tests.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let list = skipped_file();
    let recorded = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&list)
        // One write of one line: lines from tests running in parallel do not mix.
        .and_then(|mut f| f.write_all(format!("{test}: {why}\n").as_bytes()));
    if let Err(err) = recorded {
        let _ = std::io::stderr().lock().write_all(
            format!(
                "!!!!! cannot add {test} to {}: {err} !!!!!\n",
                list.display()
            )
            .as_bytes(),
        );
    }
}

/// `test` as `<test binary>::<test function> (<test>)`, so the list says what to run:
/// libtest names each test's thread after the test.
fn qualified(test: &str) -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, _hash)) => name.to_string(),
            None => stem,
        })
        .unwrap_or_default();
    match std::thread::current().name() {
        Some(name) if name != "main" && name != test => format!("{binary}::{name} ({test})"),
        _ => format!("{binary}::{test}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{require, Requirement};
    use std::process::Command;

    /// Set in the child this test starts: the child is the test that asks for root and
    /// Docker in the fast tier.
    const CHILD: &str = "IMDS_E2E_TIER_CHILD";

    #[test]
    fn the_fast_tier_fails_a_test_that_asks_for_root_or_docker_and_names_the_filter() {
        if std::env::var_os(CHILD).is_some() {
            require(
                "tier_child",
                &[
                    Requirement::Root,
                    Requirement::NetTools,
                    Requirement::Docker,
                ],
            );
            return;
        }
        // This test binary again, running only this test, as `make check` runs it.
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "require::tests::the_fast_tier_fails_a_test_that_asks_for_root_or_docker_and_names_the_filter",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("IMDS_TIER", "fast")
            .env_remove("CI")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "passed in the fast tier:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 failed")
                && stderr.contains(
                    "needs root and a Docker Engine, which the fast tier (`make check`, \
                 IMDS_TIER=fast) must not run"
                )
                && stderr.contains("[profile.check] in .config/nextest.toml"),
            "{stdout}\n{stderr}"
        );
    }
}
