//! What one run of a client at a leaf found ([`ProbeOutcome`]), or why it could not
//! run ([`ProbeError`]).

use std::time::Duration;

use serde::Serialize;

/// What one run of a client at a leaf found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeOutcome {
    /// The client got the role's identity (for `ttl`: the IMDS was reachable at all).
    pub ok: bool,
    /// For `ttl`: the hop limit this place needs.
    pub hop_limit_needed: Option<u8>,
    /// The ARN STS returned.
    pub arn: Option<String>,
    /// Why not, in the client's own words.
    pub reason: Option<String>,
    /// Everything the client printed on stderr when it failed (its last lines, secrets
    /// masked): the message a user reads.
    pub message: Option<String>,
    /// How long the client ran, from start to exit, at the leaf.
    pub elapsed: Duration,
}

/// Why a client could not be run at a leaf: the program broke, or was never there. A
/// client that runs and gets no identity is a [`ProbeOutcome`], not this.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A client's name that no probe has.
    #[error("unknown client {name:?}: the clients are {known}")]
    UnknownClient {
        /// What was asked for.
        name: String,
        /// Every probe's name, for the message.
        known: String,
    },
    /// A client's program is not on this machine: which program, and what to do about
    /// it (the package to install, the variable to set).
    #[error("{0} was not found: {1}")]
    MissingBinary(&'static str, String),
    /// An SDK client's program could not be built or put in its cache folder.
    #[error("making {program} ready: {what}")]
    Prepare {
        /// The program's file name.
        program: &'static str,
        /// The step that failed (`go build`, writing a file, ...).
        what: String,
        /// The step's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A client's program could not be started in a network namespace.
    #[error("running {program} in {place}: {source}")]
    Spawn {
        /// The program's path on the host.
        program: String,
        /// The leaf, as [`Leaf::place`](crate::probe::Leaf::place) says it.
        place: String,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// A client's program could not be run in a container leaf.
    #[error("running {program} in {place}: {source}")]
    Container {
        /// The program, described for a person.
        program: &'static str,
        /// The leaf, as [`Leaf::place`](crate::probe::Leaf::place) says it.
        place: String,
        /// The container engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `imds-shim probe --json` printed no JSON report on stdout.
    #[error("imds-shim printed no report ({status}); its stderr ends:\n{stderr_tail}")]
    NoReport {
        /// How it exited (code or signal), as the process status displays.
        status: String,
        /// The last lines of its stderr, secrets masked ([`stderr_tail`]).
        stderr_tail: String,
    },
    /// A client's program broke rather than failed as a client: a crash mark on stderr
    /// (traceback, panic), a signal, or an exit code it does not give for failures.
    #[error("{program} crashed in {place} ({status}); its stderr ends:\n{stderr_tail}")]
    Crashed {
        /// The program, described for a person.
        program: &'static str,
        /// The leaf, as [`Leaf::place`](crate::probe::Leaf::place) says it.
        place: String,
        /// How it exited (code or signal), as the process status displays.
        status: String,
        /// The last lines of its stderr, secrets masked ([`stderr_tail`]).
        stderr_tail: String,
    },
}

/// The last lines of a client's stderr, for a message, with anything that looks like a
/// secret (a run of 40 or more base64 characters: secret keys, session tokens) masked.
pub fn stderr_tail(stderr: &[u8]) -> String {
    const LINES: usize = 12;
    const SECRET_LEN: usize = 40;
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    let is_secret_char = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    let mut out = String::with_capacity(tail.len());
    let mut run = String::new();
    for c in tail.chars().chain(std::iter::once('\n')) {
        if is_secret_char(c) {
            run.push(c);
            continue;
        }
        if run.len() >= SECRET_LEN {
            out.push_str("<redacted>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tails_keep_the_end_and_mask_secrets() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let token = "IQoJb3JpZ2luX2VjEPv//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+EXAMPLE==";
        let stderr = format!(
            "{}Traceback (most recent call last):\n  aws_secret_access_key = {secret}\n\n  X-Amz-Security-Token: {token}\nKeyError: 'Arn'\n",
            "noise\n".repeat(20)
        );
        let tail = stderr_tail(stderr.as_bytes());
        assert!(!tail.contains(secret) && !tail.contains(token), "{tail}");
        assert!(
            tail.contains("aws_secret_access_key = <redacted>"),
            "{tail}"
        );
        assert!(tail.contains("X-Amz-Security-Token: <redacted>"), "{tail}");
        assert!(tail.ends_with("KeyError: 'Arn'"), "{tail}");
        assert_eq!(tail.lines().count(), 12);
        assert_eq!(
            stderr_tail(b"exit 253: Unable to locate credentials"),
            "exit 253: Unable to locate credentials"
        );
    }
}
