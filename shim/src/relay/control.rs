//! The control channel of a running relay: a unix socket on which `relay grant`, `revoke` and
//! `list` send one JSON request line and read one JSON reply line.
//!
//! Who may call: root, and with `--control-group GROUP` the members of that group (its gid, or
//! its member list), checked by the caller's credentials from the kernel (`SO_PEERCRED`) on
//! every connection; a refusal is logged with the caller's uid. The socket has mode 0600
//! (0660 and the group with `--control-group`) from the moment its path exists: it is bound
//! inside a fresh directory only the relay can enter, given its mode there, and then renamed
//! into place. A directory the relay creates for it has mode 0700 (0750 and the group).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::grants::{GrantRecord, GrantState, Secret};
use super::scope::Scope;
use super::{log, Relay};

/// The longest request line read (a grant's session policy, ARNs and tags fit in a quarter).
const MAX_LINE: u64 = 64 * 1024;
/// How long a control client may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// The socket's permissions.
const SOCKET_MODE: u32 = 0o600;
/// The socket's permissions with `--control-group`.
const GROUP_SOCKET_MODE: u32 = 0o660;
/// The permissions of a directory the relay creates for it.
const DIR_MODE: u32 = 0o700;
/// The same, with `--control-group`.
const GROUP_DIR_MODE: u32 = 0o750;

/// The group whose members may use the control socket besides root (`--control-group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    /// Its name, as given.
    pub name: String,
    /// Its gid.
    pub gid: u32,
}

impl ControlGroup {
    /// The group named `name` (or numbered, when it is a number).
    pub fn lookup(name: &str) -> Result<Self, ControlError> {
        let unknown = || ControlError::UnknownGroup(name.to_owned());
        let group = match name.parse::<u32>() {
            Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
            Err(_) => nix::unistd::Group::from_name(name),
        };
        let group = group.ok().flatten().ok_or_else(unknown)?;
        Ok(Self {
            name: name.to_owned(),
            gid: group.gid.as_raw(),
        })
    }

    /// Whether the caller with `uid` and primary `gid` is a member.
    fn has(&self, uid: u32, gid: u32) -> bool {
        if gid == self.gid {
            return true;
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(self.gid));
        match (user, group) {
            (Ok(Some(user)), Ok(Some(group))) => {
                user.gid.as_raw() == self.gid || group.mem.contains(&user.name)
            }
            _ => false,
        }
    }
}

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ControlRequest {
    /// A new grant.
    Grant {
        /// Its lifetime in seconds.
        ttl_secs: u64,
        /// Its label.
        label: String,
        /// What it serves; none is refused (it must be spelled out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<Scope>,
    },
    /// Revoke a grant.
    Revoke {
        /// The grant's id.
        id: String,
    },
    /// The grants, a page at a time: the first page, or the one after cursor `after`.
    List {
        /// The `next` of the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

/// The most grants in one `list` reply (at most about 700 bytes each, with a 256-byte label and
/// a role and session name of 64: below a client's 1 MiB).
const LIST_PAGE: usize = 1000;

/// A grant as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// Public id.
    pub id: String,
    /// Label.
    pub label: String,
    /// State now.
    pub state: GrantState,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub expires: String,
    /// The role served: `instance role`, or the assumed role's name.
    #[serde(default)]
    pub role: String,
    /// The session name (`-` for the instance role).
    #[serde(default)]
    pub session: String,
    /// When a scoped grant's current credentials expire (RFC 3339), while it has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire: Option<String>,
}

impl GrantInfo {
    fn of(record: &GrantRecord, now: SystemTime, session_expires: Option<SystemTime>) -> Self {
        let time = |secs| super::role::rfc3339(super::grants::epoch_time(secs));
        Self {
            id: record.id.clone(),
            label: record.label.clone(),
            state: record.state(now),
            created: time(record.created),
            expires: time(record.expires),
            role: record.scope.role(),
            session: record.scope.session().to_owned(),
            credentials_expire: session_expires.map(super::role::rfc3339),
        }
    }
}

/// The environment of a grant; `Debug` redacts the values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEnv(pub Vec<(String, Secret)>);

impl fmt::Debug for GrantEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=** redacted **")))
            .finish()
    }
}

/// A control reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum ControlReply {
    /// The new grant and the environment a build needs.
    Granted {
        /// The grant.
        grant: GrantInfo,
        /// `NAME=value` pairs.
        env: GrantEnv,
    },
    /// The revoked grant.
    Revoked {
        /// The grant.
        grant: GrantInfo,
    },
    /// A page of grants.
    Listed {
        /// The grants.
        grants: Vec<GrantInfo>,
        /// The cursor of the next page, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// The control channel failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// No relay at the socket.
    #[error("no relay answers on {path} ({cause}): is `imds-shim relay` running, with the same --control?")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why (in the message, so not a source that `{:#}` would repeat).
        cause: io::Error,
    },
    /// The socket is in use by a running relay.
    #[error("another relay is running on control socket {0}")]
    InUse(PathBuf),
    /// `--control-group` names no group.
    #[error("--control-group {0}: no such group")]
    UnknownGroup(String),
    /// Talking failed.
    #[error("control socket {path}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reply made no sense.
    #[error("control socket {path}: unexpected reply: {reason}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Binds the control socket at `path` (mode 0600, or 0660 and `group`'s), with no moment in
/// which its path exists with other permissions. A socket file no relay answers on is replaced;
/// one a relay answers on is refused.
pub fn bind(
    path: &Path,
    group: Option<&ControlGroup>,
) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let gid = group.map(|g| g.gid);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        let mode = if gid.is_some() {
            GROUP_DIR_MODE
        } else {
            DIR_MODE
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(io_err)?;
        // The umask may have taken bits away; the group's are given back on purpose.
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        std::os::unix::fs::chown(dir, None, gid).map_err(io_err)?;
    }
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::InUse(path.to_owned()));
    }
    let name = path
        .file_name()
        .map_or_else(|| "relay.sock".into(), |n| n.to_string_lossy().into_owned());
    // Mode 0700 at most whatever the umask: only this process (root) enters it.
    let private = dir.join(format!(".{name}.{}.binding", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_err)?;
    let bound = (|| {
        let inner = private.join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&inner)?;
        let mode = if gid.is_some() {
            GROUP_SOCKET_MODE
        } else {
            SOCKET_MODE
        };
        fs::set_permissions(&inner, fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&inner, None, gid)?;
        // Replaces a stale socket file at `path` at once.
        fs::rename(&inner, path)?;
        Ok(listener)
    })();
    let _ = fs::remove_dir_all(&private);
    bound.map_err(io_err)
}

/// Answers control requests from the callers `group` allows until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    relay: Arc<Relay>,
    group: Option<ControlGroup>,
    mut shutdown: watch::Receiver<bool>,
) {
    let group = Arc::new(group);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log(&format!("control: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let relay = relay.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONTROL_TIMEOUT, exchange(stream, &relay, &group)).await;
        });
    }
}

/// Whether the caller at the other end of `stream` may use the socket: the refusal otherwise.
async fn admit(stream: &UnixStream, group: &Arc<Option<ControlGroup>>) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("the caller's credentials are unknown ({e})"))?;
    let (uid, gid) = (cred.uid(), cred.gid());
    if uid == 0 {
        return Ok(());
    }
    let group = group.clone();
    let member = tokio::task::spawn_blocking(move || {
        (*group).as_ref().map(|g| (g.name.clone(), g.has(uid, gid)))
    })
    .await
    .unwrap_or(None);
    match member {
        Some((_, true)) => Ok(()),
        Some((name, false)) => Err(format!(
            "uid {uid} (gid {gid}) is neither root nor a member of --control-group {name}"
        )),
        None => Err(format!(
            "uid {uid} (gid {gid}) is not root (give others access with --control-group)"
        )),
    }
}

/// Reads the caller's request, answers it (or refuses a caller [`admit`] does not let in),
/// and closes. The request is read from every caller, so that none is still writing when
/// the socket closes: it would see a broken pipe, not the reply.
async fn exchange(
    stream: UnixStream,
    relay: &Relay,
    group: &Arc<Option<ControlGroup>>,
) -> io::Result<()> {
    let admitted = admit(&stream, group).await;
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    BufReader::new(read.take(MAX_LINE))
        .read_until(b'\n', &mut line)
        .await?;
    let reply = match admitted {
        Err(why) => {
            log(&format!("control: refused a caller: {why}"));
            ControlReply::Error {
                message: format!("permission denied: {why}"),
            }
        }
        Ok(()) => match serde_json::from_slice::<ControlRequest>(&line) {
            Ok(request) => execute(relay, request).await,
            Err(e) => ControlReply::Error {
                message: format!("not a control request: {e}"),
            },
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

async fn execute(relay: &Relay, request: ControlRequest) -> ControlReply {
    let now = SystemTime::now();
    let failed = |e: &dyn std::fmt::Display| ControlReply::Error {
        message: e.to_string(),
    };
    match request {
        ControlRequest::Grant {
            ttl_secs,
            label,
            scope,
        } => {
            match relay
                .grant(Duration::from_secs(ttl_secs), &label, scope)
                .await
            {
                Ok(issued) => {
                    let expires = relay.grants().session_expires(&issued.record.id);
                    let grant = GrantInfo::of(&issued.record, now, expires);
                    log(&format!(
                        "granted {} ({:?}) until {}: {}",
                        grant.id,
                        grant.label,
                        grant.expires,
                        match &issued.record.scope {
                            Scope::InstanceRole => "the instance role".to_owned(),
                            Scope::Assumed(a) =>
                                format!("role {} as session {}", a.role_arn, a.session_name),
                        }
                    ));
                    ControlReply::Granted {
                        env: GrantEnv(relay.environment(&issued)),
                        grant,
                    }
                }
                Err(e) => failed(&e),
            }
        }
        ControlRequest::Revoke { id } => match relay.revoke(&id).await {
            Ok(record) => {
                log(&format!("revoked {} ({:?})", record.id, record.label));
                ControlReply::Revoked {
                    grant: GrantInfo::of(&record, now, None),
                }
            }
            Err(e) => failed(&e),
        },
        ControlRequest::List { after } => {
            let grants = relay.grants();
            match grants.page(after.as_deref(), LIST_PAGE) {
                Ok((records, next)) => ControlReply::Listed {
                    grants: records
                        .iter()
                        .map(|r| GrantInfo::of(r, now, grants.session_expires(&r.id)))
                        .collect(),
                    next,
                },
                Err(e) => failed(&e),
            }
        }
    }
}

/// Sends `request` to the relay at `path` and reads its reply.
pub async fn call(path: &Path, request: &ControlRequest) -> Result<ControlReply, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|cause| ControlError::Connect {
            path: path.to_owned(),
            cause,
        })?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request).map_err(|e| io_err(io::Error::other(e)))?;
    out.push(b'\n');
    // A relay that answers before reading all of the request (a refusal, a request over its
    // limit) closes the socket under the write; its reply is still there to read.
    match write.write_all(&out).await {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut line = String::new();
    let exchange = async {
        BufReader::new(read.take(1 << 20))
            .read_line(&mut line)
            .await
    };
    tokio::time::timeout(CONTROL_TIMEOUT, exchange)
        .await
        .map_err(|_| io_err(io::Error::new(io::ErrorKind::TimedOut, "no reply")))?
        .map_err(io_err)?;
    serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_and_debug_hides_the_environment() {
        let req = ControlRequest::Grant {
            ttl_secs: 60,
            label: "ci".into(),
            scope: Some(Scope::InstanceRole),
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"op":"grant","ttl_secs":60,"label":"ci","scope":"instance_role"}"#
        );
        assert_eq!(serde_json::from_str::<ControlRequest>(&line).unwrap(), req);
        let env = GrantEnv(vec![(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            Secret::new("abc.sEcReT".into()),
        )]);
        let shown = format!("{env:?}");
        assert!(!shown.contains("sEcReT"), "{shown}");
        assert!(shown.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    }

    /// A relay that answers before it has read the request (a refusal): the caller gets the
    /// reply, not a broken pipe. The request is larger than the socket's buffer, so the
    /// write is still going on when the server closes. Before: "Broken pipe (os error 32)".
    #[tokio::test]
    async fn a_reply_sent_before_the_request_was_read_is_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (_, mut write) = stream.into_split();
            let refusal = ControlReply::Error {
                message: "permission denied: no".into(),
            };
            let mut out = serde_json::to_vec(&refusal).unwrap();
            out.push(b'\n');
            write.write_all(&out).await.unwrap();
            write.shutdown().await.unwrap();
        });
        let request = ControlRequest::Grant {
            ttl_secs: 60,
            label: "x".repeat(4 << 20),
            scope: None,
        };
        let reply = call(&path, &request).await.unwrap();
        server.await.unwrap();
        assert!(
            matches!(&reply, ControlReply::Error { message } if message == "permission denied: no"),
            "{reply:?}"
        );
    }
}
