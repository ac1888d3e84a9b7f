//! What is measured at a leaf: a client asks for the instance role's identity from
//! inside the leaf namespace, and the outcome says whether it got one, and why not.
//!
//! - [`Client::RustSdk`]: `imds-shim probe --only sdk`, aws-config's IMDS provider and
//!   aws-sdk-sts (IMDSv2 only, like every Rust SDK user).
//! - [`Client::Cli`]: Debian's AWS CLI, `aws sts get-caller-identity` (botocore, which
//!   falls back to IMDSv1 when the token PUT times out).
//! - [`Client::GoSdkV2`], [`Client::GoSdkV1`], [`Client::RubySdk`], [`Client::Boto3`]:
//!   small programs of ours on aws-sdk-go-v2, aws-sdk-go, aws-sdk-core for Ruby and
//!   boto3, all from Debian's packages ([`programs`]), each asking STS with its SDK's
//!   default chain.
//! - [`Probe::Ttl`]: `imds-shim probe --only ttl`, the hop limit this place needs,
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

pub use imds_vocab::Client;
use serde::{Deserialize, Serialize};
use strum::VariantArray;

use env::ClientEnv;
use programs::SdkProgram;

/// What runs at a leaf: an AWS client asking for the instance role's identity, or the
/// shim's TTL probe, which measures the hop limit the place needs without asking the
/// instance for anything. The order (and so the table's columns): the clients in
/// [`Client`]'s order, then `ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Probe {
    /// An AWS client, named as [`Client::name`] names it.
    Client(Client),
    /// `imds-shim probe --only ttl`, named `ttl`.
    Ttl,
}

impl Probe {
    /// Every probe, clients first, in the order of the table's columns.
    pub fn all() -> impl Iterator<Item = Probe> {
        Client::VARIANTS
            .iter()
            .copied()
            .map(Probe::Client)
            .chain([Probe::Ttl])
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Client(client) => client.name(),
            Probe::Ttl => "ttl",
        }
    }

    /// The program it runs.
    pub fn program(self) -> Program {
        match self {
            Probe::Ttl | Probe::Client(Client::RustSdk) => Program::Shim,
            Probe::Client(Client::Cli) => Program::AwsCli,
            Probe::Client(Client::GoSdkV2) => Program::Sdk(SdkProgram::Go),
            Probe::Client(Client::GoSdkV1) => Program::Sdk(SdkProgram::GoV1),
            Probe::Client(Client::RubySdk) => Program::Sdk(SdkProgram::Ruby),
            Probe::Client(Client::Boto3) => Program::Sdk(SdkProgram::Boto3),
        }
    }

    /// The program of ours it is, for the clients that are one.
    pub fn sdk_program(self) -> Option<SdkProgram> {
        match self.program() {
            Program::Sdk(program) => Some(program),
            Program::Shim | Program::AwsCli => None,
        }
    }

    /// Whether it can run here: what it needs is installed (the SDK programs' Debian
    /// packages, the AWS CLI, `imds-shim`). Nothing is built.
    pub fn is_installed(self) -> bool {
        match self.program() {
            Program::Shim => shim::locate().is_ok(),
            Program::AwsCli => cli::locate().is_ok(),
            Program::Sdk(program) => program.is_installed(),
        }
    }

    /// Every probe that can run here.
    pub fn installed() -> Vec<Probe> {
        Probe::all().filter(|p| p.is_installed()).collect()
    }
}

impl From<Client> for Probe {
    fn from(client: Client) -> Self {
        Probe::Client(client)
    }
}

impl From<Probe> for &'static str {
    fn from(probe: Probe) -> Self {
        probe.name()
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Probe {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Probe::Ttl.name() {
            return Ok(Probe::Ttl);
        }
        s.parse::<Client>()
            .map(Probe::Client)
            .map_err(|_| ProbeError::UnknownClient(s.to_string()))
    }
}

impl TryFrom<String> for Probe {
    type Error = ProbeError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
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
    /// Finds what `probes` need; a missing one is an error naming the fix.
    pub fn locate(probes: &[Probe]) -> Result<Tools, ProbeError> {
        let runs = |program: Program| probes.iter().any(|p| p.program() == program);
        let needs_shim = runs(Program::Shim);
        let needs_cli = runs(Program::AwsCli);
        let mut programs = Vec::new();
        for program in probes.iter().filter_map(|p| p.sdk_program()) {
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
    #[error("unknown client {0:?}: the clients are {names}", names = probe_names())]
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

/// Every probe's name, for messages: `sdk, cli, ... and ttl`.
fn probe_names() -> String {
    let names: Vec<&str> = Probe::all().map(Probe::name).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
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
    fn probes_are_named_and_parsed_as_before() {
        let names: Vec<&str> = Probe::all().map(Probe::name).collect();
        assert_eq!(names, ["sdk", "cli", "go", "go-v1", "ruby", "boto3", "ttl"]);
        for probe in Probe::all() {
            assert_eq!(probe.name().parse::<Probe>().unwrap(), probe);
            let json = serde_json::to_string(&probe).unwrap();
            assert_eq!(json, format!("\"{probe}\""));
            assert_eq!(serde_json::from_str::<Probe>(&json).unwrap(), probe);
        }
        let mut sorted: Vec<Probe> = Probe::all().collect();
        sorted.sort();
        assert_eq!(sorted, Probe::all().collect::<Vec<_>>());
        assert_eq!(
            "rust".parse::<Probe>().unwrap_err().to_string(),
            "unknown client \"rust\": the clients are sdk, cli, go, go-v1, ruby, boto3 and ttl"
        );
    }

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
