//! The vocabulary `imds-shim` and `imds-harness` share, so that a concept has one type
//! and one spelling wherever it crosses a module or a crate:
//!
//! - [`Client`]: the AWS clients the harness measures and the shim's diagnosis names.
//! - [`HopLimit`]: `HttpPutResponseHopLimit`, the one place where 1..=64 is checked.
//! - [`options`]: the other metadata options as EC2 spells them (`HttpTokens`,
//!   `HttpEndpoint`, the metadata options' `State`).
//! - [`topology`]: where a build runs: the presets (each with the real system it
//!   stands for) and synthetic `chain:N`, as data.
//! - [`baseline`]: the recorded need of every topology (`fixtures/hop-limits.toml`),
//!   one reader and one writer.
//! - [`report`]: the probe's JSON report, written by `imds-shim probe --json` and read
//!   by the harness.
//! - [`fix`]: the `aws ec2 modify-instance-metadata-options` command that sets a need.
//! - [`tags`]: the instance tags that name an instance's origin and its builds' topology.
//!
//! Only serde, strum, toml and thiserror: the shim links this and is copied into build images.

#![warn(missing_docs)]

pub mod baseline;
mod client;
pub mod fix;
mod hop_limit;
pub mod options;
pub mod report;
pub mod tags;
pub mod topology;

pub use client::Client;
pub use hop_limit::HopLimit;
pub use options::{HttpEndpoint, HttpTokens, MetadataState, OptionError, Toggle};
pub use topology::{Preset, Topology};
