//! `imds-shim probe --json` at a leaf: the `sdk` and `ttl` clients.

use std::path::PathBuf;
use std::time::Duration;

use imds_vocab::report::{ProbeReport, Steps};

use super::env::ClientEnv;
use super::leaf::{timed, Leaf, Program};
use super::outcome::{stderr_tail, ProbeError, ProbeOutcome};

/// Finds `imds-shim`: `$IMDS_SHIM`, beside this executable (or one folder up, for
/// test executables in `deps/`), then `PATH`.
pub fn locate() -> Result<PathBuf, ProbeError> {
    crate::which::project_binary("imds-shim", "IMDS_SHIM").ok_or(ProbeError::MissingBinary(
        "imds-shim",
        "build it with `cargo build --workspace --bins`, or set IMDS_SHIM".into(),
    ))
}

/// Runs `imds-shim probe --json` at `leaf` for `steps` (the `sdk` or the `ttl` probe),
/// with `timeout` as its IMDS timeout, and reads its JSON report.
pub fn run(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    steps: Steps,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let timeout_ms = timeout.as_millis().to_string();
    let args = [
        "probe",
        "--json",
        "--only",
        steps.into(),
        "--timeout-ms",
        timeout_ms.as_str(),
    ];
    let (output, elapsed) = timed(leaf, Program::Shim, &args, env)?;
    let report: ProbeReport =
        serde_json::from_slice(&output.stdout).map_err(|_| ProbeError::NoReport {
            status: output.status.to_string(),
            stderr_tail: stderr_tail(&output.stderr),
        })?;
    Ok(ProbeOutcome {
        ok: report.ok,
        hop_limit_needed: report.hop_limit_needed(),
        arn: report.arn().map(str::to_owned),
        reason: report.first_error().map(str::to_owned),
        message: (!report.ok).then(|| report.first_error().unwrap_or_default().to_owned()),
        elapsed,
    })
}
