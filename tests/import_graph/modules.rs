//! The module tree of a crate, as its `mod` items declare it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use syn::ext::IdentExt;
use syn::{Attribute, Item};

/// A module inside its crate, by its names from the root (none: the root).
pub(crate) type ModulePath = Vec<String>;

/// Reads a file of the workspace by its path from the workspace's root.
pub(crate) type Read<'r> = &'r dyn Fn(&Path) -> Option<String>;

/// The module tree as `mod` items declare it.
pub(crate) struct ModuleTree<'a> {
    pub(crate) read: Read<'a>,
    pub(crate) file: &'a Path,
    pub(crate) modules: &'a mut BTreeMap<ModulePath, PathBuf>,
    /// Files still to walk: path, module, and whether it is a `mod.rs`-like file (its
    /// children are beside it rather than in a folder of its name).
    pub(crate) pending: &'a mut Vec<(PathBuf, ModulePath, bool)>,
}

impl ModuleTree<'_> {
    /// Records the modules `items` declare in `module`, whose children's files are in
    /// `dir`.
    pub(crate) fn declared(&mut self, items: &[Item], dir: &Path, module: &ModulePath) {
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
            if let Some((_, items)) = &declaration.content {
                self.modules.insert(child.clone(), self.file.to_path_buf());
                self.declared(items, &dir.join(&name), &child);
            } else {
                let (path, mod_rs) = if let Some(path) = path_attribute(&declaration.attrs) {
                    (self.file.parent().unwrap_or(dir).join(path), true)
                } else {
                    let beside = dir.join(format!("{name}.rs"));
                    if (self.read)(&beside).is_some() {
                        (beside, false)
                    } else {
                        (dir.join(&name).join("mod.rs"), true)
                    }
                };
                self.pending.push((path, child, mod_rs));
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
pub(crate) fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| match &attr.meta {
        syn::Meta::List(list) => list.path.is_ident("cfg") && list.tokens.to_string() == "test",
        _ => false,
    })
}
