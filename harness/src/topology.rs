//! Nesting topologies as data.
//!
//! A [`Topology`] is the chain of *routing* layers between the EC2 host and the place
//! where a probe runs, like a mininet topology: what the network looks like is kept
//! apart from the code that builds it (see [`crate::backend`]). Every layer is a
//! network namespace that forwards (and masquerades) the traffic of the namespace
//! behind it, so it decrements the IP TTL of IMDS's token response by one: a process
//! behind `depth()` layers needs a hop limit of at least `depth() + 1`
//! ([`Topology::min_hop_limit`]).
//!
//! The named presets and the real system each stands for are in [`PRESETS`], the one
//! place that restates the BRIEF's table "Where each kind of build runs".
//! `chain:N` (N = 0..=[`MAX_CHAIN`]) is a synthetic chain of N generic layers.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest N accepted in `chain:N`.
pub const MAX_CHAIN: u8 = 32;

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
        match *self {
            Layer::DockerBridge => Subnet {
                network: Ipv4Addr::new(172, 17, 0, 0),
                prefix_len: 16,
            },
            Layer::CniBridge => Subnet {
                network: Ipv4Addr::new(172, 30, 0, 0),
                prefix_len: 16,
            },
            Layer::InnerDockerBridge => Subnet {
                network: Ipv4Addr::new(172, 20, 0, 0),
                prefix_len: 16,
            },
            Layer::Generic(i) => Subnet {
                network: Ipv4Addr::new(10, i, 0, 0),
                prefix_len: 24,
            },
        }
    }

    /// The gateway: the bridge's address in the parent namespace (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet().host(1)
    }

    /// The address of the namespace behind the bridge (`.2`: Docker's first container
    /// address, host-local's first lease).
    pub fn member(&self) -> Ipv4Addr {
        self.subnet().host(2)
    }

    /// The bridge's interface name, as the real system names it (≤ 15 bytes).
    pub fn bridge(&self) -> String {
        match *self {
            Layer::DockerBridge | Layer::InnerDockerBridge => "docker0".to_owned(),
            Layer::CniBridge => "cni0".to_owned(),
            Layer::Generic(i) => format!("br{i}"),
        }
    }

    /// What this layer is in the real world.
    pub fn stands_for(&self) -> &'static str {
        match self {
            Layer::DockerBridge => "dockerd's default bridge docker0",
            Layer::CniBridge => "earthly-buildkitd's CNI bridge cni0",
            Layer::InnerDockerBridge => "the WITH DOCKER inner dockerd's docker0",
            Layer::Generic(_) => "a generic routing layer",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.bridge(), self.subnet())
    }
}

/// A named preset: one row of the BRIEF's table.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The name used on the command line.
    pub name: &'static str,
    /// The routing layers from the EC2 host outwards.
    pub layers: &'static [Layer],
    /// The real system this stands for.
    pub stands_for: &'static str,
}

/// The named presets, the one place where each is tied to the real system it stands
/// for (BRIEF: "Where each kind of build runs", read from earthly/earthly 6e641c15
/// (v0.8.16) and moby).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "host",
        layers: &[],
        stands_for: "a process on the EC2 host: Earthly LOCALLY, the Earthly CLI itself \
                     (RUN --aws resolves credentials here)",
    },
    Preset {
        name: "docker-run",
        layers: &[Layer::DockerBridge],
        stands_for: "`docker run` on the default bridge docker0",
    },
    Preset {
        name: "buildkit-run",
        layers: &[Layer::DockerBridge],
        stands_for: "a `docker build` RUN step: dockerd's embedded BuildKit gives each RUN \
                     a netns on docker0 (moby builder-next executor, bridge provider)",
    },
    Preset {
        name: "earthly-run",
        layers: &[Layer::DockerBridge, Layer::CniBridge],
        stands_for: "an Earthly RUN step: earthly-buildkitd runs on docker0 \
                     (`docker run --privileged`, no --network) and runs RUN steps on \
                     its CNI bridge cni0 (172.30.0.0/16, ipMasq)",
    },
    Preset {
        name: "earthly-cni",
        layers: &[Layer::DockerBridge, Layer::CniBridge],
        stands_for: "the network of an Earthly RUN step made exactly: the CNI bridge \
                     plugin with earthly-buildkitd's config (cni0, 172.30.0.0/16, \
                     ipMasq) inside a BuildKit container on docker0",
    },
    Preset {
        name: "earthly-with-docker",
        layers: &[
            Layer::DockerBridge,
            Layer::CniBridge,
            Layer::InnerDockerBridge,
        ],
        stands_for: "a container started inside Earthly WITH DOCKER: the inner dockerd \
                     (bip 172.20.0.1/16) inside an Earthly RUN step (hop count inferred)",
    },
];

const CHAIN_STANDS_FOR: &str = "a synthetic chain of generic routing layers \
                                (bridge br<i>, 10.<i>.0.0/24), no real system";

/// The chain from the EC2 host to the place where a probe runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topology {
    /// The name: a preset's name or `chain:N`.
    pub name: String,
    /// The routing layers, from the host outwards; the probe runs behind the last.
    pub layers: Vec<Layer>,
    /// The real system this stands for.
    pub stands_for: &'static str,
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

/// The valid topology names, for messages: the presets and `chain:N (N = 0..=32)`.
pub fn valid_names() -> String {
    let mut names: Vec<String> = PRESETS.iter().map(|p| p.name.to_owned()).collect();
    names.push(format!("{CHAIN_PREFIX}N (N = 0..={MAX_CHAIN})"));
    names.join(", ")
}

impl Topology {
    /// Parses a preset name or `chain:N`.
    pub fn parse(name: &str) -> Result<Topology, TopologyError> {
        if let Some(preset) = PRESETS.iter().find(|p| p.name == name) {
            return Ok(Topology::from_preset(preset));
        }
        if let Some(n) = name.strip_prefix(CHAIN_PREFIX) {
            let depth = n
                .parse::<u8>()
                .ok()
                .filter(|d| *d <= MAX_CHAIN && !n.starts_with('+'))
                .ok_or_else(|| TopologyError::ChainDepth {
                    name: name.to_owned(),
                })?;
            return Ok(Topology::chain_unchecked(depth));
        }
        Err(TopologyError::Unknown {
            name: name.to_owned(),
        })
    }

    /// `chain:N`: N generic routing layers.
    pub fn chain(depth: u8) -> Result<Topology, TopologyError> {
        if depth > MAX_CHAIN {
            return Err(TopologyError::ChainDepth {
                name: format!("{CHAIN_PREFIX}{depth}"),
            });
        }
        Ok(Topology::chain_unchecked(depth))
    }

    fn chain_unchecked(depth: u8) -> Topology {
        Topology {
            name: format!("{CHAIN_PREFIX}{depth}"),
            layers: (1..=depth).map(Layer::Generic).collect(),
            stands_for: CHAIN_STANDS_FOR,
        }
    }

    fn from_preset(preset: &Preset) -> Topology {
        Topology {
            name: preset.name.to_owned(),
            layers: preset.layers.to_vec(),
            stands_for: preset.stands_for,
        }
    }

    /// The named presets, in the BRIEF's order (by depth).
    pub fn presets() -> Vec<Topology> {
        PRESETS.iter().map(Topology::from_preset).collect()
    }

    /// The number of routing layers between the host and the probe.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// The smallest `HttpPutResponseHopLimit` with which a process at the leaf gets its
    /// token: every routing layer decrements the TTL once, so `depth() + 1`.
    pub fn min_hop_limit(&self) -> u8 {
        u8::try_from(self.depth() + 1).unwrap_or(u8::MAX)
    }

    /// The chain written out, e.g.
    /// `host -> docker0 (172.17.0.0/16) -> cni0 (172.30.0.0/16) -> probe`.
    pub fn describe(&self) -> String {
        let mut parts = vec!["host".to_owned()];
        parts.extend(self.layers.iter().map(Layer::to_string));
        parts.push("probe".to_owned());
        parts.join(" -> ")
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
        f.write_str(&self.name)
    }
}

/// Serialized as its name.
impl Serialize for Topology {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// Deserialized from its name.
impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
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
            .map(|t| (t.name.clone(), t.depth(), t.min_hop_limit()))
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
            t.layers,
            vec![
                Layer::DockerBridge,
                Layer::CniBridge,
                Layer::InnerDockerBridge
            ]
        );
        assert_eq!(
            Topology::parse("earthly-run").unwrap().layers,
            vec![Layer::DockerBridge, Layer::CniBridge]
        );
        assert_eq!(
            Topology::parse("buildkit-run").unwrap().layers,
            vec![Layer::DockerBridge]
        );
        assert!(Topology::parse("host").unwrap().layers.is_empty());
    }

    #[test]
    fn layer_addresses() {
        assert_eq!(Layer::DockerBridge.subnet().to_string(), "172.17.0.0/16");
        assert_eq!(Layer::DockerBridge.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(Layer::DockerBridge.member(), Ipv4Addr::new(172, 17, 0, 2));
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
        assert_eq!(max.layers[0], Layer::Generic(1));
        assert_eq!(max.layers[31], Layer::Generic(32));
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
        for name in [
            "host",
            "docker-run",
            "buildkit-run",
            "earthly-run",
            "earthly-with-docker",
            "chain:N",
        ] {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(msg.starts_with("unknown topology `earthly`"), "{msg}");
    }

    #[test]
    fn every_layer_of_a_chain_has_its_own_subnet_and_short_names() {
        let mut all = Topology::presets();
        all.push(Topology::chain(MAX_CHAIN).unwrap());
        for t in all {
            for (i, layer) in t.layers.iter().enumerate() {
                assert!(layer.bridge().len() <= 15);
                for other in &t.layers[i + 1..] {
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
            assert_eq!(name, t.name);
            assert_eq!(name.parse::<Topology>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), t);
        }
        assert!(serde_json::from_str::<Topology>("\"nope\"").is_err());
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
