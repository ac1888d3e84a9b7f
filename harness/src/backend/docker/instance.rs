//! A simulated EC2 instance: a container with no network to the outside whose network
//! namespace plays the EC2 host, the mock AWS side one link away at 169.254.169.254
//! (as in the netns backend), and a Docker Engine of its own with the probe image.
//!
//! ```text
//!  root ns (untouched)   <prefix>-m (mock)        instance container (--network none)
//!                        eth0 169.254.169.254/16 = eth0 169.254.0.1/16   (<prefix>-h)
//!                                                 dockerd: docker0 172.17.0.1/16
//!                                                   `- earthly-buildkitd (dockerd, docker0 172.18.0.1/16,
//!                                                        cni0 172.30.0.1/16 made by the CNI bridge plugin)
//!                                                        `- with-docker on cni0 (dockerd, docker0 172.20.0.1/16)
//!                                                 podman, buildah: cni-podman0 10.88.0.1/16;
//!                                                   rootless (user imdsh): slirp4netns, pasta
//!                                                 gitlab-dind, gitlab-job, kind network and node:
//!                                                   see `dind.rs`
//! ```
//!
//! Nothing in the instance has a route beyond 169.254.0.0/16: the container starts with
//! only `lo`, and its one link ends in the mock's namespace.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard::Docker;

use super::engine::{self, Engine};
use super::images::ImageSet;
use super::settings::EngineContainer;
use super::{block_on, DockerError, LABEL, LIVE, RUN_LABEL};
use crate::backend::netns::{start_cell_mock, start_mock, Namespace, NetnsRealisation};
use crate::lifecycle::{self, NAME_PREFIX};
use crate::topology::Bridge;
use imds_mock::{MockAws, MockConfig};

/// Where the image tars are mounted in every container that loads images.
pub(crate) const IMAGES_MOUNT: &str = "/images";
/// The name of the BuildKit container on the instance's engine, as Earthly names it.
pub(crate) const BUILDKITD: &str = "earthly-buildkitd";
/// The container of Earthly `WITH DOCKER` on earthly-buildkitd's engine.
pub(crate) const WITH_DOCKER: &str = "with-docker";
/// The container a CNI-attached RUN step's processes run in.
pub(crate) const CNI_STEP: &str = "cni-run-step";

/// The bridges of the nested engines (the instance's own keeps Docker's default).
// The bridges that stand for a topology's layers come from the same data the netns
// backend builds its bridges from (`Bridge`). earthly-buildkitd's own engine bridge is
// not a layer of any preset: `earthly-run` runs its RUN step there, one routing hop
// like the real step's cni0 (`earthly-cni` makes cni0 itself).
const BUILDKITD_BIP: &str = "172.18.0.1/16";

/// A CNI network `name` of the `bridge` plugin on `bridge`'s name and subnet,
/// `isGateway`, `ipMasq`, host-local addresses and a default route: the shape of
/// earthly-buildkitd's config and of a kind-like node's pod network.
pub(crate) fn cni_bridge_conf(name: &str, bridge: Bridge) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"{name}","type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,"ipam":{{"type":"host-local","subnet":"{subnet}","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        bridge = bridge.name(),
        subnet = bridge.subnet(),
    )
}

/// earthly-buildkitd's CNI config for RUN steps (`buildkitd/cni-conf.json.template`),
/// with the bridge and subnet of [`Bridge::EarthlyCni`].
pub(crate) fn earthly_cni_conf() -> String {
    cni_bridge_conf("buildkitd", Bridge::EarthlyCni)
}

/// Where earthly-buildkitd keeps its CNI config.
const EARTHLY_CNI_CONF: &str = "/etc/cni/net.d/10-earthly.conf";

/// `/images` bound read-only from the parent container, for engines that load images.
pub(super) fn images_bind() -> String {
    format!("{IMAGES_MOUNT}:{IMAGES_MOUNT}:ro")
}

/// Generous bounds for setting-up commands (image loads, container starts).
const SETUP_TIMEOUT: Duration = Duration::from_mins(3);

/// How long each phase of an instance's start took.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartupTimes {
    /// Container created and started, its engine answering.
    pub engine: Duration,
    /// Mock link and namespace.
    pub link: Duration,
    /// The probe image loaded into the instance's engine.
    pub load: Duration,
}

impl StartupTimes {
    /// The whole start, the three phases together.
    pub fn total(&self) -> Duration {
        self.engine + self.link + self.load
    }
}

/// A running simulated instance. Dropping it stops the mock, removes the namespace
/// names, then the container (with everything inside it).
pub struct DockerInstance {
    // Dropped in this order: the mock, its namespaces, then the container.
    mock: MockAws,
    netns: NetnsRealisation,
    container: InstanceContainer,
    images: ImageSet,
    /// Images loaded per engine (by engine name).
    loaded: Mutex<BTreeSet<(String, String)>>,
    /// What has been set up inside: "buildkitd", "cni", "with-docker", "cni-step",
    /// "podman", "podman-rootless", "gitlab-dind", "kind-node", ... (see [`Self::once`]).
    made: Mutex<BTreeSet<&'static str>>,
    /// How long this instance took to start, by phase.
    pub startup: StartupTimes,
}

/// The instance container on the machine's engine, removed on drop.
struct InstanceContainer {
    docker: Docker,
    name: String,
}

impl InstanceContainer {
    /// Creates and starts the container, registered for Ctrl-C before it exists. A
    /// name some container has already (left by a killed run that had the same id) is
    /// skipped, and that container left alone.
    async fn start(
        docker: &Docker,
        images: &ImageSet,
        run: &str,
    ) -> Result<(InstanceContainer, u32), DockerError> {
        loop {
            let index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("{NAME_PREFIX}{run}-i{index}");
            let container = LIVE.create(&name, || {
                Ok::<_, DockerError>(InstanceContainer {
                    docker: docker.clone(),
                    name: name.clone(),
                })
            })?;
            match container.create(images, run).await {
                Ok(pid) => return Ok((container, pid)),
                Err(DockerError::NameTaken { name }) => {
                    // Not ours: unregistered, so that dropping the guard removes nothing.
                    LIVE.release(&name, || ());
                    tracing::warn!(container = %name, "the name is taken; skipping it");
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn create(&self, images: &ImageSet, run: &str) -> Result<u32, DockerError> {
        let api = |what: &str| {
            let what = format!("{what} {}", self.name);
            move |source| DockerError::Api {
                what,
                source: Box::new(source),
            }
        };
        let labels = [
            (LABEL, "1"),
            (RUN_LABEL, run),
            ("imds-harness.role", "instance"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tars = images.tars.display().to_string();
        let body = ContainerCreateBody {
            image: Some(images.instance.clone()),
            cmd: Some(engine::dockerd_command(&[engine::bip(Bridge::Docker)])),
            labels: Some(labels),
            host_config: Some(
                EngineContainer::instance(format!("{tars}:{IMAGES_MOUNT}:ro")).to_host_config(),
            ),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(self.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|source| match source {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                } => DockerError::NameTaken {
                    name: self.name.clone(),
                },
                source => api("creating")(source),
            })?;
        self.docker
            .start_container(&self.name, None)
            .await
            .map_err(api("starting"))?;
        let inspected = self
            .docker
            .inspect_container(&self.name, None)
            .await
            .map_err(api("inspecting"))?;
        inspected
            .state
            .and_then(|s| s.pid)
            .filter(|pid| *pid > 0)
            .map(|pid| pid as u32)
            .ok_or_else(|| DockerError::Command {
                command: format!("starting {}", self.name),
                status: -1,
                stderr: "the container is not running".into(),
            })
    }
}

impl Drop for InstanceContainer {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let name = self.name.clone();
        // Nothing to do when the Ctrl-C handler took it first.
        let removed = LIVE.release(&self.name, || {
            block_on(async move {
                docker
                    .remove_container(
                        &name,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await
            })
        });
        match removed {
            None
            | Some(
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }),
            ) => {}
            Some(Err(err)) => {
                tracing::warn!(container = %self.name, "removing the instance: {err}");
            }
        }
    }
}

impl DockerInstance {
    /// Starts an instance with the mock in `config` and the probe image loaded. On
    /// error, whatever was made is removed.
    pub fn start(
        docker: &Docker,
        images: &ImageSet,
        config: MockConfig,
    ) -> Result<DockerInstance, DockerError> {
        let run = lifecycle::run_id()?;
        let mut startup = StartupTimes::default();

        let started = Instant::now();
        let (container, pid) = block_on(InstanceContainer::start(docker, images, &run))?;
        let own_engine = instance_engine(&container.name);
        block_on(engine::wait_ready(docker, &container.name, &own_engine))?;
        startup.engine = started.elapsed();

        let started = Instant::now();
        let netns = NetnsRealisation::attach(pid)?;
        let mock = start_mock(netns.mock_ns(), config)?;
        startup.link = started.elapsed();

        let mut instance = DockerInstance {
            mock,
            netns,
            container,
            images: images.clone(),
            loaded: Mutex::new(BTreeSet::new()),
            made: Mutex::new(BTreeSet::new()),
            startup,
        };
        let started = Instant::now();
        instance.load(&own_engine, &instance.images.probe.clone())?;
        instance.startup.load = started.elapsed();
        Ok(instance)
    }

    /// The name of the instance container.
    pub fn container(&self) -> &str {
        &self.container.name
    }

    /// The mock AWS side serving this instance's IMDS, STS and EC2, one link away.
    pub fn mock(&self) -> &MockAws {
        &self.mock
    }

    /// The instance's network namespace (the EC2 host), attached by name: where a process
    /// of the host runs, e.g. `imds-shim relay` in the relay's tests.
    pub fn host_ns(&self) -> &Namespace {
        self.netns.host_ns()
    }

    /// Another mock for one cell of a sweep, in the mock's namespace on an address of its
    /// own on the instance's link: the `made`th of the current topology's cells.
    pub(crate) fn start_cell_mock(&self, made: &AtomicU32) -> Result<MockAws, DockerError> {
        Ok(start_cell_mock(self.netns.mock_ns(), made)?)
    }

    /// The images this instance runs.
    pub fn images(&self) -> &ImageSet {
        &self.images
    }

    /// The instance's own engine.
    pub fn engine(&self) -> Engine {
        instance_engine(self.container())
    }

    /// Runs `argv` in the instance container.
    pub fn exec(
        &self,
        argv: Vec<String>,
        timeout: Duration,
    ) -> Result<std::process::Output, DockerError> {
        block_on(engine::exec(
            &self.container.docker,
            self.container(),
            argv,
            timeout,
        ))
    }

    pub(super) fn exec_ok(&self, argv: Vec<String>) -> Result<String, DockerError> {
        block_on(engine::exec_ok(
            &self.container.docker,
            self.container(),
            argv,
            SETUP_TIMEOUT,
        ))
    }

    /// Loads `tag` into `engine` from the mounted tars, once.
    pub fn load(&self, engine: &Engine, tag: &str) -> Result<(), DockerError> {
        let key = (engine.name.clone(), tag.to_string());
        if self.loaded.lock().expect("loaded").contains(&key) {
            return Ok(());
        }
        let tar = format!("{IMAGES_MOUNT}/{}", ImageSet::tar_name(tag));
        self.exec_ok(
            engine.command(["docker", "load", "--quiet", "--input", &tar].map(String::from)),
        )?;
        self.loaded.lock().expect("loaded").insert(key);
        Ok(())
    }

    /// Runs `make` once per instance for `what`.
    pub(super) fn once(
        &self,
        what: &'static str,
        make: impl FnOnce() -> Result<(), DockerError>,
    ) -> Result<(), DockerError> {
        if self.made.lock().expect("made").contains(what) {
            return Ok(());
        }
        make()?;
        self.made.lock().expect("made").insert(what);
        Ok(())
    }

    /// Starts a dockerd container `name` on `parent` (which must have the instance
    /// image) with `settings` and dockerd's `args`; with `cni` (the path of a CNI config
    /// in `parent`'s container) the container, on `--network none`, is attached with it
    /// before its engine is asked for anything. Waits for its engine.
    pub(super) fn start_engine_container(
        &self,
        parent: &Engine,
        name: &str,
        settings: &EngineContainer,
        args: &[String],
        cni: Option<&str>,
    ) -> Result<Engine, DockerError> {
        let mut run: Vec<String> = ["docker", "run", "--detach", "--name", name]
            .map(String::from)
            .into();
        run.extend(settings.to_cli_flags());
        run.push(self.images.instance.clone());
        run.extend(engine::dockerd_command(args));
        self.exec_ok(parent.command(run))?;
        if let Some(conf) = cni {
            self.cni_attach(parent, name, conf)?;
        }
        let nested = parent.nested(name, &format!("{name}'s engine"));
        self.wait_ready(&nested)?;
        Ok(nested)
    }

    /// Waits until `engine` answers.
    pub(super) fn wait_ready(&self, engine: &Engine) -> Result<(), DockerError> {
        block_on(engine::wait_ready(
            &self.container.docker,
            self.container(),
            engine,
        ))
    }

    /// earthly-buildkitd: a BuildKit container on the instance's default bridge (an
    /// engine with BuildKit embedded), with the probe image.
    pub fn buildkitd(&self) -> Result<Engine, DockerError> {
        let outer = self.engine();
        let engine = outer.nested(BUILDKITD, &format!("{BUILDKITD}'s engine"));
        self.once("buildkitd", || {
            self.load(&outer, &self.images.instance.clone())?;
            self.start_engine_container(
                &outer,
                BUILDKITD,
                &EngineContainer::nested("bridge", images_bind()),
                &[format!("--bip={BUILDKITD_BIP}")],
                None,
            )?;
            self.load(&engine, &self.images.probe.clone())
        })?;
        Ok(engine)
    }

    /// Earthly's CNI network for RUN steps inside earthly-buildkitd: its config, and
    /// forwarding allowed for cni0 (the BuildKit container's engine set the FORWARD
    /// policy to DROP; real earthly-buildkitd runs no dockerd).
    fn cni(&self) -> Result<Engine, DockerError> {
        let bk = self.buildkitd()?;
        self.once("cni", || {
            let script = format!(
                "mkdir -p /etc/cni/net.d && printf '%s' {conf} > {EARTHLY_CNI_CONF} && \
                 iptables -w -I DOCKER-USER -i cni0 -j ACCEPT && \
                 iptables -w -I DOCKER-USER -o cni0 -j ACCEPT",
                conf = engine::sh_quote(&earthly_cni_conf())
            );
            self.exec_ok(bk.command(["sh".into(), "-c".into(), script]))
                .map(drop)
        })?;
        Ok(bk)
    }

    /// Attaches container `name` (started with `--network none` on `parent`) with the
    /// CNI bridge plugin and the config at `conf` in `parent`'s container, as buildkitd
    /// does for a RUN step.
    pub(super) fn cni_attach(
        &self,
        parent: &Engine,
        name: &str,
        conf: &str,
    ) -> Result<(), DockerError> {
        let script = format!(
            "pid=$(docker inspect --format '{{{{.State.Pid}}}}' {name}) && \
             CNI_COMMAND=ADD CNI_CONTAINERID={name} CNI_NETNS=/proc/$pid/ns/net CNI_IFNAME=eth0 \
             CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < {conf}"
        );
        self.exec_ok(parent.command(["sh".into(), "-c".into(), script]))
            .map(drop)
    }

    /// A long-lived container on cni0 in which an Earthly RUN step's processes run.
    pub(crate) fn cni_step(&self) -> Result<(Engine, String), DockerError> {
        let bk = self.cni()?;
        self.once("cni-step", || {
            let run = [
                "docker",
                "run",
                "--detach",
                "--name",
                CNI_STEP,
                "--network",
                "none",
                &self.images.probe,
                "sleep",
                "infinity",
            ]
            .map(String::from);
            self.exec_ok(bk.command(run))?;
            self.cni_attach(&bk, CNI_STEP, EARTHLY_CNI_CONF)
        })?;
        Ok((bk, CNI_STEP.to_string()))
    }

    /// Earthly `WITH DOCKER`: a dockerd in a RUN step (on cni0) inside
    /// earthly-buildkitd, with the probe image.
    pub fn with_docker(&self) -> Result<Engine, DockerError> {
        let bk = self.cni()?;
        let engine = bk.nested(WITH_DOCKER, &format!("{WITH_DOCKER}'s engine"));
        self.once("with-docker", || {
            self.load(&bk, &self.images.instance.clone())?;
            let started = self.start_engine_container(
                &bk,
                WITH_DOCKER,
                &EngineContainer::nested("none", images_bind()),
                &[engine::bip(Bridge::WithDocker)],
                Some(EARTHLY_CNI_CONF),
            )?;
            self.load(&started, &self.images.probe.clone())
        })?;
        Ok(engine)
    }
}

/// The engine of the instance container `name`.
fn instance_engine(name: &str) -> Engine {
    Engine {
        name: format!("the engine of instance {name}"),
        via: Vec::new(),
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earthly_cni_conf_is_earthlys_template_on_the_cni_layer() {
        assert_eq!(
            earthly_cni_conf(),
            r#"{"cniVersion":"0.4.0","name":"buildkitd","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"172.30.0.0/16","routes":[{"dst":"0.0.0.0/0"}]}}"#
        );
    }
}
