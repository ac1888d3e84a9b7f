//! What both firewalls' fences share: IMDS's addresses, a fence's status, the error, and the
//! command runner.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

/// IMDS over IPv4.
pub const IMDS_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// IMDS over IPv6 (Nitro instances).
pub const IMDS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// Whether a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The rules were changed.
    Made,
    /// They were as asked already.
    Nothing,
}

/// The fence as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FenceStatus {
    /// The uids in the fence.
    pub uids: BTreeSet<u32>,
    /// What is missing for the fence to hold (a rule deleted by hand, the jump from OUTPUT).
    pub missing: Vec<String>,
}

impl FenceStatus {
    /// Whether `uid` is kept from IMDS.
    pub fn covers(&self, uid: u32) -> bool {
        self.uids.contains(&uid) && self.missing.is_empty()
    }
}

/// Why the fence could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// `--user` names nobody.
    #[error("no user named {0:?} on this host: nothing was changed (give the user that runs the rootless containers, or --uid)")]
    NoSuchUser(String),
    /// The user database could not be read.
    #[error("cannot look the user up ({0}): nothing was changed")]
    UserLookup(String),
    /// uid 0 was asked for.
    #[error(
        "uid 0 is root: fencing it would keep the relay and imds-shim itself from IMDS; \
         rootless containers run as an unprivileged user: give that one"
    )]
    Root,
    /// Neither nftables nor iptables answers.
    #[error(
        "neither nftables nor iptables can be used here (nft: {nft}; iptables: {iptables}): \
         install nftables or iptables, and run as root"
    )]
    NoFirewall {
        /// Why `nft` failed.
        nft: String,
        /// Why `iptables` failed.
        iptables: String,
    },
    /// A firewall command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, or why it did not run.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// The firewall's listing could not be read.
    #[error("cannot read {what}: {why}")]
    Unreadable {
        /// What was read.
        what: String,
        /// Why it could not be.
        why: String,
    },
}

/// Runs `program args` with `stdin`; its stdout, or the error with its stderr.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, FenceError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |status: String, stderr: String| FenceError::Command {
        command: command.clone(),
        status,
        stderr: stderr.trim().to_owned(),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed("not started".to_owned(), e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| failed("stdin not written".to_owned(), e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed("not waited for".to_owned(), e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(
            out.status.to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}
