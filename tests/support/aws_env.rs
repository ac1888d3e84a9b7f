//! An environment in which the real AWS clients can reach nothing but the mock.

use std::collections::HashMap;
use std::path::Path;

/// Debian's AWS CLI v2 (another `aws` on PATH, e.g. a pip-installed v1, is not used).
pub const AWS_CLI: &str = "/usr/bin/aws";

/// Variables that could lead a client to real credentials or real endpoints.
pub const CLEARED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
];

/// `(name, value)` pairs for a client whose only credential source is the IMDS at
/// `imds_endpoint`; `home` is an empty folder so no `~/.aws` is read. Host-side tests
/// only ever name a loopback IMDS: the machine's own 169.254.169.254 leads off it.
pub fn isolated(home: &Path, imds_endpoint: &str) -> Vec<(String, String)> {
    assert!(
        imds_endpoint.starts_with("http://127.") || imds_endpoint.starts_with("http://[::1]"),
        "host-side tests must point the IMDS endpoint at loopback, not {imds_endpoint}"
    );
    vec![
        ("HOME".into(), home.display().to_string()),
        (
            "AWS_CONFIG_FILE".into(),
            home.join("no-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            home.join("no-credentials").display().to_string(),
        ),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            imds_endpoint.into(),
        ),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ("AWS_PAGER".into(), String::new()),
        ("AWS_CLI_AUTO_PROMPT".into(), "off".into()),
    ]
}

/// `expr` with exactly this process's environment, less [`CLEARED`], plus `vars`.
/// The whole environment is given at once: duct applies nested `env` and `env_remove`
/// inner-last, so a removal could undo a setting made after it.
pub fn with_env(expr: duct::Expression, vars: &[(String, String)]) -> duct::Expression {
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| !CLEARED.contains(&k.as_str()))
        .collect();
    env.extend(vars.iter().cloned());
    expr.full_env(env)
}
