//! The instance role's temporary credentials: issued by IMDS, rotated before they expire,
//! and remembered so that the mock STS and EC2 can verify requests signed with them.
//!
//! IMDSv1 and IMDSv2 callers get different credential sets, so a test can tell from an
//! STS call which path a client took. Sessions made by STS `AssumeRole` are kept here
//! too, each with its principal and what narrows it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::iam::principal::{Principal, RoleSession};
use crate::imds_version::ImdsVersion;
use crate::timestamp::iso8601;

/// One credential set. `Debug` redacts the secret and the session token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SessionCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: String,
    pub(crate) last_updated: SystemTime,
    pub(crate) expiration: SystemTime,
    /// Whom they stand for: the instance role or an assumed role's session.
    pub(crate) principal: Principal,
    /// Rendered once: IMDS serves it on every credentials GET.
    imds_json: Bytes,
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &iso8601(self.expiration))
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl SessionCredentials {
    fn issue(principal: Principal, now: SystemTime, lifetime: Duration) -> Self {
        let access_key_id = format!("ASIA{}", random_from(UPPER_ALNUM, 16));
        let secret_access_key = random_from(BASE64ISH, 40);
        let session_token = format!("IQoJb3JpZ2luX2VjE{}", random_from(BASE64ISH, 300));
        let expiration = now + lifetime;
        let imds_json = serde_json::json!({
            "Code": "Success",
            "LastUpdated": iso8601(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key,
            "Token": session_token,
            "Expiration": iso8601(expiration),
        })
        .to_string()
        .into();
        SessionCredentials {
            access_key_id,
            secret_access_key,
            session_token,
            last_updated: now,
            expiration,
            principal,
            imds_json,
        }
    }

    pub(crate) fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expiration
    }

    /// The JSON document of `/latest/meta-data/iam/security-credentials/<role>`.
    pub(crate) fn imds_json(&self) -> Bytes {
        self.imds_json.clone()
    }
}

/// Issues, rotates and remembers credential sets.
#[derive(Debug)]
pub(crate) struct CredentialStore {
    lifetime: Duration,
    inner: Mutex<Issued>,
}

#[derive(Debug, Default)]
struct Issued {
    current_v1: Option<Arc<SessionCredentials>>,
    current_v2: Option<Arc<SessionCredentials>>,
    by_access_key: HashMap<String, Arc<SessionCredentials>>,
    /// How many of `by_access_key` are assumed roles' sessions.
    sessions: usize,
}

impl Issued {
    /// Drops the sets expired longer than [`REMEMBER_EXPIRED`] ago.
    fn forget_expired(&mut self, now: SystemTime) {
        self.by_access_key
            .retain(|_, c| now < c.expiration + REMEMBER_EXPIRED);
        self.sessions = self
            .by_access_key
            .values()
            .filter(|c| matches!(c.principal, Principal::RoleSession(_)))
            .count();
    }
}

/// How many assumed roles' sessions the store keeps at most, so that no caller can grow
/// the mock's memory without bound.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// How long an expired set is still recognised (as expired rather than unknown).
const REMEMBER_EXPIRED: Duration = Duration::from_hours(1);

impl CredentialStore {
    pub(crate) fn new(lifetime: Duration) -> Self {
        CredentialStore {
            lifetime,
            inner: Mutex::new(Issued::default()),
        }
    }

    /// The set IMDS hands out now to a caller of `version`. A set is replaced once half
    /// its lifetime has passed, so a caller always gets at least half a lifetime.
    pub(crate) fn current(&self, version: ImdsVersion, now: SystemTime) -> Arc<SessionCredentials> {
        let mut issued = self.inner.lock().expect("credential store lock");
        let slot = match version {
            ImdsVersion::V1 => &issued.current_v1,
            ImdsVersion::V2 => &issued.current_v2,
        };
        if let Some(creds) = slot {
            if now < creds.last_updated + self.lifetime / 2 {
                return creds.clone();
            }
        }
        let fresh = Arc::new(SessionCredentials::issue(
            Principal::InstanceRole(version),
            now,
            self.lifetime,
        ));
        issued.forget_expired(now);
        issued
            .by_access_key
            .insert(fresh.access_key_id.clone(), fresh.clone());
        match version {
            ImdsVersion::V1 => issued.current_v1 = Some(fresh.clone()),
            ImdsVersion::V2 => issued.current_v2 = Some(fresh.clone()),
        }
        fresh
    }

    /// A new set for an assumed role's session, living `lifetime`; `None` when
    /// [`MAX_SESSIONS`] unexpired sessions are already kept (STS throttles long before).
    pub(crate) fn issue_session(
        &self,
        session: Arc<RoleSession>,
        now: SystemTime,
        lifetime: Duration,
    ) -> Option<Arc<SessionCredentials>> {
        let mut issued = self.inner.lock().expect("credential store lock");
        if issued.sessions >= MAX_SESSIONS {
            issued.forget_expired(now);
            if issued.sessions >= MAX_SESSIONS {
                return None;
            }
        }
        let fresh = Arc::new(SessionCredentials::issue(
            Principal::RoleSession(session),
            now,
            lifetime,
        ));
        issued.sessions += 1;
        issued
            .by_access_key
            .insert(fresh.access_key_id.clone(), fresh.clone());
        Some(fresh)
    }

    /// The assumed roles' sessions kept, oldest first.
    pub(crate) fn sessions(&self) -> Vec<Arc<SessionCredentials>> {
        let issued = self.inner.lock().expect("credential store lock");
        let mut sessions: Vec<_> = issued
            .by_access_key
            .values()
            .filter(|c| matches!(c.principal, Principal::RoleSession(_)))
            .cloned()
            .collect();
        sessions.sort_by(|a, b| {
            (a.last_updated, &a.access_key_id).cmp(&(b.last_updated, &b.access_key_id))
        });
        sessions
    }

    /// A set this store issued (expired or not), by its access key id.
    pub(crate) fn lookup(&self, access_key_id: &str) -> Option<Arc<SessionCredentials>> {
        self.inner
            .lock()
            .expect("credential store lock")
            .by_access_key
            .get(access_key_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_callers_get_different_sets() {
        let store = CredentialStore::new(Duration::from_hours(1));
        let now = SystemTime::now();
        let v1 = store.current(ImdsVersion::V1, now);
        let v2 = store.current(ImdsVersion::V2, now);
        assert_ne!(v1.access_key_id, v2.access_key_id);
        assert_eq!(store.current(ImdsVersion::V2, now), v2);
        assert_eq!(
            store.lookup(&v1.access_key_id).unwrap().principal,
            Principal::InstanceRole(ImdsVersion::V1)
        );
        assert!(v2.access_key_id.starts_with("ASIA") && v2.access_key_id.len() == 20);
    }

    #[test]
    fn sets_rotate_after_half_their_lifetime_and_old_ones_expire() {
        let store = CredentialStore::new(Duration::from_secs(10));
        let t0 = SystemTime::now();
        let first = store.current(ImdsVersion::V2, t0);
        let second = store.current(ImdsVersion::V2, t0 + Duration::from_secs(6));
        assert_ne!(first.access_key_id, second.access_key_id);
        assert!(store.lookup(&first.access_key_id).is_some());
        assert!(first.is_expired(t0 + Duration::from_secs(10)));
        assert!(!second.is_expired(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn assumed_sessions_are_kept_up_to_a_bound() {
        use crate::iam::{Iam, IamConfig};
        let mut config = IamConfig::default();
        config.assumable_roles.insert("deploy".into(), None);
        let iam = Iam::new("123456789012", config);
        let session = Arc::new(RoleSession {
            role: iam
                .role_by_arn("arn:aws:iam::123456789012:role/deploy")
                .unwrap(),
            session_name: "job".into(),
            session_policies: Vec::new(),
            tags: Vec::new(),
            assumed_by: "arn:aws:sts::123456789012:assumed-role/r/i-0123456789abcdef0".into(),
        });
        let store = CredentialStore::new(Duration::from_hours(1));
        let t0 = SystemTime::now();
        let life = Duration::from_mins(15);
        let first = store.issue_session(session.clone(), t0, life).unwrap();
        for _ in 1..MAX_SESSIONS {
            store.issue_session(session.clone(), t0, life).unwrap();
        }
        assert!(store.issue_session(session.clone(), t0, life).is_none());
        // The instance role's sets are never crowded out.
        assert!(store
            .lookup(&store.current(ImdsVersion::V2, t0).access_key_id)
            .is_some());
        assert!(store.lookup(&first.access_key_id).is_some());
        // Once the old sessions are past remembering, new ones fit again.
        let later = t0 + life + REMEMBER_EXPIRED;
        assert!(store.issue_session(session, later, life).is_some());
        assert!(store.lookup(&first.access_key_id).is_none());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let store = CredentialStore::new(Duration::from_secs(10));
        let creds = store.current(ImdsVersion::V2, SystemTime::now());
        let shown = format!("{creds:?}");
        assert!(!shown.contains(&creds.secret_access_key));
        assert!(!shown.contains(&creds.session_token));
        assert!(shown.contains(&creds.access_key_id));
    }

    #[test]
    fn imds_json_has_the_documented_fields() {
        let store = CredentialStore::new(Duration::from_secs(10));
        let creds = store.current(ImdsVersion::V2, SystemTime::now());
        let doc: serde_json::Value = serde_json::from_slice(&creds.imds_json()).unwrap();
        let mut keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "AccessKeyId",
                "Code",
                "Expiration",
                "LastUpdated",
                "SecretAccessKey",
                "Token",
                "Type"
            ]
        );
        assert_eq!(doc["Code"], "Success");
        assert_eq!(doc["Type"], "AWS-HMAC");
    }
}
