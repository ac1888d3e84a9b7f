//! An environment in which the real AWS clients on the host can reach nothing but a
//! mock on loopback.

use std::path::Path;

use imds_harness::probe::env::ClientEnv;

/// Debian's AWS CLI v2 (another `aws` on PATH, e.g. a pip-installed v1, is not used).
pub use imds_harness::probe::cli::DEBIAN_AWS_CLI as AWS_CLI;

/// A client environment whose only credential source is the IMDS at `imds_endpoint`.
/// Host-side tests only ever name a loopback IMDS: the machine's own 169.254.169.254
/// leads off it.
pub fn isolated(home: &Path, imds_endpoint: &str) -> ClientEnv {
    assert!(
        imds_endpoint.starts_with("http://127.") || imds_endpoint.starts_with("http://[::1]"),
        "host-side tests must point the IMDS endpoint at loopback, not {imds_endpoint}"
    );
    ClientEnv::new(home, imds_endpoint)
}
