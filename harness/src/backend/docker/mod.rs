//! The Docker backend: real containers on the local Docker Engine, driven through its
//! API with `bollard`.
//!
//! - [`images`]: the images the backend runs, built from Debian packages without a
//!   registry (`imds-harness images`). Nothing is ever pulled.

pub mod images;

use bollard::Docker;

/// The label every image, container, volume and network of the project carries.
pub const LABEL: &str = "imds-harness";

/// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`), checks that
/// it answers, and settles on an API version both sides speak.
pub async fn connect() -> Result<Docker, images::ImageError> {
    let unreachable = |source: bollard::errors::Error| images::ImageError::DockerUnreachable {
        source: Box::new(source),
    };
    let docker = Docker::connect_with_unix_defaults().map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}
