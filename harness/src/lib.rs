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
//! - [`sweep`], [`report`] and [`gate`]: the minimal-hop-limit search, its output,
//!   and the recorded baseline a CI gate compares against; [`model`]: the measured
//!   cells against what the model predicts.

pub mod backend;
pub mod gate;
pub mod lifecycle;
pub mod model;
pub mod probe;
pub mod report;
pub mod sweep;
pub mod which;

pub use imds_vocab::topology;
