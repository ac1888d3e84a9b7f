//! The state file (`--state FILE`): the grants' records (ids, labels, times, digests of the
//! secrets; no secret), written atomically (a temporary file in the same directory, created with
//! mode 0600, synced, then renamed over the old one) after every change.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::grants::GrantRecord;

/// The file's format version.
const VERSION: u32 = 1;
/// Its permissions: the relay's user only.
pub const MODE: u32 = 0o600;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    grants: Vec<GrantRecord>,
}

/// The state file could not be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Not a state file of this version.
    #[error(
        "state file {path} is not an imds-shim relay state file (version {VERSION}): {reason}"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The grants in `path`; none when it does not exist.
pub fn load(path: &Path) -> Result<Vec<GrantRecord>, StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| StateError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(StateError::Format {
            path: path.to_owned(),
            reason: format!("version {}", file.version),
        });
    }
    // Older or hand-made copies may be readable by others: tighten them.
    fs::set_permissions(path, fs::Permissions::from_mode(MODE)).map_err(io_err)?;
    Ok(file.grants)
}

/// Writes `grants` to `path` atomically, mode 0600.
pub fn save(path: &Path, grants: &[GrantRecord]) -> Result<(), StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let body = serde_json::to_vec_pretty(&StateFile {
        version: VERSION,
        grants: grants.to_vec(),
    })
    .map_err(|e| io_err(io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(io::Error::other("the state file path has no file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::grants::Grants;
    use crate::relay::limit::RateLimit;
    use std::time::{Duration, SystemTime};

    #[test]
    fn saved_grants_load_back_with_mode_0600_and_no_secret() {
        let dir = std::env::temp_dir().join(format!("imdsh-relay-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grants.json");
        let mut g = Grants::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let issued = g
            .issue(Duration::from_mins(1), "ci", SystemTime::now())
            .unwrap();
        save(&path, &g.records()).unwrap();
        save(&path, &g.records()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, MODE);
        let text = fs::read_to_string(&path).unwrap();
        let (_, secret) = issued.token.expose().split_once('.').unwrap();
        assert!(!text.contains(secret));
        assert_eq!(load(&path).unwrap(), g.records());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        assert!(load(&dir.join("missing")).unwrap().is_empty());
        fs::write(&path, "{}").unwrap();
        assert!(matches!(load(&path), Err(StateError::Format { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
