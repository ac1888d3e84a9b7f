//! The docker backend when things go wrong: a container name that exists already, two
//! runs at once, and the Docker Engine going away in the middle of a run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::docker::{docker, lab};
use imds_e2e::measure;
use imds_e2e::require::{require, Requirement};
use imds_e2e::runs::{containers_left_since, containers_of, project_containers, run_of};
use imds_harness::backend::docker::instance::DockerInstance;
use imds_harness::backend::docker::RUN_LABEL;
use imds_mock::MockConfig;

const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
    Requirement::Docker,
];

/// The tests that start `measure` processes: one at a time (two at once of their own
/// each, and an engine cut away from one).
static SUBPROCESS_RUNS: Mutex<()> = Mutex::new(());

#[test]
fn a_container_name_that_exists_already_is_skipped_and_left_alone() {
    if !require("docker_name_taken", NEEDS) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let lab = lab(&runtime);
    let run = imds_harness::lifecycle::run_id().unwrap();
    // The names this process's next instances would get, taken by containers that
    // this process did not start as instances: a start must neither fail nor remove
    // them. (They carry this live run's label, so that a concurrent `cleanup` leaves
    // them alone too: the image's own label makes them look like the project's.)
    let foreign: Vec<String> = (0..4).map(|i| format!("imdsh-{run}-i{i}")).collect();
    let label = format!("{RUN_LABEL}={run}");
    for name in &foreign {
        docker(&[
            "create",
            "--name",
            name,
            "--label",
            &label,
            &lab.images.probe,
            "true",
        ]);
    }
    let started = DockerInstance::start(&lab.docker, &lab.images, MockConfig::default());
    let name = started
        .as_ref()
        .map(|i| i.container().to_string())
        .map_err(std::string::ToString::to_string);
    drop(started);
    let still: Vec<String> = foreign
        .iter()
        .filter(|n| !docker(&["ps", "-aq", "--filter", &format!("name=^{n}$")]).is_empty())
        .cloned()
        .collect();
    for name in &foreign {
        docker(&["rm", "-f", name]);
    }
    let name = name.unwrap();
    assert!(!foreign.contains(&name), "{name} reused a taken name");
    assert_eq!(still, foreign, "a container that was not ours was removed");
}

#[test]
fn two_docker_runs_at_once_both_measure_right_and_leave_nothing() {
    if !require("docker_concurrent", NEEDS) {
        return;
    }
    let _one_at_a_time = SUBPROCESS_RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    lab(&runtime);
    let before = project_containers();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "docker", "--topology", "docker-run"];
    let reports = measure::at_once(
        2,
        &[&args[..], &["--clients", "ttl,sdk"]].concat(),
        dir.path(),
    );
    for report in reports {
        for cell in report["cells"].as_array().unwrap() {
            assert_eq!(cell["minimal_hop_limit"], 2, "{cell}");
        }
    }
    assert_eq!(containers_left_since(&before), Vec::new());
}

/// A proxy for the engine's socket that can be cut: what the harness sees when the
/// engine goes away (every connection, open or new, fails).
struct EngineProxy {
    socket: std::path::PathBuf,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl EngineProxy {
    fn start(runtime: &tokio::runtime::Runtime, socket: &Path) -> EngineProxy {
        let listener = runtime
            .block_on(async { tokio::net::UnixListener::bind(socket) })
            .unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let all = tasks.clone();
        let accept = runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let copy = tokio::spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                all.lock().unwrap().push(copy);
            }
        });
        tasks.lock().unwrap().push(accept);
        EngineProxy {
            socket: socket.to_path_buf(),
            tasks,
        }
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn an_engine_that_goes_away_mid_run_fails_the_measurement_and_cleanup_reaps_the_rest() {
    if !require("docker_engine_gone", NEEDS) {
        return;
    }
    let _one_at_a_time = SUBPROCESS_RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    lab(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("engine.sock");
    let proxy = EngineProxy::start(&runtime, &socket);
    let mut child = Command::new(bins::harness())
        .args(["measure", "--backend", "docker", "--topology"])
        .args(["earthly-with-docker", "--clients", "ttl"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run = loop {
        if let Some(run) = run_of(child.id()).filter(|run| !containers_of(run).is_empty()) {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "no instance appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    proxy.cut();
    let deadline = Instant::now() + Duration::from_mins(2);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the measurement failed"), "{stderr}");
    assert!(stderr.contains("Docker Engine"), "{stderr}");
    // Its namespaces are gone with it; its container, which only the engine could
    // remove, is reaped by cleanup.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains(&format!("imdsh-{run}-")),
        "{namespaces}"
    );
    let out = Command::new(bins::harness())
        .arg("cleanup")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(containers_of(&run), Vec::<String>::new());
}
