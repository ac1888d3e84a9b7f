//! The instance metadata options besides the hop limit, as EC2 and the AWS CLI spell
//! them.

use serde::{Deserialize, Serialize};
use strum::{AsRefStr, Display, EnumString, IntoStaticStr, VariantArray, VariantNames};

/// A metadata option value that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Not an integer in 1..=64.
    #[error(
        "hop limit {0:?} is not in 1..=64: HttpPutResponseHopLimit is an integer from 1 to 64"
    )]
    HopLimitOutOfRange(String),
    /// Not one of the field's values.
    #[error("invalid {field} {value:?}: expected one of {}", expected.join(", "))]
    InvalidValue {
        /// The EC2 field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The values EC2 accepts.
        expected: &'static [&'static str],
    },
}

impl OptionError {
    /// `value` is none of `T`'s names; `field` is the EC2 field it was given for.
    fn invalid<T: VariantNames>(field: &'static str, value: &str) -> Self {
        OptionError::InvalidValue {
            field,
            value: value.to_owned(),
            expected: T::VARIANTS,
        }
    }
}

/// `HttpTokens`: whether a GET without a session token (IMDSv1) is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(VariantArray, VariantNames, IntoStaticStr, AsRefStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = OptionError, parse_err_fn = invalid_http_tokens)]
pub enum HttpTokens {
    /// IMDSv2 only: a GET needs a session token.
    Required,
    /// IMDSv1 too: a GET without a token is answered.
    Optional,
}

fn invalid_http_tokens(value: &str) -> OptionError {
    OptionError::invalid::<HttpTokens>("HttpTokens", value)
}

/// `HttpEndpoint`: with `disabled`, every request gets 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(VariantArray, VariantNames, IntoStaticStr, AsRefStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = OptionError, parse_err_fn = invalid_http_endpoint)]
pub enum HttpEndpoint {
    /// IMDS answers.
    Enabled,
    /// IMDS refuses everything.
    Disabled,
}

fn invalid_http_endpoint(value: &str) -> OptionError {
    OptionError::invalid::<HttpEndpoint>("HttpEndpoint", value)
}

/// `HttpProtocolIpv6` and `InstanceMetadataTags` take these values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(VariantArray, VariantNames, IntoStaticStr, AsRefStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = OptionError, parse_err_fn = invalid_toggle)]
pub enum Toggle {
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

fn invalid_toggle(value: &str) -> OptionError {
    OptionError::invalid::<Toggle>("value", value)
}

/// The metadata options' `State`: a change is `pending` until the instance obeys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(VariantArray, VariantNames, IntoStaticStr, AsRefStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = OptionError, parse_err_fn = invalid_metadata_state)]
pub enum MetadataState {
    /// The last change is not in force yet.
    Pending,
    /// The options are in force.
    Applied,
}

fn invalid_metadata_state(value: &str) -> OptionError {
    OptionError::invalid::<MetadataState>("State", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_and_refuse_others() {
        fn round_trip<T>()
        where
            T: VariantArray
                + AsRef<str>
                + std::str::FromStr
                + Serialize
                + PartialEq
                + std::fmt::Debug,
            T::Err: std::fmt::Debug,
        {
            for value in T::VARIANTS {
                let name = value.as_ref();
                assert_eq!(name.parse::<T>().unwrap(), *value);
                // serde spells it as strum does.
                assert_eq!(serde_json::to_string(value).unwrap(), format!("\"{name}\""));
            }
        }
        round_trip::<HttpTokens>();
        round_trip::<HttpEndpoint>();
        round_trip::<Toggle>();
        round_trip::<MetadataState>();
        assert_eq!(
            <HttpTokens as VariantNames>::VARIANTS,
            ["required", "optional"]
        );
        assert_eq!(
            "on".parse::<Toggle>().unwrap_err().to_string(),
            "invalid value \"on\": expected one of enabled, disabled"
        );
        assert_eq!(
            "done".parse::<MetadataState>().unwrap_err().to_string(),
            "invalid State \"done\": expected one of pending, applied"
        );
        let err = "Required".parse::<HttpTokens>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid HttpTokens \"Required\": expected one of required, optional"
        );
        assert_eq!(
            serde_json::to_string(&HttpEndpoint::Disabled).unwrap(),
            "\"disabled\""
        );
    }
}
