//! The files one file uses: the paths of its `use` items, expressions and types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use syn::ext::IdentExt;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, ItemMod, ItemUse, UseTree, Visibility};

use crate::modules::{is_test_only, ModulePath};

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
pub(crate) struct Uses<'a> {
    pub(crate) modules: &'a BTreeMap<ModulePath, PathBuf>,
    pub(crate) file: &'a Path,
    /// The module being read: the file's, or an inline one inside it.
    pub(crate) module: ModulePath,
    /// Used files, with the line of the use.
    pub(crate) found: Vec<(PathBuf, usize)>,
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
