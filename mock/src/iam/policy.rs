//! The IAM policy language as far as the mock evaluates it: documents parsed into typed
//! statements, and the decision for one action on one resource.
//!
//! `Action`/`NotAction` patterns match case-insensitively, `Resource`/`NotResource`
//! patterns case-sensitively, both with `*` (any run) and `?` (one character).
//! `Condition` is kept but not evaluated: a statement with one applies as if it held.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The policy language versions IAM accepts.
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// Why a policy document is not one IAM would take. The messages are IAM's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON at all.
    #[error("The policy is not in the valid JSON format.")]
    NotJson,
    /// JSON, but not a policy's shape (an unknown element, a wrong type, ...).
    #[error("Syntax errors in policy. ({0})")]
    Syntax(String),
    /// A `Version` other than 2012-10-17 or 2008-10-17.
    #[error("The policy must contain a valid version string")]
    Version,
    /// A statement without `Action`/`NotAction`, or with both.
    #[error("Policy statement must contain actions.")]
    Actions,
    /// A statement without `Resource`/`NotResource`, or with both.
    #[error("Policy statement must contain resources.")]
    Resources,
    /// A `Principal` in an identity or session policy.
    #[error("Policy document should not specify a principal.")]
    Principal,
    /// An action without its service prefix.
    #[error("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")]
    Vendor,
}

/// One value or a list of them, as policy elements may be written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawDocument {
    version: Option<String>,
    id: Option<String>,
    statement: RawStatements,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStatements {
    One(Box<RawStatement>),
    Many(Vec<RawStatement>),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawStatement {
    sid: Option<String>,
    effect: Effect,
    action: Option<OneOrMany>,
    not_action: Option<OneOrMany>,
    resource: Option<OneOrMany>,
    not_resource: Option<OneOrMany>,
    condition: Option<serde_json::Map<String, serde_json::Value>>,
    principal: Option<serde_json::Value>,
    not_principal: Option<serde_json::Value>,
}

/// Whether a statement allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) enum Effect {
    /// Grants what it matches.
    Allow,
    /// Refuses what it matches, whatever else allows it.
    Deny,
}

/// Patterns a statement matches (`Action`, `Resource`) or matches all but (`NotAction`,
/// `NotResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
enum Patterns {
    Listed(Vec<String>),
    AllBut(Vec<String>),
}

impl Patterns {
    fn from(listed: Option<OneOrMany>, all_but: Option<OneOrMany>) -> Option<Self> {
        match (listed, all_but) {
            (Some(listed), None) => Some(Patterns::Listed(listed.into_vec())),
            (None, Some(all_but)) => Some(Patterns::AllBut(all_but.into_vec())),
            _ => None,
        }
    }

    fn patterns(&self) -> &[String] {
        match self {
            Patterns::Listed(p) | Patterns::AllBut(p) => p,
        }
    }

    fn matches(&self, value: &str, case_insensitive: bool) -> bool {
        let any = self
            .patterns()
            .iter()
            .any(|p| wildcard_match(p, value, case_insensitive));
        match self {
            Patterns::Listed(_) => any,
            Patterns::AllBut(_) => !any,
        }
    }
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: Patterns,
    resources: Patterns,
    /// Kept, not evaluated.
    condition: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Statement {
    fn applies(&self, action: &str, resource: &str) -> bool {
        self.actions.matches(action, true) && self.resources.matches(resource, false)
    }
}

/// An identity or session policy, parsed and checked as IAM would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    version: Option<String>,
    id: Option<String>,
    statements: Vec<Statement>,
    /// The document without insignificant whitespace (what STS packs).
    #[serde(skip)]
    minified: String,
}

impl PolicyDocument {
    /// Parses `json` as an IAM identity or session policy.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|_| PolicyError::NotJson)?;
        let minified = value.to_string();
        let raw: RawDocument =
            serde_json::from_value(value).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        if raw
            .version
            .as_deref()
            .is_some_and(|v| !VERSIONS.contains(&v))
        {
            return Err(PolicyError::Version);
        }
        let raw_statements = match raw.statement {
            RawStatements::One(one) => vec![*one],
            RawStatements::Many(many) => many,
        };
        let statements = raw_statements
            .into_iter()
            .map(|s| {
                if s.principal.is_some() || s.not_principal.is_some() {
                    return Err(PolicyError::Principal);
                }
                let actions = Patterns::from(s.action, s.not_action).ok_or(PolicyError::Actions)?;
                if actions.patterns().is_empty() {
                    return Err(PolicyError::Actions);
                }
                if actions
                    .patterns()
                    .iter()
                    .any(|a| a != "*" && a.split_once(':').is_none_or(|(v, _)| v.is_empty()))
                {
                    return Err(PolicyError::Vendor);
                }
                let resources =
                    Patterns::from(s.resource, s.not_resource).ok_or(PolicyError::Resources)?;
                if resources.patterns().is_empty() {
                    return Err(PolicyError::Resources);
                }
                Ok(Statement {
                    sid: s.sid,
                    effect: s.effect,
                    actions,
                    resources,
                    condition: s.condition,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PolicyDocument {
            version: raw.version,
            id: raw.id,
            statements,
            minified,
        })
    }

    /// The document without insignificant whitespace.
    pub(crate) fn minified(&self) -> &str {
        &self.minified
    }

    /// Whether a statement of `effect` applies to `action` on `resource`.
    fn has(&self, effect: Effect, action: &str, resource: &str) -> bool {
        self.statements
            .iter()
            .any(|s| s.effect == effect && s.applies(action, resource))
    }
}

impl FromStr for PolicyDocument {
    type Err = PolicyError;

    fn from_str(json: &str) -> Result<Self, Self::Err> {
        Self::parse(json)
    }
}

/// Which kind of policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    /// The role's own (identity-based) policy.
    Identity,
    /// A policy passed when the session was made.
    Session,
}

/// The outcome of evaluating one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// No statement of that kind allows it.
    ImplicitDeny(PolicyKind),
    /// A `Deny` statement of that kind matches.
    ExplicitDeny(PolicyKind),
}

impl Decision {
    /// How AWS ends a refusal's message for `action` ("because ...", "with ...").
    pub(crate) fn reason(self, action: &str) -> Option<String> {
        let kind = |k| match k {
            PolicyKind::Identity => "identity-based",
            PolicyKind::Session => "session",
        };
        match self {
            Decision::Allow => None,
            Decision::ImplicitDeny(k) => Some(format!(
                "because no {} policy allows the {action} action",
                kind(k)
            )),
            Decision::ExplicitDeny(PolicyKind::Identity) => {
                Some("with an explicit deny in an identity-based policy".to_string())
            }
            Decision::ExplicitDeny(PolicyKind::Session) => {
                Some("with an explicit deny in a session policy".to_string())
            }
        }
    }
}

/// What a caller may do: its role's identity policy (`None`: allows everything) and
/// the session policies its session was made with (none: no narrowing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permissions<'a> {
    pub(crate) identity: Option<&'a PolicyDocument>,
    pub(crate) session: &'a [PolicyDocument],
}

impl Permissions<'_> {
    /// IAM's evaluation for one account: an explicit deny anywhere wins; otherwise the
    /// identity policy must allow it, and so must one session policy if there are any.
    pub(crate) fn evaluate(&self, action: &str, resource: &str) -> Decision {
        if self
            .identity
            .is_some_and(|p| p.has(Effect::Deny, action, resource))
        {
            return Decision::ExplicitDeny(PolicyKind::Identity);
        }
        if self
            .session
            .iter()
            .any(|p| p.has(Effect::Deny, action, resource))
        {
            return Decision::ExplicitDeny(PolicyKind::Session);
        }
        if !self
            .identity
            .is_none_or(|p| p.has(Effect::Allow, action, resource))
        {
            return Decision::ImplicitDeny(PolicyKind::Identity);
        }
        if !self.session.is_empty()
            && !self
                .session
                .iter()
                .any(|p| p.has(Effect::Allow, action, resource))
        {
            return Decision::ImplicitDeny(PolicyKind::Session);
        }
        Decision::Allow
    }
}

/// Whether `value` matches `pattern`, where `*` is any run of characters and `?` any
/// one character.
fn wildcard_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, v) = (fold(pattern), fold(value));
    // Greedy with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

    fn doc(json: &str) -> PolicyDocument {
        PolicyDocument::parse(json).unwrap()
    }

    fn allow(actions: &str) -> PolicyDocument {
        doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":"*"}}]}}"#
        ))
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard_match(
            "ec2:Describe*",
            "ec2:DescribeInstances",
            false
        ));
        assert!(wildcard_match(
            "ec2:describe*",
            "EC2:DescribeInstances",
            true
        ));
        assert!(!wildcard_match(
            "ec2:describe*",
            "EC2:DescribeInstances",
            false
        ));
        assert!(wildcard_match(
            "ec2:?escribeInstances",
            "ec2:DescribeInstances",
            false
        ));
        assert!(!wildcard_match(
            "ec2:?DescribeInstances",
            "ec2:DescribeInstances",
            false
        ));
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("a*b*c", "axxbyyc", false));
        assert!(!wildcard_match("a*b*c", "axxbyy", false));
        assert!(wildcard_match(
            "*Instance*Options",
            "ModifyInstanceMetadataOptions",
            false
        ));
        assert!(!wildcard_match(
            "ec2:Describe",
            "ec2:DescribeInstances",
            false
        ));
        let long = "a".repeat(2000);
        assert!(!wildcard_match(
            &format!("{}b", "*a".repeat(100)),
            &long,
            false
        ));
    }

    #[test]
    fn no_session_policy_means_no_narrowing_and_the_identity_policy_bounds() {
        let all = Permissions {
            identity: None,
            session: &[],
        };
        assert_eq!(
            all.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::Allow
        );
        let describe_only = allow(r#""ec2:Describe*""#);
        let identity = Permissions {
            identity: Some(&describe_only),
            session: &[],
        };
        assert_eq!(
            identity.evaluate("ec2:DescribeInstances", "*"),
            Decision::Allow
        );
        assert_eq!(
            identity.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::ImplicitDeny(PolicyKind::Identity)
        );
    }

    #[test]
    fn session_policies_intersect_with_the_identity_policy() {
        let ec2_all = allow(r#""ec2:*""#);
        let session = [allow(
            r#"["sts:GetCallerIdentity","ec2:DescribeInstances"]"#,
        )];
        let perms = Permissions {
            identity: Some(&ec2_all),
            session: &session,
        };
        assert_eq!(
            perms.evaluate("ec2:describeinstances", "*"),
            Decision::Allow
        );
        assert_eq!(
            perms.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::ImplicitDeny(PolicyKind::Session)
        );
        // The session allows it, the identity policy does not: the intersection refuses.
        assert_eq!(
            perms.evaluate("sts:GetCallerIdentity", "*"),
            Decision::ImplicitDeny(PolicyKind::Identity)
        );
        // Several session policies: any one of them may allow.
        let two = [
            allow(r#""ec2:DescribeInstances""#),
            allow(r#""ec2:Modify*""#),
        ];
        let perms = Permissions {
            identity: None,
            session: &two,
        };
        assert_eq!(
            perms.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::Allow
        );
    }

    #[test]
    fn an_explicit_deny_wins_wherever_it_is() {
        let deny_modify = doc(r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"*","Resource":"*"},
                {"Effect":"Deny","Action":"ec2:Modify*","Resource":"*"}]}"#);
        let perms = Permissions {
            identity: Some(&deny_modify),
            session: &[],
        };
        assert_eq!(
            perms.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::ExplicitDeny(PolicyKind::Identity)
        );
        let session = [doc(
            r#"{"Statement":{"Effect":"Deny","NotAction":"ec2:Describe*","Resource":"*"}}"#,
        )];
        let perms = Permissions {
            identity: None,
            session: &session,
        };
        assert_eq!(
            perms.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::ExplicitDeny(PolicyKind::Session)
        );
        // NotAction's Deny spares what it names; nothing in the session allows it though.
        assert_eq!(
            perms.evaluate("ec2:DescribeInstances", "*"),
            Decision::ImplicitDeny(PolicyKind::Session)
        );
    }

    #[test]
    fn resources_match_case_sensitively() {
        let one_instance = doc(&format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"ec2:*","Resource":"{INSTANCE}"}}]}}"#
        ));
        let perms = Permissions {
            identity: Some(&one_instance),
            session: &[],
        };
        assert_eq!(
            perms.evaluate("ec2:ModifyInstanceMetadataOptions", INSTANCE),
            Decision::Allow
        );
        assert_eq!(
            perms.evaluate(
                "ec2:ModifyInstanceMetadataOptions",
                &INSTANCE.to_uppercase()
            ),
            Decision::ImplicitDeny(PolicyKind::Identity)
        );
        assert_eq!(
            perms.evaluate("ec2:DescribeInstances", "*"),
            Decision::ImplicitDeny(PolicyKind::Identity)
        );
    }

    #[test]
    fn malformed_documents_are_refused_with_iams_words() {
        let err = |json: &str| PolicyDocument::parse(json).unwrap_err();
        assert_eq!(err("{not json"), PolicyError::NotJson);
        assert_eq!(err(""), PolicyError::NotJson);
        assert!(matches!(
            err(r#"{"Statement":[],"Extra":1}"#),
            PolicyError::Syntax(_)
        ));
        assert!(matches!(
            err(r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#),
            PolicyError::Syntax(_)
        ));
        assert_eq!(
            err(r#"{"Version":"2020-01-01","Statement":[]}"#),
            PolicyError::Version
        );
        assert_eq!(
            err(r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#),
            PolicyError::Actions
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","NotAction":"x:y","Resource":"*"}]}"#
            ),
            PolicyError::Actions
        );
        assert_eq!(
            err(r#"{"Statement":[{"Effect":"Allow","Action":"*"}]}"#),
            PolicyError::Resources
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}]}"#
            ),
            PolicyError::Principal
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"DescribeInstances","Resource":"*"}]}"#
            ),
            PolicyError::Vendor
        );
    }

    #[test]
    fn conditions_are_kept_and_the_document_minified() {
        let policy = doc(r#"{ "Version": "2012-10-17", "Statement": [ { "Sid": "a",
                 "Effect": "Deny", "Action": "*", "Resource": "*",
                 "Condition": { "DateLessThan": { "aws:TokenIssueTime": "2026-01-01T00:00:00Z" } } } ] }"#);
        assert!(policy.statements[0].condition.is_some());
        assert!(!policy.minified().contains(' '));
        assert_eq!(policy, policy.minified().parse().unwrap());
    }
}
