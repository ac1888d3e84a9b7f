//! Running `ip` and `iptables`: output captured, an error naming the command; and
//! whether this process can run them at all.

#![allow(unsafe_code, reason = "geteuid(2), to refuse early without root")]

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::error::NetnsError;

/// The programs this backend runs.
const TOOLS: [&str; 3] = ["ip", "iptables", "iptables-restore"];

/// Runs `argv` (with `stdin`), capturing its output; an error names the command.
pub(super) fn run(argv: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let mut command = argv.join(" ");
    if let Some(input) = stdin {
        let lines: Vec<&str> = input.lines().collect();
        command.push_str(&format!(" <<< '{}'", lines.join("; ")));
    }
    let spawn = || -> io::Result<std::process::Output> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Scripts are far smaller than a pipe's buffer. A command that exits
            // early fails the write; its exit status tells why.
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output()
    };
    let output = spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::MissingTool {
                program: argv[0].to_owned(),
            }
        } else {
            NetnsError::Io {
                context: format!("running `{command}`"),
                source,
            }
        }
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetnsError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Checks that this process can use the netns backend: root, with `ip` and
/// `iptables` installed.
pub fn check_prerequisites() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(NetnsError::NotRoot { euid });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in TOOLS {
        let found = std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        });
        if !found {
            return Err(NetnsError::MissingTool {
                program: program.to_owned(),
            });
        }
    }
    Ok(())
}
