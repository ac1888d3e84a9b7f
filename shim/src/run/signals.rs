//! SIGINT and SIGTERM, passed on to the command `imds-shim run` runs.
//!
//! While the command runs, the shim handles both signals itself (it must not die and
//! leave the build running) and sends each one on to the command's pid, then goes on
//! waiting; the shim exits with the command's status (128 + N when it died of signal N).
//!
//! Who gets what:
//! - The command stays in the shim's process group (and so in the terminal's foreground
//!   group: it can read the terminal, and a build's own job control works as without the
//!   shim). A Ctrl-C at a terminal is sent by the kernel to that whole group, so it has
//!   already reached the command and everything the command started: such a signal
//!   (`si_code` `SI_KERNEL`) is not sent again, so a build sees one Ctrl-C, not two (a
//!   second Ctrl-C means "force" to some build tools). Unless the command has left the
//!   group (`setsid`, `setpgid`): then it is sent on.
//! - A signal sent to the shim's pid alone (`kill PID`, a supervisor signalling the
//!   process it started) reaches only the shim: it is sent on to the command's pid. Only to the
//!   pid, never to the process group: the group is the shim's own, which may hold the
//!   shim's parent (a `make`, a CI runner's script). The command passes it on to what it
//!   started, as it would if it had been sent the signal directly.
//! - A signal sent to the whole group (`kill -TERM -- -PGID`; GNU `timeout`, which
//!   signals its child and then its own group) reaches the command directly and once more
//!   through the shim: nothing tells the shim that the group got it too.
//! - A signal that was ignored when the shim started (`nohup`-like, `&` in a script) stays
//!   ignored, and the command inherits that, as it would without the shim.
//!
//! The handler does only what a signal handler may: atomics and `kill(2)`.

#![allow(
    unsafe_code,
    reason = "signal handling around the wrapped build: sigaction, waitid, kill, tcsetpgrp"
)]

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

/// The signals passed on.
pub const FORWARDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// The command's pid while it runs; 0 before it started and once it has exited.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// Signals (bit N for signal N) that came before the command's pid was known.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// One forwarded command at a time per process (the handlers are process-wide).
static ACTIVE: Mutex<()> = Mutex::new(());

/// The handlers, installed; dropping this restores the dispositions found.
pub struct Forwarding {
    previous: Vec<(libc::c_int, libc::sigaction)>,
    _active: MutexGuard<'static, ()>,
}

impl Forwarding {
    /// Installs the handlers; call it before the command starts, so that no signal in
    /// between kills the shim. Signals that are ignored now are left ignored.
    pub fn install() -> io::Result<Forwarding> {
        let active = ACTIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        CHILD.store(0, SeqCst);
        PENDING.store(0, SeqCst);
        let mut forwarding = Forwarding {
            previous: Vec::new(),
            _active: active,
        };
        for sig in FORWARDED {
            // SAFETY: sigaction with a zeroed, then filled, struct; the handler is
            // async-signal-safe (see `on_signal`).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&raw mut new.sa_mask);
                if libc::sigaction(sig, &raw const new, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                forwarding.previous.push((sig, old));
            }
        }
        Ok(forwarding)
    }

    /// The command runs as `pid`: what came before is sent now, and from now on each
    /// signal as it comes.
    pub fn started(&self, pid: u32) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        CHILD.store(pid, SeqCst);
        send_pending(pid);
    }

    /// Waits until the command has exited, without reaping it (it stays a zombie, so its
    /// pid cannot be reused meanwhile), then stops sending: no signal can reach another
    /// process that got the pid. The caller reaps it afterwards.
    pub fn wait_exited(&self) {
        let pid = CHILD.load(SeqCst);
        if pid > 0 {
            loop {
                // SAFETY: waitid writes into the zeroed siginfo_t it is given.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                let done = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &raw mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if done == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
        CHILD.store(0, SeqCst);
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        CHILD.store(0, SeqCst);
        for (sig, old) in &self.previous {
            // SAFETY: restores a disposition sigaction returned.
            unsafe {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
    }
}

/// Sends the pending signals to `pid`; whoever swaps them out sends them, so each is sent
/// once whether the handler or [`Forwarding::started`] gets there first.
fn send_pending(pid: libc::pid_t) {
    let bits = PENDING.swap(0, SeqCst);
    for sig in FORWARDED {
        if bits & (1 << sig) != 0 {
            // SAFETY: kill(2) is async-signal-safe and takes any pid and signal.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is thread-local; a handler must leave it as it found it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = CHILD.load(SeqCst);
    if pid > 0 {
        // SAFETY: getpgid, getpgrp and kill are plain system calls.
        let in_our_group = unsafe { libc::getpgid(pid) == libc::getpgrp() };
        if !(from_terminal && in_our_group) {
            unsafe {
                libc::kill(pid, sig);
            }
        }
    } else {
        // Before the command started nothing reached it, whoever sent the signal.
        PENDING.fetch_or(1 << sig, SeqCst);
        // The pid may have been stored meanwhile, after `started` looked at PENDING.
        let pid = CHILD.load(SeqCst);
        if pid > 0 {
            send_pending(pid);
        }
    }
    // SAFETY: as above.
    unsafe {
        *libc::__errno_location() = errno;
    }
}
