//! The `imds-harness` subcommands.

mod cleanup;
mod exit;
mod images;
mod measure;
mod mock;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exit::Exit;

/// Reproduce and measure the EC2 IMDSv2 hop-limit failure of nested container builds.
#[derive(Parser, Debug)]
#[command(name = "imds-harness", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the minimal hop limit per topology, client and tokens mode.
    #[command(after_help = measure::EXIT_CODES)]
    Measure(measure::MeasureArgs),
    /// Serve the mock IMDS, STS and EC2 API on local ports until SIGINT or SIGTERM.
    Mock(Box<mock::MockArgs>),
    /// Remove what killed runs left behind: network namespaces, the slirp4netns and pasta
    /// serving them, containers and Docker networks.
    Cleanup(cleanup::CleanupArgs),
    /// Build the docker backend's images from Debian packages (cached; nothing is pulled).
    Images(images::ImagesArgs),
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Measure(args) => measure::run(&args),
        Command::Mock(args) => mock::run(&args),
        Command::Cleanup(args) => cleanup::run(args),
        Command::Images(args) => images::run(&args),
    };
    let exit = result.unwrap_or_else(|err| {
        eprintln!("imds-harness: error: {err:#}");
        Exit::Regression
    });
    ExitCode::from(exit.code())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMDS_HARNESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // aws-sigv4 traces the requests it signs, session-token header included.
        .add_directive("aws_sigv4=warn".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .init();
}
