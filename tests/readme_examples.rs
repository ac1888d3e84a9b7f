//! The README's "Using the mock in your own tests" runs: its shell blocks as they are,
//! its Rust blocks as the tests below (each block must be, line for line, in this file).

use std::process::Command;

use imds_e2e::docker::images_command;
use imds_e2e::raw_http::send;
use imds_e2e::require::{require, Need};
use imds_mock::{ImdsMock, ImdsMockContainer, MockAws};
use imds_vocab::{HopLimit, HttpTokens};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECTION: &str = "## Using the mock in your own tests";

/// The fenced blocks of `language` in the README's section.
fn blocks(language: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme.find(SECTION).expect("the README has the section");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let fence = format!("```{language}\n");
    section
        .split(&fence)
        .skip(1)
        .map(|rest| rest[..rest.find("```").expect("a closed block")].to_string())
        .collect()
}

/// The lines of `text` without their indentation, blank ones dropped.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_rust_block_is_in_a_test_that_runs() {
    let rust = blocks("rust");
    assert_eq!(rust.len(), 2, "the library and the testcontainers examples");
    let this_file = include_str!("readme_examples.rs");
    let here = lines(this_file);
    for block in rust {
        let wanted = lines(&block);
        let found = here
            .windows(wanted.len())
            .any(|window| window == wanted.as_slice());
        assert!(found, "not in tests/readme_examples.rs:\n{block}");
    }
}

/// The IMDS at `imds` hands out a session token (what a client asks first).
async fn serves_tokens(imds: &str) {
    let reply = send(
        "PUT",
        &format!("{imds}latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        "",
    )
    .await;
    assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn the_library_example() -> TestResult {
    let mock = MockAws::builder()
        .hop_limit(HopLimit::new(2)?)
        .http_tokens(HttpTokens::Required)
        .role("build-role")
        .start()
        .await?;
    let imds = &mock.endpoints().imds; // AWS_EC2_METADATA_SERVICE_ENDPOINT for your client
    serves_tokens(imds).await;
    assert_eq!(mock.options().hop_limit.get(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_testcontainers_example() -> TestResult {
    if !require("readme_testcontainers_example", &[Need::Docker]) {
        return Ok(());
    }
    images_command(&[]);
    let mock = ImdsMock::default()
        .with_hop_limit(HopLimit::new(2)?)
        .with_role("ci-role")
        .with_label("imds-harness", "1") // optional: lets `imds-harness cleanup` find it
        .start()
        .await?;
    let endpoints = mock.endpoints().await?; // IMDS, STS and EC2 URLs as this host reaches them
    serves_tokens(&endpoints.imds).await;
    Ok(())
}

#[test]
fn the_shell_example() {
    if !require("readme_shell_example", &[Need::Docker, Need::AwsCli]) {
        return;
    }
    images_command(&[]);
    let sh = blocks("sh");
    assert_eq!(sh.len(), 1);
    let home = tempfile::tempdir().unwrap();
    // A clean environment: no credentials or endpoints of the machine's, Debian's CLI.
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &sh[0]])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "arn:aws:sts::123456789012:assumed-role/ci-role/i-0123456789abcdef0"
    );
}
