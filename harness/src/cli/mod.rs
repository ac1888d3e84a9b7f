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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("IMDS_HARNESS_LOG").ok().as_deref());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(true),
        )
        .with(filter)
        .init();
}

/// `IMDS_HARNESS_LOG` (`info`, `imds_mock=debug,warn`) as `tracing_subscriber`'s `Targets`:
/// the target-and-level part of `EnvFilter`'s syntax, without its regex engine in the
/// build. Unset, empty or unreadable: `info`.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    const SIGV4: &str = "aws_sigv4";
    let asked = spec
        .filter(|spec| !spec.trim().is_empty())
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let default = asked.default_level().unwrap_or(LevelFilter::OFF);
    // aws-sigv4 traces the requests it signs, session-token header included: at most its
    // warnings, whatever was asked for it or for one of its modules.
    Targets::new()
        .with_targets(
            asked.into_iter().filter(|(target, _)| {
                target != SIGV4 && !target.starts_with(&format!("{SIGV4}::"))
            }),
        )
        .with_default(default)
        .with_target(SIGV4, LevelFilter::WARN)
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn the_log_filter_reads_targets_and_levels_and_never_lets_sigv4_trace() {
        for spec in [None, Some(""), Some("  "), Some("imds_mock=nonsense=")] {
            let filter = log_filter(spec);
            assert!(
                filter.would_enable("imds_harness::sweep", &Level::INFO),
                "{spec:?}"
            );
            assert!(
                !filter.would_enable("imds_harness::sweep", &Level::DEBUG),
                "{spec:?}"
            );
        }
        let filter = log_filter(Some("imds_mock=debug,warn"));
        assert!(filter.would_enable("imds_mock::server", &Level::DEBUG));
        assert!(!filter.would_enable("imds_harness::sweep", &Level::INFO));
        assert!(filter.would_enable("imds_harness::sweep", &Level::WARN));
        for spec in [
            "trace",
            "aws_sigv4=trace,trace",
            "aws_sigv4::sign=trace,trace",
        ] {
            let filter = log_filter(Some(spec));
            assert!(
                filter.would_enable("imds_mock::server", &Level::TRACE),
                "{spec}"
            );
            for target in ["aws_sigv4", "aws_sigv4::sign", "aws_sigv4::http_request"] {
                assert!(
                    !filter.would_enable(target, &Level::INFO),
                    "{spec}: {target}"
                );
                assert!(
                    filter.would_enable(target, &Level::WARN),
                    "{spec}: {target}"
                );
            }
        }
    }
}
