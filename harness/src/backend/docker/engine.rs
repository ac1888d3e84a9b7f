//! Docker Engines inside containers, and commands run in them.
//!
//! The harness talks to the machine's engine through its API (bollard). Everything
//! inside a simulated instance is reached the way a user on that instance would reach
//! it: by running the `docker` CLI in the instance container (an API exec), which for a
//! nested engine is `docker exec <container> docker ...`. An [`Engine`] is such a chain.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use super::DockerError;

/// The shell command a dockerd container starts with, dockerd given `args` besides its
/// socket (`--bip=...`, `--host=tcp://...`): /sys and the cgroup hierarchies are mounted
/// read-only in a container that is not `--privileged`; rebinding them read-write lets
/// the inner runc make its cgroups (below the container's own).
pub(crate) fn dockerd_command(args: &[String]) -> Vec<String> {
    let script = format!(
        "mount -o remount,bind,rw /sys && \
         for d in /sys/fs/cgroup/*; do mount -o remount,bind,rw \"$d\"; done; \
         exec dockerd --host=unix:///var/run/docker.sock {}",
        args.iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    vec!["sh".into(), "-c".into(), script]
}

/// dockerd's `--bip` for `bridge`'s gateway (`--bip=172.17.0.1/16`).
pub(crate) fn bip(bridge: crate::topology::Bridge) -> String {
    format!("--bip={}", bridge.gateway_cidr())
}

/// How long an engine may take to answer after its container started.
const READY_TIMEOUT: Duration = Duration::from_mins(1);

/// A Docker Engine inside the simulated instance (the instance's own, or one nested in a
/// container of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// What it is, for messages: "the instance's engine", "earthly-buildkitd's engine".
    pub name: String,
    /// The command that runs a command in the engine's container, from inside the
    /// instance container (`docker exec <c>` per level of nesting; empty for the
    /// instance's own engine).
    pub via: Vec<String>,
}

impl Engine {
    /// The engine of a container `container` started on this one.
    pub fn nested(&self, container: &str, name: &str) -> Engine {
        let mut via = self.via.clone();
        via.extend(["docker".into(), "exec".into(), container.into()]);
        Engine {
            name: name.into(),
            via,
        }
    }

    /// `argv` run in this engine's container: the full command for the instance
    /// container.
    pub fn command(&self, argv: impl IntoIterator<Item = String>) -> Vec<String> {
        self.via.iter().cloned().chain(argv).collect()
    }
}

/// Runs `argv` in `container` through the engine API and collects its output.
pub async fn exec(
    docker: &Docker,
    container: &str,
    argv: Vec<String>,
    timeout: Duration,
) -> Result<Output, DockerError> {
    let failed = |source| DockerError::Api {
        what: format!("running `{}` in {container}", argv.join(" ")),
        source: Box::new(source),
    };
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.clone()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(failed)?;
    let collect = async {
        let mut output = Output {
            status: ExitStatus::from_raw(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = docker.start_exec(&created.id, None).await?
        {
            while let Some(chunk) = stream.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => {
                        output.stderr.extend_from_slice(&message);
                    }
                    other => output.stdout.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        Ok::<_, bollard::errors::Error>(output)
    };
    let mut output = match tokio::time::timeout(timeout, collect).await {
        Ok(result) => result.map_err(failed)?,
        Err(_) => {
            return Err(DockerError::Timeout {
                what: format!("`{}` in {container}", argv.join(" ")),
                after: timeout,
            })
        }
    };
    let inspected = docker.inspect_exec(&created.id).await.map_err(failed)?;
    let code = inspected.exit_code.unwrap_or(-1) as i32;
    output.status = ExitStatus::from_raw((code & 0xff) << 8);
    Ok(output)
}

/// Runs `argv` and fails unless it exits 0; returns its standard output.
pub(crate) async fn exec_ok(
    docker: &Docker,
    container: &str,
    argv: Vec<String>,
    timeout: Duration,
) -> Result<String, DockerError> {
    let command = argv.join(" ");
    let output = exec(docker, container, argv, timeout).await?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(DockerError::Command {
            command,
            status: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Waits until `engine` answers `docker version`.
pub(crate) async fn wait_ready(
    docker: &Docker,
    container: &str,
    engine: &Engine,
) -> Result<(), DockerError> {
    let started = Instant::now();
    let probe =
        engine.command(["docker", "version", "--format", "{{.Server.Version}}"].map(String::from));
    loop {
        let output = exec(docker, container, probe.clone(), Duration::from_secs(10)).await?;
        if output.status.success() {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(DockerError::EngineNotReady {
                engine: engine.name.clone(),
                after: READY_TIMEOUT,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Quotes `word` for `sh`.
pub(crate) fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_engines_chain_docker_exec() {
        let instance = Engine {
            name: "instance".into(),
            via: vec![],
        };
        let bk = instance.nested("earthly-buildkitd", "bk");
        let wd = bk.nested("with-docker", "wd");
        assert_eq!(
            wd.command(["docker".to_string(), "ps".to_string()])
                .join(" "),
            "docker exec earthly-buildkitd docker exec with-docker docker ps"
        );
    }

    #[test]
    fn quoting_survives_sh() {
        assert_eq!(
            sh_quote("http://169.254.169.254/"),
            "http://169.254.169.254/"
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {}", sh_quote("a b'c$HOME"))])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"a b'c$HOME");
    }
}
