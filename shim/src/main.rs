//! `imds-shim`: find out, where a build runs, whether it gets the EC2 instance role's credentials.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use imds_shim::probe::{self, render, Place, ProbeOptions, Steps};

/// Exit code when a requested step failed.
const EXIT_FAILED: u8 = 1;
/// Exit code for usage and configuration errors.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "imds-shim",
    version,
    about = "Find out whether a build step gets the EC2 instance role's credentials, and why not",
    long_about = "Find out whether the place this runs in (the host, a container, a BuildKit or \
                  Earthly RUN step) gets the EC2 instance role's credentials from the instance \
                  metadata service (IMDSv2), and if not, why not: most often the instance's \
                  metadata hop limit (HttpPutResponseHopLimit) is lower than the network depth \
                  of the build."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe IMDS from here: the hop limit this place needs, the token, the credentials, the identity
    #[command(
        long_about = "Probe IMDS from the place this runs in, in four steps, each timed:\n\
                      \n  ttl          the hop limit this place needs: the smallest IP TTL with which a\n               \
                      TCP connect reaches the IMDS host (no request is sent)\n  \
                      token        an IMDSv2 session token (PUT /latest/api/token), the instance id and region\n  \
                      credentials  the role's credentials through aws-config's IMDS credentials provider\n  \
                      identity     sts:GetCallerIdentity with those credentials",
        after_help = "Environment (read as the AWS SDKs read it):\n  \
                      AWS_EC2_METADATA_SERVICE_ENDPOINT       IMDS endpoint [default: http://169.254.169.254]\n  \
                      AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE  IPv4 or IPv6 (http://[fd00:ec2::254]) when no endpoint is set\n  \
                      AWS_EC2_METADATA_DISABLED               true: IMDS is off here, nothing is sent\n  \
                      AWS_REGION, AWS_DEFAULT_REGION          region for STS [default: the instance's, from IMDS]\n  \
                      AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL  STS endpoint\n\
                      \n\
                      Exit status: 0 when every requested step succeeded, 1 when one failed,\n\
                      2 for usage or configuration errors."
    )]
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Print one JSON object on stdout instead of the report
    #[arg(long)]
    json: bool,

    /// IMDS connect and read timeout in milliseconds (the AWS SDK's default is 1000); also bounds each TTL attempt
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    timeout_ms: u64,

    /// Largest IP TTL (hop limit) to try when measuring the hop limit this place needs
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u8).range(1..=255)
    )]
    ttl_max: u8,

    /// Which steps to run
    #[arg(long, value_enum, value_name = "STEPS", default_value_t = Only::All)]
    only: Only,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Only measure the hop limit this place needs (step ttl)
    Ttl,
    /// Get credentials and the identity as an AWS SDK would (steps credentials and identity; token too when the region must come from IMDS)
    Sdk,
    /// All steps: ttl, token, credentials, identity
    All,
}

impl From<Only> for Steps {
    fn from(only: Only) -> Self {
        match only {
            Only::Ttl => Steps::Ttl,
            Only::Sdk => Steps::Sdk,
            Only::All => Steps::All,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(args) => probe_command(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("imds-shim: error: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn probe_command(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let place = Place::from_env(|name| std::env::var(name).ok())?;
    let opts = ProbeOptions {
        steps: args.only.into(),
        timeout: Duration::from_millis(args.timeout_ms),
        ttl_max: args.ttl_max,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let report = runtime.block_on(probe::run(&opts, &place));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render::human(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn probe_defaults() {
        let cli = Cli::try_parse_from(["imds-shim", "probe"]).unwrap();
        let Command::Probe(args) = cli.command;
        assert!(!args.json);
        assert_eq!(args.timeout_ms, 1000);
        assert_eq!(args.ttl_max, 64);
        assert_eq!(args.only, Only::All);
    }

    #[test]
    fn probe_flags() {
        let cli = Cli::try_parse_from([
            "imds-shim",
            "probe",
            "--json",
            "--timeout-ms",
            "250",
            "--ttl-max",
            "8",
            "--only",
            "sdk",
        ])
        .unwrap();
        let Command::Probe(args) = cli.command;
        assert!(args.json);
        assert_eq!(args.timeout_ms, 250);
        assert_eq!(args.ttl_max, 8);
        assert_eq!(Steps::from(args.only), Steps::Sdk);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for argv in [
            &["imds-shim", "probe", "--ttl-max", "0"][..],
            &["imds-shim", "probe", "--ttl-max", "256"],
            &["imds-shim", "probe", "--timeout-ms", "0"],
            &["imds-shim", "probe", "--only", "token"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{argv:?}");
        }
    }
}
