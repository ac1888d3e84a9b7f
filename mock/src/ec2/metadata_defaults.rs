//! The account's instance metadata defaults for the region, as
//! `GetInstanceMetadataDefaults` and `ModifyInstanceMetadataDefaults` see them: what a
//! new instance gets when its launch template or request sets nothing.

use std::fmt::Write as _;

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

use crate::ec2::error::Ec2Error;
use crate::query::QueryParams;

pub(crate) const GET_INSTANCE_METADATA_DEFAULTS: &str = "GetInstanceMetadataDefaults";
pub(crate) const MODIFY_INSTANCE_METADATA_DEFAULTS: &str = "ModifyInstanceMetadataDefaults";

/// `no-preference` (and hop limit `-1`): the field is unset again.
const NO_PREFERENCE: &str = "no-preference";
const HOP_LIMIT_NO_PREFERENCE: &str = "-1";

/// The account-level defaults; `None` is "no preference".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataDefaults {
    /// `HttpTokens`.
    pub http_tokens: Option<HttpTokens>,
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: Option<HopLimit>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<HttpEndpoint>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<Toggle>,
}

impl MetadataDefaults {
    /// `<accountLevel>` with the fields that have a preference.
    pub(crate) fn xml(self) -> String {
        let mut out = String::from("<accountLevel>");
        let fields: [(&str, Option<String>); 4] = [
            ("httpTokens", self.http_tokens.map(|v| v.to_string())),
            (
                "httpPutResponseHopLimit",
                self.hop_limit.map(|v| v.to_string()),
            ),
            ("httpEndpoint", self.http_endpoint.map(|v| v.to_string())),
            (
                "instanceMetadataTags",
                self.instance_metadata_tags.map(|v| v.to_string()),
            ),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                let _ = write!(out, "<{name}>{v}</{name}>");
            }
        }
        out.push_str("</accountLevel>");
        out
    }

    /// Applies a `ModifyInstanceMetadataDefaults`; a field not given stays as it is. An
    /// invalid field changes nothing.
    pub(crate) fn modify(&mut self, params: &QueryParams) -> Result<(), Ec2Error> {
        /// Sets `slot` from the parameter `name` when given: `none` clears it.
        fn field<T: std::str::FromStr>(
            params: &QueryParams,
            name: &str,
            none: &str,
            valid: &str,
            slot: &mut Option<T>,
        ) -> Result<(), Ec2Error> {
            let Some(value) = params.get(name) else {
                return Ok(());
            };
            *slot = if value == none {
                None
            } else {
                Some(value.parse().map_err(|_| {
                    Ec2Error::bad_request(
                        "InvalidParameterValue",
                        format!("Invalid value '{value}' for {name}. Valid values: {valid}"),
                    )
                })?)
            };
            Ok(())
        }
        let mut next = *self;
        field(
            params,
            "HttpTokens",
            NO_PREFERENCE,
            "optional, required, no-preference",
            &mut next.http_tokens,
        )?;
        field(
            params,
            "HttpPutResponseHopLimit",
            HOP_LIMIT_NO_PREFERENCE,
            "-1 or integers from 1 to 64",
            &mut next.hop_limit,
        )?;
        field(
            params,
            "HttpEndpoint",
            NO_PREFERENCE,
            "enabled, disabled, no-preference",
            &mut next.http_endpoint,
        )?;
        field(
            params,
            "InstanceMetadataTags",
            NO_PREFERENCE,
            "enabled, disabled, no-preference",
            &mut next.instance_metadata_tags,
        )?;
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_read_back_and_reset() {
        let mut d = MetadataDefaults::default();
        assert_eq!(d.xml(), "<accountLevel></accountLevel>");
        d.modify(&QueryParams::from_body(
            "HttpTokens=required&HttpPutResponseHopLimit=3",
        ))
        .unwrap();
        assert_eq!(
            d.xml(),
            "<accountLevel><httpTokens>required</httpTokens>\
             <httpPutResponseHopLimit>3</httpPutResponseHopLimit></accountLevel>"
        );
        d.modify(&QueryParams::from_body("HttpPutResponseHopLimit=-1"))
            .unwrap();
        assert_eq!(d.hop_limit, None);
        assert_eq!(d.http_tokens, Some(HttpTokens::Required));
        for bad in [
            "HttpPutResponseHopLimit=0",
            "HttpPutResponseHopLimit=65",
            "HttpTokens=maybe",
        ] {
            assert_eq!(
                d.modify(&QueryParams::from_body(bad)).unwrap_err().code,
                "InvalidParameterValue"
            );
        }
    }
}
