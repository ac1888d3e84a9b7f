//! `imds-shim enforce --print scp|config-rule`: the need as the documents policy tools
//! take, printed as JSON alone so that they can be handed on as they are:
//!
//! - `scp`: a service control policy's content (for `aws organizations create-policy
//!   --type SERVICE_CONTROL_POLICY --content file://scp.json`) that denies
//!   `ec2:RunInstances` and `ec2:ModifyInstanceMetadataOptions` asking for a hop limit
//!   above the need (`ec2:MetadataHttpPutResponseHopLimit`) or for tokens other than
//!   required (`ec2:MetadataHttpTokens`);
//! - `config-rule`: `PutConfigRule`'s input (for `aws configservice put-config-rule
//!   --cli-input-json file://rule.json`): the managed rule `ec2-token-hop-limit-check`
//!   with `tokenHopLimit` set to the need.

use serde_json::{json, Value};

use super::Wanted;
use crate::baseline::Need;

/// The actions that set an instance's metadata options.
const ACTIONS: [&str; 2] = ["ec2:RunInstances", "ec2:ModifyInstanceMetadataOptions"];
/// The instances they act on.
const INSTANCES: &str = "arn:aws:ec2:*:*:instance/*";

/// The service control policy's content.
pub fn scp(need: &Need) -> Value {
    let wanted = Wanted::for_need(need.hop_limit);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyHopLimitAboveTheBuildsNeed",
                "Effect": "Deny",
                "Action": ACTIONS,
                "Resource": INSTANCES,
                "Condition": {
                    "NumericGreaterThan": {
                        "ec2:MetadataHttpPutResponseHopLimit": wanted.hop_limit.to_string()
                    }
                }
            },
            {
                "Sid": "DenyTokensOptional",
                "Effect": "Deny",
                "Action": ACTIONS,
                "Resource": INSTANCES,
                "Condition": {
                    "StringNotEquals": {
                        "ec2:MetadataHttpTokens": wanted.http_tokens.to_string()
                    }
                }
            }
        ]
    })
}

/// `PutConfigRule`'s input: the managed rule with `tokenHopLimit` at the need.
pub fn config_rule(need: &Need) -> Value {
    let parameters = json!({ "tokenHopLimit": need.hop_limit.to_string() });
    json!({
        "ConfigRule": {
            "ConfigRuleName": "ec2-token-hop-limit-check",
            "Description": format!(
                "Instances' HttpPutResponseHopLimit is at most {}: what {} needs (from {}); \
                 imds-shim enforce --print config-rule",
                need.hop_limit, need.topology, need.source
            ),
            "Scope": { "ComplianceResourceTypes": ["AWS::EC2::Instance"] },
            "Source": {
                "Owner": "AWS",
                "SourceIdentifier": "EC2_TOKEN_HOP_LIMIT_CHECK"
            },
            "InputParameters": parameters.to_string()
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::baseline::NeedSource;
    use imds_vocab::{HopLimit, Preset};

    /// The need the policy and infrastructure-code tests render: earthly-run, hop limit 3.
    pub(crate) fn need() -> Need {
        Need {
            topology: Preset::EarthlyRun.into(),
            hop_limit: HopLimit::new(3).unwrap(),
            source: NeedSource::Embedded,
        }
    }

    #[test]
    fn the_scp_denies_above_the_need_and_tokens_optional() {
        let policy = scp(&need());
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(
            statements[0]["Condition"]["NumericGreaterThan"]["ec2:MetadataHttpPutResponseHopLimit"],
            "3"
        );
        assert_eq!(
            statements[1]["Condition"]["StringNotEquals"]["ec2:MetadataHttpTokens"],
            "required"
        );
        assert!(statements.iter().all(|s| s["Effect"] == "Deny"));
    }

    #[test]
    fn the_config_rule_carries_the_need_as_its_parameter() {
        let rule = config_rule(&need());
        let parameters: Value =
            serde_json::from_str(rule["ConfigRule"]["InputParameters"].as_str().unwrap()).unwrap();
        assert_eq!(parameters["tokenHopLimit"], "3");
    }
}
