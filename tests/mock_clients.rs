//! The mock AWS side against real clients: the Rust SDK (aws-config's IMDS provider,
//! aws-sdk-sts, aws-sdk-ec2) and Debian's AWS CLI, plus every refusal checked by
//! status and body. Everything listens on 127.0.0.1; nothing reaches real AWS.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_ec2::types::{HttpTokensState, InstanceMetadataEndpointState};
use http::StatusCode;
use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::raw_http::{send, RawResponse};
use imds_e2e::require::{require, skip, Requirement};
use imds_mock::{Listeners, MetadataOptions, MetadataOptionsChange, MockAws, MockConfig};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};

mod sdk;
use sdk::{ec2, imds_client, imds_credentials, sts};

const TTL: (&str, &str) = ("x-aws-ec2-metadata-token-ttl-seconds", "21600");
const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn start(config: MockConfig) -> MockAws {
    MockAws::start(config, Listeners::loopback().expect("loopback ports")).expect("mock starts")
}

fn optional_tokens() -> MockConfig {
    MockConfig {
        options: MetadataOptions {
            http_tokens: HttpTokens::Optional,
            ..MetadataOptions::default()
        },
        ..MockConfig::default()
    }
}

fn url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

async fn token(mock: &MockAws) -> String {
    let response = send(
        "PUT",
        &url(&mock.endpoints().imds, "/latest/api/token"),
        &[TTL],
        "",
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

fn assert_refused(response: &RawResponse, status: StatusCode) {
    assert_eq!(response.status, status, "body: {}", response.body);
    let title = format!(
        "<title>{} - {}</title>",
        status.as_u16(),
        status.canonical_reason().unwrap()
    );
    assert!(response.body.starts_with("<?xml"), "{}", response.body);
    assert!(response.body.contains(&title), "{}", response.body);
    assert_eq!(response.headers["server"], "EC2ws");
    assert_eq!(response.headers["connection"], "close");
}

// ---------------------------------------------------------------- the Rust SDK

/// GetCallerIdentity with `credentials`, which must succeed.
async fn caller_identity(
    mock: &MockAws,
    credentials: Credentials,
) -> aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput {
    sts(mock, credentials)
        .await
        .get_caller_identity()
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rust_sdk_gets_credentials_from_imds_and_an_identity_from_sts() {
    let mock = start(MockConfig::default());
    let creds = imds_credentials(&mock).await.expect("IMDS credentials");
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert!(creds.session_token().is_some());

    let identity = caller_identity(&mock, creds).await;
    assert_eq!(
        identity.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/imds-harness-build-role/i-0123456789abcdef0")
    );
    assert_eq!(
        identity.user_id(),
        Some("AROAIMDSHARNESSROLE01:i-0123456789abcdef0")
    );
    assert_eq!(identity.account(), Some("123456789012"));
    assert_eq!(mock.events().identity_v2, 1);
}

#[tokio::test]
async fn rust_sdk_describes_and_modifies_metadata_options_and_imds_obeys() {
    let mock = start(MockConfig::default());
    let creds = imds_credentials(&mock).await.unwrap();
    let ec2 = ec2(&mock, creds).await;

    let described = ec2
        .describe_instances()
        .instance_ids(INSTANCE_ID)
        .send()
        .await
        .unwrap();
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(instance.instance_id(), Some(INSTANCE_ID));
    let options = instance.metadata_options().unwrap();
    assert_eq!(options.http_put_response_hop_limit(), Some(1));
    assert_eq!(options.http_tokens(), Some(&HttpTokensState::Required));

    let modified = ec2
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(3)
        .http_tokens(HttpTokensState::Optional)
        .send()
        .await
        .unwrap();
    assert_eq!(
        modified
            .instance_metadata_options()
            .unwrap()
            .http_put_response_hop_limit(),
        Some(3)
    );
    assert_eq!(mock.options().hop_limit, HopLimit::new(3).unwrap());
    // Tokens optional now: a tokenless GET is served (IMDSv1).
    let v1 = send(
        "GET",
        &url(&mock.endpoints().imds, "/latest/meta-data/instance-id"),
        &[],
        "",
    )
    .await;
    assert_eq!((v1.status, v1.body.as_str()), (StatusCode::OK, INSTANCE_ID));

    ec2.modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_endpoint(InstanceMetadataEndpointState::Disabled)
        .send()
        .await
        .unwrap();
    let disabled = send(
        "PUT",
        &url(&mock.endpoints().imds, "/latest/api/token"),
        &[TTL],
        "",
    )
    .await;
    assert_refused(&disabled, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rust_sdk_sees_ec2_refusals_with_their_codes() {
    let mock = start(MockConfig::default());
    let creds = imds_credentials(&mock).await.unwrap();
    let ec2 = ec2(&mock, creds).await;
    let code = |e: &aws_sdk_ec2::error::SdkError<_>| {
        aws_sdk_ec2::error::ProvideErrorMetadata::code(e)
            .unwrap_or("none")
            .to_string()
    };

    let out_of_range = ec2
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(65)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&out_of_range), "InvalidParameterValue");

    let unknown = ec2
        .describe_instances()
        .instance_ids("i-00000000000000001")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&unknown),
        Some("InvalidInstanceID.NotFound")
    );

    let dry = ec2
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(5)
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dry), "DryRunOperation");
    assert_eq!(
        mock.options().hop_limit.get(),
        1,
        "a dry run changes nothing"
    );

    mock.deny("ModifyInstanceMetadataOptions", true);
    let denied = ec2
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&denied), "UnauthorizedOperation");
    assert_eq!(mock.options().hop_limit.get(), 1);
}

/// The credentials IMDS hands a tokenless (IMDSv1) caller of `role`: the set tokens
/// optional allows, apart from the IMDSv2 set.
async fn imdsv1_credentials(mock: &MockAws, role: &str) -> Credentials {
    let path = format!("/latest/meta-data/iam/security-credentials/{role}");
    let doc = send("GET", &url(&mock.endpoints().imds, &path), &[], "").await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.body);
    let doc: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
    Credentials::new(
        doc["AccessKeyId"].as_str().unwrap(),
        doc["SecretAccessKey"].as_str().unwrap(),
        Some(doc["Token"].as_str().unwrap().to_string()),
        None,
        "imdsv1",
    )
}

#[tokio::test]
async fn rust_sdk_never_falls_back_to_imdsv1_but_v1_and_v2_sets_differ() {
    let mock = start(optional_tokens());
    let v2 = imds_credentials(&mock).await.unwrap();
    let v1 = imdsv1_credentials(&mock, "imds-harness-build-role").await;
    assert_ne!(v1.access_key_id(), v2.access_key_id());
    caller_identity(&mock, v1).await;
    caller_identity(&mock, v2).await;
    let events = mock.events();
    assert_eq!((events.identity_v1, events.identity_v2), (1, 1));
}

// ---------------------------------------------------------------- STS refusals

async fn sts_code(mock: &MockAws, credentials: Credentials) -> (String, String) {
    let err = sts(mock, credentials)
        .await
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let status = err
        .raw_response()
        .map(|r| r.status().as_u16().to_string())
        .unwrap_or_default();
    (
        aws_sdk_sts::error::ProvideErrorMetadata::code(&err)
            .unwrap_or("none")
            .to_string(),
        status,
    )
}

#[tokio::test]
async fn sts_refuses_bad_credentials_as_the_real_service_does() {
    let mock = start(MockConfig::default());
    let good = imds_credentials(&mock).await.unwrap();

    let unknown = Credentials::new(
        "ASIAUNKNOWNUNKNOWN00",
        "x".repeat(40),
        Some("t".into()),
        None,
        "t",
    );
    assert_eq!(
        sts_code(&mock, unknown).await,
        ("InvalidClientTokenId".into(), "403".into())
    );

    let without_token = Credentials::new(
        good.access_key_id(),
        good.secret_access_key(),
        None,
        None,
        "t",
    );
    assert_eq!(
        sts_code(&mock, without_token).await,
        ("InvalidClientTokenId".into(), "403".into())
    );

    let wrong_secret = Credentials::new(
        good.access_key_id(),
        "y".repeat(40),
        good.session_token().map(str::to_string),
        None,
        "t",
    );
    assert_eq!(
        sts_code(&mock, wrong_secret).await,
        ("SignatureDoesNotMatch".into(), "403".into())
    );

    let unsigned = send(
        "POST",
        &mock.endpoints().sts,
        &[("content-type", "application/x-www-form-urlencoded")],
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
    assert!(
        unsigned.body.starts_with("<ErrorResponse"),
        "{}",
        unsigned.body
    );
    assert!(unsigned
        .body
        .contains("<Code>MissingAuthenticationToken</Code>"));
    assert!(unsigned.body.contains("<RequestId>"));
    assert_eq!(unsigned.headers["content-type"], "text/xml");
}

#[tokio::test]
async fn sts_refuses_expired_credentials_and_imds_rotates_them() {
    let mock = start(MockConfig {
        credential_lifetime: Duration::from_secs(2),
        ..MockConfig::default()
    });
    let first = imds_credentials(&mock).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        sts_code(&mock, first.clone()).await,
        ("ExpiredToken".into(), "403".into())
    );
    let second = imds_credentials(&mock).await.unwrap();
    assert_ne!(first.access_key_id(), second.access_key_id());
    caller_identity(&mock, second).await;
}

// ---------------------------------------------------------------- IMDS refusals

#[tokio::test]
async fn token_put_refusals_have_the_real_statuses_and_bodies() {
    let mock = start(MockConfig::default());
    let token_url = url(&mock.endpoints().imds, "/latest/api/token");

    for ttl in [
        None,
        Some("0"),
        Some("21601"),
        Some("ten"),
        Some("-1"),
        Some(""),
    ] {
        let headers: Vec<(&str, &str)> = ttl.map(|v| (TTL.0, v)).into_iter().collect();
        let response = send("PUT", &token_url, &headers, "").await;
        assert_refused(&response, StatusCode::BAD_REQUEST);
    }
    let forwarded = send(
        "PUT",
        &token_url,
        &[TTL, ("x-forwarded-for", "10.0.0.1")],
        "",
    )
    .await;
    assert_refused(&forwarded, StatusCode::FORBIDDEN);
    let versioned = send(
        "PUT",
        &url(&mock.endpoints().imds, "/2021-03-23/api/token"),
        &[TTL],
        "",
    )
    .await;
    assert_refused(&versioned, StatusCode::FORBIDDEN);
    for method in ["GET", "POST", "DELETE", "HEAD"] {
        let response = send(method, &token_url, &[TTL], "").await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }

    let ok = send("PUT", &token_url, &[TTL], "").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body.len(), 56);
    assert_eq!(ok.headers[TTL.0], "21600", "the TTL header is echoed");
    assert_eq!(ok.headers["server"], "EC2ws");
    assert_eq!(ok.headers["connection"], "close");
}

#[tokio::test]
async fn gets_need_a_valid_unexpired_token_when_tokens_are_required() {
    let mock = start(MockConfig::default());
    let id_url = url(&mock.endpoints().imds, "/latest/meta-data/instance-id");

    assert_refused(
        &send("GET", &id_url, &[], "").await,
        StatusCode::UNAUTHORIZED,
    );
    let forged = "AQAAAABrDCAJ3RE8PGGMf0PSv4H10UWjXTAgduV7BLX2k3yjNR6mHaQh";
    assert_refused(
        &send("GET", &id_url, &[("x-aws-ec2-metadata-token", forged)], "").await,
        StatusCode::UNAUTHORIZED,
    );
    let short = send(
        "PUT",
        &url(&mock.endpoints().imds, "/latest/api/token"),
        &[(TTL.0, "1")],
        "",
    )
    .await
    .body;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused(
        &send("GET", &id_url, &[("x-aws-ec2-metadata-token", &short)], "").await,
        StatusCode::UNAUTHORIZED,
    );

    let token = token(&mock).await;
    let ok = send("GET", &id_url, &[("x-aws-ec2-metadata-token", &token)], "").await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, INSTANCE_ID));
    assert_eq!(ok.headers["content-type"], "text/plain");
    let head = send("HEAD", &id_url, &[("x-aws-ec2-metadata-token", &token)], "").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));

    let missing = send(
        "GET",
        &url(&mock.endpoints().imds, "/latest/meta-data/no-such-thing"),
        &[("x-aws-ec2-metadata-token", &token)],
        "",
    )
    .await;
    assert_refused(&missing, StatusCode::NOT_FOUND);
    let put_elsewhere = send("PUT", &id_url, &[TTL], "").await;
    assert_eq!(put_elsewhere.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn optional_tokens_serve_imdsv1_but_still_refuse_invalid_tokens() {
    let mock = start(optional_tokens());
    let id_url = url(&mock.endpoints().imds, "/latest/meta-data/instance-id");
    let v1 = send("GET", &id_url, &[], "").await;
    assert_eq!((v1.status, v1.body.as_str()), (StatusCode::OK, INSTANCE_ID));
    assert_refused(
        &send("GET", &id_url, &[("x-aws-ec2-metadata-token", "bogus")], "").await,
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn a_disabled_endpoint_refuses_everything() {
    let mock = start(MockConfig::default());
    mock.modify(&MetadataOptionsChange {
        http_endpoint: Some(HttpEndpoint::Disabled),
        ..Default::default()
    });
    let base = &mock.endpoints().imds;
    assert_refused(
        &send("PUT", &url(base, "/latest/api/token"), &[TTL], "").await,
        StatusCode::FORBIDDEN,
    );
    assert_refused(
        &send("GET", &url(base, "/latest/meta-data/"), &[], "").await,
        StatusCode::FORBIDDEN,
    );
}

#[tokio::test]
async fn metadata_paths_serve_what_brief_lists() {
    let mock = start(MockConfig::default());
    let token = token(&mock).await;
    let get = |path: &'static str| {
        let token = token.clone();
        let base = mock.endpoints().imds.clone();
        async move {
            let r = send(
                "GET",
                &url(&base, path),
                &[("x-aws-ec2-metadata-token", &token)],
                "",
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            r.body
        }
    };
    let listing = get("/latest/meta-data/").await;
    for entry in ["iam/", "instance-id", "placement/"] {
        assert!(listing.lines().any(|l| l == entry), "{listing}");
    }
    assert_eq!(get("/latest/meta-data/placement/region").await, "us-east-1");
    assert_eq!(
        get("/latest/meta-data/placement/availability-zone").await,
        "us-east-1a"
    );
    assert_eq!(
        get("/latest/meta-data/iam/security-credentials/").await,
        "imds-harness-build-role"
    );
    let info: serde_json::Value =
        serde_json::from_str(&get("/latest/meta-data/iam/info").await).unwrap();
    assert_eq!(info["Code"], "Success");
    assert!(info["InstanceProfileArn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:iam::123456789012:instance-profile/"));
    assert!(info["InstanceProfileId"].is_string() && info["LastUpdated"].is_string());
    let doc: serde_json::Value =
        serde_json::from_str(&get("/latest/dynamic/instance-identity/document").await).unwrap();
    assert_eq!(doc["instanceId"], INSTANCE_ID);
    assert_eq!(doc["version"], "2017-09-30");
    for field in [
        "accountId",
        "availabilityZone",
        "imageId",
        "instanceType",
        "privateIp",
        "region",
    ] {
        assert!(doc[field].is_string(), "{field}");
    }
    let creds: serde_json::Value = serde_json::from_str(
        &get("/latest/meta-data/iam/security-credentials/imds-harness-build-role").await,
    )
    .unwrap();
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["Type"], "AWS-HMAC");
    assert!(creds["Expiration"].as_str().unwrap().ends_with('Z'));
}

/// The IPv6 endpoint answers only with `HttpProtocolIpv6=enabled`, as on EC2; once
/// enabled, the Rust SDK and the CLI in its IPv6 endpoint mode get credentials there.
#[tokio::test(flavor = "multi_thread")]
async fn the_ipv6_endpoint_answers_only_with_http_protocol_ipv6_enabled() {
    let name = "the_ipv6_endpoint_answers_only_with_http_protocol_ipv6_enabled";
    if !require(name, &[Requirement::AwsCli]) {
        return;
    }
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    // The APIs on IPv4: the CLI 2.9.19 refuses an `--endpoint-url` with an IPv6 literal.
    let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let Ok(listeners) = Listeners::bind(v6, v4, v4) else {
        skip(name, "no IPv6 loopback (::1)");
        return;
    };
    let mock = MockAws::start(MockConfig::default(), listeners).unwrap();
    assert!(mock.endpoints().imds.starts_with("http://[::1]:"));
    assert_eq!(
        unanswered_token_request(&mock).await,
        0,
        "disabled: closed unanswered"
    );
    // Enabled through the library (the instance has no IPv4 IMDS here to get the
    // credentials an EC2 API call would be signed with).
    mock.modify(&imds_mock::MetadataOptionsChange {
        http_protocol_ipv6: Some(imds_vocab::Toggle::Enabled),
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    assert_eq!(token(&mock).await.len(), 56);
    assert!(imds_credentials(&mock).await.is_ok());
    let sts_url = mock.endpoints().sts.clone();
    let expr = duct::cmd!(
        AWS_CLI,
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        &sts_url
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked();
    let env = isolated(home.path(), &mock.endpoints().imds)
        .with("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6");
    let out = tokio::task::block_in_place(|| env.apply(expr).run().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(":assumed-role/"));
}

/// Sends a token request to the mock's IMDS and returns how many bytes came back
/// before the connection closed.
async fn unanswered_token_request(mock: &MockAws) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = mock
        .endpoints()
        .imds
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n\
                   X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    reply.len()
}

// ---------------------------------------------------------------- the AWS CLI

/// Runs the AWS CLI against `mock` (from a blocking section of the test's runtime,
/// which keeps serving the mock meanwhile).
fn cli(mock: &MockAws, home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let expr = duct::cmd(AWS_CLI, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let env = isolated(home, &mock.endpoints().imds);
    tokio::task::block_in_place(|| env.apply(expr).run().expect("the AWS CLI runs"))
}

/// The CLI's JSON output; the call must succeed.
fn cli_ok(mock: &MockAws, home: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = cli(mock, home, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "aws {args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).expect("the CLI prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_gets_an_identity_and_changes_metadata_options() {
    if !require(
        "aws_cli_gets_an_identity_and_changes_metadata_options",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start(MockConfig::default());
    let home = tempfile::tempdir().unwrap();
    let (sts_url, ec2_url) = (&mock.endpoints().sts, &mock.endpoints().ec2);
    let modify = |hop_limit: &str| {
        cli(
            &mock,
            home.path(),
            &[
                "ec2",
                "modify-instance-metadata-options",
                "--endpoint-url",
                ec2_url,
                "--instance-id",
                INSTANCE_ID,
                "--http-put-response-hop-limit",
                hop_limit,
                "--http-endpoint",
                "enabled",
            ],
        )
    };

    let identity = cli_ok(
        &mock,
        home.path(),
        &["sts", "get-caller-identity", "--endpoint-url", sts_url],
    );
    assert_eq!(
        identity["Arn"],
        "arn:aws:sts::123456789012:assumed-role/imds-harness-build-role/i-0123456789abcdef0"
    );
    assert_eq!(mock.events().identity_v2, 1, "the CLI went through IMDSv2");

    let modified = modify("3");
    assert!(
        modified.status.success(),
        "{}",
        String::from_utf8_lossy(&modified.stderr)
    );
    assert_eq!(mock.options().hop_limit.get(), 3);

    let described = cli_ok(
        &mock,
        home.path(),
        &[
            "ec2",
            "describe-instances",
            "--endpoint-url",
            ec2_url,
            "--instance-ids",
            INSTANCE_ID,
        ],
    );
    let options = &described["Reservations"][0]["Instances"][0]["MetadataOptions"];
    assert_eq!(options["HttpPutResponseHopLimit"], 3);
    assert_eq!(options["State"], "applied");

    let refused = modify("65");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("(InvalidParameterValue)"));
    assert_eq!(mock.options().hop_limit.get(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_without_imds_reports_unable_to_locate_credentials() {
    if !require(
        "aws_cli_without_imds_reports_unable_to_locate_credentials",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start(MockConfig::default());
    mock.modify(&MetadataOptionsChange {
        http_endpoint: Some(HttpEndpoint::Disabled),
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        &mock,
        home.path(),
        &[
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &mock.endpoints().sts,
        ],
    );
    // AWS CLI v2 (Debian's 2.9.19) exits 253 for "no credentials"; v1 exited 255.
    assert_eq!(out.status.code(), Some(253));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to locate credentials"));
}

// ---------------------------------------------------------------- the library API

/// The mock as a user's tests would use it: configured with the builder, asked by the
/// Rust SDK and the real AWS CLI, changed at run time, and its request log telling
/// which credential set signed each STS call.
#[tokio::test(flavor = "multi_thread")]
async fn the_library_api_configures_serves_changes_and_tells_what_happened() {
    use imds_mock::{ImdsVersion, Service};
    if !require("mock_library_api", &[Requirement::AwsCli]) {
        return;
    }
    let mock = MockAws::builder()
        .hop_limit(HopLimit::new(2).unwrap())
        .http_tokens(HttpTokens::Optional)
        .role("ci-runner")
        .account("210987654321")
        .start()
        .await
        .unwrap();
    assert_eq!(mock.options().hop_limit.get(), 2);
    let arn = "arn:aws:sts::210987654321:assumed-role/ci-runner/i-0123456789abcdef0";

    // The Rust SDK: IMDSv2 only.
    let creds = imds_credentials(&mock).await.unwrap();
    let identity = caller_identity(&mock, creds).await;
    assert_eq!(identity.arn(), Some(arn));

    // The AWS CLI (it asks for a token too: IMDSv2 where it is reachable).
    let home = tempfile::tempdir().unwrap();
    let sts_url = mock.endpoints().sts.clone();
    let args = [
        "sts",
        "get-caller-identity",
        "--output",
        "json",
        "--endpoint-url",
        sts_url.as_str(),
    ];
    let cli_identity = cli_ok(&mock, home.path(), &args);
    assert_eq!(cli_identity["Arn"], arn);

    // A tokenless GET (IMDSv1, which tokens optional allows) gets the other set; a call
    // signed with it is told apart in the log.
    let v1 = imdsv1_credentials(&mock, "ci-runner").await;
    caller_identity(&mock, v1).await;

    // Changed at run time, as ModifyInstanceMetadataOptions would.
    mock.set_hop_limit(HopLimit::new(3).unwrap());
    assert_eq!(mock.options().hop_limit.get(), 3);

    let requests = mock.requests();
    let sts_calls: Vec<_> = requests
        .iter()
        .filter(|r| r.service == Service::Sts)
        .collect();
    let signed: Vec<Option<ImdsVersion>> = sts_calls.iter().map(|r| r.signed_with).collect();
    assert_eq!(
        signed,
        [
            Some(ImdsVersion::V2),
            Some(ImdsVersion::V2),
            Some(ImdsVersion::V1)
        ],
        "the SDK, the CLI, the IMDSv1 set: {requests:?}"
    );
    assert!(sts_calls
        .iter()
        .all(|r| r.status == 200 && r.method == "POST"));
    assert!(requests.iter().any(|r| r.service == Service::Imds
        && r.method == "PUT"
        && r.path == "/latest/api/token"
        && r.status == 200));
    assert!(requests.iter().any(|r| r.service == Service::Imds
        && r.path == "/latest/meta-data/iam/security-credentials/ci-runner"));
    // Nothing secret in the log.
    let log = serde_json::to_string(&requests).unwrap();
    assert!(!log.contains("ASIA"), "{log}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_api_refuses_a_bad_configuration_and_a_taken_port() {
    use imds_mock::MockError;
    let err = MockAws::builder()
        .account("12")
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MockError::Account(_)), "{err}");
    let taken = MockAws::builder().start().await.unwrap();
    let addr: std::net::SocketAddr = taken
        .endpoints()
        .imds
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let err = MockAws::builder()
        .imds_addr(addr)
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MockError::Bind(_)), "{err}");
    assert!(
        err.to_string().contains("pick another address or port 0"),
        "{err}"
    );
}

/// Tags, a Spot interruption notice and a rebalance recommendation: 404 until there is
/// something to say, then in EC2's formats; tags only once `InstanceMetadataTags` is
/// enabled (here by the real AWS CLI, as a user would).
#[tokio::test(flavor = "multi_thread")]
async fn tags_and_notices_are_404_until_there_is_something_to_say() {
    use imds_mock::SpotAction;
    use std::time::UNIX_EPOCH;
    if !require("mock_notices", &[Requirement::AwsCli]) {
        return;
    }
    let mock = MockAws::builder()
        .tag("team", "builds")
        .tag("Name", "runner-1")
        .start()
        .await
        .unwrap();
    let token = token(&mock).await;
    let get = |path: &'static str| {
        let (imds, token) = (mock.endpoints().imds.clone(), token.clone());
        async move {
            send(
                "GET",
                &url(&imds, path),
                &[("x-aws-ec2-metadata-token", token.as_str())],
                "",
            )
            .await
        }
    };
    for path in [
        "/latest/meta-data/tags/instance",
        "/latest/meta-data/tags/instance/team",
        "/latest/meta-data/spot/instance-action",
        "/latest/meta-data/events/recommendations/rebalance",
    ] {
        assert_refused(&get(path).await, StatusCode::NOT_FOUND);
    }

    let home = tempfile::tempdir().unwrap();
    let ec2_url = mock.endpoints().ec2.clone();
    cli_ok(
        &mock,
        home.path(),
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--endpoint-url",
            &ec2_url,
            "--instance-id",
            INSTANCE_ID,
            "--instance-metadata-tags",
            "enabled",
        ],
    );
    let keys = get("/latest/meta-data/tags/instance").await;
    assert_eq!(
        (keys.status, keys.body.as_str()),
        (StatusCode::OK, "Name\nteam")
    );
    let team = get("/latest/meta-data/tags/instance/team").await;
    assert_eq!(team.body, "builds");
    assert_refused(
        &get("/latest/meta-data/tags/instance/owner").await,
        StatusCode::NOT_FOUND,
    );

    let at = UNIX_EPOCH + Duration::from_mins(25_095_382);
    mock.interrupt_spot(SpotAction::Terminate, at);
    mock.recommend_rebalance(at);
    // Read by the Rust SDK's IMDS client, as a termination handler built on it would.
    let action = imds_client(&mock)
        .get("/latest/meta-data/spot/instance-action")
        .await
        .unwrap();
    let action: serde_json::Value = serde_json::from_str(action.as_ref()).unwrap();
    assert_eq!(
        action,
        serde_json::json!({"action": "terminate", "time": "2017-09-18T08:22:00Z"})
    );
    let rebalance = get("/latest/meta-data/events/recommendations/rebalance").await;
    assert_eq!(rebalance.status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rebalance.body).unwrap(),
        serde_json::json!({"noticeTime": "2017-09-18T08:22:00Z"})
    );
    assert_eq!(get("/latest/meta-data/spot").await.body, "instance-action");

    mock.clear_notices();
    assert_refused(
        &get("/latest/meta-data/spot/instance-action").await,
        StatusCode::NOT_FOUND,
    );
    mock.shutdown().await;
}

/// What the popular metadata mock serves besides credentials, read by the Rust SDK's
/// IMDS client: the primary network interface, user data, the Auto Scaling lifecycle
/// state and scheduled maintenance, each 404 (maintenance: `[]`) until there is one.
#[tokio::test(flavor = "multi_thread")]
async fn network_user_data_lifecycle_and_maintenance_in_ec2s_formats() {
    use imds_mock::{LifecycleState, MaintenanceCode, MaintenanceEvent};
    use std::time::UNIX_EPOCH;
    let bare = MockAws::builder().start().await.unwrap();
    let client = imds_client(&bare);
    for path in [
        "/latest/user-data",
        "/latest/meta-data/autoscaling/target-lifecycle-state",
    ] {
        let err = client.get(path).await.unwrap_err();
        assert!(format!("{err:?}").contains("404"), "{path}: {err:?}");
    }
    let listing = client.get("/latest/meta-data/").await.unwrap();
    assert!(!listing.as_ref().contains("autoscaling/"), "{listing:?}");
    let none = client
        .get("/latest/meta-data/events/maintenance/scheduled")
        .await
        .unwrap();
    assert_eq!(none.as_ref(), "[]");

    let mac = client.get("/latest/meta-data/mac").await.unwrap();
    let macs = client
        .get("/latest/meta-data/network/interfaces/macs/")
        .await
        .unwrap();
    assert_eq!(macs.as_ref(), format!("{}/", mac.as_ref()));
    let base = format!("/latest/meta-data/network/interfaces/macs/{}", mac.as_ref());
    let keys = client.get(&format!("{base}/")).await.unwrap();
    for key in keys.as_ref().lines() {
        let value = client.get(&format!("{base}/{key}")).await.unwrap();
        assert!(!value.as_ref().is_empty(), "{key}");
    }
    let owner = client.get(&format!("{base}/owner-id")).await.unwrap();
    assert_eq!(owner.as_ref(), "123456789012");
    let ipv4 = client.get(&format!("{base}/local-ipv4s")).await.unwrap();
    let local = client.get("/latest/meta-data/local-ipv4").await.unwrap();
    assert_eq!(ipv4.as_ref(), local.as_ref());

    let at = UNIX_EPOCH + Duration::from_secs(1_548_061_243);
    let mock = MockAws::builder()
        .user_data("#cloud-config\npackages: [awscli]\n")
        .lifecycle_state(LifecycleState::InService)
        .start()
        .await
        .unwrap();
    let client = imds_client(&mock);
    let user_data = client.get("/latest/user-data").await.unwrap();
    assert_eq!(user_data.as_ref(), "#cloud-config\npackages: [awscli]\n");
    let root = client.get("/latest/").await.unwrap();
    assert_eq!(root.as_ref(), "dynamic\nmeta-data\nuser-data");
    let state = || client.get("/latest/meta-data/autoscaling/target-lifecycle-state");
    assert_eq!(state().await.unwrap().as_ref(), "InService");
    mock.set_lifecycle_state(Some(LifecycleState::Terminated));
    assert_eq!(state().await.unwrap().as_ref(), "Terminated");
    mock.schedule_maintenance(MaintenanceEvent::new(
        MaintenanceCode::SystemReboot,
        at,
        at + Duration::from_secs(1000),
    ));
    let events = client
        .get("/latest/meta-data/events/maintenance/scheduled")
        .await
        .unwrap();
    let events: serde_json::Value = serde_json::from_str(events.as_ref()).unwrap();
    assert_eq!(events[0]["Code"], "system-reboot");
    assert_eq!(events[0]["NotBefore"], "21 Jan 2019 09:00:43 GMT");
    assert_eq!(events[0]["NotAfter"], "21 Jan 2019 09:17:23 GMT");
    assert_eq!(events[0]["State"], "active");
}
