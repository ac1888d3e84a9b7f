//! Benchmarks of the docker backend (root, a Docker Engine, Debian's AWS CLI):
//! - the start-up of a simulated instance (container and engine, mock link, probe
//!   image loaded), and the first use of each nested setup inside it, in this order:
//!   earthly-buildkitd, the WITH DOCKER engine, rootful Podman, rootless Podman, its
//!   pasta container, GitLab's dind service, the job's engine through it, the kind-like
//!   node with a pod's dind sidecar;
//! - the full docker matrix (every preset, sdk + cli + ttl, both tokens modes), warm;
//! - with `--cold`: the images rebuilt from scratch (`imds-harness images --force`).
//!
//! `cargo bench --profile dev --bench docker [-- RUNS] [--cold] [--matrix-only] [--compare]`
//! (default 3 runs; `--matrix-only` skips the start-up phases; `--compare` runs each
//! matrix a second time with one mock per topology, its cells one after another, as
//! before the docker backend made a mock per cell, alternating, and prints the ratio).
//! Prints medians, and where the last matrix run spent its time, by topology.

use std::process::Command;
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_harness::backend::docker::instance::DockerInstance;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::DockerError;
use imds_harness::backend::{Lab, Site};
use imds_harness::probe::{shim, Client, Probe, Tools};
use imds_harness::sweep::{self, Strategy, SweepPlan};
use imds_harness::topology::Topology;
use imds_mock::MockConfig;
use imds_vocab::HttpTokens;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = imds_e2e::stats::runs_requested(3);
    let cold = args.iter().any(|a| a == "--cold");
    let matrix_only = args.iter().any(|a| a == "--matrix-only");
    let compare = args.iter().any(|a| a == "--compare");
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
    let tools = Tools::locate(&Probe::all().collect::<Vec<_>>()).unwrap();
    let lab = runtime
        .block_on(DockerLab::prepare(tools, &shim::locate().unwrap()))
        .unwrap();

    let names = [
        "instance: container + engine ready",
        "instance: mock namespace + link",
        "instance: probe image loaded",
        "instance: total start-up",
        "earthly-buildkitd (instance image + probe image loaded)",
        "with-docker engine on cni0 (images loaded)",
        "podman-run, buildah-run: rootful Podman (storage on tmpfs, podman load of the probe image)",
        "podman-rootless: the user, its storage on tmpfs, podman load as the user",
        "podman-rootless-pasta: a rootless container on --network none, pasta attached",
        "gitlab-dind-job: the dind service's engine (instance image already loaded)",
        "gitlab-dind-build: the job container, probe image loaded into dind through it",
        "k8s-pod-dind: kind network, node (instance image loaded into it), pod on cni0, sidecar engine, probe image",
    ];
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..if matrix_only { 0 } else { runs } {
        let instance =
            DockerInstance::start(&lab.docker, &lab.images, MockConfig::default()).unwrap();
        let s = instance.startup;
        let timed = |set_up: &dyn Fn() -> Result<(), DockerError>| {
            let started = Instant::now();
            set_up().unwrap();
            started.elapsed()
        };
        let first_uses = [
            timed(&|| instance.buildkitd().map(drop)),
            timed(&|| instance.with_docker().map(drop)),
            timed(&|| instance.podman().map(drop)),
            timed(&|| instance.podman_rootless().map(drop)),
            timed(&|| instance.podman_rootless_pasta().map(drop)),
            timed(&|| instance.gitlab_dind().map(drop)),
            timed(&|| instance.gitlab_job().map(drop)),
            timed(&|| instance.k8s_sidecar().map(drop)),
        ];
        for (i, d) in [s.engine, s.link, s.load, s.total()]
            .into_iter()
            .chain(first_uses)
            .enumerate()
        {
            phases[i].push(secs(d));
        }
    }
    for (name, xs) in names.iter().zip(phases).filter(|(_, xs)| !xs.is_empty()) {
        println!(
            "{name}: median {:.2} s of {xs:.2?}",
            imds_e2e::stats::median(xs.clone())
        );
    }

    let plan = SweepPlan {
        topologies: Topology::presets(),
        clients: vec![
            Probe::Client(Client::RustSdk),
            Probe::Client(Client::Cli),
            Probe::Ttl,
        ],
        modes: vec![HttpTokens::Required, HttpTokens::Optional],
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        parallel: 2,
    };
    let mut matrix = Vec::new();
    let mut one_by_one = Vec::new();
    let mut last = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        last = sweep::run(&lab, &plan, &|_| {}).unwrap();
        assert_eq!(last.len(), plan.topologies.len() * 3 * 2);
        matrix.push(secs(started.elapsed()));
        if compare {
            let started = Instant::now();
            let cells = sweep::run(&OneMockPerTopology(&lab), &plan, &|_| {}).unwrap();
            assert_eq!(cells.len(), last.len());
            for (at_once, one_by_one) in last.iter().zip(&cells) {
                assert_eq!(
                    (at_once.minimal_hop_limit, at_once.works_at_any_hop_limit),
                    (
                        one_by_one.minimal_hop_limit,
                        one_by_one.works_at_any_hop_limit
                    ),
                    "{} {} {}",
                    at_once.topology,
                    at_once.client,
                    at_once.http_tokens
                );
            }
            one_by_one.push(secs(started.elapsed()));
        }
    }
    println!(
        "full docker matrix with the CLI (warm, parallel 2): median {:.1} s of {matrix:.1?}",
        imds_e2e::stats::median(matrix.clone())
    );
    if compare {
        let ratios: Vec<f64> = matrix
            .iter()
            .zip(&one_by_one)
            .map(|(at_once, single)| at_once / single)
            .collect();
        println!(
            "the same, one mock per topology (cells one after another): median {:.1} s of {one_by_one:.1?}; at once/one after another, same-run ratios: median {:.2} of {ratios:.2?}",
            imds_e2e::stats::median(one_by_one.clone()),
            imds_e2e::stats::median(ratios.clone())
        );
    }
    println!("the last run's searches, by topology (set-up not included):");
    for topology in &plan.topologies {
        let spent: Duration = last
            .iter()
            .filter(|c| c.topology == *topology)
            .map(|c| c.elapsed)
            .sum();
        let probes: usize = last
            .iter()
            .filter(|c| c.topology == *topology)
            .map(|c| c.tried.len())
            .sum();
        println!("  {topology}: {:.1} s, {probes} probes", secs(spent));
    }
}

/// The docker lab with one mock per topology: the sweep measures a topology's cells one
/// after another, that mock's hop limit and tokens mode changed between probes.
struct OneMockPerTopology<'a>(&'a DockerLab);

/// A site without [`Site::cell_mock`].
struct OneMock<'b>(Box<dyn Site + 'b>);

impl Site for OneMock<'_> {
    fn mock(&self) -> &imds_mock::MockAws {
        self.0.mock()
    }

    fn leaf(&self) -> &dyn imds_harness::probe::Leaf {
        self.0.leaf()
    }
}

impl Lab for OneMockPerTopology<'_> {
    type Worker = DockerInstance;
    type Error = DockerError;

    fn worker(&self) -> Result<DockerInstance, DockerError> {
        self.0.worker()
    }

    fn realise<'b>(
        &self,
        worker: &'b mut DockerInstance,
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, DockerError> {
        Ok(Box::new(OneMock(self.0.realise(worker, topology)?)))
    }

    fn shared_setup(&self, topology: &Topology) -> Option<&'static str> {
        self.0.shared_setup(topology)
    }
}
