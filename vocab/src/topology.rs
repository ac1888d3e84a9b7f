//! Where a build runs, as data: the chain of layers between the EC2 host and the place
//! where a client asks IMDS for credentials.
//!
//! Like a mininet topology, what the network looks like is kept apart from the code
//! that builds it (the harness's backends). A [`Layer`] is one network namespace behind
//! the one before it, joined to it in one of two ways:
//!
//! - **routed** ([`Bridge`]): the parent forwards (and masquerades) the child's
//!   traffic, as Docker's, CNI's and Podman's bridges do, so the IP TTL of IMDS's token
//!   response goes down by one;
//! - **proxied** ([`UserStack`]): a user-space network stack (slirp4netns, pasta) ends
//!   the child's TCP connection and opens a new one from the parent's namespace, so the
//!   response the child reads was sent afresh, with a TTL of its own.
//!
//! The model ([`Topology::min_hop_limit`]): a place needs a hop limit of 1 + the number
//! of routed layers between the host and the first proxied layer (all of them when
//! none is proxied). It is a hypothesis: the harness measures every topology, and its
//! table puts the model's figure beside what was measured.
//!
//! The named [`Preset`]s are the one place that restates the BRIEF's tables "Where each
//! kind of build runs" and "Beyond Earthly"; a new preset is a new variant, and every
//! `match` on presets (the backends, the shim's diagnosis) must then say how it handles
//! it. `chain:N` (N = 0..=[`MAX_CHAIN`]) is a synthetic chain of N routed layers, and
//! `chain:rrpr` spells a mixed one, a letter a layer from the host outwards.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strum::{AsRefStr, Display, EnumString, IntoStaticStr, VariantArray};

use crate::hop_limit::HopLimit;

/// The most layers a `chain:` topology has.
pub const MAX_CHAIN: u8 = 32;
// Every topology's need is a valid hop limit.
const _: () = assert!((MAX_CHAIN as u32) < 64);

/// The prefix of the synthetic chain topologies' names: `chain:N`, `chain:rrpr`.
pub const CHAIN_PREFIX: &str = "chain:";

/// The letter of a routed layer in a chain's spelling.
pub const ROUTED_LETTER: char = 'r';
/// The letter of a layer proxied by slirp4netns in a chain's spelling.
pub const PROXIED_LETTER: char = 'p';

/// An IPv4 subnet, written `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Subnet {
    /// The address `network + n` (e.g. `n = 1` is the conventional gateway).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// Whether `addr` lies in this subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        };
        u32::from(addr) & mask == u32::from(self.network) & mask
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// A routed layer: a bridge with a gateway address in the parent namespace, the child
/// namespace attached to it with an address in the subnet and a default route via the
/// gateway; the parent forwards and masquerades the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bridge {
    /// dockerd's default bridge `docker0`: 172.17.0.0/16, gateway 172.17.0.1,
    /// forwarding and `MASQUERADE` of the subnet (moby's bridge driver).
    Docker,
    /// earthly-buildkitd's CNI network for RUN steps (`buildkitd/cni-conf.json.template`):
    /// bridge `cni0`, `isGateway`, `ipMasq: true`, host-local 172.30.0.0/16.
    EarthlyCni,
    /// The inner dockerd of Earthly `WITH DOCKER`, started with `--bip 172.20.0.1/16`:
    /// its `docker0` bridge.
    WithDocker,
    /// Podman's and Buildah's default network `podman` with the CNI backend
    /// (containers-common's default config): bridge `cni-podman0`, 10.88.0.0/16,
    /// `isGateway`, `ipMasq`.
    Podman,
    /// The `docker:dind` service's own dockerd, inside its container on the instance's
    /// docker0: 172.17.0.0/16 is taken by its eth0's route there, so dockerd takes the
    /// next pool, 172.18.0.0/16, for its `docker0`.
    Dind,
    /// kind's Docker network `kind` (a user-defined bridge, 172.18.0.0/16 next to
    /// docker0's pool), where the node containers run; Docker names its bridge
    /// `br-<network id>`.
    Kind,
    /// The pod network inside a node: the CNI `bridge` plugin's `cni0` with the node's
    /// pod CIDR 10.244.0.0/24 (kind's default pod subnet 10.244.0.0/16), `ipMasq`.
    Pod,
    /// The dockerd of a dind sidecar in a pod, in the pod's network namespace: its
    /// `docker0`, 172.17.0.0/16 (nothing in the pod overlaps it).
    Sidecar,
    /// A synthetic layer of `chain:`, at position i (1..=[`MAX_CHAIN`]) from the host:
    /// bridge `br<i>`, `10.<i>.0.0/24`.
    Generic(u8),
}

impl Bridge {
    /// The subnet behind this bridge.
    pub fn subnet(&self) -> Subnet {
        let (network, prefix_len) = match *self {
            Bridge::Docker | Bridge::Sidecar => (Ipv4Addr::new(172, 17, 0, 0), 16),
            Bridge::EarthlyCni => (Ipv4Addr::new(172, 30, 0, 0), 16),
            Bridge::WithDocker => (Ipv4Addr::new(172, 20, 0, 0), 16),
            Bridge::Podman => (Ipv4Addr::new(10, 88, 0, 0), 16),
            Bridge::Dind | Bridge::Kind => (Ipv4Addr::new(172, 18, 0, 0), 16),
            Bridge::Pod => (Ipv4Addr::new(10, 244, 0, 0), 24),
            Bridge::Generic(i) => (Ipv4Addr::new(10, i, 0, 0), 24),
        };
        Subnet {
            network,
            prefix_len,
        }
    }

    /// The gateway: the bridge's address in the parent namespace (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet().host(1)
    }

    /// The gateway with the subnet's prefix length, as dockerd's `--bip` takes it:
    /// `172.17.0.1/16`.
    pub fn gateway_cidr(&self) -> String {
        format!("{}/{}", self.gateway(), self.subnet().prefix_len)
    }

    /// The address of the namespace behind the bridge (`.2`: Docker's first container
    /// address, host-local's first lease).
    pub fn member(&self) -> Ipv4Addr {
        self.subnet().host(2)
    }

    /// The bridge's interface name, as the real system names it (≤ 15 bytes).
    pub fn name(&self) -> Cow<'static, str> {
        match *self {
            Bridge::Docker | Bridge::WithDocker | Bridge::Dind | Bridge::Sidecar => {
                "docker0".into()
            }
            Bridge::EarthlyCni | Bridge::Pod => "cni0".into(),
            Bridge::Podman => "cni-podman0".into(),
            Bridge::Kind => "br-kind".into(),
            Bridge::Generic(i) => format!("br{i}").into(),
        }
    }
}

impl fmt::Display for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.subnet())
    }
}

/// A proxied layer: a user-space network stack in the parent namespace serves the
/// child's only interface, a TAP device, and re-originates the child's connections
/// from the parent (as rootless Podman and Docker do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStack {
    /// slirp4netns (libslirp): `tap0` with 10.0.2.100/24, gateway 10.0.2.2 (the stack
    /// itself, MAC `52:55:0a:00:02:02`), DNS 10.0.2.3; rootless Podman's default.
    Slirp4netns,
    /// pasta (passt): the TAP device takes the parent's interface name, address and
    /// routes; `podman run --network pasta`.
    Pasta,
}

impl UserStack {
    /// The program, as Debian installs it.
    pub fn program(&self) -> &'static str {
        match self {
            UserStack::Slirp4netns => "slirp4netns",
            UserStack::Pasta => "pasta",
        }
    }

    /// The Debian package that has it.
    pub fn package(&self) -> &'static str {
        match self {
            UserStack::Slirp4netns => "slirp4netns",
            UserStack::Pasta => "passt",
        }
    }

    /// slirp4netns's network inside the child: 10.0.2.0/24.
    pub const SLIRP_SUBNET: Subnet = Subnet {
        network: Ipv4Addr::new(10, 0, 2, 0),
        prefix_len: 24,
    };
    /// slirp4netns's gateway (the stack itself).
    pub const SLIRP_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    /// The child's address behind slirp4netns.
    pub const SLIRP_MEMBER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
    /// The TAP device slirp4netns is given in the child.
    pub const SLIRP_TAP: &'static str = "tap0";
}

impl fmt::Display for UserStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserStack::Slirp4netns => write!(
                f,
                "slirp4netns ({} {})",
                UserStack::SLIRP_TAP,
                UserStack::SLIRP_SUBNET
            ),
            UserStack::Pasta => f.write_str("pasta (the parent's address)"),
        }
    }
}

/// How a layer hands the traffic of the namespace behind it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// Forwarded by the kernel: the TTL goes down by one.
    Routed,
    /// Re-originated by a user-space stack: the TTL starts afresh.
    Proxied,
}

/// One layer of a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Forwarded by the parent through a bridge.
    Routed(Bridge),
    /// Re-originated by a user-space stack in the parent.
    Proxied(UserStack),
}

impl Layer {
    /// Routed or proxied.
    pub fn forwarding(&self) -> Forwarding {
        match self {
            Layer::Routed(_) => Forwarding::Routed,
            Layer::Proxied(_) => Forwarding::Proxied,
        }
    }

    /// The bridge, if the layer is routed.
    pub fn bridge(&self) -> Option<Bridge> {
        match *self {
            Layer::Routed(bridge) => Some(bridge),
            Layer::Proxied(_) => None,
        }
    }

    /// Its letter in a chain's spelling.
    pub fn letter(&self) -> char {
        match self.forwarding() {
            Forwarding::Routed => ROUTED_LETTER,
            Forwarding::Proxied => PROXIED_LETTER,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Routed(bridge) => bridge.fmt(f),
            Layer::Proxied(stack) => stack.fmt(f),
        }
    }
}

/// The layers spelled a letter each, from the host outwards (`rrp`); `-` for none.
pub fn spelling(layers: &[Layer]) -> String {
    if layers.is_empty() {
        return "-".to_owned();
    }
    layers.iter().map(Layer::letter).collect()
}

/// How many layers `layers` starts with that are routed.
fn leading_routed<'a>(layers: impl Iterator<Item = &'a Layer>) -> usize {
    layers
        .take_while(|l| l.forwarding() == Forwarding::Routed)
        .count()
}

/// The hop limit that `routed` routed layers need: 1 + them.
fn for_routed(routed: usize) -> HopLimit {
    HopLimit::for_routing_hops(routed).expect("at most MAX_CHAIN < 64 layers")
}

/// A named preset: one row of the BRIEF's tables "Where each kind of build runs" (read
/// from earthly/earthly 6e641c15 (v0.8.16) and moby) and "Beyond Earthly".
///
/// [`VariantArray::VARIANTS`] lists them in declaration order: the BRIEF's Earthly
/// table by depth, then the others. The name (on the command line and in the baseline)
/// is the variant's in kebab case.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    VariantArray,
    IntoStaticStr,
    AsRefStr,
    Display,
    EnumString,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Preset {
    /// A process on the EC2 host.
    Host,
    /// `docker run` on the default bridge.
    DockerRun,
    /// A `docker build` RUN step.
    BuildkitRun,
    /// An Earthly RUN step.
    EarthlyRun,
    /// An Earthly RUN step's network made exactly, with the CNI bridge plugin.
    EarthlyCni,
    /// A container started inside Earthly `WITH DOCKER`.
    EarthlyWithDocker,
    /// Rootful `podman run` on its default network.
    PodmanRun,
    /// Rootless `podman run` (slirp4netns).
    PodmanRootless,
    /// Rootless `podman run --network pasta`.
    PodmanRootlessPasta,
    /// A `buildah bud` RUN step (rootful, its default network).
    BuildahRun,
    /// A GitLab docker-executor job container beside a `docker:dind` service.
    GitlabDindJob,
    /// A container the job starts through the `docker:dind` service.
    GitlabDindBuild,
    /// A container started by a dind sidecar in a pod of a kind-like node.
    K8sPodDind,
}

impl Preset {
    /// The name used on the command line and in the baseline.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The layers from the EC2 host outwards. Presets that share a network share
    /// these, and every backend builds the network from them.
    pub fn layers(self) -> &'static [Layer] {
        use Bridge::{Dind, Docker, EarthlyCni, Kind, Pod, Podman, Sidecar, WithDocker};
        match self {
            Preset::Host => &[],
            Preset::DockerRun | Preset::BuildkitRun | Preset::GitlabDindJob => {
                &[Layer::Routed(Docker)]
            }
            Preset::EarthlyRun | Preset::EarthlyCni => {
                &[Layer::Routed(Docker), Layer::Routed(EarthlyCni)]
            }
            Preset::EarthlyWithDocker => &[
                Layer::Routed(Docker),
                Layer::Routed(EarthlyCni),
                Layer::Routed(WithDocker),
            ],
            Preset::PodmanRun | Preset::BuildahRun => &[Layer::Routed(Podman)],
            Preset::PodmanRootless => &[Layer::Proxied(UserStack::Slirp4netns)],
            Preset::PodmanRootlessPasta => &[Layer::Proxied(UserStack::Pasta)],
            Preset::GitlabDindBuild => &[Layer::Routed(Docker), Layer::Routed(Dind)],
            Preset::K8sPodDind => &[
                Layer::Routed(Kind),
                Layer::Routed(Pod),
                Layer::Routed(Sidecar),
            ],
        }
    }

    /// The real system this stands for, and where the real one would differ.
    pub fn stands_for(self) -> &'static str {
        match self {
            Preset::Host => {
                "a process on the EC2 host: Earthly LOCALLY, the Earthly CLI itself \
                 (RUN --aws resolves credentials here)"
            }
            Preset::DockerRun => "`docker run` on the default bridge docker0",
            Preset::BuildkitRun => {
                "a `docker build` RUN step: dockerd's embedded BuildKit gives each RUN \
                 a netns on docker0 (moby builder-next executor, bridge provider)"
            }
            Preset::EarthlyRun => {
                "an Earthly RUN step: earthly-buildkitd runs on docker0 \
                 (`docker run --privileged`, no --network) and runs RUN steps on \
                 its CNI bridge cni0 (172.30.0.0/16, ipMasq)"
            }
            Preset::EarthlyCni => {
                "the network of an Earthly RUN step made exactly: the CNI bridge \
                 plugin with earthly-buildkitd's config (cni0, 172.30.0.0/16, \
                 ipMasq) inside a BuildKit container on docker0"
            }
            Preset::EarthlyWithDocker => {
                "a container started inside Earthly WITH DOCKER: the inner dockerd \
                 (bip 172.20.0.1/16) inside an Earthly RUN step (hop count inferred)"
            }
            Preset::PodmanRun => {
                "rootful `podman run` on its default network `podman` (CNI bridge \
                 cni-podman0, 10.88.0.0/16, ipMasq); with netavark instead of CNI the \
                 bridge is podman0, the same shape"
            }
            Preset::PodmanRootless => {
                "rootless `podman run` as an unprivileged user: slirp4netns in the \
                 host's network namespace serves the container's tap0 and opens its \
                 connections anew from the host; rootless Docker (rootlesskit with \
                 slirp4netns) has the same shape"
            }
            Preset::PodmanRootlessPasta => {
                "rootless `podman run --network pasta` (Podman 4.4 and later; the \
                 default from Podman 5): pasta in the host's network namespace \
                 re-originates the container's connections"
            }
            Preset::BuildahRun => {
                "a `buildah bud` RUN step, rootful: each RUN gets a network namespace \
                 on the default network `podman` (cni-podman0, 10.88.0.0/16)"
            }
            Preset::GitlabDindJob => {
                "a GitLab docker-executor job container on the instance's docker0, \
                 talking to its `docker:dind` service (a privileged container on the \
                 same bridge) over TCP"
            }
            Preset::GitlabDindBuild => {
                "a container the GitLab job starts with `docker run` through the \
                 `docker:dind` service (DOCKER_HOST=tcp://docker:2375): it runs on \
                 the service's own docker0 (172.18.0.0/16) inside the service's \
                 container on the instance's docker0"
            }
            Preset::K8sPodDind => {
                "a container started by a dind sidecar of a pod on a kind-like node \
                 on EC2: the node container on Docker's `kind` network, the pod on the \
                 node's CNI bridge cni0 (10.244.0.0/24), the sidecar's dockerd with \
                 docker0 in the pod's namespace. On EKS with the VPC CNI the node is \
                 the EC2 host and a pod is 1 routed hop from it, so a dind sidecar's \
                 containers are 2 (need 3); overlay CNIs add one"
            }
        }
    }

    /// Where a build of this kind runs, in words for a diagnosis ("in a `docker build`
    /// RUN step").
    pub fn where_it_runs(self) -> &'static str {
        match self {
            Preset::Host => "on the EC2 host itself",
            Preset::DockerRun => "in a `docker run` container on the default bridge",
            Preset::BuildkitRun => "in a `docker build` RUN step",
            Preset::EarthlyRun => {
                "in an Earthly RUN step: earthly-buildkitd's CNI bridge inside a container on docker0"
            }
            Preset::EarthlyCni => {
                "in an Earthly RUN step on earthly-buildkitd's CNI bridge cni0 (made by the CNI \
                 bridge plugin) inside a container on docker0"
            }
            Preset::EarthlyWithDocker => "in a container started inside Earthly WITH DOCKER",
            Preset::PodmanRun => "in a rootful `podman run` container on Podman's default bridge",
            Preset::PodmanRootless => {
                "in a rootless Podman container behind slirp4netns, a user-space network stack"
            }
            Preset::PodmanRootlessPasta => {
                "in a rootless Podman container behind pasta, a user-space network stack"
            }
            Preset::BuildahRun => "in a `buildah bud` RUN step on Podman's default bridge",
            Preset::GitlabDindJob => {
                "in a GitLab job container beside its docker:dind service"
            }
            Preset::GitlabDindBuild => {
                "in a container a GitLab job started through its docker:dind service"
            }
            Preset::K8sPodDind => {
                "in a container of a pod's dind sidecar, on a kind-like node"
            }
        }
    }

    /// Whether builds here are Earthly's, so that Earthly's own alternative
    /// (`RUN --aws`) applies.
    pub fn is_earthly(self) -> bool {
        match self {
            Preset::EarthlyRun | Preset::EarthlyCni | Preset::EarthlyWithDocker => true,
            Preset::Host
            | Preset::DockerRun
            | Preset::BuildkitRun
            | Preset::PodmanRun
            | Preset::PodmanRootless
            | Preset::PodmanRootlessPasta
            | Preset::BuildahRun
            | Preset::GitlabDindJob
            | Preset::GitlabDindBuild
            | Preset::K8sPodDind => false,
        }
    }
}

/// A synthetic chain: `chain:N` (N routed layers) or `chain:rrpr` (a letter a layer
/// from the host outwards: `r` routed, `p` proxied by slirp4netns), at most
/// [`MAX_CHAIN`] layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chain {
    len: u8,
    /// Bit i set: layer i + 1 (from the host) is proxied.
    proxied: u32,
}

impl Chain {
    /// `chain:depth`: `depth` routed layers, if at most [`MAX_CHAIN`].
    pub fn new(depth: u8) -> Result<Chain, TopologyError> {
        if depth > MAX_CHAIN {
            return Err(TopologyError::ChainDepth {
                name: format!("{CHAIN_PREFIX}{depth}"),
            });
        }
        Ok(Chain {
            len: depth,
            proxied: 0,
        })
    }

    /// A chain of these forwardings, from the host outwards.
    pub fn of(forwardings: &[Forwarding]) -> Result<Chain, TopologyError> {
        let len = u8::try_from(forwardings.len())
            .ok()
            .filter(|len| *len <= MAX_CHAIN)
            .ok_or_else(|| TopologyError::ChainDepth {
                name: format!("{CHAIN_PREFIX}<{} layers>", forwardings.len()),
            })?;
        let proxied = forwardings
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == Forwarding::Proxied)
            .fold(0u32, |bits, (i, _)| bits | 1 << i);
        Ok(Chain { len, proxied })
    }

    /// The number of layers.
    pub fn depth(self) -> u8 {
        self.len
    }

    /// Whether every layer is routed (the chain is `chain:N`).
    pub fn all_routed(self) -> bool {
        self.proxied == 0
    }

    /// The layers: `r` at position i is [`Bridge::Generic`]`(i)`, `p` slirp4netns.
    pub fn layers(self) -> Vec<Layer> {
        (1..=self.len)
            .map(|i| {
                if self.proxied & 1 << (i - 1) != 0 {
                    Layer::Proxied(UserStack::Slirp4netns)
                } else {
                    Layer::Routed(Bridge::Generic(i))
                }
            })
            .collect()
    }

    /// `chain:N` when every layer is routed, else the letters (`chain:rrpr`).
    fn name(self) -> String {
        if self.all_routed() {
            format!("{CHAIN_PREFIX}{}", self.len)
        } else {
            format!("{CHAIN_PREFIX}{}", spelling(&self.layers()))
        }
    }

    fn parse(name: &str, spec: &str) -> Result<Chain, TopologyError> {
        let bad_depth = || TopologyError::ChainDepth {
            name: name.to_owned(),
        };
        if spec.starts_with(|c: char| c.is_ascii_digit()) {
            let depth = spec.parse::<u8>().map_err(|_| bad_depth())?;
            return Chain::new(depth).map_err(|_| bad_depth());
        }
        if spec.is_empty() {
            return Err(bad_depth());
        }
        let forwardings = spec
            .chars()
            .map(|c| match c {
                ROUTED_LETTER => Ok(Forwarding::Routed),
                PROXIED_LETTER => Ok(Forwarding::Proxied),
                _ => Err(TopologyError::ChainLetter {
                    name: name.to_owned(),
                    letter: c,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Chain::of(&forwardings).map_err(|_| bad_depth())
    }
}

const CHAIN_STANDS_FOR: &str = "a synthetic chain: routed layers are generic bridges \
                                (br<i>, 10.<i>.0.0/24), proxied ones the real \
                                slirp4netns; no real system";

/// The chain from the EC2 host to the place where a client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topology {
    /// A named preset.
    Preset(Preset),
    /// `chain:N` or `chain:rrpr`.
    Chain(Chain),
}

/// A topology name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Neither a preset nor `chain:...`.
    #[error("unknown topology `{name}`; valid names: {}", valid_names())]
    Unknown {
        /// The name given.
        name: String,
    },
    /// `chain:N` with N not a number in 0..=MAX_CHAIN, or more letters than that.
    #[error(
        "bad chain in `{name}`: a chain has 0..={MAX_CHAIN} layers; valid names: {}",
        valid_names()
    )]
    ChainDepth {
        /// The name given.
        name: String,
    },
    /// `chain:` with a letter other than `r` and `p`.
    #[error(
        "bad layer `{letter}` in `{name}`: spell a chain's layers from the host outwards \
         with `{ROUTED_LETTER}` (routed) and `{PROXIED_LETTER}` (proxied by slirp4netns), \
         e.g. `chain:rrpr`"
    )]
    ChainLetter {
        /// The name given.
        name: String,
        /// The letter.
        letter: char,
    },
}

/// The presets' names, for messages: `host, docker-run, ...`.
pub fn preset_names() -> String {
    Preset::VARIANTS
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The valid topology names, for messages: the presets and the chains.
pub fn valid_names() -> String {
    format!(
        "{}, {CHAIN_PREFIX}N (N = 0..={MAX_CHAIN} routed layers), \
         {CHAIN_PREFIX}LETTERS (e.g. {CHAIN_PREFIX}rrpr: {ROUTED_LETTER} routed, \
         {PROXIED_LETTER} proxied, from the host outwards)",
        preset_names()
    )
}

impl Topology {
    /// Parses a preset name, `chain:N` or `chain:rrpr`.
    pub fn parse(name: &str) -> Result<Topology, TopologyError> {
        if let Ok(preset) = name.parse::<Preset>() {
            return Ok(Topology::Preset(preset));
        }
        if let Some(spec) = name.strip_prefix(CHAIN_PREFIX) {
            return Chain::parse(name, spec).map(Topology::Chain);
        }
        Err(TopologyError::Unknown {
            name: name.to_owned(),
        })
    }

    /// `chain:N`: N generic routing layers.
    pub fn chain(depth: u8) -> Result<Topology, TopologyError> {
        Chain::new(depth).map(Topology::Chain)
    }

    /// The named presets, in [`Preset`]'s order.
    pub fn presets() -> Vec<Topology> {
        Preset::VARIANTS
            .iter()
            .copied()
            .map(Topology::Preset)
            .collect()
    }

    /// The preset, if this is one.
    pub fn preset(&self) -> Option<Preset> {
        match *self {
            Topology::Preset(preset) => Some(preset),
            Topology::Chain(_) => None,
        }
    }

    /// The name: a preset's name, `chain:N` or `chain:rrpr`.
    pub fn name(&self) -> Cow<'static, str> {
        match *self {
            Topology::Preset(preset) => preset.name().into(),
            Topology::Chain(chain) => chain.name().into(),
        }
    }

    /// The layers, from the host outwards; the client runs behind the last.
    pub fn layers(&self) -> Cow<'static, [Layer]> {
        match *self {
            Topology::Preset(preset) => preset.layers().into(),
            Topology::Chain(chain) => chain.layers().into(),
        }
    }

    /// The layers spelled a letter each (`rrp`; `-` for none).
    pub fn spelling(&self) -> String {
        spelling(&self.layers())
    }

    /// The real system this stands for.
    pub fn stands_for(&self) -> &'static str {
        match *self {
            Topology::Preset(preset) => preset.stands_for(),
            Topology::Chain(_) => CHAIN_STANDS_FOR,
        }
    }

    /// The number of layers between the host and the client, of either kind.
    pub fn depth(&self) -> usize {
        match *self {
            Topology::Preset(preset) => preset.layers().len(),
            Topology::Chain(chain) => chain.depth().into(),
        }
    }

    /// The routed layers between the host and the first proxied layer: the ones the
    /// token response must cross with the instance's TTL.
    pub fn routed_hops(&self) -> usize {
        leading_routed(self.layers().iter())
    }

    /// Whether a user-space stack stands between the host and the client.
    pub fn is_proxied(&self) -> bool {
        self.layers()
            .iter()
            .any(|l| l.forwarding() == Forwarding::Proxied)
    }

    /// What the model predicts: the smallest `HttpPutResponseHopLimit` with which a
    /// process at the leaf gets its token is 1 + [`Self::routed_hops`]. The harness
    /// measures it.
    pub fn min_hop_limit(&self) -> HopLimit {
        for_routed(self.routed_hops())
    }

    /// What the TTL probe at the leaf sees: a TCP connect ends at the nearest
    /// user-space stack, so it counts only the routed layers after the last proxied one
    /// (all of them when none is proxied): 1 + those. It equals
    /// [`Self::min_hop_limit`] unless a proxied layer has routed layers on its host side
    /// (too low) or its leaf side (too high).
    pub fn ttl_probe_hop_limit(&self) -> HopLimit {
        for_routed(leading_routed(self.layers().iter().rev()))
    }

    /// Whether builds here are Earthly's.
    pub fn is_earthly(&self) -> bool {
        self.preset().is_some_and(Preset::is_earthly)
    }

    /// Where a build here runs, with the hops that count, for a diagnosis: "in a
    /// `docker build` RUN step (1 routing hop)".
    pub fn where_it_runs(&self) -> String {
        let hops = match self.routed_hops() {
            0 => "no routing hop".to_owned(),
            1 => "1 routing hop".to_owned(),
            n => format!("{n} routing hops"),
        };
        let hops = if self.is_proxied() {
            format!("{hops} before a user-space network stack")
        } else {
            hops
        };
        match *self {
            Topology::Preset(preset) => format!("{} ({hops})", preset.where_it_runs()),
            Topology::Chain(_) => format!("behind a synthetic chain, {self} ({hops})"),
        }
    }

    /// The chain written out, e.g.
    /// `host -> docker0 (172.17.0.0/16) -> cni0 (172.30.0.0/16) -> probe`.
    pub fn describe(&self) -> String {
        let mut parts = vec!["host".to_owned()];
        parts.extend(self.layers().iter().map(Layer::to_string));
        parts.push("probe".to_owned());
        parts.join(" -> ")
    }
}

impl From<Preset> for Topology {
    fn from(preset: Preset) -> Self {
        Topology::Preset(preset)
    }
}

/// By name, as the baseline file lists them.
impl Ord for Topology {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(&other.name())
    }
}

impl PartialOrd for Topology {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Topology {
    type Err = TopologyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topology::parse(s)
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Serialized as its name.
impl Serialize for Topology {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// Deserialized from its name.
impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Topology::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Topology {
        Topology::parse(name).unwrap()
    }

    #[test]
    fn presets_have_the_briefs_depths_and_the_models_needs() {
        let got: Vec<(String, String, u8)> = Topology::presets()
            .into_iter()
            .map(|t| (t.to_string(), t.spelling(), t.min_hop_limit().get()))
            .collect();
        let expected = [
            ("host", "-", 1),
            ("docker-run", "r", 2),
            ("buildkit-run", "r", 2),
            ("earthly-run", "rr", 3),
            ("earthly-cni", "rr", 3),
            ("earthly-with-docker", "rrr", 4),
            ("podman-run", "r", 2),
            ("podman-rootless", "p", 1),
            ("podman-rootless-pasta", "p", 1),
            ("buildah-run", "r", 2),
            ("gitlab-dind-job", "r", 2),
            ("gitlab-dind-build", "rr", 3),
            ("k8s-pod-dind", "rrr", 4),
        ];
        assert_eq!(got.len(), expected.len());
        for ((name, spelling, hop), (ename, espelling, ehop)) in got.iter().zip(expected) {
            assert_eq!(
                (name.as_str(), spelling.as_str(), *hop),
                (ename, espelling, ehop)
            );
        }
    }

    #[test]
    fn preset_layers() {
        assert_eq!(
            t("earthly-with-docker").layers().as_ref(),
            [
                Layer::Routed(Bridge::Docker),
                Layer::Routed(Bridge::EarthlyCni),
                Layer::Routed(Bridge::WithDocker)
            ]
        );
        assert_eq!(
            t("earthly-run").layers().as_ref(),
            [
                Layer::Routed(Bridge::Docker),
                Layer::Routed(Bridge::EarthlyCni)
            ]
        );
        assert_eq!(
            t("buildkit-run").layers().as_ref(),
            [Layer::Routed(Bridge::Docker)]
        );
        assert_eq!(
            t("podman-rootless").layers().as_ref(),
            [Layer::Proxied(UserStack::Slirp4netns)]
        );
        assert!(t("host").layers().is_empty());
    }

    #[test]
    fn bridge_addresses() {
        assert_eq!(Bridge::Docker.subnet().to_string(), "172.17.0.0/16");
        assert_eq!(Bridge::Docker.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(Bridge::Docker.member(), Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(Bridge::WithDocker.gateway_cidr(), "172.20.0.1/16");
        assert_eq!(Bridge::EarthlyCni.subnet().to_string(), "172.30.0.0/16");
        assert_eq!(Bridge::EarthlyCni.name(), "cni0");
        assert_eq!(Bridge::WithDocker.gateway(), Ipv4Addr::new(172, 20, 0, 1));
        assert_eq!(Bridge::WithDocker.name(), "docker0");
        assert_eq!(Bridge::Podman.name(), "cni-podman0");
        assert_eq!(Bridge::Podman.subnet().to_string(), "10.88.0.0/16");
        assert_eq!(Bridge::Dind.gateway_cidr(), "172.18.0.1/16");
        assert_eq!(Bridge::Pod.subnet().to_string(), "10.244.0.0/24");
        assert_eq!(Bridge::Generic(7).subnet().to_string(), "10.7.0.0/24");
        assert_eq!(Bridge::Generic(7).name(), "br7");
        assert!(Bridge::EarthlyCni
            .subnet()
            .contains(Bridge::EarthlyCni.member()));
        assert!(!Bridge::EarthlyCni
            .subnet()
            .contains(Bridge::Docker.member()));
        assert!(UserStack::SLIRP_SUBNET.contains(UserStack::SLIRP_GATEWAY));
        assert!(UserStack::SLIRP_SUBNET.contains(UserStack::SLIRP_MEMBER));
    }

    #[test]
    fn chains() {
        let zero = t("chain:0");
        assert_eq!(zero.depth(), 0);
        let max = t("chain:32");
        assert_eq!(max.depth(), 32);
        assert_eq!(max.layers()[0], Layer::Routed(Bridge::Generic(1)));
        assert_eq!(max.layers()[31], Layer::Routed(Bridge::Generic(32)));
        assert_eq!(max.min_hop_limit().get(), 33);
        assert_eq!(Topology::chain(3).unwrap(), "chain:3".parse().unwrap());
        for bad in [
            "chain:33",
            "chain:",
            "chain:300",
            &format!("chain:{}", "r".repeat(33)),
        ] {
            let err = Topology::parse(bad).unwrap_err();
            assert!(matches!(err, TopologyError::ChainDepth { .. }), "{bad}");
            assert!(err.to_string().contains("0..=32"), "{err}");
        }
        for bad in ["chain:-1", "chain:x", "chain:+3", "chain:rxp", "chain:R"] {
            let err = Topology::parse(bad).unwrap_err();
            assert!(matches!(err, TopologyError::ChainLetter { .. }), "{bad}");
            assert!(err.to_string().contains("chain:rrpr"), "{err}");
        }
        assert!(Topology::chain(33).is_err());
    }

    #[test]
    fn mixed_chains_and_the_model() {
        let cases = [
            ("chain:p", "chain:p", 1, 1, 1),
            ("chain:rp", "chain:rp", 2, 2, 1),
            ("chain:pr", "chain:pr", 2, 1, 2),
            ("chain:rrpr", "chain:rrpr", 4, 3, 2),
            ("chain:prrr", "chain:prrr", 4, 1, 4),
            ("chain:rrr", "chain:3", 3, 4, 4),
            ("chain:rprp", "chain:rprp", 4, 2, 1),
        ];
        for (name, canonical, depth, need, ttl) in cases {
            let topology = t(name);
            assert_eq!(topology.to_string(), canonical, "{name}");
            assert_eq!(t(canonical), topology, "{name}");
            assert_eq!(topology.depth(), depth, "{name}");
            assert_eq!(topology.min_hop_limit().get(), need, "{name}");
            assert_eq!(topology.ttl_probe_hop_limit().get(), ttl, "{name}");
        }
        let layers = t("chain:rrpr").layers().into_owned();
        assert_eq!(
            layers,
            [
                Layer::Routed(Bridge::Generic(1)),
                Layer::Routed(Bridge::Generic(2)),
                Layer::Proxied(UserStack::Slirp4netns),
                Layer::Routed(Bridge::Generic(4)),
            ]
        );
        assert_eq!(t("chain:rrpr").spelling(), "rrpr");
        assert!(t("chain:rrpr").is_proxied());
        assert!(!t("chain:4").is_proxied());
    }

    #[test]
    fn preset_names_are_spelled_as_before() {
        assert_eq!(
            preset_names(),
            "host, docker-run, buildkit-run, earthly-run, earthly-cni, earthly-with-docker, \
             podman-run, podman-rootless, podman-rootless-pasta, buildah-run, gitlab-dind-job, \
             gitlab-dind-build, k8s-pod-dind"
        );
        for preset in Preset::VARIANTS {
            assert_eq!(preset.name().parse::<Preset>(), Ok(*preset));
            assert_eq!(preset.to_string(), preset.name());
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = Topology::parse("earthly").unwrap_err();
        let msg = err.to_string();
        for preset in Preset::VARIANTS {
            assert!(msg.contains(preset.name()), "{msg}");
        }
        assert!(msg.contains("chain:N"), "{msg}");
        assert!(msg.contains("chain:rrpr"), "{msg}");
        assert!(msg.starts_with("unknown topology `earthly`"), "{msg}");
    }

    #[test]
    fn every_bridge_of_a_chain_has_its_own_subnet_and_short_names() {
        let mut all = Topology::presets();
        all.push(Topology::chain(MAX_CHAIN).unwrap());
        all.push(t("chain:rprpr"));
        for t in all {
            let bridges: Vec<Bridge> = t.layers().iter().filter_map(Layer::bridge).collect();
            for (i, bridge) in bridges.iter().enumerate() {
                assert!(bridge.name().len() <= 15);
                assert!(!bridge.subnet().contains(UserStack::SLIRP_GATEWAY), "{t}");
                for other in &bridges[i + 1..] {
                    assert!(!bridge.subnet().contains(other.gateway()), "{t}");
                    assert!(!other.subnet().contains(bridge.gateway()), "{t}");
                }
            }
        }
    }

    #[test]
    fn display_fromstr_serde_roundtrip() {
        for t in Topology::presets().into_iter().chain([
            Topology::chain(0).unwrap(),
            Topology::chain(5).unwrap(),
            t("chain:rrpr"),
        ]) {
            let name = t.to_string();
            assert_eq!(name, t.name());
            assert_eq!(name.parse::<Topology>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), t);
        }
        assert!(serde_json::from_str::<Topology>("\"nope\"").is_err());
    }

    #[test]
    fn ordered_by_name() {
        let mut all: Vec<Topology> = Topology::presets().into_iter().take(6).collect();
        all.sort();
        let names: Vec<String> = all.iter().map(Topology::to_string).collect();
        assert_eq!(
            names,
            [
                "buildkit-run",
                "docker-run",
                "earthly-cni",
                "earthly-run",
                "earthly-with-docker",
                "host"
            ]
        );
    }

    #[test]
    fn words_for_a_diagnosis() {
        assert_eq!(
            Topology::Preset(Preset::Host).where_it_runs(),
            "on the EC2 host itself (no routing hop)"
        );
        assert_eq!(
            Topology::Preset(Preset::BuildkitRun).where_it_runs(),
            "in a `docker build` RUN step (1 routing hop)"
        );
        assert_eq!(
            Topology::Preset(Preset::EarthlyWithDocker).where_it_runs(),
            "in a container started inside Earthly WITH DOCKER (3 routing hops)"
        );
        assert_eq!(
            Topology::Preset(Preset::PodmanRootless).where_it_runs(),
            "in a rootless Podman container behind slirp4netns, a user-space network stack \
             (no routing hop before a user-space network stack)"
        );
        assert_eq!(
            Topology::chain(5).unwrap().where_it_runs(),
            "behind a synthetic chain, chain:5 (5 routing hops)"
        );
        assert!(Topology::Preset(Preset::EarthlyCni).is_earthly());
        assert!(!Topology::Preset(Preset::GitlabDindBuild).is_earthly());
        assert!(!Topology::chain(2).unwrap().is_earthly());
    }

    #[test]
    fn describe() {
        assert_eq!(
            t("earthly-run").describe(),
            "host -> docker0 (172.17.0.0/16) -> cni0 (172.30.0.0/16) -> probe"
        );
        assert_eq!(
            t("chain:rp").describe(),
            "host -> br1 (10.1.0.0/24) -> slirp4netns (tap0 10.0.2.0/24) -> probe"
        );
        assert_eq!(t("host").describe(), "host -> probe");
    }
}
