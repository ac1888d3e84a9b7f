//! Who signed a request: the instance role (its credentials from IMDS) or a session
//! `AssumeRole` made, and what each may do.

use std::sync::Arc;

use crate::iam::policy::{Permissions, PolicyDocument};
use crate::iam::{Iam, Role};
use crate::imds_version::ImdsVersion;
use crate::instance::InstanceIdentity;

/// The principal a credential set stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// The instance role, as IMDS served it to a caller of that IMDS version.
    InstanceRole(ImdsVersion),
    /// A session of an assumed role.
    RoleSession(Arc<RoleSession>),
}

/// A session `AssumeRole` made, with what narrows it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RoleSession {
    pub(crate) role: Arc<Role>,
    pub(crate) session_name: String,
    /// The inline `Policy` and the `PolicyArns`' documents (empty: no narrowing).
    pub(crate) session_policies: Vec<PolicyDocument>,
    /// Session tags, as given.
    pub(crate) tags: Vec<(String, String)>,
    /// The ARN of the principal that called `AssumeRole`.
    pub(crate) assumed_by: String,
}

/// A session `AssumeRole` made, as a test reads it: who, for whom, until when, with
/// what. No secret: the access key id only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedSession {
    /// The role's name.
    pub role: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
    /// The ARN of the caller of `AssumeRole`.
    pub assumed_by: String,
    /// The session's access key id.
    pub access_key_id: String,
    /// When its credentials expire.
    pub expiration: std::time::SystemTime,
    /// How many session policies narrow it (the inline one and the `PolicyArns`).
    pub session_policies: usize,
    /// Its session tags, as given.
    pub tags: Vec<(String, String)>,
}

impl RoleSession {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, in the role's account.
    pub(crate) fn arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{}",
            self.role.account, self.role.name, self.session_name
        )
    }

    /// `AROA...:SESSION`.
    pub(crate) fn user_id(&self) -> String {
        format!("{}:{}", self.role.id, self.session_name)
    }
}

impl Principal {
    /// The ARN `GetCallerIdentity` reports and refusals name.
    pub(crate) fn arn(&self, identity: &InstanceIdentity) -> String {
        match self {
            Principal::InstanceRole(_) => identity.assumed_role_arn(),
            Principal::RoleSession(session) => session.arn(),
        }
    }

    /// The account the principal is in: the instance's, or the assumed role's.
    pub(crate) fn account<'a>(&'a self, identity: &'a InstanceIdentity) -> &'a str {
        match self {
            Principal::InstanceRole(_) => &identity.account,
            Principal::RoleSession(session) => &session.role.account,
        }
    }

    /// The `UserId` `GetCallerIdentity` reports.
    pub(crate) fn user_id(&self, identity: &InstanceIdentity) -> String {
        match self {
            Principal::InstanceRole(_) => identity.assumed_role_user_id(),
            Principal::RoleSession(session) => session.user_id(),
        }
    }

    /// Which IMDS path served the credentials, for the instance role's.
    pub(crate) fn imds_version(&self) -> Option<ImdsVersion> {
        match self {
            Principal::InstanceRole(version) => Some(*version),
            Principal::RoleSession(_) => None,
        }
    }

    /// The policies that bound this principal's rights.
    pub(crate) fn permissions<'a>(&'a self, iam: &'a Iam) -> Permissions<'a> {
        match self {
            Principal::InstanceRole(_) => Permissions {
                identity: iam.instance_role_policy.as_ref(),
                session: &[],
            },
            Principal::RoleSession(session) => Permissions {
                identity: session.role.policy.as_ref(),
                session: &session.session_policies,
            },
        }
    }
}
