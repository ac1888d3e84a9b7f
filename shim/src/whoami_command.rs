//! `imds-shim whoami`: who a build is. aws-config's default chain resolves credentials
//! here as any program on the AWS SDK for Rust would (the environment, the config files,
//! the container endpoint of a relay grant with its token or token file, IMDS), and STS
//! `GetCallerIdentity` says whose they are; printed as `aws sts get-caller-identity`
//! prints it.

use std::process::ExitCode;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_smithy_types::error::display::DisplayErrorContext;
use clap::Args;
use imds_shim::probe::clients::http_client;

/// `imds-shim whoami`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct WhoamiArgs {
    /// The STS endpoint (default: aws-config's, from AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL,
    /// the config file or the region)
    #[arg(long, value_name = "URL")]
    sts_endpoint: Option<String>,
}

/// Exit status when no identity was found (no credentials, or STS refused them).
const EXIT_NO_IDENTITY: u8 = 1;
/// An upper bound for the whole call, credentials and retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn whoami_command(args: &WhoamiArgs) -> anyhow::Result<ExitCode> {
    crate::runtime::runtime()?.block_on(async {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(url) = &args.sts_endpoint {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        match aws_sdk_sts::Client::new(&conf)
            .get_caller_identity()
            .send()
            .await
        {
            Ok(out) => {
                let identity = serde_json::json!({
                    "UserId": out.user_id(),
                    "Account": out.account(),
                    "Arn": out.arn(),
                });
                println!("{}", serde_json::to_string_pretty(&identity)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("imds-shim whoami: no identity: {}", DisplayErrorContext(&e));
                Ok(ExitCode::from(EXIT_NO_IDENTITY))
            }
        }
    })
}
