//! STS `AssumeRole` as the service answers it: its parameters checked with STS's
//! `ValidationError` wording, the caller's right to assume the role, the session
//! policies parsed, and a session's credentials kept in the store the services verify
//! signatures against.
//!
//! Every caller the mock knows is a role session (the instance role's credentials are
//! one too), so every `AssumeRole` is role chaining: at most an hour.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::credentials::SessionCredentials;
use crate::iam::policy::{Decision, PolicyDocument};
use crate::iam::principal::{Principal, RoleSession};
use crate::iam::Role;
use crate::query::{escape, QueryParams};
use crate::state::MockState;
use crate::sts::error::{StsError, XMLNS};
use crate::timestamp::iso8601;

pub(crate) const ACTION: &str = "AssumeRole";

/// STS's bounds on `DurationSeconds`, and the cap for role chaining.
const MIN_DURATION: u64 = 900;
const MAX_DURATION: u64 = 43_200;
const CHAINING_CAP: u64 = 3600;
const DEFAULT_DURATION: u64 = 3600;
/// STS's bounds on the other parameters (botocore's sts service model).
const MAX_POLICY: usize = 2048;
const MAX_POLICY_ARNS: usize = 10;
const MAX_TAGS: usize = 50;
const MAX_ARN: usize = 2048;
const MIN_ARN: usize = 20;
/// The mock's packing: session policies (minified), policy ARNs and tags, in bytes, may
/// take this much. STS compresses instead; its exact budget is not published.
pub(crate) const PACKED_LIMIT: usize = 1800;

const SESSION_NAME_PATTERN: &str = r"[\w+=,.@-]*";
const TAG_PATTERN: &str = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*";

/// An `AssumeRole` request whose parameters are each within STS's bounds.
#[derive(Debug)]
struct Checked<'a> {
    role_arn: &'a str,
    session_name: &'a str,
    duration: u64,
    policy: Option<&'a str>,
    policy_arns: Vec<&'a str>,
    tags: Vec<(&'a str, &'a str)>,
}

/// STS's `ValidationError`s, gathered as it reports them: all of them in one message.
#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn add(&mut self, value: Option<&str>, field: &str, constraint: impl AsRef<str>) {
        let value = value.map_or_else(|| "null".to_string(), |v| format!("'{v}'"));
        self.0.push(format!(
            "Value {value} at '{field}' failed to satisfy constraint: {}",
            constraint.as_ref()
        ));
    }

    fn length(&mut self, value: &str, field: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min {
            self.add(
                Some(value),
                field,
                format!("Member must have length greater than or equal to {min}"),
            );
        } else if len > max {
            self.add(
                Some(value),
                field,
                format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn into_result(self) -> Result<(), StsError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let count = self.0.len();
        let plural = if count == 1 { "error" } else { "errors" };
        Err(validation_error(format!(
            "{count} validation {plural} detected: {}",
            self.0.join("; ")
        )))
    }
}

fn validation_error(message: String) -> StsError {
    StsError {
        status: StatusCode::BAD_REQUEST,
        code: "ValidationError",
        message,
    }
}

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// The members of a list parameter (`Tags.member.N.Key`), by index: `field` of each.
fn members<'a>(params: &'a QueryParams, list: &str, field: &str) -> BTreeMap<u32, &'a str> {
    params
        .iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(list)?.strip_prefix(".member.")?;
            let (index, name) = rest.split_once('.')?;
            (name == field).then_some((index.parse().ok()?, value))
        })
        .collect()
}

fn check(params: &QueryParams) -> Result<Checked<'_>, StsError> {
    let mut violations = Violations::default();
    let role_arn = params.get("RoleArn");
    match role_arn {
        None => violations.add(None, "roleArn", "Member must not be null"),
        Some(arn) => violations.length(arn, "roleArn", MIN_ARN, MAX_ARN),
    }
    let session_name = params.get("RoleSessionName");
    match session_name {
        None => violations.add(None, "roleSessionName", "Member must not be null"),
        Some(name) => {
            violations.length(name, "roleSessionName", 2, 64);
            if !name.chars().all(is_session_name_char) {
                violations.add(
                    Some(name),
                    "roleSessionName",
                    format!(
                        "Member must satisfy regular expression pattern: {SESSION_NAME_PATTERN}"
                    ),
                );
            }
        }
    }
    let mut duration = DEFAULT_DURATION;
    if let Some(value) = params.get("DurationSeconds") {
        match value.parse::<u64>() {
            Ok(d) if d < MIN_DURATION => violations.add(
                Some(value),
                "durationSeconds",
                format!("Member must have value greater than or equal to {MIN_DURATION}"),
            ),
            Ok(d) if d > MAX_DURATION => violations.add(
                Some(value),
                "durationSeconds",
                format!("Member must have value less than or equal to {MAX_DURATION}"),
            ),
            Ok(d) => duration = d,
            Err(_) => violations.add(Some(value), "durationSeconds", "Member must be an integer"),
        }
    }
    let policy = params.get("Policy");
    if let Some(policy) = policy {
        violations.length(policy, "policy", 1, MAX_POLICY);
    }
    let policy_arns = members(params, "PolicyArns", "arn");
    if policy_arns.len() > MAX_POLICY_ARNS {
        return Err(validation_error(format!(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_POLICY_ARNS}"
        )));
    }
    for (i, arn) in &policy_arns {
        violations.length(arn, &format!("policyArns.{i}.member.arn"), MIN_ARN, MAX_ARN);
    }
    let keys = members(params, "Tags", "Key");
    let values = members(params, "Tags", "Value");
    if keys.len().max(values.len()) > MAX_TAGS {
        return Err(validation_error(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_TAGS}"
        )));
    }
    let mut tags = Vec::with_capacity(keys.len());
    for (i, key) in &keys {
        let field = format!("tags.{i}.member.key");
        violations.length(key, &field, 1, 128);
        if !key.chars().all(is_tag_char) {
            violations.add(
                Some(key),
                &field,
                format!("Member must satisfy regular expression pattern: {TAG_PATTERN}"),
            );
        }
        match values.get(i) {
            None => violations.add(
                None,
                &format!("tags.{i}.member.value"),
                "Member must not be null",
            ),
            Some(value) => {
                let field = format!("tags.{i}.member.value");
                violations.length(value, &field, 0, 256);
                if !value.chars().all(is_tag_char) {
                    violations.add(
                        Some(value),
                        &field,
                        format!("Member must satisfy regular expression pattern: {TAG_PATTERN}"),
                    );
                }
                tags.push((*key, *value));
            }
        }
    }
    for i in values.keys().filter(|i| !keys.contains_key(i)) {
        violations.add(
            None,
            &format!("tags.{i}.member.key"),
            "Member must not be null",
        );
    }
    violations.into_result()?;
    let mut lowered: Vec<String> = tags.iter().map(|(k, _)| k.to_lowercase()).collect();
    lowered.sort();
    if lowered.windows(2).any(|w| w[0] == w[1]) {
        return Err(StsError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidParameterValue",
            message: "Duplicate tag keys found. Please note that Tag keys are case insensitive."
                .to_string(),
        });
    }
    Ok(Checked {
        role_arn: role_arn.expect("checked above"),
        session_name: session_name.expect("checked above"),
        duration,
        policy,
        policy_arns: policy_arns.into_values().collect(),
        tags,
    })
}

/// Answers `AssumeRole` for `caller`: the response's XML body.
pub(crate) fn assume_role(
    state: &MockState,
    caller: &Principal,
    params: &QueryParams,
    request_id: &str,
    now: SystemTime,
) -> Result<String, StsError> {
    let request = check(params)?;
    if request.duration > CHAINING_CAP {
        return Err(validation_error(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed \
             by role chaining."
                .to_string(),
        ));
    }
    let caller_arn = caller.arn(&state.identity);
    let role = authorize(state, caller, &caller_arn, request.role_arn)?;
    let mut session_policies = Vec::new();
    if let Some(policy) = request.policy {
        session_policies.push(PolicyDocument::parse(policy).map_err(|e| StsError {
            status: StatusCode::BAD_REQUEST,
            code: "MalformedPolicyDocument",
            message: e.to_string(),
        })?);
    }
    for arn in &request.policy_arns {
        let policy = state.iam.managed_policy(arn).ok_or_else(|| StsError {
            status: StatusCode::NOT_FOUND,
            code: "NoSuchEntity",
            message: format!("Policy {arn} does not exist or is not attachable."),
        })?;
        session_policies.push(policy.clone());
    }
    let inline = request.policy.is_some().then(|| &session_policies[0]);
    let packed = packed_percent(inline, &request.policy_arns, &request.tags);
    if packed > 100 {
        return Err(StsError {
            status: StatusCode::BAD_REQUEST,
            code: "PackedPolicyTooLarge",
            message: format!(
                "Packed policy consumes {packed}% of allotted space, please use smaller policy."
            ),
        });
    }
    let narrowed = !session_policies.is_empty() || !request.tags.is_empty();
    let session = Arc::new(RoleSession {
        role,
        session_name: request.session_name.to_string(),
        session_policies,
        tags: request
            .tags
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        assumed_by: caller_arn,
    });
    let asked = Duration::from_secs(request.duration);
    let lifetime = state
        .iam
        .session_lifetime
        .map_or(asked, |cap| cap.min(asked));
    let creds = state
        .credentials
        .issue_session(session.clone(), now, lifetime)
        .ok_or_else(|| StsError {
            status: StatusCode::BAD_REQUEST,
            code: "Throttling",
            message: "Rate exceeded".to_string(),
        })?;
    state.events.role_assumed();
    tracing::info!(
        target: "sts",
        role = %session.role.name,
        session = %session.session_name,
        assumed_by = %session.assumed_by,
        access_key_id = %creds.access_key_id,
        expires = %iso8601(creds.expiration),
        "role assumed"
    );
    Ok(response_body(
        &session,
        &creds,
        narrowed.then_some(packed),
        request_id,
    ))
}

/// The role `role_arn` names, if `caller` may assume it; STS's `AccessDenied` otherwise
/// (an undeclared role is refused in the same words: STS does not tell them apart). The
/// role may be the account's own or, in an organization, a member's access role.
fn authorize(
    state: &MockState,
    caller: &Principal,
    caller_arn: &str,
    role_arn: &str,
) -> Result<Arc<Role>, StsError> {
    let decision = caller
        .permissions(&state.iam)
        .evaluate("sts:AssumeRole", role_arn);
    match state.role_by_arn(role_arn) {
        Some(role) if decision == Decision::Allow => Ok(role),
        _ => Err(StsError {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: format!(
                "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: \
                 {role_arn}"
            ),
        }),
    }
}

/// `PackedPolicySize`: the share of [`PACKED_LIMIT`] the inline session policy
/// (minified), the policy ARNs (a managed policy is packed as its ARN) and the tags
/// take, in percent, rounded up.
fn packed_percent(inline: Option<&PolicyDocument>, arns: &[&str], tags: &[(&str, &str)]) -> usize {
    let bytes = inline.map_or(0, |p| p.minified().len())
        + arns.iter().map(|a| a.len()).sum::<usize>()
        + tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    bytes.saturating_mul(100).div_ceil(PACKED_LIMIT)
}

fn response_body(
    session: &RoleSession,
    creds: &SessionCredentials,
    packed: Option<usize>,
    request_id: &str,
) -> String {
    let mut body = format!(
        "<AssumeRoleResponse xmlns=\"{XMLNS}\">\n  <AssumeRoleResult>\n    <AssumedRoleUser>\n      \
         <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n    \
         <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      \
         <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
        escape(&session.user_id()),
        escape(&session.arn()),
        creds.access_key_id,
        escape(&creds.secret_access_key),
        escape(&creds.session_token),
        iso8601(creds.expiration),
    );
    if let Some(packed) = packed {
        let _ = writeln!(body, "    <PackedPolicySize>{packed}</PackedPolicySize>");
    }
    let _ = write!(
        body,
        "  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
         </ResponseMetadata>\n</AssumeRoleResponse>\n"
    );
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> StsError {
        check(&QueryParams::from_body(body)).unwrap_err()
    }

    const ARN: &str = "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdeploy";

    #[test]
    fn parameters_are_checked_with_sts_wording() {
        let e = err(&format!("{ARN}&RoleSessionName=a"));
        assert_eq!(e.code, "ValidationError");
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'a' at 'roleSessionName' failed to satisfy \
             constraint: Member must have length greater than or equal to 2"
        );
        let e = err(&format!("{ARN}&RoleSessionName=a%20b&DurationSeconds=60"));
        assert!(
            e.message.starts_with("2 validation errors detected: "),
            "{}",
            e.message
        );
        assert!(e
            .message
            .contains(r"Member must satisfy regular expression pattern: [\w+=,.@-]*"));
        assert!(e.message.contains("Value '60' at 'durationSeconds'"));
        let e = err(&format!("{ARN}&RoleSessionName={}", "a".repeat(65)));
        assert!(
            e.message.contains("less than or equal to 64"),
            "{}",
            e.message
        );
        let e = err("RoleSessionName=ok");
        assert!(
            e.message.contains("Value null at 'roleArn'"),
            "{}",
            e.message
        );
        let e = err(&format!("{ARN}&RoleSessionName=ok&DurationSeconds=43201"));
        assert!(
            e.message.contains("less than or equal to 43200"),
            "{}",
            e.message
        );
        let e = err(&format!(
            "{ARN}&RoleSessionName=ok&Policy={}",
            "x".repeat(2049)
        ));
        assert!(e.message.contains("at 'policy'"), "{}", e.message);
    }

    #[test]
    fn list_members_and_tags_are_read_and_bounded() {
        let params = QueryParams::from_body(&format!(
            "{ARN}&RoleSessionName=job-1&Tags.member.2.Key=b&Tags.member.2.Value=2\
             &Tags.member.1.Key=a&Tags.member.1.Value=&PolicyArns.member.1.arn=\
             arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess"
        ));
        let ok = check(&params).unwrap();
        assert_eq!(ok.tags, [("a", ""), ("b", "2")]);
        assert_eq!(ok.policy_arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert_eq!(ok.duration, 3600);

        let many = (1..=51)
            .map(|i| format!("&Tags.member.{i}.Key=k{i}&Tags.member.{i}.Value=v"))
            .collect::<Vec<_>>()
            .concat();
        let e = err(&format!("{ARN}&RoleSessionName=ok{many}"));
        assert!(e.message.contains("'tags'"), "{}", e.message);
        let e = err(&format!(
            "{ARN}&RoleSessionName=ok&Tags.member.1.Key=Team&Tags.member.1.Value=a\
             &Tags.member.2.Key=team&Tags.member.2.Value=b"
        ));
        assert_eq!(e.code, "InvalidParameterValue");
        let e = err(&format!("{ARN}&RoleSessionName=ok&Tags.member.1.Key=a"));
        assert!(
            e.message.contains("Value null at 'tags.1.member.value'"),
            "{}",
            e.message
        );
    }

    /// A mock's state with `deploy` assumable, and the instance role's IMDSv2 principal.
    fn state() -> (MockState, Principal) {
        let mut config = crate::config::MockConfig::default();
        config.iam.assumable_roles.insert("deploy".into(), None);
        (
            MockState::new(config),
            Principal::InstanceRole(crate::imds_version::ImdsVersion::V2),
        )
    }

    fn call(state: &MockState, caller: &Principal, body: &str) -> Result<String, StsError> {
        assume_role(
            state,
            caller,
            &QueryParams::from_body(body),
            "req",
            SystemTime::now(),
        )
    }

    #[test]
    fn hostile_input_is_refused_and_leaves_nothing_behind() {
        let (state, caller) = state();
        let deeply_nested = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        let many_arns = (1..=11)
            .map(|i| format!("&PolicyArns.member.{i}.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2Fp{i}"))
            .collect::<Vec<_>>()
            .concat();
        let star_storm = format!(
            r#"{{"Statement":{{"Effect":"Allow","Action":"*","Resource":"{}b"}}}}"#,
            "*a".repeat(800)
        );
        for (body, code) in [
            (String::new(), "ValidationError"),
            (format!("{ARN}&RoleSessionName=%00%FF"), "ValidationError"),
            (
                format!("{ARN}&RoleSessionName=caf%C3%A9"),
                "ValidationError",
            ),
            (
                format!("{ARN}&RoleSessionName=ok&DurationSeconds=-1"),
                "ValidationError",
            ),
            (
                format!("{ARN}&RoleSessionName=ok&DurationSeconds=99999999999999999999999"),
                "ValidationError",
            ),
            (
                format!("{ARN}&RoleSessionName=ok&Policy={deeply_nested}"),
                "MalformedPolicyDocument",
            ),
            (
                format!("{ARN}&RoleSessionName=ok{many_arns}"),
                "ValidationError",
            ),
            (
                format!("{ARN}&RoleSessionName=ok&Tags.member.1.Key=%3Cx%3E&Tags.member.1.Value=v"),
                "ValidationError",
            ),
            (
                "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdeploy%2F..%2Fadmin\
                 &RoleSessionName=ok"
                    .to_string(),
                "AccessDenied",
            ),
        ] {
            let err = call(&state, &caller, &body).unwrap_err();
            assert_eq!(err.code, code, "{body:.80}: {}", err.message);
        }
        // A pathological pattern is evaluated in bounded time, and a role it does not
        // match is refused.
        let body = format!(
            "{ARN}&RoleSessionName=ok&Policy={}",
            form_urlencoded::byte_serialize(star_storm.as_bytes()).collect::<String>()
        );
        let answer = call(&state, &caller, &body).unwrap();
        let key = answer
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap();
        let Principal::RoleSession(session) = &state.credentials.lookup(key).unwrap().principal
        else {
            panic!("an assumed session");
        };
        let perms = Principal::RoleSession(session.clone());
        assert_ne!(
            perms
                .permissions(&state.iam)
                .evaluate("ec2:DescribeInstances", &"a".repeat(2000)),
            Decision::Allow
        );
        assert_eq!(
            state.events.snapshot().assume_role,
            1,
            "only the good call made a session"
        );
        assert!(answer.contains("<AssumedRoleId>AROA"));
        assert!(!answer.contains("<SessionTokenSize>"));
    }

    #[test]
    fn the_response_has_sts_shape_and_escapes_what_it_echoes() {
        let (state, caller) = state();
        let answer = call(
            &state,
            &caller,
            &format!("{ARN}&RoleSessionName=a.b%40c&Tags.member.1.Key=k&Tags.member.1.Value=v"),
        )
        .unwrap();
        for element in [
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">",
            "<Arn>arn:aws:sts::123456789012:assumed-role/deploy/a.b@c</Arn>",
            "<PackedPolicySize>1</PackedPolicySize>",
            "<RequestId>req</RequestId>",
        ] {
            assert!(answer.contains(element), "{element} in {answer}");
        }
        let err = call(
            &state,
            &caller,
            &format!("{ARN}&RoleSessionName=%3Cscript%3E"),
        )
        .unwrap_err();
        let body = crate::sts::error::error_body(&err, "req");
        assert!(body.contains("Value &apos;&lt;script&gt;&apos;"), "{body}");
    }

    #[test]
    fn packed_size_counts_inline_policies_arns_and_tags() {
        let policy = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        )
        .unwrap();
        let inline = policy.minified().len();
        assert_eq!(
            packed_percent(Some(&policy), &[], &[]),
            (inline * 100).div_ceil(PACKED_LIMIT)
        );
        let arn = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        assert_eq!(
            packed_percent(Some(&policy), &[arn], &[("k", "vv")]),
            ((inline + arn.len() + 3) * 100).div_ceil(PACKED_LIMIT)
        );
        assert_eq!(packed_percent(None, &[], &[]), 0);
        assert!(packed_percent(None, &[], &[("k", &"v".repeat(1800))]) > 100);
    }
}
