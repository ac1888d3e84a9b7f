//! `imds-shim check`, `enforce` and `run` against the mock in a simulated EC2 instance.
//!
//! Every command that talks to IMDS or EC2 runs inside the site's namespaces (`site.host()` is
//! the instance, depth 0; `site.leaf()` is where an Earthly RUN step runs), with an isolated
//! client environment pointing at the mock. Tests without a site turn IMDS off and point it at a
//! closed loopback port, so nothing leaves the machine.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_e2e::shim_site::ShimSite;
use imds_mock::MockConfig;
use imds_vocab::HopLimit;

const NETNS: &[Requirement] = &[Requirement::Root, Requirement::NetTools];
const INSTANCE: &str = "i-0123456789abcdef0";
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");

/// A simulated instance running an Earthly RUN step topology at `hop_limit`.
fn sim(hop_limit: u32, config: MockConfig) -> ShimSite {
    let sim = ShimSite::start("earthly-run", config);
    sim.site
        .mock()
        .set_hop_limit(HopLimit::new(hop_limit).unwrap());
    sim
}

/// What these tests ask of their site.
trait EarthlyRunSite {
    fn leaf_probe(&self) -> Output;
    fn hop_limit(&self) -> u8;
}

impl EarthlyRunSite for ShimSite {
    /// The SDK probe where an Earthly RUN step runs.
    fn leaf_probe(&self) -> Output {
        self.shim(self.site.leaf(), &["probe", "--only", "sdk"])
    }

    fn hop_limit(&self) -> u8 {
        self.site.mock().options().hop_limit.get()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_low_hop_limit_is_caught_then_raised_to_exactly_the_need() {
    if !require("shim_raise", NETNS) {
        return;
    }
    let sim = sim(2, MockConfig::default());
    let baseline = ["--baseline", BASELINE];

    let check = sim.at_host(&["check", baseline[0], baseline[1]]);
    assert_eq!(check.status.code(), Some(1), "{}", show(&check));
    let stdout = text(&check.stdout);
    assert!(
        stdout.starts_with(&format!(
            "too low: instance {INSTANCE} has hop limit 2, earthly-run needs 3 (from {BASELINE})"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "fix: aws ec2 modify-instance-metadata-options --instance-id {INSTANCE} \
         --http-put-response-hop-limit 3 --http-endpoint enabled\n"
    )));

    let before = sim.leaf_probe();
    assert_eq!(before.status.code(), Some(1), "{}", show(&before));

    // A dry run prints the change and changes nothing.
    let options = sim.site.mock().options();
    let dry = sim.at_host(&["enforce", baseline[0], baseline[1]]);
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    assert!(text(&dry.stdout).contains("HttpPutResponseHopLimit  2 -> 3"));
    assert!(text(&dry.stdout).contains("dry run: nothing changed"));
    assert_eq!(sim.site.mock().options(), options);

    let apply = sim.at_host(&["enforce", baseline[0], baseline[1], "--apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    assert!(
        text(&apply.stdout).contains("applied after"),
        "{}",
        show(&apply)
    );
    assert!(text(&apply.stdout).contains("verification from here:"));
    assert_eq!(sim.hop_limit(), 3);

    let check = sim.at_host(&["check", baseline[0], baseline[1]]);
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    assert!(text(&check.stdout).starts_with("ok: instance"));

    // Idempotent.
    let again = sim.at_host(&["enforce", baseline[0], baseline[1], "--apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(text(&again.stdout).contains("no change needed"));

    let after = sim.leaf_probe();
    assert_eq!(after.status.code(), Some(0), "{}", show(&after));
    assert!(
        text(&after.stdout).contains("assumed-role/imds-harness-build-role/i-0123456789abcdef0"),
        "{}",
        show(&after)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_high_hop_limit_is_lowered_to_the_need_after_waiting_for_applied() {
    if !require("shim_lower", NETNS) {
        return;
    }
    let config = MockConfig {
        apply_delay: Duration::from_millis(1200),
        ..MockConfig::default()
    };
    let sim = sim(5, config);

    let check = sim.at_host(&["check", "--baseline", BASELINE]);
    assert_eq!(check.status.code(), Some(3), "{}", show(&check));
    assert!(
        text(&check.stdout).starts_with(&format!(
            "higher than needed: instance {INSTANCE} has hop limit 5, earthly-run needs only 3"
        )),
        "{}",
        show(&check)
    );

    let started = Instant::now();
    let apply = sim.at_host(&["enforce", "--baseline", BASELINE, "--apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "waited for applied"
    );
    assert_eq!(sim.hop_limit(), 3);

    let probe = sim.leaf_probe();
    assert_eq!(probe.status.code(), Some(0), "{}", show(&probe));

    // --need overrides the baseline: the host alone needs 1.
    let check = sim.at_host(&["check", "--need", "1"]);
    assert_eq!(check.status.code(), Some(3), "{}", show(&check));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_modify_is_reported_quickly_and_changes_nothing() {
    if !require("shim_denied", NETNS) {
        return;
    }
    let sim = sim(2, MockConfig::default());
    sim.site.mock().deny("ModifyInstanceMetadataOptions", true);
    let started = Instant::now();
    let out = sim.at_host(&["enforce", "--baseline", BASELINE, "--apply"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "the instance role may not call ec2:ModifyInstanceMetadataOptions (UnauthorizedOperation)"
        ),
        "{}",
        show(&out)
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert_eq!(sim.hop_limit(), 2);

    // A denied DescribeInstances stops `check` the same way.
    sim.site.mock().deny("DescribeInstances", true);
    let out = sim.at_host(&["check", "--baseline", BASELINE]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("ec2:DescribeInstances (UnauthorizedOperation)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_diagnoses_a_real_aws_cli_failure_in_the_earthly_run_step() {
    if !require(
        "shim_run_cli",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::AwsCli,
        ],
    ) {
        return;
    }
    let sim = sim(2, MockConfig::default());
    let leaf = sim.site.leaf().name().to_string();
    let aws = imds_e2e::aws_env::AWS_CLI;
    let out = sim.at_host(&[
        "run",
        "--baseline",
        BASELINE,
        "--",
        "ip",
        "netns",
        "exec",
        &leaf,
        aws,
        "sts",
        "get-caller-identity",
    ]);
    // The CLI's own status, passed through: Debian's AWS CLI 2.9.19 exits 253 when it finds no
    // credentials (not 255, as BRIEF.md says).
    assert_eq!(out.status.code(), Some(253), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("imds-shim: too low: instance"), "{stderr}");
    assert!(stderr.contains("Unable to locate credentials"), "{stderr}");
    assert!(
        stderr.contains("said by:      the AWS CLI (Unable to locate credentials."),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("instance:     {INSTANCE} has hop limit 2")));
    assert!(stderr.contains(&format!(
        "aws ec2 modify-instance-metadata-options --instance-id {INSTANCE} \
         --http-put-response-hop-limit 3 --http-endpoint enabled"
    )));
    assert!(stderr.contains("VERSION --run-with-aws 0.8"));
}

/// `imds-shim <args>` with IMDS turned off and pointed at a closed loopback port.
fn shim_offline(args: &[&str], dir: &Path) -> Output {
    Command::new(bins::shim())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9/")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_REGION", "us-east-1")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn needs_outside_1_to_64_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["check", "enforce"] {
        for need in ["0", "65"] {
            let out = shim_offline(&[cmd, "--need", need], dir.path());
            assert_eq!(out.status.code(), Some(2), "{cmd} {need}: {}", show(&out));
            assert!(
                text(&out.stderr).contains("is not in 1..=64"),
                "{}",
                show(&out)
            );
        }
    }
}

/// `whoami` in a simulated instance: the instance role where hop limit 2 reaches (the
/// host), nothing two routing hops away, and exit 1 with the default chain's attempts.
#[tokio::test(flavor = "multi_thread")]
async fn whoami_says_who_the_place_is_or_why_nobody() {
    if !require("shim_whoami", NETNS) {
        return;
    }
    let sim = sim(2, MockConfig::default());
    let sts = [
        "whoami",
        "--sts-endpoint",
        imds_harness::backend::endpoints::STS_URL,
    ];
    let host = sim.at_host(&sts);
    assert!(host.status.success(), "{}", show(&host));
    let identity: serde_json::Value = serde_json::from_slice(&host.stdout).unwrap();
    let arn = identity["Arn"].as_str().unwrap();
    assert!(arn.ends_with(&format!("/{INSTANCE}")), "{arn}");
    assert_eq!(identity["Account"], "123456789012");

    let leaf = sim.shim(sim.site.leaf(), &sts);
    assert_eq!(leaf.status.code(), Some(1), "{}", show(&leaf));
    let stderr = text(&leaf.stderr);
    assert!(stderr.contains("imds-shim whoami: no identity"), "{stderr}");
    assert!(stderr.contains("Ec2InstanceMetadata"), "{stderr}");
    assert!(leaf.stdout.is_empty(), "{}", show(&leaf));
}

#[test]
fn check_without_imds_says_so_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim_offline(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("IMDS is turned off here"));
}

#[test]
fn run_passes_exit_codes_through() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim_offline(&["run", "--", "sh", "-c", "exit 7"], dir.path());
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    // The check could not run: a warning, and the command ran anyway.
    assert!(text(&out.stderr).contains("imds-shim: warning: cannot check: IMDS is turned off here"));
    assert!(!text(&out.stderr).contains("no AWS credentials"));

    let out = shim_offline(&["run", "--no-check", "--", "/nonexistent/cmd"], dir.path());
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
}

#[test]
fn run_leaves_a_succeeding_command_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        "printf 'out 1\\n'; printf 'err 1\\n' >&2; printf 'Unable to locate credentials\\n'";
    let out = shim_offline(&["run", "--no-check", "--", "sh", "-c", script], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "out 1\nUnable to locate credentials\n");
    assert_eq!(text(&out.stderr), "err 1\n");
}

#[test]
fn run_diagnoses_a_credentials_failure() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo building; echo 'Unable to locate credentials. You can configure credentials by running \"aws configure\".' >&2; exit 255";
    let out = shim_offline(
        &["run", "--topology", "docker-run", "--", "sh", "-c", script],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert_eq!(text(&out.stdout), "building\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("imds-shim: the command failed because it got no AWS credentials."),
        "{stderr}"
    );
    assert!(stderr.contains("said by:      the AWS CLI (Unable to locate credentials."));
    assert!(stderr.contains("in a `docker run` container on the default bridge (1 routing hop)"));
    assert!(stderr.contains("needs:        hop limit 2 (from the baseline built into imds-shim"));
    assert!(stderr.contains("--instance-id <instance-id> --http-put-response-hop-limit 2"));
    assert!(
        !stderr.contains("RUN --aws"),
        "not an Earthly build: {stderr}"
    );

    // A failure that is not about credentials: its code, no diagnosis.
    let out = shim_offline(
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo 'error: no such file' >&2; exit 3",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(!text(&out.stderr).contains("no AWS credentials"));
}

#[test]
fn run_strict_refuses_to_run_when_the_check_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim_offline(
        &["run", "--strict", "--", "sh", "-c", "touch ran"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("--strict: not running the command"));
    assert!(!dir.path().join("ran").exists());
}
