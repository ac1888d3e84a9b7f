//! The sweep's output: a table for people, JSON for machines.

use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell as TableCell, CellAlignment, Table};
use serde::Serialize;

use crate::mock::{HttpTokens, ImdsVersion};
use crate::probe::Client;
use crate::sweep::{Cell, Strategy};
use crate::topology::Topology;

/// Everything `measure --json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct MeasureReport {
    pub backend: String,
    pub strategy: Strategy,
    pub cells: Vec<Cell>,
    pub elapsed_ms: u64,
}

/// How one cell reads in the table.
pub fn verdict(cell: &Cell) -> String {
    match (cell.minimal_hop_limit, cell.works_at_any_hop_limit) {
        (_, true) => match cell.via {
            Some(ImdsVersion::V1) => "any (IMDSv1)".to_string(),
            _ => "any".to_string(),
        },
        (Some(h), false) => h.to_string(),
        (None, _) => "never".to_string(),
    }
}

/// The matrix: a row per topology and tokens mode, a column per client, and the time
/// each row took when `timings` is set (off for snapshots).
pub fn table(cells: &[Cell], clients: &[Client], timings: bool) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec!["topology", "depth", "tokens"];
    header.extend(clients.iter().map(|c| c.name()));
    if timings {
        header.push("time");
    }
    table.set_header(header);

    let mut rows: Vec<(Topology, usize, HttpTokens)> = Vec::new();
    for cell in cells {
        let key = (cell.topology, cell.depth, cell.http_tokens);
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    for (topology, depth, mode) in rows {
        let in_row: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.topology == topology && c.http_tokens == mode)
            .collect();
        let mut row = vec![
            TableCell::new(topology.to_string()),
            TableCell::new(depth).set_alignment(CellAlignment::Right),
            TableCell::new(mode),
        ];
        for client in clients {
            let text = in_row
                .iter()
                .find(|c| c.client == *client)
                .map(|c| verdict(c))
                .unwrap_or_else(|| "-".to_string());
            row.push(TableCell::new(text).set_alignment(CellAlignment::Right));
        }
        if timings {
            let total: Duration = in_row.iter().map(|c| c.elapsed).sum();
            row.push(
                TableCell::new(format!("{:.1} s", total.as_secs_f64()))
                    .set_alignment(CellAlignment::Right),
            );
        }
        table.add_row(row);
    }
    table.to_string()
}
