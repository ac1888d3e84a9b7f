//! No crate of the workspace has a cycle among its files. A file that uses another (in a
//! `use`, or in a path of an expression or a type, through `crate::`, `super::`,
//! `self::` or a child module's name) is an edge to the file that module is written in;
//! a `mod` declaration is not an edge, and `#[cfg(test)]` items are left out. A
//! `pub use` of a child's item is an edge to the child, so a child that imports through
//! its parent what the parent re-exports from a sibling makes a cycle: children import
//! their siblings directly.
//!
//! `IMPORT_GRAPH=1 cargo test --test import_graph -- --nocapture` prints every crate's
//! graph, one `from -> to` line per edge.

mod graph;
mod modules;
mod uses;
mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graph::CrateGraph;
use workspace::workspace_crates;

#[test]
fn no_crate_has_a_cycle_among_its_files() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &Path| std::fs::read_to_string(workspace.join(path)).ok();
    let crates = workspace_crates(workspace);
    let names: Vec<&str> = crates.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "imds-harness (lib)",
        "imds-harness (bin imds-harness)",
        "imds-shim (lib)",
        "imds-shim (bin imds-shim)",
        "imds-vocab (lib)",
    ] {
        assert!(names.contains(&expected), "{expected} not among {names:?}");
    }
    let print = std::env::var_os("IMPORT_GRAPH").is_some_and(|v| v == "1");
    let mut cycles = String::new();
    for (name, root) in &crates {
        let graph = CrateGraph::build(name, root, &read);
        if print {
            println!("{graph}");
        }
        cycles.push_str(&graph.cycles_report());
    }
    assert!(cycles.is_empty(), "{cycles}");
}

/// A crate in memory: its files by path.
fn in_memory(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect();
    move |path: &Path| files.get(path).cloned()
}

#[test]
fn a_planted_cycle_is_found_with_the_lines_of_its_uses() {
    let read = in_memory(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("src/a.rs", "use crate::b::B;\npub struct A(pub B);\n"),
        (
            "src/b.rs",
            "pub struct B;\n\npub fn f() -> super::c::C {\n    todo!()\n}\n",
        ),
        ("src/c/mod.rs", "pub struct C(pub crate::a::A);\n"),
    ]);
    let graph = CrateGraph::build("planted", Path::new("src/lib.rs"), &read);
    assert_eq!(
        graph.cycles_report(),
        "cycle in planted:\n  \
         src/a.rs -> src/b.rs  (src/a.rs:1)\n  \
         src/b.rs -> src/c/mod.rs  (src/b.rs:3)\n  \
         src/c/mod.rs -> src/a.rs  (src/c/mod.rs:1)\n"
    );
}

#[test]
fn declarations_tests_and_visibility_are_not_edges_and_a_re_export_is() {
    let read = in_memory(&[
        ("src/main.rs", "mod outer;\nfn main() { outer::run() }\n"),
        (
            "src/outer/mod.rs",
            "mod inner;\npub use inner::run;\npub(in crate::outer) struct Shared;\n",
        ),
        (
            "src/outer/inner.rs",
            "pub fn run() {}\n\n#[cfg(test)]\nmod tests {\n    use super::super::Shared;\n}\n",
        ),
    ]);
    let graph = CrateGraph::build("fine", Path::new("src/main.rs"), &read);
    let edges: Vec<String> = graph
        .edges
        .keys()
        .map(|(from, to)| format!("{} -> {}", from.display(), to.display()))
        .collect();
    assert_eq!(
        edges,
        [
            "src/main.rs -> src/outer/mod.rs",
            "src/outer/mod.rs -> src/outer/inner.rs"
        ]
    );
    assert_eq!(graph.cycles_report(), "");

    // A child importing through its parent what the parent re-exports from it is a cycle.
    let read = in_memory(&[
        ("src/lib.rs", "mod inner;\npub use inner::Thing;\n"),
        (
            "src/inner.rs",
            "pub struct Thing;\npub fn f(_: &crate::Thing) {}\n",
        ),
    ]);
    let graph = CrateGraph::build("tangled", Path::new("src/lib.rs"), &read);
    assert_eq!(
        graph.cycles_report(),
        "cycle in tangled:\n  \
         src/inner.rs -> src/lib.rs  (src/inner.rs:2)\n  \
         src/lib.rs -> src/inner.rs  (src/lib.rs:2)\n"
    );
}
