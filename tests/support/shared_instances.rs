//! Simulated instances that several docker sweeps of one test take turns on: a sweep's
//! workers lease idle instances (started on first need) and give them back when the
//! sweep ends, so the nested engines an instance has set up, each with its own copy of
//! the probe image, serve the next sweep too instead of being made again. A worker takes
//! its instance when it realises its first topology: the idle one that realised that
//! topology before, if there is one (its nested setup is made).

use std::collections::BTreeSet;
use std::sync::Mutex;

use imds_harness::backend::docker::instance::DockerInstance;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::DockerError;
use imds_harness::backend::{Lab, Site};
use imds_harness::topology::Topology;
use imds_mock::MockConfig;

/// Called with each topology a sweep realises, on the instance it is realised in, before
/// the sweep's own realisation (which then finds the nested setups made).
pub type OnRealise<'l> = dyn Fn(&DockerInstance, &DockerLab, &Topology) + Sync + 'l;

/// An instance and the topologies realised in it.
struct Used {
    instance: DockerInstance,
    realised: BTreeSet<Topology>,
}

/// The instances, idle between sweeps. Dropping it removes them (inside a Tokio runtime).
pub struct SharedInstances<'l> {
    lab: &'l DockerLab,
    config: MockConfig,
    idle: Mutex<Vec<Used>>,
    on_realise: &'l OnRealise<'l>,
}

impl<'l> SharedInstances<'l> {
    /// None yet: the first sweep starts as many as it has workers, each with the mock in
    /// `config`.
    pub fn new(
        lab: &'l DockerLab,
        config: MockConfig,
        on_realise: &'l OnRealise<'l>,
    ) -> SharedInstances<'l> {
        SharedInstances {
            lab,
            config,
            idle: Mutex::new(Vec::new()),
            on_realise,
        }
    }

    /// How many instances are idle: between sweeps, every one started.
    pub fn idle(&self) -> usize {
        self.idle.lock().expect("idle").len()
    }

    /// The idle instances, each with the topologies realised in it (their nested setups
    /// made), for checks of the caller's own after the sweeps.
    pub fn take_idle(&self) -> Vec<(DockerInstance, BTreeSet<Topology>)> {
        std::mem::take(&mut *self.idle.lock().expect("idle"))
            .into_iter()
            .map(|used| (used.instance, used.realised))
            .collect()
    }
}

/// An instance leased by one sweep worker (from its first topology on), back to the idle
/// ones when dropped.
pub struct Lease<'s> {
    idle: &'s Mutex<Vec<Used>>,
    used: Option<Used>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(used) = self.used.take() {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(used);
        }
    }
}

impl<'s> Lab for &'s SharedInstances<'_> {
    type Worker = Lease<'s>;
    type Error = DockerError;

    fn worker(&self) -> Result<Lease<'s>, DockerError> {
        Ok(Lease {
            idle: &self.idle,
            used: None,
        })
    }

    fn realise<'b>(
        &self,
        worker: &'b mut Lease<'s>,
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, DockerError> {
        if worker.used.is_none() {
            let taken = {
                let mut idle = self.idle.lock().expect("idle");
                let at = idle
                    .iter()
                    .position(|used| used.realised.contains(topology))
                    .or_else(|| idle.len().checked_sub(1));
                at.map(|at| idle.swap_remove(at))
            };
            let used = match taken {
                Some(used) => used,
                None => Used {
                    instance: DockerInstance::start(
                        &self.lab.docker,
                        &self.lab.images,
                        self.config.clone(),
                    )?,
                    realised: BTreeSet::new(),
                },
            };
            worker.used = Some(used);
        }
        let used = worker.used.as_mut().expect("taken above");
        used.realised.insert(*topology);
        (self.on_realise)(&used.instance, self.lab, topology);
        self.lab.realise(&mut used.instance, topology)
    }

    fn shared_setup(&self, topology: &Topology) -> Option<&'static str> {
        self.lab.shared_setup(topology)
    }
}
