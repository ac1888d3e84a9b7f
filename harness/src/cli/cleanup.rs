//! `imds-harness cleanup`: reaps what a killed run left behind.

use clap::Args;
use imds_harness::backend::netns;

use super::exit;

#[derive(Args, Debug)]
pub struct CleanupArgs {}

pub fn run(_args: CleanupArgs) -> anyhow::Result<u8> {
    if let Err(err) = netns::check_prerequisites() {
        eprintln!("imds-harness cleanup: {err}");
        return Ok(exit::USAGE);
    }
    let removed = netns::cleanup_stale()?;
    if removed.is_empty() {
        println!("nothing to clean up");
    } else {
        println!(
            "removed {} network namespace(s) of dead runs:",
            removed.len()
        );
        for name in removed {
            println!("  {name}");
        }
    }
    Ok(exit::OK)
}
