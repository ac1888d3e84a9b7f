//! One realisation of a topology: its namespaces, links, routers; removed on drop.

use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::command::run;
use super::namespace::Namespace;
use super::reap::{delete_namespaces, list_namespaces};
use super::{
    check_prerequisites, io_error, NetnsError, HOST_LINK_ADDR, IMDS_ADDR, LINK_PREFIX_LEN, LIVE,
    UPLINK,
};
use crate::lifecycle::{self, NAME_PREFIX};
use crate::topology::{Layer, Preset, Topology};

/// The next realisation's index in this run.
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// One realisation of a [`Topology`]: owns its namespaces and removes them when
/// dropped. See the [module documentation](self) for the layout.
#[derive(Debug)]
pub struct NetnsInstance {
    prefix: String,
    topology: Topology,
    /// The topology's routing layers, from the host outwards.
    routing: Vec<Layer>,
    mock: Namespace,
    host: Namespace,
    /// `<prefix>-1` ..= `<prefix>-N`.
    layers: Vec<Namespace>,
    removed: bool,
}

impl NetnsInstance {
    /// The names of a realisation of `topology` under a fresh prefix; nothing made yet.
    fn named(topology: &Topology, indices: &AtomicU32) -> Result<NetnsInstance, NetnsError> {
        check_prerequisites()?;
        let run_name = lifecycle::run_id()?;
        // A prefix some namespace already has (left by a killed run that had the same id)
        // is skipped: what this instance removes on drop must be its own.
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
        Ok(NetnsInstance {
            topology: *topology,
            routing: topology.layers().into_owned(),
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
        LIVE.create(&self.prefix, || {
            run(&["ip", "-batch", "-"], Some(script)).map(drop)
        })
    }

    /// Realises `topology` under a fresh prefix. On error, whatever was already made is
    /// removed.
    pub fn create(topology: &Topology) -> Result<NetnsInstance, NetnsError> {
        Self::create_indexed(topology, &NEXT_INDEX)
    }

    /// [`Self::create`], its index taken from `indices`.
    pub(super) fn create_indexed(
        topology: &Topology,
        indices: &AtomicU32,
    ) -> Result<NetnsInstance, NetnsError> {
        let started = Instant::now();
        let instance = NetnsInstance::named(topology, indices)?;
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
    pub(crate) fn attach(pid: u32) -> Result<NetnsInstance, NetnsError> {
        let instance = NetnsInstance::named(&Preset::Host.into(), &NEXT_INDEX)?;
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
        let layers = &self.routing;
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
            .zip(&self.routing)
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

    /// The leaf's address: its layer's member address, or the host's link address.
    #[cfg(test)]
    pub(crate) fn leaf_addr(&self) -> std::net::Ipv4Addr {
        self.routing.last().map_or(HOST_LINK_ADDR, Layer::member)
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
