//! One realisation of a topology: its namespaces, links, routers; removed on drop.

use std::fmt::Write as _;
use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::command::{check_prerequisites, run};
use super::error::{io_error, NetnsError};
use super::layout::{GATEWAY_ADDR, HOST_LINK_ADDR, IMDS_ADDR, LINK_PREFIX_LEN, UPLINK};
use super::namespace::Namespace;
use super::reap::{delete_namespaces, list_namespaces, LIVE};
use super::user_stack::UserStackProcess;
use crate::lifecycle::{self, NAME_PREFIX};
use crate::topology::{Bridge, Layer, Preset, Topology};

/// The next realisation's index in this run.
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// One realisation of a [`Topology`]: owns its namespaces and removes them when
/// dropped. See the [module documentation](self) for the layout.
#[derive(Debug)]
pub struct NetnsRealisation {
    prefix: String,
    topology: Topology,
    /// The topology's layers, from the host outwards.
    routing: Vec<Layer>,
    mock: Namespace,
    host: Namespace,
    /// `<prefix>-1` ..= `<prefix>-N`.
    layers: Vec<Namespace>,
    /// The user-space stacks of the proxied layers; stopped before the namespaces go.
    stacks: Vec<UserStackProcess>,
    /// The uid the stacks run as (`None`: root).
    stack_owner: Option<u32>,
    removed: bool,
}

impl NetnsRealisation {
    /// The names of a realisation of `topology` under a fresh prefix; nothing made yet.
    fn named(topology: &Topology, indices: &AtomicU32) -> Result<NetnsRealisation, NetnsError> {
        check_prerequisites()?;
        let run_name = lifecycle::run_id()?;
        // A prefix some namespace already has (left by a killed run that had the same id)
        // is skipped: what this realisation removes on drop must be its own.
        let prefix = loop {
            let index = indices.fetch_add(1, Ordering::Relaxed);
            let prefix = format!("{NAME_PREFIX}{run_name}-{index}");
            if list_namespaces(&format!("{prefix}-"))?.is_empty() {
                break prefix;
            }
            tracing::warn!(%prefix, "namespaces with this prefix exist already; skipping it");
        };
        let namespace = |suffix: &str| Namespace {
            name: format!("{prefix}-{suffix}"),
        };
        Ok(NetnsRealisation {
            topology: *topology,
            routing: topology.layers().into_owned(),
            mock: namespace("m"),
            host: namespace("h"),
            layers: (1..=topology.depth())
                .map(|i| namespace(&i.to_string()))
                .collect(),
            prefix,
            stacks: Vec::new(),
            stack_owner: None,
            removed: false,
        })
    }

    /// Registers this realisation and runs `ip -batch` with `script` (which makes its
    /// namespaces) under the lock, so that `remove_all_live` either sees all of them or
    /// makes this fail. From here on, dropping `self` removes whatever exists.
    fn make_registered(&self, script: &str) -> Result<(), NetnsError> {
        LIVE.create(&self.prefix, || {
            run(&["ip", "-batch", "-"], Some(script)).map(drop)
        })
    }

    /// Realises `topology` under a fresh prefix. On error, whatever was already made is
    /// removed.
    pub fn create(topology: &Topology) -> Result<NetnsRealisation, NetnsError> {
        Self::create_indexed(topology, &NEXT_INDEX, None)
    }

    /// [`Self::create`] with the user-space stacks running as `uid` (keeping only the
    /// capabilities they need to serve a namespace root made), as rootless Podman runs them:
    /// the connections they open on the host are that user's.
    pub fn create_with_stack_owner(
        topology: &Topology,
        uid: u32,
    ) -> Result<NetnsRealisation, NetnsError> {
        Self::create_indexed(topology, &NEXT_INDEX, Some(uid))
    }

    /// [`Self::create`], its index taken from `indices`.
    pub(super) fn create_indexed(
        topology: &Topology,
        indices: &AtomicU32,
        stack_owner: Option<u32>,
    ) -> Result<NetnsRealisation, NetnsError> {
        let started = Instant::now();
        let mut realisation = NetnsRealisation::named(topology, indices)?;
        realisation.stack_owner = stack_owner;
        let script = realisation
            .namespaces()
            .fold(String::new(), |mut script, ns| {
                let _ = writeln!(script, "netns add {}", ns.name);
                script
            });
        realisation.make_registered(&script)?;
        realisation.stacks = realisation.configure()?;
        tracing::debug!(
            prefix = %realisation.prefix,
            topology = %topology,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "realised topology"
        );
        Ok(realisation)
    }

    /// A depth-0 realisation around a running process `pid` (a simulated instance's
    /// container): its network namespace plays the EC2 host and is attached as
    /// `<prefix>-h`; the mock namespace is one link away, as in [`Self::create`]. Only
    /// the name of the host namespace is removed with the realisation: the namespace lives
    /// as long as its process. The host forwards for whatever engine runs in it, so it
    /// gets `icmp_ratelimit=0` like the routers here.
    pub(crate) fn attach(pid: u32) -> Result<NetnsRealisation, NetnsError> {
        let realisation = NetnsRealisation::named(&Preset::Host.into(), &NEXT_INDEX)?;
        realisation.make_registered(&format!(
            "netns add {}\nnetns attach {} {pid}\n",
            realisation.mock.name, realisation.host.name
        ))?;
        let stacks = realisation.configure()?;
        debug_assert!(stacks.is_empty(), "a host has no layers");
        realisation
            .host
            .run_in(|| fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0"))
            .and_then(|written| written)
            .map_err(io_error(format!(
                "setting net.ipv4.icmp_ratelimit=0 in {}",
                realisation.host.name
            )))?;
        Ok(realisation)
    }

    /// Links, addresses and routes (parents before children, one `ip` per namespace),
    /// the proxied layers' stacks started as their parents are ready, with the routers'
    /// forwarding and masquerading and the gateway's refusal configured in parallel.
    fn configure(&self) -> Result<Vec<UserStackProcess>, NetnsError> {
        std::thread::scope(|scope| {
            let mut filters = vec![scope.spawn(|| configure_gateway(&self.mock))];
            filters.extend(
                self.routers()
                    .map(|(parent, bridge)| scope.spawn(move || configure_router(parent, bridge))),
            );
            let mut result = self.configure_links();
            for filter in filters {
                let outcome = filter
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if let (Ok(_), Err(e)) = (&result, outcome) {
                    result = Err(e);
                }
            }
            result
        })
    }

    fn configure_links(&self) -> Result<Vec<UserStackProcess>, NetnsError> {
        let layers = &self.routing;
        let mut host = String::from("link set lo up\n");
        host += &format!(
            "link add {UPLINK} type veth peer name {UPLINK} netns {mock}\n\
             addr add {HOST_LINK_ADDR}/{LINK_PREFIX_LEN} dev {UPLINK}\n\
             link set {UPLINK} up\n\
             route add default via {GATEWAY_ADDR} dev {UPLINK}\n",
            mock = self.mock.name
        );
        if let (Some(Layer::Routed(bridge)), Some(child)) = (layers.first(), self.layers.first()) {
            host += &downlink(1, *bridge, child);
        }
        self.host.ip_batch(&host)?;
        self.mock.ip_batch(&format!(
            "link set lo up\n\
             addr add {IMDS_ADDR}/{LINK_PREFIX_LEN} dev {UPLINK}\n\
             addr add {GATEWAY_ADDR}/{LINK_PREFIX_LEN} dev {UPLINK}\n\
             link set {UPLINK} up\n\
             route add default via {HOST_LINK_ADDR} dev {UPLINK}\n"
        ))?;
        let mut stacks = Vec::new();
        for (i, (layer, ns)) in layers.iter().zip(&self.layers).enumerate() {
            let mut script = String::from("link set lo up\n");
            match layer {
                Layer::Routed(bridge) => {
                    script += &format!(
                        "addr add {member}/{len} dev {UPLINK}\n\
                         link set {UPLINK} up\n\
                         route add default via {gateway} dev {UPLINK}\n",
                        member = bridge.member(),
                        len = bridge.subnet().prefix_len,
                        gateway = bridge.gateway(),
                    );
                }
                Layer::Proxied(stack) => {
                    let parent = if i == 0 {
                        &self.host
                    } else {
                        &self.layers[i - 1]
                    };
                    stacks.push(UserStackProcess::start(
                        *stack,
                        parent,
                        ns,
                        self.stack_owner,
                    )?);
                }
            }
            if let (Some(Layer::Routed(next)), Some(child)) =
                (layers.get(i + 1), self.layers.get(i + 1))
            {
                script += &downlink(i + 2, *next, child);
            }
            ns.ip_batch(&script)?;
        }
        Ok(stacks)
    }

    /// The namespaces that route a layer: (parent, the bridge behind it).
    fn routers(&self) -> impl Iterator<Item = (&Namespace, Bridge)> {
        std::iter::once(&self.host)
            .chain(&self.layers)
            .zip(&self.routing)
            .filter_map(|(parent, layer)| layer.bridge().map(|bridge| (parent, bridge)))
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
    pub(crate) fn mock_ns(&self) -> &Namespace {
        &self.mock
    }

    /// The EC2 host's namespace (depth 0).
    pub(crate) fn host_ns(&self) -> &Namespace {
        &self.host
    }

    /// Where a probe runs: the last routing layer's namespace, or the host's.
    pub(crate) fn leaf_ns(&self) -> &Namespace {
        self.layers.last().unwrap_or(&self.host)
    }

    /// The namespace at `depth` (0 = host, `topology().depth()` = leaf).
    #[cfg(test)]
    pub(crate) fn ns_at_depth(&self, depth: usize) -> Option<&Namespace> {
        match depth {
            0 => Some(&self.host),
            d => self.layers.get(d - 1),
        }
    }

    /// The leaf's address: its bridge's member address, slirp4netns's, or (behind
    /// pasta, which copies it, or at the host) the one of the nearest routed layer or host.
    #[cfg(test)]
    pub(crate) fn leaf_addr(&self) -> std::net::Ipv4Addr {
        use crate::topology::UserStack;
        match self
            .routing
            .iter()
            .rev()
            .find(|l| !matches!(l, Layer::Proxied(UserStack::Pasta)))
        {
            Some(Layer::Routed(bridge)) => bridge.member(),
            Some(Layer::Proxied(_)) => UserStack::SLIRP_MEMBER,
            None => HOST_LINK_ADDR,
        }
    }

    /// All its namespaces: mock, host, then the layers outwards.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        [&self.mock, &self.host].into_iter().chain(&self.layers)
    }

    /// Removes its namespaces now, reporting an error.
    #[cfg(test)]
    pub(crate) fn try_remove(mut self) -> Result<(), NetnsError> {
        self.remove_namespaces()
    }

    fn remove_namespaces(&mut self) -> Result<(), NetnsError> {
        if std::mem::replace(&mut self.removed, true) {
            return Ok(());
        }
        let started = Instant::now();
        self.stacks.clear();
        let names: Vec<String> = self.namespaces().map(|ns| ns.name.clone()).collect();
        // Nothing to do when `remove_all_live` got there first.
        let result = LIVE
            .release(&self.prefix, || delete_namespaces(&names).map(drop))
            .unwrap_or(Ok(()));
        tracing::debug!(
            prefix = %self.prefix,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "removed namespaces"
        );
        result
    }
}

impl Drop for NetnsRealisation {
    fn drop(&mut self) {
        if let Err(e) = self.remove_namespaces() {
            tracing::warn!(prefix = %self.prefix, "removing namespaces: {e}");
        }
    }
}

/// The `ip` commands, run in the parent, that make routing layer `index` towards
/// `child`: a bridge with the gateway address and a veth from it to the child's eth0.
fn downlink(index: usize, layer: Bridge, child: &Namespace) -> String {
    let bridge = layer.name();
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

/// In `parent`: `ip_forward=1` and the MASQUERADE rule for `bridge`'s subnet.
fn configure_router(parent: &Namespace, bridge: Bridge) -> Result<(), NetnsError> {
    let rules = format!(
        "*nat\n-A POSTROUTING -s {subnet} ! -o {name} -j MASQUERADE\nCOMMIT\n",
        subnet = bridge.subnet(),
        name = bridge.name(),
    );
    forward_with_rules(parent, &rules)
}

/// In the mock's namespace, which holds the host's default gateway: forwarding on, and
/// every packet that would be forwarded refused with ICMP net unreachable. A client
/// that asks for anything but the mock learns at once that there is no way out.
fn configure_gateway(mock: &Namespace) -> Result<(), NetnsError> {
    forward_with_rules(
        mock,
        "*filter\n-A FORWARD -j REJECT --reject-with icmp-net-unreachable\nCOMMIT\n",
    )
}

/// In `parent`: `ip_forward=1`, no ICMP rate limit, and `rules` (iptables-restore).
fn forward_with_rules(parent: &Namespace, rules: &str) -> Result<(), NetnsError> {
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
            run(&["iptables-restore", "-w", "--noflush"], Some(rules))
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
