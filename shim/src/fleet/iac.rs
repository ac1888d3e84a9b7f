//! `imds-shim enforce --print terraform|cloudformation`: the metadata options block to
//! paste into infrastructure code, so that instances launched from it get the need.

use strum::{Display, EnumString, VariantNames};

use super::Wanted;
use crate::baseline::Need;

/// The infrastructure-code dialects printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumString, VariantNames)]
#[strum(serialize_all = "lowercase", parse_err_ty = String, parse_err_fn = unknown_dialect)]
pub enum Dialect {
    /// Terraform's AWS provider: `metadata_options` of `aws_launch_template` and `aws_instance`.
    Terraform,
    /// CloudFormation: `MetadataOptions` of `AWS::EC2::LaunchTemplate`'s `LaunchTemplateData` or of `AWS::EC2::Instance`.
    CloudFormation,
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
    match dialect {
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
    use crate::baseline::NeedSource;
    use imds_vocab::{HopLimit, Preset};

    fn need() -> Need {
        Need {
            topology: Preset::EarthlyRun.into(),
            hop_limit: HopLimit::new(3).unwrap(),
            source: NeedSource::Embedded,
        }
    }

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
            "\"pulumi\": print terraform or cloudformation"
        );
    }
}
