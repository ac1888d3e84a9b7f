//! One network namespace, by name: commands and sockets inside it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};

use super::command::run;
use super::error::NetnsError;
use super::layout::NETNS_DIR;

/// One network namespace, by name (a file in [`NETNS_DIR`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The name given to `ip netns`.
    pub name: String,
}

impl Namespace {
    /// The name given to `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip netns exec <name> <program> <args...>`, not yet started.
    pub fn exec<P, I, S>(&self, program: P, args: I) -> duct::Expression
    where
        P: Into<OsString>,
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = vec!["netns".into(), "exec".into(), self.name.clone().into()];
        argv.push(program.into());
        argv.extend(args.into_iter().map(Into::into));
        duct::cmd("ip", argv)
    }

    /// Runs `f` on a short-lived thread that has entered this namespace (and checked
    /// that it did). Sockets created by `f` stay in this namespace; processes it spawns
    /// start in it.
    pub fn run_in<F, T>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = self.path();
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || -> io::Result<T> {
                    enter_netns(&path)?;
                    Ok(f())
                })?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A listening TCP socket created and bound (with `SO_REUSEADDR`) inside this
    /// namespace. It stays in this namespace, so it can be served from any thread
    /// (e.g. `tokio::net::TcpListener::from_std` after `set_nonblocking(true)`; it is
    /// returned in blocking mode).
    pub(crate) fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        self.run_in(move || -> io::Result<TcpListener> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok(socket.into())
        })?
    }

    /// Runs `ip -n <name> -batch -` with `script` on its standard input.
    pub(super) fn ip_batch(&self, script: &str) -> Result<(), NetnsError> {
        run(&["ip", "-n", &self.name, "-batch", "-"], Some(script)).map(drop)
    }
}

/// Enters the network namespace at `path` (this thread only) and checks that this
/// thread is now in it, so that nothing meant for it can reach the root namespace.
fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let want = file.metadata()?;
    setns(&file, CloneFlags::CLONE_NEWNET)?;
    let now = fs::metadata("/proc/thread-self/ns/net")?;
    if (now.dev(), now.ino()) != (want.dev(), want.ino()) {
        return Err(io::Error::other(format!(
            "setns into {} did not take effect",
            path.display()
        )));
    }
    Ok(())
}
