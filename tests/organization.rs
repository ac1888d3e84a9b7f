//! An organization: the mock's Organizations, cross-account AssumeRole and regions by
//! the signature's credential scope, read with botocore (Debian's python3-botocore) and
//! the AWS CLI; `imds-shim audit --organization` against the same mock, its verdicts
//! compared account by account and region by region with what botocore read. Everything
//! listens on 127.0.0.1; the shim and the clients get the management account's instance
//! role from the mock's IMDS on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use imds_e2e::aws_env::{isolated, AWS_CLI};
use imds_e2e::bins;
use imds_e2e::raw_http;
use imds_e2e::require::{require, Requirement};
use imds_e2e::verdict::expected_verdict;
use imds_mock::{
    AccountStatus, LaunchTemplateData, MockAws, MockBuilder, TemplateMetadataOptions, ACCESS_ROLE,
};
use imds_vocab::baseline::Baseline;
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};
use serde_json::Value;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");
/// Debian's Python, whose botocore the AWS CLI package brings.
const PYTHON: &str = "/usr/bin/python3";
const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-2", "af-south-1"];

async fn start(builder: MockBuilder) -> MockAws {
    builder.start().await.expect("the mock starts")
}

/// `program args` with credentials only from the mock's IMDS and every API at the
/// mock's one endpoint.
fn run(mock: &MockAws, program: &str, args: &[&str]) -> Output {
    // Debian's AWS CLI reads no AWS_ENDPOINT_URL: without the flag it would call AWS.
    assert!(
        program != AWS_CLI || args.contains(&"--endpoint-url"),
        "the AWS CLI must be given --endpoint-url: {args:?}"
    );
    let home = tempfile::tempdir().unwrap();
    let env = isolated(home.path(), &mock.endpoints().imds)
        .with("AWS_ENDPOINT_URL", &mock.endpoints().ec2);
    let expr = duct::cmd(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    tokio::task::block_in_place(|| env.apply(expr).run().expect("the program runs"))
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout (tail)\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// botocore, as the management account's instance role: the organization (ListAccounts
/// two at a time), then in every account (AssumeRole into the access role, or the
/// account's own credentials for the management account) the regions and, in each
/// enabled one, every instance's options and tags and every template's default
/// version; the refusals a caller meets. Prints JSON.
const BOTOCORE: &str = r#"
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
import botocore.session
from botocore.exceptions import ClientError
url, role_name = sys.argv[1:3]
local = threading.local()
def client(service, region="us-east-1", **keys):
    # A session per thread: botocore's clients are thread-safe, creating them is not.
    if not hasattr(local, "session"):
        local.session = botocore.session.get_session()
    return local.session.create_client(service, region_name=region, endpoint_url=url, **keys)
def code(call):
    try:
        call()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]
org = client("organizations")
out = {"organization": org.describe_organization()["Organization"], "accounts": [], "pages": 0}
for page in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 2}):
    out["pages"] += 1
    out["accounts"] += [{"id": a["Id"], "status": a["Status"]} for a in page["Accounts"]]
out["bad_token"] = code(lambda: org.list_accounts(NextToken="not-a-token"))
me = client("sts").get_caller_identity()["Account"]
out["scopes"], out["refused"] = {}, {}
def read_scope(aid, name, keys):
    ec2 = client("ec2", name, **keys)
    instances = {}
    for page in ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 100}):
        for res in page["Reservations"]:
            for i in res["Instances"]:
                m = i["MetadataOptions"]
                instances[i["InstanceId"]] = {
                    "hops": m["HttpPutResponseHopLimit"], "tokens": m["HttpTokens"],
                    "endpoint": m["HttpEndpoint"], "zone": i["Placement"]["AvailabilityZone"],
                    "owner": res["OwnerId"],
                    "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
    templates = {}
    for t in ec2.describe_launch_templates()["LaunchTemplates"]:
        v = ec2.describe_launch_template_versions(
            LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Default"])["LaunchTemplateVersions"][0]
        templates[t["LaunchTemplateId"]] = v["LaunchTemplateData"].get("MetadataOptions", {})
    return "%s/%s" % (aid, name), {"instances": instances, "templates": templates}
scopes = []
for account in out["accounts"]:
    aid = account["id"]
    if account["status"] != "ACTIVE":
        continue
    keys = {}
    if aid != me:
        arn = "arn:aws:iam::%s:role/%s" % (aid, role_name)
        try:
            c = client("sts").assume_role(RoleArn=arn, RoleSessionName="boto-audit")["Credentials"]
        except ClientError as e:
            out["refused"][aid] = e.response["Error"]["Code"]
            continue
        keys = dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                    aws_session_token=c["SessionToken"])
        out.setdefault("member_identity", client("sts", **keys).get_caller_identity()["Account"])
        out.setdefault("member_list_accounts", code(lambda: client("organizations", **keys).list_accounts()))
    for r in client("ec2", **keys).describe_regions(AllRegions=True)["Regions"]:
        name = r["RegionName"]
        if r["OptInStatus"] == "not-opted-in":
            ec2 = client("ec2", name, **keys)
            out["refused"]["%s/%s" % (aid, name)] = code(lambda: ec2.describe_instances())
            continue
        scopes.append((aid, name, keys))
# The scopes side by side, as the audit reads them: a throttled scope's back-off (botocore's
# own retries) does not hold up the others.
with ThreadPoolExecutor(8) as pool:
    for key, scope in pool.map(lambda s: read_scope(*s), scopes):
        out["scopes"][key] = scope
print(json.dumps(out))
"#;

fn botocore(mock: &MockAws) -> Value {
    let out = run(
        mock,
        PYTHON,
        &["-c", BOTOCORE, &mock.endpoints().ec2, ACCESS_ROLE],
    );
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).expect("botocore prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn botocore_and_the_cli_read_the_organization_by_signature() {
    if !require(
        "botocore_and_the_cli_read_the_organization_by_signature",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let mock = start(
        MockAws::builder()
            .fleet(30, 7)
            .organization(6, ["us-east-1", "eu-west-1", "af-south-1"]),
    )
    .await;
    let accounts = mock.organization_accounts();
    let got = botocore(&mock);

    // ListAccounts: every account, two a page; the management account first.
    let listed: Vec<&str> = got["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(listed, want);
    assert_eq!(got["pages"], 3);
    assert_eq!(
        got["organization"]["MasterAccountId"],
        accounts[0].id.as_str()
    );
    assert_eq!(got["bad_token"], "InvalidInputException");

    // A member's session is in the member's account and may not list the organization.
    assert_eq!(got["member_identity"], accounts[1].id.as_str());
    assert_eq!(got["member_list_accounts"], "AccessDeniedException");

    // The invited account's role cannot be assumed; the suspended one is not tried;
    // the account that has not opted in to af-south-1 is refused there.
    let invited = &accounts[5];
    assert!(!invited.assumable);
    assert_eq!(got["refused"][&invited.id], "AccessDenied");
    assert_eq!(accounts[4].status, AccountStatus::Suspended);
    let disabled = format!("{}/af-south-1", accounts[1].id);
    assert_eq!(got["refused"][&disabled], "AuthFailure");
    assert_eq!(got["refused"].as_object().unwrap().len(), 2);

    // Each account × region: exactly that scope's fleet, as the mock holds it, in the
    // account and the region the signature named.
    let scopes = got["scopes"].as_object().unwrap();
    assert_eq!(scopes.len(), 3 + 2 + 3 + 3);
    for (key, scope) in scopes {
        let (account, region) = key.split_once('/').unwrap();
        let fleet = mock.fleet_in(account, region).expect("a scope of the mock");
        let mut want: BTreeSet<&str> = fleet
            .instances()
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        if account == accounts[0].id && region == "us-east-1" {
            want.insert(&mock.identity().instance_id);
        }
        let instances = scope["instances"].as_object().unwrap();
        let read: BTreeSet<&str> = instances.keys().map(String::as_str).collect();
        assert_eq!(read, want, "{key}");
        for (id, i) in instances {
            assert_eq!(i["owner"], account, "{key} {id}");
            assert_eq!(i["zone"], format!("{region}a"), "{key} {id}");
            if let Some(f) = fleet.get(id) {
                assert_eq!(i["hops"], f.options.hop_limit.get(), "{key} {id}");
            }
        }
        assert_eq!(scope["templates"].as_object().unwrap().len(), 3, "{key}");
    }
    // Different scopes, different fleets.
    let a = mock.fleet_in(&accounts[1].id, "us-east-1").unwrap();
    let b = mock.fleet_in(&accounts[2].id, "us-east-1").unwrap();
    assert_ne!(a.instances()[0].instance_id, b.instances()[0].instance_id);

    // The AWS CLI pages ListAccounts on its own and reads the regions' opt-in status
    // (Debian's 2.9.19 reads no AWS_ENDPOINT_URL: --endpoint-url).
    let url = mock.endpoints().ec2.clone();
    let out = run(
        &mock,
        AWS_CLI,
        &[
            "organizations",
            "list-accounts",
            "--page-size",
            "4",
            "--output",
            "json",
            "--endpoint-url",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["Accounts"].as_array().unwrap().len(), 6);
    let out = run(
        &mock,
        AWS_CLI,
        &[
            "ec2",
            "describe-regions",
            "--all-regions",
            "--output",
            "json",
            "--endpoint-url",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<(&str, &str)> = cli["Regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["RegionName"].as_str().unwrap(),
                r["OptInStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("us-east-1", "opt-in-not-required"),
            ("eu-west-1", "opt-in-not-required"),
            ("af-south-1", "opted-in")
        ]
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_refuses_what_is_not_signed_or_not_well_formed() {
    let mock = start(MockAws::builder().organization(3, ["us-east-1"])).await;
    let url = &mock.endpoints().ec2;
    let target = ("x-amz-target", "AWSOrganizationsV20161128.ListAccounts");
    let json = ("content-type", "application/x-amz-json-1.1");
    let unsigned = raw_http::send("POST", url, &[target, json], "{}").await;
    assert_eq!(unsigned.status, 401, "{unsigned:?}");
    // Without a credential scope naming organizations it is EC2's request, refused as
    // unsigned.
    assert!(
        unsigned.body.contains("MissingAuthenticationToken"),
        "{unsigned:?}"
    );
    let forged = raw_http::send(
        "POST",
        url,
        &[
            target,
            json,
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=ASIAFORGED/20260101/us-east-1/organizations/aws4_request, SignedHeaders=host, Signature=00",
            ),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-security-token", "x"),
        ],
        "{\"MaxResults\": 1}",
    )
    .await;
    assert_eq!(forged.status, 400, "{forged:?}");
    assert!(
        forged.body.contains("UnrecognizedClientException"),
        "{forged:?}"
    );
    assert!(mock.is_serving());
    mock.shutdown().await;
}

/// `imds-shim audit --organization --json` and its records, by kind.
struct Audit {
    out: Output,
    records: Vec<Value>,
}

fn audit(mock: &MockAws, extra: &[&str]) -> Audit {
    let mut args = vec!["audit", "--organization", "--json", "--baseline", BASELINE];
    args.extend_from_slice(extra);
    let out = run(mock, &bins::shim().display().to_string(), &args);
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    Audit { out, records }
}

impl Audit {
    fn of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> {
        self.records.iter().filter(move |r| r["record"] == kind)
    }

    fn summary(&self) -> &Value {
        let last = self.records.last().expect("a summary");
        assert_eq!(last["record"], "summary");
        last
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_of_an_organization_equals_what_botocore_reads() {
    if !require(
        "the_audit_of_an_organization_equals_what_botocore_reads",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    // The issue's organization: 20 accounts × 4 regions × 250 instances, one account
    // whose role cannot be assumed, one suspended, one that has not enabled af-south-1;
    // 10 % of EC2's answers throttled, in every scope on its own.
    let mock = start(
        MockAws::builder()
            .fleet(250, 42)
            .throttle(0.1)
            .organization(20, REGIONS),
    )
    .await;
    let accounts = mock.organization_accounts();
    let seen = botocore(&mock);
    let audited = audit(
        &mock,
        &["--regions", &REGIONS.join(","), "--concurrency", "8"],
    );
    assert_eq!(audited.out.status.code(), Some(2), "{}", show(&audited.out));

    // Named, with the reason: the account that cannot be assumed, the disabled region.
    let not: Vec<(String, String, String)> = audited
        .of("not-audited")
        .map(|r| {
            (
                r["account"].as_str().unwrap().to_owned(),
                r["region"].as_str().unwrap_or("").to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(not.len(), 2, "{not:?}");
    let invited = &accounts[19];
    assert!(not.iter().any(|(a, region, why)| a == &invited.id
        && region.is_empty()
        && why.contains("AccessDenied")));
    assert!(not.iter().any(|(a, region, why)| a == &accounts[1].id
        && region == "af-south-1"
        && why.contains("not-opted-in")));
    let skipped: Vec<&str> = audited
        .of("account-skipped")
        .map(|r| r["account"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [accounts[18].id.as_str()]);

    // Every instance botocore read, in every scope, has the verdict its options and
    // tags imply; none is missing and none is extra.
    let baseline = Baseline::load(std::path::Path::new(BASELINE)).unwrap();
    let mut want: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (key, scope) in seen["scopes"].as_object().unwrap() {
        let (account, region) = key.split_once('/').unwrap();
        for (id, i) in scope["instances"].as_object().unwrap() {
            let tags: BTreeMap<String, String> = i["tags"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let verdict = expected_verdict(
                HopLimit::new(u32::try_from(i["hops"].as_u64().unwrap()).unwrap()).unwrap(),
                i["tokens"].as_str().unwrap().parse::<HttpTokens>().unwrap(),
                i["endpoint"]
                    .as_str()
                    .unwrap()
                    .parse::<HttpEndpoint>()
                    .unwrap(),
                &tags,
                &baseline,
            );
            want.insert((format!("{account}/{region}"), id.clone()), verdict);
        }
    }
    let got: BTreeMap<(String, String), &str> = audited
        .of("instance")
        .map(|r| {
            (
                (
                    format!(
                        "{}/{}",
                        r["account"].as_str().unwrap(),
                        r["region"].as_str().unwrap()
                    ),
                    r["instance_id"].as_str().unwrap().to_owned(),
                ),
                r["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    // 18 active accounts that can be assumed × 4 regions, less the disabled one, 250
    // instances each, and the mock's own instance.
    assert_eq!(seen["scopes"].as_object().unwrap().len(), 18 * 4 - 1);
    assert_eq!(want.len(), (18 * 4 - 1) * 250 + 1);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "first wrong or missing: {wrong:?}");
    assert_eq!(got.len(), want.len());

    // Templates: one record per template botocore read in each scope, its effective
    // hop limit from its default version.
    let templates: BTreeMap<(String, String), &Value> = audited
        .of("launch-template")
        .map(|r| {
            (
                (
                    format!(
                        "{}/{}",
                        r["account"].as_str().unwrap(),
                        r["region"].as_str().unwrap()
                    ),
                    r["launch_template_id"].as_str().unwrap().to_owned(),
                ),
                r,
            )
        })
        .collect();
    let mut read_templates = 0;
    for (key, scope) in seen["scopes"].as_object().unwrap() {
        for (id, options) in scope["templates"].as_object().unwrap() {
            read_templates += 1;
            let record = templates[&(key.clone(), id.clone())];
            match options.get("HttpPutResponseHopLimit") {
                Some(h) => assert_eq!(&record["set"]["hop_limit"], h, "{key} {id}"),
                None => assert!(record["set"]["hop_limit"].is_null(), "{key} {id}"),
            }
        }
    }
    assert_eq!(templates.len(), read_templates);
    // EC2's template ids are unique across accounts and regions: every template botocore
    // read has an id of its own, and the audit names each in its own account and region.
    let read_ids: BTreeSet<&str> = seen["scopes"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|scope| scope["templates"].as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert_eq!(read_ids.len(), read_templates);
    let audited_ids: BTreeSet<&str> = templates.keys().map(|(_, id)| id.as_str()).collect();
    assert_eq!(audited_ids, read_ids);
    // Account defaults: one per audited scope, as the mock holds them.
    let mut defaults = 0;
    for r in audited.of("account-defaults") {
        defaults += 1;
        let held = mock
            .metadata_defaults_in(
                r["account"].as_str().unwrap(),
                r["region"].as_str().unwrap(),
            )
            .unwrap();
        assert_eq!(
            r["set"]["hop_limit"].as_u64(),
            held.hop_limit.map(|h| u64::from(h.get()))
        );
    }
    assert_eq!(defaults, seen["scopes"].as_object().unwrap().len());

    // The summary: throttling retried and counted, equal to the mock's refusals.
    let summary = audited.summary();
    assert_eq!(summary["exit_code"], 2);
    assert_eq!(summary["accounts"], 20);
    assert_eq!(summary["accounts_skipped"], 1);
    assert_eq!(summary["not_audited"].as_array().unwrap().len(), 2);
    assert_eq!(
        summary["scopes_audited"],
        seen["scopes"].as_object().unwrap().len()
    );
    assert!(summary["api"]["throttled"].as_u64().unwrap() > 0);
    let scope_lines = audited.of("scope").count();
    assert_eq!(scope_lines, seen["scopes"].as_object().unwrap().len());

    mock.shutdown().await;

    // The same organization with smaller fleets and no throttling (proven above), for what
    // depends on neither. --allow-partial: the verdicts decide (some instances are too low: 1); what could
    // not be audited is still named.
    let mock = start(MockAws::builder().fleet(20, 42).organization(20, REGIONS)).await;
    assert_eq!(mock.organization_accounts(), accounts);
    let partial = audit(&mock, &["--regions", &REGIONS.join(","), "--allow-partial"]);
    assert_eq!(partial.out.status.code(), Some(1), "{}", show(&partial.out));
    assert_eq!(partial.of("not-audited").count(), 2);
    // --regions all: the disabled region is skipped and said, not a failure.
    let all = audit(&mock, &["--regions", "all"]);
    assert_eq!(all.of("not-audited").count(), 1, "{}", show(&all.out));
    let skipped: Vec<String> = all
        .of("region-skipped")
        .map(|r| {
            format!(
                "{}/{}",
                r["account"].as_str().unwrap(),
                r["region"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(skipped, [format!("{}/af-south-1", accounts[1].id)]);
    mock.shutdown().await;
}

/// Where a fix record is, and of what kind of source.
fn fix_key(fix: &Value) -> (String, String, bool) {
    (
        fix["account"].as_str().unwrap().to_owned(),
        fix["region"].as_str().unwrap().to_owned(),
        fix["resource"]
            .as_str()
            .unwrap()
            .starts_with("launch template"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_across_the_organization_fixes_every_source_and_the_audit_then_names_the_instances()
{
    let regions = ["us-east-1", "eu-west-1"];
    // Beside the generated fleets, a template of the management account's own region
    // that sets IPv6 and instance tags: the fix must keep them.
    let mock = start(
        MockAws::builder()
            .fleet(40, 9)
            .organization(5, regions)
            .launch_template(
                "ipv6-builders",
                LaunchTemplateData {
                    image_id: Some("ami-0abcdef1234567890".into()),
                    metadata_options: Some(TemplateMetadataOptions {
                        hop_limit: Some(HopLimit::MIN),
                        http_tokens: Some(HttpTokens::Optional),
                        http_protocol_ipv6: Some(Toggle::Enabled),
                        instance_metadata_tags: Some(Toggle::Enabled),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
    )
    .await;
    let accounts = mock.organization_accounts();
    let enforce = |extra: &[&str]| {
        let mut args = vec![
            "enforce",
            "--organization",
            "--launch-templates",
            "--account-defaults",
            "--json",
            "--baseline",
            BASELINE,
        ];
        args.extend_from_slice(extra);
        let out = run(&mock, &bins::shim().display().to_string(), &args);
        let records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, records)
    };
    let fixes = |records: &[Value]| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["record"] == "fix")
            .cloned()
            .collect()
    };
    let summary_of = |records: &[Value]| -> Value {
        let last = records.last().cloned().unwrap();
        assert_eq!(last["record"], "summary");
        last
    };

    // The plan: nothing changes. Account 4 (invited) cannot be assumed: exit 2, named.
    let (out, planned) = enforce(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let planned_fixes = fixes(&planned);
    assert!(!planned_fixes.is_empty());
    assert!(planned_fixes
        .iter()
        .all(|f| f["status"]["status"] == "planned"));
    assert_eq!(
        summary_of(&planned)["fixes"]["planned"],
        planned_fixes.len()
    );
    let member = &accounts[1].id;
    assert_eq!(
        mock.launch_templates_in(member, "eu-west-1")
            .unwrap()
            .versions("earthly-builders"),
        Some((1, 1))
    );

    // A service control policy refuses new template versions in one scope and the
    // account defaults in another: those fixes fail, are named with EC2's refusal, and
    // the exit status is 1 even with --allow-partial; every other fix is made.
    let refused = [
        (
            accounts[2].id.clone(),
            "eu-west-1",
            "CreateLaunchTemplateVersion",
        ),
        (
            accounts[2].id.clone(),
            "us-east-1",
            "ModifyInstanceMetadataDefaults",
        ),
    ];
    for (account, region, action) in &refused {
        assert!(mock.deny_in(account, region, action, true));
    }
    let is_refused = |key: &(String, String, bool)| {
        refused.iter().any(|(account, region, action)| {
            &key.0 == account
                && key.1 == *region
                && key.2 == (*action == "CreateLaunchTemplateVersion")
        })
    };
    let (out, applied) = enforce(&["--apply", "--allow-partial"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let applied_fixes = fixes(&applied);
    assert_eq!(applied_fixes.len(), planned_fixes.len());
    let (failed, made): (Vec<&Value>, Vec<&Value>) =
        applied_fixes.iter().partition(|f| is_refused(&fix_key(f)));
    assert!(!failed.is_empty() && !made.is_empty());
    assert!(
        failed.iter().all(|f| f["status"]["status"] == "failed"
            && f["status"]["detail"]
                .as_str()
                .unwrap()
                .contains("UnauthorizedOperation")
            && !f["changes"].as_array().unwrap().is_empty()),
        "{failed:?}"
    );
    assert!(
        made.iter().all(|f| f["status"]["status"] == "applied"),
        "{made:?}"
    );
    let summary = summary_of(&applied);
    assert_eq!(summary["fixes"]["failed"], failed.len());
    assert_eq!(summary["fixes"]["applied"], made.len());
    assert_eq!(summary["exit_code"], 1);
    assert!(applied
        .iter()
        .any(|r| r["record"] == "not-audited" && r["account"] == accounts[4].id.as_str()));
    // In the mock: the template that set nothing has a version 2, the default, with the
    // need; the defaults are the need, tokens required.
    let templates = mock.launch_templates_in(member, "eu-west-1").unwrap();
    assert_eq!(templates.versions("earthly-builders"), Some((2, 2)));
    let options = templates
        .data("earthly-builders", "$Default")
        .unwrap()
        .metadata_options
        .unwrap();
    assert_eq!(options.hop_limit.map(HopLimit::get), Some(3));
    assert_eq!(options.http_tokens, Some(HttpTokens::Required));
    let defaults = mock.metadata_defaults_in(member, "us-east-1").unwrap();
    assert_eq!(defaults.hop_limit.map(HopLimit::get), Some(3));
    // The template with IPv6 and instance tags keeps both, and the rest of its data.
    let own = mock.launch_templates();
    assert_eq!(own.versions("ipv6-builders"), Some((2, 2)));
    let data = own.data("ipv6-builders", "$Default").unwrap();
    assert_eq!(data.image_id.as_deref(), Some("ami-0abcdef1234567890"));
    let options = data.metadata_options.unwrap();
    assert_eq!(options.http_protocol_ipv6, Some(Toggle::Enabled));
    assert_eq!(options.instance_metadata_tags, Some(Toggle::Enabled));
    assert_eq!(options.http_tokens, Some(HttpTokens::Required));
    // In the refused scopes nothing changed.
    assert_eq!(
        mock.launch_templates_in(&accounts[2].id, "eu-west-1")
            .unwrap()
            .versions("earthly-builders"),
        Some((1, 1))
    );

    // The audit after: nothing too low at the source but where the SCP refused; the
    // running instances still are, each named with its fix.
    let after = audit(&mock, &["--allow-partial"]);
    let sources: Vec<&Value> = after
        .records
        .iter()
        .filter(|r| r["record"] == "launch-template" || r["record"] == "account-defaults")
        .collect();
    assert!(!sources.is_empty());
    let wrong: BTreeSet<(String, String, bool)> = sources
        .iter()
        .filter(|r| r["verdict"] != "right")
        .map(|r| {
            (
                r["account"].as_str().unwrap().to_owned(),
                r["region"].as_str().unwrap().to_owned(),
                r["record"] == "launch-template",
            )
        })
        .collect();
    let failed_keys: BTreeSet<(String, String, bool)> = failed.iter().map(|f| fix_key(f)).collect();
    assert_eq!(wrong, failed_keys);
    let low: Vec<&Value> = after
        .of("instance")
        .filter(|r| r["verdict"] == "too-low")
        .collect();
    assert!(!low.is_empty());
    assert!(low
        .iter()
        .all(|r| r["fix"].as_str().unwrap().contains(&format!(
            "--instance-id {}",
            r["instance_id"].as_str().unwrap()
        ))));

    // The SCP lifted: the next enforce makes exactly the fixes that failed.
    for (account, region, action) in &refused {
        assert!(mock.deny_in(account, region, action, false));
    }
    let (out, retried) = enforce(&["--apply", "--allow-partial"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let retried_keys: BTreeSet<(String, String, bool)> =
        fixes(&retried).iter().map(fix_key).collect();
    assert_eq!(retried_keys, failed_keys);
    assert!(fixes(&retried)
        .iter()
        .all(|f| f["status"]["status"] == "applied"));
    // A further enforce has nothing left to do.
    let (_, again) = enforce(&["--apply", "--allow-partial"]);
    assert!(fixes(&again).is_empty(), "{:?}", fixes(&again));
    mock.shutdown().await;
}

/// botocore's own validator, with the shapes of the service models it ships: the
/// Config rule as `PutConfigRule`'s input, the SCP as `CreatePolicy`'s `Content` (at
/// most 5,120 characters, the SCP quota). A document broken on purpose must fail, so
/// the validator is seen to judge.
const VALIDATE: &str = r#"
import json, sys
import botocore.session
from botocore.validate import validate_parameters
from botocore.exceptions import ParamValidationError
s = botocore.session.get_session()
def check(service, operation, params):
    shape = s.get_service_model(service).operation_model(operation).input_shape
    try:
        validate_parameters(params, shape)
        return "valid"
    except ParamValidationError as e:
        return "invalid: %s" % e
rule = json.loads(sys.argv[1])
scp = sys.argv[2]
out = {"rule": check("config", "PutConfigRule", rule)}
broken = json.loads(sys.argv[1]); del broken["ConfigRule"]["Source"]
out["broken_rule"] = check("config", "PutConfigRule", broken)
out["scp"] = check("organizations", "CreatePolicy", {
    "Content": scp, "Description": "imds-shim", "Name": "imds-hop-limit",
    "Type": "SERVICE_CONTROL_POLICY"})
out["broken_scp"] = check("organizations", "CreatePolicy", {
    "Content": scp, "Name": "imds-hop-limit", "Type": "SCP"})
out["scp_chars"] = len(scp)
out["parameters"] = json.loads(rule["ConfigRule"]["InputParameters"])
print(json.dumps(out))
"#;

/// `imds-shim enforce --print WHAT` for earthly-run (hop limit 3 in the baseline file).
fn printed(what: &str) -> String {
    let out = duct::cmd(
        bins::shim(),
        [
            "enforce",
            "--print",
            what,
            "--topology",
            "earthly-run",
            "--baseline",
            BASELINE,
        ],
    )
    .stdout_capture()
    .unchecked()
    .run()
    .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_printed_scp_and_config_rule_pass_botocores_shapes() {
    if !require(
        "the_printed_scp_and_config_rule_pass_botocores_shapes",
        &[Requirement::AwsCli],
    ) {
        return;
    }
    let rule = printed("config-rule");
    let scp = printed("scp");
    let out = duct::cmd(PYTHON, ["-c", VALIDATE, &rule, &scp])
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["rule"], "valid", "{got}");
    assert_eq!(got["scp"], "valid", "{got}");
    assert!(
        got["broken_rule"].as_str().unwrap().starts_with("invalid"),
        "{got}"
    );
    assert!(
        got["broken_scp"].as_str().unwrap().starts_with("invalid"),
        "{got}"
    );
    assert!(got["scp_chars"].as_u64().unwrap() <= 5120);
    // earthly-run needs 3 in the baseline file: the rule's parameter and the SCP's bound.
    assert_eq!(got["parameters"]["tokenHopLimit"], "3");
    let scp: Value = serde_json::from_str(&scp).unwrap();
    assert_eq!(
        scp["Statement"][0]["Condition"]["NumericGreaterThan"]
            ["ec2:MetadataHttpPutResponseHopLimit"],
        "3"
    );
}

/// The data directory of the cfn-lint that `python3` imports.
fn cfnlint_data() -> std::path::PathBuf {
    let out = duct::cmd(
        "python3",
        [
            "-c",
            "import cfnlint, os; print(os.path.join(os.path.dirname(cfnlint.__file__), 'data'))",
        ],
    )
    .stdout_capture()
    .run()
    .expect("python3 finds cfnlint");
    String::from_utf8(out.stdout).unwrap().trim().into()
}

fn read_json(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// cfn-lint on a template of `resources`: its exit status and what it said.
fn cfn_lint(resources: &Value) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("imdsh-template.json");
    let body = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": resources,
    });
    std::fs::write(&template, body.to_string()).unwrap();
    let out = duct::cmd!("cfn-lint", &template)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .expect("cfn-lint runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The printed SCP against the IAM JSON policy grammar as a JSON Schema (the one AWS's
/// cfn-lint ships, `schemas/other/iam/policy.json`: the top-level keys, the statement's
/// elements, `Effect`, the condition operators), validated with the `jsonschema` crate;
/// what the SCP syntax page adds (`Version` 2012-10-17, no `Principal`); the actions
/// and condition keys against the service authorization data cfn-lint ships
/// (`AdditionalSpecs/Policies.json`): both actions exist, and both keys are keys of the
/// resource they act on. Then cfn-lint itself on a template with the SCP as an
/// `AWS::Organizations::Policy` and the Config rule as an `AWS::Config::ConfigRule`.
/// Documents broken on purpose fail each check, so each is seen to judge.
#[test]
fn the_printed_scp_and_config_rule_pass_the_grammars_aws_publishes() {
    if !require(
        "the_printed_scp_and_config_rule_pass_the_grammars_aws_publishes",
        &[Requirement::CfnLint],
    ) {
        return;
    }
    let data = cfnlint_data();
    let scp: Value = serde_json::from_str(&printed("scp")).unwrap();
    let rule: Value = serde_json::from_str(&printed("config-rule")).unwrap();

    // The grammar.
    let mut schema = read_json(&data.join("schemas/other/iam/policy.json"));
    // Its `Statement` is `$ref` (one statement) beside `items` (a list of them), which
    // cfn-lint's own validator reads as either; standard JSON Schema would apply both to
    // a list. The printed SCP has a list: the list's branch, as published.
    let items = schema["properties"]["Statement"]["items"].clone();
    assert_eq!(items["$ref"], "#/definitions/Statement");
    schema["properties"]["Statement"] = serde_json::json!({ "type": "array", "items": items });
    let grammar = jsonschema::draft7::new(&schema).expect("the policy schema compiles");
    let errors: Vec<String> = grammar.iter_errors(&scp).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut doc = scp.clone();
        change(&mut doc);
        doc
    };
    let breakages: [(&str, Value); 5] = [
        (
            "an Effect IAM does not know",
            broken(&|d| d["Statement"][0]["Effect"] = "Block".into()),
        ),
        (
            "a condition operator IAM does not know",
            broken(&|d| {
                let c = d["Statement"][0]["Condition"].as_object_mut().unwrap();
                let v = c.remove("NumericGreaterThan").unwrap();
                c.insert("NumericAbove".into(), v);
            }),
        ),
        (
            "a top-level key IAM does not know",
            broken(&|d| d["Statements"] = Value::Array(Vec::new())),
        ),
        (
            "a statement without Action or NotAction",
            broken(&|d| {
                d["Statement"][0].as_object_mut().unwrap().remove("Action");
            }),
        ),
        (
            "a Version IAM does not know",
            broken(&|d| d["Version"] = "2020-01-01".into()),
        ),
    ];
    for (what, doc) in &breakages {
        assert!(!grammar.is_valid(doc), "the grammar let through {what}");
    }

    // What the SCP syntax page adds to the grammar.
    assert_eq!(scp["Version"], "2012-10-17");
    let statements = scp["Statement"].as_array().unwrap();
    for statement in statements {
        assert_eq!(statement["Effect"], "Deny");
        assert!(statement.get("Principal").is_none() && statement.get("NotPrincipal").is_none());
    }

    // The actions and their condition keys.
    let authorization = read_json(&data.join("AdditionalSpecs/Policies.json"));
    let mut used = BTreeSet::new();
    for statement in statements {
        for action in statement["Action"].as_array().unwrap() {
            let (service, name) = action.as_str().unwrap().split_once(':').unwrap();
            let service = &authorization[service];
            let known = &service["Actions"][name.to_lowercase()];
            assert!(known.is_object(), "{action} is no action AWS lists");
            let keys: BTreeSet<&str> = known["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| {
                    service["Resources"][r.as_str().unwrap()]["ConditionKeys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                })
                .chain(known["ConditionKeys"].as_array().into_iter().flatten())
                .map(|k| k.as_str().unwrap())
                .collect();
            for operator in statement["Condition"].as_object().unwrap().values() {
                for key in operator.as_object().unwrap().keys() {
                    assert!(keys.contains(key.as_str()), "{action} takes no {key}");
                    used.insert(key.clone());
                }
            }
            assert!(!keys.contains("ec2:MetadataHttpHopLimit"));
        }
    }
    assert_eq!(
        used,
        BTreeSet::from([
            "ec2:MetadataHttpPutResponseHopLimit".to_owned(),
            "ec2:MetadataHttpTokens".to_owned(),
        ])
    );

    // cfn-lint itself: both as CloudFormation resources.
    let resources = serde_json::json!({
        "Scp": {
            "Type": "AWS::Organizations::Policy",
            "Properties": {
                "Name": "imds-hop-limit",
                "Type": "SERVICE_CONTROL_POLICY",
                "Content": scp,
            },
        },
        "Rule": {"Type": "AWS::Config::ConfigRule", "Properties": rule["ConfigRule"]},
    });
    let (code, said) = cfn_lint(&resources);
    assert_eq!(code, 0, "{said}");
    let mut broken_rule = resources.clone();
    broken_rule["Rule"]["Properties"]
        .as_object_mut()
        .unwrap()
        .remove("Source");
    let (code, said) = cfn_lint(&broken_rule);
    assert_ne!(
        code, 0,
        "cfn-lint let through a rule without Source: {said}"
    );
    assert!(said.contains("Source"), "{said}");
}
