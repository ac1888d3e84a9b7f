//! A bounded cache of images: every change of a recipe (every rebuild of `imds-shim`
//! changes the probe image's) gives a new tag, so old tags are pruned. Kept: the tags of
//! the current recipes, the [`KEEP`] (or `--keep N`) most recently created other tags of
//! each kind, and whatever a container still uses (the engine refuses with 409).
//! Only images labelled `imds-harness=1` are ever looked at.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bollard::errors::Error as BollardError;
use bollard::models::ImageSummary;
use bollard::query_parameters::RemoveImageOptions;
use bollard::Docker;

use super::error::ImageError;
use super::recipe::NAMESPACE;
use crate::backend::docker::labels::LABEL;

/// How many tags of each kind are kept besides the current recipe's, by default.
///
/// Two, not one: a host that runs the harness from two checkouts (two branches, or CI
/// jobs of two commits at once) has two current probe images, and each run needs its
/// images and their tars for as long as it runs (nested engines load the probe image
/// on first use, minutes after the start). With two, a run started before another
/// checkout's build keeps its images unless a third one is built meanwhile. The cost is
/// bounded: the probe image is the one that changes (361 MB), so at most 3 of it.
pub const KEEP: usize = 2;

/// What became of one image (one tag, or an untagged image) in a prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The tag of a current recipe: kept.
    Current,
    /// One of the most recent other tags of its kind: kept as a cache.
    Cached,
    /// Past the bound, but a container uses it (the engine answered 409): kept.
    InUse,
    /// Removed; its disk space is freed.
    Removed,
    /// The tag was removed, but the image stays under another tag (nothing freed).
    Untagged,
    /// Removed meanwhile by someone else (the engine answered 404).
    Gone,
}

impl Fate {
    /// Whether the image is still in the engine after the prune.
    pub fn kept(&self) -> bool {
        matches!(self, Fate::Current | Fate::Cached | Fate::InUse)
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fate::Current => "current",
            Fate::Cached => "kept (cache)",
            Fate::InUse => "kept (in use)",
            Fate::Removed => "removed",
            Fate::Untagged => "untagged (the image has another tag)",
            Fate::Gone => "gone (removed meanwhile)",
        })
    }
}

/// One image a prune looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The kind's name (`probe`, ...): the repository is `imds-harness/<kind>`.
    pub kind: String,
    /// `imds-harness/<kind>:<hash>`, or `None` for an untagged image.
    pub tag: Option<String>,
    /// The engine's image id (`sha256:...`); shared by the tags of one image.
    pub id: String,
    /// Size in the engine, bytes.
    pub size: u64,
    /// Whether it was kept, and why, or what removing it did.
    pub fate: Fate,
}

impl Pruned {
    /// The tag, or the short image id of an untagged image.
    pub fn name(&self) -> String {
        if let Some(tag) = &self.tag {
            tag.clone()
        } else {
            let id = self.id.trim_start_matches("sha256:");
            format!("<untagged {}>", &id[..id.len().min(12)])
        }
    }
}

/// What a prune kept and removed: per kind, the current tags, then newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Every image looked at: one entry per tag, and one per untagged image.
    pub images: Vec<Pruned>,
}

impl PruneReport {
    /// Bytes of the images still in the engine (each image counted once).
    pub fn kept_bytes(&self) -> u64 {
        let mut seen = BTreeSet::new();
        self.images
            .iter()
            .filter(|p| p.fate.kept() && seen.insert(p.id.clone()))
            .map(|p| p.size)
            .sum()
    }

    /// Bytes freed by the images removed.
    pub fn removed_bytes(&self) -> u64 {
        self.images
            .iter()
            .filter(|p| p.fate == Fate::Removed)
            .map(|p| p.size)
            .sum()
    }

    /// The tags still in the engine.
    pub fn kept_tags(&self) -> impl Iterator<Item = &str> {
        self.images
            .iter()
            .filter(|p| p.fate.kept())
            .filter_map(|p| p.tag.as_deref())
    }
}

/// An image of ours as the engine lists it, before the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    kind: String,
    tag: Option<String>,
    id: String,
    size: u64,
    /// Creation time, nanoseconds since the epoch.
    created: i128,
}

/// Keep or remove, per candidate: current tags are kept; of the others, per kind, the
/// `keep` most recently created tags are kept; untagged images (left by a forced
/// rebuild or two imports of one tag at once) are never needed by name and go.
/// Returns the candidates of each kind, current first, then newest first, each with its
/// fate, or `None` when it is to be removed.
fn decide(
    mut candidates: Vec<Candidate>,
    current: &BTreeSet<&str>,
    keep: usize,
) -> Vec<(Candidate, Option<Fate>)> {
    // Per kind, the current tags first, then newest first.
    let is_current = |c: &Candidate| c.tag.as_deref().is_some_and(|t| current.contains(t));
    candidates.sort_by_cached_key(|c| {
        (
            c.kind.clone(),
            !is_current(c),
            std::cmp::Reverse(c.created),
            c.tag.clone(),
        )
    });
    let mut cached: BTreeMap<String, usize> = BTreeMap::new();
    candidates
        .into_iter()
        .map(|candidate| {
            let fate = match &candidate.tag {
                Some(tag) if current.contains(tag.as_str()) => Some(Fate::Current),
                Some(_) => {
                    let count = cached.entry(candidate.kind.clone()).or_default();
                    if *count < keep {
                        *count += 1;
                        Some(Fate::Cached)
                    } else {
                        None
                    }
                }
                None => None,
            };
            (candidate, fate)
        })
        .collect()
}

/// The images of `kinds` (names, as in `imds-harness/<kind>`) labelled
/// `imds-harness=1`, one candidate per tag and one per untagged image.
async fn candidates(docker: &Docker, kinds: &[&str]) -> Result<Vec<Candidate>, ImageError> {
    let images: Vec<ImageSummary> = labelled_images(docker).await?;
    let mut found = Vec::new();
    for image in images {
        // The filter is the engine's; the label is checked here too, so that nothing
        // unlabelled is ever removed.
        if image.labels.get(LABEL).map(String::as_str) != Some("1") {
            continue;
        }
        let tags: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .collect();
        let mut mine: Vec<(String, Option<String>)> = Vec::new();
        for tag in &tags {
            let Some((repository, name)) = tag.rsplit_once(':') else {
                continue;
            };
            // A stable name (the mock's `latest`) moves with the current image.
            if name == "latest" {
                continue;
            }
            let Some((namespace, kind)) = repository.split_once('/') else {
                continue;
            };
            if namespace == NAMESPACE && kinds.contains(&kind) {
                mine.push((kind.to_string(), Some((*tag).clone())));
            }
        }
        if tags.is_empty() {
            let kind = image.labels.get(&format!("{LABEL}.image"));
            if let Some(kind) = kind.filter(|k| kinds.contains(&k.as_str())) {
                mine.push((kind.clone(), None));
            }
        }
        if mine.is_empty() {
            continue;
        }
        // The list has seconds; images made within one second are told apart by the
        // nanoseconds of their inspected creation time.
        let created = match docker.inspect_image(&image.id).await {
            Ok(inspected) => inspected
                .created
                .map(time::OffsetDateTime::unix_timestamp_nanos),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(source) => {
                return Err(ImageError::Docker {
                    what: format!("image {}", image.id),
                    source: Box::new(source),
                });
            }
        }
        .unwrap_or(i128::from(image.created) * 1_000_000_000);
        for (kind, tag) in mine {
            found.push(Candidate {
                kind,
                tag,
                id: image.id.clone(),
                size: image.size.max(0) as u64,
                created,
            });
        }
    }
    Ok(found)
}

/// Removes the images of `kinds` (names, as in `imds-harness/<kind>`) labelled
/// `imds-harness=1` that are not in `current` and not among the `keep` most recently
/// created other tags of their kind; untagged ones go too. An image a container uses
/// is kept (the engine refuses). Nothing is forced.
pub async fn prune(
    docker: &Docker,
    kinds: &[&str],
    current: &[String],
    keep: usize,
) -> Result<PruneReport, ImageError> {
    let current: BTreeSet<&str> = current.iter().map(String::as_str).collect();
    let decided = decide(candidates(docker, kinds).await?, &current, keep);
    let mut report = PruneReport::default();
    for (candidate, fate) in decided {
        let fate = if let Some(fate) = fate {
            fate
        } else {
            let name = candidate.tag.as_deref().unwrap_or(&candidate.id);
            let options = RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            };
            match docker.remove_image(name, Some(options), None).await {
                Ok(items) if items.iter().any(|i| i.deleted.is_some()) => Fate::Removed,
                Ok(_) => Fate::Untagged,
                Err(BollardError::DockerResponseServerError {
                    status_code: 409, ..
                }) => Fate::InUse,
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Fate::Gone,
                Err(source) => {
                    return Err(ImageError::Docker {
                        what: format!("removing image {name}"),
                        source: Box::new(source),
                    })
                }
            }
        };
        report.images.push(Pruned {
            kind: candidate.kind,
            tag: candidate.tag,
            id: candidate.id,
            size: candidate.size,
            fate,
        });
    }
    Ok(report)
}

/// Every image of the engine labelled `imds-harness=1`.
pub(super) async fn labelled_images(
    docker: &bollard::Docker,
) -> Result<Vec<bollard::models::ImageSummary>, ImageError> {
    let options = bollard::query_parameters::ListImagesOptions {
        filters: Some(
            [("label".to_string(), vec![format!("{}=1", LABEL)])]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    docker
        .list_images(Some(options))
        .await
        .map_err(|source| ImageError::Docker {
            what: "the images labelled imds-harness=1".into(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(kind: &str, tag: Option<&str>, created: i128) -> Candidate {
        Candidate {
            kind: kind.into(),
            tag: tag.map(|t| format!("imds-harness/{kind}:{t}")),
            id: format!("sha256:{kind}{}", tag.unwrap_or("none")),
            size: 100,
            created,
        }
    }

    fn fates(decided: &[(Candidate, Option<Fate>)]) -> Vec<(String, Option<Fate>)> {
        decided
            .iter()
            .map(|(c, f)| {
                (
                    c.tag.clone().unwrap_or_else(|| "untagged".into()),
                    f.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn current_tags_and_the_newest_others_per_kind_are_kept() {
        let candidates = vec![
            candidate("probe", Some("cur"), 1),
            candidate("probe", Some("a"), 2),
            candidate("probe", Some("b"), 3),
            candidate("probe", Some("c"), 4),
            candidate("probe", None, 5),
            candidate("base", Some("x"), 1),
            candidate("base", Some("y"), 9),
        ];
        let current = BTreeSet::from(["imds-harness/probe:cur"]);
        let decided = decide(candidates, &current, 2);
        let t = |s: &str| s.to_string();
        assert_eq!(
            fates(&decided),
            vec![
                (t("imds-harness/base:y"), Some(Fate::Cached)),
                (t("imds-harness/base:x"), Some(Fate::Cached)),
                (t("imds-harness/probe:cur"), Some(Fate::Current)),
                (t("untagged"), None),
                (t("imds-harness/probe:c"), Some(Fate::Cached)),
                (t("imds-harness/probe:b"), Some(Fate::Cached)),
                (t("imds-harness/probe:a"), None),
            ]
        );
    }

    #[test]
    fn keep_zero_keeps_only_the_current_tags() {
        let candidates = vec![
            candidate("probe", Some("cur"), 1),
            candidate("probe", Some("a"), 2),
        ];
        let current = BTreeSet::from(["imds-harness/probe:cur"]);
        let decided = decide(candidates, &current, 0);
        assert_eq!(decided[0].1, Some(Fate::Current));
        assert_eq!(decided[1].1, None);
    }

    #[test]
    fn sizes_count_each_image_once_and_only_what_is_freed() {
        let pruned = |tag: &str, id: &str, fate| Pruned {
            kind: "probe".into(),
            tag: Some(tag.into()),
            id: id.into(),
            size: 10,
            fate,
        };
        let report = PruneReport {
            images: vec![
                pruned("a", "1", Fate::Current),
                pruned("b", "1", Fate::Cached),
                pruned("c", "2", Fate::InUse),
                pruned("d", "3", Fate::Removed),
                pruned("e", "4", Fate::Untagged),
                pruned("f", "5", Fate::Gone),
            ],
        };
        assert_eq!(report.kept_bytes(), 20);
        assert_eq!(report.removed_bytes(), 10);
        assert_eq!(report.kept_tags().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
