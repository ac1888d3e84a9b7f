//! The docker backend as the tests set it up, and what of the project's is in the
//! machine's engine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::probe::{shim, Probe, Tools};

/// The docker backend with every client, its images made if missing.
pub fn lab(runtime: &tokio::runtime::Runtime) -> DockerLab {
    let tools = Tools::locate(&Probe::all().collect::<Vec<_>>()).unwrap();
    let shim = shim::locate().unwrap();
    runtime.block_on(DockerLab::prepare(tools, &shim)).unwrap()
}

/// The `docker` CLI with `args`; its standard output, trimmed. Panics when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `imds-harness images` with `args` (builds what is missing): its output and how long
/// it took. Panics when it fails.
pub fn images_command(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(crate::bins::harness())
        .arg("images")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "imds-harness images ({:.1} s):\n{stdout}{}",
        elapsed.as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "imds-harness images failed");
    (stdout, elapsed)
}
