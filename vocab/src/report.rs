//! The probe's report: one entry per step, serialised as the JSON object
//! `imds-shim probe --json` prints and the harness reads.
//!
//! Field names are the contract: snake_case, absent fields omitted, steps that were not
//! run `null`. Nothing secret is in it: the credentials step reports the access key id
//! and the expiry only.

use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// Which steps `imds-shim probe` runs (its `--only`), named as on its command line.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    VariantArray,
    IntoStaticStr,
    Display,
    EnumString,
)]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Steps {
    /// Only measure the hop limit this place needs (step ttl)
    Ttl,
    /// Get credentials and the identity as an AWS SDK would (steps credentials and identity; token too when the region must come from IMDS)
    Sdk,
    /// All steps: ttl, token, credentials, identity
    #[default]
    All,
}

/// What the TTL step measured.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlDetail {
    /// The smallest IP TTL whose TCP connect reached IMDS: the hop limit this place needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop_limit_needed: Option<u8>,
}

/// What the token step learnt about the instance.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDetail {
    /// The instance id (`/latest/meta-data/instance-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The instance's region (`/latest/meta-data/placement/region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// What the credentials step reports: nothing secret.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsDetail {
    /// The access key id (`ASIA...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// When the credentials expire, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// Who STS says the credentials belong to.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDetail {
    /// The caller's ARN, `arn:aws:sts::<account>:assumed-role/<role>/<instance-id>` for a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The caller's unique id, `<role id>:<instance-id>` for a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// How this place's traffic to IMDS leaves its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkKind {
    /// Through an interface the kernel carries (a NIC, a veth on a bridge): every
    /// namespace that forwards the token response lowers its TTL by one.
    Routed,
    /// Through a TAP device served by a user-space network stack (slirp4netns, pasta),
    /// which ends the connection and opens its own from the namespace it runs in.
    UserSpace,
    /// The interface is known, but not what serves it (this process sees another
    /// namespace's `/sys`).
    Unknown,
}

/// What this place's own files say about its route to IMDS (read, never probed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDetail {
    /// Routed, user-space or unknown.
    pub kind: NetworkKind,
    /// The interface of the route to the IMDS address (`tap0`, `eth0`).
    pub interface: String,
    /// The route's next hop; absent when IMDS is on the interface's own link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The next hop's MAC address, when the neighbour table has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_mac: Option<String>,
    /// The user-space stack, when the next hop's MAC names it (`slirp4netns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl NetworkDetail {
    /// Whether a user-space network stack stands between this place and IMDS.
    pub fn is_user_space(&self) -> bool {
        self.kind == NetworkKind::UserSpace
    }

    /// The stack in words: its name, else "a user-space network stack (e.g. pasta)".
    pub fn stack_name(&self) -> String {
        match &self.stack {
            Some(stack) => stack.clone(),
            None => "a user-space network stack (e.g. pasta)".to_owned(),
        }
    }
}

/// One step's outcome: ok or the reason, how long it took, and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step<T> {
    /// Whether the step succeeded.
    pub ok: bool,
    /// Wall-clock time of the step, in milliseconds.
    pub elapsed_ms: f64,
    /// What the step found.
    #[serde(flatten)]
    pub detail: T,
    /// Why the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T: Default> Step<T> {
    /// A step's outcome from its result.
    pub fn from_result<E: Display>(elapsed: Duration, result: Result<T, E>) -> Self {
        match result {
            Ok(detail) => Self {
                ok: true,
                elapsed_ms: millis(elapsed),
                detail,
                error: None,
            },
            Err(e) => Self::failed(elapsed, e),
        }
    }

    /// A failed step with nothing found.
    pub fn failed(elapsed: Duration, error: impl Display) -> Self {
        Self {
            ok: false,
            elapsed_ms: millis(elapsed),
            detail: T::default(),
            error: Some(error.to_string()),
        }
    }
}

/// Milliseconds with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Everything the probe found at this place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The IMDS endpoint probed.
    pub endpoint: String,
    /// Step 1, the hop limit this place needs; `None` when not run.
    pub ttl: Option<Step<TtlDetail>>,
    /// Step 2, the IMDSv2 token; `None` when not run.
    pub token: Option<Step<TokenDetail>>,
    /// Step 3, the role's credentials; `None` when not run.
    pub credentials: Option<Step<CredentialsDetail>>,
    /// Step 4, GetCallerIdentity; `None` when not run.
    pub identity: Option<Step<IdentityDetail>>,
    /// The route to IMDS as this place's files describe it; absent when unknown (and in
    /// reports written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkDetail>,
    /// Whether every step that ran succeeded.
    pub ok: bool,
}

impl ProbeReport {
    /// An empty report for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ttl: None,
            token: None,
            credentials: None,
            identity: None,
            network: None,
            ok: false,
        }
    }

    /// The steps that ran, in order, as (name, ok, elapsed ms, error).
    pub fn steps(&self) -> Vec<StepSummary<'_>> {
        fn summary<T>(name: StepName, s: Option<&Step<T>>) -> Option<StepSummary<'_>> {
            s.map(|s| StepSummary {
                name,
                ok: s.ok,
                elapsed_ms: s.elapsed_ms,
                error: s.error.as_deref(),
            })
        }
        [
            summary(StepName::Ttl, self.ttl.as_ref()),
            summary(StepName::Token, self.token.as_ref()),
            summary(StepName::Credentials, self.credentials.as_ref()),
            summary(StepName::Identity, self.identity.as_ref()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Sets `ok`: every step that ran succeeded (and at least one ran).
    pub fn conclude(&mut self) {
        let steps = self.steps();
        self.ok = !steps.is_empty() && steps.iter().all(|s| s.ok);
    }

    /// The hop limit the TTL step measured, if it ran and succeeded.
    pub fn hop_limit_needed(&self) -> Option<u8> {
        self.ttl.as_ref().and_then(|t| t.detail.hop_limit_needed)
    }

    /// Whether this place reaches IMDS through a user-space network stack.
    pub fn behind_user_space_stack(&self) -> bool {
        self.network
            .as_ref()
            .is_some_and(NetworkDetail::is_user_space)
    }

    /// The ARN STS returned, if the identity step ran and succeeded.
    pub fn arn(&self) -> Option<&str> {
        self.identity.as_ref().and_then(|i| i.detail.arn.as_deref())
    }

    /// Why the first step that failed failed.
    pub fn first_error(&self) -> Option<&str> {
        self.steps()
            .into_iter()
            .find(|s| !s.ok)
            .and_then(|s| s.error)
    }
}

/// One of the probe's steps, in the order they run; named as the report's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, VariantArray, IntoStaticStr, Display)]
#[strum(serialize_all = "lowercase")]
pub enum StepName {
    /// Step 1: the hop limit this place needs.
    Ttl,
    /// Step 2: the IMDSv2 token.
    Token,
    /// Step 3: the role's credentials.
    Credentials,
    /// Step 4: GetCallerIdentity.
    Identity,
}

/// A step's name and outcome, whatever it found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSummary<'a> {
    /// Which step.
    pub name: StepName,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub elapsed_ms: f64,
    /// Why it failed.
    pub error: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_not_run_are_null_and_absent_fields_omitted() {
        let mut r = ProbeReport::new("http://127.0.0.1:1");
        r.ttl = Some(Step::from_result(
            Duration::from_micros(1_234),
            Ok::<_, String>(TtlDetail {
                hop_limit_needed: Some(3),
            }),
        ));
        r.conclude();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "endpoint": "http://127.0.0.1:1",
                "ttl": {"ok": true, "elapsed_ms": 1.234, "hop_limit_needed": 3},
                "token": null,
                "credentials": null,
                "identity": null,
                "ok": true
            })
        );
    }

    #[test]
    fn failed_steps_carry_the_error_and_no_detail() {
        let mut r = ProbeReport::new("http://127.0.0.1:1");
        r.token = Some(Step::failed(Duration::from_secs(1), "no token response"));
        r.credentials = Some(Step::from_result(
            Duration::from_millis(2),
            Ok::<_, String>(CredentialsDetail {
                access_key_id: Some("ASIAX".into()),
                expiration: Some("2030-01-01T00:00:00Z".into()),
            }),
        ));
        r.conclude();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["token"],
            json!({"ok": false, "elapsed_ms": 1000.0, "error": "no token response"})
        );
        assert_eq!(
            v["credentials"],
            json!({"ok": true, "elapsed_ms": 2.0, "access_key_id": "ASIAX", "expiration": "2030-01-01T00:00:00Z"})
        );
        assert_eq!(v["ok"], json!(false));
        // Top-level fields keep the documented order.
        let text = serde_json::to_string(&r).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        let order = ["endpoint", "ttl", "token", "credentials", "identity"];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        assert!(text.ends_with(r#","ok":false}"#), "{text}");
    }

    #[test]
    fn round_trips_through_json() {
        let mut r = ProbeReport::new("http://[::1]:8080");
        r.identity = Some(Step::from_result(
            Duration::from_millis(5),
            Ok::<_, String>(IdentityDetail {
                arn: Some("arn:aws:sts::123456789012:assumed-role/r/i-1".into()),
                account: Some("123456789012".into()),
                user_id: Some("AROAX:i-1".into()),
            }),
        ));
        r.conclude();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ProbeReport>(&text).unwrap(), r);
    }

    #[test]
    fn the_network_is_omitted_when_unknown_and_old_reports_stay_readable() {
        let old = r#"{"endpoint":"x","ttl":null,"token":null,"credentials":null,"identity":null,"ok":false}"#;
        let r: ProbeReport = serde_json::from_str(old).unwrap();
        assert_eq!(r.network, None);
        assert!(!r.behind_user_space_stack());
        assert_eq!(serde_json::to_string(&r).unwrap(), old);

        let mut r = ProbeReport::new("http://169.254.169.254");
        r.network = Some(NetworkDetail {
            kind: NetworkKind::UserSpace,
            interface: "tap0".into(),
            gateway: Some("10.0.2.2".into()),
            gateway_mac: Some("52:55:0a:00:02:02".into()),
            stack: Some("slirp4netns".into()),
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["network"],
            json!({"kind": "user-space", "interface": "tap0", "gateway": "10.0.2.2",
                   "gateway_mac": "52:55:0a:00:02:02", "stack": "slirp4netns"})
        );
        assert!(r.behind_user_space_stack());
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ProbeReport>(&text).unwrap(), r);
        assert!(text.ends_with(r#"},"ok":false}"#), "{text}");
        let routed: NetworkDetail =
            serde_json::from_value(json!({"kind": "routed", "interface": "eth0"})).unwrap();
        assert_eq!(routed.kind, NetworkKind::Routed);
        assert_eq!(
            routed.stack_name(),
            "a user-space network stack (e.g. pasta)"
        );
    }

    #[test]
    fn nothing_run_is_not_ok() {
        let mut r = ProbeReport::new("x");
        r.conclude();
        assert!(!r.ok);
    }
}
