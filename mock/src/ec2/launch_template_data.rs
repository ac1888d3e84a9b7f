//! What a launch template version holds: `LaunchTemplateData`, the subset of launch
//! parameters build fleets set (`MetadataOptions` included), read from
//! `LaunchTemplateData.*` parameters and written as EC2's XML.

use std::fmt::Write as _;

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

use crate::ec2::error::Ec2Error;
use crate::query::{escape, QueryParams};

const DATA: &str = "LaunchTemplateData.";

/// A launch template's `MetadataOptions`: every field optional (unset: the account's
/// default, else the AMI's, else EC2's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateMetadataOptions {
    /// `HttpTokens`.
    pub http_tokens: Option<HttpTokens>,
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: Option<HopLimit>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<HttpEndpoint>,
    /// `HttpProtocolIpv6`.
    pub http_protocol_ipv6: Option<Toggle>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<Toggle>,
}

/// The launch parameters the mock keeps (a parameter not given is `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchTemplateData {
    /// `ImageId`.
    pub image_id: Option<String>,
    /// `InstanceType`.
    pub instance_type: Option<String>,
    /// `KeyName`.
    pub key_name: Option<String>,
    /// `SecurityGroupId.N`.
    pub security_group_ids: Option<Vec<String>>,
    /// `UserData`, base64 as EC2 takes it.
    pub user_data: Option<String>,
    /// `IamInstanceProfile.Name`.
    pub iam_instance_profile_name: Option<String>,
    /// `MetadataOptions`.
    pub metadata_options: Option<TemplateMetadataOptions>,
}

impl LaunchTemplateData {
    /// `self` with every parameter `newer` gives replaced, as `SourceVersion` works: a
    /// parameter is replaced whole (`MetadataOptions` too).
    pub(crate) fn overlaid_with(&self, newer: &LaunchTemplateData) -> LaunchTemplateData {
        fn pick<T: Clone>(new: Option<&T>, old: Option<&T>) -> Option<T> {
            new.or(old).cloned()
        }
        LaunchTemplateData {
            image_id: pick(newer.image_id.as_ref(), self.image_id.as_ref()),
            instance_type: pick(newer.instance_type.as_ref(), self.instance_type.as_ref()),
            key_name: pick(newer.key_name.as_ref(), self.key_name.as_ref()),
            security_group_ids: pick(
                newer.security_group_ids.as_ref(),
                self.security_group_ids.as_ref(),
            ),
            user_data: pick(newer.user_data.as_ref(), self.user_data.as_ref()),
            iam_instance_profile_name: pick(
                newer.iam_instance_profile_name.as_ref(),
                self.iam_instance_profile_name.as_ref(),
            ),
            metadata_options: pick(
                newer.metadata_options.as_ref(),
                self.metadata_options.as_ref(),
            ),
        }
    }

    /// From `LaunchTemplateData.*` parameters; a parameter the mock does not model is refused.
    pub(crate) fn from_params(params: &QueryParams) -> Result<Self, Ec2Error> {
        let mut data = LaunchTemplateData::default();
        let mut metadata = TemplateMetadataOptions::default();
        let mut has_metadata = false;
        let mut groups: Vec<(u32, String)> = Vec::new();
        for (key, value) in params.iter() {
            let Some(field) = key.strip_prefix(DATA) else {
                continue;
            };
            let invalid = |valid: &str| {
                Ec2Error::bad_request(
                    "InvalidParameterValue",
                    format!("Invalid value '{value}' for {key}. Valid values: {valid}"),
                )
            };
            match field {
                "ImageId" => data.image_id = Some(value.to_owned()),
                "InstanceType" => data.instance_type = Some(value.to_owned()),
                "KeyName" => data.key_name = Some(value.to_owned()),
                "UserData" => data.user_data = Some(value.to_owned()),
                "IamInstanceProfile.Name" => {
                    data.iam_instance_profile_name = Some(value.to_owned());
                }
                "MetadataOptions.HttpTokens" => {
                    metadata.http_tokens =
                        Some(value.parse().map_err(|_| invalid("optional, required"))?);
                }
                "MetadataOptions.HttpPutResponseHopLimit" => {
                    metadata.hop_limit = Some(
                        value
                            .parse()
                            .map_err(|_| invalid("integers from 1 to 64"))?,
                    );
                }
                "MetadataOptions.HttpEndpoint" => {
                    metadata.http_endpoint =
                        Some(value.parse().map_err(|_| invalid("enabled, disabled"))?);
                }
                "MetadataOptions.HttpProtocolIpv6" => {
                    metadata.http_protocol_ipv6 =
                        Some(value.parse().map_err(|_| invalid("enabled, disabled"))?);
                }
                "MetadataOptions.InstanceMetadataTags" => {
                    metadata.instance_metadata_tags =
                        Some(value.parse().map_err(|_| invalid("enabled, disabled"))?);
                }
                other => {
                    if let Some(n) = other
                        .strip_prefix("SecurityGroupId.")
                        .and_then(|n| n.parse().ok())
                    {
                        groups.push((n, value.to_owned()));
                        continue;
                    }
                    return Err(Ec2Error::bad_request(
                        "InvalidParameter",
                        format!("The mock EC2 does not model the launch template parameter {key}"),
                    ));
                }
            }
            has_metadata |= field.starts_with("MetadataOptions.");
        }
        if has_metadata {
            data.metadata_options = Some(metadata);
        }
        if !groups.is_empty() {
            groups.sort();
            data.security_group_ids = Some(groups.into_iter().map(|(_, g)| g).collect());
        }
        Ok(data)
    }

    pub(crate) fn xml(&self, out: &mut String) {
        out.push_str("<launchTemplateData>");
        let mut element = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                let _ = write!(out, "<{name}>{}</{name}>", escape(v));
            }
        };
        element("imageId", &self.image_id);
        element("instanceType", &self.instance_type);
        element("keyName", &self.key_name);
        element("userData", &self.user_data);
        if let Some(name) = &self.iam_instance_profile_name {
            let _ = write!(
                out,
                "<iamInstanceProfile><name>{}</name></iamInstanceProfile>",
                escape(name)
            );
        }
        if let Some(groups) = &self.security_group_ids {
            out.push_str("<securityGroupIdSet>");
            for g in groups {
                let _ = write!(out, "<item>{}</item>", escape(g));
            }
            out.push_str("</securityGroupIdSet>");
        }
        if let Some(m) = &self.metadata_options {
            out.push_str("<metadataOptions>");
            let fields: [(&str, Option<String>); 5] = [
                ("httpTokens", m.http_tokens.map(|v| v.to_string())),
                (
                    "httpPutResponseHopLimit",
                    m.hop_limit.map(|v| v.to_string()),
                ),
                ("httpEndpoint", m.http_endpoint.map(|v| v.to_string())),
                (
                    "httpProtocolIpv6",
                    m.http_protocol_ipv6.map(|v| v.to_string()),
                ),
                (
                    "instanceMetadataTags",
                    m.instance_metadata_tags.map(|v| v.to_string()),
                ),
            ];
            for (name, value) in fields {
                if let Some(v) = value {
                    let _ = write!(out, "<{name}>{v}</{name}>");
                }
            }
            out.push_str("</metadataOptions>");
        }
        out.push_str("</launchTemplateData>");
    }
}
