//! The examples of the docs run, wherever in README.md and docs/*.md they are: every
//! fenced `sh` block as it is, every fenced `rust` block as the tests below (each block
//! must be, line for line, in this file). A fenced block is an example; output and
//! synopses are indented blocks, which nothing runs.

use std::process::Command;

use imds_e2e::docker::images_command;
use imds_e2e::raw_http::send;
use imds_e2e::require::{require, Requirement};
use imds_mock::{ImdsMock, ImdsMockContainer, MockAws};
use imds_vocab::{HopLimit, HttpTokens};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How many examples of each language the docs hold: the library example (in the README
/// and in docs/mock.md), the testcontainers example and the container example (docs/mock.md).
const RUST_BLOCKS: usize = 3;
const SH_BLOCKS: usize = 1;

/// The documents whose examples run: the README and every page of docs/.
fn documents() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is there")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable document");
            let name = path.strip_prefix(root).unwrap().display().to_string();
            (name, text)
        })
        .collect()
}

/// The fenced blocks of `text`: their language (what follows the opening fence) and body.
fn fenced(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match open.take() {
            None => {
                if let Some(language) = line.strip_prefix("```") {
                    open = Some((language.trim().to_string(), String::new()));
                }
            }
            Some(block) if line.trim_start() == "```" => blocks.push(block),
            Some((language, mut body)) => {
                body.push_str(line);
                body.push('\n');
                open = Some((language, body));
            }
        }
    }
    assert!(open.is_none(), "a fenced block is not closed");
    blocks
}

/// The fenced blocks of `language` in every document.
fn blocks(language: &str) -> Vec<String> {
    documents()
        .iter()
        .flat_map(|(_, text)| fenced(text))
        .filter(|(lang, _)| lang == language)
        .map(|(_, body)| body)
        .collect()
}

#[test]
fn every_fenced_block_is_an_example_that_runs() {
    for (name, text) in documents() {
        for (language, body) in fenced(&text) {
            assert!(
                language == "rust" || language == "sh",
                "{name}: a fenced `{language}` block, which no test runs (indent it if it \
                 is output or a synopsis):\n{body}"
            );
        }
    }
    assert_eq!(blocks("rust").len(), RUST_BLOCKS, "the Rust examples");
    assert_eq!(blocks("sh").len(), SH_BLOCKS, "the shell examples");
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
    assert_eq!(
        rust.len(),
        RUST_BLOCKS,
        "the library and the testcontainers examples"
    );
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
    if !require("readme_testcontainers_example", &[Requirement::Docker]) {
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
    if !require(
        "readme_shell_example",
        &[Requirement::Docker, Requirement::AwsCli],
    ) {
        return;
    }
    images_command(&[]);
    let sh = blocks("sh");
    assert_eq!(sh.len(), SH_BLOCKS);
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
