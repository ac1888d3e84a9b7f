//! `imds-harness images`: builds the docker backend's images, or finds them cached, and
//! keeps the cache of older ones bounded.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use imds_harness::backend::docker::{self, images};
use imds_harness::probe::shim;
use tokio_util::sync::CancellationToken;

use super::exit::Exit;

#[derive(Args, Debug)]
pub(super) struct ImagesArgs {
    /// Rebuild every image even when its tag is already in the engine.
    #[arg(long, conflicts_with = "prune")]
    force: bool,
    /// Only prune: build nothing, remove the images (labelled imds-harness=1) that are
    /// neither a current recipe's nor among the --keep most recent of their kind, and
    /// the tars of removed images. Images a container uses are kept.
    #[arg(long)]
    prune: bool,
    /// How many older images of each kind to keep besides the current ones (after
    /// every run of this command, and with --prune).
    #[arg(long, value_name = "N", default_value_t = images::KEEP)]
    keep: usize,
}

pub(super) fn run(args: &ImagesArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let shim = shim::locate()?;
    let plan = images::plan(&shim, &images::locate_harness()?)?;
    let current: Vec<String> = plan.iter().map(|p| p.tag.clone()).collect();
    let kinds: Vec<&str> = plan.iter().map(|p| p.recipe.kind.name()).collect();
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    runtime.block_on(async {
        let docker = docker::connect().await?;
        // Tests and runs that prepare the images wait for this build, and it for them.
        let _one_at_a_time = images::lock_preparation(Path::new(images::TARS_DIR)).await?;
        if !args.prune {
            let outcomes = build(&docker, &plan, args.force).await?;
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
        }
        let pruned = images::prune(&docker, &kinds, &current, args.keep).await?;
        let tars = images::prune_tars(&docker, Path::new(images::TARS_DIR)).await?;
        print_prune(&pruned, &tars, args.keep);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Exit::Ok)
}

async fn build(
    docker: &bollard::Docker,
    plan: &[images::Planned],
    force: bool,
) -> Result<Vec<images::ImageOutcome>, images::ImageError> {
    let workdir = images::Workdir::new()?;
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("imds-harness images: stopping, removing temporary files");
        on_signal.cancel();
    });
    let result = images::ensure(docker, plan, force, workdir.path(), &cancel, &print_outcome).await;
    watcher.abort();
    drop(workdir);
    result
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn print_outcome(outcome: &images::ImageOutcome) {
    let size = mb(outcome.size);
    match outcome.status {
        images::Status::Cached => {
            println!("{:<9} {}  cached  {size}", outcome.kind.name(), outcome.tag);
        }
        images::Status::Built => println!(
            "{:<9} {}  built in {:.1} s ({} {:.1} s, import {:.1} s)  {size}",
            outcome.kind.name(),
            outcome.tag,
            (outcome.bootstrap + outcome.import).as_secs_f64(),
            match outcome.kind.source() {
                images::Source::Debian => "mmdebstrap",
                images::Source::Executable => "tar",
            },
            outcome.bootstrap.as_secs_f64(),
            outcome.import.as_secs_f64()
        ),
    }
}

/// Every image of ours, kept or removed, with its size; then the totals.
fn print_prune(pruned: &images::PruneReport, tars: &images::TarsReport, keep: usize) {
    println!("disk (current images, the {keep} most recent others of each kind, images in use):");
    for image in &pruned.images {
        println!(
            "  {:<9} {}  {}  {}",
            image.kind,
            image.name(),
            image.fate,
            mb(image.size)
        );
    }
    let removed = pruned
        .images
        .iter()
        .filter(|i| i.fate == images::Fate::Removed)
        .count();
    let kept = pruned.images.iter().filter(|i| i.fate.kept()).count();
    println!(
        "  images: {kept} kept ({}), {removed} removed ({} freed)",
        mb(pruned.kept_bytes()),
        mb(pruned.removed_bytes())
    );
    for (name, size) in &tars.removed {
        println!("  tar {name}  removed  {}", mb(*size));
    }
    println!(
        "  tars in {}: {} kept ({}), {} removed ({} freed)",
        images::TARS_DIR,
        tars.kept.len(),
        mb(tars.kept_bytes()),
        tars.removed.len(),
        mb(tars.removed_bytes())
    );
    println!(
        "  total kept: {}",
        mb(pruned.kept_bytes() + tars.kept_bytes())
    );
}
