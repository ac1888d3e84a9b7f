//! Images without a registry: each image is a Debian bookworm root file system made by
//! `mmdebstrap` (packages included at bootstrap, so no container ever needs a network),
//! or for the mock's image `imds-harness` alone, imported into the engine through its
//! API (`POST /images/create?fromSrc=-`). Nothing is ever pulled. The mock's image is
//! also tagged [`MOCK_IMAGE`] (`imds-harness/mock:latest`), the name other projects use.
//!
//! An image is tagged `imds-harness/<name>:<hash>`, where the hash covers its whole
//! recipe (suite, variant, packages, options, image config and, for the probe image,
//! the bytes of the `imds-shim` binary copied in). A tag that exists is up to date; a
//! changed recipe gives a new tag. Old tags are a bounded cache: after a build, the
//! images of the kinds built beyond the current tags and the [`KEEP`] most recent others
//! are removed, unless a container uses them.
//!
//! - `recipe.rs`: what goes into each image, and its hash;
//! - `plan.rs`: every image's recipe with its inputs resolved, and its tag ([`plan`]);
//! - `mmdebstrap.rs`: the Debian root file systems, made by `mmdebstrap` in a [`Workdir`];
//! - `executable.rs`: the mock's root file system, `imds-harness` and its shared objects;
//! - `import.rs`: importing them into the engine, or finding them there ([`ensure`]);
//! - `prune.rs`: the bounded cache ([`prune()`]);
//! - `tars.rs`: the tars that nested engines load ([`ImageSet`], [`TARS_DIR`]).

mod error;
mod executable;
mod import;
mod mmdebstrap;
mod plan;
mod prune;
mod recipe;
mod tars;

pub use error::ImageError;
pub use executable::Executable;
pub use import::{ensure, ImageOutcome, Status};
pub use mmdebstrap::Workdir;
pub use plan::{locate_harness, plan, Planned};
pub use prune::{prune, Fate, PruneReport, Pruned, KEEP};
pub use recipe::{ImageKind, Recipe, Source, HARNESS_IN_IMAGE, MOCK_IMAGE, SHIM_IN_IMAGE};
pub use tars::{lock_preparation, prune_tars, ImageSet, TarsReport, TARS_DIR};
