//! One crate's file-level import graph, and its cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use petgraph::algo::{astar, tarjan_scc};
use petgraph::graphmap::DiGraphMap;
use syn::visit::Visit;

use crate::modules::{ModulePath, ModuleTree, Read};
use crate::uses::Uses;

/// One crate's files and which uses which.
pub(crate) struct CrateGraph {
    pub(crate) name: String,
    /// Every module, inline ones too, and the file it is written in.
    pub(crate) modules: BTreeMap<ModulePath, PathBuf>,
    /// File to file, with the line of the first use.
    pub(crate) edges: BTreeMap<(PathBuf, PathBuf), usize>,
}

impl CrateGraph {
    /// Walks the module tree from the crate's root file, then collects the uses.
    pub(crate) fn build(name: &str, root: &Path, read: Read) -> CrateGraph {
        let mut modules = BTreeMap::new();
        let mut files = Vec::new();
        let mut pending = vec![(root.to_path_buf(), ModulePath::new(), true)];
        while let Some((path, module, mod_rs)) = pending.pop() {
            let text = read(&path).unwrap_or_else(|| panic!("{}: cannot read", path.display()));
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let dir = if mod_rs {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                path.with_extension("")
            };
            modules.insert(module.clone(), path.clone());
            let mut tree = ModuleTree {
                read,
                file: &path,
                modules: &mut modules,
                pending: &mut pending,
            };
            tree.declared(&file.items, &dir, &module);
            files.push((path, module, file));
        }
        let mut edges = BTreeMap::new();
        for (path, module, file) in &files {
            let mut uses = Uses {
                modules: &modules,
                file: path,
                module: module.clone(),
                found: Vec::new(),
            };
            uses.visit_file(file);
            for (to, line) in uses.found {
                edges.entry((path.clone(), to)).or_insert(line);
            }
        }
        CrateGraph {
            name: name.to_owned(),
            modules,
            edges,
        }
    }

    /// One cycle per strongly connected set of files, each as its edges with the line
    /// of their use, from its first file by name.
    pub(crate) fn cycles(&self) -> Vec<Vec<(&Path, &Path, usize)>> {
        let mut graph = DiGraphMap::<&Path, usize>::new();
        for file in self.modules.values() {
            graph.add_node(file);
        }
        for ((from, to), line) in &self.edges {
            graph.add_edge(from, to, *line);
        }
        tarjan_scc(&graph)
            .into_iter()
            .filter(|files| files.len() > 1)
            .map(|files| {
                let start = files[0];
                let next = graph
                    .neighbors(start)
                    .find(|n| files.contains(n))
                    .expect("a file of a cycle uses another of it");
                let (_, back) =
                    astar(&graph, next, |n| n == start, |_| 1, |_| 0).expect("a cycle leads back");
                let mut path = vec![start];
                path.extend(back);
                let mut cycle: Vec<_> = path
                    .windows(2)
                    .map(|w| (w[0], w[1], graph[(w[0], w[1])]))
                    .collect();
                let first = (0..cycle.len())
                    .min_by_key(|&i| cycle[i].0)
                    .unwrap_or_default();
                cycle.rotate_left(first);
                cycle
            })
            .collect()
    }

    /// Every cycle, for a person: each edge with where its use is written.
    pub(crate) fn cycles_report(&self) -> String {
        let mut report = String::new();
        for cycle in self.cycles() {
            report.push_str(&format!("cycle in {}:\n", self.name));
            for (from, to, line) in cycle {
                report.push_str(&format!(
                    "  {} -> {}  ({}:{line})\n",
                    from.display(),
                    to.display(),
                    from.display()
                ));
            }
        }
        report
    }
}

/// The graph, one `from -> to` line per edge.
impl fmt::Display for CrateGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} files, {} edges",
            self.name,
            self.modules.values().collect::<BTreeSet<_>>().len(),
            self.edges.len()
        )?;
        for ((from, to), line) in &self.edges {
            writeln!(f, "  {} -> {}  (line {line})", from.display(), to.display())?;
        }
        Ok(())
    }
}
