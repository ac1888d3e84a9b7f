//! The model against the measurement: what each cell should need, and where the sweep
//! found otherwise.
//!
//! A client at the leaf needs 1 + the routed layers before the first proxied one
//! ([`Topology::min_hop_limit`]); the TTL probe's connect ends at the nearest
//! user-space stack, so it reports 1 + the routed layers after the last proxied one
//! ([`Topology::ttl_probe_hop_limit`]). A client that got its identity through IMDSv1
//! (tokens optional) is not limited by the hop limit at all, so it neither confirms
//! nor contradicts the model.

use std::fmt;

use serde::Serialize;

use crate::probe::Client;
use crate::report::verdict;
use crate::sweep::Cell;
use crate::topology::Topology;
use imds_vocab::{HopLimit, HttpTokens};

/// What the model predicts `client` needs (or, for the TTL probe, reports) at the leaf.
pub fn predicted(topology: &Topology, client: Client) -> HopLimit {
    match client {
        Client::Ttl => topology.ttl_probe_hop_limit(),
        _ => topology.min_hop_limit(),
    }
}

/// A cell the model did not predict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deviation {
    pub topology: Topology,
    pub client: Client,
    pub http_tokens: HttpTokens,
    /// The cell as the table shows it.
    pub measured: String,
    pub predicted: HopLimit,
}

/// The model checked against every cell of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelCheck {
    /// Cells whose measured need is the predicted one.
    pub held: usize,
    /// Cells whose client got through by IMDSv1, where the hop limit does not apply.
    pub not_applicable: usize,
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
                    measured: verdict(cell),
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
