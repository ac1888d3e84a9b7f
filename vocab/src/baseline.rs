//! The recorded baseline: the minimal hop limit each topology needs with tokens
//! required, as `imds-harness measure --record` writes it to `fixtures/hop-limits.toml`
//! and as the gate (`measure --baseline`) and the shim (`check`, `enforce`, `run`) read
//! it. The file is a `[hop-limits]` table of `topology = hop limit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hop_limit::HopLimit;
use crate::topology::Topology;

/// The baseline file the repository keeps.
pub const DEFAULT_PATH: &str = "fixtures/hop-limits.toml";

const HEADER: &str =
    "# The minimal IMDS hop limit (HttpPutResponseHopLimit) each topology needs, with\n\
# tokens required. Written by `imds-harness measure --record`; CI compares against it\n\
# with `imds-harness measure --baseline`: a topology needing more is a regression.\n";

/// Why a baseline could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read.
    #[error("cannot read the baseline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The text is not a `[hop-limits]` table of known topologies = 1..=64.
    #[error("the baseline {origin} is not valid: {message}; expected a [hop-limits] table of topology = 1..64")]
    Parse {
        /// The file, or where the text came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write the baseline {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The need of each recorded topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// Topology -> the smallest hop limit with which every client got credentials.
    pub hop_limits: BTreeMap<Topology, HopLimit>,
}

#[derive(Deserialize)]
struct FileIn {
    #[serde(rename = "hop-limits")]
    hop_limits: BTreeMap<String, i64>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    #[serde(rename = "hop-limits")]
    hop_limits: &'a BTreeMap<Topology, HopLimit>,
}

impl Baseline {
    /// Parses a baseline's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Baseline, BaselineError> {
        let invalid = |message: String| BaselineError::Parse {
            origin: origin.to_owned(),
            message,
        };
        let file: FileIn = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
        let hop_limits = file
            .hop_limits
            .into_iter()
            .map(|(name, value)| {
                let topology = Topology::parse(&name).map_err(|e| invalid(e.to_string()))?;
                let hop_limit = u32::try_from(value)
                    .ok()
                    .and_then(|v| HopLimit::new(v).ok())
                    .ok_or_else(|| invalid(format!("{name} = {value} is outside 1..=64")))?;
                Ok((topology, hop_limit))
            })
            .collect::<Result<_, _>>()?;
        Ok(Baseline { hop_limits })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.into(),
            source,
        })?;
        Baseline::parse(&text, &path.display().to_string())
    }

    /// The file's text: a comment saying what it is, then the table.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(&FileOut {
            hop_limits: &self.hop_limits,
        })
        .expect("a table of names and numbers serialises");
        format!("{HEADER}\n{body}")
    }

    /// Writes the file at `path` (whole: a reader never sees half of it).
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let write_error = |source| BaselineError::Write {
            path: path.into(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        std::fs::write(&temporary, self.to_toml())
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                write_error(e)
            })
    }

    /// The recorded need of `topology`.
    pub fn get(&self, topology: &Topology) -> Option<HopLimit> {
        self.hop_limits.get(topology).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Preset;

    #[test]
    fn round_trips_through_toml_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        let b = Baseline {
            hop_limits: [
                (Topology::chain(3).unwrap(), HopLimit::new(4).unwrap()),
                (Preset::Host.into(), HopLimit::MIN),
                (Preset::EarthlyRun.into(), HopLimit::new(3).unwrap()),
            ]
            .into_iter()
            .collect(),
        };
        b.save(&path).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), b);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(
            text.ends_with("[hop-limits]\n\"chain:3\" = 4\nearthly-run = 3\nhost = 1\n"),
            "{text}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_repositorys_baseline_reads_back_byte_for_byte() {
        let text = include_str!("../../fixtures/hop-limits.toml");
        let b = Baseline::parse(text, "fixtures").unwrap();
        assert_eq!(b.get(&Preset::EarthlyRun.into()), HopLimit::new(3).ok());
        assert_eq!(b.to_toml(), text);
    }

    #[test]
    fn refuses_nonsense_and_says_what() {
        let err = |text: &str| Baseline::parse(text, "b.toml").unwrap_err().to_string();
        assert!(
            err("[hop-limits]\nhost = 0\n").contains("host = 0 is outside 1..=64"),
            "{}",
            err("[hop-limits]\nhost = 0\n")
        );
        assert!(err("[hop-limits]\nhost = 65\n").contains("host = 65 is outside 1..=64"));
        assert!(err("[hop-limits]\nhost = -1\n").contains("outside 1..=64"));
        assert!(err("[hop-limits]\nnope = 2\n").contains("unknown topology `nope`"));
        let e = err("hop = [");
        assert!(e.starts_with("the baseline b.toml is not valid:"), "{e}");
        let missing = Baseline::load(Path::new("/nonexistent/b.toml")).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("cannot read the baseline /nonexistent/b.toml"));
    }
}
