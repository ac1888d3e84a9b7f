//! `imds-shim probe`, `check` and `enforce` where a user-space network stack stands
//! between the build and the host: the real slirp4netns and pasta of the netns backend.
//!
//! Every command runs inside the site's namespaces (the leaf, or the simulated instance's
//! host namespace), with IMDS, STS and EC2 at the site's mock: nothing leaves the machine.

use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_e2e::shim_site::ShimSite;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens};
use serde_json::Value;

const NETNS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::UserStacks,
];
const ROLE_ARN: &str = "assumed-role/imds-harness-build-role/i-0123456789abcdef0";
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");

/// A site of `topology` at `hop_limit` with tokens required; `None` (the test skipped,
/// or failed under `CI=true`) when root, `ip` or a user-space stack is missing.
fn sim(test: &str, topology: &str, hop_limit: u32) -> Option<ShimSite> {
    if !require(test, NETNS) {
        return None;
    }
    let sim = ShimSite::start(topology, MockConfig::default());
    sim.site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(hop_limit).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    Some(sim)
}

/// The probe at the site's leaf.
trait LeafProbe {
    fn leaf_probe_json(&self) -> (Option<i32>, Value);
    fn leaf_probe_human(&self) -> String;
}

impl LeafProbe for ShimSite {
    /// `imds-shim probe --json` at the leaf: the exit status and the report.
    fn leaf_probe_json(&self) -> (Option<i32>, Value) {
        let out = self.shim(
            self.site.leaf(),
            &["probe", "--json", "--timeout-ms", "500"],
        );
        eprintln!(
            "{} leaf: imds-shim probe --json\n{}",
            self.site.topology(),
            text(&out.stdout)
        );
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", show(&out)));
        (out.status.code(), report)
    }

    /// `imds-shim probe` at the leaf, as a person reads it.
    fn leaf_probe_human(&self) -> String {
        let out = self.shim(self.site.leaf(), &["probe", "--timeout-ms", "500"]);
        let stdout = text(&out.stdout);
        eprintln!("{} leaf: imds-shim probe\n{stdout}", self.site.topology());
        stdout
    }
}

fn assert_gets_the_role(status: Option<i32>, report: &Value) {
    assert_eq!(status, Some(0), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    let arn = report["identity"]["arn"].as_str().unwrap_or_default();
    assert!(arn.ends_with(ROLE_ARN), "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_slirp4netns_the_probe_gets_the_role_at_hop_limit_1_and_names_the_stack() {
    let Some(sim) = sim("shim_behind_slirp4netns", "podman-rootless", 1) else {
        return;
    };
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
    assert_eq!(report["ttl"]["hop_limit_needed"], 1, "{report:#}");
    assert_eq!(
        report["network"],
        serde_json::json!({
            "kind": "user-space",
            "interface": "tap0",
            "gateway": "10.0.2.2",
            "gateway_mac": "52:55:0a:00:02:02",
            "stack": "slirp4netns"
        }),
        "{report:#}"
    );
    let human = sim.leaf_probe_human();
    assert!(
        human.contains(
            "\nnetwork        user-space: slirp4netns (TAP device tap0, gateway 10.0.2.2 (52:55:0a:00:02:02))\n"
        ),
        "{human}"
    );
    assert!(
        human.contains("it needs hop limit >= 1 up to the user-space network stack\nnote: this place is behind slirp4netns"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_pasta_the_probe_gets_the_role_at_hop_limit_1_and_says_user_space() {
    let Some(sim) = sim("shim_behind_pasta", "podman-rootless-pasta", 1) else {
        return;
    };
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
    assert_eq!(report["ttl"]["hop_limit_needed"], 1, "{report:#}");
    let network = &report["network"];
    assert_eq!(network["kind"], "user-space", "{report:#}");
    // pasta answers ARP with the MAC of the interface it copied: it is not named.
    assert!(network["stack"].is_null(), "{report:#}");
    assert!(network["interface"].is_string(), "{report:#}");
    let human = sim.leaf_probe_human();
    assert!(
        human.contains("\nnetwork        user-space: a user-space network stack (e.g. pasta) serves TAP device "),
        "{human}"
    );
    assert!(human.contains("note: this place is behind a user-space network stack (e.g. pasta)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_docker_run_the_probe_says_routed_and_2() {
    let Some(sim) = sim("shim_docker_run_routed", "docker-run", 2) else {
        return;
    };
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
    assert_eq!(report["ttl"]["hop_limit_needed"], 2, "{report:#}");
    assert_eq!(report["network"]["kind"], "routed", "{report:#}");
    assert_eq!(report["network"]["gateway"], "172.17.0.1", "{report:#}");
    assert!(report["network"]["stack"].is_null(), "{report:#}");
    let human = sim.leaf_probe_human();
    assert!(human.contains("\nnetwork        routed: via "), "{human}");
    assert!(!human.contains("note:"), "{human}");
}

/// A routed leaf behind a stack: the TTL probe's connect ends at the stack, one router
/// away, so it says 2, and the leaf's own files show only its routed link. The instance
/// needs 1 (nothing routes between the host and the stack), and the role comes at 1.
/// What the probe cannot see from here, it does not claim.
#[tokio::test(flavor = "multi_thread")]
async fn a_routed_leaf_behind_a_stack_says_routed_and_2_yet_gets_the_role_at_1() {
    let Some(sim) = sim("shim_routed_behind_stack", "chain:pr", 1) else {
        return;
    };
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
    assert_eq!(report["ttl"]["hop_limit_needed"], 2, "{report:#}");
    assert_eq!(report["network"]["kind"], "routed", "{report:#}");
}

/// A stack one router from the host: the leaf sees the stack (need 1 up to it), the token
/// is lost before the stack at hop limit 1, and the note says where to look.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_behind_a_router_loses_the_token_at_1_and_the_note_says_where() {
    let Some(sim) = sim("shim_stack_behind_router", "chain:rp", 1) else {
        return;
    };
    let (status, report) = sim.leaf_probe_json();
    assert_eq!(status, Some(1), "{report:#}");
    assert_eq!(report["ttl"]["hop_limit_needed"], 1, "{report:#}");
    assert_eq!(report["network"]["stack"], "slirp4netns", "{report:#}");
    let token_error = report["token"]["error"].as_str().unwrap_or_default();
    assert!(token_error.starts_with("no token response"), "{report:#}");
    let human = sim.leaf_probe_human();
    assert!(
        human.contains("The token response was lost on the way to the stack, not here"),
        "{human}"
    );
    sim.site.mock().set_hop_limit(HopLimit::new(2).unwrap());
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_for_podman_rootless_sets_1_and_says_why() {
    let Some(sim) = sim("shim_enforce_podman_rootless", "podman-rootless", 3) else {
        return;
    };
    let host = sim.site.host();
    let args = ["--baseline", BASELINE, "--topology", "podman-rootless"];
    let check = sim.shim(host, &[&["check"][..], &args].concat());
    assert_eq!(check.status.code(), Some(3), "{}", show(&check));
    let stdout = text(&check.stdout);
    assert!(
        stdout.contains("has hop limit 3, podman-rootless needs only 1"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("note: podman-rootless is in a rootless Podman container behind slirp4netns"),
        "{stdout}"
    );

    let apply = sim.shim(host, &[&["enforce"][..], &args, &["--apply"]].concat());
    eprintln!(
        "imds-shim enforce --topology podman-rootless --apply\n{}",
        show(&apply)
    );
    assert_eq!(apply.status.code(), Some(0), "{}", show(&apply));
    let stdout = text(&apply.stdout);
    assert!(
        stdout.contains(&format!(
            "podman-rootless needs hop limit 1 (from {BASELINE})\n  why: in a rootless Podman container behind slirp4netns"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("HttpPutResponseHopLimit  3 -> 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hop limit 1 is enough; a higher hop limit would not help these builds")
    );
    assert!(stdout.contains("applied after"), "{stdout}");
    assert_eq!(sim.site.mock().options().hop_limit.get(), 1);

    let check = sim.shim(host, &[&["check"][..], &args].concat());
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    // And the build behind the stack still gets the role.
    let (status, report) = sim.leaf_probe_json();
    assert_gets_the_role(status, &report);
}

/// The AWS CLI behind slirp4netns with the metadata endpoint off: the diagnosis blames
/// something else than the hop limit, both when `--topology` says where the build runs
/// and when imds-shim itself runs behind the stack (with `--topology` left at its default).
#[tokio::test(flavor = "multi_thread")]
async fn run_behind_slirp4netns_never_blames_the_hop_limit() {
    if !require("shim_run_behind_slirp4netns", &[Requirement::AwsCli]) {
        return;
    }
    let Some(sim) = sim("shim_run_behind_slirp4netns", "podman-rootless", 1) else {
        return;
    };
    sim.site.mock().modify(&MetadataOptionsChange {
        http_endpoint: Some(HttpEndpoint::Disabled),
        ..Default::default()
    });
    let aws = imds_e2e::aws_env::AWS_CLI;
    let leaf = sim.site.leaf().name().to_string();
    let out = sim.shim(
        sim.site.host(),
        &[
            "run",
            "--baseline",
            BASELINE,
            "--topology",
            "podman-rootless",
            "--",
            "ip",
            "netns",
            "exec",
            &leaf,
            aws,
            "sts",
            "get-caller-identity",
        ],
    );
    eprintln!(
        "imds-shim run --topology podman-rootless -- <leaf> aws sts get-caller-identity\n{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(253), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("said by:      the AWS CLI (Unable to locate credentials."),
        "{stderr}"
    );
    assert!(
        stderr.contains("Why: not the hop limit. The build reaches IMDS through slirp4netns"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--http-put-response-hop-limit"),
        "{stderr}"
    );

    // imds-shim in the leaf itself, --topology left at earthly-run.
    let out = sim.shim(
        sim.site.leaf(),
        &[
            "run",
            "--baseline",
            BASELINE,
            "--",
            aws,
            "sts",
            "get-caller-identity",
        ],
    );
    eprintln!(
        "in the leaf: imds-shim run -- aws sts get-caller-identity\n{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(253), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("network:      imds-shim itself runs behind slirp4netns (TAP device tap0)"),
        "{stderr}"
    );
    assert!(stderr.contains("Why: not the hop limit."), "{stderr}");
    assert!(
        !stderr.contains("--http-put-response-hop-limit"),
        "{stderr}"
    );
    assert!(!stderr.contains("RUN --aws"), "{stderr}");
}
