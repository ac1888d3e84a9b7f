//! imds-shim: probe, check and enforce the EC2 instance metadata (IMDS) hop limit where builds run.
//!
//! - [`endpoint`]: where IMDS is, from the environment the AWS SDKs read.
//! - [`probe`]: whether a place gets the instance role's credentials, and why not.

pub mod endpoint;
pub mod probe;
