//! `imds-harness measure`: the minimal hop limit per topology, client and tokens mode,
//! as a table (and JSON), recorded as or compared with a baseline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::{self, DockerError};
use imds_harness::backend::netns::{self, NetnsLab};
use imds_harness::backend::{earthly, Backend};
use imds_harness::gate::{self, Baseline, Exit};
use imds_harness::lifecycle;
use imds_harness::model::ModelCheck;
use imds_harness::probe::{shim, Client};
use imds_harness::report::{self, MeasureReport};
use imds_harness::sweep::{self, Strategy, SweepPlan, Tools};
use imds_harness::topology::Topology;
use imds_vocab::HttpTokens;
use indicatif::{ProgressBar, ProgressStyle};

use super::exit;

#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// Where the topologies are realised.
    #[arg(long, default_value = "netns")]
    backend: Backend,
    /// Topologies, comma-separated: presets (host, docker-run, buildkit-run, earthly-run,
    /// earthly-cni, earthly-with-docker, podman-run, podman-rootless,
    /// podman-rootless-pasta, buildah-run, gitlab-dind-job, gitlab-dind-build,
    /// k8s-pod-dind), chain:N (N routed layers) or chain:LETTERS (r routed, p proxied by
    /// slirp4netns, from the host outwards, e.g. chain:rrpr; netns only). Default:
    /// every preset.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    topology: Vec<Topology>,
    /// Clients run at each leaf: sdk (Rust SDK via imds-shim), cli (Debian's AWS CLI),
    /// go (aws-sdk-go-v2), go-v1 (aws-sdk-go), ruby (aws-sdk-core), boto3, ttl
    /// (imds-shim's TTL probe). Default: every one that is installed here; one asked
    /// for that is not installed is exit 2, with the Debian packages to install.
    #[arg(long, value_delimiter = ',', value_name = "CLIENT,...")]
    clients: Vec<Client>,
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
    /// Topologies measured at once (default: 4 on netns; 2 on docker, each with a
    /// simulated instance of its own).
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
pub const EXIT_CODES: &str = "Exit status:
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

pub fn run(args: MeasureArgs) -> anyhow::Result<u8> {
    if args.backend == Backend::Earthly {
        return run_earthly();
    }
    if let Err(err) = netns::check_prerequisites() {
        eprintln!("imds-harness measure: {err}");
        return Ok(exit::USAGE);
    }
    let clients = if args.clients.is_empty() {
        Client::installed()
    } else {
        args.clients.clone()
    };
    let tools = match Tools::locate(&clients) {
        Ok(tools) => tools,
        Err(err) => {
            eprintln!("imds-harness measure: {err}");
            return Ok(exit::USAGE);
        }
    };
    let recorded = match &args.baseline {
        Some(path) => match Baseline::load(path) {
            Ok(b) => Some(b),
            Err(err) => {
                eprintln!("imds-harness measure: {err}");
                return Ok(exit::USAGE);
            }
        },
        None => None,
    };
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
                Backend::Docker => 2,
                _ => 4,
            })
            .into(),
    };

    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    runtime.spawn(remove_namespaces_on_signal());
    let docker_lab = if args.backend == Backend::Docker {
        if let Some(&bad) = plan.topologies.iter().find(|t| t.preset().is_none()) {
            let err = DockerError::UnsupportedTopology { topology: bad };
            eprintln!("imds-harness measure: {err}");
            return Ok(exit::USAGE);
        }
        eprintln!("imds-harness measure: checking the images (building what is missing)...");
        let shim = match tools.shim.clone().map(Ok).unwrap_or_else(shim::locate) {
            Ok(shim) => shim,
            Err(err) => {
                eprintln!("imds-harness measure: {err}");
                return Ok(exit::USAGE);
            }
        };
        match runtime.block_on(DockerLab::prepare(tools.clone(), &shim)) {
            Ok(lab) => Some(lab),
            Err(err) => {
                eprintln!("imds-harness measure: {err}");
                return Ok(exit::USAGE);
            }
        }
    } else {
        None
    };
    let cells_total = plan.topologies.len() * plan.clients.len() * plan.modes.len();
    let progress = ProgressBar::new(cells_total as u64).with_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let on_cell = |cell: &sweep::Cell| {
        progress.inc(1);
        progress.set_message(format!(
            "{} {} {}: {}",
            cell.topology,
            cell.client,
            cell.http_tokens,
            report::verdict(cell)
        ));
    };
    let result = runtime.block_on(async {
        tokio::task::block_in_place(|| match &docker_lab {
            Some(lab) => sweep::run(lab, &plan, &on_cell),
            None => sweep::run(&NetnsLab { tools }, &plan, &on_cell),
        })
    });
    progress.finish_and_clear();
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The signal handler is taking the run down and exits with 130; whatever
        // failed here failed because of that.
        loop {
            std::thread::park();
        }
    }
    let cells = match result {
        Ok(cells) => cells,
        Err(err) => {
            eprintln!("imds-harness measure: the measurement failed: {err}");
            return Ok(exit::MEASUREMENT);
        }
    };
    let elapsed = started.elapsed();

    println!("{}", report::table(&cells, &plan.clients, true));
    println!(
        "minimal hop limit per topology, client and tokens mode; {} backend, {} search, {:.1} s",
        args.backend,
        match plan.strategy {
            Strategy::Bisect => "bisect",
            Strategy::Linear => "linear",
        },
        elapsed.as_secs_f64()
    );
    let model = ModelCheck::of(&cells);
    println!("{model}");

    let never = gate::never_cells(&cells);
    for cell in &never {
        eprintln!("imds-harness measure: FAILED: {}", cell.message());
    }
    let needs = gate::needs(&cells);
    let mut verdict = Exit::Ok;
    let comparisons = match (&recorded, &args.baseline) {
        (Some(recorded), Some(path)) => {
            let restricted = !args.topology.is_empty();
            match gate::compare(recorded, &needs, restricted, path) {
                Ok(comparisons) => comparisons,
                Err(err) => {
                    eprintln!("imds-harness measure: {err}");
                    verdict = Exit::Usage;
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };
    if let (Some(path), true) = (&args.baseline, verdict == Exit::Ok) {
        for comparison in &comparisons {
            if comparison.is_regression() {
                eprintln!("{}", comparison.message(path));
            } else {
                println!("{}", comparison.message(path));
            }
        }
        verdict = gate::exit(&never, &comparisons);
    } else if verdict == Exit::Ok {
        verdict = gate::exit(&never, &[]);
    }
    if let Some(path) = &args.record {
        match gate::to_record(&needs) {
            Ok(baseline) => {
                baseline.save(path)?;
                println!("recorded the baseline in {}", path.display());
            }
            Err(err) => {
                eprintln!("imds-harness measure: {err}");
                verdict = Exit::Regression;
            }
        }
    }
    if let Some(path) = &args.json {
        let report = MeasureReport {
            backend: args.backend.to_string(),
            strategy: plan.strategy,
            cells: cells.clone(),
            never: never.clone(),
            comparisons: comparisons.clone(),
            model: model.clone(),
            exit: verdict,
            exit_code: verdict.code(),
            elapsed_ms: elapsed.as_millis() as u64,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        let xml = report::junit(
            args.backend.name(),
            &cells,
            &comparisons,
            args.baseline.as_deref(),
        )
        .to_string()
        .context("rendering the JUnit report")?;
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(verdict.code())
}

/// The earthly backend: the Earthfile's probe targets with the real Earthly, on this
/// machine's own instance. It measures nothing by search; it says what a RUN step gets.
fn run_earthly() -> anyhow::Result<u8> {
    let earthly = match earthly::locate() {
        Ok(path) => path,
        Err(err) => {
            eprintln!("imds-harness measure: {err}");
            return Ok(exit::USAGE);
        }
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
            Err(err) => {
                eprintln!("imds-harness measure: {err}");
                return Ok(exit::USAGE);
            }
        }
    }
    Ok(if failed { exit::FAILURE } else { exit::OK })
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
    std::process::exit(130);
}
