//! Whoever depends on the mock gets what serving needs: the vocabulary crate, HTTP,
//! Tokio and the SigV4 pieces, and nothing of the harness (its Docker client, its
//! command line, its progress bars, tables and reports). testcontainers, and the Docker
//! client it brings, come only with the feature of that name.

use std::process::Command;

/// What the harness needs and a user of the mock never does.
const HARNESS_ONLY: [&str; 5] = [
    "imds-harness",
    "clap",
    "indicatif",
    "comfy-table",
    "quick-junit",
];

/// The crates `imds-mock` builds with `args` (features), by name.
fn normal_dependencies(args: &[&str]) -> Vec<String> {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "imds-mock", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(args)
        .current_dir(workspace)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_mock_builds_none_of_the_harness() {
    let crates = normal_dependencies(&[]);
    for wanted in ["imds-vocab", "hyper", "tokio", "aws-sigv4"] {
        assert!(
            crates.iter().any(|c| c == wanted),
            "no {wanted}: {crates:?}"
        );
    }
    for forbidden in HARNESS_ONLY.iter().chain(&["bollard", "testcontainers"]) {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "imds-mock depends on {forbidden}"
        );
    }
}

#[test]
fn testcontainers_comes_with_its_feature_alone() {
    let crates = normal_dependencies(&["--features", "testcontainers"]);
    assert!(crates.iter().any(|c| c == "testcontainers"), "{crates:?}");
    for forbidden in HARNESS_ONLY {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "imds-mock with testcontainers depends on {forbidden}"
        );
    }
}
