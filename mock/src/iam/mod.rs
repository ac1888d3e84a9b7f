//! The account's IAM as the mock knows it: the roles `AssumeRole` may assume, the
//! managed policies sessions may name, and who signed a request with what rights.

pub(crate) mod policy;
pub(crate) mod principal;

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::iam::policy::PolicyDocument;

/// The account's IAM at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IamConfig {
    /// The instance role's identity policy (`None`: it may do everything).
    pub instance_role_policy: Option<PolicyDocument>,
    /// The roles of the account that `AssumeRole` may assume, by name, each with its
    /// identity policy (`None`: it may do everything). Any other role is `AccessDenied`.
    pub assumable_roles: BTreeMap<String, Option<PolicyDocument>>,
    /// Managed policies a session may name in `PolicyArns`, by ARN.
    pub managed_policies: BTreeMap<String, PolicyDocument>,
    /// How long assumed sessions live at most, whatever `DurationSeconds` asks (their
    /// `Expiration` says so): for tests of refreshing across expiry, which STS's
    /// 15-minute floor would make slow. `None`: as asked.
    pub session_lifetime: Option<Duration>,
}

/// A role of the account that `AssumeRole` may assume.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Role {
    /// The account the role is in.
    pub(crate) account: String,
    pub(crate) name: String,
    /// `AROA` and 17 characters, derived from the account and the name.
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) policy: Option<PolicyDocument>,
}

impl Role {
    /// The role `name` of `account`, with its identity policy.
    pub(crate) fn new(account: &str, name: &str, policy: Option<PolicyDocument>) -> Self {
        Role {
            account: account.to_owned(),
            id: role_id(account, name),
            arn: role_arn(account, name),
            name: name.to_owned(),
            policy,
        }
    }
}

/// The account's roles and managed policies while the mock serves.
#[derive(Debug)]
pub(crate) struct Iam {
    pub(crate) account: String,
    pub(crate) instance_role_policy: Option<PolicyDocument>,
    pub(crate) session_lifetime: Option<Duration>,
    roles: BTreeMap<String, std::sync::Arc<Role>>,
    managed_policies: BTreeMap<String, PolicyDocument>,
}

impl Iam {
    pub(crate) fn new(account: &str, config: IamConfig) -> Self {
        let roles = config
            .assumable_roles
            .into_iter()
            .map(|(name, policy)| {
                let role = Role::new(account, &name, policy);
                (name, std::sync::Arc::new(role))
            })
            .collect();
        Iam {
            account: account.to_string(),
            instance_role_policy: config.instance_role_policy,
            session_lifetime: config.session_lifetime,
            roles,
            managed_policies: config.managed_policies,
        }
    }

    /// The role an ARN names, if it is one of this account's assumable roles.
    pub(crate) fn role_by_arn(&self, arn: &str) -> Option<std::sync::Arc<Role>> {
        let name = arn
            .strip_prefix("arn:aws:iam::")?
            .strip_prefix(self.account.as_str())?
            .strip_prefix(":role/")?;
        self.roles.get(name).cloned()
    }

    pub(crate) fn managed_policy(&self, arn: &str) -> Option<&PolicyDocument> {
        self.managed_policies.get(arn)
    }
}

/// `arn:aws:iam::ACCOUNT:role/NAME`.
pub(crate) fn role_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// A stable unique id in the form IAM gives roles (`AROA` and 17 more characters).
fn role_id(account: &str, name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(format!("{account}/{name}").as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect();
    format!("AROA{tail}")
}

/// Whether `name` is a role name IAM takes: 1 to 64 of letters, digits and `+=,.@_-`.
pub(crate) fn is_valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Whether `arn` has the shape of a managed policy's ARN (`arn:aws:iam::ACCOUNT|aws:policy/...`).
pub(crate) fn is_valid_policy_arn(arn: &str) -> bool {
    arn.strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":policy/"))
        .is_some_and(|(owner, path)| {
            (owner == "aws" || (owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit())))
                && !path.is_empty()
                && !path.ends_with('/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_found_by_their_arn_in_this_account_only() {
        let mut config = IamConfig::default();
        config.assumable_roles.insert("deploy".into(), None);
        let iam = Iam::new("123456789012", config);
        let role = iam
            .role_by_arn("arn:aws:iam::123456789012:role/deploy")
            .unwrap();
        assert_eq!(role.arn, "arn:aws:iam::123456789012:role/deploy");
        assert!(role.id.starts_with("AROA") && role.id.len() == 21);
        assert_eq!(role.id, role_id("123456789012", "deploy"));
        assert_ne!(role.id, role_id("123456789012", "other"));
        assert!(iam
            .role_by_arn("arn:aws:iam::210987654321:role/deploy")
            .is_none());
        assert!(iam
            .role_by_arn("arn:aws:iam::123456789012:role/other")
            .is_none());
        assert!(iam
            .role_by_arn("arn:aws:iam::123456789012:role/x/deploy")
            .is_none());
    }

    #[test]
    fn names_and_policy_arns_are_checked() {
        assert!(is_valid_role_name("build-role_1+=,.@"));
        assert!(!is_valid_role_name(""));
        assert!(!is_valid_role_name("a/b"));
        assert!(!is_valid_role_name(&"a".repeat(65)));
        assert!(is_valid_policy_arn(
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        ));
        assert!(is_valid_policy_arn(
            "arn:aws:iam::123456789012:policy/team/builds"
        ));
        assert!(!is_valid_policy_arn("arn:aws:iam::12:policy/x"));
        assert!(!is_valid_policy_arn("arn:aws:iam::aws:role/x"));
        assert!(!is_valid_policy_arn("ReadOnlyAccess"));
    }
}
