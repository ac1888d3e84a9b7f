//! `imds-harness images`: builds the docker backend's images, or finds them cached.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use imds_harness::backend::docker::{self, images};
use imds_harness::probe::shim;
use tokio_util::sync::CancellationToken;

use super::exit;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Rebuild every image even when its tag is already in the engine.
    #[arg(long)]
    force: bool,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let shim = shim::locate()?;
    let plan = images::plan(&shim)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    let outcomes = runtime.block_on(async {
        let docker = docker::connect().await?;
        let workdir = images::Workdir::new()?;
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        let watcher = tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("imds-harness images: stopping, removing temporary files");
            on_signal.cancel();
        });
        let result = images::ensure(
            &docker,
            &plan,
            args.force,
            workdir.path(),
            &cancel,
            &print_outcome,
        )
        .await;
        watcher.abort();
        drop(workdir);
        result
    })?;
    let built = outcomes
        .iter()
        .filter(|o| o.status == images::Status::Built)
        .count();
    println!(
        "{} images: {built} built, {} cached, in {:.1} s",
        outcomes.len(),
        outcomes.len() - built,
        started.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}

fn print_outcome(outcome: &images::Outcome) {
    let size = outcome.size as f64 / 1e6;
    match outcome.status {
        images::Status::Cached => println!(
            "{:<9} {}  cached  {size:.0} MB",
            outcome.kind.name(),
            outcome.tag
        ),
        images::Status::Built => println!(
            "{:<9} {}  built in {:.1} s (mmdebstrap {:.1} s, import {:.1} s)  {size:.0} MB",
            outcome.kind.name(),
            outcome.tag,
            (outcome.bootstrap + outcome.import).as_secs_f64(),
            outcome.bootstrap.as_secs_f64(),
            outcome.import.as_secs_f64()
        ),
    }
}
