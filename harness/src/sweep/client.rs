//! One run of one client at a leaf.

use std::time::Duration;

use imds_vocab::report::Steps;

use crate::backend::endpoints::STS_URL;
use crate::probe::env::ClientEnv;
use crate::probe::{cli, sdk, shim, Leaf, Probe, ProbeError, ProbeOutcome, Program};

/// Runs one client at `leaf`, STS at the leaf's [`STS_URL`]; `timeout` is the IMDS
/// timeout of the `sdk` and `ttl` probes (the other clients keep their own).
pub fn run_client(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    timeout: Duration,
    client: Probe,
) -> Result<ProbeOutcome, ProbeError> {
    run_client_at(leaf, env, timeout, client, STS_URL)
}

/// [`run_client`] with STS at `sts_url` (the IMDS is where `env` says): for a client of
/// a mock other than the site's own ([`Site::cell_mock`]).
pub fn run_client_at(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    timeout: Duration,
    client: Probe,
    sts_url: &str,
) -> Result<ProbeOutcome, ProbeError> {
    match client.program() {
        Program::Shim if client == Probe::Ttl => shim::run(leaf, env, Steps::Ttl, timeout),
        Program::Shim => shim::run(leaf, env, Steps::Sdk, timeout),
        Program::AwsCli => cli::run(leaf, env, sts_url),
        Program::Sdk(program) => sdk::run(leaf, env, program, sts_url),
    }
}
