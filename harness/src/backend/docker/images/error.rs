//! The images' error.

use bollard::errors::Error as BollardError;

use super::recipe::{ImageKind, MIRROR};

/// Errors of `imds-harness images`; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The machine's Docker Engine did not answer.
    #[error(
        "the Docker Engine at {at} is not reachable ({source}): start the Docker Engine \
         (e.g. `systemctl start docker` or `dockerd &`), or point DOCKER_HOST at its socket"
    )]
    DockerUnreachable {
        /// Where it was looked for: `DOCKER_HOST`, or the default socket.
        at: String,
        /// What connecting or pinging it returned.
        #[source]
        source: Box<BollardError>,
    },
    /// `mmdebstrap`, which builds the Debian-based images, is not on PATH.
    #[error("mmdebstrap is not installed: apt-get install mmdebstrap")]
    MmdebstrapMissing,
    /// `mmdebstrap` exited unsuccessfully while making an image's tar.
    #[error(
        "mmdebstrap failed to make the {image} image ({status}); it downloads from \
         {MIRROR}, which must be reachable. Its last output:\n{log_tail}"
    )]
    Mmdebstrap {
        /// The image it was making.
        image: ImageKind,
        /// Its exit status, as the standard library renders it (`exit status: 1`).
        status: String,
        /// The last 20 lines of its log.
        log_tail: String,
    },
    /// The engine refused an image tar.
    #[error("the Docker Engine refused to import {tag} (check `docker info` and the disk space of /var/lib/docker)")]
    Import {
        /// The tag the image was being imported as.
        tag: String,
        /// What the engine answered.
        #[source]
        source: Box<BollardError>,
    },
    /// A request to the engine about an image (inspecting, tagging, removing) failed.
    #[error("asking the Docker Engine about {what}")]
    Docker {
        /// What was asked, as `image <tag>` or `tagging <tag> as <stable tag>`.
        what: String,
        /// What the engine answered.
        #[source]
        source: Box<BollardError>,
    },
    /// A file, directory or process of the build failed.
    #[error("{what}")]
    Io {
        /// What was being done, as `creating <path>`; the whole message.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The SDK clients for the probe image could not be prepared.
    #[error("the probe image's SDK clients: {0}")]
    Programs(crate::probe::ProbeError),
    /// The build was cancelled (Ctrl-C, or another image's failure) and cleaned up.
    #[error("interrupted: the build was stopped and its temporary files removed; run `imds-harness images` again")]
    Interrupted,
}
