//! `imds-harness cleanup`: reaps what a killed run left behind: network namespaces,
//! the user-space stacks (slirp4netns, pasta) serving them, containers and Docker
//! networks of runs that are no longer alive.

use anyhow::Context;
use clap::Args;
use imds_harness::backend::{docker, netns};

use super::exit;

#[derive(Args, Debug)]
pub struct CleanupArgs {}

pub fn run(_args: CleanupArgs) -> anyhow::Result<u8> {
    if let Err(err) = netns::check_prerequisites() {
        eprintln!("imds-harness cleanup: {err}");
        return Ok(exit::USAGE);
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
    if [&namespaces, &stacks, &containers, &networks]
        .iter()
        .all(|v| v.is_empty())
    {
        println!("nothing to clean up");
    }
    if !containers.is_empty() {
        println!("removed {} container(s) of dead runs:", containers.len());
        for name in containers {
            println!("  {name}");
        }
    }
    if !networks.is_empty() {
        println!("removed {} Docker network(s) of dead runs:", networks.len());
        for name in networks {
            println!("  {name}");
        }
    }
    if !stacks.is_empty() {
        println!(
            "killed {} user-space network stack(s) of dead runs:",
            stacks.len()
        );
        for command in stacks {
            println!("  {command}");
        }
    }
    if !namespaces.is_empty() {
        println!(
            "removed {} network namespace(s) of dead runs:",
            namespaces.len()
        );
        for name in namespaces {
            println!("  {name}");
        }
    }
    Ok(exit::OK)
}
