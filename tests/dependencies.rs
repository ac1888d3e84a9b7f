//! What each shipped crate brings along, by `cargo tree`:
//! - the shim is copied onto build hosts and into build images: it shares the
//!   vocabulary crate with the harness, and nothing else of it;
//! - whoever depends on the mock gets what serving needs (the vocabulary crate, HTTP,
//!   Tokio and the SigV4 pieces) and nothing of the harness (its Docker client, its
//!   command line, its progress bars, tables and reports); testcontainers, and the
//!   Docker client it brings, come only with the feature of that name;
//! - the tests build the binaries' dependencies with the binaries' features.

use std::process::Command;

/// What the harness needs and a user of the mock never does.
const HARNESS_ONLY: [&str; 5] = [
    "imds-harness",
    "clap",
    "indicatif",
    "comfy-table",
    "quick-junit",
];

/// `cargo tree` with `args`, one crate a line, without the tree's indentation.
fn cargo_tree(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The crates `package` builds with `args` (features), by name.
fn normal_dependencies(package: &str, args: &[&str]) -> Vec<String> {
    let tree = cargo_tree(&[&["-p", package, "-e", "normal", "--format", "{p}"], args].concat());
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_has(crates: &[String], package: &str, wanted: &[&str]) {
    for wanted in wanted {
        assert!(
            crates.iter().any(|c| c == wanted),
            "{package} has no {wanted}: {crates:?}"
        );
    }
}

fn assert_lacks<'a>(
    crates: &[String],
    package: &str,
    forbidden: impl IntoIterator<Item = &'a str>,
) {
    for forbidden in forbidden {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "{package} depends on {forbidden}"
        );
    }
}

#[test]
fn the_shim_builds_neither_the_harness_nor_bollard() {
    let crates = normal_dependencies("imds-shim", &[]);
    assert_has(&crates, "imds-shim", &["imds-vocab"]);
    assert_lacks(
        &crates,
        "imds-shim",
        ["imds-harness", "imds-mock", "bollard", "testcontainers"],
    );
}

#[test]
fn the_mock_builds_none_of_the_harness() {
    let crates = normal_dependencies("imds-mock", &[]);
    assert_has(
        &crates,
        "imds-mock",
        &["imds-vocab", "hyper", "tokio", "aws-sigv4"],
    );
    assert_lacks(
        &crates,
        "imds-mock",
        HARNESS_ONLY
            .into_iter()
            .chain(["bollard", "testcontainers"]),
    );
}

#[test]
fn testcontainers_comes_with_the_mock_s_feature_alone() {
    let crates = normal_dependencies("imds-mock", &["--features", "testcontainers"]);
    assert_has(
        &crates,
        "imds-mock with testcontainers",
        &["testcontainers"],
    );
    assert_lacks(&crates, "imds-mock with testcontainers", HARNESS_ONLY);
}

/// Every crate of the workspace's build (`cargo build --workspace`) with its features,
/// one line each, and with `edges` (`normal,build` or `normal,build,dev`).
fn features_of_the_build(edges: &str) -> std::collections::BTreeSet<String> {
    cargo_tree(&["--workspace", "-e", edges, "--format", "{p} [{f}]"])
        .lines()
        .map(|line| line.trim_end_matches(" (*)").replace(" (proc-macro)", ""))
        .filter(|line| !line.starts_with("imds-"))
        .collect()
}

/// The tests' build (dev-dependencies too) builds every crate of the binaries' build
/// with the same features, so `cargo test` after `cargo build` reuses them (the root
/// package's workspace-hack dependencies): only bollard is built again, with the
/// testcontainers module's features.
#[test]
fn the_tests_build_reuses_the_binaries_dependencies() {
    let binaries = features_of_the_build("normal,build");
    let tests = features_of_the_build("normal,build,dev");
    let rebuilt: Vec<&String> = binaries
        .iter()
        .filter(|line| !tests.contains(*line))
        .filter(|line| !line.starts_with("bollard ") && !line.starts_with("bollard-stubs "))
        .collect();
    assert!(
        rebuilt.is_empty(),
        "the tests turn on other features of these crates, so cargo test builds them \
         (and all above them) again; add the tests' features to the root package's \
         workspace-hack dependencies: {rebuilt:#?}"
    );
}
