//! Who the mock instance is: ids, role, placement, and the documents IMDS derives from them.

use serde::Serialize;

/// The identity of the simulated EC2 instance and of its instance role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceIdentity {
    /// `i-` and 8 or 17 hex digits.
    pub instance_id: String,
    /// The account id, 12 digits.
    pub account: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The availability zone, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// The instance role's name.
    pub role: String,
    /// The role's unique id (`AROA...`), the first half of an assumed-role `UserId`.
    pub role_id: String,
    /// The instance profile's unique id (`AIPA...`).
    pub instance_profile_id: String,
    /// The AMI the instance runs.
    pub image_id: String,
    /// Its instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// Its private IPv4 address.
    pub private_ip: String,
}

impl Default for InstanceIdentity {
    fn default() -> Self {
        InstanceIdentity {
            instance_id: "i-0123456789abcdef0".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            role: "imds-harness-build-role".into(),
            role_id: "AROAIMDSHARNESSROLE01".into(),
            instance_profile_id: "AIPAIMDSHARNESSPROF01".into(),
            image_id: "ami-0abcdef1234567890".into(),
            instance_type: "m5.large".into(),
            private_ip: "10.0.0.12".into(),
        }
    }
}

impl InstanceIdentity {
    /// The identity STS reports for the role's credentials on this instance.
    pub(crate) fn assumed_role_arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{}",
            self.account, self.role, self.instance_id
        )
    }

    pub(crate) fn assumed_role_user_id(&self) -> String {
        format!("{}:{}", self.role_id, self.instance_id)
    }

    pub(crate) fn instance_profile_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:instance-profile/{}",
            self.account, self.role
        )
    }

    /// The private DNS name EC2 gives the instance (`hostname`, `local-hostname`).
    pub(crate) fn hostname(&self) -> String {
        format!("ip-{}.ec2.internal", self.private_ip.replace('.', "-"))
    }

    /// `/latest/dynamic/instance-identity/document`.
    pub(crate) fn identity_document(&self) -> serde_json::Value {
        serde_json::json!({
            "accountId": self.account,
            "architecture": "x86_64",
            "availabilityZone": self.availability_zone,
            "billingProducts": null,
            "devpayProductCodes": null,
            "marketplaceProductCodes": null,
            "imageId": self.image_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "kernelId": null,
            "pendingTime": "2026-01-01T00:00:00Z",
            "privateIp": self.private_ip,
            "ramdiskId": null,
            "region": self.region,
            "version": "2017-09-30",
        })
    }

    /// Whether `id` has the shape of an instance id (`i-` and 8 or 17 hex digits).
    pub fn is_well_formed_instance_id(id: &str) -> bool {
        id.strip_prefix("i-").is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumed_role_identity_has_the_real_shape() {
        let id = InstanceIdentity::default();
        assert_eq!(
            id.assumed_role_arn(),
            "arn:aws:sts::123456789012:assumed-role/imds-harness-build-role/i-0123456789abcdef0"
        );
        assert!(id.assumed_role_user_id().starts_with("AROA"));
        assert!(id.assumed_role_user_id().ends_with(":i-0123456789abcdef0"));
        assert!(InstanceIdentity::is_well_formed_instance_id(
            &id.instance_id
        ));
        assert!(!InstanceIdentity::is_well_formed_instance_id("i-xyz"));
    }
}
