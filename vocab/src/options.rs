//! The instance metadata options besides the hop limit, as EC2 and the AWS CLI spell
//! them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in EC2's order.
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
    HttpTokens, "HttpTokens", {
        /// IMDSv2 only: a GET needs a session token.
        Required => "required",
        /// IMDSv1 too: a GET without a token is answered.
        Optional => "optional",
    }
);
wire_enum!(
    /// `HttpEndpoint`: with `disabled`, every request gets 403.
    HttpEndpoint, "HttpEndpoint", {
        /// IMDS answers.
        Enabled => "enabled",
        /// IMDS refuses everything.
        Disabled => "disabled",
    }
);
wire_enum!(
    /// `HttpProtocolIpv6` and `InstanceMetadataTags` take these values.
    Toggle, "value", {
        /// On.
        Enabled => "enabled",
        /// Off.
        Disabled => "disabled",
    }
);
wire_enum!(
    /// The metadata options' `State`: a change is `pending` until the instance obeys it.
    MetadataState, "State", {
        /// The last change is not in force yet.
        Pending => "pending",
        /// The options are in force.
        Applied => "applied",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_and_refuse_others() {
        for t in HttpTokens::ALL {
            assert_eq!(t.as_str().parse::<HttpTokens>().unwrap(), *t);
        }
        for s in MetadataState::ALL {
            assert_eq!(s.to_string().parse::<MetadataState>().unwrap(), *s);
        }
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
