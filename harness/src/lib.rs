//! `imds-harness`: reproduces the IMDSv2 hop-limit failure of nested builds on EC2.
//!
//! - [`topology`]: what a nesting chain looks like, as data (presets, `chain:N`,
//!   `chain:rrpr`; routed and proxied layers); shared with `imds-shim` through the
//!   `imds-vocab` crate.
//! - [`backend`]: how a topology is realised (network namespaces, containers).
//! - The mock AWS side (IMDS whose token response carries the hop limit as its IP TTL,
//!   STS and the EC2 metadata-options API) is the crate `imds-mock`.
//! - [`probe`]: what is measured at a leaf.
//! - [`lifecycle`]: a run's id, its registries and their shutdown, for every backend.
//! - [`model`]: what each client needs at a topology's leaf.
//! - [`sweep`]: the minimal-hop-limit search, whose [`cell`]s say what it found, and
//!   how that stands against the model.
//! - [`report`]: the cells as a table and JUnit XML; [`gate`]: the cells against the
//!   recorded baseline, as a decision.

#![warn(missing_docs)]

pub mod backend;
pub mod cell;
pub mod gate;
pub mod lifecycle;
pub mod model;
pub mod probe;
pub mod report;
pub mod sweep;
pub mod which;

pub use imds_vocab::topology;
