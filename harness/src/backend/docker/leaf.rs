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

use std::process::Output;
use std::time::Duration;

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
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit codes of `docker run`/`docker exec` (and of our build script) that mean the
/// container could not run the command at all, not that the client failed.
const DOCKER_FAILURES: [i32; 3] = [125, 126, 127];

/// How a client is started on an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// `docker run --rm` of the probe image on the default bridge.
    Run,
    /// `docker build` whose RUN step runs the client.
    Build,
    /// `docker exec` in a running container.
    Exec(String),
}

/// A leaf in a simulated instance.
pub enum DockerLeaf<'a> {
    /// `host`: the instance's own namespace.
    Host(NamespaceLeaf),
    /// The other presets: a client started on one of the instance's engines.
    Container {
        instance: &'a DockerInstance,
        engine: Engine,
        launch: Launch,
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
        let (engine, launch) = match preset {
            Preset::Host => {
                return Ok(DockerLeaf::Host(NamespaceLeaf {
                    namespace: instance.host_ns().clone(),
                    tools: tools.clone(),
                }))
            }
            Preset::DockerRun => (instance.engine(), Launch::Run),
            Preset::BuildkitRun => (instance.engine(), Launch::Build),
            Preset::EarthlyRun => (instance.buildkitd()?, Launch::Build),
            Preset::EarthlyCni => {
                let (engine, container) = instance.cni_step()?;
                (engine, Launch::Exec(container))
            }
            Preset::EarthlyWithDocker => (instance.with_docker()?, Launch::Run),
            Preset::PodmanRun
            | Preset::PodmanRootless
            | Preset::PodmanRootlessPasta
            | Preset::BuildahRun
            | Preset::GitlabDindJob
            | Preset::GitlabDindBuild
            | Preset::K8sPodDind => {
                return Err(DockerError::UnsupportedTopology {
                    topology: *topology,
                })
            }
        };
        Ok(DockerLeaf::Container {
            instance,
            engine,
            launch,
            preset,
        })
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
fn build_script(probe_image: &str, env: &ClientEnv, argv: &[String]) -> String {
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
if ! DOCKER_BUILDKIT=1 docker build --no-cache --progress=plain --output "type=local,dest=$d/out" "$d" > "$d/log" 2>&1; then
  cat "$d/log" >&2; rm -rf "$d"; exit 125
fi
cat "$d/out/stdout"; cat "$d/out/stderr" >&2
status=$(cat "$d/out/status"); rm -rf "$d"; exit "$status"
"#,
        env = assignments.join(" "),
        command = command.join(" "),
    )
}

impl Leaf for DockerLeaf<'_> {
    fn run(&self, program: Program, args: &[&str], env: &ClientEnv) -> Result<Output, ProbeError> {
        let DockerLeaf::Container {
            instance,
            engine,
            launch,
            ..
        } = self
        else {
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
        argv.extend(args.iter().map(|a| a.to_string()));
        let image = &instance.images().probe;
        let command: Vec<String> = match launch {
            Launch::Run => ["docker", "run", "--rm", "--network", "bridge"]
                .map(String::from)
                .into_iter()
                .chain(env_args(env, "--env"))
                .chain([image.clone()])
                .chain(argv)
                .collect(),
            Launch::Exec(container) => ["docker", "exec"]
                .map(String::from)
                .into_iter()
                .chain(env_args(env, "--env"))
                .chain([container.clone()])
                .chain(argv)
                .collect(),
            Launch::Build => vec!["sh".into(), "-c".into(), build_script(image, env, &argv)],
        };
        let failed = |source: DockerError| ProbeError::Container {
            program: program.description(),
            place: self.place(),
            source: Box::new(source),
        };
        let command = engine.command(command);
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
    }
}
