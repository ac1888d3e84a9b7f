//! The docker backend as the tests set it up, and what of the project's is in the
//! machine's engine.

use std::process::Command;

use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::{LABEL, RUN_LABEL};
use imds_harness::probe::{shim, Client, Tools};

/// The docker backend with every client, its images made if missing.
pub fn lab(runtime: &tokio::runtime::Runtime) -> DockerLab {
    let tools = Tools::locate(&Client::ALL).unwrap();
    let shim = shim::locate().unwrap();
    runtime.block_on(DockerLab::prepare(tools, &shim)).unwrap()
}

/// The project's containers (name, run) made by other processes than this one (whose
/// other tests may be running instances right now).
pub fn project_containers() -> Vec<(String, String)> {
    let mine = imds_harness::lifecycle::run_id().unwrap();
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={LABEL}")])
        .args([
            "--format",
            &format!("{{{{.Label \"{RUN_LABEL}\"}}}} {{{{.Names}}}}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(run, _)| *run != mine)
        .map(|(run, name)| (name.to_string(), run.to_string()))
        .collect()
}
