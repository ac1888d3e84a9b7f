//! What goes into each image, as data, and the tag its content hash gives it.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;
use crate::probe::programs::{self, SdkProgram};

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
    /// Base + Debian's `awscli`, `ruby-aws-sdk-core` and `python3-boto3` + `imds-shim`
    /// and the SDK clients' programs: what runs at a leaf.
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
                // The AWS CLI, and what the ruby and boto3 clients run on (the Go
                // clients are static binaries).
                packages: &[
                    "awscli",
                    "ca-certificates",
                    "ruby-aws-sdk-core",
                    "python3-boto3",
                ],
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
    /// Whether `imds-shim` is copied to [`SHIM_IN_IMAGE`], and the SDK clients'
    /// programs to [`SdkProgram::in_image`].
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
    /// of the shim binary and `programs` those of the SDK clients' programs, for recipes
    /// that copy them in.
    fn describe(&self, shim_sha256: Option<&str>, programs: &[(SdkProgram, String)]) -> String {
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
            for (program, sha256) in programs {
                text.push_str(&format!("client={} sha256={sha256}\n", program.in_image()));
            }
        }
        text
    }

    /// The recipe's content hash (hex SHA-256 of [`Recipe::describe`]).
    fn hash(&self, shim_sha256: Option<&str>, programs: &[(SdkProgram, String)]) -> String {
        hex::encode(Sha256::digest(
            self.describe(shim_sha256, programs).as_bytes(),
        ))
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
    /// The SDK clients' programs copied in, for recipes that want them.
    pub(super) programs: Vec<(SdkProgram, PathBuf)>,
}

/// Resolves the recipes of all images: hashes the shim binary at `shim` (see
/// [`crate::probe::shim::locate`]) and the SDK clients' programs (made ready first, see
/// [`programs::prepare_all`]), and computes every tag.
pub fn plan(shim: &Path) -> Result<Vec<Planned>, ImageError> {
    let programs = programs::prepare_all().map_err(ImageError::Programs)?;
    plan_with(shim, &programs)
}

fn sha256_of(path: &Path, what: &str) -> Result<String, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        what: format!("reading {what} {}", path.display()),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// [`plan`] with the programs given.
fn plan_with(shim: &Path, programs: &[(SdkProgram, PathBuf)]) -> Result<Vec<Planned>, ImageError> {
    let shim_sha256 = sha256_of(shim, "the imds-shim binary")?;
    let digests = programs
        .iter()
        .map(|(program, path)| Ok((*program, sha256_of(path, program.description())?)))
        .collect::<Result<Vec<_>, ImageError>>()?;
    Ok(ImageKind::ALL
        .iter()
        .map(|kind| {
            let recipe = kind.recipe();
            let digest = recipe.shim.then_some(shim_sha256.as_str());
            let copied: &[_] = if recipe.shim { &digests } else { &[] };
            let hash = recipe.hash(digest, copied);
            let tag = format!("{}:{}", kind.repository(), &hash[..TAG_HASH_LEN]);
            Planned {
                shim: recipe.shim.then(|| shim.to_path_buf()),
                programs: if recipe.shim {
                    programs.to_vec()
                } else {
                    Vec::new()
                },
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
        assert_eq!(base.hash(None, &[]), base.hash(None, &[]));
        let probe = ImageKind::Probe.recipe();
        assert_ne!(probe.hash(Some("aa"), &[]), probe.hash(Some("bb"), &[]));
        assert_ne!(
            probe.hash(Some("aa"), &[(SdkProgram::Go, "1".into())]),
            probe.hash(Some("aa"), &[(SdkProgram::Go, "2".into())])
        );
        assert_ne!(
            base.hash(None, &[]),
            ImageKind::Instance.recipe().hash(None, &[])
        );
    }

    #[test]
    fn the_probe_image_has_what_every_client_runs_on() {
        let probe = ImageKind::Probe.recipe();
        for program in SdkProgram::ALL {
            for package in program.image_packages() {
                assert!(probe.packages.contains(package), "{program}: {package}");
            }
        }
    }

    #[test]
    fn tags_are_the_repository_and_a_hash_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("imds-shim");
        std::fs::write(&shim, b"a shim").unwrap();
        let go = dir.path().join("imdsh-go");
        std::fs::write(&go, b"a go program").unwrap();
        let programs = vec![(SdkProgram::Go, go.clone())];
        let planned = plan_with(&shim, &programs).unwrap();
        let kinds: Vec<ImageKind> = planned.iter().map(|p| p.recipe.kind).collect();
        assert_eq!(kinds, ImageKind::ALL);
        for p in &planned {
            assert_eq!(
                p.tag,
                format!("imds-harness/{}:{}", p.recipe.kind, &p.hash[..TAG_HASH_LEN])
            );
            assert_eq!(p.shim.is_some(), p.recipe.kind == ImageKind::Probe);
            assert_eq!(!p.programs.is_empty(), p.recipe.kind == ImageKind::Probe);
        }
        std::fs::write(&go, b"another go program").unwrap();
        let rebuilt = plan_with(&shim, &programs).unwrap();
        for (before, after) in planned.iter().zip(&rebuilt) {
            assert_eq!(
                before.tag != after.tag,
                before.recipe.kind == ImageKind::Probe
            );
        }
        std::fs::write(&shim, b"another shim").unwrap();
        let again = plan_with(&shim, &programs).unwrap();
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
