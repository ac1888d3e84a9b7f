//! The checks security teams run on metadata options, which know nothing of builds:
//! which ones a resource trips with its options today, which it would still trip with
//! the recommended fix (exactly the need, tokens required), and what makes those pass
//! (the rule's parameter, an exception) or the relay, which keeps the hop limit at 1.
//!
//! - AWS Config `ec2-token-hop-limit-check`: an instance whose
//!   `HttpPutResponseHopLimit` is above the rule's `tokenHopLimit` (default 1).
//! - AWS Config `autoscaling-launch-config-hop-limit`: an Auto Scaling launch
//!   configuration whose hop limit is above 1 (no parameter). Reported for launch
//!   templates, which replaced launch configurations and carry the same setting.
//! - Security Hub EC2.8, "EC2 instances should use IMDSv2": tokens optional.
//! - Checkov `CKV_AWS_341`: a Terraform `aws_instance` or `aws_launch_template` whose
//!   `http_put_response_hop_limit` is above 1.

use imds_vocab::{HopLimit, HttpTokens};
use serde::Serialize;
use strum::{Display, IntoStaticStr};

/// What kind of resource a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// A running instance.
    Instance,
    /// A launch template's default version.
    LaunchTemplate,
    /// An account's instance metadata defaults in a region.
    AccountDefaults,
}

/// A check of the metadata options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Display, IntoStaticStr)]
pub enum Check {
    /// AWS Config `ec2-token-hop-limit-check`.
    #[serde(rename = "ec2-token-hop-limit-check")]
    #[strum(serialize = "ec2-token-hop-limit-check")]
    Ec2TokenHopLimit,
    /// AWS Config `autoscaling-launch-config-hop-limit`.
    #[serde(rename = "autoscaling-launch-config-hop-limit")]
    #[strum(serialize = "autoscaling-launch-config-hop-limit")]
    AutoscalingLaunchConfigHopLimit,
    /// Security Hub EC2.8.
    #[serde(rename = "securityhub-EC2.8")]
    #[strum(serialize = "securityhub-EC2.8")]
    SecurityHubEc2Dot8,
    /// Checkov `CKV_AWS_341`.
    #[serde(rename = "CKV_AWS_341")]
    #[strum(serialize = "CKV_AWS_341")]
    CkvAws341,
}

/// The default `tokenHopLimit` of `ec2-token-hop-limit-check`, and the limit the
/// parameterless checks hold.
const ONE: u8 = 1;

impl Check {
    /// The checks that look at a resource of `kind`.
    fn applying_to(kind: ResourceKind) -> &'static [Check] {
        match kind {
            // Defaults become instances' options: the instance checks apply.
            ResourceKind::Instance | ResourceKind::AccountDefaults => &[
                Check::Ec2TokenHopLimit,
                Check::SecurityHubEc2Dot8,
                Check::CkvAws341,
            ],
            ResourceKind::LaunchTemplate => &[
                Check::AutoscalingLaunchConfigHopLimit,
                Check::Ec2TokenHopLimit,
                Check::CkvAws341,
            ],
        }
    }

    /// Whether options with this hop limit and tokens mode trip it (with its default
    /// parameter).
    fn trips(self, hop_limit: HopLimit, http_tokens: HttpTokens) -> bool {
        match self {
            Check::Ec2TokenHopLimit | Check::AutoscalingLaunchConfigHopLimit | Check::CkvAws341 => {
                hop_limit.get() > ONE
            }
            Check::SecurityHubEc2Dot8 => http_tokens == HttpTokens::Optional,
        }
    }

    /// What makes a resource with the fixed options, hop limit `need`, pass it.
    fn to_pass(self, need: HopLimit) -> String {
        match self {
            Check::Ec2TokenHopLimit => format!(
                "ec2-token-hop-limit-check passes with the rule's parameter tokenHopLimit={need}"
            ),
            Check::AutoscalingLaunchConfigHopLimit => {
                "autoscaling-launch-config-hop-limit has no parameter: an exception for this \
                 resource"
                    .to_owned()
            }
            Check::CkvAws341 => format!(
                "CKV_AWS_341: '#checkov:skip=CKV_AWS_341:builds here need hop limit {need}' in \
                 the resource"
            ),
            // The fix requires tokens: never tripped after it.
            Check::SecurityHubEc2Dot8 => String::new(),
        }
    }
}

/// The checks of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compliance {
    /// Tripped by the options the resource has (or gives) today.
    pub today: Vec<Check>,
    /// Tripped after the recommended fix (`None`: the need is unknown, so is the fix).
    pub after_fix: Option<Vec<Check>>,
    /// What makes the fixed resource pass each check it still trips.
    pub to_pass: Vec<String>,
    /// Whether the relay (`imds-shim relay`) would let builds keep hop limit 1 instead,
    /// which trips none of the hop limit checks.
    pub relay_keeps_one: bool,
}

impl Compliance {
    /// The checks of a resource of `kind` with these effective options and this need.
    pub fn of(
        kind: ResourceKind,
        hop_limit: HopLimit,
        http_tokens: HttpTokens,
        need: Option<HopLimit>,
    ) -> Self {
        let checks = Check::applying_to(kind);
        let today = checks
            .iter()
            .copied()
            .filter(|c| c.trips(hop_limit, http_tokens))
            .collect();
        let after_fix: Option<Vec<Check>> = need.map(|need| {
            checks
                .iter()
                .copied()
                .filter(|c| c.trips(need, HttpTokens::Required))
                .collect()
        });
        let to_pass = match (need, &after_fix) {
            (Some(need), Some(after)) => after.iter().map(|c| c.to_pass(need)).collect(),
            _ => Vec::new(),
        };
        Compliance {
            today,
            relay_keeps_one: need.is_some_and(|n| n.get() > ONE),
            after_fix,
            to_pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    #[test]
    fn checks_today_and_after_the_fix() {
        let c = Compliance::of(
            ResourceKind::Instance,
            hop(1),
            HttpTokens::Optional,
            Some(hop(3)),
        );
        assert_eq!(c.today, [Check::SecurityHubEc2Dot8]);
        assert_eq!(
            c.after_fix,
            Some(vec![Check::Ec2TokenHopLimit, Check::CkvAws341])
        );
        assert!(c.to_pass[0].contains("tokenHopLimit=3"), "{:?}", c.to_pass);
        assert!(c.relay_keeps_one);

        let c = Compliance::of(
            ResourceKind::LaunchTemplate,
            hop(2),
            HttpTokens::Required,
            Some(hop(1)),
        );
        assert_eq!(
            c.today,
            [
                Check::AutoscalingLaunchConfigHopLimit,
                Check::Ec2TokenHopLimit,
                Check::CkvAws341
            ]
        );
        assert_eq!(c.after_fix, Some(vec![]));
        assert!(c.to_pass.is_empty() && !c.relay_keeps_one);

        let c = Compliance::of(
            ResourceKind::AccountDefaults,
            hop(2),
            HttpTokens::Required,
            None,
        );
        assert_eq!(c.after_fix, None);
        assert!(!c.relay_keeps_one);
        assert_eq!(
            serde_json::to_value(Check::SecurityHubEc2Dot8).unwrap(),
            "securityhub-EC2.8"
        );
        assert_eq!(Check::CkvAws341.to_string(), "CKV_AWS_341");
    }
}
