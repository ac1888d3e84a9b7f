//! What EC2 keeps for one account in one region: its fleet, its launch templates, its
//! instance metadata defaults, its throttle and the actions a service control policy
//! denies in it. The mock's own account and region has
//! one; an organization has one more for every other account and region.

use std::sync::RwLock;

use crate::config::FleetSpec;
use crate::ec2::denied::DeniedActions;
use crate::ec2::fleet::Fleet;
use crate::ec2::launch_templates::{LaunchTemplateSpec, LaunchTemplates};
use crate::ec2::metadata_defaults::MetadataDefaults;
use crate::ec2::throttle::Throttle;

/// One account's EC2 in one region.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) fleet: RwLock<Fleet>,
    pub(crate) launch_templates: RwLock<LaunchTemplates>,
    pub(crate) metadata_defaults: RwLock<MetadataDefaults>,
    pub(crate) throttle: Throttle,
    /// EC2 actions refused to every caller here, as an SCP's explicit deny does.
    pub(crate) denied: DeniedActions,
}

impl Scope {
    /// The scope of `account` in `region` (`None`: the mock's own), with `fleet`
    /// generated (if any), its templates and `extra` ones, the defaults given, refusing
    /// `throttle_rate` of the calls with draws from `throttle_seed`.
    pub(crate) fn new(
        at: Option<(&str, &str)>,
        fleet: Option<FleetSpec>,
        extra: &[LaunchTemplateSpec],
        defaults: MetadataDefaults,
        throttle_rate: f64,
        throttle_seed: u64,
    ) -> Self {
        let (fleet, mut templates) = match fleet {
            Some(spec) => {
                let generated = Fleet::generate_in(at, spec.size, spec.seed);
                (generated.fleet, generated.templates)
            }
            None => (Fleet::default(), Vec::new()),
        };
        templates.extend(extra.iter().cloned());
        Scope {
            fleet: RwLock::new(fleet),
            launch_templates: RwLock::new(LaunchTemplates::new_in(at, &templates)),
            metadata_defaults: RwLock::new(defaults),
            throttle: Throttle::new(throttle_rate, throttle_seed),
            denied: DeniedActions::default(),
        }
    }
}
