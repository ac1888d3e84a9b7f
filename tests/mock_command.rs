//! `imds-harness mock` as a user runs it: one JSON line, served until SIGTERM, exit 0;
//! bad flags exit 2; its logs never carry a secret.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::bins;
use imds_e2e::raw_http::send;
use imds_e2e::require::{require, Requirement};

/// The one JSON line a started `imds-harness mock` prints: its endpoints.
fn endpoints_line(child: &mut std::process::Child) -> serde_json::Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).expect("one JSON line")
}

/// The AWS CLI's JSON answer to `args` in `env`; the call must succeed.
fn aws_json(env: &imds_harness::probe::env::ClientEnv, args: &[&str]) -> serde_json::Value {
    let out = env
        .apply(duct::cmd(AWS_CLI, args))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `imds-harness mock ARGS`, its stderr dropped, and the endpoints it printed.
fn spawn_mock(args: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut child = Command::new(bins::harness())
        .arg("mock")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("imds-harness runs");
    let endpoints = endpoints_line(&mut child);
    (child, endpoints)
}

#[test]
fn mock_prints_its_endpoints_serves_the_cli_and_stops_on_sigterm_without_leaking_secrets() {
    if !require("mock_command", &[Requirement::AwsCli]) {
        return;
    }
    let mut child = Command::new(bins::harness())
        .args([
            "mock",
            "--hop-limit",
            "2",
            "--role",
            "ci-role",
            "--account",
            "210987654321",
        ])
        .env("IMDS_HARNESS_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imds-harness runs");
    let endpoints = endpoints_line(&mut child);
    let keys: Vec<_> = endpoints.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ec2", "imds", "sts"]);

    let home = tempfile::tempdir().unwrap();
    let imds = endpoints["imds"].as_str().unwrap();
    let env = isolated(home.path(), imds);
    let identity = aws_json(
        &env,
        &[
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            endpoints["sts"].as_str().unwrap(),
        ],
    );
    assert_eq!(identity["Account"], "210987654321");

    // The secret the CLI just used, fetched the same way.
    let creds = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let token = send(
            "PUT",
            &format!("{imds}latest/api/token"),
            &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
            "",
        )
        .await
        .body;
        send(
            "GET",
            &format!("{imds}latest/meta-data/iam/security-credentials/ci-role"),
            &[("x-aws-ec2-metadata-token", &token)],
            "",
        )
        .await
        .body
    });
    let creds: serde_json::Value = serde_json::from_str(&creds).unwrap();

    nix_kill(child.id(), "TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "SIGTERM exits 0");
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains("GetCallerIdentity") || logs.contains("sts"),
        "the logs say something: {logs}"
    );
    for secret in ["SecretAccessKey", "Token"] {
        let value = creds[secret].as_str().unwrap();
        assert!(!logs.contains(value), "{secret} leaked into the logs");
    }
}

fn nix_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bad_flags_get_a_clear_message_and_exit_2() {
    for (args, expect) in [
        (vec!["mock", "--hop-limit", "0"], "hop limit"),
        (vec!["mock", "--hop-limit", "65"], "1 to 64"),
        (
            vec!["mock", "--http-tokens", "sometimes"],
            "required, optional",
        ),
        (vec!["mock", "--imds", "not-an-address"], "--imds"),
        (vec!["mock", "--account", "12"], "12 digits"),
        (vec!["mock", "--instance-id", "vm-1"], "instance id"),
        (vec!["mock", "--throttle", "1"], "throttle rate 1"),
        (vec!["mock", "--throttle", "lots"], "--throttle"),
        (vec!["mock", "--launch-template", "ci-runners:65"], "1..=64"),
        (
            vec!["mock", "--launch-template", "x"],
            "launch template name",
        ),
    ] {
        let out = Command::new(bins::harness()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mock_flags_post_tags_notices_lifecycle_maintenance_and_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let user_data = dir.path().join("user-data");
    std::fs::write(&user_data, "#!/bin/sh\necho hello\n").unwrap();
    let (mut child, endpoints) = spawn_mock(&[
        "--instance-metadata-tags",
        "enabled",
        "--tag",
        "team=builds",
        "--spot-action",
        "stop",
        "--rebalance",
        "--lifecycle-state",
        "Warmed:Stopped",
        "--maintenance",
        "instance-retirement",
        "--user-data-file",
        user_data.to_str().unwrap(),
    ]);
    let imds = endpoints["imds"].as_str().unwrap().trim_end_matches('/');
    let token = send(
        "PUT",
        &format!("{imds}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        "",
    )
    .await
    .body;
    let get = |path: &str| {
        let url = format!("{imds}{path}");
        let token = token.clone();
        async move {
            send(
                "GET",
                &url,
                &[("x-aws-ec2-metadata-token", token.as_str())],
                "",
            )
            .await
            .body
        }
    };
    assert_eq!(get("/latest/meta-data/tags/instance/team").await, "builds");
    let action: serde_json::Value =
        serde_json::from_str(&get("/latest/meta-data/spot/instance-action").await).unwrap();
    assert_eq!(action["action"], "stop");
    let rebalance: serde_json::Value =
        serde_json::from_str(&get("/latest/meta-data/events/recommendations/rebalance").await)
            .unwrap();
    assert!(rebalance["noticeTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        get("/latest/meta-data/autoscaling/target-lifecycle-state").await,
        "Warmed:Stopped"
    );
    let events: serde_json::Value =
        serde_json::from_str(&get("/latest/meta-data/events/maintenance/scheduled").await).unwrap();
    assert_eq!(events[0]["Code"], "instance-retirement");
    assert!(events[0]["NotBefore"].as_str().unwrap().ends_with(" GMT"));
    assert_eq!(get("/latest/user-data").await, "#!/bin/sh\necho hello\n");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let missing = dir.path().join("missing");
    for (flag, value) in [
        ("--tag", "no-value"),
        ("--spot-action", "reboot"),
        ("--lifecycle-state", "Running"),
        ("--maintenance", "reboot-now"),
        ("--user-data-file", missing.to_str().unwrap()),
    ] {
        let out = Command::new(bins::harness())
            .args(["mock", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(value), "{stderr}");
    }
}

#[test]
fn mock_flags_make_a_fleet_and_launch_templates_the_cli_reads() {
    if !require("mock_fleet_flags", &[Requirement::AwsCli]) {
        return;
    }
    let (mut child, endpoints) = spawn_mock(&[
        "--fleet",
        "30",
        "--seed",
        "7",
        "--launch-template",
        "ci-runners:2",
        "--launch-template",
        "pets",
    ]);
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), endpoints["imds"].as_str().unwrap());
    let ec2 = endpoints["ec2"].as_str().unwrap();
    let aws = |args: &[&str]| aws_json(&env, args);
    let instances = aws(&[
        "ec2",
        "describe-instances",
        "--page-size",
        "10",
        "--endpoint-url",
        ec2,
    ]);
    assert_eq!(instances["Reservations"].as_array().unwrap().len(), 31);
    let templates = aws(&["ec2", "describe-launch-templates", "--endpoint-url", ec2]);
    let names: Vec<_> = templates["LaunchTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["LaunchTemplateName"].as_str().unwrap().to_owned())
        .collect();
    // The fleet's three, then the flags'.
    assert_eq!(
        names,
        [
            "gha-runners",
            "earthly-builders",
            "gitlab-dind",
            "ci-runners",
            "pets"
        ]
    );
    let version = aws(&[
        "ec2",
        "describe-launch-template-versions",
        "--launch-template-name",
        "ci-runners",
        "--endpoint-url",
        ec2,
    ]);
    assert_eq!(
        version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["MetadataOptions"]
            ["HttpPutResponseHopLimit"],
        2
    );
    nix_kill(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}
