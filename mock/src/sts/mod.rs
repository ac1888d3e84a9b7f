//! STS: `GetCallerIdentity` and `AssumeRole`.

pub(crate) mod assume_role;
pub(crate) mod error;
pub(crate) mod service;
