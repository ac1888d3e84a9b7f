//! The SDK clients' programs at a leaf (`go`, `go-v1`, `ruby`, `boto3`; see
//! [`super::programs`]): each takes the STS endpoint as its argument, since none of
//! these SDK versions reads `AWS_ENDPOINT_URL_STS`, and the IMDS endpoint from
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`, which all of them read.

use super::caller;
use super::env::ClientEnv;
use super::leaf::{Leaf, Program};
use super::outcome::{ProbeError, ProbeOutcome};
use super::programs::SdkProgram;

/// The programs' exit code when the SDK failed (their usage error is 2).
const SDK_FAILED: i32 = 1;

/// Runs the SDK client's `program` at `leaf`, STS at `sts_endpoint`: exit 0 with the
/// ARN is an identity, exit 1 the SDK's failure, any other code the program breaking.
pub fn run(
    leaf: &dyn Leaf,
    env: &ClientEnv,
    program: SdkProgram,
    sts_endpoint: &str,
) -> Result<ProbeOutcome, ProbeError> {
    caller::run(leaf, env, Program::Sdk(program), &[sts_endpoint], |code| {
        code == SDK_FAILED
    })
}
