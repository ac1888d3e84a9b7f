//! The instance's metadata options: what `ModifyInstanceMetadataOptions` changes and
//! what the IMDS obeys on its next request.

use serde::{Deserialize, Serialize};

pub use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, OptionError, Toggle};

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
