//! Images without a registry: each image is a Debian bookworm root file system made by
//! `mmdebstrap` (packages included at bootstrap, so no container ever needs a network),
//! or for the mock's image `imds-harness` alone, imported into the engine through its
//! API (`POST /images/create?fromSrc=-`). Nothing is ever pulled. The mock's image is
//! also tagged [`MOCK_IMAGE`] (`imds-harness/mock:latest`), the name other projects use.
//!
//! An image is tagged `imds-harness/<name>:<hash>`, where the hash covers its whole
//! recipe (suite, variant, packages, options, image config and, for the probe image,
//! the bytes of the `imds-shim` binary copied in). A tag that exists is up to date; a
//! changed recipe gives a new tag. Old tags are a bounded cache: after a build, the
//! images of the kinds built beyond the current tags and the [`KEEP`] most recent others
//! are removed, unless a container uses them.
//!
//! - `recipe.rs`: what goes into each image, its hash and its tag ([`plan`]);
//! - `mmdebstrap.rs`: the Debian root file systems, made by `mmdebstrap` in a [`Workdir`];
//! - `executable.rs`: the mock's root file system, `imds-harness` and its shared objects;
//! - `import.rs`: importing them into the engine, or finding them there ([`ensure`]);
//! - `prune.rs`: the bounded cache ([`prune()`]);
//! - `tars.rs`: the tars that nested engines load ([`ImageSet`], [`TARS_DIR`]).

mod executable;
mod import;
mod mmdebstrap;
mod prune;
mod recipe;
mod tars;

pub use executable::Executable;
pub use import::{ensure, ImageOutcome, Status};
pub use mmdebstrap::Workdir;
pub use prune::{prune, Fate, PruneReport, Pruned, KEEP};
pub use recipe::{
    locate_harness, plan, ImageKind, Planned, Recipe, Source, HARNESS_IN_IMAGE, MOCK_IMAGE,
    SHIM_IN_IMAGE,
};
pub use tars::{prune_tars, ImageSet, TarsReport, TARS_DIR};

use bollard::errors::Error as BollardError;

use super::LABEL;
use recipe::MIRROR;

/// Errors of `imds-harness images`; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the Docker Engine at {at} is not reachable ({source}): start the Docker Engine \
         (e.g. `systemctl start docker` or `dockerd &`), or point DOCKER_HOST at its socket"
    )]
    DockerUnreachable {
        /// Where it was looked for: `DOCKER_HOST`, or the default socket.
        at: String,
        #[source]
        source: Box<BollardError>,
    },
    #[error("mmdebstrap is not installed: apt-get install mmdebstrap")]
    MmdebstrapMissing,
    #[error(
        "mmdebstrap failed to make the {image} image ({status}); it downloads from \
         {MIRROR}, which must be reachable. Its last output:\n{log_tail}"
    )]
    Mmdebstrap {
        image: ImageKind,
        status: String,
        log_tail: String,
    },
    #[error("the Docker Engine refused to import {tag} (check `docker info` and the disk space of /var/lib/docker)")]
    Import {
        tag: String,
        #[source]
        source: Box<BollardError>,
    },
    #[error("asking the Docker Engine about {what}")]
    Docker {
        what: String,
        #[source]
        source: Box<BollardError>,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the probe image's SDK clients: {0}")]
    Programs(crate::probe::ProbeError),
    #[error("interrupted: the build was stopped and its temporary files removed; run `imds-harness images` again")]
    Interrupted,
}

/// Every image of the engine labelled `imds-harness=1`.
async fn labelled_images(
    docker: &bollard::Docker,
) -> Result<Vec<bollard::models::ImageSummary>, ImageError> {
    let options = bollard::query_parameters::ListImagesOptions {
        filters: Some(
            [("label".to_string(), vec![format!("{}=1", super::LABEL)])]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    docker
        .list_images(Some(options))
        .await
        .map_err(|source| ImageError::Docker {
            what: "the images labelled imds-harness=1".into(),
            source: Box::new(source),
        })
}
