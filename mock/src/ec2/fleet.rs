//! A fleet of build hosts beside the mock's own instance: seeded, reproducible, with the
//! tags and the spread of metadata options real CI fleets show (Auto Scaling groups,
//! launch templates, hand-raised hop limits, IMDSv1 left open), served by
//! `DescribeInstances` with EC2's paging and filters.

use std::collections::{BTreeMap, HashMap};

use imds_vocab::tags::{
    ASG as ASG_TAG, LAUNCH_TEMPLATE_ID as LAUNCH_TEMPLATE_ID_TAG,
    LAUNCH_TEMPLATE_VERSION as LAUNCH_TEMPLATE_VERSION_TAG, NAME as NAME_TAG,
    TOPOLOGY as TOPOLOGY_TAG,
};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng};

use crate::ec2::launch_template_data::{LaunchTemplateData, TemplateMetadataOptions};
use crate::ec2::launch_templates::LaunchTemplateSpec;
use crate::options::MetadataOptions;

/// One kind of build host in the generated fleet.
struct Pool {
    /// Share of the fleet, in percent.
    share: u32,
    name: &'static str,
    /// What the builds there are (a topology of the baseline), if the pool says so.
    topology: Option<&'static str>,
    /// An Auto Scaling group launches them.
    asg: bool,
    /// Whether they come from a launch template.
    launch: Launch,
    instance_type: &'static str,
}

/// How a pool's instances are launched.
#[derive(Clone, Copy)]
enum Launch {
    /// Without a launch template.
    Direct,
    /// From a launch template of the pool's name, with this hop limit (`None`: the
    /// template sets no metadata options).
    Template(Option<u32>),
}

const POOLS: &[Pool] = &[
    Pool {
        share: 30,
        name: "gha-runners",
        topology: Some("docker-run"),
        asg: true,
        launch: Launch::Template(Some(2)),
        instance_type: "c6i.xlarge",
    },
    Pool {
        share: 25,
        name: "earthly-builders",
        topology: Some("earthly-run"),
        asg: true,
        launch: Launch::Template(None),
        instance_type: "c6i.2xlarge",
    },
    Pool {
        share: 15,
        name: "gitlab-dind",
        topology: Some("buildkit-run"),
        asg: false,
        launch: Launch::Template(Some(3)),
        instance_type: "m6i.xlarge",
    },
    Pool {
        share: 20,
        name: "karpenter-nodes",
        topology: None,
        asg: false,
        launch: Launch::Direct,
        instance_type: "m7i.large",
    },
    Pool {
        share: 10,
        name: "pets",
        topology: Some("earthly-with-docker"),
        asg: false,
        launch: Launch::Direct,
        instance_type: "t3.large",
    },
];

/// Hop limits a hand or a tool set, drawn when an instance drifted from its template.
const DRIFTED_HOP_LIMITS: &[u32] = &[1, 2, 3, 4, 5, 8, 64];
/// Topology tags that name nothing in the baseline (a typo, a tool not measured).
const UNKNOWN_TOPOLOGY: &str = "kaniko-run";

/// One generated build host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetInstance {
    /// `i-` and 17 hex digits.
    pub instance_id: String,
    /// Its metadata options now.
    pub options: MetadataOptions,
    /// Key order as EC2 lists them (sorted).
    pub tags: BTreeMap<String, String>,
    /// Its instance type.
    pub instance_type: &'static str,
    /// Its private IPv4 address.
    pub private_ip: String,
}

/// The generated instances, in listing order, with an index by id.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    instances: Vec<FleetInstance>,
    index: HashMap<String, usize>,
}

/// What [`Fleet::generate`] makes: the instances and the launch templates they came from.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The instances.
    pub fleet: Fleet,
    /// The launch templates of the pools launched from one.
    pub templates: Vec<LaunchTemplateSpec>,
}

impl Fleet {
    /// `size` instances from `seed` in the mock's own account and region: the same seed
    /// gives the same fleet, byte for byte.
    pub fn generate(size: usize, seed: u64) -> Generated {
        Self::generate_in(None, size, seed)
    }

    /// [`Fleet::generate`] in `scope` (account, region): its templates' ids, and the
    /// instances' tags that name them, are the scope's own
    /// ([`LaunchTemplateSpec::id_in`]).
    pub fn generate_in(scope: Option<(&str, &str)>, size: usize, seed: u64) -> Generated {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let templates: Vec<LaunchTemplateSpec> = POOLS
            .iter()
            .filter_map(|pool| {
                let Launch::Template(hop_limit) = pool.launch else {
                    return None;
                };
                Some(LaunchTemplateSpec {
                    name: pool.name.to_string(),
                    data: LaunchTemplateData {
                        image_id: Some("ami-0abcdef1234567890".into()),
                        instance_type: Some(pool.instance_type.into()),
                        key_name: Some("ci".into()),
                        security_group_ids: Some(vec![format!("sg-0{}", &hex(&mut rng)[..16])]),
                        user_data: Some(format!("IyEvYmluL3NoCmVjaG8g{}", pool.name.len())),
                        iam_instance_profile_name: Some("imds-harness-build-role".into()),
                        metadata_options: hop_limit.map(|hops| TemplateMetadataOptions {
                            http_tokens: Some(HttpTokens::Required),
                            hop_limit: Some(HopLimit::new(hops).expect("a pool's hop limit")),
                            http_endpoint: Some(HttpEndpoint::Enabled),
                            ..TemplateMetadataOptions::default()
                        }),
                    },
                })
            })
            .collect();
        let total: u32 = POOLS.iter().map(|p| p.share).sum();
        let mut fleet = Fleet::default();
        while fleet.instances.len() < size {
            let mut pick = rng.random_range(0..total);
            let pool = POOLS
                .iter()
                .find(|p| {
                    let hit = pick < p.share;
                    pick = pick.saturating_sub(p.share);
                    hit
                })
                .expect("shares add up");
            let instance_id = format!("i-0{}", hex(&mut rng));
            if fleet.index.contains_key(&instance_id) {
                continue;
            }
            let n = fleet.instances.len();
            let template_hops = match pool.launch {
                Launch::Template(Some(hops)) => hops,
                // A template without metadata options, or none: EC2's default.
                _ => 1,
            };
            let hop_limit = if rng.random_bool(0.6) {
                template_hops
            } else {
                DRIFTED_HOP_LIMITS[rng.random_range(0..DRIFTED_HOP_LIMITS.len())]
            };
            let options = MetadataOptions {
                hop_limit: HopLimit::new(hop_limit).expect("a drawn hop limit"),
                http_tokens: if rng.random_bool(0.15) {
                    HttpTokens::Optional
                } else {
                    HttpTokens::Required
                },
                http_endpoint: if rng.random_bool(0.02) {
                    HttpEndpoint::Disabled
                } else {
                    HttpEndpoint::Enabled
                },
                http_protocol_ipv6: Toggle::Disabled,
                instance_metadata_tags: Toggle::Disabled,
            };
            let mut tags = BTreeMap::new();
            tags.insert(NAME_TAG.to_string(), format!("{}-{n:05}", pool.name));
            tags.insert(
                "team".to_string(),
                ["build", "platform", "data"][n % 3].into(),
            );
            if let Some(topology) = pool.topology {
                let roll = rng.random_range(0..1000);
                let tag = match roll {
                    0..=4 => Some(UNKNOWN_TOPOLOGY),
                    5..=99 => None,
                    _ => Some(topology),
                };
                if let Some(tag) = tag {
                    tags.insert(TOPOLOGY_TAG.to_string(), tag.to_string());
                }
            }
            if pool.asg {
                tags.insert(ASG_TAG.to_string(), pool.name.to_string());
            }
            if matches!(pool.launch, Launch::Template(_)) {
                tags.insert(
                    LAUNCH_TEMPLATE_ID_TAG.to_string(),
                    LaunchTemplateSpec::id_in(scope, pool.name),
                );
                tags.insert(LAUNCH_TEMPLATE_VERSION_TAG.to_string(), "1".to_string());
            }
            if pool.name == "karpenter-nodes" {
                tags.insert("karpenter.sh/nodepool".to_string(), "default".to_string());
            }
            fleet.push(FleetInstance {
                instance_id,
                options,
                tags,
                instance_type: pool.instance_type,
                private_ip: format!("10.{}.{}.{}", 1 + n / 65_536, (n / 256) % 256, n % 256),
            });
        }
        Generated { fleet, templates }
    }

    fn push(&mut self, instance: FleetInstance) {
        self.index
            .insert(instance.instance_id.clone(), self.instances.len());
        self.instances.push(instance);
    }

    /// Every instance, in listing order.
    pub fn instances(&self) -> &[FleetInstance] {
        &self.instances
    }

    /// How many instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The instance `instance_id`, if it is in the fleet.
    pub fn get(&self, instance_id: &str) -> Option<&FleetInstance> {
        self.index.get(instance_id).map(|&i| &self.instances[i])
    }

    pub(crate) fn get_mut(&mut self, instance_id: &str) -> Option<&mut FleetInstance> {
        self.index.get(instance_id).map(|&i| &mut self.instances[i])
    }
}

/// 16 lower-case hex digits.
fn hex(rng: &mut ChaCha8Rng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_another_seed_another() {
        let a = Fleet::generate(500, 7);
        let b = Fleet::generate(500, 7);
        assert_eq!(a.fleet.instances(), b.fleet.instances());
        let c = Fleet::generate(500, 8);
        assert_ne!(a.fleet.instances(), c.fleet.instances());
        assert_eq!(a.fleet.len(), 500);
        assert_eq!(a.templates.len(), 3);
    }

    #[test]
    fn the_fleet_has_the_spread_it_claims() {
        let fleet = Fleet::generate(5000, 1).fleet;
        let share = |f: &dyn Fn(&FleetInstance) -> bool| {
            fleet.instances().iter().filter(|i| f(i)).count() as f64 / fleet.len() as f64
        };
        let optional = share(&|i| i.options.http_tokens == HttpTokens::Optional);
        assert!((0.12..0.18).contains(&optional), "{optional}");
        let in_asg = share(&|i| i.tags.contains_key(ASG_TAG));
        assert!((0.50..0.60).contains(&in_asg), "{in_asg}");
        let untagged = share(&|i| !i.tags.contains_key(TOPOLOGY_TAG));
        assert!((0.25..0.35).contains(&untagged), "{untagged}");
        assert!(fleet
            .instances()
            .iter()
            .any(|i| i.tags.get(TOPOLOGY_TAG).map(String::as_str) == Some(UNKNOWN_TOPOLOGY)));
        for i in fleet.instances() {
            assert!(crate::instance::InstanceIdentity::is_well_formed_instance_id(&i.instance_id));
        }
    }
}
