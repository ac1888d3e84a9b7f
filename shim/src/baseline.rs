//! The hop limit a topology needs: from the recorded baseline (`fixtures/hop-limits.toml`,
//! written by `imds-harness measure --record`) or given with `--need`.
//!
//! When no file is named and the default path does not exist (the usual case on a build
//! host, where only the binary was copied), the copy compiled into the binary is used.

use std::fmt;
use std::path::{Path, PathBuf};

use imds_vocab::baseline::{Baseline, DEFAULT_PATH};
use imds_vocab::{HopLimit, Preset, Topology};
use thiserror::Error;

/// The topology an Earthly `RUN` step builds in: the default.
pub const DEFAULT_TOPOLOGY: Preset = Preset::EarthlyRun;
/// The baseline as recorded when this binary was built.
const EMBEDDED: &str = include_str!("../../fixtures/hop-limits.toml");

/// Why the need could not be found.
#[derive(Debug, Error)]
pub enum NeedError {
    /// The baseline could not be read.
    #[error(transparent)]
    Baseline(#[from] imds_vocab::baseline::BaselineError),
    /// The topology has no entry.
    #[error("the baseline {origin} has no entry for topology {topology:?} (it has: {known}); record it with `imds-harness measure --record`, or give the hop limit with --need")]
    UnknownTopology {
        /// The file.
        origin: String,
        /// The topology asked for.
        topology: String,
        /// The topologies it has.
        known: String,
    },
}

/// Where a need came from, for the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedSource {
    /// `--need N`.
    Flag,
    /// A baseline file.
    File(PathBuf),
    /// The baseline compiled into the binary.
    Embedded,
}

impl fmt::Display for NeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("--need"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Embedded => write!(f, "the baseline built into imds-shim ({DEFAULT_PATH})"),
        }
    }
}

/// The hop limit the builds need, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Where the builds run, e.g. `earthly-run`.
    pub topology: Topology,
    /// The smallest hop limit with which they get credentials.
    pub hop_limit: HopLimit,
    /// Where the number came from.
    pub source: NeedSource,
}

/// Why a topology behind a user-space network stack needs no more than the routing hops
/// before the stack, for `check` and `enforce`; `None` for a routed topology.
pub fn user_space_why(topology: &Topology) -> Option<String> {
    let stack = topology.layers().iter().find_map(|l| match l {
        imds_vocab::topology::Layer::Proxied(stack) => Some(stack.program()),
        imds_vocab::topology::Layer::Routed(_) => None,
    })?;
    let before = match topology.routed_hops() {
        0 => "no routing hop lies between the host and the stack: hop limit 1 is enough".to_owned(),
        1 => "only the 1 routing hop before the stack counts".to_owned(),
        n => format!("only the {n} routing hops before the stack count"),
    };
    Some(format!(
        "{}: {stack} re-sends the token response from the namespace it runs in, and {before}; \
         a higher hop limit would not help these builds, and would let containers on routed \
         networks (docker0, CNI bridges) take the instance role",
        topology.where_it_runs()
    ))
}

/// The need for `topology`: `need` if given, else the entry in `baseline` (or, when no
/// baseline is named and [`DEFAULT_PATH`] does not exist here, in the embedded copy).
pub fn resolve(
    topology: Topology,
    baseline: Option<&Path>,
    need: Option<HopLimit>,
) -> Result<Need, NeedError> {
    if let Some(hop_limit) = need {
        return Ok(Need {
            topology,
            hop_limit,
            source: NeedSource::Flag,
        });
    }
    let default = Path::new(DEFAULT_PATH);
    let (recorded, source) = match baseline {
        Some(path) => (Baseline::load(path)?, NeedSource::File(path.to_owned())),
        None if default.exists() => (Baseline::load(default)?, NeedSource::File(default.into())),
        None => {
            let source = NeedSource::Embedded;
            (Baseline::parse(EMBEDDED, &source.to_string())?, source)
        }
    };
    match recorded.get(&topology) {
        Some(hop_limit) => Ok(Need {
            topology,
            hop_limit,
            source,
        }),
        None => Err(NeedError::UnknownTopology {
            origin: source.to_string(),
            topology: topology.to_string(),
            known: recorded
                .hop_limits
                .keys()
                .map(Topology::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    fn earthly_run() -> Topology {
        DEFAULT_TOPOLOGY.into()
    }

    #[test]
    fn embedded_baseline_has_every_preset() {
        let recorded = Baseline::parse(EMBEDDED, "embedded").unwrap();
        for &preset in Preset::VARIANTS {
            assert!(recorded.get(&preset.into()).is_some(), "{preset}");
        }
    }

    #[test]
    fn user_space_topologies_say_why_they_need_so_little() {
        let why = user_space_why(&Preset::PodmanRootless.into()).unwrap();
        assert_eq!(
            why,
            "in a rootless Podman container behind slirp4netns, a user-space network stack \
             (no routing hop before a user-space network stack): slirp4netns re-sends the token \
             response from the namespace it runs in, and no routing hop lies between the host and \
             the stack: hop limit 1 is enough; a higher hop limit would not help these builds, \
             and would let containers on routed networks (docker0, CNI bridges) take the instance role"
        );
        let why = user_space_why(&Preset::PodmanRootlessPasta.into()).unwrap();
        assert!(why.contains(": pasta re-sends"), "{why}");
        let why = user_space_why(&Topology::parse("chain:rrpr").unwrap()).unwrap();
        assert!(
            why.contains("only the 2 routing hops before the stack count"),
            "{why}"
        );
        for &preset in Preset::VARIANTS {
            let t = Topology::from(preset);
            assert_eq!(user_space_why(&t).is_some(), t.is_proxied(), "{t}");
        }
    }

    #[test]
    fn need_flag_wins_over_any_file() {
        let seven = HopLimit::new(7).unwrap();
        let n = resolve(
            Topology::chain(6).unwrap(),
            Some(Path::new("/nonexistent/b.toml")),
            Some(seven),
        )
        .unwrap();
        assert_eq!(n.hop_limit, seven);
        assert_eq!(n.source, NeedSource::Flag);
    }

    #[test]
    fn file_entries_and_errors() {
        let dir = tempfile_dir();
        let path = dir.join("b.toml");
        std::fs::write(&path, "# c\n[hop-limits]\nearthly-run = 3\nhost = 1\n").unwrap();
        let n = resolve(earthly_run(), Some(&path), None).unwrap();
        assert_eq!(
            (n.hop_limit.get(), n.source),
            (3, NeedSource::File(path.clone()))
        );
        let err = resolve(Preset::DockerRun.into(), Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no entry for topology \"docker-run\" (it has: earthly-run, host)"),
            "{err}"
        );
        std::fs::write(&path, "[hop-limits]\nhost = 65\n").unwrap();
        let err = resolve(Preset::Host.into(), Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("host = 65 is outside 1..=64"), "{err}");
        std::fs::write(&path, "[hop-limits]\nhost = -1\n").unwrap();
        assert!(resolve(Preset::Host.into(), Some(&path), None).is_err());
        std::fs::write(&path, "hop = [").unwrap();
        let err = resolve(Preset::Host.into(), Some(&path), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not valid"), "{err}");
        let err = resolve(Preset::Host.into(), Some(&dir.join("missing.toml")), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read the baseline"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("imds-shim-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
