//! The real Earthly: runs the top-level Earthfile's probe targets where `earthly` is
//! installed, so a user on an EC2 build host sees what an Earthly RUN step really gets.
//! This realises nothing itself: the network is the one Earthly builds.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// The Earthfile targets this backend runs: a RUN step probing IMDS, and the same
/// through `RUN --aws`.
pub const TARGETS: [&str; 2] = ["+probe", "+probe-aws-flag"];

/// Errors of the earthly backend: Earthly or the Earthfile is missing, or `earthly`
/// could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EarthlyError {
    /// `earthly` is not on PATH.
    #[error(
        "earthly is not on PATH: the earthly backend runs the Earthfile's targets with the \
         real Earthly (install it from https://earthly.dev/get-earthly), or use --backend netns"
    )]
    NotInstalled,
    /// The directory given (held here) has no `Earthfile`.
    #[error("no Earthfile in {0}: run from the repository's top level")]
    NoEarthfile(PathBuf),
    /// `earthly <target>` could not be run (not its exit status: that is the result).
    #[error("running earthly {target}: {source}")]
    Spawn {
        /// The Earthfile target, as `+probe`.
        target: String,
        /// Why the process could not be started or waited for.
        source: std::io::Error,
    },
}

/// `earthly` on PATH.
pub fn locate() -> Result<PathBuf, EarthlyError> {
    crate::which::on_path("earthly").ok_or(EarthlyError::NotInstalled)
}

/// Runs `earthly <target>` in `dir` (which holds the Earthfile), output streamed.
pub fn run_target(earthly: &Path, dir: &Path, target: &str) -> Result<ExitStatus, EarthlyError> {
    if !dir.join("Earthfile").is_file() {
        return Err(EarthlyError::NoEarthfile(dir.to_path_buf()));
    }
    duct::cmd(earthly, [target])
        .dir(dir)
        .unchecked()
        .run()
        .map(|output| output.status)
        .map_err(|source| EarthlyError::Spawn {
            target: target.to_string(),
            source,
        })
}
