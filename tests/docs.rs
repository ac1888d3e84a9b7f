//! The documents hold together: every relative link in README.md, shim/README.md and
//! docs/*.md names a file of the repository, and its `#anchor` a heading of that file (as
//! GitHub makes anchors of headings); every page of docs/ is reachable from the README;
//! the README stays short.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// The README's length, at most: what and why, the commands, the result and the examples;
/// the rest belongs in docs/.
const README_MAX_LINES: usize = 250;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is there")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages
}

/// Every document with links: the README, the shim's README and the pages of docs/.
fn documents() -> Vec<PathBuf> {
    let mut documents = vec![root().join("README.md"), root().join("shim/README.md")];
    documents.extend(pages());
    documents
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of `text` that are prose: not in a fenced block, not an indented one.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced && !line.starts_with("    ")
        })
        .collect()
}

/// The targets of the Markdown links in `text`: what `](` ... `)` holds.
fn links(text: &str) -> Vec<String> {
    prose(text)
        .into_iter()
        .flat_map(|line| line.split("](").skip(1))
        .map(|rest| rest[..rest.find(')').expect("a closed link")].to_string())
        .collect()
}

/// GitHub's anchor of a heading: lower case, spaces as `-`, punctuation but `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the headings of `text`; a repeated one gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    prose(text)
        .into_iter()
        .filter_map(|line| {
            let heading = line.trim_start_matches('#');
            (line.starts_with('#') && heading.starts_with(' ')).then(|| anchor(heading))
        })
        .map(|anchor| {
            let count = seen.entry(anchor.clone()).or_default();
            *count += 1;
            match *count {
                1 => anchor,
                n => format!("{anchor}-{}", n - 1),
            }
        })
        .collect()
}

/// `path` without `.` and `..`, as a file system would resolve it (no symlinks here).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_link_between_the_docs_resolves() {
    let mut broken = Vec::new();
    for document in documents() {
        let text = read(&document);
        let name = document.strip_prefix(root()).unwrap().display().to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                document.clone()
            } else {
                normalise(&document.parent().unwrap().join(file))
            };
            if !target.starts_with(root()) || !target.exists() {
                broken.push(format!("{name}: {link}: no such file"));
            } else if !fragment.is_empty() && !anchors(&read(&target)).iter().any(|a| a == fragment)
            {
                broken.push(format!("{name}: {link}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_docs_is_linked_from_the_readme() {
    let readme = read(&root().join("README.md"));
    let linked: Vec<String> = links(&readme)
        .into_iter()
        .map(|link| link.split('#').next().unwrap().to_string())
        .collect();
    for page in pages() {
        let page = page.strip_prefix(root()).unwrap().display().to_string();
        assert!(linked.contains(&page), "README.md does not link to {page}");
    }
}

#[test]
fn the_readme_stays_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail to docs/"
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# The docker backend: `imds-harness measure --backend docker`\n\
                ## Adding a preset: where the compiler sends you\n\
                ## Images\n## Images\n    # not a heading\n";
    assert_eq!(
        anchors(text),
        [
            "the-docker-backend-imds-harness-measure---backend-docker",
            "adding-a-preset-where-the-compiler-sends-you",
            "images",
            "images-1",
        ]
    );
}
