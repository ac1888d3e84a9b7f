//! Importing the root file systems into the machine's engine through its API
//! (`POST /images/create?fromSrc=-`), labelled and tagged by recipe; finding the images
//! that are there already.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use bollard::{body_try_stream, Docker};
use futures_util::future::join_all;
use futures_util::TryStreamExt;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::error::ImageError;
use super::mmdebstrap::{bootstrap, find_mmdebstrap};
use super::plan::Planned;
use super::recipe::{ImageKind, Recipe, Source, HARNESS_IN_IMAGE};
use crate::backend::docker::labels::LABEL;

/// Whether an image was made by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Status {
    /// Bootstrapped and imported by this run.
    Built,
    /// Its tag was in the engine already, so nothing was done.
    Cached,
}

/// One image, present in the engine.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    /// Which image.
    pub kind: ImageKind,
    /// `imds-harness/<name>:<hash prefix>`, as planned.
    pub tag: String,
    /// The engine's image id (`sha256:...`).
    pub id: String,
    /// Whether this run made it.
    pub status: Status,
    /// Size in the engine, bytes.
    pub size: u64,
    /// Time to bootstrap the root file system (zero when cached).
    pub bootstrap: Duration,
    /// Time to import it into the engine (zero when cached).
    pub import: Duration,
}

/// The Dockerfile instructions applied at import: the recipe's image configuration and
/// the project's labels (the image's kind and full recipe hash among them).
fn changes(recipe: &Recipe, hash: &str) -> Vec<String> {
    let mut changes: Vec<String> = recipe
        .image_changes()
        .iter()
        .map(ToString::to_string)
        .collect();
    changes.push(format!("LABEL {LABEL}=1"));
    changes.push(format!("LABEL {LABEL}.image={}", recipe.kind.name()));
    changes.push(format!("LABEL {LABEL}.recipe={hash}"));
    changes
}

/// The image behind `tag`, if the engine has it with the project's label.
async fn existing(docker: &Docker, tag: &str) -> Result<Option<(String, u64)>, ImageError> {
    match docker.inspect_image(tag).await {
        Ok(image) => {
            let labelled = image
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|labels| labels.get(LABEL).map(String::as_str) == Some("1"));
            if !labelled {
                return Ok(None);
            }
            let id = image.id.unwrap_or_default();
            let size = image.size.unwrap_or(0).max(0) as u64;
            Ok(Some((id, size)))
        }
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(ImageError::Docker {
            what: format!("image {tag}"),
            source: Box::new(source),
        }),
    }
}

/// Makes sure every planned image is in the engine: images whose tag exists are
/// `Cached` (unless `force`); the others are bootstrapped concurrently under `workdir`
/// and imported. `on_done` sees each image as it is ready. When `cancel` fires, running
/// `mmdebstrap`s are stopped (SIGINT to their process groups, so they clean up) and awaited before
/// this returns [`ImageError::Interrupted`].
pub async fn ensure(
    docker: &Docker,
    plan: &[Planned],
    force: bool,
    workdir: &Path,
    cancel: &CancellationToken,
    on_done: &(dyn Fn(&ImageOutcome) + Sync),
) -> Result<Vec<ImageOutcome>, ImageError> {
    let mut previous = Vec::with_capacity(plan.len());
    for planned in plan {
        previous.push(existing(docker, &planned.tag).await?);
    }
    let mut outcomes: Vec<Option<ImageOutcome>> = vec![None; plan.len()];
    let mut to_build = Vec::new();
    for (index, (planned, found)) in plan.iter().zip(&previous).enumerate() {
        match found {
            Some((id, size)) if !force => {
                let outcome = ImageOutcome {
                    kind: planned.recipe.kind,
                    tag: planned.tag.clone(),
                    id: id.clone(),
                    status: Status::Cached,
                    size: *size,
                    bootstrap: Duration::ZERO,
                    import: Duration::ZERO,
                };
                on_done(&outcome);
                outcomes[index] = Some(outcome);
            }
            _ => to_build.push(index),
        }
    }
    if !to_build.is_empty() {
        // Only Debian images need mmdebstrap.
        let debian = to_build
            .iter()
            .any(|&i| plan[i].recipe.source == Source::Debian);
        let mmdebstrap = if debian {
            Some(find_mmdebstrap()?)
        } else {
            None
        };
        let builds = to_build.iter().map(|&index| {
            let planned = &plan[index];
            let mmdebstrap = mmdebstrap.as_deref();
            async move {
                let outcome = build(docker, mmdebstrap, planned, workdir, cancel).await;
                if let Err(err) = &outcome {
                    if !matches!(err, ImageError::Interrupted) {
                        // One failure stops the others: their work would be redone anyway.
                        cancel.cancel();
                    }
                } else if let Ok(outcome) = &outcome {
                    on_done(outcome);
                }
                (index, outcome)
            }
        });
        let results = join_all(builds).await;
        // Report the first real failure, not the interruptions it caused.
        let mut first_error = None;
        for (index, result) in results {
            match result {
                Ok(outcome) => outcomes[index] = Some(outcome),
                Err(err) => {
                    if matches!(first_error, None | Some(ImageError::Interrupted)) {
                        first_error = Some(err);
                    }
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
    }
    // A forced rebuild leaves the old image untagged: remove it if nothing uses it.
    for ((found, outcome), _) in previous.iter().zip(&outcomes).zip(plan) {
        if let (Some((old_id, _)), Some(outcome)) = (found, outcome) {
            if outcome.status == Status::Built && *old_id != outcome.id {
                let _ = docker
                    .remove_image(old_id, None::<RemoveImageOptions>, None)
                    .await;
            }
        }
    }
    let outcomes: Vec<ImageOutcome> = outcomes.into_iter().flatten().collect();
    for outcome in &outcomes {
        if let Some(stable) = outcome.kind.stable_tag() {
            tag_as(docker, &outcome.tag, stable).await?;
        }
    }
    Ok(outcomes)
}

/// Gives the image `tag` the name `stable` (`repository:tag`) as well.
async fn tag_as(docker: &Docker, tag: &str, stable: &str) -> Result<(), ImageError> {
    let (repo, name) = stable
        .split_once(':')
        .expect("a stable tag is repository:tag");
    let options = bollard::query_parameters::TagImageOptions {
        repo: Some(repo.to_string()),
        tag: Some(name.to_string()),
    };
    docker
        .tag_image(tag, Some(options))
        .await
        .map_err(|source| ImageError::Docker {
            what: format!("tagging {tag} as {stable}"),
            source: Box::new(source),
        })
}

async fn build(
    docker: &Docker,
    mmdebstrap: Option<&Path>,
    planned: &Planned,
    workdir: &Path,
    cancel: &CancellationToken,
) -> Result<ImageOutcome, ImageError> {
    let kind = planned.recipe.kind;
    let tar = workdir.join(format!("{}.tar", kind.name()));
    let log = workdir.join(format!("{}.mmdebstrap.log", kind.name()));
    let started = Instant::now();
    if let (Source::Executable, Some(executable)) = (&planned.recipe.source, &planned.executable) {
        executable.assemble(std::path::Path::new(HARNESS_IN_IMAGE), &tar)?;
    } else {
        let mmdebstrap = mmdebstrap.ok_or(ImageError::MmdebstrapMissing)?;
        bootstrap(mmdebstrap, planned, &tar, &log, workdir, cancel).await?;
    }
    let bootstrap_time = started.elapsed();

    let started = Instant::now();
    let (repository, tag) = planned
        .tag
        .split_once(':')
        .expect("a tag is repository:hash");
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repository.to_string()),
        tag: Some(tag.to_string()),
        message: Some(format!("imds-harness images: {}", kind.name())),
        changes: changes(&planned.recipe, &planned.hash),
        ..Default::default()
    };
    let file = tokio::fs::File::open(&tar)
        .await
        .map_err(|source| ImageError::Io {
            what: format!("opening {}", tar.display()),
            source,
        })?;
    let body = body_try_stream(ReaderStream::with_capacity(file, 1 << 20));
    let import_error = |source| ImageError::Import {
        tag: planned.tag.clone(),
        source: Box::new(source),
    };
    let import = docker
        .create_image(Some(options), Some(body), None)
        .try_for_each(|_| async { Ok(()) });
    tokio::select! {
        result = import => result.map_err(import_error)?,
        () = cancel.cancelled() => return Err(ImageError::Interrupted),
    }
    let import_time = started.elapsed();
    let _ = tokio::fs::remove_file(&tar).await;

    let (id, size) = existing(docker, &planned.tag)
        .await?
        .ok_or_else(|| ImageError::Docker {
            what: format!("image {} right after importing it", planned.tag),
            source: Box::new(BollardError::DockerResponseServerError {
                status_code: 404,
                message: "the imported image is missing or unlabelled".into(),
            }),
        })?;
    Ok(ImageOutcome {
        kind,
        tag: planned.tag.clone(),
        id,
        status: Status::Built,
        size,
        bootstrap: bootstrap_time,
        import: import_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_applied_at_import() {
        let changes = changes(&ImageKind::Base.recipe(), "abc");
        assert!(changes.contains(&"LABEL imds-harness=1".to_string()));
        assert!(changes.contains(&"LABEL imds-harness.image=base".to_string()));
        assert!(changes.contains(&"LABEL imds-harness.recipe=abc".to_string()));
    }
}
