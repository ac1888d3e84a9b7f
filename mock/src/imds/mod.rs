//! The instance metadata service and what only it serves: session tokens, the
//! instance's network interface, its tags and notices.

pub(crate) mod network;
pub(crate) mod notices;
pub(crate) mod service;
pub(crate) mod tokens;
