//! The image tars that the engines inside a simulated instance load (they have no
//! registry either): exported once per tag into [`TARS_DIR`]; older ones are removed.

use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::import::{ensure, Outcome};
use super::mmdebstrap::Workdir;
use super::recipe::{plan, ImageKind};
use super::ImageError;

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

    /// Builds what is missing (see [`ensure`]) and exports the tars that are not there
    /// yet into `tars`; older tars there are removed. `on_image` sees each image.
    pub async fn prepare(
        docker: &Docker,
        shim: &Path,
        tars: &Path,
        on_image: &(dyn Fn(&Outcome) + Sync),
    ) -> Result<ImageSet, ImageError> {
        // One preparation at a time in a process: concurrent ones would build and
        // export the same images twice.
        static PREPARING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = PREPARING.lock().await;
        let plan = plan(shim)?;
        let workdir = Workdir::new()?;
        let cancel = CancellationToken::new();
        let outcomes = ensure(docker, &plan, false, workdir.path(), &cancel, on_image).await?;
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
        tokio::fs::create_dir_all(tars)
            .await
            .map_err(io(format!("creating {}", tars.display())))?;
        let wanted = [Self::tar_name(&set.probe), Self::tar_name(&set.instance)];
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
        if let Ok(entries) = std::fs::read_dir(tars) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let old_tar = name.starts_with("imds-harness_") && name.ends_with(".tar");
                if old_tar && !wanted.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(set)
    }
}
