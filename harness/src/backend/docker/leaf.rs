//! How each preset is realised in a simulated instance, and clients run at its leaf.
//!
//! | preset | where the client runs |
//! |---|---|
//! | `host` | a process in the instance's network namespace (this machine's programs) |
//! | `docker-run` | `docker run` of the probe image on the instance's engine |
//! | `buildkit-run` | the RUN step of `DOCKER_BUILDKIT=1 docker build` on the instance's engine |
//! | `earthly-run` | the RUN step of a build on earthly-buildkitd's engine (a BuildKit container on docker0) |
//! | `earthly-cni` | a RUN step's netns made by the CNI bridge plugin with Earthly's config, inside earthly-buildkitd |
//! | `earthly-with-docker` | `docker run` on the engine of a `WITH DOCKER` step (on cni0) inside earthly-buildkitd |
//! | `podman-run` | rootful `podman run` of the probe image on Podman's default CNI network `podman` (cni-podman0, 10.88.0.0/16) |
//! | `podman-rootless` | rootless `podman run` as the instance's user `imdsh`, on its default network: slirp4netns in the instance's namespace |
//! | `podman-rootless-pasta` | `podman exec` in a rootless container (`--network none`) that pasta, run by `imdsh`, serves as Podman 4.4+ would for `--network pasta` |
//! | `buildah-run` | the RUN step of a rootful `buildah bud` (its default isolation and network: cni-podman0) |
//! | `gitlab-dind-job` | `docker run` of a job container `--link gitlab-dind:docker` with `DOCKER_HOST=tcp://docker:2375`, beside the dind service on docker0 |
//! | `gitlab-dind-build` | `docker run` through the dind service (from a job container with the docker CLI): on the service's docker0 172.18.0.0/16 |
//! | `k8s-pod-dind` | `docker run` on a pod's dind sidecar (docker0 172.17.0.0/16 in the pod's netns), the pod on cni0 10.244.0.0/24 of a node on Docker network `kind` |
//!
//! The setups live in [`super::instance`] (Earthly), [`super::podman`] (Podman, Buildah)
//! and [`super::dind`] (GitLab, kind), each made once per instance on first use.

use std::process::Output;
use std::time::Duration;

use super::dind::GITLAB_DOCKER_HOST;
use super::engine::{sh_quote, Engine};
use super::images::SHIM_IN_IMAGE;
use super::instance::DockerInstance;
use super::DockerError;
use crate::backend::netns::NamespaceLeaf;
use crate::probe::env::ClientEnv;
use crate::probe::{Leaf, ProbeError, Program, Tools};
use crate::topology::{Preset, Topology};

/// Where Debian's AWS CLI is in the probe image.
const AWS_IN_IMAGE: &str = "/usr/bin/aws";

/// The longest a client may take at a leaf, container start or build included.
const CLIENT_TIMEOUT: Duration = Duration::from_mins(2);

/// Exit codes of `docker run`/`docker exec` (and of our build script) that mean the
/// container could not run the command at all, not that the client failed.
const DOCKER_FAILURES: [i32; 3] = [125, 126, 127];

/// How a client is started on an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// `<command> --env K=V ... <target> <program> <args...>`: `docker run --rm` of the
    /// probe image (the target), `docker exec` in a running container (the target),
    /// `podman run`, ...
    Command {
        /// What comes before the `--env` options: `docker run --rm ...`, `docker exec`,
        /// `podman run ...`, with any flags of the launch.
        command: Vec<String>,
        /// What comes after them: the image to run, or the container to exec in.
        target: String,
    },
    /// A build whose RUN step runs the client.
    Build(Builder),
}

/// What runs a build for [`Launch::Build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    /// `DOCKER_BUILDKIT=1 docker build` (dockerd's embedded BuildKit).
    Docker,
    /// `buildah bud` (rootful, its default network and isolation).
    Buildah,
}

impl Launch {
    /// `docker run --rm` of `image` on the engine's default bridge, with `flags`.
    pub fn docker_run(image: &str, flags: &[&str]) -> Launch {
        let mut command: Vec<String> = ["docker", "run", "--rm", "--network", "bridge"]
            .map(String::from)
            .into();
        command.extend(flags.iter().map(ToString::to_string));
        Launch::Command {
            command,
            target: image.to_string(),
        }
    }

    /// `docker run --rm` of `image` with `flags` and no `--network`: on the engine's
    /// default bridge too, which legacy `--link`s need unnamed ("links are only
    /// supported for user-defined networks" when it is named `bridge`).
    pub fn docker_run_linked(image: &str, flags: &[&str]) -> Launch {
        let mut command: Vec<String> = ["docker", "run", "--rm"].map(String::from).into();
        command.extend(flags.iter().map(ToString::to_string));
        Launch::Command {
            command,
            target: image.to_string(),
        }
    }

    /// `docker exec` in `container`.
    pub fn docker_exec(container: &str) -> Launch {
        Launch::Command {
            command: vec!["docker".into(), "exec".into()],
            target: container.to_string(),
        }
    }
}

/// A leaf in a simulated instance.
pub enum DockerLeaf<'a> {
    /// `host`: the instance's own namespace.
    Host(NamespaceLeaf),
    /// The other presets: a client started by a container engine of the instance (a
    /// dockerd, the instance's or one nested in a container, or Podman, Buildah), the
    /// command run in `engine`'s container.
    Container {
        /// The simulated instance the leaf is in.
        instance: &'a DockerInstance,
        /// The engine in whose container the launch command runs.
        engine: Engine,
        /// How the client is started there.
        launch: Launch,
        /// The preset this leaf realises.
        preset: Preset,
    },
}

impl<'a> DockerLeaf<'a> {
    /// Sets up what `topology` needs in `instance` (the BuildKit container, CNI, ...);
    /// `tools` are this machine's programs, for `host`.
    pub fn realise(
        instance: &'a DockerInstance,
        topology: &Topology,
        tools: &Tools,
    ) -> Result<DockerLeaf<'a>, DockerError> {
        let preset = match *topology {
            Topology::Preset(preset) => preset,
            Topology::Chain(_) => {
                return Err(DockerError::UnsupportedTopology {
                    topology: *topology,
                })
            }
        };
        let probe = &instance.images().probe;
        let (engine, launch) = match preset {
            Preset::Host => {
                return Ok(DockerLeaf::Host(NamespaceLeaf {
                    namespace: instance.host_ns().clone(),
                    tools: tools.clone(),
                }))
            }
            Preset::DockerRun => (instance.engine(), Launch::docker_run(probe, &[])),
            Preset::BuildkitRun => (instance.engine(), Launch::Build(Builder::Docker)),
            Preset::EarthlyRun => (instance.buildkitd()?, Launch::Build(Builder::Docker)),
            Preset::EarthlyCni => {
                let (engine, container) = instance.cni_step()?;
                (engine, Launch::docker_exec(&container))
            }
            Preset::EarthlyWithDocker => (instance.with_docker()?, Launch::docker_run(probe, &[])),
            Preset::PodmanRun => (instance.engine(), instance.podman()?.run(probe, &[])),
            Preset::PodmanRootless => (
                instance.engine(),
                instance.podman_rootless()?.run(probe, &[]),
            ),
            Preset::PodmanRootlessPasta => (instance.engine(), instance.podman_rootless_pasta()?),
            Preset::BuildahRun => {
                instance.podman()?;
                (instance.engine(), Launch::Build(Builder::Buildah))
            }
            Preset::GitlabDindJob => {
                let link = instance.gitlab_dind()?;
                (
                    instance.engine(),
                    Launch::docker_run_linked(
                        probe,
                        &["--link", &link, "--env", GITLAB_DOCKER_HOST],
                    ),
                )
            }
            Preset::GitlabDindBuild => (instance.gitlab_job()?, Launch::docker_run(probe, &[])),
            Preset::K8sPodDind => (instance.k8s_sidecar()?, Launch::docker_run(probe, &[])),
        };
        Ok(DockerLeaf::Container {
            instance,
            engine,
            launch,
            preset,
        })
    }

    /// The nested setup that [`DockerLeaf::realise`] makes once per instance for
    /// `preset` and that other presets use too (see [`crate::backend::Lab::shared_setup`]).
    pub fn shared_setup(preset: Preset) -> Option<&'static str> {
        match preset {
            Preset::Host | Preset::DockerRun | Preset::BuildkitRun | Preset::K8sPodDind => None,
            Preset::EarthlyRun | Preset::EarthlyCni | Preset::EarthlyWithDocker => {
                Some("earthly-buildkitd")
            }
            Preset::PodmanRun | Preset::BuildahRun => Some("podman"),
            Preset::PodmanRootless | Preset::PodmanRootlessPasta => Some("podman-rootless"),
            Preset::GitlabDindJob | Preset::GitlabDindBuild => Some("gitlab-dind"),
        }
    }
}

/// The client's environment in a container: `HOME` is the image's empty `/root`; the
/// other paths name files that do not exist there, as they should.
fn in_container(env: &ClientEnv) -> ClientEnv {
    env.clone().with("HOME", "/root")
}

/// `env` as `docker run`/`docker exec` options.
fn env_args(env: &ClientEnv, flag: &str) -> Vec<String> {
    env.vars()
        .iter()
        .flat_map(|(k, v)| [flag.to_string(), format!("{k}={v}")])
        .collect()
}

/// A build whose RUN step runs `argv` with `env` and exports its output, status
/// included, with `-o type=local`; the script replays them, or exits 125 with the
/// build's log if the build itself failed.
fn build_script(builder: Builder, probe_image: &str, env: &ClientEnv, argv: &[String]) -> String {
    let assignments: Vec<String> = env
        .vars()
        .iter()
        .map(|(k, v)| sh_quote(&format!("{k}={v}")))
        .collect();
    let command: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    format!(
        r#"set -u
d=$(mktemp -d)
cat > "$d/Dockerfile" <<'IMDSH_DOCKERFILE'
FROM {probe_image} AS probe
RUN mkdir /imdsh && (env {env} {command} > /imdsh/stdout 2> /imdsh/stderr; echo $? > /imdsh/status)
FROM scratch
COPY --from=probe /imdsh /
IMDSH_DOCKERFILE
if ! {build} --output "type=local,dest=$d/out" "$d" > "$d/log" 2>&1; then
  cat "$d/log" >&2; rm -rf "$d"; exit 125
fi
cat "$d/out/stdout"; cat "$d/out/stderr" >&2
status=$(cat "$d/out/status"); rm -rf "$d"; exit "$status"
"#,
        env = assignments.join(" "),
        command = command.join(" "),
        build = match builder {
            Builder::Docker => "DOCKER_BUILDKIT=1 docker build --no-cache --progress=plain",
            // The image is in the instance's storage (`podman load`); nothing is pulled.
            Builder::Buildah => "buildah bud --no-cache --pull-never",
        },
    )
}

impl DockerLeaf<'_> {
    /// The command, for the instance container, that runs `argv` (a program of the probe
    /// image) at this leaf with `env` (and nothing else of this process's); `None` for
    /// `host`.
    pub fn command(&self, argv: Vec<String>, env: &ClientEnv) -> Option<Vec<String>> {
        let DockerLeaf::Container {
            instance,
            engine,
            launch,
            ..
        } = self
        else {
            return None;
        };
        let command: Vec<String> = match launch {
            Launch::Command { command, target } => command
                .iter()
                .cloned()
                .chain(env_args(env, "--env"))
                .chain([target.clone()])
                .chain(argv)
                .collect(),
            Launch::Build(builder) => vec![
                "sh".into(),
                "-c".into(),
                build_script(*builder, &instance.images().probe, env, &argv),
            ],
        };
        Some(engine.command(command))
    }
}

impl Leaf for DockerLeaf<'_> {
    fn run(&self, program: Program, args: &[&str], env: &ClientEnv) -> Result<Output, ProbeError> {
        let DockerLeaf::Container { instance, .. } = self else {
            let DockerLeaf::Host(leaf) = self else {
                unreachable!()
            };
            return leaf.run(program, args, env);
        };
        let env = &in_container(env);
        let path = match program {
            Program::Shim => SHIM_IN_IMAGE.to_string(),
            Program::AwsCli => AWS_IN_IMAGE.to_string(),
            Program::Sdk(sdk) => sdk.in_image(),
        };
        let mut argv = vec![path];
        argv.extend(args.iter().map(ToString::to_string));
        let command = self.command(argv, env).expect("a container leaf");
        let failed = |source: DockerError| ProbeError::Container {
            program: program.description(),
            place: self.place(),
            source: Box::new(source),
        };
        let shown = command.join(" ");
        let output = instance.exec(command, CLIENT_TIMEOUT).map_err(failed)?;
        match output.status.code() {
            Some(code) if DOCKER_FAILURES.contains(&code) => Err(failed(DockerError::Command {
                command: shown,
                status: code,
                stderr: crate::probe::stderr_tail(&output.stderr),
            })),
            _ => Ok(output),
        }
    }

    fn place(&self) -> String {
        match self {
            DockerLeaf::Host(leaf) => leaf.place(),
            DockerLeaf::Container {
                instance, preset, ..
            } => format!("{preset} in instance {}", instance.container()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_build_runs_the_client_with_its_environment_only() {
        let env = ClientEnv::new(Path::new("/tmp/h"), "http://169.254.169.254/");
        let script = build_script(
            Builder::Docker,
            "imds-harness/probe:abc",
            &in_container(&env),
            &[
                "/usr/bin/aws".into(),
                "sts".into(),
                "get-caller-identity".into(),
            ],
        );
        assert!(script.contains("FROM imds-harness/probe:abc AS probe"));
        assert!(script.contains(" HOME=/root /usr/bin/aws sts"), "{script}");
        assert!(!script.contains("HOME=/tmp/h"), "{script}");
        assert!(script.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT=http://169.254.169.254/"));
        assert!(script.contains(" /usr/bin/aws sts get-caller-identity > /imdsh/stdout"));
        assert!(script.contains("--no-cache"));
        assert!(script.contains("DOCKER_BUILDKIT=1 docker build"));
        let buildah = build_script(Builder::Buildah, "imds-harness/probe:abc", &env, &[]);
        assert!(
            buildah.contains("buildah bud --no-cache --pull-never --output"),
            "{buildah}"
        );
        assert!(!buildah.contains("docker build"));
    }
}
