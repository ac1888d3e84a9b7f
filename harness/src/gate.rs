//! The gate a CI job runs: what a measurement means for the builds, compared with the
//! recorded baseline (the file itself is [`imds_vocab::baseline`], shared with the
//! shim), and the exit code that says it.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | every topology needs what the baseline records, or less |
//! | 1 | a regression: a topology needs more than recorded, or a client gets no identity at any hop limit ("never") |
//! | 2 | usage or environment: bad arguments, not root, a tool missing, a baseline topology this run did not measure |
//! | 3 | the measurement itself failed: a probe broke (a client crashed, a container did not start), the mock died |
//! | 130 | interrupted (SIGINT or SIGTERM); what the run made is removed |

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use imds_vocab::baseline::{Baseline, BaselineError, DEFAULT_PATH};

use crate::probe::Client;
use crate::sweep::Cell;
use crate::topology::Topology;
use imds_vocab::{HopLimit, HttpTokens};

/// The exit codes of `imds-harness measure` (and the other subcommands' subset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    /// All as recorded, or better.
    Ok,
    /// A regression, or a client that never gets an identity.
    Regression,
    /// Usage or environment.
    Usage,
    /// The measurement failed.
    Measurement,
    /// Interrupted.
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Regression => 1,
            Exit::Usage => 2,
            Exit::Measurement => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// A cell whose client got no identity at any hop limit in 1..=64.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NeverCell {
    pub topology: Topology,
    pub client: Client,
    pub http_tokens: HttpTokens,
    /// Why the client failed, in its own words (at hop limit 64, or the TTL probe's).
    pub reason: Option<String>,
}

impl NeverCell {
    /// One line for a person.
    pub fn message(&self) -> String {
        format!(
            "no identity at any hop limit: {} with client {}, tokens {}{}",
            self.topology,
            self.client,
            self.http_tokens,
            self.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    }
}

/// The cells whose client never got an identity.
pub fn never_cells(cells: &[Cell]) -> Vec<NeverCell> {
    cells
        .iter()
        .filter(|c| c.minimal_hop_limit.is_none())
        .map(|c| NeverCell {
            topology: c.topology,
            client: c.client,
            http_tokens: c.http_tokens,
            reason: c.failure_below.clone(),
        })
        .collect()
}

/// What a run measured for one topology with tokens required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Every client got an identity from this hop limit on.
    HopLimit(HopLimit),
    /// Some client got none at any hop limit.
    Never,
}

/// Per topology, with tokens required: the largest minimal hop limit of any client, or
/// [`Need::Never`] when a client got no identity at all.
pub fn needs(cells: &[Cell]) -> BTreeMap<Topology, Need> {
    let mut needs = BTreeMap::new();
    for cell in cells
        .iter()
        .filter(|c| c.http_tokens == HttpTokens::Required)
    {
        let need = match cell.minimal_hop_limit {
            Some(h) => Need::HopLimit(h),
            None => Need::Never,
        };
        let entry = needs.entry(cell.topology).or_insert(need);
        *entry = match (*entry, need) {
            (Need::HopLimit(a), Need::HopLimit(b)) => Need::HopLimit(a.max(b)),
            _ => Need::Never,
        };
    }
    needs
}

/// The baseline to record from a run; refused while a topology never works.
pub fn to_record(needs: &BTreeMap<Topology, Need>) -> Result<Baseline, GateError> {
    let never: Vec<Topology> = needs
        .iter()
        .filter(|(_, n)| **n == Need::Never)
        .map(|(t, _)| *t)
        .collect();
    if !never.is_empty() {
        return Err(GateError::NothingToRecord { never });
    }
    Ok(Baseline {
        hop_limits: needs
            .iter()
            .filter_map(|(t, n)| match n {
                Need::HopLimit(h) => Some((*t, *h)),
                Need::Never => None,
            })
            .collect(),
    })
}

/// Why the gate could not judge.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The baseline has topologies a full run did not measure.
    #[error(
        "the baseline {baseline} records {}, which this run did not measure: measure them \
         (--topology), or re-record the baseline with --record",
        names(missing)
    )]
    NotMeasured {
        baseline: String,
        missing: Vec<Topology>,
    },
    /// `--record` while a topology gets no identity at any hop limit.
    #[error(
        "nothing recorded: {} got no identity at any hop limit with tokens required; \
         a baseline cannot record that",
        names(never)
    )]
    NothingToRecord { never: Vec<Topology> },
}

fn names(topologies: &[Topology]) -> String {
    topologies
        .iter()
        .map(Topology::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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
    /// A client got no identity at any hop limit. Fails the gate.
    Never {
        topology: Topology,
        recorded: Option<HopLimit>,
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
    /// Whether this fails the gate.
    pub fn is_regression(&self) -> bool {
        matches!(
            self,
            Comparison::Regression { .. } | Comparison::Never { .. }
        )
    }

    /// The topology compared.
    pub fn topology(&self) -> Topology {
        match *self {
            Comparison::Regression { topology, .. }
            | Comparison::Never { topology, .. }
            | Comparison::Improvement { topology, .. }
            | Comparison::Unchanged { topology, .. }
            | Comparison::New { topology, .. } => topology,
        }
    }

    /// One line for a person.
    pub fn message(&self, baseline: &Path) -> String {
        let b = baseline.display();
        match self {
            Comparison::Regression { topology, recorded, now } => format!(
                "nesting-depth regression: {topology} now needs hop limit {now}, {b} records {recorded}: \
                 builds there will fail with `Unable to locate credentials` on instances set to {recorded}"
            ),
            Comparison::Never { topology, recorded } => format!(
                "regression: {topology} got no identity at any hop limit (1..=64) with tokens required{}: \
                 builds there fail whatever the instance's hop limit",
                recorded.map(|r| format!(", {b} records {r}")).unwrap_or_default()
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

/// Compares what a run measured with the recorded baseline, topology by topology. A
/// topology of the baseline that the run did not measure is an error unless the run
/// was `restricted` to some topologies (`--topology`).
pub fn compare(
    recorded: &Baseline,
    measured: &BTreeMap<Topology, Need>,
    restricted: bool,
    baseline_path: &Path,
) -> Result<Vec<Comparison>, GateError> {
    let missing: Vec<Topology> = recorded
        .hop_limits
        .keys()
        .filter(|t| !measured.contains_key(t))
        .copied()
        .collect();
    if !missing.is_empty() && !restricted {
        return Err(GateError::NotMeasured {
            baseline: baseline_path.display().to_string(),
            missing,
        });
    }
    Ok(measured
        .iter()
        .map(|(&topology, &need)| match (need, recorded.get(&topology)) {
            (Need::Never, recorded) => Comparison::Never { topology, recorded },
            (Need::HopLimit(now), None) => Comparison::New { topology, now },
            (Need::HopLimit(now), Some(r)) if now > r => Comparison::Regression {
                topology,
                recorded: r,
                now,
            },
            (Need::HopLimit(now), Some(r)) if now < r => Comparison::Improvement {
                topology,
                recorded: r,
                now,
            },
            (Need::HopLimit(now), Some(_)) => Comparison::Unchanged { topology, now },
        })
        .collect())
}

/// The exit of a run that measured `cells` and compared them as `comparisons`.
pub fn exit(never: &[NeverCell], comparisons: &[Comparison]) -> Exit {
    if !never.is_empty() || comparisons.iter().any(Comparison::is_regression) {
        Exit::Regression
    } else {
        Exit::Ok
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn t(name: &str) -> Topology {
        name.parse().unwrap()
    }

    fn baseline(pairs: &[(&str, u32)]) -> Baseline {
        Baseline {
            hop_limits: pairs.iter().map(|(k, v)| (t(k), hop(*v))).collect(),
        }
    }

    fn cell(topology: &str, client: Client, tokens: HttpTokens, minimal: Option<u32>) -> Cell {
        Cell {
            topology: t(topology),
            depth: t(topology).depth(),
            layers: t(topology).spelling(),
            model: crate::model::predicted(&t(topology), client),
            client,
            http_tokens: tokens,
            minimal_hop_limit: minimal.map(hop),
            works_at_any_hop_limit: false,
            via: None,
            tried: Vec::new(),
            failure_below: minimal
                .is_none()
                .then(|| "Unable to locate credentials".into()),
            elapsed: Duration::ZERO,
        }
    }

    fn needs_of(pairs: &[(&str, u32)]) -> BTreeMap<Topology, Need> {
        pairs
            .iter()
            .map(|(k, v)| (t(k), Need::HopLimit(hop(*v))))
            .collect()
    }

    #[test]
    fn deeper_nesting_is_a_regression_and_shallower_is_not() {
        let recorded = baseline(&[("host", 1), ("earthly-run", 2), ("docker-run", 3)]);
        let measured = needs_of(&[
            ("host", 1),
            ("earthly-run", 3),
            ("docker-run", 2),
            ("chain:4", 5),
        ]);
        let path = Path::new(DEFAULT_PATH);
        let result = compare(&recorded, &measured, false, path).unwrap();
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
            .message(path)
            .contains("earthly-run now needs hop limit 3"));
        assert_eq!(
            serde_json::to_value(&result[2]).unwrap(),
            serde_json::json!({"change": "regression", "topology": "earthly-run", "recorded": 2, "now": 3})
        );
        assert_eq!(exit(&[], &result), Exit::Regression);
        assert_eq!(exit(&[], &result[..2]), Exit::Ok);
    }

    #[test]
    fn a_topology_that_never_works_is_a_regression_not_a_pass() {
        let cells = [
            cell("earthly-run", Client::Ttl, HttpTokens::Required, Some(3)),
            cell("earthly-run", Client::Cli, HttpTokens::Required, None),
            cell("earthly-run", Client::Cli, HttpTokens::Optional, Some(1)),
            cell("host", Client::Cli, HttpTokens::Required, Some(1)),
        ];
        let measured = needs(&cells);
        assert_eq!(measured[&t("earthly-run")], Need::Never);
        assert_eq!(measured[&t("host")], Need::HopLimit(HopLimit::MIN));
        let recorded = baseline(&[("host", 1), ("earthly-run", 3)]);
        let path = Path::new("b.toml");
        let result = compare(&recorded, &measured, false, path).unwrap();
        assert_eq!(
            result[0],
            Comparison::Never {
                topology: t("earthly-run"),
                recorded: Some(hop(3))
            }
        );
        assert!(result[0].is_regression());
        assert_eq!(
            result[0].message(path),
            "regression: earthly-run got no identity at any hop limit (1..=64) with tokens \
             required, b.toml records 3: builds there fail whatever the instance's hop limit"
        );
        let never = never_cells(&cells);
        assert_eq!(never.len(), 1);
        assert_eq!(
            never[0].message(),
            "no identity at any hop limit: earthly-run with client cli, tokens required: \
             Unable to locate credentials"
        );
        // Without a baseline the never cell alone fails the run.
        assert_eq!(exit(&never, &[]), Exit::Regression);
        assert_eq!(exit(&never, &result), Exit::Regression);
        let err = to_record(&measured).unwrap_err().to_string();
        assert!(
            err.starts_with("nothing recorded: earthly-run got no identity"),
            "{err}"
        );
    }

    #[test]
    fn a_full_run_must_cover_the_baseline_and_a_restricted_one_need_not() {
        let recorded = baseline(&[("host", 1), ("earthly-run", 3), ("chain:5", 6)]);
        let measured = needs_of(&[("host", 1), ("earthly-run", 3)]);
        let path = Path::new("fixtures/hop-limits.toml");
        let err = compare(&recorded, &measured, false, path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the baseline fixtures/hop-limits.toml records chain:5, which this run did not \
             measure: measure them (--topology), or re-record the baseline with --record"
        );
        let fine = compare(&recorded, &measured, true, path).unwrap();
        assert_eq!(fine.len(), 2);
        assert_eq!(to_record(&measured).unwrap().hop_limits.len(), 2);
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Regression,
            Exit::Usage,
            Exit::Measurement,
            Exit::Interrupted,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
    }
}
