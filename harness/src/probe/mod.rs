//! What is measured at a leaf: a client asks for the instance role's identity from
//! inside the leaf namespace, and the outcome says whether it got one, and why not.
//!
//! - [`Client::Sdk`]: `imds-shim probe --only sdk`, aws-config's IMDS provider and
//!   aws-sdk-sts (IMDSv2 only, like every Rust SDK user).
//! - [`Client::Cli`]: Debian's AWS CLI, `aws sts get-caller-identity` (botocore, which
//!   falls back to IMDSv1 when the token PUT times out).
//! - [`Client::Ttl`]: `imds-shim probe --only ttl`, the hop limit this place needs,
//!   measured from the client side without asking the instance for anything.

pub mod cli;
pub mod env;
pub mod shim;

use std::fmt;
use std::path::Path;
use std::process::Output;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::netns::Namespace;
use env::ClientEnv;

/// A client run at a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Sdk,
    Cli,
    Ttl,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Sdk, Client::Cli, Client::Ttl];

    pub fn name(self) -> &'static str {
        match self {
            Client::Sdk => "sdk",
            Client::Cli => "cli",
            Client::Ttl => "ttl",
        }
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

/// Runs `program args` in `leaf` with `env`, output captured whatever the exit status,
/// and how long it took.
fn run_in_leaf<I, S>(
    leaf: &Namespace,
    env: &ClientEnv,
    program: &Path,
    args: I,
) -> Result<(Output, Duration), ProbeError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let started = Instant::now();
    let output = env
        .apply(leaf.exec(program, args))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|source| ProbeError::Spawn {
            program: program.display().to_string(),
            namespace: leaf.name().to_string(),
            source,
        })?;
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
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("unknown client {0:?}: the clients are sdk, cli and ttl")]
    UnknownClient(String),
    #[error("{0} was not found: {1}")]
    MissingBinary(&'static str, String),
    #[error("running {program} in namespace {namespace}: {source}")]
    Spawn {
        program: String,
        namespace: String,
        source: std::io::Error,
    },
    #[error("imds-shim printed no report ({status}): {stderr}")]
    NoReport { status: String, stderr: String },
}
