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
mod leaf;
mod outcome;
pub mod programs;
pub mod sdk;
pub mod shim;
pub mod warm;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use imds_vocab::Client;
use serde::{Deserialize, Serialize};
use strum::VariantArray;

pub use leaf::{Leaf, Program};
pub use outcome::{stderr_tail, ProbeError, ProbeOutcome};
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

    /// What it is, in a few words, for `--clients`' help.
    pub fn summary(self) -> &'static str {
        match self {
            Probe::Client(Client::RustSdk) => "Rust SDK via imds-shim",
            Probe::Client(Client::Cli) => "Debian's AWS CLI",
            Probe::Client(Client::GoSdkV2) => "aws-sdk-go-v2",
            Probe::Client(Client::GoSdkV1) => "aws-sdk-go",
            Probe::Client(Client::RubySdk) => "aws-sdk-core",
            Probe::Client(Client::Boto3) => "Python",
            Probe::Ttl => "imds-shim's TTL probe",
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

    /// How long a run of it waits before it fails when its token is dropped, as measured
    /// at a leaf and kept in `fixtures/clients/timings.toml` (`make client-fixtures`);
    /// zero for the TTL probe, which waits for nothing, and for a client the fixture
    /// lacks.
    pub fn time_to_fail(self) -> Duration {
        static TIMINGS: LazyLock<toml::Table> = LazyLock::new(|| {
            toml::from_str(include_str!("../../../fixtures/clients/timings.toml"))
                .expect("fixtures/clients/timings.toml is TOML")
        });
        let Probe::Client(client) = self else {
            return Duration::ZERO;
        };
        TIMINGS
            .get(client.name())
            .and_then(|t| t.get("time_to_fail_ms"))
            .and_then(toml::Value::as_integer)
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(Duration::ZERO, Duration::from_millis)
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
            .map_err(|_| ProbeError::UnknownClient {
                name: s.to_string(),
                known: probe_names(),
            })
    }
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

impl TryFrom<String> for Probe {
    type Error = ProbeError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

/// Where the clients' programs are on this machine.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    /// `imds-shim`, for the `sdk` and `ttl` probes; `None` when no probe needs it.
    pub shim: Option<PathBuf>,
    /// The AWS CLI, for the `cli` client; `None` when it is not run.
    pub aws_cli: Option<PathBuf>,
    /// The SDK clients' programs, made ready (see [`programs`]).
    pub programs: Vec<(SdkProgram, PathBuf)>,
    /// Where the interpreted clients start from on a namespace leaf ([`warm`]); `None`:
    /// each run is a process of its own.
    pub warm: Option<Arc<warm::WarmStarts>>,
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
            warm: Some(Arc::default()),
        })
    }

    /// These tools, the interpreted clients started as `starts` says.
    #[must_use]
    pub fn starting(mut self, starts: warm::Starts) -> Tools {
        self.warm = match starts {
            warm::Starts::Warm => self.warm.or_else(|| Some(Arc::default())),
            warm::Starts::Cold => None,
        };
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_to_fail_is_ruby_and_the_ttl_probe_waits_for_nothing() {
        let slowest = Probe::all().max_by_key(|p| p.time_to_fail()).unwrap();
        assert_eq!(slowest, Probe::Client(Client::RubySdk));
        assert_eq!(Probe::Ttl.time_to_fail(), Duration::ZERO);
        for client in Client::VARIANTS {
            let wait = Probe::Client(*client).time_to_fail();
            assert!(wait > Duration::from_millis(100), "{client}: {wait:?}");
        }
    }

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
}
