//! The sweep's output: a table for people, JUnit XML for machines.

use std::path::Path;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell as TableCell, CellAlignment, Table};
use imds_vocab::{HopLimit, HttpTokens};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::cell::Cell;
use crate::gate::Comparison;
use crate::probe::Probe;
use crate::topology::Topology;

/// The matrix: a row per topology and tokens mode with its layers (`rrp`: routed,
/// routed, proxied, from the host outwards) and the model's need, a column per client,
/// and, when `timings` is set (off for snapshots), the time of the row's slowest search
/// (the cells of a row search at once, so the row's time).
pub fn table(cells: &[Cell], clients: &[Probe], timings: bool) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec!["topology", "layers", "model", "tokens"];
    header.extend(clients.iter().map(|c| c.name()));
    if timings {
        header.push("time");
    }
    table.set_header(header);

    let mut rows: Vec<(Topology, HttpTokens)> = Vec::new();
    for cell in cells {
        let key = (cell.topology, cell.http_tokens);
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    for (topology, mode) in rows {
        let in_row: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.topology == topology && c.http_tokens == mode)
            .collect();
        let model: HopLimit = topology.min_hop_limit();
        let mut row = vec![
            TableCell::new(topology.to_string()),
            TableCell::new(topology.spelling()),
            TableCell::new(model).set_alignment(CellAlignment::Right),
            TableCell::new(mode),
        ];
        for client in clients {
            let text = in_row
                .iter()
                .find(|c| c.client == *client)
                .map_or_else(|| "-".to_string(), |c| c.verdict().to_string());
            row.push(TableCell::new(text).set_alignment(CellAlignment::Right));
        }
        if timings {
            let slowest: Duration = in_row.iter().map(|c| c.elapsed).max().unwrap_or_default();
            row.push(
                TableCell::new(format!("{:.1} s", slowest.as_secs_f64()))
                    .set_alignment(CellAlignment::Right),
            );
        }
        table.add_row(row);
    }
    table.to_string()
}

/// The name of a cell's JUnit test case: `earthly-run / tokens required / cli`.
fn case_name(cell: &Cell) -> String {
    format!(
        "{} / tokens {} / {}",
        cell.topology, cell.http_tokens, cell.client
    )
}

/// The run as JUnit XML, as GitLab's and GitHub's test reporters read it: a suite of one
/// test case per topology, tokens mode and client (failed where the client got no
/// identity at any hop limit), and, with a baseline, a suite of one test case per
/// topology compared (failed on a regression).
pub fn junit(
    backend: &str,
    cells: &[Cell],
    comparisons: &[Comparison],
    baseline: Option<&Path>,
) -> Report {
    let mut report = Report::new("imds-harness measure");
    let mut measured = TestSuite::new(format!("minimal hop limits ({backend} backend)"));
    for cell in cells {
        let status = if cell.minimal_hop_limit.is_some() {
            TestCaseStatus::success()
        } else {
            let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failed
                .set_type("never")
                .set_message(format!(
                    "{}: no identity at any hop limit (1..=64)",
                    case_name(cell)
                ))
                .set_description(cell.failure_below.clone().unwrap_or_default());
            failed
        };
        let mut case = TestCase::new(case_name(cell), status);
        let tried: Vec<String> = cell
            .tried
            .iter()
            .map(|(h, ok)| format!("{h}: {}", if *ok { "ok" } else { "failed" }))
            .collect();
        case.set_classname(format!("imds-harness.{}", cell.topology))
            .set_time(cell.elapsed)
            .set_system_out(format!(
                "minimal hop limit: {}\nmodel: {}\nlayers: {}\ntried: {}\n",
                cell.verdict(),
                cell.model,
                cell.layers,
                tried.join(", ")
            ));
        measured.add_test_case(case);
    }
    report.add_test_suite(measured);
    if let Some(path) = baseline {
        let mut gate = TestSuite::new(format!("baseline {}", path.display()));
        for comparison in comparisons {
            let message = comparison.message(path);
            let status = if comparison.is_regression() {
                let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
                failed.set_type("regression").set_message(message.clone());
                failed
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(comparison.topology().to_string(), status);
            case.set_classname("imds-harness.baseline")
                .set_system_out(message);
            gate.add_test_case(case);
        }
        report.add_test_suite(gate);
    }
    report
}
