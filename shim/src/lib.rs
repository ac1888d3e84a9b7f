//! imds-shim: probe, check and enforce the EC2 instance metadata (IMDS) hop limit where builds run.
//!
//! - [`endpoint`]: where IMDS is, from the environment the AWS SDKs read.
//! - [`probe`]: whether a place gets the instance role's credentials, and why not.
//! - [`baseline`]: the hop limit a topology needs, from the recorded baseline or `--need`.
//! - [`instance`]: the instance's metadata options through the EC2 API.
//! - [`check`], [`enforce`], [`run`], [`relay`], [`fence`]: the subcommands of the same names.
//! - [`config`]: the configuration file, each subcommand's options (`--config`).
//! - [`manual`]: the manual pages and shell completions the package ships.
//! - [`fleet`]: `audit`, and `enforce` at the source (launch templates, account defaults,
//!   infrastructure code).

#![warn(missing_docs)]

pub mod baseline;
pub mod check;
pub mod config;
pub mod endpoint;
pub mod enforce;
pub mod fence;
pub mod fleet;
pub mod instance;
pub mod manual;
pub mod probe;
pub mod relay;
pub mod run;
