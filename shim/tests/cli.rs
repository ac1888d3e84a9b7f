//! The `imds-shim` binary as a user runs it: exit codes, JSON on stdout, config errors.
//!
//! Every run has a cleared environment pointing IMDS and STS at local addresses, so nothing
//! leaves the machine and no real credentials are in reach.

use std::net::TcpListener;
use std::process::{Command, Output};

fn probe(endpoint: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-shim"));
    cmd.env_clear()
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
        .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
        .env("AWS_CONFIG_FILE", "/nonexistent/imds-shim-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/imds-shim-test/credentials",
        )
        .env("AWS_REGION", "us-east-1")
        .arg("probe")
        .args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run imds-shim")
}

#[test]
fn ttl_only_json_against_a_local_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let out = probe(&url, &[], &["--only", "ttl", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["endpoint"], url.as_str());
    assert_eq!(v["ttl"]["ok"], true);
    assert_eq!(v["ttl"]["hop_limit_needed"], 1);
    assert!(v["ttl"]["elapsed_ms"].is_f64());
    assert!(v["token"].is_null() && v["credentials"].is_null() && v["identity"].is_null());
    assert_eq!(v["ok"], true);
}

#[test]
fn closed_port_fails_with_exit_1_and_a_verdict() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(&format!("http://{addr}"), &[], &["--timeout-ms", "300"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("✗ ttl"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("verdict: this place cannot get credentials: connection refused"),
        "{text}"
    );
}

#[test]
fn disabled_imds_fails_without_connecting() {
    // A listener that would record any connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let out = probe(&url, &[("AWS_EC2_METADATA_DISABLED", "true")], &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["token"]["error"]
        .as_str()
        .unwrap()
        .contains("AWS_EC2_METADATA_DISABLED=true"));
    assert!(
        listener.accept().is_err(),
        "nothing may connect when IMDS is off"
    );
}

#[test]
fn bad_endpoint_is_a_usage_error() {
    let out = probe("ftp://127.0.0.1:9", &[], &["--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "{err}");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let out = probe("http://127.0.0.1:9", &[], &["--ttl-max", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_bad_topology_lists_every_name_and_the_chain_spelling() {
    for cmd in ["check", "enforce", "run"] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imds-shim"));
        c.env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
            .args([cmd, "--topology", "podman"]);
        if cmd == "run" {
            c.args(["--", "true"]);
        }
        let out = c.output().expect("run imds-shim");
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("unknown topology `podman`"), "{err}");
        for name in [
            "podman-run",
            "podman-rootless",
            "podman-rootless-pasta",
            "buildah-run",
            "gitlab-dind-job",
            "gitlab-dind-build",
            "k8s-pod-dind",
            "chain:N",
            "chain:rrpr",
        ] {
            assert!(err.contains(name), "{cmd}: {name} missing: {err}");
        }
    }
}

#[test]
fn enforce_print_takes_every_new_preset() {
    // --print calls nothing: the need from the built-in baseline, as infrastructure code.
    for (topology, need) in [
        ("podman-rootless", 1),
        ("podman-rootless-pasta", 1),
        ("podman-run", 2),
        ("buildah-run", 2),
        ("gitlab-dind-job", 2),
        ("gitlab-dind-build", 3),
        ("k8s-pod-dind", 4),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_imds-shim"))
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .current_dir(std::env::temp_dir())
            .args(["enforce", "--topology", topology, "--print", "terraform"])
            .output()
            .expect("run imds-shim");
        assert_eq!(out.status.code(), Some(0), "{topology}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("http_put_response_hop_limit = {need}")),
            "{topology}: {text}"
        );
    }
}
