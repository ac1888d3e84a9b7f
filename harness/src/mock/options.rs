//! The instance's metadata options: what `ModifyInstanceMetadataOptions` changes and
//! what the IMDS obeys on its next request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `HttpPutResponseHopLimit`: the IP TTL of the token response, 1..=64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct HopLimit(u8);

impl HopLimit {
    pub const MIN: HopLimit = HopLimit(1);
    pub const MAX: HopLimit = HopLimit(64);

    pub fn new(value: u32) -> Result<Self, OptionError> {
        if (1..=64).contains(&value) {
            Ok(HopLimit(value as u8))
        } else {
            Err(OptionError::HopLimitOutOfRange(value.to_string()))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Every hop limit from 1 to 64, in order.
    pub fn all() -> impl DoubleEndedIterator<Item = HopLimit> {
        (1..=64).map(HopLimit)
    }
}

impl TryFrom<u32> for HopLimit {
    type Error = OptionError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        HopLimit::new(value)
    }
}

impl From<HopLimit> for u32 {
    fn from(value: HopLimit) -> u32 {
        value.0.into()
    }
}

impl FromStr for HopLimit {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: u32 = s
            .trim()
            .parse()
            .map_err(|_| OptionError::HopLimitOutOfRange(s.to_string()))?;
        HopLimit::new(value)
    }
}

impl fmt::Display for HopLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the EC2 API and the AWS CLI spell it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = OptionError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(OptionError::InvalidValue {
                        field: $field,
                        value: other.to_string(),
                        expected: &[$($wire),+],
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `HttpTokens`: whether a GET without a session token (IMDSv1) is served.
    HttpTokens, "HttpTokens", { Required => "required", Optional => "optional" }
);
wire_enum!(
    /// `HttpEndpoint`: with `disabled`, every request gets 403.
    HttpEndpoint, "HttpEndpoint", { Enabled => "enabled", Disabled => "disabled" }
);
wire_enum!(
    /// `HttpProtocolIpv6` and `InstanceMetadataTags` take these values.
    Toggle, "value", { Enabled => "enabled", Disabled => "disabled" }
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("hop limit {0:?} is out of range: the hop limit is an integer from 1 to 64")]
    HopLimitOutOfRange(String),
    #[error("invalid {field} {value:?}: expected one of {}", expected.join(", "))]
    InvalidValue {
        field: &'static str,
        value: String,
        expected: &'static [&'static str],
    },
}

/// What `DescribeInstances` reports as `MetadataOptions` (minus `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    pub hop_limit: HopLimit,
    pub http_tokens: HttpTokens,
    pub http_endpoint: HttpEndpoint,
    pub http_protocol_ipv6: Toggle,
    pub instance_metadata_tags: Toggle,
}

impl Default for MetadataOptions {
    /// EC2's defaults for a new instance: hop limit 1, tokens required.
    fn default() -> Self {
        MetadataOptions {
            hop_limit: HopLimit::MIN,
            http_tokens: HttpTokens::Required,
            http_endpoint: HttpEndpoint::Enabled,
            http_protocol_ipv6: Toggle::Disabled,
            instance_metadata_tags: Toggle::Disabled,
        }
    }
}

/// A partial change, as `ModifyInstanceMetadataOptions` carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataOptionsChange {
    pub hop_limit: Option<HopLimit>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<HttpEndpoint>,
    pub http_protocol_ipv6: Option<Toggle>,
    pub instance_metadata_tags: Option<Toggle>,
}

impl MetadataOptions {
    pub fn apply(&mut self, change: &MetadataOptionsChange) {
        if let Some(v) = change.hop_limit {
            self.hop_limit = v;
        }
        if let Some(v) = change.http_tokens {
            self.http_tokens = v;
        }
        if let Some(v) = change.http_endpoint {
            self.http_endpoint = v;
        }
        if let Some(v) = change.http_protocol_ipv6 {
            self.http_protocol_ipv6 = v;
        }
        if let Some(v) = change.instance_metadata_tags {
            self.instance_metadata_tags = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_limit_range_is_one_to_sixty_four() {
        assert!(HopLimit::new(0).is_err());
        assert_eq!(HopLimit::new(1).unwrap().get(), 1);
        assert_eq!(HopLimit::new(64).unwrap().get(), 64);
        assert!(HopLimit::new(65).is_err());
        assert!("x".parse::<HopLimit>().is_err());
        assert_eq!(HopLimit::all().count(), 64);
    }

    #[test]
    fn wire_values_round_trip_and_refuse_others() {
        for t in HttpTokens::ALL {
            assert_eq!(t.as_str().parse::<HttpTokens>().unwrap(), *t);
        }
        let err = "Required".parse::<HttpTokens>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid HttpTokens \"Required\": expected one of required, optional"
        );
    }

    #[test]
    fn a_change_touches_only_what_it_names() {
        let mut options = MetadataOptions::default();
        options.apply(&MetadataOptionsChange {
            hop_limit: Some(HopLimit::new(3).unwrap()),
            ..Default::default()
        });
        assert_eq!(options.hop_limit.get(), 3);
        assert_eq!(options.http_tokens, HttpTokens::Required);
    }
}
