//! The fence in iptables and ip6tables: a chain `imdsh-fence` of our own in the filter table,
//! jumped to first from `OUTPUT`, with one `-m owner --uid-owner` rule per fenced user and
//! address family. iptables has no transaction: a change that fails half-way is undone.

use std::collections::BTreeSet;

use super::rules::{run, Change, FenceError, FenceStatus, IMDS_V4, IMDS_V6};

/// The chain, ours alone.
pub const CHAIN: &str = "imdsh-fence";
/// The comment on every rule.
const COMMENT: &str = "imds-shim fence";

/// One address family: its command and IMDS's address there.
#[derive(Debug, Clone, Copy)]
struct Family {
    program: &'static str,
    imds: &'static str,
}

fn families() -> [Family; 2] {
    // The addresses as iptables -S prints them back.
    const V4: &str = "169.254.169.254/32";
    const V6: &str = "fd00:ec2::254/128";
    debug_assert!(V4.starts_with(&IMDS_V4.to_string()) && V6.starts_with(&IMDS_V6.to_string()));
    [
        Family {
            program: "iptables",
            imds: V4,
        },
        Family {
            program: "ip6tables",
            imds: V6,
        },
    ]
}

/// `legacy` or `nf_tables`: which back end `iptables` is.
pub fn flavour() -> String {
    run("iptables", &["-V"], None)
        .ok()
        .and_then(|v| {
            v.split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(f, _)| f.to_owned())
        })
        .unwrap_or_else(|| "unknown back end".to_owned())
}

fn rule(family: Family, uid: u32) -> Vec<String> {
    [
        "-d",
        family.imds,
        "-p",
        "tcp",
        "--dport",
        "80",
        "-m",
        "owner",
        "--uid-owner",
        &uid.to_string(),
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "REJECT",
    ]
    .map(str::to_owned)
    .into()
}

fn ipt(family: Family, args: &[&str]) -> Result<String, FenceError> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run(family.program, &all, None)
}

fn holds(family: Family, args: &[&str]) -> bool {
    ipt(family, args).is_ok()
}

fn with<'a>(head: &[&'a str], rest: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(rest.iter().map(String::as_str))
        .collect()
}

/// The chain's rules as `iptables -S` prints them; `None` when there is no chain. The whole
/// table is listed: iptables-nft 1.8.9 calls a chain that does not exist "incompatible".
fn listed(family: Family) -> Result<Option<String>, FenceError> {
    let table = ipt(family, &["-S"])?;
    if !table.lines().any(|l| l == format!("-N {CHAIN}")) {
        return Ok(None);
    }
    let head = format!("-A {CHAIN} ");
    let mut rules = String::new();
    for line in table.lines().filter(|l| l.starts_with(&head)) {
        rules.push_str(line);
        rules.push('\n');
    }
    Ok(Some(rules))
}

/// The uids `-S` lists rules for.
fn uids_in(rules: &str) -> BTreeSet<u32> {
    rules
        .lines()
        .filter(|l| l.starts_with(&format!("-A {CHAIN} ")) && l.contains("-j REJECT"))
        .filter_map(|l| l.split_once("--uid-owner "))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The fence as iptables and ip6tables have it.
pub fn status() -> Result<FenceStatus, FenceError> {
    let [v4, v6] = families();
    let uids = listed(v4)?.map(|r| uids_in(&r)).unwrap_or_default();
    let mut missing = Vec::new();
    if !uids.is_empty() {
        let v6_uids = listed(v6)?.map(|r| uids_in(&r)).unwrap_or_default();
        for uid in uids.difference(&v6_uids) {
            missing.push(format!(
                "the ip6tables rule refusing {IMDS_V6} to uid {uid}"
            ));
        }
        for family in [v4, v6] {
            if !holds(family, &["-C", "OUTPUT", "-j", CHAIN]) {
                missing.push(format!("{}'s jump from OUTPUT to {CHAIN}", family.program));
            }
        }
    }
    Ok(FenceStatus { uids, missing })
}

/// A step done, and how to undo it.
enum Done {
    Chain(Family),
    Rule(Family, u32),
    Jump(Family),
}

/// Fences `uid`: the chain, the rule and the jump in each family, whatever is missing.
pub fn apply(uid: u32) -> Result<Change, FenceError> {
    let mut done = Vec::new();
    let result = apply_steps(uid, &mut done);
    if result.is_err() {
        for step in done.iter().rev() {
            let _ = match step {
                Done::Chain(f) => ipt(*f, &["-X", CHAIN]),
                Done::Rule(f, uid) => ipt(*f, &with(&["-D", CHAIN], &rule(*f, *uid))),
                Done::Jump(f) => ipt(*f, &["-D", "OUTPUT", "-j", CHAIN]),
            };
        }
    }
    result.map(|()| {
        if done.is_empty() {
            Change::Nothing
        } else {
            Change::Made
        }
    })
}

fn apply_steps(uid: u32, done: &mut Vec<Done>) -> Result<(), FenceError> {
    for family in families() {
        if listed(family)?.is_none() {
            ipt(family, &["-N", CHAIN])?;
            done.push(Done::Chain(family));
        }
        let rule = rule(family, uid);
        if !holds(family, &with(&["-C", CHAIN], &rule)) {
            ipt(family, &with(&["-A", CHAIN], &rule))?;
            done.push(Done::Rule(family, uid));
        }
        if !holds(family, &["-C", "OUTPUT", "-j", CHAIN]) {
            ipt(family, &["-I", "OUTPUT", "1", "-j", CHAIN])?;
            done.push(Done::Jump(family));
        }
    }
    Ok(())
}

/// Deletes `uid`'s rules; the jump and the chain too when no rule is left.
pub fn remove(uid: u32) -> Result<Change, FenceError> {
    let mut change = Change::Nothing;
    for family in families() {
        if listed(family)?.is_none() {
            continue;
        }
        let rule = rule(family, uid);
        while holds(family, &with(&["-C", CHAIN], &rule)) {
            ipt(family, &with(&["-D", CHAIN], &rule))?;
            change = Change::Made;
        }
        let left = listed(family)?.unwrap_or_default();
        if !left.lines().any(|l| l.starts_with("-A ")) {
            while holds(family, &["-C", "OUTPUT", "-j", CHAIN]) {
                ipt(family, &["-D", "OUTPUT", "-j", CHAIN])?;
            }
            ipt(family, &["-X", CHAIN])?;
            change = Change::Made;
        }
    }
    Ok(change)
}

/// The commands [`apply`] runs on a host without the chain.
pub fn plan(uid: u32) -> String {
    let mut out = String::new();
    for family in families() {
        let rule = rule(family, uid)
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let p = family.program;
        out.push_str(&format!(
            "{p} -w -N {CHAIN}\n{p} -w -A {CHAIN} {rule}\n{p} -w -I OUTPUT 1 -j {CHAIN}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_read_from_the_chains_rules_only() {
        let listed = "-N imdsh-fence\n\
             -A imdsh-fence -d 169.254.169.254/32 -m owner --uid-owner 4242 -m comment --comment \"imds-shim fence\" -j REJECT --reject-with icmp-port-unreachable\n\
             -A imdsh-fence -d 169.254.169.254/32 -m owner --uid-owner 1000 -m comment --comment \"imds-shim fence\" -j REJECT --reject-with icmp-port-unreachable\n\
             -A OUTPUT -m owner --uid-owner 7 -j REJECT\n";
        assert_eq!(uids_in(listed), BTreeSet::from([1000, 4242]));
        assert!(uids_in("-N imdsh-fence\n").is_empty());
    }

    #[test]
    fn the_plan_names_only_its_own_chain() {
        let plan = plan(1000);
        assert!(plan.contains(
            "iptables -w -A imdsh-fence -d 169.254.169.254/32 -p tcp --dport 80 -m owner --uid-owner 1000 -m comment --comment 'imds-shim fence' -j REJECT\n"
        ), "{plan}");
        assert!(
            plan.contains("ip6tables -w -A imdsh-fence -d fd00:ec2::254/128 "),
            "{plan}"
        );
        for line in plan.lines() {
            assert!(line.contains(" imdsh-fence"), "{line}");
        }
    }
}
