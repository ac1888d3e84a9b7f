//! The fleet: the mock EC2 with thousands of instances, launch templates, the account's
//! metadata defaults and throttling, against the Rust SDK, Debian's AWS CLI 2.9.19 (where
//! it knows the operation) and `imds-shim audit` / `enforce` at the source. Everything
//! listens on 127.0.0.1; the shim gets its credentials from the mock's IMDS on loopback.

use std::collections::BTreeMap;
use std::process::Output;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, MetadataDefaultHttpTokensState};
use aws_smithy_http_client::Builder as HttpClientBuilder;
use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::bins;
use imds_e2e::require::{require, Requirement};
use imds_e2e::verdict::expected_verdict;
use imds_mock::{
    Fleet, FleetInstance, LaunchTemplateData, LaunchTemplateSpec, MetadataDefaults, MockAws,
    MockBuilder, Service, TemplateMetadataOptions,
};
use imds_vocab::baseline::Baseline;
use imds_vocab::tags::{
    ASG as ASG_TAG, LAUNCH_TEMPLATE_ID as LAUNCH_TEMPLATE_ID_TAG, TOPOLOGY as TOPOLOGY_TAG,
};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};
use serde_json::Value;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");
/// The fleet of the issue: 5,000 build hosts.
const FLEET: usize = 5000;
const SEED: u64 = 42;

async fn start(builder: MockBuilder) -> MockAws {
    builder.start().await.expect("the mock starts")
}

fn hop(n: u32) -> HopLimit {
    HopLimit::new(n).unwrap()
}

/// `imds-shim args` with credentials only from the mock's IMDS, EC2 at the mock.
fn shim(mock: &MockAws, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds)
        .with("AWS_ENDPOINT_URL_EC2", &mock.endpoints().ec2);
    let expr = duct::cmd(bins::shim(), args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    tokio::task::block_in_place(|| env.apply(expr).run().expect("imds-shim runs"))
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `audit --json`, which must exit `code`.
fn audit_json(mock: &MockAws, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["audit", "--json", "--baseline", BASELINE];
    args.extend_from_slice(extra);
    let out = shim(mock, &args);
    assert_eq!(out.status.code(), Some(code), "{}", show(&out));
    serde_json::from_slice(&out.stdout).expect("audit --json prints JSON")
}

/// Every instance's expected verdict: the mock's own (hop limit 1, tokens required, no
/// tags) and the seed's fleet.
fn expected(fleet: &[FleetInstance], own: &str) -> BTreeMap<String, &'static str> {
    let baseline = Baseline::load(std::path::Path::new(BASELINE)).unwrap();
    let mut map: BTreeMap<String, &'static str> = fleet
        .iter()
        .map(|i| {
            let v = expected_verdict(
                i.options.hop_limit,
                i.options.http_tokens,
                i.options.http_endpoint,
                &i.tags,
                &baseline,
            );
            (i.instance_id.clone(), v)
        })
        .collect();
    map.insert(
        own.to_owned(),
        expected_verdict(
            HopLimit::MIN,
            HttpTokens::Required,
            HttpEndpoint::Enabled,
            &BTreeMap::new(),
            &baseline,
        ),
    );
    map
}

fn verdicts_of(report: &Value) -> BTreeMap<String, String> {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["instance_id"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn ec2_calls(mock: &MockAws, status: u16) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.service == Service::Ec2 && r.status == status)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_of_5000_instances_gives_each_the_verdict_its_seed_implies() {
    let mock = start(MockAws::builder().fleet(FLEET, SEED)).await;
    let report = audit_json(&mock, &[], 1);

    let seed = Fleet::generate(FLEET, SEED).fleet;
    let want = expected(seed.instances(), "i-0123456789abcdef0");
    let got = verdicts_of(&report);
    assert_eq!(got.len(), FLEET + 1);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(id, v)| got.get(*id).map(String::as_str) != Some(**v))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "first wrong verdicts: {wrong:?}");

    // Every verdict occurs, and the summary adds up.
    let summary = &report["summary"];
    let mut counted: BTreeMap<&str, u64> = BTreeMap::new();
    for v in want.values() {
        *counted.entry(v).or_default() += 1;
    }
    for verdict in [
        "right",
        "too-low",
        "too-high",
        "tokens-optional",
        "endpoint-disabled",
        "unknown-topology",
    ] {
        assert!(counted.get(verdict).copied().unwrap_or(0) > 0, "{verdict}");
        assert_eq!(
            summary["verdicts"][verdict].as_u64(),
            counted.get(verdict).copied(),
            "{verdict}"
        );
    }
    // 5,001 instances, 1,000 a page: six pages, six calls, nothing throttled.
    assert_eq!(summary["pages"], 6);
    assert_eq!(summary["api"]["calls"], 6);
    assert_eq!(summary["api"]["throttled"], 0);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(ec2_calls(&mock, 200), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_at_30_percent_still_completes_with_the_same_result() {
    let plain = start(MockAws::builder().fleet(FLEET, SEED)).await;
    let calm = audit_json(&plain, &[], 1);
    let throttled = start(MockAws::builder().fleet(FLEET, SEED).throttle(0.3)).await;
    let rough = audit_json(&throttled, &[], 1);

    assert_eq!(verdicts_of(&calm), verdicts_of(&rough));
    assert_eq!(calm["summary"]["verdicts"], rough["summary"]["verdicts"]);
    let seen = rough["summary"]["api"]["throttled"].as_u64().unwrap();
    assert!(seen > 0, "the seed throttled nothing: {}", rough["summary"]);
    // The audit reports exactly the refusals the mock made, and retried each.
    assert_eq!(seen, throttled.throttled());
    assert_eq!(ec2_calls(&throttled, 503) as u64, seen);
    assert_eq!(
        rough["summary"]["api"]["attempts"].as_u64().unwrap(),
        rough["summary"]["api"]["calls"].as_u64().unwrap() + seen
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_and_filters() {
    let mock = start(MockAws::builder().fleet(300, SEED)).await;
    let seed = Fleet::generate(300, SEED).fleet;
    let in_group = seed
        .instances()
        .iter()
        .filter(|i| i.tags.get(ASG_TAG).map(String::as_str) == Some("gha-runners"))
        .count();
    let report = audit_json(
        &mock,
        &[
            "--filter",
            "tag:aws:autoscaling:groupName=gha-runners",
            "--topology",
            "docker-run",
        ],
        1,
    );
    assert_eq!(report["summary"]["instances"], in_group);

    let out = shim(&mock, &["audit", "--baseline", BASELINE]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let summary = lines.next().unwrap();
    assert!(
        summary.starts_with("audited 301 instances (1 page, 1 call): "),
        "{summary}"
    );
    let header = lines.next().unwrap();
    assert!(header.starts_with("INSTANCE"), "{header}");
    // Worst first: the first row of the table fails builds.
    let first = lines.next().unwrap();
    assert!(first.contains("(builds fail)"), "{first}");
    assert_eq!(lines.count(), 300);
}

fn template_data() -> LaunchTemplateData {
    LaunchTemplateData {
        image_id: Some("ami-0123456789abcdef0".into()),
        instance_type: Some("c6i.2xlarge".into()),
        key_name: Some("ci".into()),
        security_group_ids: Some(vec!["sg-0aaa".into(), "sg-0bbb".into()]),
        user_data: Some("IyEvYmluL3NoCg==".into()),
        iam_instance_profile_name: Some("build-role".into()),
        metadata_options: Some(TemplateMetadataOptions {
            hop_limit: Some(HopLimit::MIN),
            http_tokens: Some(HttpTokens::Optional),
            instance_metadata_tags: Some(Toggle::Enabled),
            ..TemplateMetadataOptions::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_gets_a_new_default_version_with_exactly_the_need() {
    let mock = start(MockAws::builder().launch_template("earthly-builders", template_data())).await;
    let args = [
        "enforce",
        "--launch-template",
        "earthly-builders",
        "--need",
        "3",
    ];

    let dry = shim(&mock, &[&args[..], &["--set-default"]].concat());
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    let text = stdout(&dry);
    assert!(text.contains("HttpPutResponseHopLimit  1 -> 3"), "{text}");
    assert!(
        text.contains("HttpTokens               optional -> required"),
        "{text}"
    );
    assert!(
        text.contains("HttpEndpoint             (not set) -> enabled"),
        "{text}"
    );
    assert!(
        text.contains(
            "aws ec2 create-launch-template-version --launch-template-name earthly-builders \
             --source-version 1 --version-description 'imds-shim: hop limit 3 for earthly-run' \
             --launch-template-data '{\"MetadataOptions\":{\"HttpTokens\":\"required\",\
             \"HttpPutResponseHopLimit\":3,\"HttpEndpoint\":\"enabled\"}}'"
        ),
        "{text}"
    );
    assert!(text.contains("aws ec2 modify-launch-template --launch-template-name earthly-builders --default-version 2"));
    assert!(text.contains("dry run: nothing changed"));
    let templates = mock.launch_templates();
    assert_eq!(templates.versions("earthly-builders"), Some((1, 1)));

    let apply = shim(&mock, &[&args[..], &["--set-default", "--apply"]].concat());
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    assert!(
        stdout(&apply).contains("version 2 is now the default"),
        "{}",
        show(&apply)
    );
    let templates = mock.launch_templates();
    assert_eq!(templates.versions("earthly-builders"), Some((2, 2)));
    let v1 = templates.data("earthly-builders", "1").unwrap();
    let v2 = templates.data("earthly-builders", "$Default").unwrap();
    // Exactly the need, tokens required, the endpoint enabled; instance tags kept ...
    assert_eq!(
        v2.metadata_options,
        Some(TemplateMetadataOptions {
            hop_limit: Some(hop(3)),
            http_tokens: Some(HttpTokens::Required),
            http_endpoint: Some(HttpEndpoint::Enabled),
            http_protocol_ipv6: None,
            instance_metadata_tags: Some(Toggle::Enabled),
        })
    );
    // ... and every other field as it was.
    assert_eq!(
        LaunchTemplateData {
            metadata_options: None,
            ..v2
        },
        LaunchTemplateData {
            metadata_options: None,
            ..v1
        }
    );

    // Again: nothing to do. By id too.
    let id = LaunchTemplateSpec::id_for("earthly-builders");
    let again = shim(
        &mock,
        &[
            "enforce",
            "--launch-template",
            &id,
            "--need",
            "3",
            "--apply",
        ],
    );
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(
        stdout(&again).contains("no change needed"),
        "{}",
        show(&again)
    );
    assert_eq!(
        mock.launch_templates().versions("earthly-builders"),
        Some((2, 2))
    );

    // Without --set-default the default stays, and the output says what that means.
    let lower = shim(&mock, &[&args[..3], &["--need", "2", "--apply"]].concat());
    assert_eq!(lower.status.code(), Some(0), "{}", show(&lower));
    assert!(
        stdout(&lower).contains("the default version stays 2"),
        "{}",
        show(&lower)
    );
    assert_eq!(
        mock.launch_templates().versions("earthly-builders"),
        Some((2, 3))
    );

    // A template that does not exist: EC2's code, exit 2.
    let missing = shim(
        &mock,
        &["enforce", "--launch-template", "nope", "--need", "3"],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", show(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("InvalidLaunchTemplateName.NotFoundException"),
        "{}",
        show(&missing)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_defaults_are_set_and_read_back() {
    let mock = start(MockAws::builder()).await;
    let dry = shim(&mock, &["enforce", "--account-defaults", "--need", "2"]);
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    assert!(stdout(&dry).contains(
        "aws ec2 modify-instance-metadata-defaults --http-put-response-hop-limit 2 --http-tokens required --http-endpoint enabled"
    ));
    assert_eq!(mock.metadata_defaults(), MetadataDefaults::default());

    let apply = shim(
        &mock,
        &["enforce", "--account-defaults", "--need", "2", "--apply"],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    assert!(stdout(&apply)
        .contains("set and read back: hop limit 2, tokens required, endpoint enabled"));
    let defaults = mock.metadata_defaults();
    assert_eq!(defaults.hop_limit, Some(hop(2)));
    assert_eq!(defaults.http_tokens, Some(HttpTokens::Required));
    assert_eq!(defaults.http_endpoint, Some(HttpEndpoint::Enabled));

    // Read back with the Rust SDK, and reset with no-preference / -1.
    let ec2 = ec2(&mock).await;
    let read = ec2.get_instance_metadata_defaults().send().await.unwrap();
    let level = read.account_level().unwrap();
    assert_eq!(level.http_put_response_hop_limit(), Some(2));
    assert_eq!(
        level
            .http_tokens()
            .map(aws_sdk_ec2::types::HttpTokensState::as_str),
        Some("required")
    );
    ec2.modify_instance_metadata_defaults()
        .http_put_response_hop_limit(-1)
        .http_tokens(MetadataDefaultHttpTokensState::NoPreference)
        .send()
        .await
        .unwrap();
    let read = ec2.get_instance_metadata_defaults().send().await.unwrap();
    let level = read.account_level().unwrap();
    assert_eq!(level.http_put_response_hop_limit(), None);
    assert_eq!(level.http_tokens(), None);
    assert_eq!(
        level
            .http_endpoint()
            .map(aws_sdk_ec2::types::InstanceMetadataEndpointState::as_str),
        Some("enabled")
    );
    let bad = ec2
        .modify_instance_metadata_defaults()
        .http_put_response_hop_limit(65)
        .send()
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("InvalidParameterValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_on_one_instance_says_what_will_undo_it() {
    let template = LaunchTemplateSpec::id_for("ci-runners");
    let mock = start(
        MockAws::builder()
            .launch_template(
                "ci-runners",
                LaunchTemplateData {
                    metadata_options: Some(TemplateMetadataOptions {
                        hop_limit: Some(HopLimit::MIN),
                        http_tokens: Some(HttpTokens::Required),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .tag(ASG_TAG, "ci-runners")
            .tag(LAUNCH_TEMPLATE_ID_TAG, template.clone())
            .tag("aws:ec2launchtemplate:version", "1"),
    )
    .await;
    let out = shim(&mock, &["enforce", "--need", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("note: this instance belongs to Auto Scaling group ci-runners"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "note: it was launched from launch template {template} version 1, which sets hop limit 1: \
             instances launched from it will undo this change; fix the template too: \
             imds-shim enforce --launch-template {template} --set-default --apply"
        )),
        "{text}"
    );
    // Terraform and CloudFormation blocks need no API.
    let tf = shim(&mock, &["enforce", "--print", "terraform", "--need", "3"]);
    assert_eq!(tf.status.code(), Some(0), "{}", show(&tf));
    assert!(stdout(&tf).contains("http_put_response_hop_limit = 3"));
    let both = shim(&mock, &["enforce", "--print", "terraform", "--apply"]);
    assert_eq!(both.status.code(), Some(2), "{}", show(&both));
}

// ---------------------------------------------------------------- the mock, with the SDK

async fn ec2(mock: &MockAws) -> aws_sdk_ec2::Client {
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .configure(
            &aws_config::provider_config::ProviderConfig::without_region()
                .with_http_client(HttpClientBuilder::new().build_http()),
        )
        .imds_client(
            aws_config::imds::Client::builder()
                .configure(
                    &aws_config::provider_config::ProviderConfig::without_region()
                        .with_http_client(HttpClientBuilder::new().build_http()),
                )
                .endpoint(&mock.endpoints().imds)
                .unwrap()
                .build(),
        )
        .build();
    let credentials: Credentials = provider.provide_credentials().await.unwrap();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(HttpClientBuilder::new().build_http())
        .credentials_provider(credentials)
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&mock.endpoints().ec2)
        .load()
        .await;
    aws_sdk_ec2::Client::new(&sdk)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_pages_filters_and_reads_templates_as_ec2_serves_them() {
    let mock = start(MockAws::builder().fleet(40, SEED)).await;
    let ec2 = ec2(&mock).await;

    let pages: Vec<_> = ec2
        .describe_instances()
        .max_results(7)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(pages.len(), 6, "41 instances, 7 a page");
    let ids: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.unwrap().reservations.unwrap_or_default())
        .flat_map(|r| r.instances.unwrap_or_default())
        .map(|i| i.instance_id.unwrap())
        .collect();
    assert_eq!(ids.len(), 41);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 41);

    let code = |e: &dyn ProvideErrorMetadata| e.code().map(str::to_owned);
    let few = ec2
        .describe_instances()
        .max_results(4)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&few).as_deref(), Some("InvalidParameterValue"));
    let both = ec2
        .describe_instances()
        .max_results(5)
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&both).as_deref(), Some("InvalidParameterCombination"));

    let tagged = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{TOPOLOGY_TAG}"))
                .values("earthly-*")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let seed = Fleet::generate(40, SEED).fleet;
    let want = seed
        .instances()
        .iter()
        .filter(|i| {
            i.tags
                .get(TOPOLOGY_TAG)
                .is_some_and(|t| t.starts_with("earthly-"))
        })
        .count();
    assert_eq!(tagged.reservations().len(), want);
    let instance = &tagged.reservations()[0].instances()[0];
    assert!(instance
        .tags()
        .iter()
        .any(|t| t.key() == Some(TOPOLOGY_TAG)));

    let templates = ec2.describe_launch_templates().send().await.unwrap();
    let names: Vec<_> = templates
        .launch_templates()
        .iter()
        .map(|t| t.launch_template_name().unwrap())
        .collect();
    assert_eq!(names, ["gha-runners", "earthly-builders", "gitlab-dind"]);
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_name("gha-runners")
        .versions("$Default")
        .send()
        .await
        .unwrap();
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    assert_eq!(
        data.metadata_options()
            .unwrap()
            .http_put_response_hop_limit(),
        Some(2)
    );
    assert_eq!(
        data.instance_type()
            .map(aws_sdk_ec2::types::InstanceType::as_str),
        Some("c6i.xlarge")
    );

    let malformed = ec2
        .describe_launch_template_versions()
        .launch_template_id("lt-12")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&malformed).as_deref(),
        Some("InvalidLaunchTemplateId.Malformed")
    );
    let missing = ec2
        .describe_launch_templates()
        .launch_template_names("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&missing).as_deref(),
        Some("InvalidLaunchTemplateName.NotFoundException")
    );
}

// ---------------------------------------------------------------- Debian's AWS CLI 2.9.19

fn cli(mock: &MockAws, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    all.extend(["--endpoint-url", &mock.endpoints().ec2, "--output", "json"]);
    let expr = duct::cmd(AWS_CLI, all)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let env = isolated(home.path(), &mock.endpoints().imds);
    tokio::task::block_in_place(|| env.apply(expr).run().expect("the AWS CLI runs"))
}

fn cli_json(mock: &MockAws, args: &[&str]) -> Value {
    let out = cli(mock, args);
    assert!(out.status.success(), "aws {args:?}: {}", show(&out));
    serde_json::from_slice(&out.stdout).expect("the CLI prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_pages_the_fleet_and_changes_a_template() {
    if !require("fleet_cli", &[Requirement::AwsCli]) {
        return;
    }
    let mock = start(
        MockAws::builder()
            .fleet(500, SEED)
            .launch_template("ci-runners", template_data()),
    )
    .await;

    // The CLI follows nextToken on its own: 501 instances at 100 a page.
    let all = cli_json(&mock, &["ec2", "describe-instances", "--page-size", "100"]);
    assert_eq!(all["Reservations"].as_array().unwrap().len(), 501);
    assert_eq!(ec2_calls(&mock, 200), 6);
    let first = &all["Reservations"][1]["Instances"][0];
    assert!(first["MetadataOptions"]["HttpPutResponseHopLimit"].is_u64());
    assert!(first["Tags"].as_array().is_some_and(|t| !t.is_empty()));

    cli_json(
        &mock,
        &[
            "ec2",
            "create-launch-template-version",
            "--launch-template-name",
            "ci-runners",
            "--source-version",
            "1",
            "--launch-template-data",
            r#"{"MetadataOptions":{"HttpTokens":"required","HttpPutResponseHopLimit":3,"HttpEndpoint":"enabled"}}"#,
        ],
    );
    let modified = cli_json(
        &mock,
        &[
            "ec2",
            "modify-launch-template",
            "--launch-template-name",
            "ci-runners",
            "--default-version",
            "2",
        ],
    );
    assert_eq!(modified["LaunchTemplate"]["DefaultVersionNumber"], 2);
    let versions = cli_json(
        &mock,
        &[
            "ec2",
            "describe-launch-template-versions",
            "--launch-template-name",
            "ci-runners",
            "--versions",
            "$Default",
        ],
    );
    let version = &versions["LaunchTemplateVersions"][0];
    assert_eq!(version["VersionNumber"], 2);
    assert_eq!(version["DefaultVersion"], true);
    let data = &version["LaunchTemplateData"];
    assert_eq!(data["MetadataOptions"]["HttpPutResponseHopLimit"], 3);
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["InstanceType"], "c6i.2xlarge");
    assert_eq!(
        data["SecurityGroupIds"],
        serde_json::json!(["sg-0aaa", "sg-0bbb"])
    );

    let missing = cli(
        &mock,
        &[
            "ec2",
            "describe-launch-templates",
            "--launch-template-names",
            "nope",
        ],
    );
    assert_eq!(missing.status.code(), Some(254), "{}", show(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("InvalidLaunchTemplateName.NotFoundException"));

    // Debian's CLI 2.9.19 predates GetInstanceMetadataDefaults (added in late 2023).
    let unknown = cli(&mock, &["ec2", "get-instance-metadata-defaults"]);
    assert_eq!(unknown.status.code(), Some(252), "{}", show(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("Invalid choice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_read_only_in_part_is_no_error() {
    let mock = start(MockAws::builder().fleet(2000, SEED)).await;
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds)
        .with("AWS_ENDPOINT_URL_EC2", &mock.endpoints().ec2);
    // `imds-shim audit | head -1`: the table (some 400 kB, more than a pipe holds) meets
    // a closed pipe. The shim still exits with the audit's status, 1, not a panic's 101.
    let script = r#""$0" audit --baseline "$1" | head -1; echo "status ${PIPESTATUS[0]}""#;
    let shim = bins::shim();
    let expr = duct::cmd("bash", ["-c", script, shim.to_str().unwrap(), BASELINE])
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let out = tokio::task::block_in_place(|| env.apply(expr).run().unwrap());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", show(&out));
    assert!(
        lines[0].starts_with("audited 2001 instances"),
        "{}",
        show(&out)
    );
    assert_eq!(lines[1], "status 1", "{}", show(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        show(&out)
    );
}

#[test]
fn without_credentials_the_fleet_commands_say_so_and_exit_2() {
    let home = tempfile::tempdir().unwrap();
    // IMDS off, and a closed loopback port for it and EC2 anyway: nothing is sent anywhere.
    let closed = "http://127.0.0.1:9/";
    let env = isolated(home.path(), closed)
        .with("AWS_EC2_METADATA_DISABLED", "true")
        .with("AWS_ENDPOINT_URL_EC2", closed);
    let run = |args: &[&str]| {
        env.apply(duct::cmd(bins::shim(), args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    };
    for args in [
        &["audit"][..],
        &["enforce", "--launch-template", "ci-runners"],
        &["enforce", "--account-defaults"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("imds-shim: error: no AWS credentials: "),
            "{stderr}"
        );
    }
}
