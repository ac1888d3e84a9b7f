//! STS: `GetCallerIdentity`.

pub(crate) mod service;
