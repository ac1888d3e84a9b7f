//! What a grant serves: the instance role itself (`--instance-role`, spelled out), or a role
//! the relay assumes for the grant with STS `AssumeRole` (`--role-arn`), narrowed by session
//! policies (`--policy`, `--policy-arn`), named (`--session-name`, what CloudTrail shows) and
//! tagged (`--tag`).
//!
//! Every field is checked here against STS's own limits, by `relay grant` before it asks and by
//! the relay on what it is asked (the control socket is an input) and on what its state file
//! holds: a role ARN of the `aws` partitions, a session name of 2 to 64 of `[\w+=,.@-]`, an
//! inline policy of at most 2,048 characters that is a JSON object, at most 10 managed policy
//! ARNs, at most 50 tags, a duration of 15 minutes to 1 hour (a session assumed with role
//! credentials is role chaining, which STS caps at an hour).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shortest session STS gives (`DurationSeconds` 900).
pub const MIN_SESSION: Duration = Duration::from_mins(15);
/// The longest session of role chaining (`DurationSeconds` 3600).
pub const MAX_SESSION: Duration = Duration::from_hours(1);
/// The most characters of an inline session policy (STS: 2,048 plaintext characters).
pub const MAX_POLICY_CHARS: usize = 2048;
/// The most managed session policies.
pub const MAX_POLICY_ARNS: usize = 10;
/// The most session tags.
pub const MAX_TAGS: usize = 50;
/// The longest ARN STS takes.
const MAX_ARN_CHARS: usize = 2048;

/// What a grant serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The instance role's own credentials, from IMDS on the host.
    InstanceRole,
    /// A role assumed for the grant (boxed: a grant record stays small).
    Assumed(Box<AssumedRole>),
}

/// A role assumed with STS `AssumeRole` for one grant, and how its session is narrowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssumedRole {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// `RoleSessionName`; empty in a request: derived from the label by the relay.
    pub session_name: String,
    /// The inline session policy (JSON), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Managed session policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    /// Session tags, `(key, value)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The session's lifetime asked for, in seconds (900..=3600).
    pub duration_secs: u64,
}

impl Scope {
    /// What grants read from a state file written before scopes existed served: the instance
    /// role.
    pub fn legacy() -> Self {
        Scope::InstanceRole
    }

    /// How `relay list` and the log name it: `instance role`, or the role's name.
    pub fn role(&self) -> String {
        match self {
            Scope::InstanceRole => "instance role".to_owned(),
            Scope::Assumed(a) => a.role_name().to_owned(),
        }
    }

    /// The session name (`-` for the instance role).
    pub fn session(&self) -> &str {
        match self {
            Scope::InstanceRole => "-",
            Scope::Assumed(a) => &a.session_name,
        }
    }

    /// Checks every field; an empty session name passes only when `request` (the relay derives
    /// it).
    pub fn validate(&self, request: bool) -> Result<(), ScopeError> {
        match self {
            Scope::InstanceRole => Ok(()),
            Scope::Assumed(a) => a.validate(request),
        }
    }
}

impl AssumedRole {
    /// The role's name, the last part of its ARN.
    pub fn role_name(&self) -> &str {
        self.role_arn.rsplit('/').next().unwrap_or_default()
    }

    /// The session to ask for when the grant has `remaining` to live: what was asked, but
    /// never longer than the grant by more than STS's 15-minute floor.
    pub fn duration_for(&self, remaining: Duration) -> Duration {
        let asked = Duration::from_secs(self.duration_secs);
        let whole =
            Duration::from_secs(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0));
        whole.clamp(MIN_SESSION, asked.max(MIN_SESSION))
    }

    fn validate(&self, request: bool) -> Result<(), ScopeError> {
        check_role_arn(&self.role_arn)?;
        if !(request && self.session_name.is_empty()) {
            check_session_name(&self.session_name)?;
        }
        if let Some(policy) = &self.policy {
            check_policy(policy)?;
        }
        if self.policy_arns.len() > MAX_POLICY_ARNS {
            return Err(ScopeError::TooManyPolicyArns(self.policy_arns.len()));
        }
        for arn in &self.policy_arns {
            check_policy_arn(arn)?;
        }
        check_tags(&self.tags)?;
        check_duration(Duration::from_secs(self.duration_secs))
    }
}

/// A grant's scope that STS would refuse, or that names nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScopeError {
    /// Neither `--role-arn` nor `--instance-role`.
    #[error(
        "a grant must say what it serves: --role-arn ARN (a role assumed for the grant, \
         narrowed by --policy/--policy-arn) or --instance-role (the instance role itself)"
    )]
    Unnamed,
    /// Both.
    #[error("--role-arn and --instance-role: a grant serves one of them, give one")]
    Both,
    /// Session options with `--instance-role`.
    #[error("--instance-role serves the instance role itself: {0} needs --role-arn instead")]
    NotForInstanceRole(&'static str),
    /// Not a role ARN.
    #[error(
        "--role-arn {0:?} is not a role ARN (arn:aws:iam::<12-digit account>:role/<name>, the \
         name 1 to 64 of letters, digits and +=,.@_-)"
    )]
    RoleArn(String),
    /// The session name is out of STS's range.
    #[error(
        "--session-name {0:?}: a session name is 2 to 64 characters of letters, digits and \
         +=,.@_- (STS's RoleSessionName)"
    )]
    SessionName(String),
    /// The session policy is not a JSON object, or too long.
    #[error("--policy: {0}")]
    Policy(String),
    /// Too many managed policies.
    #[error("--policy-arn: at most {MAX_POLICY_ARNS} managed session policies, not {0}")]
    TooManyPolicyArns(usize),
    /// Not a managed policy ARN.
    #[error(
        "--policy-arn {0:?} is not a policy ARN (arn:aws:iam::<account or aws>:policy/<name>)"
    )]
    PolicyArn(String),
    /// A tag STS would refuse.
    #[error("--tag {0}")]
    Tag(String),
    /// The duration is out of role chaining's range.
    #[error(
        "--duration {0} s: a session assumed with the instance role's credentials lasts 15 \
         minutes to 1 hour (STS caps role chaining at 1 h); ask for 15m to 1h"
    )]
    Duration(u64),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `arn:<partition>:iam::<12 digits>:<kind>/<path/><name>`: the resource after `<kind>/`.
fn iam_resource<'a>(arn: &'a str, kind: &str, aws_account: bool) -> Option<&'a str> {
    if arn.chars().count() > MAX_ARN_CHARS {
        return None;
    }
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let partition_ok = partition
        .strip_prefix("aws")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    let account_ok = (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        || (aws_account && account == "aws");
    if !(partition_ok && account_ok) {
        return None;
    }
    resource.strip_prefix(kind)?.strip_prefix('/')
}

/// The last part of an IAM path and name, checked: 1..=64 (128 for policies) name characters,
/// path segments of name characters.
fn path_and_name_ok(rest: &str, max_name: usize) -> bool {
    let mut segments: Vec<&str> = rest.split('/').collect();
    let name = segments.pop().unwrap_or_default();
    (1..=max_name).contains(&name.chars().count())
        && name.chars().all(is_name_char)
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(is_name_char))
}

/// Checks a role ARN.
pub fn check_role_arn(arn: &str) -> Result<(), ScopeError> {
    match iam_resource(arn, "role", false) {
        Some(rest) if path_and_name_ok(rest, 64) => Ok(()),
        _ => Err(ScopeError::RoleArn(shown(arn))),
    }
}

fn check_policy_arn(arn: &str) -> Result<(), ScopeError> {
    match iam_resource(arn, "policy", true) {
        Some(rest) if path_and_name_ok(rest, 128) => Ok(()),
        _ => Err(ScopeError::PolicyArn(shown(arn))),
    }
}

/// Checks a session name: 2..=64 of `[\w+=,.@-]`.
pub fn check_session_name(name: &str) -> Result<(), ScopeError> {
    if (2..=64).contains(&name.chars().count()) && name.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(ScopeError::SessionName(shown(name)))
    }
}

/// Checks an inline session policy: a JSON object of at most 2,048 characters (STS judges the
/// grammar; its refusal is passed on).
pub fn check_policy(policy: &str) -> Result<(), ScopeError> {
    let chars = policy.chars().count();
    if chars > MAX_POLICY_CHARS {
        return Err(ScopeError::Policy(format!(
            "the session policy has {chars} characters; STS takes at most {MAX_POLICY_CHARS}"
        )));
    }
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(ScopeError::Policy(
            "the session policy is not a JSON object".to_owned(),
        )),
        Err(e) => Err(ScopeError::Policy(format!(
            "the session policy is not JSON: {e}"
        ))),
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
}

fn check_tags(tags: &[(String, String)]) -> Result<(), ScopeError> {
    if tags.len() > MAX_TAGS {
        return Err(ScopeError::Tag(format!(
            ": at most {MAX_TAGS} session tags, not {}",
            tags.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (key, value) in tags {
        let bad = |why: &str| ScopeError::Tag(format!("{}: {why}", shown(key)));
        if !(1..=128).contains(&key.chars().count()) || !key.chars().all(is_tag_char) {
            return Err(bad(
                "a tag key is 1 to 128 letters, digits, spaces and _.:/=+-@",
            ));
        }
        if value.chars().count() > 256 || !value.chars().all(is_tag_char) {
            return Err(bad(
                "a tag value is at most 256 letters, digits, spaces and _.:/=+-@",
            ));
        }
        if !seen.insert(key.to_lowercase()) {
            return Err(bad("given twice (tag keys are case-insensitive)"));
        }
    }
    Ok(())
}

/// Checks a session duration: 15 minutes to 1 hour.
pub fn check_duration(duration: Duration) -> Result<(), ScopeError> {
    if (MIN_SESSION..=MAX_SESSION).contains(&duration) {
        Ok(())
    } else {
        Err(ScopeError::Duration(duration.as_secs()))
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// A session name from a grant's label (what is not a name character becomes `-`, at most 64),
/// or `imds-shim-<id>` when the label gives fewer than 2 characters.
pub fn session_name_from(label: &str, id: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .take(64)
        .collect();
    let trimmed = name.trim_matches('-');
    if trimmed.chars().count() >= 2 {
        trimmed.to_owned()
    } else {
        format!("imds-shim-{id}")
    }
}

/// At most 80 characters of an input, for an error message.
fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assumed() -> AssumedRole {
        AssumedRole {
            role_arn: "arn:aws:iam::123456789012:role/deploy".into(),
            session_name: "build-42".into(),
            policy: None,
            policy_arns: vec![],
            tags: vec![],
            duration_secs: 3600,
        }
    }

    #[test]
    fn role_arns_session_names_and_durations_are_stss() {
        let ok = |f: &dyn Fn(&mut AssumedRole)| {
            let mut a = assumed();
            f(&mut a);
            Scope::Assumed(Box::new(a)).validate(false)
        };
        assert_eq!(ok(&|_| {}), Ok(()));
        assert_eq!(
            ok(&|a| a.role_arn = "arn:aws-cn:iam::123456789012:role/ci/deploy".into()),
            Ok(())
        );
        for bad in [
            "deploy",
            "arn:aws:iam::12345:role/deploy",
            "arn:aws:iam::123456789012:user/deploy",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam:us-east-1:123456789012:role/deploy",
            "arn:aws:sts::123456789012:role/deploy",
            "arn:aws:iam::123456789012:role/de ploy",
        ] {
            assert!(
                matches!(
                    ok(&|a| a.role_arn = bad.into()),
                    Err(ScopeError::RoleArn(_))
                ),
                "{bad}"
            );
        }
        for bad in ["a", &"x".repeat(65), "build 42", "build/42", ""] {
            assert!(
                matches!(
                    ok(&|a| a.session_name = bad.into()),
                    Err(ScopeError::SessionName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(ok(&|a| a.session_name = "x".repeat(64)), Ok(()));
        for (secs, good) in [(899, false), (900, true), (3600, true), (3601, false)] {
            assert_eq!(ok(&|a| a.duration_secs = secs).is_ok(), good, "{secs}");
        }
        // A request may leave the session name to the relay.
        let mut a = assumed();
        a.session_name.clear();
        assert_eq!(Scope::Assumed(Box::new(a)).validate(true), Ok(()));
    }

    #[test]
    fn policies_and_tags_are_checked() {
        let ok = |f: &dyn Fn(&mut AssumedRole)| {
            let mut a = assumed();
            f(&mut a);
            a.validate(false)
        };
        assert!(
            matches!(ok(&|a| a.policy = Some("{not json".into())), Err(ScopeError::Policy(m)) if m.contains("not JSON"))
        );
        assert!(matches!(
            ok(&|a| a.policy = Some("[]".into())),
            Err(ScopeError::Policy(_))
        ));
        let long = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_POLICY_CHARS));
        assert!(
            matches!(ok(&|a| a.policy = Some(long.clone())), Err(ScopeError::Policy(m)) if m.contains("2048"))
        );
        assert_eq!(
            ok(&|a| a.policy = Some(r#"{"Statement":[]}"#.into())),
            Ok(())
        );
        assert_eq!(
            ok(&|a| a.policy_arns = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()]),
            Ok(())
        );
        assert!(matches!(
            ok(&|a| a.policy_arns = vec!["arn:aws:iam::aws:role/x".into()]),
            Err(ScopeError::PolicyArn(_))
        ));
        assert!(matches!(
            ok(&|a| a.policy_arns = vec!["arn:aws:iam::aws:policy/x".into(); 11]),
            Err(ScopeError::TooManyPolicyArns(11))
        ));
        assert_eq!(ok(&|a| a.tags = vec![("job".into(), "42".into())]), Ok(()));
        for tags in [
            vec![(String::new(), "v".into())],
            vec![("k".into(), "a\nb".into())],
            vec![("k".into(), "1".into()), ("K".into(), "2".into())],
            vec![("k".into(), "v".repeat(257))],
        ] {
            assert!(
                matches!(ok(&|a| a.tags = tags.clone()), Err(ScopeError::Tag(_))),
                "{tags:?}"
            );
        }
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_tag("ab").is_err());
    }

    #[test]
    fn the_session_never_outlives_the_grant_by_more_than_the_floor() {
        let a = assumed();
        assert_eq!(a.duration_for(Duration::from_hours(5)), MAX_SESSION);
        assert_eq!(
            a.duration_for(Duration::from_mins(20)),
            Duration::from_mins(20)
        );
        assert_eq!(a.duration_for(Duration::from_secs(3)), MIN_SESSION);
        assert_eq!(
            a.duration_for(Duration::from_millis(1_200_500)),
            Duration::from_secs(1201)
        );
        let short = AssumedRole {
            duration_secs: 900,
            ..assumed()
        };
        assert_eq!(short.duration_for(Duration::from_hours(5)), MIN_SESSION);
    }

    #[test]
    fn session_names_come_from_labels() {
        assert_eq!(session_name_from("build 42", "ab"), "build-42");
        assert_eq!(session_name_from("", "0123"), "imds-shim-0123");
        assert_eq!(session_name_from("é", "0123"), "imds-shim-0123");
        assert_eq!(session_name_from(&"x".repeat(70), "0").len(), 64);
        assert_eq!(check_session_name(&session_name_from("a b/c", "0")), Ok(()));
    }

    #[test]
    fn old_records_serve_the_instance_role_and_scopes_round_trip() {
        assert_eq!(Scope::legacy(), Scope::InstanceRole);
        let s = Scope::Assumed(Box::new(assumed()));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
        assert_eq!(
            serde_json::to_string(&Scope::InstanceRole).unwrap(),
            r#""instance_role""#
        );
        assert_eq!(s.role(), "deploy");
        assert_eq!(Scope::InstanceRole.role(), "instance role");
    }
}
