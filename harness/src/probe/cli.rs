//! Debian's AWS CLI at a leaf: `aws sts get-caller-identity`, judged by its exit code
//! and its own words on stderr.

use std::path::PathBuf;

use super::caller;
use super::env::ClientEnv;
use super::leaf::{Leaf, Program};
use super::outcome::{ProbeError, ProbeOutcome};

/// Debian's `awscli` (v2). Another `aws` on PATH, such as a pip-installed v1, behaves
/// differently and is not used unless `$IMDS_AWS_CLI` names it.
pub const DEBIAN_AWS_CLI: &str = "/usr/bin/aws";

/// Finds the AWS CLI: `$IMDS_AWS_CLI` when set, else [`DEBIAN_AWS_CLI`]; missing, it is
/// an error naming the package to install.
pub fn locate() -> Result<PathBuf, ProbeError> {
    let path: PathBuf =
        std::env::var_os("IMDS_AWS_CLI").map_or_else(|| DEBIAN_AWS_CLI.into(), Into::into);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProbeError::MissingBinary(
            "the AWS CLI",
            format!("{} is missing: apt-get install awscli", path.display()),
        ))
    }
}

/// Runs `aws sts get-caller-identity` at `leaf`, STS at `sts_endpoint`: whatever exit
/// code it gives is its verdict; only a crash mark or a signal is an error.
pub fn run(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    sts_endpoint: &str,
) -> Result<ProbeOutcome, ProbeError> {
    caller::run(
        leaf,
        env,
        Program::AwsCli,
        &[
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            sts_endpoint,
            "--output",
            "json",
        ],
        // Every exit code is the CLI's own verdict (253: no credentials, in Debian's
        // 2.9.19); only a crash mark or a signal means it broke.
        |_| true,
    )
}
