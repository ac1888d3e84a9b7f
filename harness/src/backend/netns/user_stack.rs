//! A proxied layer made for real: slirp4netns or pasta, running in the parent namespace
//! and serving the child namespace's TAP device, as rootless Podman starts them.
//!
//! - slirp4netns: `--configure` gives the child `tap0` with 10.0.2.100/24 and a default
//!   route via 10.0.2.2; `--ready-fd` says when that is done, and `--exit-fd` (a pipe
//!   this process holds) ends it when this process goes, even by SIGKILL.
//! - pasta: `--config-net` copies the parent's address and routes onto a TAP device of
//!   the parent interface's name; it quits when the child's namespace file is removed,
//!   and gets SIGKILL when the thread that started it goes (`PR_SET_PDEATHSIG`): the
//!   first is slow on a busy machine, and a killed run removes nothing.
//!   It drops to `nobody` when started as root unless `--runas 0`, and `nobody` may not
//!   enter a namespace root made.
//!
//! The process is killed when the value is dropped.
//!
//! Either runs as root, or (given an owner uid) as that user, as rootless Podman runs them, so
//! that the connections they open on the host are that user's: `setpriv` keeps
//! `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (to enter and configure a namespace root made) and
//! `CAP_DAC_OVERRIDE`; pasta drops that last one, so `/dev/net/tun` (mode 0600 on some
//! hosts) is replaced, in the stack's own mount namespace, by a node of mode 0666.

#![allow(
    unsafe_code,
    reason = "pre_exec hooks (PR_SET_PDEATHSIG, setsid) and kill(2) of the stacks' processes"
)]

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::NetnsError;
use super::layout::NETNS_DIR;
use super::namespace::Namespace;
use crate::topology::UserStack;

/// How long a stack may take to configure the child.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The capabilities a stack run by its owner keeps.
const OWNER_CAPS: &str = "+sys_admin,+net_admin,+dac_override";
/// Run by `sh` in the stack's mount namespace (`ip netns exec` made it) before the stack: a
/// `/dev/net/tun` anyone may open, seen by the stack only.
const OPEN_TUN: &str = "set -e
d=$(mktemp -d /tmp/imdsh-tun.XXXXXX)
mount -t tmpfs -o mode=0755,size=16k imdsh-tun \"$d\"
mknod -m 0666 \"$d/tun\" c 10 200
mount --bind \"$d/tun\" /dev/net/tun
umount -l \"$d\"
rmdir \"$d\"
exec \"$@\"";

/// What comes between `ip netns exec <parent>` and the stack's program for a stack run by
/// `uid`.
fn as_owner(uid: u32, stack: UserStack) -> Vec<String> {
    let uid = uid.to_string();
    let mut args: Vec<String> = [
        "sh",
        "-c",
        OPEN_TUN,
        "imdsh-stack",
        "setpriv",
        "--reuid",
        &uid,
        "--regid",
        &uid,
        "--clear-groups",
        "--inh-caps",
        OWNER_CAPS,
        "--ambient-caps",
        OWNER_CAPS,
    ]
    .map(str::to_owned)
    .into();
    if stack == UserStack::Pasta {
        // Changing uid clears the parent-death signal set before exec: set it again.
        args.extend(["--pdeathsig".to_owned(), "KILL".to_owned()]);
    }
    args
}

/// A running user-space stack serving one child namespace.
#[derive(Debug)]
pub(crate) struct UserStackProcess {
    stack: UserStack,
    child: Child,
    /// The write end of slirp4netns's exit pipe: closing it ends slirp4netns.
    _exit: Option<OwnedFd>,
}

impl UserStackProcess {
    /// Starts `stack` in `parent` for `child`, as root or as `owner`, and waits until the
    /// child is configured.
    pub(crate) fn start(
        stack: UserStack,
        parent: &Namespace,
        child: &Namespace,
        owner: Option<u32>,
    ) -> Result<UserStackProcess, NetnsError> {
        let started = Instant::now();
        let mut command = Command::new("ip");
        command.args(["netns", "exec", parent.name()]);
        if let Some(uid) = owner {
            command.args(as_owner(uid, stack));
        }
        command
            .arg(stack.program())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child_path = child.path().display().to_string();
        let spawn_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                NetnsError::MissingStack { stack }
            } else {
                NetnsError::Io {
                    context: format!("starting {} for {}", stack.program(), child.name()),
                    source,
                }
            }
        };
        let process = match stack {
            UserStack::Slirp4netns => {
                let (exit_read, exit_write) = io::pipe().map_err(spawn_error)?;
                let (mut ready_read, ready_write) = io::pipe().map_err(spawn_error)?;
                let inherited = [exit_read.as_raw_fd(), ready_write.as_raw_fd()];
                command.args([
                    "--configure",
                    "--mtu=65520",
                    "--disable-host-loopback",
                    &format!("--exit-fd={}", inherited[0]),
                    &format!("--ready-fd={}", inherited[1]),
                    "--netns-type=path",
                    &child_path,
                    UserStack::SLIRP_TAP,
                ]);
                // SAFETY: only the async-signal-safe fcntl between fork and exec.
                unsafe {
                    command.pre_exec(move || {
                        for fd in inherited {
                            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                                return Err(io::Error::last_os_error());
                            }
                        }
                        Ok(())
                    });
                }
                let mut spawned = command.spawn().map_err(spawn_error)?;
                drop((exit_read, ready_write));
                // slirp4netns writes "1" once tap0 is configured; EOF means it exited.
                let mut ready = [0u8; 1];
                if ready_read.read(&mut ready).unwrap_or(0) == 0 {
                    return Err(failed(stack, child, &mut spawned));
                }
                UserStackProcess {
                    stack,
                    child: spawned,
                    _exit: Some(exit_write.into()),
                }
            }
            UserStack::Pasta => {
                command.args(["--foreground", "--quiet"]);
                match owner {
                    // Already its owner: it joins the namespace, and no user namespace.
                    Some(_) => command.arg("--netns-only"),
                    None => command.args(["--runas", "0"]),
                };
                command.args(["--config-net", "--netns", &child_path]);
                // SAFETY: only the async-signal-safe prctl between fork and exec. It
                // ends pasta with the thread that started it (`ip netns exec` execs
                // pasta in place), even when this process is killed.
                unsafe {
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let mut spawned = command.spawn().map_err(spawn_error)?;
                if let Err(e) = wait_for_default_route(child, &mut spawned) {
                    return Err(e.unwrap_or_else(|| failed(stack, child, &mut spawned)));
                }
                UserStackProcess {
                    stack,
                    child: spawned,
                    _exit: None,
                }
            }
        };
        tracing::debug!(
            stack = stack.program(),
            child = child.name(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "user-space stack ready"
        );
        Ok(process)
    }
}

/// The error for a stack that exited (or never configured the child): its stderr.
fn failed(stack: UserStack, child: &Namespace, process: &mut Child) -> NetnsError {
    let _ = process.kill();
    let status = process
        .wait()
        .map_or_else(|e| e.to_string(), |s| s.to_string());
    let mut stderr = String::new();
    if let Some(mut pipe) = process.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    NetnsError::Command {
        command: format!("{} for namespace {}", stack.program(), child.name()),
        status,
        stderr: stderr.trim().to_owned(),
    }
}

/// Waits until `child` has a default route (pasta configured it); `Err(None)` when
/// the process exited or the time ran out.
fn wait_for_default_route(
    child: &Namespace,
    process: &mut Child,
) -> Result<(), Option<NetnsError>> {
    let started = Instant::now();
    loop {
        let routes = super::command::run(
            &["ip", "-n", child.name(), "-4", "route", "show", "default"],
            None,
        )
        .map_err(Some)?;
        if !routes.trim().is_empty() {
            return Ok(());
        }
        if process.try_wait().ok().flatten().is_some() || started.elapsed() > READY_TIMEOUT {
            return Err(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for UserStackProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            tracing::warn!(stack = self.stack.program(), "waiting for it: {e}");
        }
    }
}

/// Kills every slirp4netns or pasta that serves a namespace of a run that is no longer
/// alive (left by a killed run: pasta outlives it until its namespace goes, and may be
/// slow to notice that on a busy machine); returns their command lines.
pub(crate) fn kill_stale(run_is_dead: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_stack = argv.first().is_some_and(|p| {
            [UserStack::Slirp4netns, UserStack::Pasta]
                .iter()
                .any(|s| p.rsplit('/').next() == Some(s.program()))
        });
        let dead_run = argv.iter().find_map(|a| {
            let name = a.strip_prefix(NETNS_DIR)?.strip_prefix('/')?;
            crate::lifecycle::run_of(name)
        });
        if is_stack && dead_run.is_some_and(&run_is_dead) {
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed.push(argv.join(" "));
            }
        }
    }
    killed
}
