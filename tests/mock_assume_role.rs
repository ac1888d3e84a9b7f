//! The mock's STS `AssumeRole` and the permission evaluation of its EC2 API, against
//! real clients: the Rust SDK (aws-sdk-sts, aws-sdk-ec2), Debian's AWS CLI and
//! botocore. Everything listens on 127.0.0.1; nothing reaches real AWS.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::require::{require, Requirement};
use imds_mock::{MockAws, PolicyDocument};

mod sdk;
use sdk::{ec2, imds_credentials, sts};

const ACCOUNT: &str = "123456789012";
const INSTANCE_ID: &str = "i-0123456789abcdef0";
const DEPLOY: &str = "arn:aws:iam::123456789012:role/deploy";
const AUDIT: &str = "arn:aws:iam::123456789012:role/audit";
const DENY_MODIFY_ARN: &str = "arn:aws:iam::123456789012:policy/no-metadata-changes";
/// The session policy of the issue: an identity and a look, nothing else.
const LOOK_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Action":["sts:GetCallerIdentity","ec2:DescribeInstances"],"Resource":"*"}]}"#;
const DESCRIBE_ONLY: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow",
    "Action":"ec2:Describe*","Resource":"*"}}"#;
const DENY_MODIFY: &str = r#"{"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Action":"*","Resource":"*"},
    {"Effect":"Deny","Action":"ec2:Modify*","Resource":"*"}]}"#;

fn policy(json: &str) -> PolicyDocument {
    PolicyDocument::parse(json).expect("a valid policy")
}

/// A mock with `deploy` (may do everything), `audit` (may only describe) and one
/// managed policy that denies metadata changes.
async fn start() -> MockAws {
    MockAws::builder()
        .assumable_role("deploy", None)
        .assumable_role("audit", Some(policy(DESCRIBE_ONLY)))
        .managed_policy(DENY_MODIFY_ARN, policy(DENY_MODIFY))
        .start()
        .await
        .expect("mock starts")
}

// ---------------------------------------------------------------- the Rust SDK

fn session_credentials(output: &aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        output.access_key_id(),
        output.secret_access_key(),
        Some(output.session_token().to_string()),
        None,
        "assumed",
    )
}

/// `ModifyInstanceMetadataOptions` raising the hop limit to 5: the error code, or `None`.
async fn modify_code(mock: &MockAws, credentials: Credentials) -> Option<(String, String)> {
    ec2(mock, credentials)
        .await
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(5)
        .send()
        .await
        .err()
        .map(|e| {
            let e = e.into_service_error();
            (
                e.code().unwrap_or_default().to_string(),
                e.message().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test]
async fn rust_sdk_assumes_a_role_and_sts_names_the_session() {
    let mock = start().await;
    let instance = imds_credentials(&mock).await.expect("IMDS credentials");
    let before = SystemTime::now();
    let out = sts(&mock, instance)
        .await
        .assume_role()
        .role_arn(DEPLOY)
        .role_session_name("job-42")
        .duration_seconds(900)
        .tags(Tag::builder().key("job").value("42").build().unwrap())
        .send()
        .await
        .expect("AssumeRole");
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/deploy/job-42")
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":job-42"));
    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    let expires = SystemTime::try_from(*creds.expiration()).unwrap();
    let lifetime = expires.duration_since(before).unwrap();
    assert!(
        (Duration::from_secs(898)..=Duration::from_secs(902)).contains(&lifetime),
        "{lifetime:?}"
    );
    #[expect(
        deprecated,
        reason = "STS still answers PackedPolicySize; the SDK marks it replaced"
    )]
    let packed = out.packed_policy_size();
    assert!(packed.is_some_and(|p| p > 0), "tags are packed");

    let session = session_credentials(creds);
    let identity = sts(&mock, session.clone())
        .await
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(identity.arn(), Some(user.arn()));
    assert_eq!(identity.user_id(), Some(user.assumed_role_id()));
    assert_eq!(identity.account(), Some(ACCOUNT));

    // Role chaining: the session assumes another role, capped at an hour.
    let chained = sts(&mock, session.clone())
        .await
        .assume_role()
        .role_arn(AUDIT)
        .role_session_name("job-42-audit")
        .send()
        .await
        .expect("chained AssumeRole");
    assert_eq!(
        chained.assumed_role_user().unwrap().arn(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/audit/job-42-audit")
    );
    #[expect(
        deprecated,
        reason = "STS still answers PackedPolicySize; the SDK marks it replaced"
    )]
    let packed = chained.packed_policy_size();
    assert_eq!(packed, None, "nothing to pack");
    let sessions = mock.assumed_sessions();
    let named: Vec<_> = sessions
        .iter()
        .map(|s| (s.role.as_str(), s.session_name.as_str()))
        .collect();
    assert_eq!(named, [("deploy", "job-42"), ("audit", "job-42-audit")]);
    assert_eq!(sessions[0].tags, [("job".to_string(), "42".to_string())]);
    assert_eq!(sessions[0].access_key_id, creds.access_key_id());
    assert_eq!(
        sessions[0].assumed_by,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/imds-harness-build-role/{INSTANCE_ID}")
    );
    assert_eq!(sessions[1].assumed_by, sessions[0].arn, "chained");
    assert!(!format!("{sessions:?}").contains(creds.secret_access_key()));
    let events = mock.events();
    assert_eq!(events.assume_role, 2);
    assert_eq!(events.identity_role_session, 1);
    assert_eq!(events.identity_v2, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn rust_sdk_sessions_get_the_intersection_of_role_and_session_policies() {
    let mock = start().await;
    let instance = imds_credentials(&mock).await.expect("IMDS credentials");
    let client = sts(&mock, instance.clone()).await;
    let assume = |role: &'static str, name: &'static str| {
        client.assume_role().role_arn(role).role_session_name(name)
    };

    // deploy with the look-only session policy: describe yes, modify no.
    let look = assume(DEPLOY, "look")
        .policy(LOOK_ONLY)
        .send()
        .await
        .unwrap();
    let look = session_credentials(look.credentials().unwrap());
    let described = ec2(&mock, look.clone())
        .await
        .describe_instances()
        .instance_ids(INSTANCE_ID)
        .send()
        .await
        .expect("the session policy allows DescribeInstances");
    assert_eq!(described.reservations().len(), 1);
    let (code, message) = modify_code(&mock, look.clone()).await.expect("refused");
    assert_eq!(code, "UnauthorizedOperation");
    assert_eq!(
        message,
        format!(
            "You are not authorized to perform this operation. User: \
             arn:aws:sts::{ACCOUNT}:assumed-role/deploy/look is not authorized to perform: \
             ec2:ModifyInstanceMetadataOptions on resource: \
             arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{INSTANCE_ID} because no session policy \
             allows the ec2:ModifyInstanceMetadataOptions action"
        )
    );
    assert_eq!(
        mock.options().hop_limit.get(),
        1,
        "the hop limit is unchanged"
    );
    // Nor may it widen itself by assuming another role: sts:AssumeRole is not allowed.
    let widen = sts(&mock, look)
        .await
        .assume_role()
        .role_arn(DEPLOY)
        .role_session_name("wider")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(widen.code(), Some("AccessDenied"));

    // audit's own policy bounds it, however wide the session policy.
    let wide = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
    let audit = assume(AUDIT, "audit").policy(wide).send().await.unwrap();
    let (code, message) = modify_code(&mock, session_credentials(audit.credentials().unwrap()))
        .await
        .expect("refused");
    assert_eq!(code, "UnauthorizedOperation");
    assert!(
        message.ends_with(
            "because no identity-based policy allows the ec2:ModifyInstanceMetadataOptions action"
        ),
        "{message}"
    );

    // A managed session policy's explicit deny wins over the role's allow-all.
    let denied = assume(DEPLOY, "denied")
        .policy_arns(PolicyDescriptorType::builder().arn(DENY_MODIFY_ARN).build())
        .send()
        .await
        .unwrap();
    let (code, message) = modify_code(&mock, session_credentials(denied.credentials().unwrap()))
        .await
        .expect("refused");
    assert_eq!(code, "UnauthorizedOperation");
    assert!(
        message.ends_with("with an explicit deny in a session policy"),
        "{message}"
    );

    // No session policy: deploy may do everything, and does.
    let free = assume(DEPLOY, "free").send().await.unwrap();
    assert_eq!(
        modify_code(&mock, session_credentials(free.credentials().unwrap())).await,
        None
    );
    assert_eq!(mock.options().hop_limit.get(), 5);
    // The instance role (no policy given) may still do everything too.
    assert_eq!(modify_code(&mock, instance).await, None);
    mock.shutdown().await;
}

#[tokio::test]
async fn an_instance_role_policy_bounds_what_it_may_assume_and_do() {
    let mock = MockAws::builder()
        .assumable_role("deploy", None)
        .instance_role_policy(policy(DESCRIBE_ONLY))
        .start()
        .await
        .unwrap();
    let instance = imds_credentials(&mock).await.expect("IMDS credentials");
    let err = sts(&mock, instance.clone())
        .await
        .assume_role()
        .role_arn(DEPLOY)
        .role_session_name("job")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("AccessDenied"));
    let (code, _) = modify_code(&mock, instance.clone()).await.expect("refused");
    assert_eq!(code, "UnauthorizedOperation");
    // GetCallerIdentity needs no permission, as in AWS.
    sts(&mock, instance)
        .await
        .get_caller_identity()
        .send()
        .await
        .expect("always allowed");
    assert_eq!(mock.events().assume_role, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_short_session_lifetime_expires_sessions_for_refresh_tests() {
    let mock = MockAws::builder()
        .assumable_role("deploy", None)
        .session_lifetime(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let client = sts(
        &mock,
        imds_credentials(&mock).await.expect("IMDS credentials"),
    )
    .await;
    let before = SystemTime::now();
    let out = client
        .assume_role()
        .role_arn(DEPLOY)
        .role_session_name("short")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let creds = out.credentials().unwrap();
    let expires = SystemTime::try_from(*creds.expiration()).unwrap();
    assert!(
        expires <= before + Duration::from_secs(3),
        "Expiration says 2 s"
    );
    let session = sts(&mock, session_credentials(creds)).await;
    session.get_caller_identity().send().await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = session
        .get_caller_identity()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("ExpiredToken"));
    mock.shutdown().await;
}

/// AssumeRole on `role` with `session_name` and whatever `extra` sets: the error's code
/// and message.
async fn refusal(
    client: &aws_sdk_sts::Client,
    role: &str,
    session_name: &str,
    extra: impl FnOnce(
        aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
    ) -> aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
) -> (String, String) {
    let err = extra(
        client
            .assume_role()
            .role_arn(role)
            .role_session_name(session_name),
    )
    .send()
    .await
    .expect_err("refused")
    .into_service_error();
    (
        err.code().unwrap_or_default().to_string(),
        err.message().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn rust_sdk_bad_input_gets_each_its_error_and_no_session() {
    let mock = start().await;
    let client = sts(
        &mock,
        imds_credentials(&mock).await.expect("IMDS credentials"),
    )
    .await;
    let me = format!("arn:aws:sts::{ACCOUNT}:assumed-role/imds-harness-build-role/{INSTANCE_ID}");
    let unknown = "arn:aws:iam::123456789012:role/unknown";
    assert_eq!(
        refusal(&client, unknown, "job", |b| b).await,
        (
            "AccessDenied".into(),
            format!(
                "User: {me} is not authorized to perform: sts:AssumeRole on resource: {unknown}"
            )
        )
    );
    let other_account = "arn:aws:iam::210987654321:role/deploy";
    assert_eq!(
        refusal(&client, other_account, "job", |b| b).await.0,
        "AccessDenied"
    );
    assert_eq!(
        refusal(&client, DEPLOY, "job", |b| b.policy("{\"Statement\":")).await,
        (
            "MalformedPolicyDocument".into(),
            "The policy is not in the valid JSON format.".into()
        )
    );
    assert_eq!(
        refusal(&client, DEPLOY, "job", |b| b
            .policy(r#"{"Statement":[{"Effect":"Allow","Action":"*"}]}"#))
        .await,
        (
            "MalformedPolicyDocument".into(),
            "Policy statement must contain resources.".into()
        )
    );
    let long = "n".repeat(65);
    assert_eq!(
        refusal(&client, DEPLOY, &long, |b| b).await,
        (
            "ValidationError".into(),
            format!(
                "1 validation error detected: Value '{long}' at 'roleSessionName' failed to \
                 satisfy constraint: Member must have length less than or equal to 64"
            )
        )
    );
    let (code, message) = refusal(&client, DEPLOY, "job 42", |b| b).await;
    assert_eq!(code, "ValidationError");
    assert!(message.contains(r"pattern: [\w+=,.@-]*"), "{message}");
    assert_eq!(
        refusal(&client, DEPLOY, "job", |b| b.duration_seconds(3601)).await,
        (
            "ValidationError".into(),
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed \
             by role chaining."
                .into()
        )
    );
    let (code, message) = refusal(&client, DEPLOY, "job", |b| b.duration_seconds(899)).await;
    assert_eq!(code, "ValidationError");
    assert!(
        message.contains("greater than or equal to 900"),
        "{message}"
    );
    let (code, message) = refusal(&client, DEPLOY, "job", |b| b.policy(oversized_policy())).await;
    assert_eq!(code, "PackedPolicyTooLarge");
    assert!(message.starts_with("Packed policy consumes 1"), "{message}");
    let (code, message) = refusal(&client, DEPLOY, "job", |b| {
        b.policy(format!("{LOOK_ONLY}{}", " ".repeat(2048)))
    })
    .await;
    assert_eq!(code, "ValidationError");
    assert!(message.contains("at 'policy'"), "{message}");
    let missing = "arn:aws:iam::aws:policy/NoSuchPolicy";
    assert_eq!(
        refusal(&client, DEPLOY, "job", |b| b.policy_arns(
            PolicyDescriptorType::builder().arn(missing).build()
        ))
        .await,
        (
            "NoSuchEntity".into(),
            format!("Policy {missing} does not exist or is not attachable.")
        )
    );
    assert_eq!(
        mock.events().assume_role,
        0,
        "no refused call made a session"
    );
    // The mock still serves.
    client
        .assume_role()
        .role_arn(DEPLOY)
        .role_session_name("job")
        .send()
        .await
        .expect("a good call after the bad ones");
    mock.shutdown().await;
}

/// A valid policy under STS's 2,048 characters whose packed form is over the limit.
fn oversized_policy() -> String {
    let actions: Vec<String> = (0..95)
        .map(|i| format!("\"ec2:Describe{i:03}x\""))
        .collect();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
        actions.join(",")
    );
    assert!((1800..=2048).contains(&policy.len()), "{}", policy.len());
    policy
}

// ---------------------------------------------------------------- the AWS CLI

fn cli(
    env: &imds_harness::probe::env::ClientEnv,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let out = tokio::task::block_in_place(|| {
        env.apply(duct::cmd(AWS_CLI, args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .expect("the AWS CLI runs")
    });
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_assumes_a_role_and_the_session_policy_keeps_the_hop_limit() {
    if !require(
        "aws_cli_assumes_a_role_and_the_session_policy_keeps_the_hop_limit",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start().await;
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds);
    let (sts_url, ec2_url) = (mock.endpoints().sts.clone(), mock.endpoints().ec2.clone());

    let (ok, out, stderr) = cli(
        &env,
        &[
            "sts",
            "assume-role",
            "--endpoint-url",
            &sts_url,
            "--role-arn",
            DEPLOY,
            "--role-session-name",
            "cli-job",
            "--duration-seconds",
            "900",
            "--policy",
            LOOK_ONLY,
        ],
    );
    assert!(ok, "{stderr}");
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/deploy/cli-job");
    assert_eq!(out["AssumedRoleUser"]["Arn"], arn.as_str());
    assert!(out["PackedPolicySize"].as_u64().unwrap() > 0);
    let creds = &out["Credentials"];
    let session = env
        .clone()
        .with("AWS_ACCESS_KEY_ID", creds["AccessKeyId"].as_str().unwrap())
        .with(
            "AWS_SECRET_ACCESS_KEY",
            creds["SecretAccessKey"].as_str().unwrap(),
        )
        .with("AWS_SESSION_TOKEN", creds["SessionToken"].as_str().unwrap());

    let (ok, identity, stderr) = cli(
        &session,
        &["sts", "get-caller-identity", "--endpoint-url", &sts_url],
    );
    assert!(ok, "{stderr}");
    assert_eq!(identity["Arn"], arn.as_str());

    let (ok, _, stderr) = cli(
        &session,
        &[
            "ec2",
            "describe-instances",
            "--endpoint-url",
            &ec2_url,
            "--instance-ids",
            INSTANCE_ID,
        ],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cli(
        &session,
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--endpoint-url",
            &ec2_url,
            "--instance-id",
            INSTANCE_ID,
            "--http-put-response-hop-limit",
            "5",
            "--http-tokens",
            "optional",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("(UnauthorizedOperation)"), "{stderr}");
    assert!(stderr.contains(&arn), "{stderr}");
    let options = mock.options();
    assert_eq!(options.hop_limit.get(), 1, "the hop limit is unchanged");
    assert_eq!(options.http_tokens.to_string(), "required");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_bad_input_gets_each_its_error() {
    if !require(
        "aws_cli_bad_input_gets_each_its_error",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start().await;
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds);
    let sts_url = mock.endpoints().sts.clone();
    let long_name = "n".repeat(65);
    let oversized = oversized_policy();
    let cases: [(&str, &str, &[&str], &str); 5] = [
        (
            "unknown role",
            "arn:aws:iam::123456789012:role/unknown",
            &[],
            "(AccessDenied)",
        ),
        (
            "malformed policy",
            DEPLOY,
            &["--policy", "{\"Statement\":"],
            "(MalformedPolicyDocument)",
        ),
        ("session name over 64", DEPLOY, &[], "(ValidationError)"),
        (
            "duration over the cap",
            DEPLOY,
            &["--duration-seconds", "3601"],
            "1 hour session limit",
        ),
        (
            "oversized policy",
            DEPLOY,
            &["--policy", &oversized],
            "(PackedPolicyTooLarge)",
        ),
    ];
    for (what, role, extra, expect) in cases {
        let name = if what == "session name over 64" {
            long_name.as_str()
        } else {
            "cli-job"
        };
        let mut args = vec![
            "sts",
            "assume-role",
            "--endpoint-url",
            &sts_url,
            "--role-arn",
            role,
            "--role-session-name",
            name,
        ];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = cli(&env, &args);
        assert!(!ok, "{what}");
        assert!(stderr.contains(expect), "{what}: {stderr}");
    }
    assert_eq!(mock.events().assume_role, 0);
    mock.shutdown().await;
}

// ---------------------------------------------------------------- botocore

/// botocore (Debian's python3-botocore, which the AWS CLI package brings): the instance
/// role's credentials from the mock's IMDS, AssumeRole with the look-only policy, then
/// GetCallerIdentity, DescribeInstances and ModifyInstanceMetadataOptions as the session,
/// and each bad input; prints what happened as JSON.
const BOTOCORE: &str = r#"
import json, sys
from datetime import datetime, timezone
import botocore.session
from botocore.exceptions import ClientError
sts_url, ec2_url, role, unknown, policy, instance = sys.argv[1:7]
s = botocore.session.get_session()
sts = s.create_client("sts", region_name="us-east-1", endpoint_url=sts_url)
r = sts.assume_role(RoleArn=role, RoleSessionName="boto-job", DurationSeconds=900, Policy=policy)
c = r["Credentials"]
keys = dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"])
out = {"arn": r["AssumedRoleUser"]["Arn"], "packed": r.get("PackedPolicySize"),
       "lifetime": (c["Expiration"] - datetime.now(timezone.utc)).total_seconds()}
out["identity"] = s.create_client("sts", region_name="us-east-1", endpoint_url=sts_url,
                                  **keys).get_caller_identity()["Arn"]
ec2 = s.create_client("ec2", region_name="us-east-1", endpoint_url=ec2_url, **keys)
out["described"] = len(ec2.describe_instances(InstanceIds=[instance])["Reservations"])
def code(call):
    try:
        call()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]
out["modify"] = code(lambda: ec2.modify_instance_metadata_options(
    InstanceId=instance, HttpPutResponseHopLimit=5))
ask = lambda **kw: code(lambda: sts.assume_role(**dict(dict(RoleArn=role, RoleSessionName="boto-job"), **kw)))
out["unknown"] = ask(RoleArn=unknown)
out["malformed"] = ask(Policy="{\"Statement\":")
out["long_name"] = ask(RoleSessionName="n" * 65)
out["over_cap"] = ask(DurationSeconds=3601)
out["oversized"] = ask(Policy=sys.argv[7])
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn botocore_assumes_a_role_and_sees_each_refusal() {
    if !require(
        "botocore_assumes_a_role_and_sees_each_refusal",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start().await;
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds);
    let out = tokio::task::block_in_place(|| {
        env.apply(duct::cmd(
            "python3",
            [
                "-c",
                BOTOCORE,
                &mock.endpoints().sts,
                &mock.endpoints().ec2,
                DEPLOY,
                "arn:aws:iam::123456789012:role/unknown",
                LOOK_ONLY,
                INSTANCE_ID,
                &oversized_policy(),
            ],
        ))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/deploy/boto-job");
    assert_eq!(got["arn"], arn.as_str());
    assert_eq!(got["identity"], arn.as_str());
    assert!(got["packed"].as_u64().unwrap() > 0);
    let lifetime = got["lifetime"].as_f64().unwrap();
    assert!((880.0..=901.0).contains(&lifetime), "{lifetime}");
    assert_eq!(got["described"], 1);
    assert_eq!(got["modify"], "UnauthorizedOperation");
    assert_eq!(got["unknown"], "AccessDenied");
    assert_eq!(got["malformed"], "MalformedPolicyDocument");
    assert_eq!(got["long_name"], "ValidationError");
    assert_eq!(got["over_cap"], "ValidationError");
    assert_eq!(got["oversized"], "PackedPolicyTooLarge");
    assert_eq!(mock.options().hop_limit.get(), 1);
    assert_eq!(mock.events().assume_role, 1);
    mock.shutdown().await;
}

// ---------------------------------------------------------------- imds-harness mock

/// `imds-harness mock`, killed when dropped (the test's end or its failure).
struct MockCommand(std::process::Child);

impl Drop for MockCommand {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mock_command_refuses_bad_role_flags_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("malformed.json");
    std::fs::write(
        &malformed,
        r#"{"Statement":[{"Effect":"Allow","Action":"*"}]}"#,
    )
    .unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, DESCRIBE_ONLY).unwrap();
    let missing = dir.path().join("missing.json");
    let arg = |flag: &str, value: String| vec!["mock".to_string(), flag.to_string(), value];
    for (args, expect) in [
        (
            arg("--assumable-role", format!("deploy={}", missing.display())),
            "--assumable-role",
        ),
        (
            arg(
                "--assumable-role",
                format!("deploy={}", malformed.display()),
            ),
            "must contain resources",
        ),
        (
            arg("--assumable-role", "a/b".into()),
            "assumable role \"a/b\"",
        ),
        (
            arg("--assumable-role", "deploy=".into()),
            "NAME=POLICY_FILE",
        ),
        (
            arg("--managed-policy", format!("ReadOnly={}", good.display())),
            "managed policy ARN",
        ),
        (
            arg("--managed-policy", "arn:aws:iam::aws:policy/x".into()),
            "ARN=POLICY_FILE",
        ),
        (
            arg("--instance-role-policy", malformed.display().to_string()),
            "--instance-role-policy",
        ),
    ] {
        let out = std::process::Command::new(imds_e2e::bins::harness())
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    let help = std::process::Command::new(imds_e2e::bins::harness())
        .args(["mock", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--assumable-role <NAME[=POLICY_FILE]>",
        "--managed-policy <ARN=POLICY_FILE>",
        "--instance-role-policy <POLICY_FILE>",
        "--session-lifetime <SECONDS>",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn mock_command_roles_and_policies_reach_sts_and_ec2_and_no_secret_reaches_its_logs() {
    if !require("mock_command_assumable_roles", &[Requirement::AwsCli]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let describe_only = dir.path().join("describe-only.json");
    std::fs::write(&describe_only, DESCRIBE_ONLY).unwrap();
    let deny_modify = dir.path().join("deny-modify.json");
    std::fs::write(&deny_modify, DENY_MODIFY).unwrap();
    let mut child = std::process::Command::new(imds_e2e::bins::harness())
        .args(["mock", "--assumable-role", "deploy", "--assumable-role"])
        .arg(format!("audit={}", describe_only.display()))
        .arg("--managed-policy")
        .arg(format!("{DENY_MODIFY_ARN}={}", deny_modify.display()))
        .env("IMDS_HARNESS_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("imds-harness runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let mut mock = MockCommand(child);
    let endpoints: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let (sts_url, ec2_url) = (
        endpoints["sts"].as_str().unwrap(),
        endpoints["ec2"].as_str().unwrap(),
    );
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), endpoints["imds"].as_str().unwrap());
    let run = |env: &imds_harness::probe::env::ClientEnv, args: &[&str]| {
        let out = env
            .apply(duct::cmd(AWS_CLI, args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let assume = |role: &str, extra: &[&str]| {
        let mut args = vec![
            "sts",
            "assume-role",
            "--endpoint-url",
            sts_url,
            "--role-arn",
            role,
            "--role-session-name",
            "cmd-job",
        ];
        args.extend_from_slice(extra);
        let (ok, out, stderr) = run(&env, &args);
        assert!(ok, "{stderr}");
        let creds = &out["Credentials"];
        let session = env
            .clone()
            .with("AWS_ACCESS_KEY_ID", creds["AccessKeyId"].as_str().unwrap())
            .with(
                "AWS_SECRET_ACCESS_KEY",
                creds["SecretAccessKey"].as_str().unwrap(),
            )
            .with("AWS_SESSION_TOKEN", creds["SessionToken"].as_str().unwrap());
        let secrets = vec![
            creds["SecretAccessKey"].as_str().unwrap().to_owned(),
            creds["SessionToken"].as_str().unwrap().to_owned(),
        ];
        (session, secrets)
    };
    let modify = |session: &imds_harness::probe::env::ClientEnv| {
        run(
            session,
            &[
                "ec2",
                "modify-instance-metadata-options",
                "--endpoint-url",
                ec2_url,
                "--instance-id",
                INSTANCE_ID,
                "--http-put-response-hop-limit",
                "2",
            ],
        )
    };
    let (audit, mut secrets) = assume(AUDIT, &[]);
    let (ok, _, stderr) = modify(&audit);
    assert!(
        !ok && stderr.contains("no identity-based policy allows"),
        "{stderr}"
    );
    let (denied, more) = assume(
        DEPLOY,
        &["--policy-arns", &format!("arn={DENY_MODIFY_ARN}")],
    );
    secrets.extend(more);
    let (ok, _, stderr) = modify(&denied);
    assert!(
        !ok && stderr.contains("explicit deny in a session policy"),
        "{stderr}"
    );
    let (deploy, more) = assume(DEPLOY, &[]);
    secrets.extend(more);
    let (ok, out, stderr) = modify(&deploy);
    assert!(ok, "{stderr}");
    assert_eq!(out["InstanceMetadataOptions"]["HttpPutResponseHopLimit"], 2);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &mock.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut mock.0.stderr.take().unwrap(), &mut logs).unwrap();
    assert_eq!(mock.0.wait().unwrap().code(), Some(0), "SIGTERM exits 0");
    assert!(logs.contains("role assumed"), "{logs}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a session's secret reached the logs"
        );
    }
}
