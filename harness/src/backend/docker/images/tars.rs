//! The image tars that the engines inside a simulated instance load (they have no
//! registry either): exported once per tag into [`TARS_DIR`], and kept exactly as long
//! as their image is in the machine's engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::error::ImageError;
use super::import::{ensure, ImageOutcome, Status};
use super::mmdebstrap::Workdir;
use super::plan::{locate_harness, plan};
use super::prune::{labelled_images, prune, KEEP};
use super::recipe::{ImageKind, NAMESPACE};

/// Where the image tars that nested engines load are kept: one per tag, exported once.
pub const TARS_DIR: &str = "/var/cache/imds-harness/image-tars";

/// The images a simulated instance runs, present in the machine's engine and exported
/// as tars for the engines inside it (which have no registry either).
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// The probe image's tag.
    pub probe: String,
    /// The instance image's tag.
    pub instance: String,
    /// The folder holding their tars, named by [`ImageSet::tar_name`].
    pub tars: PathBuf,
}

impl ImageSet {
    /// The tar of `tag` in [`ImageSet::tars`].
    pub fn tar_name(tag: &str) -> String {
        format!("{}.tar", tag.replace(['/', ':'], "_"))
    }

    /// Builds what is missing (see [`ensure`]); after a build, prunes the older images
    /// of the kinds built beyond [`KEEP`] (see [`prune`]); exports the tars that are not
    /// there yet into `tars`, and removes the tars whose image is gone (see
    /// [`prune_tars`]). `on_image` sees each image.
    pub async fn prepare(
        docker: &Docker,
        shim: &Path,
        tars: &Path,
        on_image: &(dyn Fn(&ImageOutcome) + Sync),
    ) -> Result<ImageSet, ImageError> {
        // One preparation at a time, in a process and across processes (tests side by
        // side, two runs at once): concurrent ones would build and export the same
        // images twice. The first builds; the others wait for it and find the images.
        let _one_at_a_time = lock_preparation(tars).await?;
        let plan = plan(shim, &locate_harness()?)?;
        let workdir = Workdir::new()?;
        let cancel = CancellationToken::new();
        let outcomes = ensure(docker, &plan, false, workdir.path(), &cancel, on_image).await?;
        let built: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.status == Status::Built)
            .map(|o| o.kind.name())
            .collect();
        if !built.is_empty() {
            let current: Vec<String> = plan.iter().map(|p| p.tag.clone()).collect();
            // The images are ready: a prune that fails is worth a warning, not the run.
            match prune(docker, &built, &current, KEEP).await {
                Ok(report) => {
                    for image in report.images.iter().filter(|i| !i.fate.kept()) {
                        tracing::info!(
                            "old image {}: {} ({:.0} MB)",
                            image.name(),
                            image.fate,
                            image.size as f64 / 1e6
                        );
                    }
                }
                Err(err) => tracing::warn!("pruning old images: {err}"),
            }
        }
        let tag = |kind| {
            outcomes
                .iter()
                .find(|o| o.kind == kind)
                .map(|o| o.tag.clone())
                .expect("ensure returns every planned image")
        };
        let set = ImageSet {
            probe: tag(ImageKind::Probe),
            instance: tag(ImageKind::Instance),
            tars: tars.to_path_buf(),
        };
        let io = |what: String| move |source| ImageError::Io { what, source };
        for tag in [&set.probe, &set.instance] {
            let path = tars.join(Self::tar_name(tag));
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(io(format!("creating {}", partial.display())))?;
            let mut stream = docker.export_image(tag);
            while let Some(chunk) =
                stream
                    .try_next()
                    .await
                    .map_err(|source| ImageError::Docker {
                        what: format!("exporting {tag}"),
                        source: Box::new(source),
                    })?
            {
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                    .await
                    .map_err(io(format!("writing {}", partial.display())))?;
            }
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(io(format!("writing {}", partial.display())))?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(io(format!("renaming {}", partial.display())))?;
        }
        if let Err(err) = prune_tars(docker, tars).await {
            tracing::warn!("pruning old image tars in {}: {err}", tars.display());
        }
        Ok(set)
    }
}

/// An exclusive lock on `.prepare.lock` in `tars` (the folder made if missing), held
/// until the file returned is dropped ([`crate::lifecycle::lock_file`]).
pub async fn lock_preparation(tars: &Path) -> Result<std::fs::File, ImageError> {
    let io = |what: String| move |source| ImageError::Io { what, source };
    tokio::fs::create_dir_all(tars)
        .await
        .map_err(io(format!("creating {}", tars.display())))?;
    let path = tars.join(".prepare.lock");
    let locking = path.clone();
    tokio::task::spawn_blocking(move || crate::lifecycle::lock_file(&locking))
        .await
        .map_err(|join| io(format!("locking {}", path.display()))(join.into()))?
        .map_err(io(format!("locking {}", path.display())))
}

/// The tars in a folder after [`prune_tars`]: names and sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarsReport {
    /// The tars still needed (their image is in the engine) and the partial tars of
    /// running processes, by name.
    pub kept: Vec<(String, u64)>,
    /// The stale tars and partial tars deleted, by name (one that could not be
    /// deleted is in neither list).
    pub removed: Vec<(String, u64)>,
}

impl TarsReport {
    /// Bytes of the files kept.
    pub fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|(_, size)| size).sum()
    }

    /// Bytes freed by the files deleted.
    pub fn removed_bytes(&self) -> u64 {
        self.removed.iter().map(|(_, size)| size).sum()
    }
}

/// Whether a file of the tars folder is ours, and which tar it is or will be: a tar
/// (`imds-harness_<kind>_<hash>.tar`) or one being written by process `pid`
/// (`imds-harness_<kind>_<hash>.<pid>.partial`).
#[derive(Debug, PartialEq, Eq)]
enum TarFile {
    Tar,
    Partial { pid: u32 },
}

fn tar_file(name: &str) -> Option<TarFile> {
    if !name.starts_with(&format!("{NAMESPACE}_")) {
        return None;
    }
    if Path::new(name).extension().is_some_and(|ext| ext == "tar") {
        return Some(TarFile::Tar);
    }
    let (_, pid) = name.strip_suffix(".partial")?.rsplit_once('.')?;
    pid.parse().ok().map(|pid| TarFile::Partial { pid })
}

/// Removes the tars in `dir` whose image is no longer in the engine (pruned, or
/// removed by hand), and partial tars of processes that are gone; tars of every image
/// still there stay, so that a run of another checkout keeps the tars it loads.
pub async fn prune_tars(docker: &Docker, dir: &Path) -> Result<TarsReport, ImageError> {
    let mut report = TarsReport::default();
    // The folder first, the engine second: a tar is written after its image is
    // imported, so every tar listed here belongs to an image listed below unless that
    // image is gone.
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => {
            return Err(ImageError::Io {
                what: format!("reading {}", dir.display()),
                source,
            })
        }
    };
    let files: Vec<(String, PathBuf, u64)> = entries
        .flatten()
        .map(|entry| {
            let size = entry.metadata().map_or(0, |m| m.len());
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
                size,
            )
        })
        .collect();
    let images = labelled_images(docker).await?;
    let present: BTreeSet<String> = images
        .iter()
        .flat_map(|image| image.repo_tags.iter())
        .map(|tag| ImageSet::tar_name(tag))
        .collect();
    for (name, path, size) in files {
        let stale = match tar_file(&name) {
            None => continue,
            Some(TarFile::Tar) => !present.contains(&name),
            Some(TarFile::Partial { pid }) => !Path::new(&format!("/proc/{pid}")).exists(),
        };
        if stale && std::fs::remove_file(&path).is_ok() {
            report.removed.push((name, size));
        } else if !stale {
            report.kept.push((name, size));
        }
    }
    report.kept.sort();
    report.removed.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_are_recognised() {
        let name = ImageSet::tar_name("imds-harness/probe:0123456789abcdef");
        assert_eq!(name, "imds-harness_probe_0123456789abcdef.tar");
        assert_eq!(tar_file(&name), Some(TarFile::Tar));
        let partial = Path::new(&name).with_extension("4242.partial");
        assert_eq!(
            tar_file(partial.to_str().unwrap()),
            Some(TarFile::Partial { pid: 4242 })
        );
        assert_eq!(tar_file("other.tar"), None);
        assert_eq!(tar_file("imds-harness_probe_x.partial"), None);
    }
}
