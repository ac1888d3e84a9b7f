//! Debian's AWS CLI at a leaf: `aws sts get-caller-identity`, judged by its exit code
//! and its own words on stderr.

use std::path::PathBuf;

use super::env::ClientEnv;
use super::{timed, Leaf, ProbeError, ProbeOutcome, Program};

/// Debian's `awscli` (v2). Another `aws` on PATH, such as a pip-installed v1, behaves
/// differently and is not used unless `$IMDS_AWS_CLI` names it.
pub const DEBIAN_AWS_CLI: &str = "/usr/bin/aws";

pub fn locate() -> Result<PathBuf, ProbeError> {
    let path: PathBuf = std::env::var_os("IMDS_AWS_CLI")
        .map(Into::into)
        .unwrap_or_else(|| DEBIAN_AWS_CLI.into());
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProbeError::MissingBinary(
            "the AWS CLI",
            format!("{} is missing: apt-get install awscli", path.display()),
        ))
    }
}

/// How a Python program's crash starts on stderr.
const TRACEBACK: &str = "Traceback (most recent call last):";

pub fn run(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    sts_endpoint: &str,
) -> Result<ProbeOutcome, ProbeError> {
    let (output, elapsed) = timed(
        leaf,
        Program::AwsCli,
        &[
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            sts_endpoint,
            "--output",
            "json",
        ],
        env,
    )?;
    let arn = serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .ok()
        .and_then(|v| v["Arn"].as_str().map(str::to_string));
    let ok = output.status.success() && arn.is_some();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A Python traceback or a signal is the CLI breaking, not the CLI finding no
    // credentials: the measurement cannot go on.
    if !ok && (stderr.contains(TRACEBACK) || output.status.code().is_none()) {
        return Err(ProbeError::Crashed {
            program: "the AWS CLI",
            place: leaf.place(),
            status: output.status.to_string(),
            stderr_tail: super::stderr_tail(&output.stderr),
        });
    }
    Ok(ProbeOutcome {
        ok,
        hop_limit_needed: None,
        arn,
        reason: (!ok).then(|| {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            format!(
                "exit {}: {}",
                output.status.code().unwrap_or(-1),
                last.unwrap_or("").trim()
            )
        }),
        elapsed,
    })
}
