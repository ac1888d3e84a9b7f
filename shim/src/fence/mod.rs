//! `imds-shim fence`: keep the builds of users behind a user-space network stack away from IMDS.
//!
//! Rootless Podman or Docker run a build's network through slirp4netns or pasta, which end
//! each connection and open a new one from the host, as the user who runs them: the IP TTL
//! starts afresh there, so hop limit 1 does not keep such a build from the instance role. A
//! rule by socket owner in the host's output path does: the named users' sockets cannot reach
//! IMDS (169.254.169.254 and fd00:ec2::254; refused on the host at once), while
//! every other address, the relay's among them (169.254.170.2, 169.254.170.23,
//! fd00:ec2::23), stays as it was.
//!
//! - [`nft`]: nftables (`meta skuid`), a table `inet imdsh_fence` of our own: one atomic
//!   transaction per change.
//! - [`iptables`]: iptables and ip6tables (`-m owner --uid-owner`), a chain `imdsh-fence`
//!   of our own jumped to from `OUTPUT`; a failed change is undone.
//!
//! - [`rules`]: what both share: the addresses, a fence's status, the error.
//!
//! Nothing outside the table or chain named `imdsh...` is touched.

pub mod iptables;
pub mod nft;
pub mod rules;

use std::fmt;

use rules::run;
pub use rules::{Change, FenceError, FenceStatus, IMDS_V4, IMDS_V6};

/// The relay's addresses, which a fenced user still reaches (said in the output only: the
/// fence refuses IMDS and nothing else).
pub const RELAY_ADDRESSES: &str = "169.254.170.2, 169.254.170.23, [fd00:ec2::23]";

/// The firewall the rules go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Firewall {
    /// nftables, through `nft`.
    Nftables,
    /// iptables and ip6tables (either of their back ends: legacy or nf_tables).
    Iptables,
}

impl Firewall {
    /// The firewall this host uses: nftables when `nft` can list the ruleset, else iptables
    /// when `iptables` can list its `OUTPUT` chain.
    pub fn detect() -> Result<Firewall, FenceError> {
        let nft = run("nft", &["list", "tables"], None);
        if nft.is_ok() {
            return Ok(Firewall::Nftables);
        }
        let iptables = run("iptables", &["-w", "-S", "OUTPUT"], None);
        if iptables.is_ok() {
            return Ok(Firewall::Iptables);
        }
        Err(FenceError::NoFirewall {
            nft: nft.err().map(|e| e.to_string()).unwrap_or_default(),
            iptables: iptables.err().map(|e| e.to_string()).unwrap_or_default(),
        })
    }

    /// Where the rules live, as a person reads it.
    pub fn place(self) -> String {
        match self {
            Firewall::Nftables => format!("nftables, table inet {}", nft::TABLE),
            Firewall::Iptables => format!(
                "iptables ({}), chain {} jumped to from OUTPUT",
                iptables::flavour(),
                iptables::CHAIN
            ),
        }
    }

    /// The users fenced now, and whether the rules that fence them are all in place.
    pub fn status(self) -> Result<FenceStatus, FenceError> {
        match self {
            Firewall::Nftables => nft::status(),
            Firewall::Iptables => iptables::status(),
        }
    }

    /// Fences `user`; nothing changes when it is fenced already.
    pub fn apply(self, user: &FencedUser) -> Result<Change, FenceError> {
        match self {
            Firewall::Nftables => nft::apply(user.uid),
            Firewall::Iptables => iptables::apply(user.uid),
        }
    }

    /// Lifts the fence of `user`, and removes the table or chain when no user is left.
    pub fn remove(self, user: &FencedUser) -> Result<Change, FenceError> {
        match self {
            Firewall::Nftables => nft::remove(user.uid),
            Firewall::Iptables => iptables::remove(user.uid),
        }
    }

    /// What [`Self::apply`] would do, as commands a person can read or run.
    pub fn plan(self, user: &FencedUser) -> String {
        match self {
            Firewall::Nftables => format!("nft -f - <<'EOF'\n{}EOF\n", nft::script(user.uid)),
            Firewall::Iptables => iptables::plan(user.uid),
        }
    }
}

/// What this host's firewall says of the fence, for `check`'s note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Survey {
    /// No user is fenced (or neither nftables nor iptables is there).
    Nobody,
    /// Some users are, in `firewall`.
    Fenced {
        /// Where.
        firewall: Firewall,
        /// Who, and what is missing.
        status: FenceStatus,
    },
    /// The firewall could not be read (not root, most often).
    Unreadable(String),
}

impl Survey {
    /// Reads the fence of this host, in either firewall.
    pub fn of_this_host() -> Survey {
        let Ok(firewall) = Firewall::detect() else {
            return Survey::Nobody;
        };
        match firewall.status() {
            Ok(status) if !status.uids.is_empty() => Survey::Fenced { firewall, status },
            // A fence written with --firewall iptables on an nftables host.
            Ok(_) => match Firewall::Iptables.status() {
                Ok(status) if firewall != Firewall::Iptables && !status.uids.is_empty() => {
                    Survey::Fenced {
                        firewall: Firewall::Iptables,
                        status,
                    }
                }
                _ => Survey::Nobody,
            },
            Err(e) => Survey::Unreadable(e.to_string()),
        }
    }

    /// The note `check` prints for builds behind a user-space stack.
    pub fn note(&self) -> String {
        let how = "fence the user that runs them (rootless Podman or Docker) on this host with `imds-shim fence --user NAME --apply`, and give the builds a grant of `imds-shim relay`";
        match self {
            Survey::Nobody => format!(
                "no `imds-shim fence` covers any user here: builds behind a user-space network stack reach IMDS at hop limit 1 and get the instance role without a grant; {how}"
            ),
            Survey::Fenced { firewall, status } => {
                let uids: Vec<String> = status.uids.iter().map(ToString::to_string).collect();
                let mut note = format!(
                    "`imds-shim fence` keeps uid {} from IMDS ({}); builds of any other user behind a user-space network stack still reach it",
                    uids.join(", "),
                    firewall.place()
                );
                if !status.missing.is_empty() {
                    note.push_str(&format!(
                        ". The fence does NOT hold: missing {}; run `imds-shim fence --apply` again",
                        status.missing.join(", ")
                    ));
                }
                note
            }
            Survey::Unreadable(why) => format!(
                "whether `imds-shim fence` covers the users of builds behind a user-space network stack is unknown: the firewall could not be read ({why}); run `imds-shim fence --user NAME --check` as root"
            ),
        }
    }
}

/// A user whose sockets the fence keeps from IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedUser {
    /// The uid the rules match.
    pub uid: u32,
    /// Its name in this host's user database, when it has one.
    pub name: Option<String>,
}

impl FencedUser {
    /// The user named `name`, which must exist.
    pub fn by_name(name: &str) -> Result<Self, FenceError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| FenceError::UserLookup(format!("{name}: {e}")))?
            .ok_or_else(|| FenceError::NoSuchUser(name.to_owned()))?;
        Self::checked(user.uid.as_raw(), Some(user.name))
    }

    /// The user of `uid`, which need not have a name here (a uid of a user namespace).
    pub fn by_uid(uid: u32) -> Result<Self, FenceError> {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        Self::checked(uid, name)
    }

    fn checked(uid: u32, name: Option<String>) -> Result<Self, FenceError> {
        if uid == 0 {
            return Err(FenceError::Root);
        }
        Ok(Self { uid, name })
    }
}

impl fmt::Display for FencedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "uid {} ({name})", self.uid),
            None => write!(f, "uid {} (no user of that uid here)", self.uid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn root_and_unknown_users_are_refused_with_what_to_do() {
        let root = FencedUser::by_uid(0).unwrap_err().to_string();
        assert!(root.contains("uid 0 is root"), "{root}");
        let root = FencedUser::by_name("root").unwrap_err().to_string();
        assert!(root.contains("uid 0 is root"), "{root}");
        let nobody = FencedUser::by_name("imdsh-no-such-user")
            .unwrap_err()
            .to_string();
        assert!(
            nobody.starts_with(
                "no user named \"imdsh-no-such-user\" on this host: nothing was changed"
            ),
            "{nobody}"
        );
        let unnamed = FencedUser::by_uid(4_000_000_000).unwrap();
        assert_eq!(unnamed.name, None);
        assert_eq!(
            unnamed.to_string(),
            "uid 4000000000 (no user of that uid here)"
        );
    }

    #[test]
    fn a_status_covers_a_uid_only_when_nothing_is_missing() {
        let mut status = FenceStatus {
            uids: BTreeSet::from([1000]),
            missing: Vec::new(),
        };
        assert!(status.covers(1000));
        assert!(!status.covers(1001));
        status.missing.push("the IPv4 rule".into());
        assert!(!status.covers(1000));
    }
}
