//! What goes into each image, as data, and the tag its content hash gives it.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// The Debian release every image is made from.
pub(super) const SUITE: &str = "bookworm";
/// The mirror `mmdebstrap` downloads from (bookworm main; `awscli` is 2.9.19 there).
pub(super) const MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when the way images are made changes in a way the recipe does not show.
const RECIPE_VERSION: u32 = 1;
/// Hex digits of the recipe hash in a tag.
const TAG_HASH_LEN: usize = 16;
/// Where the shim lands in the probe image.
pub const SHIM_IN_IMAGE: &str = "/usr/local/bin/imds-shim";
/// The first part of every image's repository: `imds-harness/<name>`.
pub(super) const NAMESPACE: &str = "imds-harness";

/// The images of the docker backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Debian bookworm, `minbase`.
    Base,
    /// Base + Debian's `awscli` + `imds-shim`: what runs at a leaf.
    Probe,
    /// Base + Debian's `docker.io` (dockerd with BuildKit embedded), `iptables`,
    /// `iproute2` and the CNI plugins: a simulated EC2 instance, or a BuildKit container.
    Instance,
}

impl ImageKind {
    pub(super) const ALL: [ImageKind; 3] = [ImageKind::Base, ImageKind::Probe, ImageKind::Instance];

    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Base => "base",
            ImageKind::Probe => "probe",
            ImageKind::Instance => "instance",
        }
    }

    /// The repository part of the tag.
    pub fn repository(self) -> String {
        format!("{NAMESPACE}/{}", self.name())
    }

    /// What goes into the image, as data.
    pub(super) fn recipe(self) -> Recipe {
        match self {
            ImageKind::Base => Recipe {
                kind: self,
                packages: &[],
                shim: false,
            },
            ImageKind::Probe => Recipe {
                kind: self,
                packages: &["awscli", "ca-certificates"],
                shim: true,
            },
            ImageKind::Instance => Recipe {
                kind: self,
                packages: &[
                    "docker.io",
                    "iptables",
                    "iproute2",
                    "containernetworking-plugins",
                    "ca-certificates",
                ],
                shim: false,
            },
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub kind: ImageKind,
    /// Debian packages installed at bootstrap, on top of `minbase`.
    pub(super) packages: &'static [&'static str],
    /// Whether `imds-shim` is copied to [`SHIM_IN_IMAGE`].
    pub(super) shim: bool,
}

/// Options of `mmdebstrap` that shape the content (paths excluded).
pub(super) const MMDEBSTRAP_OPTIONS: &[&str] = &[
    "--variant=minbase",
    "--format=tar",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
];

/// Image configuration applied at import (Dockerfile instructions), besides the labels.
pub(super) const IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
];

impl Recipe {
    /// The canonical text the tag's hash is taken over. `shim_sha256` is the hex digest
    /// of the shim binary, for recipes that copy it in.
    fn describe(&self, shim_sha256: Option<&str>) -> String {
        let mut text = format!(
            "imds-harness image recipe v{RECIPE_VERSION}\nname={}\nsuite={SUITE}\nmirror={MIRROR}\n",
            self.kind.name()
        );
        for option in MMDEBSTRAP_OPTIONS {
            text.push_str(&format!("mmdebstrap-option={option}\n"));
        }
        text.push_str(&format!("packages={}\n", self.packages.join(",")));
        for change in IMAGE_CHANGES {
            text.push_str(&format!("change={change}\n"));
        }
        if self.shim {
            text.push_str(&format!(
                "shim={SHIM_IN_IMAGE} sha256={}\n",
                shim_sha256.unwrap_or("missing")
            ));
        }
        text
    }

    /// The recipe's content hash (hex SHA-256 of [`Recipe::describe`]).
    fn hash(&self, shim_sha256: Option<&str>) -> String {
        hex::encode(Sha256::digest(self.describe(shim_sha256).as_bytes()))
    }
}

/// An image with its inputs resolved: what `imds-harness images` builds or finds.
#[derive(Debug, Clone)]
pub struct Planned {
    pub recipe: Recipe,
    /// Full recipe hash.
    pub(super) hash: String,
    /// `imds-harness/<name>:<hash prefix>`.
    pub tag: String,
    /// The shim binary copied in, for recipes that want it.
    pub(super) shim: Option<PathBuf>,
}

/// Resolves the recipes of all images: hashes the shim binary at `shim` (see
/// [`crate::probe::shim::locate`]) and computes every tag.
pub fn plan(shim: &Path) -> Result<Vec<Planned>, ImageError> {
    let bytes = std::fs::read(shim).map_err(|source| ImageError::Io {
        what: format!("reading the imds-shim binary {}", shim.display()),
        source,
    })?;
    let shim_sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(ImageKind::ALL
        .iter()
        .map(|kind| {
            let recipe = kind.recipe();
            let digest = recipe.shim.then_some(shim_sha256.as_str());
            let hash = recipe.hash(digest);
            let tag = format!("{}:{}", kind.repository(), &hash[..TAG_HASH_LEN]);
            Planned {
                shim: recipe.shim.then(|| shim.to_path_buf()),
                recipe,
                hash,
                tag,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_distinct() {
        let base = ImageKind::Base.recipe();
        assert_eq!(base.hash(None), base.hash(None));
        let probe = ImageKind::Probe.recipe();
        assert_ne!(probe.hash(Some("aa")), probe.hash(Some("bb")));
        assert_ne!(base.hash(None), ImageKind::Instance.recipe().hash(None));
    }

    #[test]
    fn tags_are_the_repository_and_a_hash_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("imds-shim");
        std::fs::write(&shim, b"a shim").unwrap();
        let planned = plan(&shim).unwrap();
        let kinds: Vec<ImageKind> = planned.iter().map(|p| p.recipe.kind).collect();
        assert_eq!(kinds, ImageKind::ALL);
        for p in &planned {
            assert_eq!(
                p.tag,
                format!("imds-harness/{}:{}", p.recipe.kind, &p.hash[..TAG_HASH_LEN])
            );
            assert_eq!(p.shim.is_some(), p.recipe.kind == ImageKind::Probe);
        }
        std::fs::write(&shim, b"another shim").unwrap();
        let again = plan(&shim).unwrap();
        for (before, after) in planned.iter().zip(&again) {
            let changed = before.tag != after.tag;
            assert_eq!(
                changed,
                before.recipe.kind == ImageKind::Probe,
                "{}",
                before.tag
            );
        }
    }
}
