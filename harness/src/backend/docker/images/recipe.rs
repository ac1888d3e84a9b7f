//! What goes into each image, as data, and the tag its content hash gives it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strum::{Display, IntoStaticStr, VariantArray};

use super::executable::Executable;
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
/// The mock's image as other projects name it: always the current one.
pub const MOCK_IMAGE: &str = "imds-harness/mock:latest";
/// Where `imds-harness` lands in the mock's image.
pub const HARNESS_IN_IMAGE: &str = "/usr/local/bin/imds-harness";
/// The first part of every image's repository: `imds-harness/<name>`.
pub(super) const NAMESPACE: &str = "imds-harness";

/// The images of the docker backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, VariantArray, IntoStaticStr, Display)]
#[strum(serialize_all = "lowercase")]
pub enum ImageKind {
    /// Debian bookworm, `minbase`.
    Base,
    /// Base + Debian's `awscli`, `ruby-aws-sdk-core` and `python3-boto3` + `imds-shim`
    /// and the SDK clients' programs: what runs at a leaf.
    Probe,
    /// Base + Debian's `docker.io` (dockerd with BuildKit embedded), `iptables`,
    /// `iproute2`, the CNI plugins, `podman`, `buildah`, `slirp4netns`, `passt` and
    /// `uidmap`: a simulated EC2 instance, or an engine container nested in one.
    Instance,
    /// `imds-harness mock` alone (no distribution): the mock for other projects' tests.
    Mock,
}

/// Where an image's root file system comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Debian, made by `mmdebstrap`.
    Debian,
    /// One executable and the shared objects it loads ([`Executable`]).
    Executable,
}

impl ImageKind {
    /// The last part of the image's repository (`imds-harness/<name>`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The name other projects use for the current image of this kind, besides its
    /// recipe tag: only the mock's has one (`imds-harness/mock:latest`).
    pub fn stable_tag(self) -> Option<&'static str> {
        (self == ImageKind::Mock).then_some(MOCK_IMAGE)
    }

    /// Where the image's root file system comes from.
    pub fn source(self) -> Source {
        self.recipe().source
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
                source: Source::Debian,
                packages: &[],
                shim: false,
            },
            ImageKind::Probe => Recipe {
                kind: self,
                source: Source::Debian,
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
            ImageKind::Mock => Recipe {
                kind: self,
                source: Source::Executable,
                packages: &[],
                shim: false,
            },
            ImageKind::Instance => Recipe {
                kind: self,
                source: Source::Debian,
                packages: &[
                    "docker.io",
                    "iptables",
                    "iproute2",
                    "containernetworking-plugins",
                    "ca-certificates",
                    // Podman and Buildah on CNI (no netavark: Podman 4.3 then uses
                    // the CNI plugins above), rootless with slirp4netns or pasta.
                    "podman",
                    "buildah",
                    "slirp4netns",
                    "passt",
                    "uidmap",
                ],
                shim: false,
            },
        }
    }
}

/// How one image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub kind: ImageKind,
    pub source: Source,
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
const DEBIAN_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
];

/// The mock's image runs `imds-harness mock`, its services on every address of the
/// container at the ports a simulated instance uses; flags given to `docker run` (or
/// testcontainers' command) are the mock's own.
const MOCK_CHANGES: &[&str] = &[
    "ENTRYPOINT [\"/usr/local/bin/imds-harness\", \"mock\"]",
    "ENV IMDS_HARNESS_MOCK_IMDS=0.0.0.0:80",
    "ENV IMDS_HARNESS_MOCK_STS=0.0.0.0:8080",
    "ENV IMDS_HARNESS_MOCK_EC2=0.0.0.0:8081",
    "EXPOSE 80/tcp 8080/tcp 8081/tcp",
];

impl Recipe {
    /// The image configuration applied at import, besides the labels.
    pub(super) fn image_changes(&self) -> &'static [&'static str] {
        match self.source {
            Source::Debian => DEBIAN_CHANGES,
            Source::Executable => MOCK_CHANGES,
        }
    }

    /// The canonical text the tag's hash is taken over. `shim_sha256` is the hex digest
    /// of the shim binary and `programs` those of the SDK clients' programs, for recipes
    /// that copy them in.
    fn describe(&self, shim_sha256: Option<&str>, programs: &[(SdkProgram, String)]) -> String {
        if self.source == Source::Executable {
            // The files' digests follow, from `Executable::describe`.
            let mut text = format!(
                "imds-harness image recipe v{RECIPE_VERSION}\nname={}\nsource=executable\n",
                self.kind.name()
            );
            for change in self.image_changes() {
                text.push_str(&format!("change={change}\n"));
            }
            return text;
        }
        let mut text = format!(
            "imds-harness image recipe v{RECIPE_VERSION}\nname={}\nsuite={SUITE}\nmirror={MIRROR}\n",
            self.kind.name()
        );
        for option in MMDEBSTRAP_OPTIONS {
            text.push_str(&format!("mmdebstrap-option={option}\n"));
        }
        text.push_str(&format!("packages={}\n", self.packages.join(",")));
        for change in self.image_changes() {
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
    /// The executable (and its libraries) an executable-only image is made of.
    pub(super) executable: Option<Executable>,
}

/// Resolves the recipes of all images: hashes the shim binary at `shim` (see
/// [`crate::probe::shim::locate`]), the SDK clients' programs (made ready first, see
/// [`programs::prepare_all`]) and the `imds-harness` executable at `harness` with its
/// shared objects (see [`locate_harness`]), and computes every tag.
pub fn plan(shim: &Path, harness: &Path) -> Result<Vec<Planned>, ImageError> {
    let programs = programs::prepare_all().map_err(ImageError::Programs)?;
    plan_with(shim, &programs, &Executable::inspect(harness)?)
}

/// Finds `imds-harness`: `$IMDS_HARNESS`, this executable when it is `imds-harness`,
/// beside it (or one folder up, for test executables in `deps/`), then `PATH`.
pub fn locate_harness() -> Result<PathBuf, ImageError> {
    crate::which::project_binary("imds-harness", "IMDS_HARNESS").ok_or_else(|| ImageError::Io {
        what: "finding the imds-harness executable for the mock's image: build it with \
               `cargo build --workspace --bins`, or set IMDS_HARNESS"
            .into(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

fn sha256_of(path: &Path, what: &str) -> Result<String, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        what: format!("reading {what} {}", path.display()),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// [`plan`] with the programs and the mock's executable given.
fn plan_with(
    shim: &Path,
    programs: &[(SdkProgram, PathBuf)],
    executable: &Executable,
) -> Result<Vec<Planned>, ImageError> {
    let shim_sha256 = sha256_of(shim, "the imds-shim binary")?;
    let files = executable.describe(Path::new(HARNESS_IN_IMAGE))?;
    let digests = programs
        .iter()
        .map(|(program, path)| Ok((*program, sha256_of(path, program.description())?)))
        .collect::<Result<Vec<_>, ImageError>>()?;
    Ok(ImageKind::VARIANTS
        .iter()
        .map(|kind| {
            let recipe = kind.recipe();
            let digest = recipe.shim.then_some(shim_sha256.as_str());
            let copied: &[_] = if recipe.shim { &digests } else { &[] };
            let hash = match recipe.source {
                Source::Debian => recipe.hash(digest, copied),
                Source::Executable => hex::encode(Sha256::digest(
                    format!("{}{files}", recipe.describe(None, &[])).as_bytes(),
                )),
            };
            let tag = format!("{}:{}", kind.repository(), &hash[..TAG_HASH_LEN]);
            Planned {
                shim: recipe.shim.then(|| shim.to_path_buf()),
                programs: if recipe.shim {
                    programs.to_vec()
                } else {
                    Vec::new()
                },
                executable: (recipe.source == Source::Executable).then(|| executable.clone()),
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
        for &program in SdkProgram::VARIANTS {
            for package in program.image_packages() {
                assert!(probe.packages.contains(package), "{program}: {package}");
            }
        }
    }

    #[test]
    fn the_instance_image_has_what_every_preset_runs_on() {
        let instance = ImageKind::Instance.recipe();
        let stacks = [
            crate::topology::UserStack::Slirp4netns,
            crate::topology::UserStack::Pasta,
        ];
        for package in
            stacks
                .iter()
                .map(|s| s.package())
                .chain(["docker.io", "podman", "buildah", "uidmap"])
        {
            assert!(instance.packages.contains(&package), "{package}");
        }
        // Installed, containers/storage would mount overlays through /dev/fuse.
        assert!(!instance.packages.contains(&"fuse-overlayfs"));
    }

    #[test]
    fn tags_are_the_repository_and_a_hash_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("imds-shim");
        std::fs::write(&shim, b"a shim").unwrap();
        let go = dir.path().join("imdsh-go");
        std::fs::write(&go, b"a go program").unwrap();
        let programs = vec![(SdkProgram::Go, go.clone())];
        let harness = Executable {
            path: shim.clone(),
            libraries: Vec::new(),
        };
        let planned = plan_with(&shim, &programs, &harness).unwrap();
        let kinds: Vec<ImageKind> = planned.iter().map(|p| p.recipe.kind).collect();
        assert_eq!(kinds, ImageKind::VARIANTS);
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["base", "probe", "instance", "mock"]);
        for p in &planned {
            assert_eq!(
                p.tag,
                format!("imds-harness/{}:{}", p.recipe.kind, &p.hash[..TAG_HASH_LEN])
            );
            assert_eq!(p.shim.is_some(), p.recipe.kind == ImageKind::Probe);
            assert_eq!(!p.programs.is_empty(), p.recipe.kind == ImageKind::Probe);
            assert_eq!(p.executable.is_some(), p.recipe.kind == ImageKind::Mock);
        }
        std::fs::write(&go, b"another go program").unwrap();
        let rebuilt = plan_with(&shim, &programs, &harness).unwrap();
        for (before, after) in planned.iter().zip(&rebuilt) {
            assert_eq!(
                before.tag != after.tag,
                before.recipe.kind == ImageKind::Probe
            );
        }
        std::fs::write(&shim, b"another shim").unwrap();
        let again = plan_with(&shim, &programs, &harness).unwrap();
        for (before, after) in planned.iter().zip(&again) {
            let changed = before.tag != after.tag;
            // The mock's executable is the same file as the shim here.
            assert_eq!(
                changed,
                matches!(before.recipe.kind, ImageKind::Probe | ImageKind::Mock),
                "{}",
                before.tag
            );
        }
    }
}
