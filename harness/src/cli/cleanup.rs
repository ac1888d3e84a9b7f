//! `imds-harness cleanup`: reaps what a killed run left behind: network namespaces,
//! the user-space stacks (slirp4netns, pasta) serving them, containers and Docker
//! networks of runs that are no longer alive.

use anyhow::Context;
use clap::Args;
use imds_harness::backend::{docker, netns};

use super::exit::Exit;

#[derive(Args, Debug)]
pub(super) struct CleanupArgs {}

pub(super) fn run(_args: CleanupArgs) -> anyhow::Result<Exit> {
    if let Err(err) = netns::check_prerequisites() {
        eprintln!("imds-harness cleanup: {err}");
        return Ok(Exit::Usage);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    // Containers first: their namespaces' names go with the namespaces below.
    let containers = runtime.block_on(async {
        match docker::connect().await {
            Ok(engine) => {
                let containers = docker::cleanup_stale(&engine).await?;
                let networks = docker::cleanup_stale_networks(&engine).await?;
                Ok::<_, docker::DockerError>(Some((containers, networks)))
            }
            // No engine: nothing of ours can be running in it.
            Err(_) => Ok(None),
        }
    })?;
    let netns::Reaped { namespaces, stacks } = netns::cleanup_stale()?;
    let (containers, networks) = containers.unwrap_or_default();
    let reaped = [
        ("removed", "container(s)", containers),
        ("removed", "Docker network(s)", networks),
        ("killed", "user-space network stack(s)", stacks),
        ("removed", "network namespace(s)", namespaces),
    ];
    if reaped.iter().all(|(_, _, items)| items.is_empty()) {
        println!("nothing to clean up");
    }
    for (done, what, items) in reaped.iter().filter(|(_, _, items)| !items.is_empty()) {
        println!("{done} {} {what} of dead runs:", items.len());
        for item in items {
            println!("  {item}");
        }
    }
    Ok(Exit::Ok)
}
