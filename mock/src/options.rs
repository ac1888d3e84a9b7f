//! The instance's metadata options: what `ModifyInstanceMetadataOptions` changes and
//! what the IMDS obeys on its next request.

use serde::{Deserialize, Serialize};

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

/// What `DescribeInstances` reports as `MetadataOptions` (minus `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `HttpPutResponseHopLimit`: the IP TTL of the token response.
    pub hop_limit: HopLimit,
    /// `HttpTokens`: whether IMDSv1 is served.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`: whether IMDS answers at all.
    pub http_endpoint: HttpEndpoint,
    /// `HttpProtocolIpv6`: whether IMDS answers on its IPv6 address.
    pub http_protocol_ipv6: Toggle,
    /// `InstanceMetadataTags`: whether IMDS serves the instance's tags.
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
    /// The new `HttpPutResponseHopLimit`, if it changes.
    pub hop_limit: Option<HopLimit>,
    /// The new `HttpTokens`, if it changes.
    pub http_tokens: Option<HttpTokens>,
    /// The new `HttpEndpoint`, if it changes.
    pub http_endpoint: Option<HttpEndpoint>,
    /// The new `HttpProtocolIpv6`, if it changes.
    pub http_protocol_ipv6: Option<Toggle>,
    /// The new `InstanceMetadataTags`, if it changes.
    pub instance_metadata_tags: Option<Toggle>,
}

impl MetadataOptions {
    /// Sets what `change` names; the rest stays.
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
