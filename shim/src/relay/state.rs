//! The state file (`--state FILE`): the grants' records (ids, labels, times, digests of the
//! secrets; no secret), as an append-only log of JSON lines.
//!
//! The first line is `{"version":2}`; each further line is one change, `{"issued":<record>}` or
//! `{"revoked":{"id":...,"at":...}}`. A change is appended and synced before it is acknowledged;
//! when the log grows to twice what it describes, it is rewritten (compacted) atomically: a
//! temporary file in the same directory, created with mode 0600, synced, renamed over the old
//! one. Version 1 files (one JSON object) are read and rewritten as version 2.
//!
//! The file is trusted only when no one but root can have written it: it and its directory
//! must be owned by root and not writable by group or others, the file is opened without
//! following a symlink, and every record is validated; anything else stops the relay before
//! it serves.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::grants::{GrantRecord, MAX_EPOCH_SECS};

/// The file's format version.
const VERSION: u32 = 2;
/// Its permissions: the relay's user only.
pub const MODE: u32 = 0o600;
/// Group- and other-write bits: refused on the file and its directory.
const FOREIGN_WRITE: u32 = 0o022;
/// The owner required of the file and its directory: root.
const OWNER: u32 = 0;
/// Compact when the log holds more than twice the records it describes, plus this many lines.
const COMPACT_SLACK: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
}

/// Version 1: one JSON object with every record.
#[derive(Deserialize)]
struct Version1 {
    version: u32,
    grants: Vec<GrantRecord>,
}

/// One change to the grants, as one line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new grant.
    Issued(GrantRecord),
    /// A grant revoked at `at` (seconds since the epoch).
    Revoked {
        /// The grant.
        id: String,
        /// When.
        at: u64,
    },
}

/// The state file could not be read or written, or is not to be trusted.
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
    /// Someone other than root could have written it.
    #[error(
        "state file {path}: not trusted: {reason} (it and its directory must be owned by root \
         and not writable by group or others; fix with `chown root: FILE DIR && chmod go-w FILE DIR`)"
    )]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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
    /// A record is not valid.
    #[error("state file {path}, line {line}: {reason}; fix or remove the line")]
    Record {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// An open, trusted state file: where changes are appended.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    dir: PathBuf,
    /// The file, open for appending (`None` until first written, or after a failed write).
    file: Option<File>,
    /// Lines in the file after the header.
    lines: usize,
}

/// The grants in `path` (none when it does not exist), after checking who could have written
/// it and every record; and the file, rewritten (compacted) and open for appending.
pub fn open(path: &Path) -> Result<(StateFile, Vec<GrantRecord>), StateError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let untrusted = |reason: String| StateError::Untrusted {
        path: path.to_owned(),
        reason,
    };
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let dir_meta = fs::metadata(&dir).map_err(io_err)?;
    check_owner_and_mode(&dir_meta).map_err(|why| untrusted(format!("its directory {why}")))?;
    let records = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(mut file) => {
            let meta = file.metadata().map_err(io_err)?;
            if !meta.is_file() {
                return Err(untrusted("not a regular file".into()));
            }
            check_owner_and_mode(&meta).map_err(|why| untrusted(format!("the file {why}")))?;
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io_err)?;
            parse(path, &text)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(untrusted("a symbolic link (not followed)".into()))
        }
        Err(e) => return Err(io_err(e)),
    };
    let mut state = StateFile {
        path: path.to_owned(),
        dir,
        file: None,
        lines: 0,
    };
    state.rewrite(records.iter())?;
    Ok((state, records))
}

fn check_owner_and_mode(meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != OWNER {
        return Err(format!("is owned by uid {}, not root", meta.uid()));
    }
    let mode = meta.permissions().mode();
    if mode & FOREIGN_WRITE != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The records a state file's text describes, each validated.
fn parse(path: &Path, text: &str) -> Result<Vec<GrantRecord>, StateError> {
    let bad = |line: usize, reason: String| StateError::Record {
        path: path.to_owned(),
        line,
        reason,
    };
    let format = |reason: String| StateError::Format {
        path: path.to_owned(),
        reason,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    if let Ok(v1) = serde_json::from_str::<Version1>(text) {
        if v1.version != 1 {
            return Err(format(format!("version {}", v1.version)));
        }
        let mut seen = HashMap::new();
        for (i, record) in v1.grants.into_iter().enumerate() {
            record
                .validate()
                .map_err(|why| bad(1, format!("grant #{}: {why}", i + 1)))?;
            if seen.insert(record.id.clone(), record).is_some() {
                return Err(bad(
                    1,
                    format!("grant #{}: a second grant with its id", i + 1),
                ));
            }
        }
        return Ok(sorted(seen));
    }
    let mut lines = text.split_inclusive('\n').enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    match serde_json::from_str::<Header>(header) {
        Ok(h) if h.version == VERSION => {}
        Ok(h) => return Err(format(format!("version {}", h.version))),
        Err(e) => return Err(format(format!("line 1: {e}"))),
    }
    let mut records: HashMap<String, GrantRecord> = HashMap::new();
    for (i, line) in lines {
        let number = i + 1;
        let change = match serde_json::from_str::<Change>(line) {
            Ok(change) => change,
            // A last line cut short: a change never acknowledged (the relay stopped while
            // writing it).
            Err(_) if !line.ends_with('\n') => break,
            Err(e) => return Err(bad(number, e.to_string())),
        };
        apply(&mut records, change).map_err(|why| bad(number, why))?;
    }
    Ok(sorted(records))
}

fn sorted(records: HashMap<String, GrantRecord>) -> Vec<GrantRecord> {
    let mut all: Vec<GrantRecord> = records.into_values().collect();
    all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    all
}

/// Applies one change to `records`; says why when it does not fit them.
pub fn apply<S: std::hash::BuildHasher>(
    records: &mut HashMap<String, GrantRecord, S>,
    change: Change,
) -> Result<(), String> {
    match change {
        Change::Issued(record) => {
            record.validate()?;
            if records.contains_key(&record.id) {
                return Err(format!("grant {} issued twice", record.id));
            }
            records.insert(record.id.clone(), record);
        }
        Change::Revoked { id, at } => {
            if at > MAX_EPOCH_SECS {
                return Err(format!("revoke of grant {id} at {at}, after 9999-12-31"));
            }
            let record = records
                .get_mut(&id)
                .ok_or_else(|| format!("revoke of grant {id}, which was never issued"))?;
            record.revoked.get_or_insert(at);
        }
    }
    Ok(())
}

impl StateFile {
    fn io_err(&self, source: io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Whether the log has grown enough to be compacted, for `records` records.
    pub fn wants_compaction(&self, records: usize) -> bool {
        self.lines > records.saturating_mul(2).saturating_add(COMPACT_SLACK)
    }

    /// Appends `changes` and syncs them: durable when this returns `Ok`. After a failure the
    /// file is not appended to again until [`StateFile::rewrite`] succeeds.
    pub fn append(&mut self, changes: &[Change]) -> Result<(), StateError> {
        let Some(file) = self.file.as_mut() else {
            return Err(self.io_err(io::Error::other(
                "an earlier write failed and the file was not rewritten since",
            )));
        };
        let mut body = Vec::new();
        for change in changes {
            serde_json::to_writer(&mut body, change)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| body.write_all(b"\n"))
                .map_err(|e| StateError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
        }
        let written = file.write_all(&body).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                self.lines += changes.len();
                Ok(())
            }
            Err(e) => {
                // What reached the file is unknown: the next change rewrites it whole.
                self.file = None;
                Err(self.io_err(e))
            }
        }
    }

    /// Replaces the file with one holding exactly `records`, atomically, and appends to the
    /// new one from now on.
    pub fn rewrite<'a>(
        &mut self,
        records: impl Iterator<Item = &'a GrantRecord>,
    ) -> Result<(), StateError> {
        let name = self.path.file_name().ok_or_else(|| StateError::Io {
            path: self.path.clone(),
            source: io::Error::other("the state file path has no file name"),
        })?;
        let tmp = self.dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut lines = 0;
        let mut body = Vec::new();
        serde_json::to_writer(&mut body, &Header { version: VERSION })
            .map_err(|e| self.io_err(io::Error::other(e.to_string())))?;
        body.push(b'\n');
        for record in records {
            serde_json::to_writer(&mut body, &Change::Issued(record.clone()))
                .map_err(|e| self.io_err(io::Error::other(e.to_string())))?;
            body.push(b'\n');
            lines += 1;
        }
        let written = (|| -> io::Result<File> {
            // Removing a name never follows a symlink; `create_new` (O_EXCL) never does either.
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(MODE)
                .custom_flags(libc::O_CLOEXEC)
                .open(&tmp)?;
            // The mode through the descriptor: the umask may have narrowed it, never widened.
            file.set_permissions(fs::Permissions::from_mode(MODE))?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok(file)
        })();
        match written {
            Ok(file) => {
                self.file = Some(file);
                self.lines = lines;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.file = None;
                Err(self.io_err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::grants::Grants;
    use crate::relay::limit::RateLimit;
    use std::time::{Duration, SystemTime};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("imdsh-relay-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn grants_with(n: usize) -> (Grants, Vec<crate::relay::grants::IssuedGrant>) {
        let mut g = Grants::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let issued = (0..n)
            .map(|i| {
                g.issue(
                    Duration::from_mins(1),
                    &format!("ci-{i}"),
                    SystemTime::now(),
                )
                .unwrap()
            })
            .collect();
        (g, issued)
    }

    #[test]
    fn changes_load_back_with_mode_0600_and_no_secret() {
        let dir = scratch("roundtrip");
        let path = dir.join("grants.json");
        let (mut g, issued) = grants_with(2);
        let (mut file, loaded) = open(&path).unwrap();
        assert!(loaded.is_empty());
        file.append(&[
            Change::Issued(issued[0].record.clone()),
            Change::Issued(issued[1].record.clone()),
        ])
        .unwrap();
        let (revoked, _) = g.revoke(&issued[1].record.id, SystemTime::now()).unwrap();
        file.append(&[Change::Revoked {
            id: revoked.id.clone(),
            at: revoked.revoked.unwrap(),
        }])
        .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, MODE);
        let text = fs::read_to_string(&path).unwrap();
        for i in &issued {
            let (_, secret) = i.token.expose().split_once('.').unwrap();
            assert!(!text.contains(secret));
        }
        let (_, back) = open(&path).unwrap();
        assert_eq!(back, g.records());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_1_files_are_read_and_rewritten() {
        let dir = scratch("v1");
        let path = dir.join("grants.json");
        let (g, _) = grants_with(3);
        let v1 = serde_json::json!({ "version": 1, "grants": g.records() });
        fs::write(&path, v1.to_string()).unwrap();
        let (_, back) = open(&path).unwrap();
        assert_eq!(back, g.records());
        assert!(fs::read_to_string(&path)
            .unwrap()
            .starts_with("{\"version\":2}\n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_records_are_named_and_refused() {
        let dir = scratch("bad");
        let path = dir.join("grants.json");
        let (g, _) = grants_with(1);
        let good = serde_json::to_value(&g.records()[0]).unwrap();
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"expires": 1u64 << 63}), "expires"),
            (serde_json::json!({"created": u64::MAX}), "created"),
            (serde_json::json!({"token_digest": "zz"}), "token_digest"),
            (serde_json::json!({"path_digest": "00"}), "path_digest"),
            (serde_json::json!({"id": "../x"}), "id"),
            (serde_json::json!({"label": "a\u{1b}[2J"}), "label"),
            (serde_json::json!({"revoked": u64::MAX}), "revoked"),
            (
                serde_json::json!({"scope": {"assumed": {"role_arn": "arn:aws:iam::123456789012:role/x",
                    "session_name": "x", "duration_secs": 900}}}),
                "scope of grant",
            ),
            (
                serde_json::json!({"scope": {"assumed": {"role_arn": "arn:aws:iam::123456789012:role/x",
                    "session_name": "ok-name", "duration_secs": 7200}}}),
                "--duration 7200 s",
            ),
            (serde_json::json!({"scope": "everything"}), "line 2"),
        ];
        for (patch, named) in cases {
            let mut record = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                record[k] = v.clone();
            }
            let text = format!(
                "{{\"version\":2}}\n{}\n",
                serde_json::json!({ "issued": record })
            );
            fs::write(&path, text).unwrap();
            let err = open(&path).unwrap_err();
            let shown = err.to_string();
            assert!(matches!(err, StateError::Record { line: 2, .. }), "{shown}");
            assert!(shown.contains(named), "{named}: {shown}");
        }
        let id = good["id"].as_str().unwrap();
        for (text, named) in [
            (
                format!("{{\"version\":2}}\n{{\"revoked\":{{\"id\":\"{id}\",\"at\":1}}}}\n"),
                "never issued",
            ),
            ("{\"version\":3}\n".to_owned(), "version 3"),
            ("{}".to_owned(), "line 1"),
        ] {
            fs::write(&path, text).unwrap();
            let shown = open(&path).unwrap_err().to_string();
            assert!(shown.contains(named), "{named}: {shown}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_written_before_scopes_serve_the_instance_role() {
        let dir = scratch("legacy");
        let path = dir.join("grants.json");
        let (g, _) = grants_with(1);
        let mut old = serde_json::to_value(&g.records()[0]).unwrap();
        old.as_object_mut().unwrap().remove("scope");
        let text = format!(
            "{{\"version\":2}}\n{}\n",
            serde_json::json!({ "issued": old })
        );
        fs::write(&path, text).unwrap();
        let (_, back) = open(&path).unwrap();
        assert_eq!(back[0].scope, crate::relay::scope::Scope::InstanceRole);
        assert!(fs::read_to_string(&path)
            .unwrap()
            .contains(r#""scope":"instance_role""#));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_ignored_a_torn_middle_line_is_not() {
        let dir = scratch("torn");
        let path = dir.join("grants.json");
        let (g, _) = grants_with(1);
        let line = serde_json::to_string(&Change::Issued(g.records()[0].clone())).unwrap();
        fs::write(&path, format!("{{\"version\":2}}\n{line}\n{{\"issu")).unwrap();
        assert_eq!(open(&path).unwrap().1, g.records());
        fs::write(&path, format!("{{\"version\":2}}\n{{\"issu\n{line}\n")).unwrap();
        assert!(matches!(
            open(&path),
            Err(StateError::Record { line: 2, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_writable_files_and_directories_and_symlinks_are_refused() {
        let dir = scratch("trust");
        let path = dir.join("grants.json");
        fs::write(&path, "{\"version\":2}\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(matches!(open(&path), Err(StateError::Untrusted { .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = dir.join("elsewhere");
        fs::write(&elsewhere, "{\"version\":2}\n").unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let err = open(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // The target's mode was not touched.
        let mode = fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        fs::remove_dir_all(&dir).unwrap();
    }
}
