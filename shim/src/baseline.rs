//! The hop limit a topology needs: from the recorded baseline (`fixtures/hop-limits.toml`, written
//! by `imds-harness measure --record`) or given with `--need`.
//!
//! The file is a `[hop-limits]` table of `topology = hop limit`. The shim reads it with the `toml`
//! crate on its own (it does not link the harness). When no file is named and the default path
//! does not exist (the usual case on a build host, where only the binary was copied), the copy
//! compiled into the binary is used.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Where the repository keeps the baseline.
pub const DEFAULT_PATH: &str = "fixtures/hop-limits.toml";
/// The topology an Earthly `RUN` step builds in: the default.
pub const DEFAULT_TOPOLOGY: &str = "earthly-run";
/// The baseline as recorded when this binary was built.
const EMBEDDED: &str = include_str!("../../fixtures/hop-limits.toml");

/// The largest hop limit EC2 accepts.
pub const MAX_HOP_LIMIT: u8 = 64;

#[derive(Debug, Deserialize)]
struct File {
    #[serde(rename = "hop-limits")]
    hop_limits: BTreeMap<String, i64>,
}

/// Why the need could not be found.
#[derive(Debug, Error)]
pub enum BaselineError {
    /// The file could not be read.
    #[error("cannot read the baseline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a `[hop-limits]` table of topology = 1..=64.
    #[error("the baseline {path} is not valid: {message}; expected a [hop-limits] table of topology = 1..64")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The topology has no entry.
    #[error("the baseline {path} has no entry for topology {topology:?} (it has: {known}); record it with `imds-harness measure --record`, or give the hop limit with --need")]
    UnknownTopology {
        /// The file.
        path: String,
        /// The topology asked for.
        topology: String,
        /// The topologies it has.
        known: String,
    },
}

/// Where a need came from, for the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedSource {
    /// `--need N`.
    Flag,
    /// A baseline file.
    File(PathBuf),
    /// The baseline compiled into the binary.
    Embedded,
}

impl fmt::Display for NeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("--need"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Embedded => write!(f, "the baseline built into imds-shim ({DEFAULT_PATH})"),
        }
    }
}

/// The hop limit the builds need, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Where the builds run, e.g. `earthly-run`.
    pub topology: String,
    /// The smallest hop limit with which they get credentials.
    pub hop_limit: u8,
    /// Where the number came from.
    pub source: NeedSource,
}

/// Parses a baseline's text into its table; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<BTreeMap<String, u8>, BaselineError> {
    let parse_error = |message: String| BaselineError::Parse {
        path: path.to_owned(),
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| parse_error(e.message().to_owned()))?;
    file.hop_limits
        .into_iter()
        .map(|(name, value)| match u8::try_from(value) {
            Ok(v) if (1..=MAX_HOP_LIMIT).contains(&v) => Ok((name, v)),
            _ => Err(parse_error(format!("{name} = {value} is outside 1..=64"))),
        })
        .collect()
}

/// The need for `topology`: `need` if given, else the entry in `baseline` (or, when no baseline
/// is named and [`DEFAULT_PATH`] does not exist here, in the embedded copy).
pub fn resolve(
    topology: &str,
    baseline: Option<&Path>,
    need: Option<u8>,
) -> Result<Need, BaselineError> {
    if let Some(hop_limit) = need {
        return Ok(Need {
            topology: topology.to_owned(),
            hop_limit,
            source: NeedSource::Flag,
        });
    }
    let default = Path::new(DEFAULT_PATH);
    let (text, source) = match baseline {
        Some(path) => (read(path)?, NeedSource::File(path.to_owned())),
        None if default.exists() => (read(default)?, NeedSource::File(default.to_owned())),
        None => (EMBEDDED.to_owned(), NeedSource::Embedded),
    };
    let label = source.to_string();
    let table = parse(&text, &label)?;
    match table.get(topology) {
        Some(&hop_limit) => Ok(Need {
            topology: topology.to_owned(),
            hop_limit,
            source,
        }),
        None => Err(BaselineError::UnknownTopology {
            path: label,
            topology: topology.to_owned(),
            known: table.keys().cloned().collect::<Vec<_>>().join(", "),
        }),
    }
}

fn read(path: &Path) -> Result<String, BaselineError> {
    std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_baseline_parses_and_has_earthly_run() {
        let table = parse(EMBEDDED, "embedded").unwrap();
        assert!(table.contains_key(DEFAULT_TOPOLOGY));
        assert!(table.contains_key("host"));
    }

    #[test]
    fn need_flag_wins_over_any_file() {
        let n = resolve("anything", Some(Path::new("/nonexistent/b.toml")), Some(7)).unwrap();
        assert_eq!(n.hop_limit, 7);
        assert_eq!(n.source, NeedSource::Flag);
    }

    #[test]
    fn file_entries_and_errors() {
        let dir = std::env::temp_dir().join(format!("imds-shim-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.toml");
        std::fs::write(&path, "# c\n[hop-limits]\nearthly-run = 3\nhost = 1\n").unwrap();
        let n = resolve("earthly-run", Some(&path), None).unwrap();
        assert_eq!((n.hop_limit, n.source), (3, NeedSource::File(path.clone())));
        let err = resolve("docker-run", Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no entry for topology \"docker-run\" (it has: earthly-run, host)"),
            "{err}"
        );
        std::fs::write(&path, "[hop-limits]\nhost = 65\n").unwrap();
        let err = resolve("host", Some(&path), None).unwrap_err().to_string();
        assert!(err.contains("host = 65 is outside 1..=64"), "{err}");
        std::fs::write(&path, "[hop-limits]\nhost = -1\n").unwrap();
        assert!(resolve("host", Some(&path), None).is_err());
        std::fs::write(&path, "hop = [").unwrap();
        let err = resolve("host", Some(&path), None).unwrap_err().to_string();
        assert!(err.contains("is not valid"), "{err}");
        let err = resolve("host", Some(&dir.join("missing.toml")), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read the baseline"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
