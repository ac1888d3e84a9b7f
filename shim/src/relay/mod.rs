//! `imds-shim relay`: the container credentials endpoint for builds, on the EC2 host.
//!
//! Every AWS SDK and the AWS CLI read `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (a GET to
//! `http://169.254.170.2<uri>`) or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`. The relay answers there, on the host, with the instance
//! role's credentials, which it fetches from IMDS at depth 0: a build any number of routing hops
//! deep gets them while the instance keeps hop limit 1, and only a build that was given a grant.
//!
//! - [`address`]: owning 169.254.170.2 on a dummy link of the relay's own.
//! - [`admission`]: which connections are kept (caps per client and in all).
//! - [`privilege`]: the capabilities kept after start.
//! - [`grants`]: grants, their capabilities and the checks of a request.
//! - [`scope`]: what a grant serves (the instance role, or a role assumed for it).
//! - [`session`]: a scoped grant's session, assumed with STS and cached per grant.
//! - [`limit`]: the per-grant rate limit.
//! - [`role`]: the role's credentials from IMDS, refreshed before expiry.
//! - [`server`]: the HTTP endpoint.
//! - [`control`]: `relay grant`, `revoke` and `list`, over a unix socket (mode 0600).
//! - [`state`]: the grants kept across restarts (`--state FILE`).
//! - [`token_file`]: `relay grant --token-file`, the token in a file of its owner's.
//! - [`writer`]: the thread that makes changes to the state file durable.
//! - [`logging`]: the log on stderr, and refusals summarised per client.
//! - [`metrics`]: what `--metrics` serves to Prometheus.

pub mod address;
pub mod admission;
pub mod control;
pub mod grants;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod privilege;
pub mod role;
pub mod scope;
pub mod server;
pub mod session;
pub mod state;
pub mod token_file;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};

use grants::{GrantError, GrantRecord, Grants, IssuedGrant, NewGrant};
use role::RoleCache;
use scope::{Scope, ScopeError};
use session::{AssumeError, Assumer};
use state::Change;
use writer::{StateWriter, Undo};

/// Where the relay listens by default: the ECS container credentials address.
pub const DEFAULT_LISTEN: &str = "169.254.170.2:80";
/// The dummy link that holds the address (the project's `imdsh-` prefix).
pub const DEFAULT_LINK: &str = "imdsh-relay0";
/// The control socket.
pub const DEFAULT_CONTROL: &str = "/run/imds-shim/relay.sock";
/// The path of the full-URI form; the relative form appends `/<id>.<secret>`.
pub const CREDENTIALS_PATH: &str = "/imds-shim/credentials";

/// The variables a build gets.
pub const ENV_RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// The full URI variable.
pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The authorization token variable.
pub const ENV_AUTH_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The variable naming a file that holds the authorization token (`--token-file`).
pub const ENV_AUTH_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

pub use logging::log;

/// What the relay's tasks share.
#[derive(Debug)]
pub struct Relay {
    /// The addresses served (`--listen`, repeatable), the first the one printed in the full
    /// URI.
    pub listen: Vec<SocketAddr>,
    /// The grants (a lock no panic can poison: parking_lot's).
    grants: Arc<Mutex<Grants>>,
    /// The role's credentials.
    pub role: Arc<RoleCache>,
    /// Where scoped grants' sessions come from.
    pub assumer: Arc<Assumer>,
    /// Where changes are made durable, with `--state`.
    writer: Option<StateWriter>,
    /// The refusals of the current log window.
    pub refusals: Arc<logging::Refusals>,
    /// The counts `--metrics` serves (kept whether served or not).
    pub metrics: Arc<metrics::Metrics>,
}

impl Relay {
    /// A relay serving `listen` with `grants` and `role`, keeping grants in `state` (the file
    /// and the records it holds) when given.
    pub fn new(
        listen: Vec<SocketAddr>,
        grants: Grants,
        role: Arc<RoleCache>,
        assumer: Arc<Assumer>,
        state: Option<(state::StateFile, Vec<GrantRecord>)>,
    ) -> Result<Self, RelayError> {
        let grants = Arc::new(Mutex::new(grants));
        let writer = match state {
            Some((file, records)) => Some(
                StateWriter::start(file, &records, grants.clone())
                    .map_err(|e| RelayError::NotKept(format!("no state writer thread: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            listen,
            grants,
            role,
            assumer,
            writer,
            refusals: Arc::default(),
            metrics: Arc::default(),
        })
    }

    /// The same, counting in `metrics` (shared with what else counts, e.g. the role's source).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How many grants are usable now.
    pub fn grants_active(&self) -> usize {
        self.grants().active(SystemTime::now())
    }

    /// The grants, locked.
    pub(crate) fn grants(&self) -> MutexGuard<'_, Grants> {
        self.grants.lock()
    }

    /// Makes `change` durable, if there is a state file.
    async fn commit(&self, change: Change, undo: Undo) -> Result<(), String> {
        match &self.writer {
            Some(writer) => writer.commit(change, undo).await,
            None => Ok(()),
        }
    }

    /// Issues a grant of `scope`; returns once it is durable. A scoped grant's first session is
    /// assumed before: STS's refusal fails the grant. A grant that could not be kept is not
    /// given.
    pub async fn grant(
        &self,
        ttl: std::time::Duration,
        label: &str,
        scope: Option<Scope>,
    ) -> Result<IssuedGrant, RelayError> {
        grants::check_label_and_ttl(label, ttl)?;
        let mut scope = scope.ok_or(ScopeError::Unnamed)?;
        scope.validate(true)?;
        let id = self.grants().fresh_id();
        let first = match &mut scope {
            Scope::InstanceRole => None,
            Scope::Assumed(role) => {
                if role.session_name.is_empty() {
                    role.session_name = scope::session_name_from(label, &id);
                }
                let served = self.assumer.assume(role, role.duration_for(ttl)).await?;
                log(&format!(
                    "assumed {} as session {:?} for grant {id}: {} until {}",
                    role.role_arn,
                    role.session_name,
                    served.access_key_id,
                    role::rfc3339(served.expiration)
                ));
                Some(served)
            }
        };
        let new = NewGrant {
            id,
            ttl,
            label,
            scope,
            first,
        };
        let issued = self.grants().issue_scoped(new, SystemTime::now())?;
        let id = issued.record.id.clone();
        self.commit(Change::Issued(issued.record.clone()), Undo::Forget(id))
            .await
            .map_err(RelayError::NotKept)?;
        Ok(issued)
    }

    /// Revokes a grant at once; returns once that is durable. A revoke that could not be kept
    /// is undone (a restart would undo it) and the error says so.
    pub async fn revoke(&self, id: &str) -> Result<GrantRecord, RelayError> {
        let (record, newly) = self.grants().revoke(id, SystemTime::now())?;
        let undo = if newly {
            Undo::Unrevoke(id.to_owned())
        } else {
            Undo::Nothing
        };
        let at = record
            .revoked
            .unwrap_or_else(|| grants::epoch_secs(SystemTime::now()));
        match self
            .commit(
                Change::Revoked {
                    id: id.to_owned(),
                    at,
                },
                undo,
            )
            .await
        {
            // Again: a failed revoke of the same grant may have undone it meanwhile.
            Ok(()) => Ok(self.grants().revoke(id, SystemTime::now())?.0),
            Err(why) => Err(RelayError::RevokeNotKept(why)),
        }
    }

    /// The environment a build needs for `issued`.
    pub fn environment(&self, issued: &IssuedGrant) -> Vec<(String, grants::Secret)> {
        let mut env = Vec::new();
        let default_place: SocketAddr = DEFAULT_LISTEN.parse().expect("a socket address");
        let first = self.listen.first().copied().unwrap_or(default_place);
        if self.listen.contains(&default_place) {
            env.push((
                ENV_RELATIVE_URI.to_owned(),
                grants::Secret::new(format!(
                    "{CREDENTIALS_PATH}/{}",
                    issued.path_capability.expose()
                )),
            ));
        }
        env.push((
            ENV_FULL_URI.to_owned(),
            grants::Secret::new(full_uri(first)),
        ));
        env.push((ENV_AUTH_TOKEN.to_owned(), issued.token.clone()));
        env
    }
}

/// `http://<address>[:port]/imds-shim/credentials`.
fn full_uri(listen: SocketAddr) -> String {
    let host = match listen {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let port = match listen.port() {
        80 => String::new(),
        p => format!(":{p}"),
    };
    format!("http://{host}{port}{CREDENTIALS_PATH}")
}

/// A control request that failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The grant request is not valid.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The grant's scope is not valid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// STS gave no session for the grant: it is not given.
    #[error("{0}; the grant was not given")]
    Assume(#[from] AssumeError),
    /// The new grant could not be written to the state file: it is not given.
    #[error("the grant is not kept (the state file could not be written: {0}); it was not issued")]
    NotKept(String),
    /// The revoke could not be written to the state file: it is not in force.
    #[error(
        "the revoke is not kept (the state file could not be written: {0}); the grant is NOT \
         revoked: fix the state file's disk and revoke again"
    )]
    RevokeNotKept(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use limit::RateLimit;

    fn relay(listen: &str) -> Relay {
        Relay::new(
            vec![listen.parse().unwrap()],
            Grants::new(RateLimit {
                per_second: 1.0,
                burst: 1,
            }),
            Arc::new(RoleCache::default()),
            Arc::new(Assumer::new(
                Arc::new(RoleCache::default()),
                Err("none".into()),
                None,
            )),
            None,
        )
        .unwrap()
    }

    fn names(env: &[(String, grants::Secret)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[tokio::test]
    async fn the_default_address_gets_both_forms_another_the_full_uri_only() {
        let r = relay(DEFAULT_LISTEN);
        let issued = r
            .grant(
                std::time::Duration::from_mins(1),
                "x",
                Some(Scope::InstanceRole),
            )
            .await
            .unwrap();
        let env = r.environment(&issued);
        assert_eq!(
            names(&env),
            [ENV_RELATIVE_URI, ENV_FULL_URI, ENV_AUTH_TOKEN]
        );
        let (id, _) = issued.token.expose().split_once('.').unwrap();
        assert!(env[0]
            .1
            .expose()
            .starts_with(&format!("/imds-shim/credentials/{id}.")));
        assert_eq!(
            env[1].1.expose(),
            "http://169.254.170.2/imds-shim/credentials"
        );
        assert_eq!(env[2].1, issued.token);

        let r = relay("127.0.0.1:8099");
        let issued = r
            .grant(
                std::time::Duration::from_mins(1),
                "x",
                Some(Scope::InstanceRole),
            )
            .await
            .unwrap();
        let env = r.environment(&issued);
        assert_eq!(names(&env), [ENV_FULL_URI, ENV_AUTH_TOKEN]);
        assert_eq!(
            env[0].1.expose(),
            "http://127.0.0.1:8099/imds-shim/credentials"
        );
    }
}
