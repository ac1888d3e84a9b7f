//! The gate: how a new measurement compares with the recorded baseline (the file itself
//! is [`imds_vocab::baseline`], shared with the shim).

use std::path::Path;

use serde::Serialize;

pub use imds_vocab::baseline::{Baseline, BaselineError, DEFAULT_PATH};

use crate::mock::{HopLimit, HttpTokens};
use crate::sweep::Cell;
use crate::topology::Topology;

/// From a sweep: per topology, the largest minimal hop limit any client needed with
/// tokens required.
pub fn from_cells(cells: &[Cell]) -> Baseline {
    let mut recorded = Baseline::default();
    for cell in cells
        .iter()
        .filter(|c| c.http_tokens == HttpTokens::Required)
    {
        if let Some(h) = cell.minimal_hop_limit {
            let entry = recorded.hop_limits.entry(cell.topology).or_insert(h);
            *entry = (*entry).max(h);
        }
    }
    recorded
}

/// How one topology's need compares with the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Comparison {
    /// Needs more than recorded: builds nest deeper. Fails the gate.
    Regression {
        topology: Topology,
        recorded: HopLimit,
        now: HopLimit,
    },
    /// Needs less than recorded: the hop limit could come down.
    Improvement {
        topology: Topology,
        recorded: HopLimit,
        now: HopLimit,
    },
    Unchanged {
        topology: Topology,
        now: HopLimit,
    },
    /// Not in the baseline.
    New {
        topology: Topology,
        now: HopLimit,
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
        .map(|(&topology, &now)| match recorded.get(&topology) {
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(pairs: &[(&str, u32)]) -> Baseline {
        Baseline {
            hop_limits: pairs
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), HopLimit::new(*v).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn deeper_nesting_is_a_regression_and_shallower_is_not() {
        let hop = |n| HopLimit::new(n).unwrap();
        let t = |name: &str| name.parse::<Topology>().unwrap();
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
                    topology: t("chain:4"),
                    now: hop(5)
                },
                Comparison::Improvement {
                    topology: t("docker-run"),
                    recorded: hop(3),
                    now: hop(2)
                },
                Comparison::Regression {
                    topology: t("earthly-run"),
                    recorded: hop(2),
                    now: hop(3)
                },
                Comparison::Unchanged {
                    topology: t("host"),
                    now: hop(1)
                },
            ]
        );
        assert!(result[2]
            .message(Path::new(DEFAULT_PATH))
            .contains("earthly-run now needs hop limit 3"));
        assert_eq!(
            serde_json::to_value(&result[2]).unwrap(),
            serde_json::json!({"change": "regression", "topology": "earthly-run", "recorded": 2, "now": 3})
        );
    }
}
