//! The human-readable report: one aligned line per step and a one-line verdict.

use std::fmt::Write as _;

use imds_vocab::report::{NetworkDetail, NetworkKind, StepName};

use super::ProbeReport;

const OK: &str = "✓";
const FAILED: &str = "✗";

/// The report as text: the endpoint, the network, a line per step that ran, the verdict,
/// and behind a user-space network stack a note on what the figure means there.
pub fn human(r: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "IMDS endpoint  {}", r.endpoint);
    if let Some(n) = &r.network {
        let _ = writeln!(out, "network        {}", network(n));
    }
    for s in r.steps() {
        let text = match s.error {
            Some(e) => e.to_owned(),
            None => found(r, s.name),
        };
        let mark = if s.ok { OK } else { FAILED };
        let _ = writeln!(
            out,
            "{mark} {:<11} {:>9.1} ms  {text}",
            s.name, s.elapsed_ms
        );
    }
    let _ = writeln!(out, "verdict: {}", verdict(r));
    if let Some(note) = user_space_note(r) {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The network line: kind, interface, next hop.
pub fn network(n: &NetworkDetail) -> String {
    let via = match (&n.gateway, &n.gateway_mac) {
        (Some(gw), Some(mac)) => format!("{}, gateway {gw} ({mac})", n.interface),
        (Some(gw), None) => format!("{}, gateway {gw}", n.interface),
        (None, _) => format!("{}, IMDS on its link", n.interface),
    };
    match n.kind {
        NetworkKind::Routed => format!("routed: via {via}"),
        NetworkKind::UserSpace => match &n.stack {
            Some(stack) => format!("user-space: {stack} (TAP device {via})"),
            None => format!(
                "user-space: a user-space network stack (e.g. pasta) serves TAP device {via}"
            ),
        },
        NetworkKind::Unknown => format!(
            "via {via}; routed or user-space unknown (/sys here shows another namespace's interfaces)"
        ),
    }
}

/// Behind a user-space stack: what the hop limit figure means, and where to look next.
pub fn user_space_note(r: &ProbeReport) -> Option<String> {
    let n = r.network.as_ref().filter(|n| n.is_user_space())?;
    let mut note = format!(
        "this place is behind {}, which ends its connections and opens its own from the \
         network namespace the stack runs in (the host, for rootless Podman or Docker), so the \
         token response is sent afresh from there. The instance's hop limit applies only up to \
         the stack's own place: the figure above is the need here, counted to the stack, and the \
         instance needs 1 + the routing hops between the host and where the stack runs. If a \
         build here still gets no token, run `imds-shim probe` where the stack runs.",
        n.stack_name()
    );
    let dropped = r
        .first_error()
        .is_some_and(|e| e.starts_with("no token response"));
    if dropped {
        note.push_str(
            " The token response was lost on the way to the stack, not here: the stack runs \
             behind routing hops that the instance's hop limit does not cover.",
        );
    }
    let got_the_role = r.credentials.as_ref().is_some_and(|c| c.ok);
    let unreached = r.first_error().is_some_and(|e| {
        ["refused", "no answer from", "could not connect"]
            .iter()
            .any(|s| e.contains(s))
    });
    if got_the_role {
        note.push_str(
            " No fence covers this place: whatever runs here gets the instance role without a \
             grant. On the host, `imds-shim fence --user <the user the stack runs as> --apply` \
             keeps it from IMDS, and `imds-shim relay` serves the builds given a grant.",
        );
    } else if unreached {
        note.push_str(
            " The stack's own connection to IMDS got nowhere: a fence on the host (`imds-shim \
             fence`, a rule by socket owner) keeps this place from IMDS, most likely; builds \
             here get credentials through a grant of `imds-shim relay`.",
        );
    }
    Some(note)
}

/// What a successful step found, in a few words.
fn found(r: &ProbeReport, step: StepName) -> String {
    let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_owned());
    match step {
        StepName::Ttl => match r.hop_limit_needed() {
            Some(k) => format!("hop limit needed: {k}"),
            None => "hop limit not measured".to_owned(),
        },
        StepName::Token => r.token.as_ref().map_or_else(String::new, |t| {
            format!(
                "token ok; instance {}, region {}",
                or(&t.detail.instance_id, "?"),
                or(&t.detail.region, "not served")
            )
        }),
        StepName::Credentials => r.credentials.as_ref().map_or_else(String::new, |c| {
            format!(
                "access key {}, expires {}",
                or(&c.detail.access_key_id, "?"),
                or(&c.detail.expiration, "never")
            )
        }),
        StepName::Identity => r.identity.as_ref().map_or_else(String::new, |i| {
            format!(
                "{} (account {})",
                or(&i.detail.arn, "?"),
                or(&i.detail.account, "?")
            )
        }),
    }
}

/// One line that says whether this place gets the instance role's credentials, and why not.
pub fn verdict(r: &ProbeReport) -> String {
    let to_stack = if r.behind_user_space_stack() {
        " up to the user-space network stack"
    } else {
        ""
    };
    let needs = r
        .hop_limit_needed()
        .map(|k| format!("; it needs hop limit >= {k}{to_stack}"))
        .unwrap_or_default();
    let first_error = |names: &[StepName]| {
        r.steps()
            .into_iter()
            .filter(|s| names.contains(&s.name))
            .find_map(|s| s.error)
            .unwrap_or("unknown reason")
            .to_owned()
    };
    match (&r.credentials, &r.identity) {
        (Some(c), identity) if c.ok => match identity {
            Some(i) if !i.ok => format!(
                "this place gets the instance role's credentials, but STS does not confirm them: {}{needs}",
                i.error.as_deref().unwrap_or("unknown reason")
            ),
            _ => format!("this place gets the instance role's credentials{needs}"),
        },
        (Some(_), _) => format!(
            "this place cannot get credentials: {}{needs}",
            first_error(&[StepName::Ttl, StepName::Token, StepName::Credentials])
        ),
        (None, _) => match &r.ttl {
            Some(t) if t.ok => {
                format!("IMDS is reachable from this place{needs} (credentials not checked)")
            }
            Some(_) => format!(
                "IMDS is not reachable from this place: {}",
                first_error(&[StepName::Ttl])
            ),
            None => "nothing was checked".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_vocab::report::{CredentialsDetail, IdentityDetail, Step, TokenDetail, TtlDetail};
    use std::time::Duration;

    fn ok<T>(ms: u64, detail: T) -> Step<T> {
        Step {
            ok: true,
            elapsed_ms: ms as f64,
            detail,
            error: None,
        }
    }

    fn failed<T: Default>(ms: u64, error: &str) -> Step<T> {
        Step::failed(Duration::from_millis(ms), error)
    }

    fn ttl(k: u8) -> Step<TtlDetail> {
        ok(
            0,
            TtlDetail {
                hop_limit_needed: Some(k),
            },
        )
    }

    fn all_ok() -> ProbeReport {
        let mut r = ProbeReport::new("http://127.0.0.1:9");
        r.ttl = Some(ttl(1));
        r.token = Some(ok(
            3,
            TokenDetail {
                instance_id: Some("i-0123".into()),
                region: Some("us-east-1".into()),
            },
        ));
        r.credentials = Some(ok(
            4,
            CredentialsDetail {
                access_key_id: Some("ASIAX".into()),
                expiration: Some("2030-01-01T00:00:00Z".into()),
            },
        ));
        r.identity = Some(ok(
            12,
            IdentityDetail {
                arn: Some("arn:aws:sts::123456789012:assumed-role/r/i-0123".into()),
                account: Some("123456789012".into()),
                user_id: Some("AROAX:i-0123".into()),
            },
        ));
        r.conclude();
        r
    }

    #[test]
    fn all_ok_report_is_aligned() {
        assert_eq!(
            human(&all_ok()),
            "\
IMDS endpoint  http://127.0.0.1:9
✓ ttl               0.0 ms  hop limit needed: 1
✓ token             3.0 ms  token ok; instance i-0123, region us-east-1
✓ credentials       4.0 ms  access key ASIAX, expires 2030-01-01T00:00:00Z
✓ identity         12.0 ms  arn:aws:sts::123456789012:assumed-role/r/i-0123 (account 123456789012)
verdict: this place gets the instance role's credentials; it needs hop limit >= 1
"
        );
    }

    #[test]
    fn hop_limit_failure_names_the_first_cause_and_the_limit() {
        let mut r = ProbeReport::new("http://127.0.0.1:9");
        r.ttl = Some(ttl(2));
        r.token = Some(failed(1001, "no token response within 1 s: dropped"));
        r.credentials = Some(failed(1002, "could not load"));
        r.identity = Some(failed(0, "not attempted"));
        r.conclude();
        let text = human(&r);
        assert!(
            text.contains("✗ token          1001.0 ms  no token response"),
            "{text}"
        );
        assert!(
            text.ends_with("verdict: this place cannot get credentials: no token response within 1 s: dropped; it needs hop limit >= 2\n"),
            "{text}"
        );
    }

    #[test]
    fn sts_failure_after_credentials() {
        let mut r = all_ok();
        r.identity = Some(failed(
            5,
            "STS refused GetCallerIdentity: InvalidClientTokenId: bad",
        ));
        r.ttl = None;
        assert_eq!(
            verdict(&r),
            "this place gets the instance role's credentials, but STS does not confirm them: STS refused GetCallerIdentity: InvalidClientTokenId: bad"
        );
    }

    fn slirp() -> NetworkDetail {
        NetworkDetail {
            kind: NetworkKind::UserSpace,
            interface: "tap0".into(),
            gateway: Some("10.0.2.2".into()),
            gateway_mac: Some("52:55:0a:00:02:02".into()),
            stack: Some("slirp4netns".into()),
        }
    }

    #[test]
    fn behind_slirp4netns_the_report_says_so_and_what_the_figure_means() {
        let mut r = all_ok();
        r.network = Some(slirp());
        let text = human(&r);
        assert!(
            text.starts_with(
                "IMDS endpoint  http://127.0.0.1:9\n\
                 network        user-space: slirp4netns (TAP device tap0, gateway 10.0.2.2 (52:55:0a:00:02:02))\n\
                 ✓ ttl"
            ),
            "{text}"
        );
        assert!(
            text.contains("verdict: this place gets the instance role's credentials; it needs hop limit >= 1 up to the user-space network stack\n\
                 note: this place is behind slirp4netns, which ends its connections"),
            "{text}"
        );
        // It got the role: no fence covers it.
        assert!(
            text.ends_with(
                "run `imds-shim probe` where the stack runs. No fence covers this place: whatever \
                 runs here gets the instance role without a grant. On the host, `imds-shim fence \
                 --user <the user the stack runs as> --apply` keeps it from IMDS, and `imds-shim \
                 relay` serves the builds given a grant.\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_dropped_token_behind_a_stack_points_at_the_stacks_place() {
        let mut r = ProbeReport::new("http://169.254.169.254");
        r.ttl = Some(ttl(1));
        r.token = Some(failed(1001, "no token response within 1 s: dropped"));
        r.network = Some(NetworkDetail {
            stack: None,
            gateway_mac: None,
            interface: "eth0".into(),
            gateway: Some("172.17.0.1".into()),
            ..slirp()
        });
        r.conclude();
        let text = human(&r);
        assert!(
            text.contains("network        user-space: a user-space network stack (e.g. pasta) serves TAP device eth0, gateway 172.17.0.1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "note: this place is behind a user-space network stack (e.g. pasta), which"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("the stack runs behind routing hops that the instance's hop limit does not cover.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_routed_network_is_one_line_and_no_note() {
        let mut r = all_ok();
        r.network = Some(NetworkDetail {
            kind: NetworkKind::Routed,
            interface: "eth0".into(),
            gateway: Some("172.17.0.1".into()),
            gateway_mac: None,
            stack: None,
        });
        let text = human(&r);
        assert!(
            text.contains("\nnetwork        routed: via eth0, gateway 172.17.0.1\n✓ ttl"),
            "{text}"
        );
        assert!(text.ends_with("it needs hop limit >= 1\n"), "{text}");
        r.network.as_mut().unwrap().kind = NetworkKind::Unknown;
        r.network.as_mut().unwrap().gateway = None;
        assert_eq!(
            network(r.network.as_ref().unwrap()),
            "via eth0, IMDS on its link; routed or user-space unknown (/sys here shows another namespace's interfaces)"
        );
        assert!(!human(&r).contains("note:"));
    }

    #[test]
    fn ttl_only_verdicts() {
        let mut r = ProbeReport::new("http://127.0.0.1:9");
        r.ttl = Some(ttl(3));
        assert_eq!(
            verdict(&r),
            "IMDS is reachable from this place; it needs hop limit >= 3 (credentials not checked)"
        );
        r.ttl = Some(failed(1, "connection refused"));
        assert_eq!(
            verdict(&r),
            "IMDS is not reachable from this place: connection refused"
        );
        assert!(!human(&r).contains("token"));
    }
}
