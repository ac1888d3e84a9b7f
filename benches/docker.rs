//! Benchmarks of the docker backend (root, a Docker Engine, Debian's AWS CLI):
//! - the start-up of a simulated instance (container and engine, mock link, probe
//!   image loaded), and of earthly-buildkitd and the WITH DOCKER engine inside it;
//! - the full docker matrix (every preset, sdk + cli + ttl, both tokens modes), warm;
//! - with `--cold`: the images rebuilt from scratch (`imds-harness images --force`).
//!
//! `cargo bench --profile dev --bench docker [-- RUNS] [--cold]` (default 3 runs).
//! Prints medians.

use std::process::Command;
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_harness::backend::docker::instance::DockerInstance;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::mock::{HttpTokens, MockConfig};
use imds_harness::probe::{shim, Client, Tools};
use imds_harness::sweep::{self, Strategy, SweepPlan};
use imds_harness::topology::Topology;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = imds_e2e::stats::runs_requested(3);
    let cold = args.iter().any(|a| a == "--cold");
    println!(
        "docker benchmarks, {runs} runs, {}",
        imds_e2e::stats::machine()
    );
    if cold {
        let started = Instant::now();
        let status = Command::new(bins::harness())
            .args(["images", "--force"])
            .status()
            .unwrap();
        assert!(status.success());
        println!(
            "cold image build (images --force): {:.1} s",
            secs(started.elapsed())
        );
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let tools = Tools::locate(&Client::ALL).unwrap();
    let lab = runtime
        .block_on(DockerLab::prepare(tools, &shim::locate().unwrap()))
        .unwrap();

    let mut phases: [Vec<f64>; 6] = Default::default();
    for _ in 0..runs {
        let instance =
            DockerInstance::start(&lab.docker, &lab.images, MockConfig::default()).unwrap();
        let s = instance.startup;
        let started = Instant::now();
        instance.buildkitd().unwrap();
        let buildkitd = started.elapsed();
        let started = Instant::now();
        instance.with_docker().unwrap();
        let with_docker = started.elapsed();
        for (i, d) in [s.engine, s.link, s.load, s.total(), buildkitd, with_docker]
            .into_iter()
            .enumerate()
        {
            phases[i].push(secs(d));
        }
    }
    let names = [
        "instance: container + engine ready",
        "instance: mock namespace + link",
        "instance: probe image loaded",
        "instance: total start-up",
        "earthly-buildkitd (instance image + probe image loaded)",
        "with-docker engine on cni0 (images loaded)",
    ];
    for (name, xs) in names.iter().zip(phases) {
        println!("{name}: median {:.2} s", imds_e2e::stats::median(xs));
    }

    let plan = SweepPlan {
        topologies: Topology::presets(),
        clients: vec![Client::Sdk, Client::Cli, Client::Ttl],
        modes: vec![HttpTokens::Required, HttpTokens::Optional],
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        parallel: 2,
    };
    let mut matrix = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let cells = sweep::run(&lab, &plan, &|_| {}).unwrap();
        assert_eq!(cells.len(), plan.topologies.len() * 3 * 2);
        matrix.push(secs(started.elapsed()));
    }
    println!(
        "full docker matrix with the CLI (warm, parallel 2): median {:.1} s of {matrix:.1?}",
        imds_e2e::stats::median(matrix.clone())
    );
}
