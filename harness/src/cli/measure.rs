//! `imds-harness measure`: the minimal hop limit per topology, client and tokens mode,
//! as a table (and JSON), recorded as or compared with a baseline.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::{self, DockerError};
use imds_harness::backend::netns::{self, NetnsLab};
use imds_harness::backend::{earthly, Backend};
use imds_harness::cell::{Cell, ModelCheck};
use imds_harness::gate::{self, Baseline, Comparison, GateError, Judgement, NeverCell, Recorded};
use imds_harness::lifecycle;
use imds_harness::probe::warm::Starts;
use imds_harness::probe::{shim, Probe};
use imds_harness::report;
use imds_harness::sweep::{self, Strategy, SweepError, SweepEvent, SweepPlan, Tools};
use imds_harness::topology::{self, Topology};
use imds_vocab::HttpTokens;
use serde::Serialize;
use tokio::runtime::Runtime;

use super::exit::Exit;
use progress::{SweepProgress, TimeOuts};

mod progress;

#[derive(Args, Debug)]
pub(super) struct MeasureArgs {
    /// Where the topologies are realised.
    #[arg(long, default_value = "netns")]
    backend: Backend,
    #[arg(long, value_delimiter = ',', value_name = "NAME,...", help = topology_help())]
    topology: Vec<Topology>,
    #[arg(long, value_delimiter = ',', value_name = "CLIENT,...", help = clients_help())]
    clients: Vec<Probe>,
    /// Tokens modes measured: required, optional.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "MODE,...",
        default_value = "required,optional"
    )]
    http_tokens: Vec<HttpTokens>,
    /// bisect (seeded binary search) or linear (1, 2, 3, ... with the clients' default
    /// timeouts, for comparison).
    #[arg(long, default_value = "bisect", value_parser = parse_strategy)]
    strategy: Strategy,
    /// IMDS timeout of the sdk and ttl probes, in ms (default: 300 for bisect, the SDK's
    /// 1000 for linear). The AWS CLI keeps its own 1 s.
    #[arg(long, value_name = "MS")]
    probe_timeout_ms: Option<u64>,
    /// How the AWS CLI, boto3 and the Ruby SDK start on the netns backend: warm (forked
    /// from an interpreter that imported the SDK once; a run costs a fifth of the CPU)
    /// or cold (a process of its own per run), for comparison.
    #[arg(long, value_enum, default_value_t = Starts::Warm)]
    starts: Starts,
    /// Topologies measured at once (default: 16 on netns; 2 on docker, each with a
    /// simulated instance of its own); a topology's cells also probe at once.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    parallel: Option<u16>,
    /// Also write the full result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare with a recorded baseline: exit 1 if any topology needs more than recorded,
    /// or gets no identity at any hop limit. Every topology the baseline records must be
    /// measured, unless --topology restricts the run.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = gate::DEFAULT_PATH)]
    baseline: Option<PathBuf>,
    /// Record the result (tokens required) as the baseline.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = gate::DEFAULT_PATH)]
    record: Option<PathBuf>,
    /// Also write the result as JUnit XML to FILE (for GitLab's and GitHub's test
    /// reporters): a test case per topology, tokens mode and client, and one per
    /// baseline comparison.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// The exit codes, for `--help`.
pub(super) const EXIT_CODES: &str = "Exit status:
    0    every topology needs what the baseline records, or less (or no baseline given)
    1    a regression: a topology needs more than recorded, or a client gets no identity
         at any hop limit (\"never\"), named on stderr and in --json/--junit
    2    usage or environment: bad arguments, not root, a tool missing, the Docker Engine
         unreachable, a baseline topology this run did not measure
    3    the measurement failed: a probe broke (a client crashed, a container did not
         start) or the mock died; the cell is named
    130  interrupted (SIGINT or SIGTERM); the run's namespaces and containers are removed";

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "bisect" => Ok(Strategy::Bisect),
        "linear" => Ok(Strategy::Linear),
        other => Err(format!("unknown strategy {other:?}: use bisect or linear")),
    }
}

/// `--clients`' help: every probe, with what it is.
fn clients_help() -> String {
    let probes: Vec<String> = Probe::all()
        .map(|p| format!("{} ({})", p.name(), p.summary()))
        .collect();
    format!(
        "Clients run at each leaf: {}. Default: every one that is installed here; one asked \
         for that is not installed is exit 2, with the Debian packages to install",
        probes.join(", ")
    )
}

/// `--topology`'s help: every preset and the chain spellings.
fn topology_help() -> String {
    format!(
        "Topologies, comma-separated: {} (chains on the netns backend only, p by \
         slirp4netns). Default: every preset",
        topology::valid_names()
    )
}

/// Everything `measure --json` writes.
#[derive(Serialize)]
struct MeasureReport<'a> {
    backend: String,
    strategy: Strategy,
    cells: &'a [Cell],
    /// The cells whose client got no identity at any hop limit.
    never: &'a [NeverCell],
    /// The comparison with the baseline, when one was given.
    comparisons: &'a [Comparison],
    /// The cells against the model's predictions.
    model: &'a ModelCheck,
    /// What the run exits with, and its code.
    exit: Exit,
    exit_code: u8,
    elapsed_ms: u64,
}

pub(super) fn run(args: &MeasureArgs) -> anyhow::Result<Exit> {
    match args.backend {
        Backend::Earthly => run_earthly(),
        Backend::Netns | Backend::Docker => run_sweep(args),
    }
}

/// A sweep on the netns or docker backend: plan, measure, report, judge.
fn run_sweep(args: &MeasureArgs) -> anyhow::Result<Exit> {
    let (plan, tools, recorded) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(err) => return Ok(usage(err)),
    };
    let runtime = Runtime::new().context("starting the Tokio runtime")?;
    runtime.spawn(remove_namespaces_on_signal());
    let lab = match SweepLab::open(args.backend, &plan, tools, &runtime) {
        Ok(lab) => lab,
        Err(err) => return Ok(usage(err)),
    };
    let started = Instant::now();
    let visible = args.json.is_none() && std::io::stderr().is_terminal();
    let (measured, time_outs) = measure(&runtime, &lab, &plan, visible);
    let cells = match measured {
        Ok(cells) => cells,
        Err(err) => {
            eprintln!("imds-harness measure: the measurement failed: {err}");
            return Ok(Exit::Measurement);
        }
    };
    let elapsed = started.elapsed();

    let model = ModelCheck::of(&cells);
    print_results(args.backend, &plan, &cells, &model, elapsed, time_outs);
    let judgement = judge(args, recorded.as_ref(), &cells);
    print_judgement(&judgement, args.baseline.as_deref());
    if let (Some(path), Some(to_record)) = (&args.record, &judgement.to_record) {
        record(path, to_record)?;
    }
    let exit = Exit::from(judgement.decision);
    let report = MeasureReport {
        backend: args.backend.to_string(),
        strategy: plan.strategy,
        cells: &cells,
        never: &judgement.never,
        comparisons: &judgement.comparisons,
        model: &model,
        exit,
        exit_code: exit.code(),
        elapsed_ms: elapsed.as_millis() as u64,
    };
    write_reports(args, &report)?;
    Ok(exit)
}

/// Says a usage or environment problem: exit 2.
fn usage(err: impl std::fmt::Display) -> Exit {
    eprintln!("imds-harness measure: {err}");
    Exit::Usage
}

/// The plan, the clients' tools and the baseline to compare with, from the arguments
/// and this machine; an error is a usage or environment problem.
fn prepare(args: &MeasureArgs) -> anyhow::Result<(SweepPlan, Tools, Option<Baseline>)> {
    netns::check_prerequisites()?;
    let clients = if args.clients.is_empty() {
        Probe::installed()
    } else {
        args.clients.clone()
    };
    let tools = Tools::locate(&clients)?.starting(args.starts);
    let recorded = args.baseline.as_deref().map(Baseline::load).transpose()?;
    let plan = SweepPlan {
        topologies: if args.topology.is_empty() {
            Topology::presets()
        } else {
            args.topology.clone()
        },
        clients,
        modes: args.http_tokens.clone(),
        strategy: args.strategy,
        probe_timeout: Duration::from_millis(args.probe_timeout_ms.unwrap_or(
            match args.strategy {
                Strategy::Bisect => 300,
                Strategy::Linear => 1000,
            },
        )),
        parallel: args
            .parallel
            .unwrap_or(match args.backend {
                Backend::Docker => DOCKER_PARALLEL,
                Backend::Netns | Backend::Earthly => NETNS_PARALLEL,
            })
            .into(),
    };
    Ok((plan, tools, recorded))
}

/// `--parallel`'s default on netns: every preset at once. A topology costs milliseconds
/// to realise and its waiting costs no CPU; what loads the machine is the clients'
/// start-up, which the topologies' cells spread over their searches.
const NETNS_PARALLEL: u16 = 16;

/// `--parallel`'s default on docker: each worker is a simulated instance with an engine.
const DOCKER_PARALLEL: u16 = 2;

/// Where a sweep runs.
enum SweepLab {
    Netns(NetnsLab),
    Docker(DockerLab),
}

impl SweepLab {
    /// The backend's lab for the plan (the docker backend's images checked, and built
    /// where missing); an error is a usage or environment problem.
    fn open(
        backend: Backend,
        plan: &SweepPlan,
        tools: Tools,
        runtime: &Runtime,
    ) -> anyhow::Result<SweepLab> {
        if backend != Backend::Docker {
            return Ok(SweepLab::Netns(NetnsLab { tools }));
        }
        if let Some(&bad) = plan.topologies.iter().find(|t| t.preset().is_none()) {
            return Err(DockerError::UnsupportedTopology { topology: bad }.into());
        }
        eprintln!("imds-harness measure: checking the images (building what is missing)...");
        let shim = match &tools.shim {
            Some(shim) => shim.clone(),
            None => shim::locate()?,
        };
        let lab = runtime.block_on(DockerLab::prepare(tools, &shim))?;
        Ok(SweepLab::Docker(lab))
    }
}

/// Runs the plan on the lab, with progress bars on stderr (when it is a terminal and the
/// run writes no JSON); how much of the run was time-outs.
fn measure(
    runtime: &Runtime,
    lab: &SweepLab,
    plan: &SweepPlan,
    visible: bool,
) -> (Result<Vec<Cell>, SweepError>, TimeOuts) {
    let progress = SweepProgress::new(plan, visible);
    let on_event = |event: SweepEvent<'_>| progress.on_event(event);
    let result = runtime.block_on(async {
        tokio::task::block_in_place(|| match lab {
            SweepLab::Docker(lab) => sweep::run(lab, plan, &on_event),
            SweepLab::Netns(lab) => sweep::run(lab, plan, &on_event),
        })
    });
    let time_outs = progress.finish();
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The signal handler is taking the run down and exits with 130; whatever
        // failed here failed because of that.
        loop {
            std::thread::park();
        }
    }
    (result, time_outs)
}

/// The table, a line on the run and the model's check, on stdout.
fn print_results(
    backend: Backend,
    plan: &SweepPlan,
    cells: &[Cell],
    model: &ModelCheck,
    elapsed: Duration,
    time_outs: TimeOuts,
) {
    println!("{}", report::table(cells, &plan.clients, true));
    println!("{model}");
    println!(
        "minimal hop limit per topology, client and tokens mode; {backend} backend, {} search, \
         {:.1} s, {time_outs}",
        match plan.strategy {
            Strategy::Bisect => "bisect",
            Strategy::Linear => "linear",
        },
        elapsed.as_secs_f64()
    );
}

/// The gate on the cells: against the baseline when one was given, with the baseline to
/// record when asked for.
fn judge(args: &MeasureArgs, recorded: Option<&Baseline>, cells: &[Cell]) -> Judgement {
    let against = recorded.zip(args.baseline.as_deref());
    gate::judge(
        cells,
        against.map(|(baseline, path)| Recorded {
            baseline,
            path,
            restricted: !args.topology.is_empty(),
        }),
        args.record.is_some(),
    )
}

/// What the gate found: failures on stderr, the rest on stdout.
fn print_judgement(judgement: &Judgement, baseline: Option<&Path>) {
    for cell in &judgement.never {
        eprintln!("imds-harness measure: FAILED: {}", cell.message());
    }
    if let Some(err) = &judgement.not_compared {
        eprintln!("imds-harness measure: {err}");
    }
    if let Some(path) = baseline {
        for comparison in &judgement.comparisons {
            if comparison.is_regression() {
                eprintln!("{}", comparison.message(path));
            } else {
                println!("{}", comparison.message(path));
            }
        }
    }
}

/// `--record`: saves the baseline the gate made, or says why there is none.
fn record(path: &Path, to_record: &Result<Baseline, GateError>) -> anyhow::Result<()> {
    match to_record {
        Ok(baseline) => {
            baseline.save(path)?;
            println!("recorded the baseline in {}", path.display());
        }
        Err(err) => eprintln!("imds-harness measure: {err}"),
    }
    Ok(())
}

/// `--json` and `--junit`.
fn write_reports(args: &MeasureArgs, report: &MeasureReport) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        let junit = report::junit(
            args.backend.name(),
            report.cells,
            report.comparisons,
            args.baseline.as_deref(),
        );
        let xml = junit.to_string().context("rendering the JUnit report")?;
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The earthly backend: the Earthfile's probe targets with the real Earthly, on this
/// machine's own instance. It measures nothing by search; it says what a RUN step gets.
fn run_earthly() -> anyhow::Result<Exit> {
    let earthly = match earthly::locate() {
        Ok(path) => path,
        Err(err) => return Ok(usage(err)),
    };
    let dir = std::env::current_dir()?;
    let mut failed = false;
    for target in earthly::TARGETS {
        match earthly::run_target(&earthly, &dir, target) {
            Ok(status) => {
                println!(
                    "earthly {target}: {}",
                    if status.success() {
                        "credentials reached the RUN step"
                    } else {
                        "FAILED"
                    }
                );
                failed |= !status.success();
            }
            Err(err) => return Ok(usage(err)),
        }
    }
    Ok(if failed { Exit::Regression } else { Exit::Ok })
}

/// Set when Ctrl-C or SIGTERM arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C or SIGTERM: remove this run's namespaces and containers before exiting.
async fn remove_namespaces_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    INTERRUPTED.store(true, Ordering::SeqCst);
    lifecycle::shut_down();
    let removed = netns::remove_all_live();
    let containers = docker::remove_all_live().await;
    eprintln!(
        "\nimds-harness: interrupted; removed {} namespace(s) and {} container(s)",
        removed.len(),
        containers.len()
    );
    std::process::exit(Exit::Interrupted.code().into());
}

#[cfg(test)]
mod tests {
    use imds_harness::topology::Preset;
    use strum::VariantArray;

    use super::*;

    #[test]
    fn clients_help_names_every_probe() {
        let help = clients_help();
        for probe in Probe::all() {
            assert!(help.contains(&format!("{} (", probe.name())), "{help}");
        }
    }

    #[test]
    fn topology_help_names_every_preset_and_the_chains() {
        let help = topology_help();
        for preset in Preset::VARIANTS {
            assert!(help.contains(preset.name()), "{help}");
        }
        assert!(
            help.contains("chain:N") && help.contains("chain:rrpr"),
            "{help}"
        );
    }
}
