//! A client that prints STS's `GetCallerIdentity` answer as JSON on success and its
//! own words on stderr on failure (the AWS CLI, and the SDK clients' programs), judged
//! by its exit code, its JSON and its stderr.

use super::env::ClientEnv;
use super::leaf::{timed, Leaf, Program};
use super::outcome::{stderr_tail, ProbeError, ProbeOutcome};

/// What on stderr shows that the program itself broke (it did not merely fail to get
/// credentials): a Python traceback, a Go panic, a Ruby backtrace.
const CRASH_MARKS: &[&str] = &[
    "Traceback (most recent call last):",
    "panic: ",
    "goroutine 1 [",
    "\n\tfrom ",
];

/// Runs `program args` at `leaf`. `is_failure` says which exit codes the program gives
/// when the client fails as a client (no credentials, refused); any other non-zero code,
/// a signal or a crash mark is the program breaking: the measurement cannot go on.
pub fn run(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    program: Program,
    args: &[&str],
    is_failure: fn(i32) -> bool,
) -> Result<ProbeOutcome, ProbeError> {
    let (output, elapsed) = timed(leaf, program, args, env)?;
    let arn = serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .ok()
        .and_then(|v| v["Arn"].as_str().map(str::to_string));
    let ok = output.status.success() && arn.is_some();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    let crashed = CRASH_MARKS.iter().any(|mark| stderr.contains(mark))
        || !code.is_some_and(|c| c == 0 || is_failure(c));
    if !ok && crashed {
        return Err(ProbeError::Crashed {
            program: program.description(),
            place: leaf.place(),
            status: output.status.to_string(),
            stderr_tail: stderr_tail(&output.stderr),
        });
    }
    Ok(ProbeOutcome {
        ok,
        hop_limit_needed: None,
        arn,
        // The whole message on one line: some clients say why on their first line and
        // add advice after it (aws-sdk-go's "For verbose messaging see ...").
        reason: (!ok).then(|| {
            let lines: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("exit {}: {}", code.unwrap_or(-1), lines.join(" "))
        }),
        message: (!ok).then(|| stderr_tail(&output.stderr)),
        elapsed,
    })
}
