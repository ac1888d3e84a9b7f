//! The shim is copied onto build hosts and into build images: it shares the vocabulary
//! crate with the harness, and nothing else of it.

use std::process::Command;

#[test]
fn the_shim_builds_neither_the_harness_nor_bollard() {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "imds-shim", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(workspace)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"imds-vocab"), "{tree}");
    for forbidden in ["imds-harness", "bollard", "testcontainers"] {
        assert!(
            !crates.contains(&forbidden),
            "imds-shim depends on {forbidden}"
        );
    }
}
