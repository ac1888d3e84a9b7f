//! The instance's primary network interface, as `meta-data/mac` and
//! `meta-data/network/interfaces/macs/<mac>/...` serve it (the paths tools such as the
//! VPC CNI and cloud-init read). Every id is derived from the instance id, so a mock's
//! answers are the same in every run.

use sha2::{Digest, Sha256};

use crate::instance::InstanceIdentity;

/// The keys under `network/interfaces/macs/<mac>/`, in the order EC2 lists them.
const INTERFACE_KEYS: &[&str] = &[
    "device-number",
    "interface-id",
    "local-hostname",
    "local-ipv4s",
    "mac",
    "owner-id",
    "security-group-ids",
    "security-groups",
    "subnet-id",
    "subnet-ipv4-cidr-block",
    "vpc-id",
    "vpc-ipv4-cidr-block",
    "vpc-ipv4-cidr-blocks",
];

/// The primary (device 0) network interface of the simulated instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetworkInterface {
    pub(crate) mac: String,
    pub(crate) interface_id: String,
    pub(crate) subnet_id: String,
    pub(crate) vpc_id: String,
    pub(crate) security_group_id: String,
    pub(crate) owner_id: String,
    pub(crate) local_ipv4: String,
    pub(crate) local_hostname: String,
}

/// The subnet and VPC ranges every simulated interface sits in (EC2's default VPC shape
/// for a 10.0.0.x address).
const SUBNET_CIDR: &str = "10.0.0.0/24";
const VPC_CIDR: &str = "10.0.0.0/16";

impl NetworkInterface {
    /// The interface of `identity`, its ids derived from the instance id.
    pub(crate) fn of(identity: &InstanceIdentity) -> Self {
        let digest = hex::encode(Sha256::digest(identity.instance_id.as_bytes()));
        let id = |prefix: &str, salt: usize| format!("{prefix}-{}", &digest[salt..salt + 17]);
        // A locally administered unicast MAC (0x0e first octet), as EC2's are.
        let octets: Vec<&str> = (0..5).map(|i| &digest[i * 2..i * 2 + 2]).collect();
        NetworkInterface {
            mac: format!("0e:{}", octets.join(":")),
            interface_id: id("eni", 10),
            subnet_id: id("subnet", 20),
            vpc_id: id("vpc", 30),
            security_group_id: id("sg", 40),
            owner_id: identity.account.clone(),
            local_ipv4: identity.private_ip.clone(),
            local_hostname: identity.hostname(),
        }
    }

    /// The answer for `rest`, the path below `network/interfaces/macs/` (no trailing
    /// slash): the listing of MACs, of this interface's keys, or one key's value.
    pub(crate) fn answer(&self, rest: &str) -> Option<String> {
        if rest.is_empty() {
            return Some(format!("{}/", self.mac));
        }
        let key = rest.strip_prefix(self.mac.as_str())?;
        let value = match key.strip_prefix('/').unwrap_or(key) {
            "" => INTERFACE_KEYS.join("\n"),
            "device-number" => "0".into(),
            "interface-id" => self.interface_id.clone(),
            "local-hostname" => self.local_hostname.clone(),
            "local-ipv4s" => self.local_ipv4.clone(),
            "mac" => self.mac.clone(),
            "owner-id" => self.owner_id.clone(),
            "security-group-ids" => self.security_group_id.clone(),
            "security-groups" => "default".into(),
            "subnet-id" => self.subnet_id.clone(),
            "subnet-ipv4-cidr-block" => SUBNET_CIDR.into(),
            "vpc-id" => self.vpc_id.clone(),
            "vpc-ipv4-cidr-block" | "vpc-ipv4-cidr-blocks" => VPC_CIDR.into(),
            _ => return None,
        };
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_and_well_formed() {
        let identity = InstanceIdentity::default();
        let eni = NetworkInterface::of(&identity);
        assert_eq!(eni, NetworkInterface::of(&identity));
        assert!(
            eni.mac.starts_with("0e:") && eni.mac.len() == 17,
            "{}",
            eni.mac
        );
        assert_eq!(eni.interface_id.len(), "eni-".len() + 17);
        assert!(eni.vpc_id.starts_with("vpc-"));
        assert_eq!(eni.answer(""), Some(format!("{}/", eni.mac)));
        let keys = eni.answer(&eni.mac).unwrap();
        for key in keys.lines() {
            let value = eni.answer(&format!("{}/{key}", eni.mac));
            assert!(value.is_some_and(|v| !v.is_empty()), "{key}");
        }
        assert_eq!(eni.answer(&format!("{}/ipv6s", eni.mac)), None);
        assert_eq!(eni.answer("0e:00:00:00:00:00"), None);
    }
}
