//! Every image's recipe with its inputs resolved (the shim, the SDK clients' programs,
//! the mock's executable) and its tag.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strum::VariantArray;

use super::error::ImageError;
use super::executable::Executable;
use super::recipe::{ImageKind, Recipe, Source, HARNESS_IN_IMAGE, TAG_HASH_LEN};
use crate::probe::programs::{self, SdkProgram};

/// An image with its inputs resolved: what `imds-harness images` builds or finds.
#[derive(Debug, Clone)]
pub struct Planned {
    /// How the image is made.
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
