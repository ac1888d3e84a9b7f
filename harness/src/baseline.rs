//! The recorded baseline: the minimal hop limit each topology needs with tokens
//! required (`fixtures/hop-limits.toml`), and how a new measurement compares with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mock::HttpTokens;
use crate::sweep::Cell;

/// The baseline file the repository keeps.
pub const DEFAULT_PATH: &str = "fixtures/hop-limits.toml";

const HEADER: &str =
    "# The minimal IMDS hop limit (HttpPutResponseHopLimit) each topology needs, with\n\
# tokens required. Written by `imds-harness measure --record`; CI compares against it\n\
# with `imds-harness measure --baseline`: a topology needing more is a regression.\n";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    #[serde(rename = "hop-limits")]
    pub hop_limits: BTreeMap<String, u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read the baseline {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the baseline {path} is not valid: {message}; expected a [hop-limits] table of topology = 1..64")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write the baseline {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Baseline {
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.into(),
            source,
        })?;
        let baseline: Baseline = toml::from_str(&text).map_err(|e| BaselineError::Parse {
            path: path.into(),
            message: e.message().to_string(),
        })?;
        if let Some((name, value)) = baseline
            .hop_limits
            .iter()
            .find(|(_, v)| !(1..=64).contains(*v))
        {
            return Err(BaselineError::Parse {
                path: path.into(),
                message: format!("{name} = {value} is outside 1..=64"),
            });
        }
        Ok(baseline)
    }

    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let body = toml::to_string(self).expect("a baseline serialises");
        std::fs::write(path, format!("{HEADER}\n{body}")).map_err(|source| BaselineError::Write {
            path: path.into(),
            source,
        })
    }

    /// From a sweep: per topology, the largest minimal hop limit any client needed
    /// with tokens required.
    pub fn from_cells(cells: &[Cell]) -> Baseline {
        let mut hop_limits = BTreeMap::new();
        for cell in cells
            .iter()
            .filter(|c| c.http_tokens == HttpTokens::Required)
        {
            if let Some(h) = cell.minimal_hop_limit {
                let entry = hop_limits.entry(cell.topology.clone()).or_insert(h);
                *entry = (*entry).max(h);
            }
        }
        Baseline { hop_limits }
    }
}

/// How one topology's need compares with the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Comparison {
    /// Needs more than recorded: builds nest deeper. Fails the gate.
    Regression {
        topology: String,
        recorded: u8,
        now: u8,
    },
    /// Needs less than recorded: the hop limit could come down.
    Improvement {
        topology: String,
        recorded: u8,
        now: u8,
    },
    Unchanged {
        topology: String,
        now: u8,
    },
    /// Not in the baseline.
    New {
        topology: String,
        now: u8,
    },
}

impl Comparison {
    pub fn is_regression(&self) -> bool {
        matches!(self, Comparison::Regression { .. })
    }

    /// One line for a person.
    pub fn message(&self, baseline: &Path) -> String {
        let b = baseline.display();
        match self {
            Comparison::Regression { topology, recorded, now } => format!(
                "nesting-depth regression: {topology} now needs hop limit {now}, {b} records {recorded}: \
                 builds there will fail with `Unable to locate credentials` on instances set to {recorded}"
            ),
            Comparison::Improvement { topology, recorded, now } => format!(
                "{topology} now needs hop limit {now}, less than the {recorded} {b} records: \
                 record it with --record to let instances lower their hop limit"
            ),
            Comparison::Unchanged { topology, now } => {
                format!("{topology} needs hop limit {now}, as recorded")
            }
            Comparison::New { topology, now } => {
                format!("{topology} needs hop limit {now}; {b} has no entry for it")
            }
        }
    }
}

/// Compares the measured baseline with the recorded one, topology by topology.
pub fn compare(recorded: &Baseline, measured: &Baseline) -> Vec<Comparison> {
    measured
        .hop_limits
        .iter()
        .map(|(topology, &now)| {
            let topology = topology.clone();
            match recorded.hop_limits.get(&topology).copied() {
                None => Comparison::New { topology, now },
                Some(r) if now > r => Comparison::Regression {
                    topology,
                    recorded: r,
                    now,
                },
                Some(r) if now < r => Comparison::Improvement {
                    topology,
                    recorded: r,
                    now,
                },
                Some(_) => Comparison::Unchanged { topology, now },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(pairs: &[(&str, u8)]) -> Baseline {
        Baseline {
            hop_limits: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn deeper_nesting_is_a_regression_and_shallower_is_not() {
        let recorded = baseline(&[("host", 1), ("earthly-run", 2), ("docker-run", 3)]);
        let measured = baseline(&[
            ("host", 1),
            ("earthly-run", 3),
            ("docker-run", 2),
            ("chain:4", 5),
        ]);
        let result = compare(&recorded, &measured);
        assert_eq!(
            result,
            [
                Comparison::New {
                    topology: "chain:4".into(),
                    now: 5
                },
                Comparison::Improvement {
                    topology: "docker-run".into(),
                    recorded: 3,
                    now: 2
                },
                Comparison::Regression {
                    topology: "earthly-run".into(),
                    recorded: 2,
                    now: 3
                },
                Comparison::Unchanged {
                    topology: "host".into(),
                    now: 1
                },
            ]
        );
        assert!(result[2]
            .message(Path::new(DEFAULT_PATH))
            .contains("earthly-run now needs hop limit 3"));
    }

    #[test]
    fn round_trips_through_toml_and_refuses_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        let b = baseline(&[("chain:3", 4), ("host", 1)]);
        b.save(&path).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), b);
        std::fs::write(&path, "[hop-limits]\nhost = 0\n").unwrap();
        assert!(Baseline::load(&path)
            .unwrap_err()
            .to_string()
            .contains("outside 1..=64"));
        std::fs::write(&path, "hop = [").unwrap();
        assert!(Baseline::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not valid"));
    }
}
