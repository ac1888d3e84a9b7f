//! Where clients run ([`Leaf`]) and the programs they run there ([`Program`]).

use std::process::Output;
use std::time::{Duration, Instant};

use super::env::ClientEnv;
use super::outcome::ProbeError;
use super::programs::SdkProgram;

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

/// Runs `program args` at `leaf` and times it.
pub(super) fn timed(
    leaf: &dyn Leaf,
    program: Program,
    args: &[&str],
    env: &ClientEnv,
) -> Result<(Output, Duration), ProbeError> {
    let started = Instant::now();
    let output = leaf.run(program, args, env)?;
    Ok((output, started.elapsed()))
}
