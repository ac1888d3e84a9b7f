//! The human-readable report: one aligned line per step and a one-line verdict.

use std::fmt::Write as _;

use super::ProbeReport;

const OK: &str = "✓";
const FAILED: &str = "✗";

/// The report as text: the endpoint, a line per step that ran, and the verdict.
pub fn human(r: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "IMDS endpoint  {}", r.endpoint);
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
    out
}

/// What a successful step found, in a few words.
fn found(r: &ProbeReport, step: &str) -> String {
    let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_owned());
    match step {
        "ttl" => match r.hop_limit_needed() {
            Some(k) => format!("hop limit needed: {k}"),
            None => "hop limit not measured".to_owned(),
        },
        "token" => r.token.as_ref().map_or_else(String::new, |t| {
            format!(
                "token ok; instance {}, region {}",
                or(&t.detail.instance_id, "?"),
                or(&t.detail.region, "not served")
            )
        }),
        "credentials" => r.credentials.as_ref().map_or_else(String::new, |c| {
            format!(
                "access key {}, expires {}",
                or(&c.detail.access_key_id, "?"),
                or(&c.detail.expiration, "never")
            )
        }),
        "identity" => r.identity.as_ref().map_or_else(String::new, |i| {
            format!(
                "{} (account {})",
                or(&i.detail.arn, "?"),
                or(&i.detail.account, "?")
            )
        }),
        _ => String::new(),
    }
}

/// One line that says whether this place gets the instance role's credentials, and why not.
pub fn verdict(r: &ProbeReport) -> String {
    let needs = r
        .hop_limit_needed()
        .map(|k| format!("; it needs hop limit >= {k}"))
        .unwrap_or_default();
    let first_error = |names: &[&str]| {
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
            first_error(&["ttl", "token", "credentials"])
        ),
        (None, _) => match &r.ttl {
            Some(t) if t.ok => {
                format!("IMDS is reachable from this place{needs} (credentials not checked)")
            }
            Some(_) => format!(
                "IMDS is not reachable from this place: {}",
                first_error(&["ttl"])
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

    fn ok<T>(ms: u64, detail: T) -> Option<Step<T>> {
        Some(Step {
            ok: true,
            elapsed_ms: ms as f64,
            detail,
            error: None,
        })
    }

    fn failed<T: Default>(ms: u64, error: &str) -> Option<Step<T>> {
        Some(Step::failed(Duration::from_millis(ms), error))
    }

    fn ttl(k: u8) -> Option<Step<TtlDetail>> {
        ok(
            0,
            TtlDetail {
                hop_limit_needed: Some(k),
            },
        )
    }

    fn all_ok() -> ProbeReport {
        let mut r = ProbeReport::new("http://127.0.0.1:9");
        r.ttl = ttl(1);
        r.token = ok(
            3,
            TokenDetail {
                instance_id: Some("i-0123".into()),
                region: Some("us-east-1".into()),
            },
        );
        r.credentials = ok(
            4,
            CredentialsDetail {
                access_key_id: Some("ASIAX".into()),
                expiration: Some("2030-01-01T00:00:00Z".into()),
            },
        );
        r.identity = ok(
            12,
            IdentityDetail {
                arn: Some("arn:aws:sts::123456789012:assumed-role/r/i-0123".into()),
                account: Some("123456789012".into()),
                user_id: Some("AROAX:i-0123".into()),
            },
        );
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
        r.ttl = ttl(2);
        r.token = failed(1001, "no token response within 1 s: dropped");
        r.credentials = failed(1002, "could not load");
        r.identity = failed(0, "not attempted");
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
        r.identity = failed(
            5,
            "STS refused GetCallerIdentity: InvalidClientTokenId: bad",
        );
        r.ttl = None;
        assert_eq!(
            verdict(&r),
            "this place gets the instance role's credentials, but STS does not confirm them: STS refused GetCallerIdentity: InvalidClientTokenId: bad"
        );
    }

    #[test]
    fn ttl_only_verdicts() {
        let mut r = ProbeReport::new("http://127.0.0.1:9");
        r.ttl = ttl(3);
        assert_eq!(
            verdict(&r),
            "IMDS is reachable from this place; it needs hop limit >= 3 (credentials not checked)"
        );
        r.ttl = failed(1, "connection refused");
        assert_eq!(
            verdict(&r),
            "IMDS is not reachable from this place: connection refused"
        );
        assert!(!human(&r).contains("token"));
    }
}
