//! Support for the end-to-end tests in `tests/`: what a test needs from the machine,
//! where the project's binaries are, a plain HTTP client for checking refusals byte by
//! byte, and a clean AWS environment for the real clients.

pub mod at_once;
pub mod aws_env;
pub mod bins;
pub mod clients;
pub mod docker;
pub mod measure;
pub mod neighbour;
pub mod output;
pub mod panics;
pub mod raw_http;
pub mod relay_grant;
pub mod relay_process;
pub mod require;
pub mod runs;
pub mod shared_instances;
pub mod shim_site;
pub mod stats;
pub mod verdict;
pub mod wrk;
