//! The AWS clients this project knows: the harness measures each of them at a leaf,
//! and the shim's diagnosis recognises each one's "no credentials" message.

use serde::{Deserialize, Serialize};
use strum::{AsRefStr, Display, EnumString, IntoStaticStr, VariantArray};

/// An AWS client that asks for the instance role's credentials with its SDK's default
/// chain. [`VariantArray::VARIANTS`] lists them in the order of the harness table's
/// columns; the name (`sdk`, `cli`, `go`, `go-v1`, `ruby`, `boto3`) is the one the
/// command line, the reports and `fixtures/clients/` use.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    VariantArray,
    IntoStaticStr,
    AsRefStr,
    Display,
    EnumString,
)]
pub enum Client {
    /// The AWS SDK for Rust (aws-config), as `imds-shim probe` uses it: IMDSv2 only.
    #[serde(rename = "sdk")]
    #[strum(serialize = "sdk")]
    RustSdk,
    /// The AWS CLI (botocore), which falls back to IMDSv1 when the token PUT times out.
    #[serde(rename = "cli")]
    #[strum(serialize = "cli")]
    Cli,
    /// The AWS SDK for Go v2, as Earthly itself, Terraform and most container tooling use.
    #[serde(rename = "go")]
    #[strum(serialize = "go")]
    GoSdkV2,
    /// The AWS SDK for Go v1.
    #[serde(rename = "go-v1")]
    #[strum(serialize = "go-v1")]
    GoSdkV1,
    /// The AWS SDK for Ruby (aws-sdk-core).
    #[serde(rename = "ruby")]
    #[strum(serialize = "ruby")]
    RubySdk,
    /// boto3 (botocore) in a Python program.
    #[serde(rename = "boto3")]
    #[strum(serialize = "boto3")]
    Boto3,
}

impl Client {
    /// The short name: on the command line, in reports and in `fixtures/clients/`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The client in a sentence.
    pub fn description(self) -> &'static str {
        match self {
            Client::RustSdk => "the AWS SDK for Rust",
            Client::Cli => "the AWS CLI",
            Client::GoSdkV2 => "the AWS SDK for Go v2",
            Client::GoSdkV1 => "the AWS SDK for Go v1",
            Client::RubySdk => "the AWS SDK for Ruby",
            Client::Boto3 => "boto3 (the AWS SDK for Python)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_before_everywhere() {
        let names: Vec<&str> = Client::VARIANTS.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["sdk", "cli", "go", "go-v1", "ruby", "boto3"]);
        for client in Client::VARIANTS {
            assert_eq!(client.name().parse::<Client>(), Ok(*client));
            assert_eq!(client.to_string(), client.name());
            let json = serde_json::to_string(client).unwrap();
            assert_eq!(json, format!("\"{}\"", client.name()));
            assert_eq!(serde_json::from_str::<Client>(&json).unwrap(), *client);
        }
        assert!("ttl".parse::<Client>().is_err());
    }
}
