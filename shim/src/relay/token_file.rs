//! `relay grant --token-file PATH [--owner USER]`: the authorization token in a file a build
//! reads (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, bind-mountable), instead of a value in its
//! environment that `docker inspect` shows.
//!
//! The file has mode 0600 and belongs to the owner. It is checked before the grant is asked for
//! (a directory the owner cannot enter, a symbolic link, something not a file: a clear error, and
//! no grant; whether the owner can enter a directory is the kernel's answer for the owner's ids,
//! so POSIX ACLs count as they will when the build reads the file), then written as a new file beside it (`O_EXCL`, never following a link), owned
//! and narrowed before the token goes in, synced and renamed into place: an existing link or
//! hard link at the path is replaced, never written through.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use thiserror::Error;

/// The token file's permissions.
pub const MODE: u32 = 0o600;

/// Who the token file is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The user's name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Every group it is in.
    groups: Vec<u32>,
}

/// The token file cannot be written where asked.
#[derive(Debug, Error)]
pub enum TokenFileError {
    /// `--owner` names no user.
    #[error("--owner {0}: no such user")]
    NoSuchUser(String),
    /// The path has no file name or directory.
    #[error("--token-file {0}: not a file path")]
    NotAFile(PathBuf),
    /// A directory on the way is missing or not a directory.
    #[error("--token-file {path}: directory {dir} does not exist or is not a directory")]
    NoDirectory {
        /// The token file.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
    },
    /// The owner could not reach the file.
    #[error(
        "--token-file {path}: user {user} (uid {uid}) cannot enter directory {dir} (mode {mode:o}, \
         owner uid {dir_uid}{}), so it could not read the token; choose a directory it can enter \
         or another --owner",
        if *.acl { ", and an ACL: see getfacl" } else { "" }
    )]
    Unreadable {
        /// The token file.
        path: PathBuf,
        /// The owner's name.
        user: String,
        /// Its uid.
        uid: u32,
        /// The directory it cannot enter.
        dir: PathBuf,
        /// The directory's mode.
        mode: u32,
        /// The directory's owner.
        dir_uid: u32,
        /// Whether the directory carries a POSIX ACL (which may grant or deny more than its
        /// mode says).
        acl: bool,
    },
    /// Something other than a regular file is at the path.
    #[error("--token-file {0}: {1} is there; it is not replaced")]
    NotRegular(PathBuf, &'static str),
    /// Reading the file system failed.
    #[error("--token-file {path}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Owner {
    /// The user named `name` (or numbered), or the caller when `None`.
    pub fn lookup(name: Option<&str>) -> Result<Self, TokenFileError> {
        let user = match name {
            None => User::from_uid(Uid::effective()),
            Some(n) => match n.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                Err(_) => User::from_name(n),
            },
        };
        let shown = name.map_or_else(|| Uid::effective().to_string(), str::to_owned);
        let user = user
            .ok()
            .flatten()
            .ok_or(TokenFileError::NoSuchUser(shown))?;
        let groups = std::ffi::CString::new(user.name.clone())
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
            .unwrap_or_else(|| vec![user.gid])
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Self {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }

    /// Whether the owner may enter (search) `dir`, as the kernel decides for the owner's ids:
    /// mode bits and POSIX ACLs alike. Root asks in a thread of its own that takes the owner's
    /// ids (the raw `setgroups`, `setresgid` and `setresuid` act on the calling thread only)
    /// and ends; the owner itself asks as itself; anyone else (who could not hand the file
    /// over anyway) gets the answer of the mode bits in `meta`.
    fn may_enter(&self, dir: &Path, meta: &fs::Metadata) -> io::Result<bool> {
        let search = |dir: &Path| match rustix::fs::accessat(
            rustix::fs::CWD,
            dir,
            rustix::fs::Access::EXEC_OK,
            rustix::fs::AtFlags::EACCESS,
        ) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::ACCESS) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        };
        let me = Uid::effective().as_raw();
        if me == self.uid {
            return search(dir);
        }
        if me != 0 {
            return Ok(self.may_enter_by_mode(meta));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    use rustix::thread::{self as t, Gid, Uid};
                    let groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
                    let gid = Gid::from_raw(self.gid);
                    let uid = Uid::from_raw(self.uid);
                    t::set_thread_groups(&groups)?;
                    t::set_thread_res_gid(gid, gid, gid)?;
                    t::set_thread_res_uid(uid, uid, uid)?;
                    search(dir)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Whether the owner may enter (search) a directory of `meta`, by its mode bits alone.
    fn may_enter_by_mode(&self, meta: &fs::Metadata) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return mode & 0o111 != 0;
        }
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if self.groups.contains(&meta.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

/// Whether `dir` carries a POSIX access ACL.
fn has_acl(dir: &Path) -> bool {
    rustix::fs::getxattr_query(dir, "system.posix_acl_access").is_ok()
}

/// Checks, before anything is written, that `owner` could read a token file at `path`.
pub fn check(path: &Path, owner: &Owner) -> Result<PathBuf, TokenFileError> {
    let io_err = |source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(io_err)?;
    let (Some(dir), Some(_)) = (absolute.parent(), absolute.file_name()) else {
        return Err(TokenFileError::NotAFile(path.to_owned()));
    };
    let mut walked = PathBuf::new();
    for part in dir.components() {
        walked.push(part);
        let meta = fs::metadata(&walked).map_err(|_| TokenFileError::NoDirectory {
            path: path.to_owned(),
            dir: walked.clone(),
        })?;
        if !meta.is_dir() {
            return Err(TokenFileError::NoDirectory {
                path: path.to_owned(),
                dir: walked,
            });
        }
        if !owner.may_enter(&walked, &meta).map_err(io_err)? {
            return Err(TokenFileError::Unreadable {
                path: path.to_owned(),
                user: owner.name.clone(),
                uid: owner.uid,
                acl: has_acl(&walked),
                dir: walked,
                mode: meta.mode() & 0o7777,
                dir_uid: meta.uid(),
            });
        }
    }
    match fs::symlink_metadata(&absolute) {
        Ok(meta) if meta.file_type().is_symlink() => Err(TokenFileError::NotRegular(
            path.to_owned(),
            "a symbolic link",
        )),
        Ok(meta) if !meta.is_file() => Err(TokenFileError::NotRegular(
            path.to_owned(),
            "something other than a file",
        )),
        Ok(_) => Ok(absolute),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(absolute),
        Err(e) => Err(io_err(e)),
    }
}

/// Writes `token` to `path` (checked by [`check`]): mode 0600, owned by `owner`, as a new file
/// renamed into place.
pub fn write(path: &Path, owner: &Owner, token: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.imdsh-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(MODE))?;
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_0600_replaces_a_link_and_names_an_unknown_owner() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::lookup(None).unwrap();
        let path = dir.path().join("token");
        let checked = check(&path, &me).unwrap();
        write(&checked, &me, "id.secret").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, MODE);
        assert_eq!(meta.uid(), me.uid);
        assert_eq!(fs::read_to_string(&path).unwrap(), "id.secret");

        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = check(&link, &me).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // Written anyway (a link made after the check) replaces the link, not its target.
        write(&link, &me, "id.secret").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        let err = check(&dir.path().join("missing/token"), &me)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = Owner::lookup(Some("imdsh-no-such-user"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--owner imdsh-no-such-user: no such user");
    }

    #[test]
    fn a_directory_the_owner_cannot_enter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let closed = dir.path().join("closed");
        fs::create_dir(&closed).unwrap();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
        let stranger = Owner {
            name: "stranger".into(),
            uid: 4_000_000,
            gid: 4_000_000,
            groups: vec![4_000_000],
        };
        let err = check(&closed.join("token"), &stranger)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user stranger (uid 4000000) cannot enter directory")
                && err.contains("closed (mode 700"),
            "{err}"
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o701)).unwrap();
        let reachable = Path::new("/tmp")
            .ancestors()
            .chain(dir.path().ancestors())
            .all(|d| fs::metadata(d).unwrap().mode() & 0o001 != 0);
        assert_eq!(check(&closed.join("token"), &stranger).is_ok(), reachable);
    }
}
