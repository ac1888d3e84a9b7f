//! What is measured at a leaf: a client asks for the instance role's identity from
//! inside the leaf namespace, and the outcome says whether it got one, and why not.
//!
//! - [`Client::Sdk`]: `imds-shim probe --only sdk`, aws-config's IMDS provider and
//!   aws-sdk-sts (IMDSv2 only, like every Rust SDK user).
//! - [`Client::Cli`]: Debian's AWS CLI, `aws sts get-caller-identity` (botocore, which
//!   falls back to IMDSv1 when the token PUT times out).
//! - [`Client::Go`], [`Client::GoV1`], [`Client::Ruby`], [`Client::Boto3`]: small
//!   programs of ours on aws-sdk-go-v2, aws-sdk-go, aws-sdk-core for Ruby and boto3,
//!   all from Debian's packages ([`programs`]), each asking STS with its SDK's default
//!   chain.
//! - [`Client::Ttl`]: `imds-shim probe --only ttl`, the hop limit this place needs,
//!   measured from the client side without asking the instance for anything.

pub mod caller;
pub mod cli;
pub mod env;
pub mod programs;
pub mod sdk;
pub mod shim;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use env::ClientEnv;
use programs::SdkProgram;

/// A client run at a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Sdk,
    Cli,
    Go,
    #[serde(rename = "go-v1")]
    GoV1,
    Ruby,
    Boto3,
    Ttl,
}

impl Client {
    /// Every client, in the order of the table's columns.
    pub const ALL: [Client; 7] = [
        Client::Sdk,
        Client::Cli,
        Client::Go,
        Client::GoV1,
        Client::Ruby,
        Client::Boto3,
        Client::Ttl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Client::Sdk => "sdk",
            Client::Cli => "cli",
            Client::Go => "go",
            Client::GoV1 => "go-v1",
            Client::Ruby => "ruby",
            Client::Boto3 => "boto3",
            Client::Ttl => "ttl",
        }
    }

    /// The program of ours this client is, for the SDK clients.
    pub fn sdk_program(self) -> Option<SdkProgram> {
        match self {
            Client::Go => Some(SdkProgram::Go),
            Client::GoV1 => Some(SdkProgram::GoV1),
            Client::Ruby => Some(SdkProgram::Ruby),
            Client::Boto3 => Some(SdkProgram::Boto3),
            Client::Sdk | Client::Cli | Client::Ttl => None,
        }
    }

    /// Whether the client can run here: what it needs is installed (the SDK programs'
    /// Debian packages, the AWS CLI, `imds-shim`). Nothing is built.
    pub fn is_installed(self) -> bool {
        match self {
            Client::Sdk | Client::Ttl => shim::locate().is_ok(),
            Client::Cli => cli::locate().is_ok(),
            _ => self.sdk_program().is_some_and(SdkProgram::is_installed),
        }
    }

    /// Every client that can run here.
    pub fn installed() -> Vec<Client> {
        Client::ALL
            .into_iter()
            .filter(|c| c.is_installed())
            .collect()
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Client {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Client::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ProbeError::UnknownClient(s.to_string()))
    }
}

/// A program a client runs at a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `imds-shim` (the `sdk` and `ttl` clients).
    Shim,
    /// Debian's AWS CLI (the `cli` client).
    AwsCli,
    /// A program of ours on an SDK (the `go`, `go-v1`, `ruby` and `boto3` clients).
    Sdk(SdkProgram),
}

impl Program {
    /// The program in a sentence.
    pub fn description(self) -> &'static str {
        match self {
            Program::Shim => "imds-shim",
            Program::AwsCli => "the AWS CLI",
            Program::Sdk(program) => program.description(),
        }
    }
}

/// A place where clients run: behind the routing layers of a realised topology.
pub trait Leaf: Sync {
    /// Runs `program args` here with `env` (given whole), output captured whatever the
    /// exit status.
    fn run(&self, program: Program, args: &[&str], env: &ClientEnv) -> Result<Output, ProbeError>;

    /// Where this is, for messages.
    fn place(&self) -> String;
}

/// Where the clients' programs are on this machine.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub shim: Option<PathBuf>,
    pub aws_cli: Option<PathBuf>,
    /// The SDK clients' programs, made ready (see [`programs`]).
    pub programs: Vec<(SdkProgram, PathBuf)>,
}

impl Tools {
    /// Finds what `clients` need; a missing one is an error naming the fix.
    pub fn locate(clients: &[Client]) -> Result<Tools, ProbeError> {
        let needs_shim = clients
            .iter()
            .any(|c| matches!(c, Client::Sdk | Client::Ttl));
        let needs_cli = clients.contains(&Client::Cli);
        let mut programs = Vec::new();
        for program in clients.iter().filter_map(|c| c.sdk_program()) {
            if !programs.iter().any(|(p, _)| *p == program) {
                programs.push((program, program.prepare()?));
            }
        }
        Ok(Tools {
            shim: needs_shim.then(shim::locate).transpose()?,
            aws_cli: needs_cli.then(cli::locate).transpose()?,
            programs,
        })
    }

    /// The path of `program`, if it was located.
    pub fn path(&self, program: Program) -> Result<&Path, ProbeError> {
        let path = match program {
            Program::Shim => self.shim.as_deref(),
            Program::AwsCli => self.aws_cli.as_deref(),
            Program::Sdk(sdk) => self
                .programs
                .iter()
                .find(|(p, _)| *p == sdk)
                .map(|(_, path)| path.as_path()),
        };
        path.ok_or(ProbeError::MissingBinary(
            program.description(),
            "it was not located for this run".into(),
        ))
    }
}

/// Runs `program args` at `leaf` and times it.
fn timed(
    leaf: &dyn Leaf,
    program: Program,
    args: &[&str],
    env: &ClientEnv,
) -> Result<(Output, Duration), ProbeError> {
    let started = Instant::now();
    let output = leaf.run(program, args, env)?;
    Ok((output, started.elapsed()))
}

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
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("unknown client {0:?}: the clients are sdk, cli, go, go-v1, ruby, boto3 and ttl")]
    UnknownClient(String),
    #[error("{0} was not found: {1}")]
    MissingBinary(&'static str, String),
    #[error("making {program} ready: {what}")]
    Prepare {
        program: &'static str,
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("running {program} in {place}: {source}")]
    Spawn {
        program: String,
        place: String,
        source: std::io::Error,
    },
    #[error("running {program} in {place}: {source}")]
    Container {
        program: &'static str,
        place: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("imds-shim printed no report ({status}); its stderr ends:\n{stderr_tail}")]
    NoReport { status: String, stderr_tail: String },
    #[error("{program} crashed in {place} ({status}); its stderr ends:\n{stderr_tail}")]
    Crashed {
        program: &'static str,
        place: String,
        status: String,
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
