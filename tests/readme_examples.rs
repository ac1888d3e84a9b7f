//! The README's "Using the mock in your own tests" runs: its shell blocks as they are,
//! its Rust blocks as the tests below (each block must be, line for line, in this file).

use std::process::Command;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use imds_e2e::require::{require, Need};
use imds_harness::mock::{HopLimit, HttpTokens, ImdsMock, ImdsMockContainer, MockAws};
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

/// The Rust SDK gets the role's credentials at `imds`.
async fn sdk_gets_credentials(imds: &str) {
    let provider =
        ProviderConfig::without_region().with_http_client(HttpClientBuilder::new().build_http());
    let client = imds::Client::builder()
        .configure(&provider)
        .endpoint(imds)
        .unwrap()
        .build();
    let credentials = imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&provider)
        .imds_client(client)
        .build()
        .provide_credentials()
        .await
        .unwrap();
    assert!(credentials.access_key_id().starts_with("ASIA"));
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
    sdk_gets_credentials(imds).await;
    assert_eq!(mock.options().hop_limit.get(), 2);
    Ok(())
}

/// Runs `imds-harness images`, so that `imds-harness/mock:latest` is the current mock.
fn images() {
    let out = Command::new(imds_e2e::bins::harness())
        .arg("images")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_testcontainers_example() -> TestResult {
    if !require("readme_testcontainers_example", &[Need::Docker]) {
        return Ok(());
    }
    images();
    let mock = ImdsMock::default()
        .with_hop_limit(HopLimit::new(2)?)
        .with_role("ci-role")
        .with_label("imds-harness", "1") // optional: lets `imds-harness cleanup` find it
        .start()
        .await?;
    let endpoints = mock.endpoints().await?; // IMDS, STS and EC2 URLs as this host reaches them
    sdk_gets_credentials(&endpoints.imds).await;
    Ok(())
}

#[test]
fn the_shell_example() {
    if !require("readme_shell_example", &[Need::Docker, Need::AwsCli]) {
        return;
    }
    images();
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
