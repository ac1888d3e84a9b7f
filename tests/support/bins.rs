//! Where the workspace's binaries are: beside the test executable's `deps/` folder.

use std::path::PathBuf;

/// `$CARGO_TARGET_DIR/<profile>`, where the workspace's binaries are.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("tests live in target/<profile>/deps");
    deps.parent()
        .expect("target/<profile> exists")
        .to_path_buf()
}

/// A workspace binary, built by `cargo build --workspace --bins` before the tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub fn harness() -> PathBuf {
    workspace_bin("imds-harness")
}

pub fn shim() -> PathBuf {
    workspace_bin("imds-shim")
}
