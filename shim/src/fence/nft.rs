//! The fence in nftables: table `inet imdsh_fence`, a set `users` of uids (`typeof meta
//! skuid`) and a base chain on the output hook that refuses IMDS to the set's members. Each
//! change is one `nft -f -` transaction: it happens whole or not at all.

use std::collections::BTreeSet;

use serde_json::Value;

use super::rules::{run, Change, FenceError, FenceStatus, IMDS_V4, IMDS_V6};

/// The table, ours alone.
pub const TABLE: &str = "imdsh_fence";
/// Its set of fenced uids.
const SET: &str = "users";
/// Its chain on the output hook.
const CHAIN: &str = "output";

/// The transaction that fences `uid`: declares the table, set and chain (a no-op when they
/// exist), writes the chain's two rules afresh, adds `uid` to the set.
pub fn script(uid: u32) -> String {
    format!(
        "table inet {TABLE} {{\n\
         \tset {SET} {{\n\
         \t\ttypeof meta skuid\n\
         \t\tcomment \"imds-shim fence: these users' sockets cannot reach IMDS\"\n\
         \t}}\n\
         \tchain {CHAIN} {{\n\
         \t\ttype filter hook output priority filter; policy accept;\n\
         \t}}\n\
         }}\n\
         flush chain inet {TABLE} {CHAIN}\n\
         add rule inet {TABLE} {CHAIN} ip daddr {IMDS_V4} tcp dport 80 meta skuid @{SET} counter reject\n\
         add rule inet {TABLE} {CHAIN} ip6 daddr {IMDS_V6} tcp dport 80 meta skuid @{SET} counter reject\n\
         add element inet {TABLE} {SET} {{ {uid} }}\n"
    )
}

/// The fence as nftables has it; no table is an empty fence.
pub fn status() -> Result<FenceStatus, FenceError> {
    let listing = match run("nft", &["-j", "-n", "list", "table", "inet", TABLE], None) {
        Ok(listing) => listing,
        Err(FenceError::Command { stderr, .. }) if stderr.contains("No such file or directory") => {
            return Ok(FenceStatus::default());
        }
        Err(e) => return Err(e),
    };
    parse(&listing)
}

/// Reads `nft -j list table inet imdsh_fence`.
fn parse(listing: &str) -> Result<FenceStatus, FenceError> {
    let unreadable = |why: &str| FenceError::Unreadable {
        what: format!("nft's listing of table inet {TABLE}"),
        why: why.to_owned(),
    };
    let doc: Value = serde_json::from_str(listing).map_err(|e| unreadable(&e.to_string()))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or_else(|| unreadable("no \"nftables\" array"))?;
    let mut uids = BTreeSet::new();
    let mut chain = false;
    let (mut v4, mut v6) = (false, false);
    for item in items {
        if let Some(set) = item.get("set").filter(|s| s["name"] == SET) {
            for elem in set["elem"].as_array().into_iter().flatten() {
                let uid = elem
                    .as_u64()
                    .and_then(|u| u32::try_from(u).ok())
                    .ok_or_else(|| unreadable(&format!("a set element {elem} is not a uid")))?;
                uids.insert(uid);
            }
        }
        if item
            .get("chain")
            .is_some_and(|c| c["name"] == CHAIN && c["hook"] == "output")
        {
            chain = true;
        }
        if let Some(rule) = item.get("rule").filter(|r| r["chain"] == CHAIN) {
            let expr = rule["expr"].to_string();
            let refuses = expr.contains(&format!("\"@{SET}\"")) && expr.contains("\"reject\"");
            v4 |= refuses && expr.contains(&format!("\"{IMDS_V4}\""));
            v6 |= refuses && expr.contains(&format!("\"{IMDS_V6}\""));
        }
    }
    let mut missing = Vec::new();
    if !uids.is_empty() {
        if !chain {
            missing.push(format!("the chain {CHAIN} on the output hook"));
        }
        if !v4 {
            missing.push(format!("the rule refusing {IMDS_V4}"));
        }
        if !v6 {
            missing.push(format!("the rule refusing {IMDS_V6}"));
        }
    }
    Ok(FenceStatus { uids, missing })
}

/// Fences `uid` in one transaction.
pub fn apply(uid: u32) -> Result<Change, FenceError> {
    let before = status()?;
    if before.covers(uid) {
        return Ok(Change::Nothing);
    }
    run("nft", &["-f", "-"], Some(&script(uid)))?;
    Ok(Change::Made)
}

/// Takes `uid` out of the set; deletes the table when it was the last one.
pub fn remove(uid: u32) -> Result<Change, FenceError> {
    let before = status()?;
    if !before.uids.contains(&uid) {
        return Ok(Change::Nothing);
    }
    let command = if before.uids.len() == 1 {
        format!("delete table inet {TABLE}\n")
    } else {
        format!("delete element inet {TABLE} {SET} {{ {uid} }}\n")
    };
    run("nft", &["-f", "-"], Some(&command))?;
    Ok(Change::Made)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nft 1.0.6 (Debian bookworm) lists after `script(4242)`.
    const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "imdsh_fence", "handle": 1}}, {"set": {"family": "inet", "name": "users", "table": "imdsh_fence", "type": "uid", "handle": 2, "comment": "imds-shim fence", "elem": [0, 4242]}}, {"chain": {"family": "inet", "table": "imdsh_fence", "name": "output", "handle": 1, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "imdsh_fence", "chain": "output", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "169.254.169.254"}}, {"match": {"op": "==", "left": {"meta": {"key": "skuid"}}, "right": "@users"}}, {"counter": {"packets": 0, "bytes": 0}}, {"reject": {"type": "icmp", "expr": "port-unreachable"}}]}}, {"rule": {"family": "inet", "table": "imdsh_fence", "chain": "output", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00:ec2::254"}}, {"match": {"op": "==", "left": {"meta": {"key": "skuid"}}, "right": "@users"}}, {"counter": {"packets": 0, "bytes": 0}}, {"reject": {"type": "icmpv6", "expr": "port-unreachable"}}]}}]}"#;

    #[test]
    fn the_listing_gives_the_uids_and_a_rule_deleted_by_hand_is_missing() {
        let status = parse(LISTED).unwrap();
        assert_eq!(status.uids, BTreeSet::from([0, 4242]));
        assert!(status.covers(4242), "{status:?}");
        // The IPv6 rule gone: the fence no longer holds, and says what is missing.
        let (head, _) = LISTED.split_once(", {\"rule\": {\"family\": \"inet\", \"table\": \"imdsh_fence\", \"chain\": \"output\", \"handle\": 6").unwrap();
        let status = parse(&format!("{head}]}}")).unwrap();
        assert!(!status.covers(4242));
        assert_eq!(status.missing, ["the rule refusing fd00:ec2::254"]);
        assert!(parse("not json").is_err());
    }

    #[test]
    fn the_script_touches_only_its_own_table() {
        let script = script(1000);
        for line in script.lines().filter(|l| !l.starts_with('\t') && *l != "}") {
            assert!(
                line.starts_with("table inet imdsh_fence {") || line.contains(" inet imdsh_fence "),
                "{line}"
            );
        }
        assert!(script
            .contains("ip daddr 169.254.169.254 tcp dport 80 meta skuid @users counter reject"));
        assert!(script
            .contains("ip6 daddr fd00:ec2::254 tcp dport 80 meta skuid @users counter reject"));
        assert!(script.ends_with("add element inet imdsh_fence users { 1000 }\n"));
    }
}
