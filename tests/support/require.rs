//! What a test needs from the machine. Missing: under `CI=true` the test fails; elsewhere
//! it is skipped, loudly.

use std::path::Path;

/// Something a test needs that may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// euid 0, to create network namespaces.
    Root,
    /// `ip` and `iptables`.
    NetTools,
    /// Debian's AWS CLI at [`crate::aws_env::AWS_CLI`].
    AwsCli,
    /// A Docker Engine that answers `docker info`.
    Docker,
}

impl Need {
    fn missing(self) -> Option<String> {
        match self {
            Need::Root => (nix_euid() != 0).then(|| "not running as root".to_string()),
            Need::NetTools => ["/usr/sbin/ip", "/usr/sbin/iptables"]
                .iter()
                .find(|p| !Path::new(p).exists())
                .map(|p| format!("{p} is missing (apt-get install iproute2 iptables)")),
            Need::AwsCli => (!Path::new(crate::aws_env::AWS_CLI).exists()).then(|| {
                format!(
                    "{} is missing (apt-get install awscli)",
                    crate::aws_env::AWS_CLI
                )
            }),
            Need::Docker => docker_missing(),
        }
    }
}

fn docker_missing() -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(err) => Some(format!(
            "the docker CLI cannot run ({err}): apt-get install docker.io"
        )),
        Ok(out) if !out.status.success() => Some(format!(
            "the Docker Engine is not reachable (`docker info`: {}): start the Docker Engine",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// True when every need is met. Otherwise panics under `CI=true`, or prints a loud
/// SKIPPED line and returns false so the test can return early.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("\n!!!!! SKIPPED {test}: {why} !!!!!\n");
    false
}
