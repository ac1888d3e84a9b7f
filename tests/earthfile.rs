//! The Earthfile holds to the tree: `+src` copies every workspace member and every
//! top-level file or folder the build and the tests read, `+tools` installs exactly the
//! Debian package list the Makefile reads (`packages/debian.txt`), `+test` runs what CI
//! runs, and every `+target` the docs name exists.
//!
//! Earthly itself cannot run where this suite was written (Debian has no Earthly package
//! and no registry may be used), so nothing here runs a target: the test reads the
//! Earthfile. Needs neither root nor Docker.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Top-level entries of the repository that `+src` does not copy, and why.
const NOT_COPIED: &[(&str, &str)] = &[
    (".gitignore", "git's, not the build's"),
    ("target", "build output"),
];

/// The package lists, one Debian package a line, `#` comments.
const DEBIAN: &str = "packages/debian.txt";
const DEBIAN_BENCH: &str = "packages/debian-bench.txt";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Earthfile's targets, each with its commands (continuation lines joined, comments
/// dropped), in order.
fn targets() -> Vec<(String, Vec<String>)> {
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    let mut command = String::new();
    for line in read("Earthfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            if let Some(name) = trimmed.strip_suffix(':') {
                targets.push((name.to_string(), Vec::new()));
                continue;
            }
        }
        command.push_str(trimmed.trim_end_matches('\\').trim_end());
        command.push(' ');
        if !trimmed.ends_with('\\') {
            if let Some((_, commands)) = targets.last_mut() {
                commands.push(command.trim_end().to_string());
            }
            command.clear();
        }
    }
    targets
}

fn target(name: &str) -> Vec<String> {
    targets()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("the Earthfile has no +{name}"))
        .1
}

/// What `+src` copies into the build: the sources of its `COPY` commands.
fn copied_by_src() -> Vec<String> {
    target("src")
        .iter()
        .filter_map(|command| command.strip_prefix("COPY "))
        .flat_map(|args| {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The workspace's members, from the root Cargo.toml.
fn members() -> Vec<String> {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// The repository's top-level entries: git's list of tracked files where there is one (a
/// checkout), else the folder as it is (a build that copied the tree without `.git`).
fn top_level() -> Vec<String> {
    let git = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|out| out.status.success() && !out.stdout.is_empty());
    let mut entries: Vec<String> = match git {
        Some(out) => String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .filter(|path| !path.is_empty())
            .map(|path| path.split('/').next().unwrap().to_string())
            .collect(),
        None => std::fs::read_dir(root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != ".git")
            .collect(),
    };
    entries.sort();
    entries.dedup();
    entries
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The packages of a list file: its lines but comments and blank ones.
fn packages(path: &str) -> Vec<String> {
    read(path)
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn src_copies_every_workspace_member_and_the_manifests() {
    let copied = copied_by_src();
    let mut wanted = members();
    wanted.extend(["Cargo.toml".to_string(), "Cargo.lock".to_string()]);
    for member in wanted {
        assert!(copied.contains(&member), "+src does not copy {member}");
    }
}

#[test]
fn src_copies_every_top_level_entry_but_the_listed_ones() {
    let copied = copied_by_src();
    for entry in top_level() {
        let excused = NOT_COPIED.iter().any(|(name, _)| *name == entry);
        assert!(
            copied.contains(&entry) || excused,
            "+src does not copy {entry}: copy it, or add it to NOT_COPIED with the reason"
        );
    }
    for (name, _) in NOT_COPIED {
        assert!(
            !copied.contains(&name.to_string()),
            "{name} is both copied and not"
        );
    }
}

#[test]
fn every_file_the_code_includes_is_copied() {
    let copied = copied_by_src();
    let mut dirs: Vec<String> = members();
    dirs.extend(["tests".to_string(), "benches".to_string()]);
    let mut checked = 0;
    for dir in dirs {
        for file in rust_files(&root().join(&dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for include in ["include_str!(\"", "include_bytes!(\""] {
                for rest in text.split(include).skip(1) {
                    let relative = &rest[..rest.find('"').unwrap()];
                    let target = file.parent().unwrap().join(relative);
                    let target = target
                        .canonicalize()
                        .unwrap_or_else(|e| panic!("{}: {relative}: {e}", file.display()));
                    let top = target
                        .strip_prefix(root().canonicalize().unwrap())
                        .unwrap_or_else(|_| {
                            panic!("{} includes {relative}, outside", file.display())
                        })
                        .components()
                        .next()
                        .unwrap()
                        .as_os_str()
                        .to_string_lossy()
                        .to_string();
                    assert!(
                        copied.contains(&top),
                        "{} includes {relative}, and +src does not copy {top}",
                        file.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0, "no include_str! found: the scan is broken");
}

#[test]
fn tools_installs_exactly_the_list_the_makefile_reads() {
    let makefile = read("Makefile");
    for (variable, list) in [("DEB_PACKAGES", DEBIAN), ("BENCH_PACKAGES", DEBIAN_BENCH)] {
        let line = format!("{variable} := $(shell grep -v '^#' {list})");
        assert!(
            makefile.lines().any(|l| l == line),
            "the Makefile lacks `{line}`"
        );
    }
    let tools = target("tools");
    assert!(
        tools.contains(&format!("COPY {DEBIAN} /tmp/debian.txt")),
        "+tools does not copy {DEBIAN}: {tools:#?}"
    );
    let installs: Vec<&String> = tools
        .iter()
        .filter(|c| c.contains("apt-get install"))
        .collect();
    assert_eq!(
        installs.len(),
        1,
        "+tools installs packages once: {installs:#?}"
    );
    let arguments = installs[0]
        .split("apt-get install")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap();
    let packages: Vec<&str> = arguments
        .split_whitespace()
        .skip_while(|w| w.starts_with('-'))
        .collect();
    assert_eq!(
        packages.join(" "),
        "$(grep -v '^#' /tmp/debian.txt)",
        "+tools must install the list and nothing else"
    );
}

#[test]
fn the_package_lists_are_one_package_a_line() {
    let main = packages(DEBIAN);
    let bench = packages(DEBIAN_BENCH);
    for package in main.iter().chain(&bench) {
        let valid = package.len() >= 2
            && package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && package
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        assert!(valid, "not a Debian package name: {package:?}");
    }
    for package in &main {
        assert_eq!(
            main.iter().filter(|p| *p == package).count(),
            1,
            "{package} twice"
        );
        assert!(!bench.contains(package), "{package} in both lists");
    }
    for needed in [
        "awscli",
        "iproute2",
        "iptables",
        "slirp4netns",
        "passt",
        "mmdebstrap",
    ] {
        assert!(main.iter().any(|p| p == needed), "{DEBIAN} lacks {needed}");
    }
}

#[test]
fn test_runs_what_ci_runs() {
    let ci = read(".ci/run");
    assert!(ci.contains("export CI=true") && ci.contains("exec make test"));
    let test = target("test");
    assert!(test.contains(&"ENV CI=true".to_string()), "{test:#?}");
    assert!(
        test.iter()
            .any(|c| c.starts_with("RUN ") && c.ends_with(" make test")),
        "+test does not run `make test`: {test:#?}"
    );
}

#[test]
fn every_target_the_docs_name_exists() {
    let names: Vec<String> = targets().into_iter().map(|(name, _)| name).collect();
    let mut documents = vec![
        "README.md".to_string(),
        "shim/README.md".to_string(),
        "Earthfile".to_string(),
        "Makefile".to_string(),
    ];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        documents.push(path.strip_prefix(root()).unwrap().display().to_string());
    }
    let mut named = 0;
    for document in documents {
        for line in read(&document).lines() {
            for (i, _) in line.match_indices('+') {
                // `+probe`, (+probe) or `earthly ... +probe`; not `set +a` nor `=+crt-static`.
                let quoted = matches!(line[..i].chars().next_back(), Some('`' | '('));
                let run = line[..i].ends_with(' ') && line.contains("earthly ");
                let name: String = line[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if (quoted || run) && name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    assert!(
                        names.contains(&name),
                        "{document} names +{name}, which the Earthfile lacks"
                    );
                    named += 1;
                }
            }
        }
    }
    assert!(
        named > 0,
        "no +target found in the docs: the scan is broken"
    );
}
