//! Grants: which builds may fetch the role's credentials from the relay.
//!
//! A grant has a public id (16 hex digits, shown by `relay list`, named in log lines) and two
//! secrets of 256 random bits each: one in the relative URI
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/imds-shim/credentials/<id>.<secret>`), one in the
//! authorization token (`AWS_CONTAINER_AUTHORIZATION_TOKEN=<id>.<secret>`). The relay keeps only
//! their SHA-256 digests, compared in constant time ([`subtle`]); the secrets are printed once,
//! by `relay grant`, and never logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::limit::{RateLimit, TokenBucket};
use super::metrics::Outcome;
use super::role::Served;
use super::scope::{AssumedRole, Scope};
use super::session::SessionCache;

/// Bytes of randomness in a grant id.
const ID_BYTES: usize = 8;
/// Bytes of randomness in each secret.
const SECRET_BYTES: usize = 32;
/// The longest label accepted.
pub const MAX_LABEL_CHARS: usize = 64;
/// The most live (neither expired nor revoked) grants a relay holds.
pub const MAX_GRANTS: usize = 10_000;
/// The most ended (expired or revoked) grants remembered besides; the oldest are forgotten first.
pub const MAX_ENDED: usize = 90_000;
/// How long an expired or revoked grant is remembered (so a late request is logged as such).
const REMEMBER_ENDED: Duration = Duration::from_hours(24);
/// The latest time a record may name: 9999-12-31T23:59:59Z, the last RFC 3339 can write.
pub const MAX_EPOCH_SECS: u64 = 253_402_300_799;
/// Compared with the presented secret when the id is unknown, so that an unknown id costs what
/// a known one does.
const DUMMY_DIGEST: [u8; 32] = [0; 32];
/// The longest grant.
pub const MAX_TTL: Duration = Duration::from_hours(168);

/// A secret string: shown only where it is handed over; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, to hand to the build.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(** redacted **)")
    }
}

/// Which of a grant's two secrets a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The capability in the relative URI's path.
    Path,
    /// The `Authorization` header of the full-URI form.
    Token,
}

/// What the relay keeps of a grant (and what the state file holds): no secret, only digests.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Public id, 16 hex digits.
    pub id: String,
    /// Free text to tell grants apart in `relay list` and the log.
    pub label: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    /// Seconds since the epoch, when revoked.
    pub revoked: Option<u64>,
    /// SHA-256 of the path secret, hex.
    path_digest: String,
    /// SHA-256 of the token secret, hex.
    token_digest: String,
    /// What it serves (records written before scopes existed: the instance role).
    #[serde(default = "Scope::legacy")]
    pub scope: Scope,
}

impl fmt::Debug for GrantRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantRecord")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("revoked", &self.revoked)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A grant's state at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum GrantState {
    /// Usable.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl GrantRecord {
    /// Its state at `now`.
    pub fn state(&self, now: SystemTime) -> GrantState {
        if self.revoked.is_some() {
            GrantState::Revoked
        } else if epoch_secs(now) >= self.expires {
            GrantState::Expired
        } else {
            GrantState::Active
        }
    }

    /// When it stops or stopped being usable.
    fn ended(&self) -> u64 {
        self.revoked.map_or(self.expires, |r| r.min(self.expires))
    }

    /// Whether it has ended at `now` (seconds since the epoch).
    fn has_ended(&self, now: u64) -> bool {
        self.revoked.is_some() || now >= self.expires
    }

    /// Checks a record read from outside (the state file): every field in its range, both
    /// digests 32 bytes of hex. The error says which field and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.len() != ID_BYTES * 2 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "id {:?} is not {} hex digits",
                self.id,
                ID_BYTES * 2
            ));
        }
        if !label_is_valid(&self.label) {
            return Err(format!(
                "label of grant {}: at most {MAX_LABEL_CHARS} printable characters",
                self.id
            ));
        }
        for (name, value) in [
            ("created", Some(self.created)),
            ("expires", Some(self.expires)),
            ("revoked", self.revoked),
        ] {
            if value.is_some_and(|v| v > MAX_EPOCH_SECS) {
                return Err(format!(
                    "{name} of grant {} is {}, after 9999-12-31 ({MAX_EPOCH_SECS})",
                    self.id,
                    value.unwrap_or_default()
                ));
            }
        }
        if self.expires <= self.created || self.expires - self.created > MAX_TTL.as_secs() {
            return Err(format!(
                "grant {}: expires {} is not within 7 days after created {}",
                self.id, self.expires, self.created
            ));
        }
        for (name, digest) in [
            ("path_digest", &self.path_digest),
            ("token_digest", &self.token_digest),
        ] {
            if decode_digest(digest).is_none() {
                return Err(format!(
                    "{name} of grant {} is not a SHA-256 digest (64 hex digits)",
                    self.id
                ));
            }
        }
        self.scope
            .validate(false)
            .map_err(|e| format!("scope of grant {}: {e}", self.id))
    }
}

fn label_is_valid(label: &str) -> bool {
    label.chars().count() <= MAX_LABEL_CHARS && !label.chars().any(char::is_control)
}

fn decode_digest(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A new grant as handed to the user: the record and the two secrets.
#[derive(Debug, Clone)]
pub struct IssuedGrant {
    /// The record the relay keeps.
    pub record: GrantRecord,
    /// `<id>.<path secret>`, the last part of the relative URI.
    pub path_capability: Secret,
    /// `<id>.<token secret>`, the authorization token.
    pub token: Secret,
}

/// Why a request gets no credentials. Names ids and labels, never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No capability, or not of the form `<id>.<secret>`.
    #[error("no grant presented or not a grant ({what})")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// No grant has this id.
    #[error("unknown grant {id}")]
    Unknown {
        /// The id presented.
        id: String,
    },
    /// The id exists but the secret is wrong: a guess.
    #[error("wrong secret for grant {id} ({label:?}): a guessed or corrupted capability")]
    WrongSecret {
        /// The grant's id.
        id: String,
        /// Its label.
        label: String,
    },
    /// The grant has expired.
    #[error("grant {id} ({label:?}) expired")]
    Expired {
        /// The grant's id.
        id: String,
        /// Its label.
        label: String,
    },
    /// The grant was revoked.
    #[error("grant {id} ({label:?}) was revoked")]
    Revoked {
        /// The grant's id.
        id: String,
        /// Its label.
        label: String,
    },
    /// Too many requests with this grant.
    #[error("grant {id} ({label:?}) is over its rate limit")]
    RateLimited {
        /// The grant's id.
        id: String,
        /// Its label.
        label: String,
    },
}

impl Refusal {
    /// Its kind, with the status it is answered with, for the log's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Malformed { .. } => "403 not a grant",
            Refusal::Unknown { .. } => "403 unknown grant",
            Refusal::WrongSecret { .. } => "403 wrong secret",
            Refusal::Expired { .. } => "403 expired",
            Refusal::Revoked { .. } => "403 revoked",
            Refusal::RateLimited { .. } => "429 rate limited",
        }
    }

    /// The outcome the metrics count it as.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::Malformed { .. } => Outcome::NotAGrant,
            Refusal::Unknown { .. } => Outcome::UnknownGrant,
            Refusal::WrongSecret { .. } => Outcome::WrongSecret,
            Refusal::Expired { .. } => Outcome::Expired,
            Refusal::Revoked { .. } => Outcome::Revoked,
            Refusal::RateLimited { .. } => Outcome::RateLimited,
        }
    }

    /// What the client is told: the state of its grant only when it proved it holds it.
    pub fn public_message(&self) -> &'static str {
        match self {
            Refusal::Malformed { .. } | Refusal::Unknown { .. } | Refusal::WrongSecret { .. } => {
                "no valid grant: ask for one with `imds-shim relay grant`"
            }
            Refusal::Expired { .. } => "this grant has expired",
            Refusal::Revoked { .. } => "this grant was revoked",
            Refusal::RateLimited { .. } => "too many requests with this grant",
        }
    }
}

/// A grant request that cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GrantError {
    /// The label is too long or has control characters.
    #[error("the label must be at most {MAX_LABEL_CHARS} printable characters")]
    BadLabel,
    /// The TTL is zero or too long.
    #[error("the TTL must be between 1 s and 7 days")]
    BadTtl,
    /// Too many grants.
    #[error("the relay holds {MAX_GRANTS} grants already; revoke some")]
    Full,
    /// The id chosen for it was taken meanwhile (64 random bits: practically never).
    #[error("the grant's id was taken meanwhile; ask again")]
    IdTaken,
    /// No such grant.
    #[error("no grant with id {0}")]
    NoSuchGrant(String),
    /// A `list` cursor that no page gave.
    #[error("{0:?} is not a cursor of `relay list`")]
    BadCursor(String),
}

/// A grant the relay knows: its record, its digests as bytes and its rate limiter.
#[derive(Debug)]
struct Entry {
    record: GrantRecord,
    path_digest: [u8; 32],
    token_digest: [u8; 32],
    bucket: TokenBucket,
    /// A scoped grant's role and session cache (dropped when it ends).
    session: Option<Session>,
}

/// A scoped grant's role and its cached session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The role and how its session is narrowed.
    pub role: Arc<AssumedRole>,
    /// The current session.
    pub cache: Arc<SessionCache>,
}

impl Entry {
    fn new(record: GrantRecord, rate: RateLimit, first: Option<Served>) -> Self {
        let session = match &record.scope {
            Scope::InstanceRole => None,
            Scope::Assumed(role) => Some(Session {
                role: Arc::from(role.clone()),
                cache: Arc::new(first.map(SessionCache::with).unwrap_or_default()),
            }),
        };
        // A digest that does not decode (records are validated before) matches no secret.
        Self {
            path_digest: decode_digest(&record.path_digest).unwrap_or(DUMMY_DIGEST),
            token_digest: decode_digest(&record.token_digest).unwrap_or(DUMMY_DIGEST),
            bucket: TokenBucket::new(rate, Instant::now()),
            record,
            session,
        }
    }

    fn digest(&self, presented: Presented) -> &[u8; 32] {
        match presented {
            Presented::Path => &self.path_digest,
            Presented::Token => &self.token_digest,
        }
    }
}

/// Every grant the relay knows.
#[derive(Debug)]
pub struct Grants {
    entries: HashMap<String, Entry>,
    rate: RateLimit,
}

impl Grants {
    /// No grants yet; each new one is limited to `rate`.
    pub fn new(rate: RateLimit) -> Self {
        Self {
            entries: HashMap::new(),
            rate,
        }
    }

    /// Grants read back from a state file (validated records).
    pub fn restore(records: Vec<GrantRecord>, rate: RateLimit) -> Self {
        let mut grants = Self::new(rate);
        for record in records {
            grants
                .entries
                .insert(record.id.clone(), Entry::new(record, rate, None));
        }
        grants
    }

    /// An id no grant has, for a grant about to be issued.
    pub fn fresh_id(&self) -> String {
        loop {
            let id = random_hex::<ID_BYTES>();
            if !self.entries.contains_key(&id) {
                return id;
            }
        }
    }

    /// A new grant of the instance role valid for `ttl` from `now`.
    pub fn issue(
        &mut self,
        ttl: Duration,
        label: &str,
        now: SystemTime,
    ) -> Result<IssuedGrant, GrantError> {
        let id = self.fresh_id();
        self.issue_scoped(
            NewGrant {
                id,
                ttl,
                label,
                scope: Scope::InstanceRole,
                first: None,
            },
            now,
        )
    }

    /// A new grant as `new` describes it, at `now`.
    pub fn issue_scoped(
        &mut self,
        new: NewGrant<'_>,
        now: SystemTime,
    ) -> Result<IssuedGrant, GrantError> {
        let NewGrant {
            id,
            ttl,
            label,
            scope,
            first,
        } = new;
        check_label_and_ttl(label, ttl)?;
        if self.active(now) >= MAX_GRANTS {
            return Err(GrantError::Full);
        }
        let secs = epoch_secs(now);
        self.prune(now);
        if self.entries.contains_key(&id) {
            return Err(GrantError::IdTaken);
        }
        let path_secret = random_hex::<SECRET_BYTES>();
        let token_secret = random_hex::<SECRET_BYTES>();
        let record = GrantRecord {
            id: id.clone(),
            label: label.to_owned(),
            created: secs,
            expires: secs.saturating_add(ttl.as_secs().max(1)),
            revoked: None,
            path_digest: digest(&path_secret),
            token_digest: digest(&token_secret),
            scope,
        };
        self.entries
            .insert(id.clone(), Entry::new(record.clone(), self.rate, first));
        Ok(IssuedGrant {
            record,
            path_capability: Secret(format!("{id}.{path_secret}")),
            token: Secret(format!("{id}.{token_secret}")),
        })
    }

    /// Forgets grant `id` entirely: one issued whose record could not be kept.
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Revokes grant `id` (again: no change). Also says whether this call revoked it.
    pub fn revoke(&mut self, id: &str, now: SystemTime) -> Result<(GrantRecord, bool), GrantError> {
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| GrantError::NoSuchGrant(id.to_owned()))?;
        let newly = entry.record.revoked.is_none();
        entry.record.revoked.get_or_insert(epoch_secs(now));
        // No new session for it: the cached one is dropped.
        if let Some(session) = &mut entry.session {
            session.cache = Arc::default();
        }
        Ok((entry.record.clone(), newly))
    }

    /// Undoes a revoke that could not be kept.
    pub fn unrevoke(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.record.revoked = None;
        }
    }

    /// When the current session of scoped grant `id` expires, if it has one.
    pub fn session_expires(&self, id: &str) -> Option<SystemTime> {
        self.entries
            .get(id)
            .and_then(|e| e.session.as_ref())
            .and_then(|s| s.cache.expires())
    }

    /// How many grants are usable at `now` (neither expired nor revoked).
    pub fn active(&self, now: SystemTime) -> usize {
        let secs = epoch_secs(now);
        self.entries
            .values()
            .filter(|e| !e.record.has_ended(secs))
            .count()
    }

    /// How many grants are remembered (live and ended).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every grant, oldest first.
    pub fn records(&self) -> Vec<GrantRecord> {
        let mut all: Vec<GrantRecord> = self.entries.values().map(|e| e.record.clone()).collect();
        all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        all
    }

    /// At most `limit` grants, oldest first, after the one `after` names (a cursor from an
    /// earlier page), and the cursor of the next page when there is one.
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<GrantRecord>, Option<String>), GrantError> {
        let after = match after {
            None => None,
            Some(cursor) => {
                let bad = || GrantError::BadCursor(cursor.chars().take(40).collect());
                let (created, id) = cursor.split_once(':').ok_or_else(bad)?;
                Some((created.parse::<u64>().map_err(|_| bad())?, id))
            }
        };
        let mut rest: Vec<&GrantRecord> = self
            .entries
            .values()
            .map(|e| &e.record)
            .filter(|r| after.is_none_or(|a| (r.created, r.id.as_str()) > a))
            .collect();
        let key = |r: &&GrantRecord| (r.created, r.id.clone());
        let more = rest.len() > limit;
        if more {
            rest.select_nth_unstable_by_key(limit, key);
            rest.truncate(limit);
        }
        rest.sort_unstable_by_key(key);
        let next = more
            .then(|| rest.last().map(|r| format!("{}:{}", r.created, r.id)))
            .flatten();
        Ok((rest.into_iter().cloned().collect(), next))
    }

    /// Forgets what [`remembered`] would not keep.
    fn prune(&mut self, now: SystemTime) {
        let secs = epoch_secs(now);
        self.entries.retain(|_, e| {
            !e.record.has_ended(secs)
                || secs < e.record.ended().saturating_add(REMEMBER_ENDED.as_secs())
        });
        let ended = self
            .entries
            .values()
            .filter(|e| e.record.has_ended(secs))
            .count();
        if ended > MAX_ENDED {
            let keep: std::collections::HashSet<String> =
                remembered(self.entries.values().map(|e| &e.record), now)
                    .map(|r| r.id.clone())
                    .collect();
            self.entries.retain(|id, _| keep.contains(id));
        }
    }

    /// Checks `capability` (`<id>.<secret>`, as presented in the way `presented` says) at
    /// `now`, and takes one request from the grant's rate limit. An unknown id costs what a
    /// known one with a wrong secret does: the secret is hashed and compared either way.
    pub fn authorize(
        &mut self,
        presented: Presented,
        capability: &str,
        now: SystemTime,
        instant: Instant,
    ) -> Result<Authorized, Refusal> {
        let (id, secret) = capability.split_once('.').ok_or(Refusal::Malformed {
            what: "no `<id>.<secret>`",
        })?;
        if id.len() != ID_BYTES * 2 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::Malformed {
                what: "not a grant id",
            });
        }
        let mut entry = self.entries.get_mut(id);
        let want = entry
            .as_ref()
            .map_or(&DUMMY_DIGEST, |e| e.digest(presented));
        let got: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let matches = bool::from(want.ct_eq(&got));
        let Some(entry) = entry.as_mut().filter(|_| matches) else {
            return Err(match entry {
                Some(e) => Refusal::WrongSecret {
                    id: e.record.id.clone(),
                    label: e.record.label.clone(),
                },
                None => Refusal::Unknown { id: id.to_owned() },
            });
        };
        let record = &entry.record;
        let named = || (record.id.clone(), record.label.clone());
        match record.state(now) {
            GrantState::Active => {}
            GrantState::Expired => {
                let (id, label) = named();
                return Err(Refusal::Expired { id, label });
            }
            GrantState::Revoked => {
                let (id, label) = named();
                return Err(Refusal::Revoked { id, label });
            }
        }
        if !entry.bucket.try_take(instant) {
            let (id, label) = named();
            return Err(Refusal::RateLimited { id, label });
        }
        Ok(Authorized {
            id: entry.record.id.clone(),
            label: entry.record.label.clone(),
            expires: epoch_time(entry.record.expires),
            session: entry.session.clone(),
        })
    }
}

/// A grant about to be issued.
#[derive(Debug)]
pub struct NewGrant<'a> {
    /// Its id, from [`Grants::fresh_id`].
    pub id: String,
    /// How long it lasts.
    pub ttl: Duration,
    /// Its label.
    pub label: &'a str,
    /// What it serves.
    pub scope: Scope,
    /// A scoped grant's first session, assumed before it was issued.
    pub first: Option<Served>,
}

/// A request's grant, authorized: what the answer needs.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The grant's id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// When it ends.
    pub expires: SystemTime,
    /// A scoped grant's session (`None`: the instance role).
    pub session: Option<Session>,
}

/// Checks a grant's label and TTL.
pub fn check_label_and_ttl(label: &str, ttl: Duration) -> Result<(), GrantError> {
    if !label_is_valid(label) {
        return Err(GrantError::BadLabel);
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(GrantError::BadTtl);
    }
    Ok(())
}

/// The records worth remembering at `now`: every live one, and the ended ones of the last
/// 24 hours, at most [`MAX_ENDED`] of them (the latest ended).
pub fn remembered<'a>(
    records: impl Iterator<Item = &'a GrantRecord>,
    now: SystemTime,
) -> impl Iterator<Item = &'a GrantRecord> {
    let now = epoch_secs(now);
    let (mut ended, live): (Vec<&GrantRecord>, Vec<&GrantRecord>) =
        records.partition(|r| r.has_ended(now));
    ended.retain(|r| now < r.ended().saturating_add(REMEMBER_ENDED.as_secs()));
    if ended.len() > MAX_ENDED {
        ended.sort_unstable_by_key(|r| std::cmp::Reverse((r.ended(), r.created)));
        ended.truncate(MAX_ENDED);
    }
    live.into_iter().chain(ended)
}

/// The time `secs` seconds after the epoch, saturating at [`MAX_EPOCH_SECS`].
pub fn epoch_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(MAX_EPOCH_SECS))
}

/// Seconds since the epoch (0 before it).
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // rand's thread RNG: a CSPRNG seeded from the operating system (getrandom).
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Parses a TTL such as `90s`, `30m`, `2h`, `1d` or `3600` (seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 30m, 2h, 1d)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ))
        }
    };
    let ttl = Duration::from_secs(n.saturating_mul(scale));
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!("{text:?}: the TTL must be between 1 s and 7 days"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(RateLimit {
            per_second: 1000.0,
            burst: 1000,
        })
    }

    fn path_secret(issued: &IssuedGrant) -> &str {
        issued.path_capability.expose()
    }

    #[test]
    fn a_grant_authorizes_its_own_secrets_only_and_only_in_their_place() {
        let mut g = grants();
        let now = SystemTime::now();
        let a = g.issue(Duration::from_mins(1), "build-a", now).unwrap();
        let b = g.issue(Duration::from_mins(1), "build-b", now).unwrap();
        let t = Instant::now();
        let ok = g
            .authorize(Presented::Path, path_secret(&a), now, t)
            .unwrap();
        assert_eq!(ok.label, "build-a");
        let ok = g
            .authorize(Presented::Token, b.token.expose(), now, t)
            .unwrap();
        assert_eq!(ok.label, "build-b");
        // The token is not a path capability, and a's id with b's secret is a guess.
        let swapped = g.authorize(Presented::Path, a.token.expose(), now, t);
        assert!(
            matches!(swapped, Err(Refusal::WrongSecret { .. })),
            "{swapped:?}"
        );
        let (_, b_secret) = path_secret(&b).split_once('.').unwrap();
        let mixed = format!("{}.{b_secret}", a.record.id);
        assert!(matches!(
            g.authorize(Presented::Path, &mixed, now, t),
            Err(Refusal::WrongSecret { .. })
        ));
    }

    #[test]
    fn unknown_malformed_expired_and_revoked_are_told_apart() {
        let mut g = grants();
        let now = SystemTime::now();
        let t = Instant::now();
        let a = g.issue(Duration::from_mins(1), "x", now).unwrap();
        let unknown = format!("{}.{}", "0".repeat(16), "1".repeat(64));
        assert!(matches!(
            g.authorize(Presented::Path, &unknown, now, t),
            Err(Refusal::Unknown { .. })
        ));
        for bad in ["", "nodot", "zz.zz", "/etc/passwd"] {
            assert!(matches!(
                g.authorize(Presented::Path, bad, now, t),
                Err(Refusal::Malformed { .. })
            ));
        }
        let later = now + Duration::from_secs(61);
        assert!(matches!(
            g.authorize(Presented::Path, path_secret(&a), later, t),
            Err(Refusal::Expired { .. })
        ));
        g.revoke(&a.record.id, now).unwrap();
        assert!(matches!(
            g.authorize(Presented::Path, path_secret(&a), now, t),
            Err(Refusal::Revoked { .. })
        ));
        assert_eq!(g.records()[0].state(now), GrantState::Revoked);
        assert!(matches!(
            g.revoke("0000", now),
            Err(GrantError::NoSuchGrant(_))
        ));
    }

    #[test]
    fn the_rate_limit_is_per_grant() {
        let mut g = Grants::new(RateLimit {
            per_second: 1.0,
            burst: 2,
        });
        let now = SystemTime::now();
        let t = Instant::now();
        let a = g.issue(Duration::from_mins(1), "a", now).unwrap();
        let b = g.issue(Duration::from_mins(1), "b", now).unwrap();
        assert!(g
            .authorize(Presented::Path, path_secret(&a), now, t)
            .is_ok());
        assert!(g
            .authorize(Presented::Path, path_secret(&a), now, t)
            .is_ok());
        assert!(matches!(
            g.authorize(Presented::Path, path_secret(&a), now, t),
            Err(Refusal::RateLimited { .. })
        ));
        assert!(g
            .authorize(Presented::Path, path_secret(&b), now, t)
            .is_ok());
        let t2 = t + Duration::from_secs(2);
        assert!(g
            .authorize(Presented::Path, path_secret(&a), now, t2)
            .is_ok());
    }

    #[test]
    fn secrets_are_random_long_and_never_in_debug_or_records() {
        let mut g = grants();
        let now = SystemTime::now();
        let a = g.issue(Duration::from_mins(1), "x", now).unwrap();
        let b = g.issue(Duration::from_mins(1), "x", now).unwrap();
        assert_ne!(a.path_capability, b.path_capability);
        let (_, secret) = path_secret(&a).split_once('.').unwrap();
        assert_eq!(secret.len(), 64);
        let shown = format!("{a:?} {:?}", g.records());
        let json = serde_json::to_string(&g.records()).unwrap();
        for s in [path_secret(&a), a.token.expose()] {
            let (_, secret) = s.split_once('.').unwrap();
            assert!(!shown.contains(secret), "{shown}");
            assert!(!json.contains(secret), "{json}");
        }
    }

    #[test]
    fn labels_and_ttls_are_checked() {
        let mut g = grants();
        let now = SystemTime::now();
        assert_eq!(
            g.issue(Duration::from_mins(1), "a\nb", now).unwrap_err(),
            GrantError::BadLabel
        );
        assert_eq!(
            g.issue(Duration::ZERO, "a", now).unwrap_err(),
            GrantError::BadTtl
        );
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_hours(2)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_hours(24)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0", "8d", "1w", "h", "-1"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ended_grants_do_not_count_against_the_cap() {
        let mut g = grants();
        let now = SystemTime::now();
        let ids: Vec<String> = (0..MAX_GRANTS)
            .map(|_| g.issue(Duration::from_mins(1), "x", now).unwrap().record.id)
            .collect();
        assert_eq!(
            g.issue(Duration::from_mins(1), "x", now).unwrap_err(),
            GrantError::Full
        );
        g.revoke(&ids[0], now).unwrap();
        let a = g.issue(Duration::from_mins(1), "x", now).unwrap();
        // The revoked one is still remembered, so a late request is told it was revoked.
        assert_eq!(g.len(), MAX_GRANTS + 1);
        // Expired ones free their place too.
        let later = now + Duration::from_secs(61);
        assert!(g.issue(Duration::from_mins(1), "x", later).is_ok());
        assert!(g
            .authorize(Presented::Token, a.token.expose(), later, Instant::now())
            .is_err());
    }

    #[test]
    fn pages_cover_every_grant_once_in_order() {
        let mut g = grants();
        let now = SystemTime::now();
        for i in 0..25u64 {
            g.issue(
                Duration::from_mins(1),
                "x",
                now + Duration::from_secs(i % 3),
            )
            .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = g.page(cursor.as_deref(), 7).unwrap();
            assert!(page.len() <= 7);
            seen.extend(page);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, g.records());
        assert!(matches!(
            g.page(Some("nope"), 7),
            Err(GrantError::BadCursor(_))
        ));
    }

    #[test]
    fn records_out_of_range_are_refused_and_times_saturate() {
        let mut g = grants();
        let now = SystemTime::now();
        let good = g.issue(Duration::from_mins(1), "x", now).unwrap().record;
        assert_eq!(good.validate(), Ok(()));
        let mut bad = good.clone();
        bad.expires = 1 << 63;
        assert!(bad.validate().unwrap_err().contains("expires"));
        let mut bad = good.clone();
        bad.path_digest = "00".into();
        assert!(bad.validate().unwrap_err().contains("path_digest"));
        assert_eq!(epoch_time(u64::MAX), epoch_time(MAX_EPOCH_SECS));
        // A record far in the future is listed without overflow.
        assert!(bad.state(epoch_time(u64::MAX)) == GrantState::Expired);
    }

    #[test]
    fn restored_grants_keep_working_with_the_same_secrets() {
        let mut g = grants();
        let now = SystemTime::now();
        let a = g.issue(Duration::from_mins(1), "x", now).unwrap();
        let json = serde_json::to_string(&g.records()).unwrap();
        let records: Vec<GrantRecord> = serde_json::from_str(&json).unwrap();
        let mut back = Grants::restore(records, g.rate);
        assert!(back
            .authorize(Presented::Token, a.token.expose(), now, Instant::now())
            .is_ok());
    }
}
