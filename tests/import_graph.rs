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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use petgraph::algo::{astar, tarjan_scc};
use petgraph::graphmap::DiGraphMap;
use syn::ext::IdentExt;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, ItemMod, ItemUse, UseTree, Visibility};

/// The harness's mock, which is moving to a crate of its own; until it has, its files
/// are not walked.
const SKIPPED: &[&str] = &["harness/src/mock"];

/// A module inside its crate, by its names from the root (none: the root).
type ModulePath = Vec<String>;

/// Reads a file of the workspace by its path from the workspace's root.
type Read<'r> = &'r dyn Fn(&Path) -> Option<String>;

/// One crate's files and which uses which.
struct CrateGraph {
    name: String,
    /// Every module, inline ones too, and the file it is written in.
    modules: BTreeMap<ModulePath, PathBuf>,
    /// File to file, with the line of the first use.
    edges: BTreeMap<(PathBuf, PathBuf), usize>,
}

impl CrateGraph {
    /// Walks the module tree from the crate's root file, then collects the uses.
    fn build(name: &str, root: &Path, read: Read) -> CrateGraph {
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
    fn cycles(&self) -> Vec<Vec<(&Path, &Path, usize)>> {
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
    fn cycles_report(&self) -> String {
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
            self.modules
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            self.edges.len()
        )?;
        for ((from, to), line) in &self.edges {
            writeln!(f, "  {} -> {}  (line {line})", from.display(), to.display())?;
        }
        Ok(())
    }
}

/// The module tree as `mod` items declare it.
struct ModuleTree<'a> {
    read: Read<'a>,
    file: &'a Path,
    modules: &'a mut BTreeMap<ModulePath, PathBuf>,
    /// Files still to walk: path, module, and whether it is a `mod.rs`-like file (its
    /// children are beside it rather than in a folder of its name).
    pending: &'a mut Vec<(PathBuf, ModulePath, bool)>,
}

impl ModuleTree<'_> {
    /// Records the modules `items` declare in `module`, whose children's files are in
    /// `dir`.
    fn declared(&mut self, items: &[Item], dir: &Path, module: &ModulePath) {
        for item in items {
            let Item::Mod(declaration) = item else {
                continue;
            };
            if is_test_only(&declaration.attrs) {
                continue;
            }
            let name = declaration.ident.unraw().to_string();
            let mut child = module.clone();
            child.push(name.clone());
            match &declaration.content {
                Some((_, items)) => {
                    self.modules.insert(child.clone(), self.file.to_path_buf());
                    self.declared(items, &dir.join(&name), &child);
                }
                None => {
                    let (path, mod_rs) = match path_attribute(&declaration.attrs) {
                        Some(path) => (self.file.parent().unwrap_or(dir).join(path), true),
                        None => {
                            let beside = dir.join(format!("{name}.rs"));
                            if (self.read)(&beside).is_some() {
                                (beside, false)
                            } else {
                                (dir.join(&name).join("mod.rs"), true)
                            }
                        }
                    };
                    if SKIPPED.iter().any(|skipped| path.starts_with(skipped)) {
                        continue;
                    }
                    self.pending.push((path, child, mod_rs));
                }
            }
        }
    }
}

/// `#[path = "..."]` on a module declaration.
fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// `#[cfg(test)]`.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| match &attr.meta {
        syn::Meta::List(list) => list.path.is_ident("cfg") && list.tokens.to_string() == "test",
        _ => false,
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        // `Item` is non-exhaustive; what syn cannot parse carries no attributes it read.
        _ => &[],
    }
}

/// The files one file uses.
struct Uses<'a> {
    modules: &'a BTreeMap<ModulePath, PathBuf>,
    file: &'a Path,
    /// The module being read: the file's, or an inline one inside it.
    module: ModulePath,
    /// Used files, with the line of the use.
    found: Vec<(PathBuf, usize)>,
}

impl Uses<'_> {
    /// The module a path names, or where it goes into one: `None` for a path that does
    /// not start at a module of this crate.
    fn resolve(&self, segments: &[String]) -> Option<ModulePath> {
        let (first, rest) = segments.split_first()?;
        let (mut target, rest) = match first.as_str() {
            "crate" => (ModulePath::new(), rest),
            "self" => (self.module.clone(), rest),
            "super" => {
                let mut parent = self.module.clone();
                parent.pop()?;
                (parent, rest)
            }
            _ => {
                let mut child = self.module.clone();
                child.push(first.clone());
                if rest.is_empty() || !self.modules.contains_key(&child) {
                    return None;
                }
                (self.module.clone(), segments)
            }
        };
        for segment in rest {
            if segment == "super" {
                target.pop()?;
            } else {
                target.push(segment.clone());
            }
        }
        Some(target)
    }

    /// Records the file the longest module prefix of `segments` is written in.
    fn record(&mut self, segments: &[String], line: usize) {
        let Some(mut target) = self.resolve(segments) else {
            return;
        };
        loop {
            if let Some(file) = self.modules.get(&target) {
                if file != self.file {
                    self.found.push((file.clone(), line));
                }
                return;
            }
            if target.pop().is_none() {
                return;
            }
        }
    }
}

/// Every path a `use` tree imports, with the line of its last name.
fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    let with = |prefix: &Vec<String>, ident: &syn::Ident| {
        let mut path = prefix.clone();
        if ident != "self" {
            path.push(ident.unraw().to_string());
        }
        (path, ident.span().start().line)
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.unraw().to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(with(prefix, &n.ident)),
        UseTree::Rename(r) => out.push(with(prefix, &r.ident)),
        UseTree::Glob(g) => out.push((prefix.clone(), g.star_token.span.start().line)),
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Uses<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if !is_test_only(item_attrs(item)) {
            visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, declaration: &'ast ItemMod) {
        // A declaration (`mod x;`) uses nothing; an inline module is read as itself.
        if let Some((_, items)) = &declaration.content {
            self.module.push(declaration.ident.unraw().to_string());
            for item in items {
                self.visit_item(item);
            }
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        if item.leading_colon.is_some() {
            return;
        }
        let mut paths = Vec::new();
        flatten(&item.tree, &mut Vec::new(), &mut paths);
        for (segments, line) in paths {
            self.record(&segments, line);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first() {
                let segments: Vec<String> = path
                    .segments
                    .iter()
                    .map(|s| s.ident.unraw().to_string())
                    .collect();
                self.record(&segments, first.ident.span().start().line);
            }
        }
        visit::visit_path(self, path);
    }

    /// `pub(crate)`, `pub(in crate::x)`: who may see an item, not a use.
    fn visit_visibility(&mut self, _: &'ast Visibility) {}
}

/// The workspace's crates, by a name for people and their root file: the library and
/// binaries of the root package and of every member the root manifest lists.
fn workspace_crates(workspace: &Path) -> Vec<(String, PathBuf)> {
    let manifest = |dir: &Path| -> toml::Table {
        let path = workspace.join(dir).join("Cargo.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let root = manifest(Path::new(""));
    let mut packages = Vec::new();
    if root.contains_key("package") {
        packages.push(PathBuf::new());
    }
    let members = root["workspace"]["members"]
        .as_array()
        .expect("workspace.members is a list");
    for member in members {
        let member = member.as_str().expect("a member is a path");
        match member.strip_suffix("/*") {
            Some(parent) => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace.join(parent))
                    .expect("a member glob's folder")
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("Cargo.toml").exists())
                    .map(|e| Path::new(parent).join(e.file_name()))
                    .collect();
                dirs.sort();
                packages.extend(dirs);
            }
            None => packages.push(PathBuf::from(member)),
        }
    }

    let mut crates = Vec::new();
    for dir in packages {
        let package = manifest(&dir);
        let name = package["package"]["name"]
            .as_str()
            .expect("a package has a name")
            .to_owned();
        let exists = |path: &Path| workspace.join(path).exists();
        let lib = package
            .get("lib")
            .and_then(|lib| lib.get("path"))
            .and_then(|p| p.as_str())
            .map(|p| dir.join(p))
            .or_else(|| Some(dir.join("src/lib.rs")).filter(|p| exists(p)));
        if let Some(lib) = lib {
            crates.push((format!("{name} (lib)"), lib));
        }
        let bins = package.get("bin").and_then(|b| b.as_array());
        for bin in bins.into_iter().flatten() {
            if let (Some(bin_name), Some(path)) = (
                bin.get("name").and_then(|n| n.as_str()),
                bin.get("path").and_then(|p| p.as_str()),
            ) {
                crates.push((format!("{name} (bin {bin_name})"), dir.join(path)));
            }
        }
        let main = dir.join("src/main.rs");
        if exists(&main) && !crates.iter().any(|(_, root)| *root == main) {
            crates.push((format!("{name} (bin {name})"), main));
        }
    }
    crates
}

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
