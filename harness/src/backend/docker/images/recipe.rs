//! What goes into each image, as data, and the tag its content hash gives it.

use sha2::{Digest, Sha256};
use strum::{Display, IntoStaticStr, VariantArray};

use crate::probe::programs::SdkProgram;

/// The Debian release every image is made from.
pub(super) const SUITE: &str = "bookworm";
/// The mirror `mmdebstrap` downloads from (bookworm main; `awscli` is 2.9.19 there).
pub(super) const MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when the way images are made changes in a way the recipe does not show.
const RECIPE_VERSION: u32 = 1;
/// Hex digits of the recipe hash in a tag.
pub(super) const TAG_HASH_LEN: usize = 16;
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
    /// One executable and the shared objects it loads
    /// ([`Executable`](super::Executable)).
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
                dpkg_filters: &[],
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
                dpkg_filters: PROBE_DPKG_FILTERS,
                shim: true,
            },
            ImageKind::Mock => Recipe {
                kind: self,
                source: Source::Executable,
                packages: &[],
                dpkg_filters: &[],
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
                // libnetwork's test programs, which docker.io ships and nothing runs.
                dpkg_filters: &[
                    "path-exclude=/usr/bin/dnet",
                    "path-exclude=/usr/sbin/ovrouter",
                ],
                shim: false,
            },
        }
    }
}

/// How one image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The image this recipe makes.
    pub kind: ImageKind,
    /// What its root file system is made from.
    pub source: Source,
    /// Debian packages installed at bootstrap, on top of `minbase`.
    pub(super) packages: &'static [&'static str],
    /// dpkg's path filters (`path-exclude=<glob>`, `path-include=<glob>`, in order: the
    /// last match wins) for files of those packages that nothing in the image uses.
    pub(super) dpkg_filters: &'static [&'static str],
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
    "--dpkgopt=path-exclude=/usr/share/locale/*",
];

/// The AWS service models the probe image's Python clients use: the AWS CLI (its own
/// botocore) and boto3 (Debian's botocore) call STS and EC2; SSO's two are read by the
/// credential chain for SSO profiles; the CLI renames four services in its command table
/// whatever it runs (S3, Config, CodeDeploy, OpsWorks CM) and fails without them. The
/// other ~330 services' models, and the CLI's help examples, are a third of the image,
/// and every nested engine loads its own copy of it. A model that is not there is a
/// service the CLI does not list.
const PROBE_DPKG_FILTERS: &[&str] = &[
    "path-exclude=/usr/lib/python3/dist-packages/botocore/data/*/*",
    "path-exclude=/usr/lib/python3/dist-packages/awscli/botocore/data/*/*",
    "path-include=/usr/lib/python3/dist-packages/botocore/data/sts/*",
    "path-include=/usr/lib/python3/dist-packages/botocore/data/ec2/*",
    "path-include=/usr/lib/python3/dist-packages/botocore/data/sso/*",
    "path-include=/usr/lib/python3/dist-packages/botocore/data/sso-oidc/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/sts/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/ec2/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/sso/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/sso-oidc/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/s3/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/config/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/codedeploy/*",
    "path-include=/usr/lib/python3/dist-packages/awscli/botocore/data/opsworkscm/*",
    "path-exclude=/usr/lib/python3/dist-packages/awscli/examples/*",
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
    pub(super) fn describe(
        &self,
        shim_sha256: Option<&str>,
        programs: &[(SdkProgram, String)],
    ) -> String {
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
        for filter in self.dpkg_filters {
            text.push_str(&format!("dpkg-filter={filter}\n"));
        }
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
    pub(super) fn hash(
        &self,
        shim_sha256: Option<&str>,
        programs: &[(SdkProgram, String)],
    ) -> String {
        hex::encode(Sha256::digest(
            self.describe(shim_sha256, programs).as_bytes(),
        ))
    }
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
        for package in stacks
            .iter()
            .map(crate::topology::UserStack::package)
            .chain(["docker.io", "podman", "buildah", "uidmap"])
        {
            assert!(instance.packages.contains(&package), "{package}");
        }
        // Installed, containers/storage would mount overlays through /dev/fuse.
        assert!(!instance.packages.contains(&"fuse-overlayfs"));
    }
}
