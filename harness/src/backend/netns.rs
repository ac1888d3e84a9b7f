//! Realises a [`Topology`] with Linux network namespaces.
//!
//! # Layout
//!
//! One realisation ([`NetnsInstance`]) of a topology of depth N owns N + 2 namespaces,
//! all named `<prefix>-<suffix>` with a prefix `imdsh-<run>-<index>` unique per run
//! (`<run>`: 6 random hex digits per process) and per realisation (`<index>`):
//!
//! ```text
//!  <prefix>-m (mock IMDS)    <prefix>-h (EC2 host, depth 0)  <prefix>-1 (depth 1)       <prefix>-2 ...
//!  eth0 169.254.169.254/16 = eth0 169.254.0.1/16
//!  default via 169.254.0.1   docker0 172.17.0.1/16 (bridge)
//!                              `- veth1 =================== eth0 172.17.0.2/16
//!                            ip_forward=1                    default via 172.17.0.1
//!                            MASQUERADE -s 172.17.0.0/16     cni0 172.30.0.1/16 (bridge)
//!                                       ! -o docker0           `- veth2 ============== eth0 172.30.0.2/16
//!                                                            ip_forward=1, MASQUERADE  default via 172.30.0.1
//! ```
//!
//! - The mock namespace is exactly one link away from the host, as IMDS is on EC2: the
//!   host reaches [`IMDS_ADDR`] on-link over its `eth0` (169.254.0.0/16), with no
//!   routing hop between them. The mock has a default route back via the host; as the
//!   host masquerades, replies go to 169.254.0.1 anyway.
//! - Routing layer i (1..=N, [`Topology::layers`]`[i-1]`): in the parent namespace (the
//!   host for i = 1, else `<prefix>-<i-1>`) a bridge named like the real one (`docker0`,
//!   `cni0`, `br<i>`) holding the gateway address, a veth `veth<i>` from the bridge to
//!   the child `<prefix>-<i>`, whose end is `eth0` with the layer's member address and
//!   a default route via the gateway. The parent forwards (`net.ipv4.ip_forward=1` in
//!   that namespace) and runs `iptables -t nat -A POSTROUTING -s <subnet> ! -o <bridge>
//!   -j MASQUERADE`, as Docker and CNI's `ipMasq` do.
//! - The leaf (where a probe runs) is `<prefix>-N`, or the host for depth 0. Bridges
//!   switch at layer 2 and NAT does not touch the TTL; only the N forwarding
//!   namespaces do, so a process in the leaf needs a hop limit >= N + 1.
//! - Every namespace has `lo` up. Nothing is created in, and no setting is changed in,
//!   the root network namespace: veths are created from inside the parent namespace
//!   (`ip -n <parent> link add ... peer name eth0 netns <child>`), and commands that
//!   need a namespace run in a thread that entered it and verified that it did.
//!
//! # Cleanup
//!
//! An instance removes its namespaces on [`NetnsInstance::remove`] and on `Drop`
//! (including panic unwinding). For Ctrl-C, the live prefixes of the process are kept
//! in a registry; the CLI's signal handler calls [`remove_all_live`]. For runs that were
//! killed, [`cleanup_stale`] removes every `imdsh-` namespace whose run is gone (a run
//! is alive while its process holds the abstract Unix socket `@imdsh-run-<run>`).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};

use crate::topology::{Layer, Topology};

/// The address of the instance metadata service, held by the mock namespace.
pub const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The host namespace's address on the link to the mock (the link is 169.254.0.0/16).
pub const HOST_LINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// The prefix length of the host–mock link.
pub const LINK_PREFIX_LEN: u8 = 16;

/// The common prefix of every namespace this backend creates; what [`cleanup_stale`]
/// reaps.
pub const NAME_PREFIX: &str = "imdsh-";

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The name of every namespace's uplink (towards the host, or the mock's towards the
/// host).
pub const UPLINK: &str = "eth0";

/// The programs this backend runs.
const TOOLS: [&str; 3] = ["ip", "iptables", "iptables-restore"];

/// An error of the netns backend.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not running as root.
    #[error(
        "run as root (sudo imds-harness ...): the netns backend creates network \
         namespaces, bridges and iptables rules (effective uid is {euid})"
    )]
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// A program is missing.
    #[error(
        "`{program}` was not found in PATH; install iproute2 and iptables: \
         apt-get install iproute2 iptables"
    )]
    MissingTool {
        /// The program.
        program: String,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, with its standard input if it had one.
        command: String,
        /// How it exited.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// An I/O error other than a failed command.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// [`remove_all_live`] has run: the process is shutting down.
    #[error("the netns backend is shutting down (remove_all_live was called)")]
    ShuttingDown,
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> NetnsError {
    let context = context.into();
    move |source| NetnsError::Io { context, source }
}

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
    pub fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
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
    fn ip_batch(&self, script: &str) -> Result<(), NetnsError> {
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

/// Runs `argv` (with `stdin`), capturing its output; an error names the command.
fn run(argv: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let mut command = argv.join(" ");
    if let Some(input) = stdin {
        let lines: Vec<&str> = input.lines().collect();
        command.push_str(&format!(" <<< '{}'", lines.join("; ")));
    }
    let spawn = || -> io::Result<std::process::Output> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Scripts are far smaller than a pipe's buffer. A command that exits
            // early fails the write; its exit status tells why.
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output()
    };
    let output = spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::MissingTool {
                program: argv[0].to_owned(),
            }
        } else {
            NetnsError::Io {
                context: format!("running `{command}`"),
                source,
            }
        }
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetnsError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The live prefixes of this process: added on create, removed on drop.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Set by [`remove_all_live`]; then [`NetnsInstance::create`] refuses.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// The next realisation's index in this run.
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);
/// This run's id and the socket that shows the run is alive.
static RUN: Mutex<Option<(String, UnixListener)>> = Mutex::new(None);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The abstract Unix socket a run holds while it is alive. Abstract sockets belong to
/// the network namespace they are bound in: the root one, where the CLI runs.
fn bind_run_token(run: &str) -> io::Result<UnixListener> {
    let addr = UnixSocketAddr::from_abstract_name(format!("{NAME_PREFIX}run-{run}"))?;
    UnixListener::bind_addr(&addr)
}

pub fn run_is_alive(run: &str) -> bool {
    // If the name can be bound, nobody holds it; the probe socket is closed at once.
    bind_run_token(run).is_err()
}

/// This process's run id, taken (and its liveness socket bound) on first use. Every
/// namespace, container and volume of the run carries it.
pub fn run_id() -> Result<String, NetnsError> {
    let mut run = lock(&RUN);
    if let Some((id, _)) = run.as_ref() {
        return Ok(id.clone());
    }
    let mut last = None;
    for _ in 0..16 {
        let id = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
        match bind_run_token(&id) {
            Ok(socket) => {
                *run = Some((id.clone(), socket));
                return Ok(id);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(NetnsError::Io {
        context: "binding this run's liveness socket @imdsh-run-<id>".to_owned(),
        source: last.unwrap_or_else(|| io::Error::other("no attempt")),
    })
}

/// The names in [`NETNS_DIR`] that start with `prefix`.
fn list_namespaces(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("listing {NETNS_DIR}"))(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!("listing {NETNS_DIR}")))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes those of `names` that exist, in one `ip` process; returns them.
fn delete_namespaces(names: &[String]) -> Result<Vec<String>, NetnsError> {
    let existing: Vec<String> = names
        .iter()
        .filter(|name| name.starts_with(NAME_PREFIX) && Path::new(NETNS_DIR).join(name).exists())
        .cloned()
        .collect();
    if existing.is_empty() {
        return Ok(existing);
    }
    let script: String = existing
        .iter()
        .map(|name| format!("netns del {name}\n"))
        .collect();
    run(&["ip", "-force", "-batch", "-"], Some(&script))?;
    Ok(existing)
}

/// Deletes every namespace of the realisation with this prefix (`<prefix>-*`).
fn delete_prefix(prefix: &str) -> Result<Vec<String>, NetnsError> {
    delete_namespaces(&list_namespaces(&format!("{prefix}-"))?)
}

/// Removes the namespaces of every live realisation of this process, for the CLI's
/// Ctrl-C handler; afterwards [`NetnsInstance::create`] fails with
/// [`NetnsError::ShuttingDown`]. Returns the names removed; errors are logged.
pub fn remove_all_live() -> Vec<String> {
    let mut live = lock(&LIVE);
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    let mut removed = Vec::new();
    for prefix in std::mem::take(&mut *live) {
        match delete_prefix(&prefix) {
            Ok(names) => removed.extend(names),
            Err(e) => tracing::warn!(%prefix, "removing namespaces: {e}"),
        }
    }
    removed
}

/// The prefixes of this process's live realisations.
pub fn live_prefixes() -> Vec<String> {
    lock(&LIVE).iter().cloned().collect()
}

/// Deletes every namespace named `imdsh-*` whose run is no longer alive (left by a
/// killed run), for `imds-harness cleanup`; returns their names. Namespaces of runs
/// that are still going (in this or another process) are left alone.
pub fn cleanup_stale() -> Result<Vec<String>, NetnsError> {
    let mut alive: HashMap<String, bool> = HashMap::new();
    let stale: Vec<String> = list_namespaces(NAME_PREFIX)?
        .into_iter()
        .filter(|name| {
            let run = name[NAME_PREFIX.len()..].split('-').next().unwrap_or("");
            if run.is_empty() {
                return true;
            }
            !*alive
                .entry(run.to_owned())
                .or_insert_with(|| run_is_alive(run))
        })
        .collect();
    let removed = delete_namespaces(&stale)?;
    if !removed.is_empty() {
        tracing::info!(count = removed.len(), "removed stale namespaces");
    }
    Ok(removed)
}

/// Checks that this process can use the netns backend: root, with `ip` and
/// `iptables` installed.
pub fn check_prerequisites() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(NetnsError::NotRoot { euid });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in TOOLS {
        let found = std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(program))
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        });
        if !found {
            return Err(NetnsError::MissingTool {
                program: program.to_owned(),
            });
        }
    }
    Ok(())
}

/// One realisation of a [`Topology`]: owns its namespaces and removes them when
/// dropped. See the [module documentation](self) for the layout.
#[derive(Debug)]
pub struct NetnsInstance {
    prefix: String,
    topology: Topology,
    mock: Namespace,
    host: Namespace,
    /// `<prefix>-1` ..= `<prefix>-N`.
    layers: Vec<Namespace>,
    removed: bool,
}

impl NetnsInstance {
    /// The names of a realisation of `topology` under a fresh prefix; nothing made yet.
    fn named(topology: &Topology) -> Result<NetnsInstance, NetnsError> {
        check_prerequisites()?;
        let run_name = run_id()?;
        let index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NAME_PREFIX}{run_name}-{index}");
        let namespace = |suffix: &str| Namespace {
            name: format!("{prefix}-{suffix}"),
        };
        Ok(NetnsInstance {
            topology: topology.clone(),
            mock: namespace("m"),
            host: namespace("h"),
            layers: (1..=topology.depth())
                .map(|i| namespace(&i.to_string()))
                .collect(),
            prefix,
            removed: false,
        })
    }

    /// Registers this realisation and runs `ip -batch` with `script` (which makes its
    /// namespaces) under the lock, so that `remove_all_live` either sees all of them or
    /// makes this fail. From here on, dropping `self` removes whatever exists.
    fn make_registered(&self, script: &str) -> Result<(), NetnsError> {
        let mut live = lock(&LIVE);
        if SHUTTING_DOWN.load(Ordering::SeqCst) {
            return Err(NetnsError::ShuttingDown);
        }
        live.insert(self.prefix.clone());
        run(&["ip", "-batch", "-"], Some(script)).map(drop)
    }

    /// Realises `topology` under a fresh prefix. On error, whatever was already made is
    /// removed.
    pub fn create(topology: &Topology) -> Result<NetnsInstance, NetnsError> {
        let started = Instant::now();
        let instance = NetnsInstance::named(topology)?;
        let script: String = instance
            .namespaces()
            .map(|ns| format!("netns add {}\n", ns.name))
            .collect();
        instance.make_registered(&script)?;
        instance.configure()?;
        tracing::debug!(
            prefix = %instance.prefix,
            topology = %topology,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "realised topology"
        );
        Ok(instance)
    }

    /// A depth-0 instance around a running process `pid` (a simulated instance's
    /// container): its network namespace plays the EC2 host and is attached as
    /// `<prefix>-h`; the mock namespace is one link away, as in [`Self::create`]. Only
    /// the name of the host namespace is removed with the instance: the namespace lives
    /// as long as its process. The host forwards for whatever engine runs in it, so it
    /// gets `icmp_ratelimit=0` like the routers here.
    pub fn attach(pid: u32) -> Result<NetnsInstance, NetnsError> {
        let instance = NetnsInstance::named(&Topology::chain(0).expect("depth 0 is valid"))?;
        instance.make_registered(&format!(
            "netns add {}\nnetns attach {} {pid}\n",
            instance.mock.name, instance.host.name
        ))?;
        instance.configure()?;
        instance
            .host
            .run_in(|| fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0"))
            .and_then(|written| written)
            .map_err(io_error(format!(
                "setting net.ipv4.icmp_ratelimit=0 in {}",
                instance.host.name
            )))?;
        Ok(instance)
    }

    /// Links, addresses and routes (parents before children, one `ip` per namespace),
    /// with the routers' forwarding and masquerading configured in parallel.
    fn configure(&self) -> Result<(), NetnsError> {
        std::thread::scope(|scope| {
            let routers: Vec<_> = self
                .routers()
                .map(|(parent, layer)| scope.spawn(move || configure_router(parent, layer)))
                .collect();
            let links = self.configure_links();
            let mut result = links;
            for router in routers {
                let outcome = router
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if result.is_ok() {
                    result = outcome;
                }
            }
            result
        })
    }

    fn configure_links(&self) -> Result<(), NetnsError> {
        let layers = &self.topology.layers;
        let mut host = String::from("link set lo up\n");
        host += &format!(
            "link add {UPLINK} type veth peer name {UPLINK} netns {mock}\n\
             addr add {HOST_LINK_ADDR}/{LINK_PREFIX_LEN} dev {UPLINK}\n\
             link set {UPLINK} up\n",
            mock = self.mock.name
        );
        if let (Some(layer), Some(child)) = (layers.first(), self.layers.first()) {
            host += &downlink(1, layer, child);
        }
        self.host.ip_batch(&host)?;
        self.mock.ip_batch(&format!(
            "link set lo up\n\
             addr add {IMDS_ADDR}/{LINK_PREFIX_LEN} dev {UPLINK}\n\
             link set {UPLINK} up\n\
             route add default via {HOST_LINK_ADDR} dev {UPLINK}\n"
        ))?;
        for (i, (layer, ns)) in layers.iter().zip(&self.layers).enumerate() {
            let subnet = layer.subnet();
            let mut script = format!(
                "link set lo up\n\
                 addr add {member}/{len} dev {UPLINK}\n\
                 link set {UPLINK} up\n\
                 route add default via {gateway} dev {UPLINK}\n",
                member = layer.member(),
                len = subnet.prefix_len,
                gateway = layer.gateway(),
            );
            if let (Some(next), Some(child)) = (layers.get(i + 1), self.layers.get(i + 1)) {
                script += &downlink(i + 2, next, child);
            }
            ns.ip_batch(&script)?;
        }
        Ok(())
    }

    /// The namespaces that route a layer: (parent, the layer behind it).
    fn routers(&self) -> impl Iterator<Item = (&Namespace, &Layer)> {
        std::iter::once(&self.host)
            .chain(&self.layers)
            .zip(&self.topology.layers)
    }

    /// The prefix of this realisation's namespace names, `imdsh-<run>-<index>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topology realised.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The mock IMDS's namespace (holds [`IMDS_ADDR`]).
    pub fn mock_ns(&self) -> &Namespace {
        &self.mock
    }

    /// The EC2 host's namespace (depth 0).
    pub fn host_ns(&self) -> &Namespace {
        &self.host
    }

    /// Where a probe runs: the last routing layer's namespace, or the host's.
    pub fn leaf_ns(&self) -> &Namespace {
        self.layers.last().unwrap_or(&self.host)
    }

    /// The namespace at `depth` (0 = host, `topology().depth()` = leaf).
    pub fn ns_at_depth(&self, depth: usize) -> Option<&Namespace> {
        match depth {
            0 => Some(&self.host),
            d => self.layers.get(d - 1),
        }
    }

    /// The leaf's address: its layer's member address, or the host's link address.
    pub fn leaf_addr(&self) -> Ipv4Addr {
        self.topology
            .layers
            .last()
            .map_or(HOST_LINK_ADDR, Layer::member)
    }

    /// All its namespaces: mock, host, then the layers outwards.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        [&self.mock, &self.host].into_iter().chain(&self.layers)
    }

    /// Removes its namespaces now; errors are logged (see [`Self::try_remove`]).
    pub fn remove(self) {
        drop(self);
    }

    /// Removes its namespaces now, reporting an error.
    pub fn try_remove(mut self) -> Result<(), NetnsError> {
        self.remove_namespaces()
    }

    fn remove_namespaces(&mut self) -> Result<(), NetnsError> {
        if std::mem::replace(&mut self.removed, true) {
            return Ok(());
        }
        let started = Instant::now();
        let mut live = lock(&LIVE);
        if !live.remove(&self.prefix) {
            // `remove_all_live` got there first.
            return Ok(());
        }
        let names: Vec<String> = self.namespaces().map(|ns| ns.name.clone()).collect();
        let result = delete_namespaces(&names).map(drop);
        drop(live);
        tracing::debug!(
            prefix = %self.prefix,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "removed namespaces"
        );
        result
    }
}

impl Drop for NetnsInstance {
    fn drop(&mut self) {
        if let Err(e) = self.remove_namespaces() {
            tracing::warn!(prefix = %self.prefix, "removing namespaces: {e}");
        }
    }
}

/// The `ip` commands, run in the parent, that make routing layer `index` towards
/// `child`: a bridge with the gateway address and a veth from it to the child's eth0.
fn downlink(index: usize, layer: &Layer, child: &Namespace) -> String {
    let bridge = layer.bridge();
    let subnet = layer.subnet();
    format!(
        "link add {bridge} type bridge\n\
         link add veth{index} type veth peer name {UPLINK} netns {child}\n\
         link set veth{index} master {bridge}\n\
         addr add {gateway}/{len} dev {bridge}\n\
         link set {bridge} up\n\
         link set veth{index} up\n",
        child = child.name,
        gateway = layer.gateway(),
        len = subnet.prefix_len,
    )
}

/// In `parent`: `ip_forward=1` and the MASQUERADE rule for `layer`'s subnet.
fn configure_router(parent: &Namespace, layer: &Layer) -> Result<(), NetnsError> {
    let rules = format!(
        "*nat\n-A POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE\nCOMMIT\n",
        subnet = layer.subnet(),
        bridge = layer.bridge(),
    );
    parent
        .run_in(|| -> Result<(), NetnsError> {
            // Both act on the namespace this thread entered: /proc/sys/net is per
            // namespace, and the child process starts in the thread's namespace.
            fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(io_error(format!(
                "setting net.ipv4.ip_forward=1 in {}",
                parent.name
            )))?;
            // The kernel rate-limits ICMP time-exceeded per destination (1/s after a
            // burst): repeated TTL probes would then wait for timeouts. It changes when
            // a failure is reported, never whether a packet passes.
            fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0").map_err(io_error(format!(
                "setting net.ipv4.icmp_ratelimit=0 in {}",
                parent.name
            )))?;
            run(&["iptables-restore", "-w", "--noflush"], Some(&rules))
                .map(drop)
                .map_err(|e| match e {
                    NetnsError::Command {
                        command,
                        status,
                        stderr,
                    } => NetnsError::Command {
                        command: format!("(in netns {}) {command}", parent.name),
                        status,
                        stderr,
                    },
                    other => other,
                })
        })
        .map_err(io_error(format!("entering namespace {}", parent.name)))?
}

#[cfg(test)]
mod tests;
