//! Where a build runs, as data: the chain of *routing* layers between the EC2 host and
//! the place where a client asks IMDS for credentials.
//!
//! Like a mininet topology, what the network looks like is kept apart from the code
//! that builds it (the harness's backends). Every [`Layer`] is a network namespace that
//! forwards (and masquerades) the traffic of the namespace behind it, so it decrements
//! the IP TTL of IMDS's token response by one: a process behind `depth()` layers needs
//! a hop limit of at least `depth() + 1` ([`Topology::min_hop_limit`]).
//!
//! The named [`Preset`]s are the one place that restates the BRIEF's table "Where each
//! kind of build runs"; a new preset is a new variant, and every `match` on presets (the
//! backends, the shim's diagnosis) must then say how it handles it. `chain:N`
//! (N = 0..=[`MAX_CHAIN`]) is a synthetic chain of N generic layers.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::HopLimit;

/// The largest N accepted in `chain:N`.
pub const MAX_CHAIN: u8 = 32;
// Every topology's need is a valid hop limit.
const _: () = assert!((MAX_CHAIN as u32) < 64);

/// The prefix of the synthetic chain topologies' names: `chain:N`.
pub const CHAIN_PREFIX: &str = "chain:";

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

/// One routing layer: a bridge with a gateway address in the parent namespace, the
/// child namespace attached to it with an address in the subnet and a default route
/// via the gateway; the parent forwards and masquerades the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// dockerd's default bridge `docker0`: 172.17.0.0/16, gateway 172.17.0.1,
    /// forwarding and `MASQUERADE` of the subnet (moby's bridge driver).
    DockerBridge,
    /// earthly-buildkitd's CNI network for RUN steps (`buildkitd/cni-conf.json.template`):
    /// bridge `cni0`, `isGateway`, `ipMasq: true`, host-local 172.30.0.0/16.
    CniBridge,
    /// The inner dockerd of Earthly `WITH DOCKER`, started with `--bip 172.20.0.1/16`:
    /// its `docker0` bridge.
    InnerDockerBridge,
    /// A synthetic layer of `chain:N`, numbered 1..=[`MAX_CHAIN`] from the host:
    /// bridge `br<i>`, `10.<i>.0.0/24`.
    Generic(u8),
}

impl Layer {
    /// The subnet behind this layer's bridge.
    pub fn subnet(&self) -> Subnet {
        let (network, prefix_len) = match *self {
            Layer::DockerBridge => (Ipv4Addr::new(172, 17, 0, 0), 16),
            Layer::CniBridge => (Ipv4Addr::new(172, 30, 0, 0), 16),
            Layer::InnerDockerBridge => (Ipv4Addr::new(172, 20, 0, 0), 16),
            Layer::Generic(i) => (Ipv4Addr::new(10, i, 0, 0), 24),
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
    pub fn bridge(&self) -> Cow<'static, str> {
        match *self {
            Layer::DockerBridge | Layer::InnerDockerBridge => "docker0".into(),
            Layer::CniBridge => "cni0".into(),
            Layer::Generic(i) => format!("br{i}").into(),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.bridge(), self.subnet())
    }
}

/// A named preset: one row of the BRIEF's table "Where each kind of build runs" (read
/// from earthly/earthly 6e641c15 (v0.8.16) and moby).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

impl Preset {
    /// Every preset, by depth (the BRIEF's order).
    pub const ALL: [Preset; 6] = [
        Preset::Host,
        Preset::DockerRun,
        Preset::BuildkitRun,
        Preset::EarthlyRun,
        Preset::EarthlyCni,
        Preset::EarthlyWithDocker,
    ];

    /// The name used on the command line and in the baseline.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Host => "host",
            Preset::DockerRun => "docker-run",
            Preset::BuildkitRun => "buildkit-run",
            Preset::EarthlyRun => "earthly-run",
            Preset::EarthlyCni => "earthly-cni",
            Preset::EarthlyWithDocker => "earthly-with-docker",
        }
    }

    /// The routing layers from the EC2 host outwards. Presets that share a network
    /// share these, and every backend builds the network from them.
    pub fn layers(self) -> &'static [Layer] {
        match self {
            Preset::Host => &[],
            Preset::DockerRun | Preset::BuildkitRun => &[Layer::DockerBridge],
            Preset::EarthlyRun | Preset::EarthlyCni => &[Layer::DockerBridge, Layer::CniBridge],
            Preset::EarthlyWithDocker => &[
                Layer::DockerBridge,
                Layer::CniBridge,
                Layer::InnerDockerBridge,
            ],
        }
    }

    /// The real system this stands for.
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
        }
    }

    /// Whether builds here are Earthly's, so that Earthly's own alternative
    /// (`RUN --aws`) applies.
    pub fn is_earthly(self) -> bool {
        match self {
            Preset::Host | Preset::DockerRun | Preset::BuildkitRun => false,
            Preset::EarthlyRun | Preset::EarthlyCni | Preset::EarthlyWithDocker => true,
        }
    }
}

/// `chain:N`: N generic routing layers, N in 0..=[`MAX_CHAIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chain(u8);

impl Chain {
    /// `chain:depth`, if depth is at most [`MAX_CHAIN`].
    pub fn new(depth: u8) -> Result<Chain, TopologyError> {
        if depth > MAX_CHAIN {
            return Err(TopologyError::ChainDepth {
                name: format!("{CHAIN_PREFIX}{depth}"),
            });
        }
        Ok(Chain(depth))
    }

    /// N.
    pub fn depth(self) -> u8 {
        self.0
    }
}

const CHAIN_STANDS_FOR: &str = "a synthetic chain of generic routing layers \
                                (bridge br<i>, 10.<i>.0.0/24), no real system";

/// The chain from the EC2 host to the place where a client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topology {
    /// A named preset.
    Preset(Preset),
    /// `chain:N`.
    Chain(Chain),
}

/// A topology name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Neither a preset nor `chain:N`.
    #[error("unknown topology `{name}`; valid names: {}", valid_names())]
    Unknown {
        /// The name given.
        name: String,
    },
    /// `chain:N` with N not a number in 0..=MAX_CHAIN.
    #[error(
        "bad chain depth in `{name}`: N must be 0..={MAX_CHAIN}; valid names: {}",
        valid_names()
    )]
    ChainDepth {
        /// The name given.
        name: String,
    },
}

/// The presets' names, for messages: `host, docker-run, ...`.
pub fn preset_names() -> String {
    Preset::ALL.map(Preset::name).join(", ")
}

/// The valid topology names, for messages: the presets and `chain:N (N = 0..=32)`.
pub fn valid_names() -> String {
    format!("{}, {CHAIN_PREFIX}N (N = 0..={MAX_CHAIN})", preset_names())
}

impl Topology {
    /// Parses a preset name or `chain:N`.
    pub fn parse(name: &str) -> Result<Topology, TopologyError> {
        if let Some(preset) = Preset::ALL.into_iter().find(|p| p.name() == name) {
            return Ok(Topology::Preset(preset));
        }
        if let Some(n) = name.strip_prefix(CHAIN_PREFIX) {
            let bad_depth = || TopologyError::ChainDepth {
                name: name.to_owned(),
            };
            if n.starts_with('+') {
                return Err(bad_depth());
            }
            let depth = n.parse::<u8>().map_err(|_| bad_depth())?;
            return Chain::new(depth)
                .map(Topology::Chain)
                .map_err(|_| bad_depth());
        }
        Err(TopologyError::Unknown {
            name: name.to_owned(),
        })
    }

    /// `chain:N`: N generic routing layers.
    pub fn chain(depth: u8) -> Result<Topology, TopologyError> {
        Chain::new(depth).map(Topology::Chain)
    }

    /// The named presets, in the BRIEF's order (by depth).
    pub fn presets() -> Vec<Topology> {
        Preset::ALL.into_iter().map(Topology::Preset).collect()
    }

    /// The preset, if this is one.
    pub fn preset(&self) -> Option<Preset> {
        match *self {
            Topology::Preset(preset) => Some(preset),
            Topology::Chain(_) => None,
        }
    }

    /// The name: a preset's name or `chain:N`.
    pub fn name(&self) -> Cow<'static, str> {
        match *self {
            Topology::Preset(preset) => preset.name().into(),
            Topology::Chain(chain) => format!("{CHAIN_PREFIX}{}", chain.depth()).into(),
        }
    }

    /// The routing layers, from the host outwards; the client runs behind the last.
    pub fn layers(&self) -> Cow<'static, [Layer]> {
        match *self {
            Topology::Preset(preset) => preset.layers().into(),
            Topology::Chain(chain) => (1..=chain.depth()).map(Layer::Generic).collect(),
        }
    }

    /// The real system this stands for.
    pub fn stands_for(&self) -> &'static str {
        match *self {
            Topology::Preset(preset) => preset.stands_for(),
            Topology::Chain(_) => CHAIN_STANDS_FOR,
        }
    }

    /// The number of routing layers between the host and the client.
    pub fn depth(&self) -> usize {
        match *self {
            Topology::Preset(preset) => preset.layers().len(),
            Topology::Chain(chain) => chain.depth().into(),
        }
    }

    /// The smallest `HttpPutResponseHopLimit` with which a process at the leaf gets its
    /// token, if every layer routes: `depth() + 1`. The harness measures it; this is
    /// what the model predicts.
    pub fn min_hop_limit(&self) -> HopLimit {
        HopLimit::for_routing_hops(self.depth()).expect("depth <= MAX_CHAIN < 64")
    }

    /// Whether builds here are Earthly's.
    pub fn is_earthly(&self) -> bool {
        self.preset().is_some_and(Preset::is_earthly)
    }

    /// Where a build here runs, with its routing hops, for a diagnosis: "in a `docker
    /// build` RUN step (1 routing hop)".
    pub fn where_it_runs(&self) -> String {
        let hops = match self.depth() {
            0 => "no routing hop".to_owned(),
            1 => "1 routing hop".to_owned(),
            n => format!("{n} routing hops"),
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

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

    #[test]
    fn presets_have_the_briefs_depths() {
        let depths: Vec<(String, usize, u8)> = Topology::presets()
            .into_iter()
            .map(|t| (t.to_string(), t.depth(), t.min_hop_limit().get()))
            .collect();
        let expected = [
            ("host", 0, 1),
            ("docker-run", 1, 2),
            ("buildkit-run", 1, 2),
            ("earthly-run", 2, 3),
            ("earthly-cni", 2, 3),
            ("earthly-with-docker", 3, 4),
        ];
        assert_eq!(depths.len(), expected.len());
        for ((name, depth, hop), (ename, edepth, ehop)) in depths.iter().zip(expected) {
            assert_eq!((name.as_str(), *depth, *hop), (ename, edepth, ehop));
        }
    }

    #[test]
    fn preset_layers() {
        let t = Topology::parse("earthly-with-docker").unwrap();
        assert_eq!(
            t.layers().as_ref(),
            [
                Layer::DockerBridge,
                Layer::CniBridge,
                Layer::InnerDockerBridge
            ]
        );
        assert_eq!(
            Topology::parse("earthly-run").unwrap().layers().as_ref(),
            [Layer::DockerBridge, Layer::CniBridge]
        );
        assert_eq!(
            Topology::parse("buildkit-run").unwrap().layers().as_ref(),
            [Layer::DockerBridge]
        );
        assert!(Topology::parse("host").unwrap().layers().is_empty());
    }

    #[test]
    fn layer_addresses() {
        assert_eq!(Layer::DockerBridge.subnet().to_string(), "172.17.0.0/16");
        assert_eq!(Layer::DockerBridge.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(Layer::DockerBridge.member(), Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(Layer::InnerDockerBridge.gateway_cidr(), "172.20.0.1/16");
        assert_eq!(Layer::CniBridge.subnet().to_string(), "172.30.0.0/16");
        assert_eq!(Layer::CniBridge.bridge(), "cni0");
        assert_eq!(
            Layer::InnerDockerBridge.gateway(),
            Ipv4Addr::new(172, 20, 0, 1)
        );
        assert_eq!(Layer::InnerDockerBridge.bridge(), "docker0");
        assert_eq!(Layer::Generic(7).subnet().to_string(), "10.7.0.0/24");
        assert_eq!(Layer::Generic(7).bridge(), "br7");
        assert!(Layer::CniBridge
            .subnet()
            .contains(Layer::CniBridge.member()));
        assert!(!Layer::CniBridge
            .subnet()
            .contains(Layer::DockerBridge.member()));
    }

    #[test]
    fn chains() {
        let zero = Topology::parse("chain:0").unwrap();
        assert_eq!(zero.depth(), 0);
        let max = Topology::parse("chain:32").unwrap();
        assert_eq!(max.depth(), 32);
        assert_eq!(max.layers()[0], Layer::Generic(1));
        assert_eq!(max.layers()[31], Layer::Generic(32));
        assert_eq!(max.min_hop_limit().get(), 33);
        assert_eq!(Topology::chain(3).unwrap(), "chain:3".parse().unwrap());
        for bad in [
            "chain:33",
            "chain:-1",
            "chain:",
            "chain:x",
            "chain:+3",
            "chain:300",
        ] {
            let err = Topology::parse(bad).unwrap_err();
            assert!(matches!(err, TopologyError::ChainDepth { .. }), "{bad}");
            assert!(err.to_string().contains("0..=32"), "{err}");
        }
        assert!(Topology::chain(33).is_err());
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = Topology::parse("earthly").unwrap_err();
        let msg = err.to_string();
        for preset in Preset::ALL {
            assert!(msg.contains(preset.name()), "{msg}");
        }
        assert!(msg.contains("chain:N"), "{msg}");
        assert!(msg.starts_with("unknown topology `earthly`"), "{msg}");
    }

    #[test]
    fn every_layer_of_a_chain_has_its_own_subnet_and_short_names() {
        let mut all = Topology::presets();
        all.push(Topology::chain(MAX_CHAIN).unwrap());
        for t in all {
            let layers = t.layers();
            for (i, layer) in layers.iter().enumerate() {
                assert!(layer.bridge().len() <= 15);
                for other in &layers[i + 1..] {
                    assert!(!layer.subnet().contains(other.gateway()), "{t}");
                    assert!(!other.subnet().contains(layer.gateway()), "{t}");
                }
            }
        }
    }

    #[test]
    fn display_fromstr_serde_roundtrip() {
        for t in Topology::presets()
            .into_iter()
            .chain([Topology::chain(0).unwrap(), Topology::chain(5).unwrap()])
        {
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
        let mut all = Topology::presets();
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
            Topology::chain(5).unwrap().where_it_runs(),
            "behind a synthetic chain, chain:5 (5 routing hops)"
        );
        assert!(Topology::Preset(Preset::EarthlyCni).is_earthly());
        assert!(!Topology::chain(2).unwrap().is_earthly());
    }

    #[test]
    fn describe() {
        assert_eq!(
            Topology::parse("earthly-run").unwrap().describe(),
            "host -> docker0 (172.17.0.0/16) -> cni0 (172.30.0.0/16) -> probe"
        );
        assert_eq!(Topology::parse("host").unwrap().describe(), "host -> probe");
    }
}
