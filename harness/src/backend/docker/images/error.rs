//! The images' error.

use bollard::errors::Error as BollardError;

use super::recipe::{ImageKind, MIRROR};

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
