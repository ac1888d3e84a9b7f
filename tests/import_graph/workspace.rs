//! The workspace's crates, from its manifests.

use std::path::{Path, PathBuf};

/// The workspace's crates, by a name for people and their root file: the library and
/// binaries of the root package and of every member the root manifest lists.
pub(crate) fn workspace_crates(workspace: &Path) -> Vec<(String, PathBuf)> {
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
                    .filter_map(std::result::Result::ok)
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
