//! The verdict `imds-shim audit` must give an instance, worked out here from the
//! instance's options and tags and the baseline file, not from the shim's code.

use std::collections::BTreeMap;

use imds_vocab::baseline::Baseline;
use imds_vocab::tags::TOPOLOGY as TOPOLOGY_TAG;
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Topology};

/// The need of an untagged instance: `--topology earthly-run`, the default.
pub const DEFAULT_TOPOLOGY: &str = "earthly-run";

/// The verdict's JSON name for these options, tags and baseline.
pub fn expected_verdict(
    hop_limit: HopLimit,
    tokens: HttpTokens,
    endpoint: HttpEndpoint,
    tags: &BTreeMap<String, String>,
    baseline: &Baseline,
) -> &'static str {
    let topology = tags
        .get(TOPOLOGY_TAG)
        .map_or(DEFAULT_TOPOLOGY, String::as_str);
    let Some(need) = Topology::parse(topology)
        .ok()
        .and_then(|t| baseline.get(&t))
    else {
        return "unknown-topology";
    };
    if endpoint == HttpEndpoint::Disabled {
        "endpoint-disabled"
    } else if hop_limit < need {
        "too-low"
    } else if tokens == HttpTokens::Optional {
        "tokens-optional"
    } else if hop_limit > need {
        "too-high"
    } else {
        "right"
    }
}
