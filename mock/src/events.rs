//! What the services have been asked, for a sweep to tell which path a client took.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::imds_version::ImdsVersion;

/// The live counters, bumped by the services.
#[derive(Debug, Default)]
pub(crate) struct MockEvents {
    tokens_issued: AtomicU64,
    credentials_v1: AtomicU64,
    credentials_v2: AtomicU64,
    identity_v1: AtomicU64,
    identity_v2: AtomicU64,
    assume_role: AtomicU64,
    identity_role_session: AtomicU64,
}

/// A snapshot of what the services have been asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    /// IMDSv2 session tokens issued.
    pub tokens_issued: u64,
    /// Credentials served to IMDSv1 callers.
    pub credentials_v1: u64,
    /// Credentials served to IMDSv2 callers.
    pub credentials_v2: u64,
    /// `GetCallerIdentity` calls signed with IMDSv1 credentials.
    pub identity_v1: u64,
    /// `GetCallerIdentity` calls signed with IMDSv2 credentials.
    pub identity_v2: u64,
    /// `AssumeRole` calls answered with a session's credentials.
    pub assume_role: u64,
    /// `GetCallerIdentity` calls signed with an assumed role's session credentials.
    pub identity_role_session: u64,
}

impl MockEvents {
    pub(crate) fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn credentials_served(&self, version: ImdsVersion) {
        match version {
            ImdsVersion::V1 => &self.credentials_v1,
            ImdsVersion::V2 => &self.credentials_v2,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A `GetCallerIdentity` call signed with the instance role's credentials from
    /// `version` (`None`: with an assumed role's session's).
    pub(crate) fn caller_identity(&self, version: Option<ImdsVersion>) {
        match version {
            Some(ImdsVersion::V1) => &self.identity_v1,
            Some(ImdsVersion::V2) => &self.identity_v2,
            None => &self.identity_role_session,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn role_assumed(&self) {
        self.assume_role.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EventCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventCounts {
            tokens_issued: get(&self.tokens_issued),
            credentials_v1: get(&self.credentials_v1),
            credentials_v2: get(&self.credentials_v2),
            identity_v1: get(&self.identity_v1),
            identity_v2: get(&self.identity_v2),
            assume_role: get(&self.assume_role),
            identity_role_session: get(&self.identity_role_session),
        }
    }
}
