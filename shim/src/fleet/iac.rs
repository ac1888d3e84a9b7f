//! `imds-shim enforce --print terraform|cloudformation|scp|config-rule`: the metadata
//! options block to paste into infrastructure code, so that instances launched from it
//! get the need; or the policy documents that hold the organization to it
//! ([`super::policy`]).

use strum::{Display, EnumString, VariantNames};

use super::{policy, Wanted};
use crate::baseline::Need;

/// The infrastructure-code dialects printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumString, VariantNames)]
#[strum(serialize_all = "lowercase", parse_err_ty = String, parse_err_fn = unknown_dialect)]
pub enum Dialect {
    /// Terraform's AWS provider: `metadata_options` of `aws_launch_template` and `aws_instance`.
    Terraform,
    /// CloudFormation: `MetadataOptions` of `AWS::EC2::LaunchTemplate`'s `LaunchTemplateData` or of `AWS::EC2::Instance`.
    CloudFormation,
    /// A service control policy's content: no launch or change above the need or with tokens optional.
    Scp,
    /// AWS Config's `PutConfigRule` input: `ec2-token-hop-limit-check` with `tokenHopLimit` at the need.
    #[strum(serialize = "config-rule")]
    ConfigRule,
}

fn unknown_dialect(name: &str) -> String {
    format!("{name:?}: print {}", Dialect::VARIANTS.join(" or "))
}

/// The block, with a comment saying where it goes and where the need came from.
pub fn render(dialect: Dialect, need: &Need) -> String {
    let w = Wanted::for_need(need.hop_limit);
    let why = format!(
        "{} needs hop limit {} (from {}); imds-shim enforce --print {dialect}",
        need.topology, need.hop_limit, need.source
    );
    let json = |value: serde_json::Value| {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).expect("JSON values serialize")
        )
    };
    match dialect {
        Dialect::Scp => json(policy::scp(need)),
        Dialect::ConfigRule => json(policy::config_rule(need)),
        Dialect::Terraform => format!(
            "# {why}\n\
             # in resource \"aws_launch_template\" (or \"aws_instance\"):\n\
             metadata_options {{\n  \
               http_endpoint               = \"{}\"\n  \
               http_tokens                 = \"{}\"\n  \
               http_put_response_hop_limit = {}\n\
             }}\n",
            w.http_endpoint, w.http_tokens, w.hop_limit
        ),
        Dialect::CloudFormation => format!(
            "# {why}\n\
             # under an AWS::EC2::LaunchTemplate's LaunchTemplateData, or in an AWS::EC2::Instance's Properties:\n\
             MetadataOptions:\n  \
               HttpEndpoint: {}\n  \
               HttpTokens: {}\n  \
               HttpPutResponseHopLimit: {}\n",
            w.http_endpoint, w.http_tokens, w.hop_limit
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::policy::tests::need;

    #[test]
    fn terraform() {
        insta::assert_snapshot!(render(Dialect::Terraform, &need()));
    }

    #[test]
    fn cloudformation() {
        insta::assert_snapshot!(render(Dialect::CloudFormation, &need()));
    }

    #[test]
    fn dialects_parse() {
        assert_eq!("terraform".parse::<Dialect>().unwrap(), Dialect::Terraform);
        assert_eq!(
            "cloudformation".parse::<Dialect>().unwrap(),
            Dialect::CloudFormation
        );
        assert_eq!(Dialect::CloudFormation.to_string(), "cloudformation");
        assert_eq!(
            "pulumi".parse::<Dialect>().unwrap_err(),
            "\"pulumi\": print terraform or cloudformation or scp or config-rule"
        );
        assert_eq!(
            "config-rule".parse::<Dialect>().unwrap(),
            Dialect::ConfigRule
        );
        assert_eq!("scp".parse::<Dialect>().unwrap(), Dialect::Scp);
    }
}
