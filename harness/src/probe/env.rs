//! The environment a client runs in: no credentials, config files or endpoints but the
//! ones given, so the only credential source is the IMDS under test.

use std::collections::HashMap;
use std::path::Path;

/// Variables that could lead a client to other credentials or endpoints.
pub(crate) const CLEARED: &[&str] = &[
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
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_V1_DISABLED",
    "AWS_METADATA_SERVICE_TIMEOUT",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
];

/// An isolated client environment.
#[derive(Clone, Debug)]
pub struct ClientEnv {
    vars: Vec<(String, String)>,
}

impl ClientEnv {
    /// Credentials only from the IMDS at `imds_endpoint` (with its trailing `/`);
    /// `home` is an empty folder, so no `~/.aws` is read.
    pub fn new(home: &Path, imds_endpoint: &str) -> Self {
        let path = |name: &str| home.join(name).display().to_string();
        ClientEnv {
            vars: vec![
                ("HOME".into(), home.display().to_string()),
                ("AWS_CONFIG_FILE".into(), path("no-config")),
                ("AWS_SHARED_CREDENTIALS_FILE".into(), path("no-credentials")),
                (
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
                    imds_endpoint.into(),
                ),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
                ("AWS_PAGER".into(), String::new()),
                ("AWS_CLI_AUTO_PROMPT".into(), "off".into()),
            ],
        }
    }

    /// These variables with `name` set to `value`, replacing any value it had.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.into(), value.into()));
        self
    }

    pub(crate) fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// `expr` with this process's environment less [`CLEARED`], plus these variables,
    /// given whole: duct applies nested `env` and `env_remove` inner-last, so a removal
    /// could undo a setting made after it.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "takes the expression it rewraps, so callers pass `cmd(...)` inline; \
                  the backends' leaves and the tests call it that way"
    )]
    pub fn apply(&self, expr: duct::Expression) -> duct::Expression {
        expr.full_env(self.full())
    }

    /// The whole environment a client gets: [`base_env`] plus these variables.
    pub(crate) fn full(&self) -> HashMap<String, String> {
        let mut env = base_env();
        env.extend(self.vars.iter().cloned());
        env
    }
}

/// This process's environment less [`CLEARED`]: what every client's environment starts
/// from.
pub(crate) fn base_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| !CLEARED.contains(&k.as_str()))
        .collect()
}
