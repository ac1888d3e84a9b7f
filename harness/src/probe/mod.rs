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
mod leaf;
mod outcome;
pub mod programs;
pub mod sdk;
pub mod shim;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use leaf::{Leaf, Program};
pub use outcome::{stderr_tail, ProbeError, ProbeOutcome};
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
