//! Fixes at the source and the view of the whole fleet: the hop limit build hosts get
//! from where they come from (launch templates, the account's metadata defaults,
//! infrastructure code), and an audit of every instance against what its builds need.
//!
//! - [`api`]: the EC2 client these use: the SDK's default credentials and region, the
//!   standard retry mode with enough attempts to ride out throttling, and a count of the
//!   calls, attempts and throttled answers.
//! - [`audit`]: `imds-shim audit`.
//! - [`launch_template`], [`defaults`], [`iac`], [`policy`]: `imds-shim enforce
//!   --launch-template`, `--account-defaults` and `--print` (infrastructure code, a
//!   service control policy, a Config rule).
//! - [`organization`]: `imds-shim audit --organization`, every account and region,
//!   each audited by [`scope_audit`], its records ([`org_report`]) written by
//!   [`org_writer`] as they come, with the checks each trips ([`compliance`]);
//!   [`org_enforce`]: `enforce --organization`, the fixes at the source everywhere.
//! - [`origin`]: where one instance came from (its Auto Scaling group, its launch
//!   template's version), for the per-instance `enforce`.

pub mod api;
pub mod audit;
pub mod compliance;
pub mod defaults;
pub mod iac;
pub mod launch_template;
pub mod org_enforce;
pub mod org_report;
pub mod org_writer;
pub mod organization;
pub mod origin;
pub mod policy;
pub mod scope_audit;

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};

/// The metadata options every fix at the source sets: the need, tokens required, the
/// endpoint enabled. Fields it does not name (IPv6, instance tags) are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// `HttpPutResponseHopLimit`: exactly the need.
    pub hop_limit: HopLimit,
    /// `HttpTokens`: required.
    pub http_tokens: HttpTokens,
    /// `HttpEndpoint`: enabled.
    pub http_endpoint: HttpEndpoint,
}

impl Wanted {
    /// The options for a need.
    pub fn for_need(hop_limit: HopLimit) -> Self {
        Wanted {
            hop_limit,
            http_tokens: HttpTokens::Required,
            http_endpoint: HttpEndpoint::Enabled,
        }
    }
}
