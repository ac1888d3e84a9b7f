//! The Docker backend: real containers on the machine's Docker Engine, driven through
//! its API with `bollard`.
//!
//! - [`images`]: the images the backend runs, built from Debian packages without a
//!   registry (`imds-harness images`). Nothing is ever pulled.
//! - [`instance`]: a simulated EC2 instance, a container with an engine of its own and
//!   the mock one link away.
//! - [`engine`]: engines nested in containers, and commands run in them.
//! - [`settings`]: what a container that runs an engine is given, as `docker run`
//!   flags or as the Engine API's host configuration.
//! - [`leaf`]: how each preset is realised in an instance, and clients run there.
//! - [`lab`]: the backend as the sweep uses it: a simulated instance per worker.
//!
//! Every container of the machine's engine is named `imdsh-<run>-i<n>` and labelled
//! [`LABEL`] and [`RUN_LABEL`]; everything else lives inside it and goes with it.

pub mod dind;
pub mod engine;
pub mod images;
pub mod instance;
pub mod lab;
mod labels;
pub mod leaf;
pub mod podman;
pub(crate) mod settings;

use std::time::Duration;

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

pub use labels::{LABEL, RUN_LABEL};

use crate::backend::netns::NetnsError;
use crate::lifecycle::{self, Registry, RunIdError, ShuttingDown};
use crate::topology::Topology;

/// Errors of the docker backend; each says what failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The images or their tars could not be built, found or pruned.
    #[error(transparent)]
    Images(#[from] images::ImageError),
    /// A call to the machine's Engine API failed.
    #[error("the Docker Engine failed at {what}: {source}")]
    Api {
        /// What was being done, as `creating <container>` or `listing networks`.
        what: String,
        /// What the engine (or the connection to it) returned.
        #[source]
        source: Box<bollard::errors::Error>,
    },
    /// A command in the simulated instance failed: a setup step, a client its engine
    /// could not start at all (exit 125 to 127), or the instance container itself, not
    /// running once started.
    #[error("`{command}` failed in the simulated instance (exit {status}): {stderr}")]
    Command {
        /// The command, its words joined by spaces (`starting <container>` for the last).
        command: String,
        /// Its exit code; -1 when there was none (killed by a signal, or never run).
        status: i32,
        /// The end of its standard error, trimmed.
        stderr: String,
    },
    /// A command in the instance container outlived its bound.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// The command and the container it ran in.
        what: String,
        /// The bound it was given.
        after: Duration,
    },
    /// A dockerd (the instance's or a nested one) kept failing `docker version`.
    #[error("{engine} did not answer within {after:?}: {stderr}")]
    EngineNotReady {
        /// The engine's name, as `the engine of instance <container>` or
        /// `<container>'s engine`.
        engine: String,
        /// How long it was waited for.
        after: Duration,
        /// The last attempt's standard error, trimmed.
        stderr: String,
    },
    /// A routing chain was asked of the docker backend, which realises presets only.
    #[error(
        "the docker backend realises the presets {presets}; `{topology}` is for the netns backend",
        presets = crate::topology::preset_names()
    )]
    UnsupportedTopology {
        /// The topology asked for.
        topology: Topology,
    },
    /// Creating the instance container met a container of that name (the engine's 409).
    #[error("a container named {name} exists already")]
    NameTaken {
        /// The name, `imdsh-<run>-i<n>`.
        name: String,
    },
    /// Linking the instance to the mock, or starting the mock in its namespace, failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The run is shutting down (Ctrl-C or SIGTERM): no new container is made.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// This run's id, which names its containers, could not be taken (its liveness
    /// socket could not be bound).
    #[error(transparent)]
    RunId(#[from] RunIdError),
}

/// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`), checks that
/// it answers, and settles on an API version both sides speak.
pub async fn connect() -> Result<Docker, images::ImageError> {
    let at = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = |source: bollard::errors::Error| images::ImageError::DockerUnreachable {
        at: at.clone(),
        source: Box::new(source),
    };
    let docker = Docker::connect_with_unix_defaults().map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// Runs `future` to completion from synchronous code (the sweep's worker threads, a
/// `Drop`), on a thread of its own so that it never blocks inside the runtime.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let handle = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        scope
            .spawn(move || handle.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The containers of this process that are up, for the Ctrl-C handler.
static LIVE: Registry = Registry::new();

async fn remove(docker: &Docker, names: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for name in names {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => removed.push(name.clone()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(err) => tracing::warn!(container = %name, "removing: {err}"),
        }
    }
    removed
}

/// Removes this process's containers (for Ctrl-C, after [`lifecycle::shut_down`]);
/// returns their names.
pub async fn remove_all_live() -> Vec<String> {
    let names = LIVE.drain();
    if names.is_empty() {
        return names;
    }
    match connect().await {
        Ok(docker) => remove(&docker, &names).await,
        Err(err) => {
            tracing::warn!("removing containers {names:?}: {err}");
            Vec::new()
        }
    }
}

/// The Engine API filter for what carries the project's [`LABEL`].
fn labelled() -> std::collections::HashMap<String, Vec<String>> {
    [("label".to_string(), vec![LABEL.to_string()])]
        .into_iter()
        .collect()
}

/// Removes every container labelled [`LABEL`] whose run is no longer alive (left by a
/// killed run), for `imds-harness cleanup`; returns their names.
pub async fn cleanup_stale(docker: &Docker) -> Result<Vec<String>, DockerError> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(labelled()),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            what: "listing containers".into(),
            source: Box::new(source),
        })?;
    let stale: Vec<String> = containers
        .into_iter()
        .filter(|c| {
            let run = c.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
            !run.is_some_and(|run| lifecycle::run_is_alive(run))
        })
        .filter_map(|c| {
            c.names
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
        })
        .collect();
    Ok(remove(docker, &stale).await)
}

/// Removes every network labelled [`LABEL`] whose run is no longer alive (left by a
/// killed run's tests), once its containers are gone; returns their names.
pub async fn cleanup_stale_networks(docker: &Docker) -> Result<Vec<String>, DockerError> {
    let options = bollard::query_parameters::ListNetworksOptions {
        filters: Some(labelled()),
    };
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            what: "listing networks".into(),
            source: Box::new(source),
        })?;
    let mut removed = Vec::new();
    for network in networks {
        let run = network.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
        if run.is_some_and(|run| lifecycle::run_is_alive(run)) {
            continue;
        }
        let Some(name) = network.name else { continue };
        match docker.remove_network(&name).await {
            Ok(()) => removed.push(name),
            Err(err) => tracing::warn!(network = %name, "removing: {err}"),
        }
    }
    Ok(removed)
}
