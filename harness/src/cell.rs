//! A cell of the sweep: one topology, client and tokens mode, what the search found
//! there, how it reads (its [`Verdict`]), and how the cells stand against the model's
//! predictions ([`ModelCheck`]).
//!
//! A client that got its identity through IMDSv1 (tokens optional) is not limited by
//! the hop limit at all, so its cell neither confirms nor contradicts the model.

use std::fmt;
use std::time::Duration;

use imds_vocab::{HopLimit, HttpTokens};
use serde::{Serialize, Serializer};

use crate::probe::Probe;
use crate::topology::Topology;
use imds_mock::ImdsVersion;

/// The outcome of the search for one (topology, client, tokens mode).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// Where the client ran.
    pub topology: Topology,
    /// The layers between the host and the leaf, of either kind.
    pub depth: usize,
    /// The layers spelled from the host outwards (`rrp`: routed, routed, proxied).
    pub layers: String,
    /// What the model predicts this client needs ([`crate::model::predicted`]).
    pub model: HopLimit,
    /// Who asked for the identity.
    pub client: Probe,
    /// The tokens mode the mock was set to.
    pub http_tokens: HttpTokens,
    /// The smallest hop limit that works; `None`: none up to 64 does.
    pub minimal_hop_limit: Option<HopLimit>,
    /// The client works at hop limit 1 although routers stand between the host and
    /// the leaf (or its first user-space stack): through IMDSv1, which the hop limit
    /// does not limit.
    pub works_at_any_hop_limit: bool,
    /// Which IMDS version the credentials came from at the minimal hop limit.
    pub via: Option<ImdsVersion>,
    /// Every hop limit tried, in order, and whether the client worked there.
    pub tried: Vec<(HopLimit, bool)>,
    /// Why the client failed just below its minimal hop limit.
    pub failure_below: Option<String>,
    /// How long the search took.
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Cell {
    /// What the cell measured, as the table shows it.
    pub fn verdict(&self) -> Verdict {
        match (self.minimal_hop_limit, self.works_at_any_hop_limit) {
            (_, true) => Verdict::Any { via: self.via },
            (Some(h), false) => Verdict::HopLimit(h),
            (None, false) => Verdict::Never,
        }
    }
}

/// What a cell measured, in a word: a hop limit, any, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The client works at every hop limit; `via` says through which IMDS version.
    Any {
        /// The version the credentials came from.
        via: Option<ImdsVersion>,
    },
    /// The smallest hop limit at which the client works.
    HopLimit(HopLimit),
    /// The client got no identity at any hop limit.
    Never,
}

/// `3`, `any`, `any (IMDSv1)` or `never`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Any {
                via: Some(ImdsVersion::V1),
            } => f.write_str("any (IMDSv1)"),
            Verdict::Any {
                via: Some(ImdsVersion::V2) | None,
            } => f.write_str("any"),
            Verdict::HopLimit(h) => write!(f, "{h}"),
            Verdict::Never => f.write_str("never"),
        }
    }
}

/// As the table shows it.
impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A cell the model did not predict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deviation {
    /// Where the client ran.
    pub topology: Topology,
    /// Who asked for the identity.
    pub client: Probe,
    /// The tokens mode the mock was set to.
    pub http_tokens: HttpTokens,
    /// What the cell measured.
    pub measured: Verdict,
    /// What the model predicted.
    pub predicted: HopLimit,
}

/// The model checked against every cell of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelCheck {
    /// Cells whose measured need is the predicted one.
    pub held: usize,
    /// Cells whose client got through by IMDSv1, where the hop limit does not apply.
    pub not_applicable: usize,
    /// Cells whose measured need is not the predicted one.
    pub deviations: Vec<Deviation>,
}

impl ModelCheck {
    /// Checks every cell.
    pub fn of(cells: &[Cell]) -> ModelCheck {
        let mut check = ModelCheck::default();
        for cell in cells {
            if cell.works_at_any_hop_limit {
                check.not_applicable += 1;
            } else if cell.minimal_hop_limit == Some(cell.model) {
                check.held += 1;
            } else {
                check.deviations.push(Deviation {
                    topology: cell.topology,
                    client: cell.client,
                    http_tokens: cell.http_tokens,
                    measured: cell.verdict(),
                    predicted: cell.model,
                });
            }
        }
        check
    }

    /// Whether every cell it applies to was as predicted.
    pub fn holds(&self) -> bool {
        self.deviations.is_empty()
    }
}

/// The line under the table: "model (...) held in 22 of 22 cells (2 through IMDSv1)".
impl fmt::Display for ModelCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counted = self.held + self.deviations.len();
        write!(
            f,
            "model: a client needs 1 + the routed layers before the first proxied one, the ttl \
             probe sees 1 + those after the last; it held in {} of {counted} cells",
            self.held
        )?;
        if self.not_applicable > 0 {
            write!(
                f,
                " ({} more got through by IMDSv1, where no hop limit applies)",
                self.not_applicable
            )?;
        }
        for d in &self.deviations {
            write!(
                f,
                "\n  NOT AS PREDICTED: {} / tokens {} / {}: measured {}, model {}",
                d.topology, d.http_tokens, d.client, d.measured, d.predicted
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Client;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn cell(minimal: Option<u32>, any: bool, via: Option<ImdsVersion>) -> Cell {
        let topology: Topology = "earthly-run".parse().unwrap();
        Cell {
            topology,
            depth: topology.depth(),
            layers: topology.spelling(),
            model: hop(3),
            client: Probe::Client(Client::Cli),
            http_tokens: HttpTokens::Optional,
            minimal_hop_limit: minimal.map(hop),
            works_at_any_hop_limit: any,
            via,
            tried: Vec::new(),
            failure_below: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn a_verdict_reads_as_the_table_shows_it() {
        let read = |minimal, any, via| cell(minimal, any, via).verdict().to_string();
        assert_eq!(read(Some(3), false, Some(ImdsVersion::V2)), "3");
        assert_eq!(read(Some(1), true, Some(ImdsVersion::V1)), "any (IMDSv1)");
        assert_eq!(read(Some(1), true, Some(ImdsVersion::V2)), "any");
        assert_eq!(read(None, false, None), "never");
        assert_eq!(
            serde_json::to_value(cell(None, false, None).verdict()).unwrap(),
            "never"
        );
    }

    #[test]
    fn the_model_check_counts_held_imdsv1_and_deviations() {
        let cells = [
            cell(Some(3), false, Some(ImdsVersion::V2)),
            cell(Some(1), true, Some(ImdsVersion::V1)),
            cell(None, false, None),
            cell(Some(4), false, Some(ImdsVersion::V2)),
        ];
        let check = ModelCheck::of(&cells);
        assert_eq!((check.held, check.not_applicable), (1, 1));
        assert!(!check.holds());
        assert_eq!(
            check.to_string().lines().skip(1).collect::<Vec<_>>(),
            [
                "  NOT AS PREDICTED: earthly-run / tokens optional / cli: measured never, model 3",
                "  NOT AS PREDICTED: earthly-run / tokens optional / cli: measured 4, model 3",
            ]
        );
        assert_eq!(
            serde_json::to_value(&check.deviations[0]).unwrap()["measured"],
            "never"
        );
    }
}
