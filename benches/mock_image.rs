//! The mock's image (root, a Docker Engine): its size, and the time from asking for a
//! container to a mock that serves, started by testcontainers (until its ready
//! condition, the JSON line, is met) and by `docker run` (until the line is in its log).
//! A `docker run` of the probe image's `true` in the same run is the reference: the
//! engine's own cost of starting a container.
//!
//! `cargo bench --profile dev --bench mock_image [-- RUNS]` (default 5). Prints medians.
//! `IMDS_HARNESS=<binary>` makes the image from another build (e.g. the static one of
//! `make mock-image`).

use std::process::Command;
use std::time::{Duration, Instant};

use imds_e2e::docker::{docker, images_command};
use imds_e2e::stats::median;
use imds_harness::backend::docker::images::MOCK_IMAGE;
use imds_mock::ImdsMock;
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

/// `docker run -d` of `image` with `args`, then polls its log for `ready` (empty: waits
/// for the container to exit); returns the time and removes the container.
fn docker_run(image: &str, args: &[&str], ready: &str) -> Duration {
    let name = format!("imdsh-bench-{}", std::process::id());
    let started = Instant::now();
    let mut run = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "imds-harness=1",
        image,
    ];
    run.extend_from_slice(args);
    docker(&run);
    loop {
        let done = if ready.is_empty() {
            docker(&["inspect", "-f", "{{.State.Running}}", &name]) == "false"
        } else {
            let out = Command::new("docker")
                .args(["logs", &name])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains(ready)
        };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    docker(&["rm", "-f", &name]);
    elapsed
}

fn main() {
    let runs = imds_e2e::stats::runs_requested(5);
    images_command(&[]);
    let size: f64 = docker(&["image", "inspect", "-f", "{{.Size}}", MOCK_IMAGE])
        .parse()
        .unwrap();
    println!(
        "mock image {MOCK_IMAGE}: {:.1} MB; {runs} runs, {} cores",
        size / 1e6,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let probe = docker(&[
        "images",
        "imds-harness/probe",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let probe = probe.lines().next().expect("the probe image").to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut testcontainers, mut cli, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let container = runtime
            .block_on(ImdsMock::default().with_label("imds-harness", "1").start())
            .unwrap();
        testcontainers.push(started.elapsed().as_secs_f64());
        runtime.block_on(container.rm()).unwrap();
        cli.push(docker_run(MOCK_IMAGE, &[], "\"imds\"").as_secs_f64());
        reference.push(docker_run(&probe, &["true"], "").as_secs_f64());
    }
    let (tc, run, base) = (median(testcontainers), median(cli), median(reference));
    println!("start to ready, testcontainers: {tc:.3} s (median)");
    println!("start to ready, docker run + log line: {run:.3} s (median)");
    println!("reference, docker run of `true` to its exit: {base:.3} s (median)");
    println!("ratio docker run mock / reference: {:.2}", run / base);
}
