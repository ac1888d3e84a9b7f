//! The mock's Organizations endpoint against hostile or buggy callers (rule 5): bodies
//! over the limit, malformed JSON, wrong or missing `X-Amz-Target`, page tokens forged,
//! changed or another caller's, absurd `MaxResults`, a caller of a member account, a
//! slow request beside a fast one, and many callers paging at once. Every request but
//! the unsigned one is signed for real (aws-sigv4, the SDK's signer), so that each
//! reaches the JSON handling. Each gets a clear refusal in the service's JSON shape,
//! nothing panics, the organization is unchanged, and the Rust SDK pages it afterwards.
//! Everything listens on loopback.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use imds_e2e::panics;
use imds_e2e::raw_http::{send, RawResponse};
use imds_mock::{MockAws, ACCESS_ROLE};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

mod sdk;
use sdk::{imds_credentials, sdk_config, sts};

const ACCOUNTS: usize = 45;
/// The EC2 listener's body limit (docs/mock.md, "Limits"), which Organizations shares.
const MAX_BODY: usize = 256 << 10;
const LIST: &str = "AWSOrganizationsV20161128.ListAccounts";
const DESCRIBE: &str = "AWSOrganizationsV20161128.DescribeOrganization";

async fn start() -> MockAws {
    panics::watch(file!());
    MockAws::builder()
        .organization(ACCOUNTS, ["us-east-1"])
        .assumable_role("imdsh-auditor", None)
        .start()
        .await
        .expect("the mock starts")
}

/// `body` with `target`, signed for Organizations with `creds` as the SDK signs.
async fn call(
    mock: &MockAws,
    creds: &Credentials,
    target: Option<&str>,
    body: &str,
) -> RawResponse {
    let url = &mock.endpoints().ec2;
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut headers = vec![
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
    ];
    if let Some(target) = target {
        headers.push(("x-amz-target", target));
    }
    let identity = creds.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("organizations")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("a signable request");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let signed: Vec<(String, String)> = instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut all: Vec<(&str, &str)> = headers[1..].to_vec();
    all.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    send("POST", url, &all, body).await
}

/// The JSON error's `__type` (and `Reason`), asserting the shape.
fn error_of(answer: &RawResponse) -> (String, Option<String>) {
    assert!(
        answer.status.is_client_error(),
        "{} {}",
        answer.status,
        answer.body
    );
    assert_eq!(
        answer.headers["content-type"], "application/x-amz-json-1.1",
        "{answer:?}"
    );
    let json: Value = serde_json::from_str(&answer.body).expect("a JSON error");
    assert!(json["Message"].is_string(), "{json}");
    (
        json["__type"].as_str().expect("__type").to_owned(),
        json["Reason"].as_str().map(str::to_owned),
    )
}

/// Every account id, paged with raw signed calls of `page` accounts.
async fn list_all(mock: &MockAws, creds: &Credentials, page: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let body = match &token {
            Some(t) => serde_json::json!({ "MaxResults": page, "NextToken": t }),
            None => serde_json::json!({ "MaxResults": page }),
        };
        let answer = call(mock, creds, Some(LIST), &body.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json: Value = serde_json::from_str(&answer.body).unwrap();
        for a in json["Accounts"].as_array().unwrap() {
            ids.push(a["Id"].as_str().unwrap().to_owned());
        }
        match json["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return ids,
        }
    }
}

fn account_ids(mock: &MockAws) -> Vec<String> {
    mock.organization_accounts()
        .into_iter()
        .map(|a| a.id)
        .collect()
}

/// The Rust SDK's paginator still reads every account.
async fn assert_the_sdk_pages(mock: &MockAws, creds: Credentials) {
    let client =
        aws_sdk_organizations::Client::new(&sdk_config(&mock.endpoints().ec2, creds).await);
    let mut pages = client
        .list_accounts()
        .max_results(7)
        .into_paginator()
        .send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.expect("a page");
        ids.extend(page.accounts().iter().map(|a| a.id().unwrap().to_owned()));
    }
    assert_eq!(ids, account_ids(mock));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_and_targets_get_clear_json_errors() {
    let mock = start().await;
    let before = mock.organization_accounts();
    let me = imds_credentials(&mock).await.expect("IMDS credentials");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long_string = format!("{{\"MaxResults\": \"{}\"}}", "9".repeat(100 << 10));
    let padded = format!("{}{{}}", " ".repeat(MAX_BODY - 2));
    let bodies: Vec<(&str, &str)> = vec![
        ("{", "SerializationException"),
        ("[]", "SerializationException"),
        ("null", "SerializationException"),
        ("\"x\"", "SerializationException"),
        ("{\"MaxResults\": \"20\"}", "SerializationException"),
        ("{\"MaxResults\": 1e400}", "SerializationException"),
        ("{\"MaxResults\": 20.5}", "SerializationException"),
        (
            "{\"MaxResults\": 99999999999999999999}",
            "SerializationException",
        ),
        ("{\"NextToken\": 7}", "SerializationException"),
        ("{\"Unknown\": 1}", "SerializationException"),
        (
            "{\"MaxResults\": 1, \"MaxResults\": 2}",
            "SerializationException",
        ),
        ("\u{0}", "SerializationException"),
        (&deep, "SerializationException"),
        (&long_string, "SerializationException"),
        ("{\"MaxResults\": 0}", "InvalidInputException"),
        ("{\"MaxResults\": -1}", "InvalidInputException"),
        ("{\"MaxResults\": 21}", "InvalidInputException"),
        (
            "{\"MaxResults\": 9223372036854775807}",
            "InvalidInputException",
        ),
        (
            "{\"MaxResults\": -9223372036854775808}",
            "InvalidInputException",
        ),
    ];
    for (body, code) in &bodies {
        let answer = call(&mock, &me, Some(LIST), body).await;
        assert_eq!(error_of(&answer).0, *code, "{body:.60}");
        assert!(
            answer.body.len() < 1024,
            "the answer echoes: {:.80}",
            answer.body
        );
    }
    // At the limit, whitespace around nothing: read, parsed, answered.
    let answer = call(&mock, &me, Some(LIST), &padded).await;
    assert_eq!(answer.status, 200, "{:.200}", answer.body);
    // Over it: refused in Organizations' shape, unread.
    let over = format!("{}{{}}", " ".repeat(MAX_BODY));
    let answer = call(&mock, &me, Some(LIST), &over).await;
    assert_eq!(answer.status, 413);
    assert_eq!(error_of(&answer).0, "RequestEntityTooLarge");

    let long_target = format!("AWSOrganizationsV20161128.{}", "A".repeat(6 << 10));
    let targets: [(Option<&str>, &str); 7] = [
        (None, "UnknownOperationException"),
        (Some(""), "UnknownOperationException"),
        (
            Some("AWSOrganizationsV20161128."),
            "UnknownOperationException",
        ),
        (
            Some("AWSOrganizationsV20161128.DeleteOrganization"),
            "UnknownOperationException",
        ),
        (Some("AmazonEC2.ListAccounts"), "UnknownOperationException"),
        (
            Some("awsorganizationsv20161128.ListAccounts"),
            "UnknownOperationException",
        ),
        (Some(&long_target), "UnknownOperationException"),
    ];
    for (target, code) in targets {
        let answer = call(&mock, &me, target, "{}").await;
        assert_eq!(error_of(&answer).0, code, "{target:.60?}");
        assert!(
            answer.body.len() < 2048,
            "the answer echoes: {:.80}",
            answer.body
        );
    }
    // Nothing changed; the SDK is served.
    assert_eq!(mock.organization_accounts(), before);
    assert_the_sdk_pages(&mock, me).await;
    assert!(mock.is_serving());
    panics::assert_none();
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_are_the_callers_own_and_forged_ones_are_refused() {
    let mock = start().await;
    let me = imds_credentials(&mock).await.expect("IMDS credentials");
    let first = call(&mock, &me, Some(LIST), "{\"MaxResults\": 20}").await;
    let token = serde_json::from_str::<Value>(&first.body).unwrap()["NextToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = |t: &str| serde_json::json!({ "NextToken": t }).to_string();
    let mut changed = token.clone().into_bytes();
    let at = changed.len() - 3;
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let forged = [
        String::from_utf8(changed).unwrap(),
        "imdsh-accounts-20".to_owned(),
        "imdsh-accounts-99999999999999999999999".to_owned(),
        format!("{token}{token}"),
        "x".repeat(64 << 10),
        "\u{1f600}".repeat(100),
        String::new(),
    ];
    for bad in &forged {
        let answer = call(&mock, &me, Some(LIST), &next(bad)).await;
        assert_eq!(
            error_of(&answer),
            (
                "InvalidInputException".to_owned(),
                Some("INVALID_NEXT_TOKEN".to_owned())
            ),
            "{bad:.40}"
        );
        assert!(!answer.body.contains(bad.as_str()) || bad.is_empty());
    }
    // Another principal of the management account: the first caller's token is not its.
    let sts = sts(&mock, me.clone()).await;
    let assumed = |arn: String| {
        let sts = sts.clone();
        async move {
            let c = sts
                .assume_role()
                .role_arn(arn)
                .role_session_name("imdsh-hostile")
                .send()
                .await
                .expect("AssumeRole")
                .credentials()
                .cloned()
                .unwrap();
            Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "assumed",
            )
        }
    };
    let management = mock.identity().account.clone();
    let auditor = assumed(format!("arn:aws:iam::{management}:role/imdsh-auditor")).await;
    let answer = call(&mock, &auditor, Some(LIST), &next(&token)).await;
    assert_eq!(error_of(&answer).1.as_deref(), Some("INVALID_NEXT_TOKEN"));
    // Its own tokens work for it.
    assert_eq!(list_all(&mock, &auditor, 20).await, account_ids(&mock));
    // A member account's caller may describe the organization but not list it, with or
    // without a token.
    let member = mock.organization_accounts()[2].id.clone();
    let member = assumed(format!("arn:aws:iam::{member}:role/{ACCESS_ROLE}")).await;
    let described = call(&mock, &member, Some(DESCRIBE), "{}").await;
    assert_eq!(described.status, 200, "{}", described.body);
    for body in ["{}".to_owned(), next(&token)] {
        let answer = call(&mock, &member, Some(LIST), &body).await;
        assert_eq!(error_of(&answer).0, "AccessDeniedException");
    }
    // The original caller's token still serves it.
    let answer = call(&mock, &me, Some(LIST), &next(&token)).await;
    assert_eq!(answer.status, 200);
    panics::assert_none();
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_page_at_once_beside_a_slow_one_and_each_gets_every_account() {
    let mock = start().await;
    let me = imds_credentials(&mock).await.expect("IMDS credentials");
    let want = account_ids(&mock);
    // A caller that sends its head and then its body a byte at a time.
    let url = mock.endpoints().ec2.clone();
    let slow = tokio::spawn(async move {
        let to = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = TcpStream::connect(to).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {to}\r\nX-Amz-Target: {LIST}\r\nContent-Type: \
             application/x-amz-json-1.1\r\nContent-Length: 40\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let mut pagers = JoinSet::new();
    for task in 0..16 {
        let page = 1 + task % 7;
        let creds = me.clone();
        let endpoint = mock.endpoints().ec2.clone();
        pagers.spawn(async move {
            let client = aws_sdk_organizations::Client::new(&sdk_config(&endpoint, creds).await);
            let mut pages = client
                .list_accounts()
                .max_results(page)
                .into_paginator()
                .send();
            let mut ids = Vec::new();
            while let Some(p) = pages.next().await {
                ids.extend(
                    p.expect("a page")
                        .accounts()
                        .iter()
                        .map(|a| a.id().unwrap().to_owned()),
                );
            }
            ids
        });
    }
    while let Some(ids) = pagers.join_next().await {
        assert_eq!(ids.expect("a pager ends"), want);
    }
    // The slow caller (5 s of body) held nobody up: the pagers were done before it was.
    assert!(!slow.is_finished());
    slow.abort();
    assert_eq!(account_ids(&mock), want);
    assert_the_sdk_pages(&mock, me).await;
    panics::assert_none();
    mock.shutdown().await;
}
