//! The gate a CI job runs: what a run's cells mean for the builds, compared with the
//! recorded baseline (the file itself is [`imds_vocab::baseline`], shared with the
//! shim). [`judge`] takes the cells and the baseline and returns a [`Judgement`]; the
//! binary says its [`Decision`] with an exit code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use imds_vocab::baseline::{Baseline, BaselineError, DEFAULT_PATH};

use imds_vocab::{HopLimit, HttpTokens};

use crate::cell::Cell;
use crate::probe::Probe;
use crate::topology::Topology;

/// A cell whose client got no identity at any hop limit in 1..=64.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NeverCell {
    /// Where the client ran.
    pub topology: Topology,
    /// Who asked for the identity.
    pub client: Probe,
    /// The tokens mode the mock was set to.
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
fn never_cells(cells: &[Cell]) -> Vec<NeverCell> {
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
enum Measured {
    /// Every client got an identity from this hop limit on.
    HopLimit(HopLimit),
    /// Some client got none at any hop limit.
    Never,
}

/// Per topology, with tokens required: the largest minimal hop limit of any client, or
/// [`Measured::Never`] when a client got no identity at all.
fn needs(cells: &[Cell]) -> BTreeMap<Topology, Measured> {
    let mut needs = BTreeMap::new();
    for cell in cells
        .iter()
        .filter(|c| c.http_tokens == HttpTokens::Required)
    {
        let need = match cell.minimal_hop_limit {
            Some(h) => Measured::HopLimit(h),
            None => Measured::Never,
        };
        let entry = needs.entry(cell.topology).or_insert(need);
        *entry = match (*entry, need) {
            (Measured::HopLimit(a), Measured::HopLimit(b)) => Measured::HopLimit(a.max(b)),
            (Measured::Never, _) | (_, Measured::Never) => Measured::Never,
        };
    }
    needs
}

/// The baseline to record from a run; refused while a topology never works.
fn to_record(needs: &BTreeMap<Topology, Measured>) -> Result<Baseline, GateError> {
    let never: Vec<Topology> = needs
        .iter()
        .filter(|(_, n)| **n == Measured::Never)
        .map(|(t, _)| *t)
        .collect();
    if !never.is_empty() {
        return Err(GateError::NothingToRecord { never });
    }
    Ok(Baseline {
        hop_limits: needs
            .iter()
            .filter_map(|(t, n)| match n {
                Measured::HopLimit(h) => Some((*t, *h)),
                Measured::Never => None,
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
        /// Where the baseline was read from, as displayed.
        baseline: String,
        /// The baseline's topologies that the run did not measure.
        missing: Vec<Topology>,
    },
    /// `--record` while a topology gets no identity at any hop limit.
    #[error(
        "nothing recorded: {} got no identity at any hop limit with tokens required; \
         a baseline cannot record that",
        names(never)
    )]
    NothingToRecord {
        /// The topologies where some client got no identity with tokens required.
        never: Vec<Topology>,
    },
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
        /// The topology compared.
        topology: Topology,
        /// The hop limit the baseline records for it.
        recorded: HopLimit,
        /// The hop limit this run found it needs: more than recorded.
        now: HopLimit,
    },
    /// A client got no identity at any hop limit. Fails the gate.
    Never {
        /// The topology compared.
        topology: Topology,
        /// The hop limit the baseline records for it; `None` when it has no entry.
        recorded: Option<HopLimit>,
    },
    /// Needs less than recorded: the hop limit could come down.
    Improvement {
        /// The topology compared.
        topology: Topology,
        /// The hop limit the baseline records for it.
        recorded: HopLimit,
        /// The hop limit this run found it needs: less than recorded.
        now: HopLimit,
    },
    /// Needs what the baseline records.
    Unchanged {
        /// The topology compared.
        topology: Topology,
        /// The hop limit it needs, the one recorded.
        now: HopLimit,
    },
    /// Not in the baseline.
    New {
        /// The topology compared.
        topology: Topology,
        /// The hop limit this run found it needs.
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
fn compare(
    recorded: &Baseline,
    measured: &BTreeMap<Topology, Measured>,
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
            (Measured::Never, recorded) => Comparison::Never { topology, recorded },
            (Measured::HopLimit(now), None) => Comparison::New { topology, now },
            (Measured::HopLimit(now), Some(r)) if now > r => Comparison::Regression {
                topology,
                recorded: r,
                now,
            },
            (Measured::HopLimit(now), Some(r)) if now < r => Comparison::Improvement {
                topology,
                recorded: r,
                now,
            },
            (Measured::HopLimit(now), Some(_)) => Comparison::Unchanged { topology, now },
        })
        .collect())
}

/// The baseline a run is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Recorded<'a> {
    /// The baseline.
    pub baseline: &'a Baseline,
    /// Where it was read from, for messages.
    pub path: &'a Path,
    /// Whether the run measured only some topologies (`--topology`): then those of the
    /// baseline it did not measure are not missing.
    pub restricted: bool,
}

/// What the gate decides about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every client got an identity, and every topology needs what the baseline
    /// records, or less (or there is no baseline).
    Pass,
    /// A topology needs more than recorded, a client got no identity at any hop limit,
    /// or the baseline asked to be recorded cannot record that.
    Regression,
    /// The baseline records topologies a full run did not measure: nothing to judge by.
    NotMeasured,
}

/// The gate's judgement of a run: what it found, and what it decides.
#[derive(Debug)]
pub struct Judgement {
    /// The cells whose client got no identity at any hop limit.
    pub never: Vec<NeverCell>,
    /// Each measured topology against the baseline: none without one, or when it could
    /// not be compared.
    pub comparisons: Vec<Comparison>,
    /// Why the baseline could not be compared.
    pub not_compared: Option<GateError>,
    /// When asked to record: the baseline to record, or why there is none.
    pub to_record: Option<Result<Baseline, GateError>>,
    /// What the run means for the gate.
    pub decision: Decision,
}

/// Judges a run's cells, against `recorded` when given; with `record`, also makes the
/// baseline the run would record.
pub fn judge(cells: &[Cell], recorded: Option<Recorded<'_>>, record: bool) -> Judgement {
    let never = never_cells(cells);
    let needs = needs(cells);
    let (comparisons, not_compared) = match recorded {
        Some(r) => match compare(r.baseline, &needs, r.restricted, r.path) {
            Ok(comparisons) => (comparisons, None),
            Err(err) => (Vec::new(), Some(err)),
        },
        None => (Vec::new(), None),
    };
    let to_record = record.then(|| to_record(&needs));
    let decision = if matches!(to_record, Some(Err(_))) {
        Decision::Regression
    } else if not_compared.is_some() {
        Decision::NotMeasured
    } else if !never.is_empty() || comparisons.iter().any(Comparison::is_regression) {
        Decision::Regression
    } else {
        Decision::Pass
    };
    Judgement {
        never,
        comparisons,
        not_compared,
        to_record,
        decision,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::Client;

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

    fn cell(topology: &str, client: Probe, tokens: HttpTokens, minimal: Option<u32>) -> Cell {
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

    /// A cell of the Rust SDK with tokens required per (topology, minimal hop limit).
    fn cells_of(pairs: &[(&str, u32)]) -> Vec<Cell> {
        pairs
            .iter()
            .map(|(k, v)| {
                cell(
                    k,
                    Probe::Client(Client::RustSdk),
                    HttpTokens::Required,
                    Some(*v),
                )
            })
            .collect()
    }

    fn needs_of(pairs: &[(&str, u32)]) -> BTreeMap<Topology, Measured> {
        pairs
            .iter()
            .map(|(k, v)| (t(k), Measured::HopLimit(hop(*v))))
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
        let against = Some(Recorded {
            baseline: &recorded,
            path,
            restricted: false,
        });
        let judged = judge(
            &cells_of(&[
                ("host", 1),
                ("earthly-run", 3),
                ("docker-run", 2),
                ("chain:4", 5),
            ]),
            against,
            false,
        );
        assert_eq!(judged.comparisons, result);
        assert_eq!(judged.decision, Decision::Regression);
        // Shallower nesting and a topology the baseline does not know pass.
        let judged = judge(
            &cells_of(&[
                ("host", 1),
                ("earthly-run", 2),
                ("docker-run", 2),
                ("chain:4", 5),
            ]),
            against,
            false,
        );
        assert_eq!(judged.decision, Decision::Pass);
        assert!(judged.never.is_empty() && judged.not_compared.is_none());
    }

    #[test]
    fn a_topology_that_never_works_is_a_regression_not_a_pass() {
        let cells = [
            cell("earthly-run", Probe::Ttl, HttpTokens::Required, Some(3)),
            cell(
                "earthly-run",
                Probe::Client(Client::Cli),
                HttpTokens::Required,
                None,
            ),
            cell(
                "earthly-run",
                Probe::Client(Client::Cli),
                HttpTokens::Optional,
                Some(1),
            ),
            cell(
                "host",
                Probe::Client(Client::Cli),
                HttpTokens::Required,
                Some(1),
            ),
        ];
        let measured = needs(&cells);
        assert_eq!(measured[&t("earthly-run")], Measured::Never);
        assert_eq!(measured[&t("host")], Measured::HopLimit(HopLimit::MIN));
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
        // Without a baseline the never cell alone fails the run.
        let alone = judge(&cells, None, false);
        assert_eq!(alone.never.len(), 1);
        assert_eq!(
            alone.never[0].message(),
            "no identity at any hop limit: earthly-run with client cli, tokens required: \
             Unable to locate credentials"
        );
        assert!(alone.comparisons.is_empty() && alone.to_record.is_none());
        assert_eq!(alone.decision, Decision::Regression);
        let against = Recorded {
            baseline: &recorded,
            path,
            restricted: false,
        };
        let judged = judge(&cells, Some(against), true);
        assert_eq!(judged.comparisons, result);
        assert_eq!(judged.decision, Decision::Regression);
        let err = judged.to_record.unwrap().unwrap_err().to_string();
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

        let cells = cells_of(&[("host", 1), ("earthly-run", 3)]);
        let against = |restricted| Recorded {
            baseline: &recorded,
            path,
            restricted,
        };
        let full = judge(&cells, Some(against(false)), false);
        assert_eq!(full.decision, Decision::NotMeasured);
        assert_eq!(
            full.not_compared.map(|e| e.to_string()),
            Some(err.to_string())
        );
        assert!(full.comparisons.is_empty());
        let restricted = judge(&cells, Some(against(true)), true);
        assert_eq!(restricted.decision, Decision::Pass);
        assert_eq!(restricted.comparisons, fine);
        assert_eq!(restricted.to_record.unwrap().unwrap().hop_limits.len(), 2);
        // A baseline that cannot be recorded fails the run, compared or not.
        let mut never = cells.clone();
        never.push(cell(
            "earthly-run",
            Probe::Client(Client::Cli),
            HttpTokens::Required,
            None,
        ));
        let full = judge(&never, Some(against(false)), true);
        assert_eq!(full.decision, Decision::Regression);
        assert!(full.not_compared.is_some());
    }
}
