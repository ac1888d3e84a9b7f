//! `imds-shim fence` at the rootless presets: the builds behind slirp4netns or pasta reach the
//! instance role at hop limit 1 with no grant (their stack opens each connection anew on the
//! host), until the fence keeps the stack's user from IMDS; then only a grant gets the role,
//! through the relay.
//!
//! The simulated instance is a namespace (netns backend: the stacks run as [`STACK_UID`], as
//! rootless Podman's run as their user) or a container (docker backend: rootless Podman as the
//! instance's user `imdsh`, uid [`ROOTLESS_UID`]); `imds-shim fence` runs in the instance's
//! network namespace, and no rule is ever written in this machine's own.
//!
//! The clients: Debian's AWS CLI, the Go v2, Go v1, Ruby and boto3 programs and, on the netns
//! backend, the AWS SDK for Rust's default chain (this test binary re-run at the leaf as
//! [`rust_sdk_child`]; the probe image has no client of it that reads a grant).

mod relay_sim;

use std::process::Output;

use imds_e2e::at_once::at_once;
use imds_e2e::bins;
use imds_e2e::output::{show, text};
use imds_e2e::relay_process::RelayProcess;
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::endpoints::{EC2_URL, IMDS_URL, STS_URL};
use imds_harness::backend::netns::{Namespace, NamespaceLeaf, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::probe::programs::SdkProgram;
use imds_harness::probe::{cli, sdk, Leaf, Probe, Program, Tools};
use imds_harness::topology::Topology;
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{Client, HopLimit, HttpTokens};
use strum::VariantArray;

/// The instance role, what every client gets unfenced.
const ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/imds-harness-build-role/i-0123456789abcdef0";
/// The role a grant names, assumed by the relay: what a granted client gets when fenced.
const DEPLOY_ARN: &str = "arn:aws:iam::123456789012:role/deploy";
/// Its session, named after the grant's label.
const SCOPED_ARN: &str = "arn:aws:sts::123456789012:assumed-role/deploy/fenced-build";
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hop-limits.toml");
/// The uid the netns backend's stacks run as here: no user of this machine needs to have it.
const STACK_UID: u32 = 4242;
/// The instance container's rootless user `imdsh`.
const ROOTLESS_UID: u32 = 1000;
const NETNS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::UserStacks,
    Requirement::AwsCli,
    Requirement::SdkClients,
];

/// The SDK side of [`relay_sim::rust_sdk_in`], re-run at the leaf.
#[test]
fn rust_sdk_child() {
    relay_sim::rust_sdk_child();
}

/// `imds-shim fence <args>` in `ns`.
fn fence(ns: &Namespace, args: &[&str]) -> Output {
    let mut all = vec!["fence"];
    all.extend_from_slice(args);
    ns.exec(bins::shim(), &all)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
}

/// `<program> <args>` in `ns`: its stdout (the firewall's listing).
fn listing(ns: &Namespace, program: &str, args: &[&str]) -> String {
    let out = ns
        .exec(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    text(&out.stdout)
}

/// Every client at the place with `env` (the AWS CLI, the Go v2, Go v1, Ruby and boto3 SDKs,
/// the AWS SDK for Rust's default chain in `imds-shim whoami`, and this test binary's Rust
/// SDK client where the place runs it): its name and the ARN it got, if any. They run at
/// once, as `measure` runs a cell's clients: where the fence holds, each waits out its own
/// time-out (the Ruby SDK's 7 s the longest), so one after another they took the sum.
fn clients(place: &Place<'_>, env: &ClientEnv) -> Vec<(String, Option<String>)> {
    type Client<'p> = Box<dyn Fn() -> (String, Option<String>) + Sync + 'p>;
    // A client that gets no credentials may end with a stack trace (the Ruby SDK does): the
    // harness calls that a crash; here it is a client without the role all the same.
    let mut runs: Vec<Client<'_>> = vec![Box::new(|| {
        let outcome = cli::run(place.leaf, env, STS_URL);
        ("aws-cli".to_owned(), outcome.ok().and_then(|o| o.arn))
    })];
    for &program in SdkProgram::VARIANTS {
        runs.push(Box::new(move || {
            let outcome = sdk::run(place.leaf, env, program, STS_URL);
            (program.to_string(), outcome.ok().and_then(|o| o.arn))
        }));
    }
    runs.push(Box::new(|| {
        let whoami = place
            .leaf
            .run(Program::Shim, &["whoami", "--sts-endpoint", STS_URL], env)
            .unwrap();
        ("imds-shim whoami".to_owned(), relay_sim::cli_arn(&whoami))
    }));
    if let Some(ns) = place.rust_sdk {
        runs.push(Box::new(move || {
            let calls = relay_sim::rust_sdk_in(ns, env, 1, std::time::Duration::ZERO);
            let arn = calls[0].strip_prefix("ARN ").map(str::to_owned);
            ("rust-sdk".to_owned(), arn)
        }));
    }
    at_once(&runs, |run| run())
}

fn every(place: &Place<'_>, arn: Option<&str>) -> Vec<(String, Option<String>)> {
    ["aws-cli".to_owned()]
        .into_iter()
        .chain(SdkProgram::VARIANTS.iter().map(ToString::to_string))
        .chain(["imds-shim whoami".to_owned()])
        .chain(place.rust_sdk.map(|_| "rust-sdk".to_owned()))
        .map(|name| (name, arn.map(str::to_owned)))
        .collect()
}

fn with_grant(env: &ClientEnv, grant: &[(String, String)]) -> ClientEnv {
    let name = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
    let (_, value) = grant
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} not in the grant"));
    env.clone().with(name, value)
}

fn assert_status(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    assert!(
        text(&out.stdout).contains(says) || text(&out.stderr).contains(says),
        "not said: {says}\n{}",
        show(out)
    );
}

/// The fence's whole life at one place: not covered, applied (twice: the second changes
/// nothing), covered, the clients without and with a grant, removed.
/// Where [`fence_and_serve`] runs: the instance's host namespace, the leaf (and its namespace
/// when the Rust SDK runs there), the clients' environment and the relay.
struct Place<'a> {
    what: &'a str,
    host: &'a Namespace,
    leaf: &'a dyn Leaf,
    rust_sdk: Option<&'a Namespace>,
    env: &'a ClientEnv,
    relay: &'a RelayProcess,
}

fn fence_and_serve(place: &Place<'_>, uid: u32, firewall: &[&str], while_fenced: &dyn Fn()) {
    let &Place {
        what,
        host,
        leaf,
        env,
        relay,
        ..
    } = place;
    let uid_arg = uid.to_string();
    let who = [&["--uid", uid_arg.as_str()][..], firewall].concat();
    let granted = with_grant(
        env,
        &relay.grant(&["--role-arn", DEPLOY_ARN, "--label", "fenced-build"]),
    );

    // Today's hole: at hop limit 1, with no grant, every client gets the role.
    assert_eq!(
        clients(place, env),
        every(place, Some(ARN)),
        "{what}: unfenced"
    );
    assert_status(
        &fence(host, &[&who[..], &["--check"]].concat()),
        1,
        "is NOT fenced",
    );

    let apply = fence(host, &[&who[..], &["--apply"]].concat());
    eprintln!("{what}: imds-shim fence --apply\n{}", show(&apply));
    assert_status(&apply, 0, &format!("fenced uid {uid}"));
    let again = fence(host, &[&who[..], &["--apply"]].concat());
    assert_status(&again, 0, "was fenced already: nothing changed");
    assert_status(
        &fence(host, &[&who[..], &["--check"]].concat()),
        0,
        "is fenced",
    );

    while_fenced();
    // Fenced: nothing without a grant, the grant's role with one, through the relay.
    assert_eq!(
        clients(place, env),
        every(place, None),
        "{what}: fenced, no grant"
    );
    assert_eq!(
        clients(place, &granted),
        every(place, Some(SCOPED_ARN)),
        "{what}: fenced, granted"
    );

    let remove = fence(host, &[&who[..], &["--remove"]].concat());
    assert_status(&remove, 0, "is no longer fenced");
    assert_status(
        &fence(host, &[&who[..], &["--remove"]].concat()),
        0,
        "was not fenced: nothing changed",
    );
    assert!(!listing(host, "nft", &["list", "ruleset"]).contains("imdsh_fence"));
    assert!(!listing(host, "iptables", &["-w", "-S"]).contains("imdsh-fence"));
    assert!(!listing(host, "ip6tables", &["-w", "-S"]).contains("imdsh-fence"));
    // The hole is back: it was the fence that closed it.
    let cli = cli::run(leaf, env, STS_URL).unwrap();
    assert_eq!(cli.arn.as_deref(), Some(ARN), "{what}: unfenced again");
}

/// A mock whose account has the role `deploy` for grants to name.
fn with_deploy_role() -> MockConfig {
    let mut config = MockConfig::default();
    config.iam.assumable_roles.insert("deploy".into(), None);
    config
}

/// `imds-shim check` on the host and `imds-shim probe` at the leaf say whether a fence covers
/// the place.
fn says_fenced(site: &NetnsSite, env: &ClientEnv, topology: &str, fenced: bool) {
    let env = env.clone().with("AWS_ENDPOINT_URL_EC2", EC2_URL);
    let run = |ns: &Namespace, args: &[&str]| {
        env.apply(ns.exec(bins::shim(), args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    };
    let check = run(
        site.host(),
        &["check", "--baseline", BASELINE, "--topology", topology],
    );
    eprintln!("{topology}: imds-shim check\n{}", show(&check));
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    let probe = run(site.leaf(), &["probe", "--timeout-ms", "500"]);
    eprintln!("{topology}: imds-shim probe at the leaf\n{}", show(&probe));
    let (check, probe) = (text(&check.stdout), text(&probe.stdout));
    if fenced {
        assert!(
            check.contains(&format!(
                "note: `imds-shim fence` keeps uid {STACK_UID} from IMDS"
            )),
            "{check}"
        );
        assert!(
            probe.contains("a fence on the host (`imds-shim fence`, a rule by socket owner)"),
            "{probe}"
        );
    } else {
        assert!(
            check.contains("note: no `imds-shim fence` covers any user here"),
            "{check}"
        );
        assert!(probe.contains("No fence covers this place"), "{probe}");
    }
}

/// The netns backend, each rootless preset, each firewall: nftables (found by itself) behind
/// slirp4netns, iptables (asked for) behind pasta.
#[test]
fn netns_rootless_presets_get_the_role_only_through_a_grant_once_fenced() {
    if !require("fence_netns", NETNS) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let probes: Vec<Probe> = [Client::RustSdk, Client::Cli, Client::GoSdkV2]
        .into_iter()
        .chain([Client::GoSdkV1, Client::RubySdk, Client::Boto3])
        .map(Probe::Client)
        .collect();
    let tools = Tools::locate(&probes).unwrap();
    for (topology, firewall) in [
        ("podman-rootless", &[][..]),
        ("podman-rootless-pasta", &["--firewall", "iptables"][..]),
    ] {
        let site = NetnsSite::start_with_stack_owner(
            &Topology::parse(topology).unwrap(),
            with_deploy_role(),
            STACK_UID,
        )
        .unwrap();
        site.mock().modify(&MetadataOptionsChange {
            hop_limit: Some(HopLimit::new(1).unwrap()),
            http_tokens: Some(HttpTokens::Required),
            ..Default::default()
        });
        let dir = tempfile::Builder::new()
            .prefix("imdsh-fence-test-")
            .tempdir()
            .unwrap();
        let env = ClientEnv::new(dir.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL);
        let relay =
            RelayProcess::start(site.host(), dir.path(), &env, &["--sts-endpoint", STS_URL]);
        says_fenced(&site, &env, topology, false);
        let leaf = NamespaceLeaf {
            namespace: site.leaf().clone(),
            tools: tools.clone(),
        };
        let place = Place {
            what: topology,
            host: site.host(),
            leaf: &leaf,
            rust_sdk: Some(site.leaf()),
            env: &env,
            relay: &relay,
        };
        fence_and_serve(&place, STACK_UID, firewall, &|| {
            says_fenced(&site, &env, topology, true);
        });
        // The relay fetched the role at depth 0, as root: the fence never kept it from IMDS.
        let log = relay.stop();
        assert!(log.contains("200 to "), "{log}");
        assert_eq!(site.mock().options().hop_limit.get(), 1);
    }
}

/// Bad input changes nothing: a user that does not exist, root, an unknown firewall. A dry
/// run prints the rules and writes none; a rule deleted by hand is found missing, and
/// `--apply` puts it back.
#[test]
fn bad_input_changes_nothing_and_a_damaged_fence_is_found_and_mended() {
    if !require(
        "fence_bad_input",
        &[Requirement::Root, Requirement::NetTools],
    ) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let site = NetnsSite::start(&Topology::parse("host").unwrap(), MockConfig::default()).unwrap();
    let host = site.host();
    let untouched = || {
        let rules = listing(host, "nft", &["list", "ruleset"]);
        assert!(!rules.contains("imdsh_fence"), "{rules}");
        let rules = listing(host, "iptables", &["-w", "-S"]);
        assert!(!rules.contains("imdsh-fence"), "{rules}");
    };

    for firewall in [&[][..], &["--firewall", "iptables"][..]] {
        let out = fence(
            host,
            &[&["--user", "imdsh-no-such-user", "--apply"][..], firewall].concat(),
        );
        assert_status(
            &out,
            2,
            "no user named \"imdsh-no-such-user\" on this host: nothing was changed",
        );
        let out = fence(host, &[&["--uid", "0", "--apply"][..], firewall].concat());
        assert_status(&out, 2, "uid 0 is root");
        let out = fence(
            host,
            &[&["--user", "root", "--apply"][..], firewall].concat(),
        );
        assert_status(&out, 2, "uid 0 is root");
        untouched();
    }
    let out = fence(host, &["--uid", "4242", "--firewall", "pf", "--apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = fence(host, &["--uid", "4242"]);
    assert_status(&out, 0, "add rule inet imdsh_fence output ip daddr 169.254.169.254 tcp dport 80 meta skuid @users counter reject");
    let out = fence(host, &["--uid", "4242", "--firewall", "iptables"]);
    assert_status(
        &out,
        0,
        "iptables -w -A imdsh-fence -d 169.254.169.254/32 -p tcp --dport 80 -m owner --uid-owner 4242",
    );
    untouched();

    // Damaged by hand: the IPv4 rule deleted (nftables), the jump from OUTPUT (iptables).
    assert_status(
        &fence(host, &["--uid", "4242", "--apply"]),
        0,
        "fenced uid 4242",
    );
    let handle = listing(
        host,
        "nft",
        &["-a", "list", "chain", "inet", "imdsh_fence", "output"],
    )
    .lines()
    .find(|l| l.contains("169.254.169.254"))
    .and_then(|l| l.rsplit("# handle ").next())
    .unwrap()
    .trim()
    .to_owned();
    listing(
        host,
        "nft",
        &[
            "delete",
            "rule",
            "inet",
            "imdsh_fence",
            "output",
            "handle",
            &handle,
        ],
    );
    let check = fence(host, &["--uid", "4242", "--check"]);
    assert_status(&check, 1, "missing: the rule refusing 169.254.169.254");
    assert_status(
        &fence(host, &["--uid", "4242", "--apply"]),
        0,
        "fenced uid 4242",
    );
    assert_status(&fence(host, &["--uid", "4242", "--check"]), 0, "is fenced");
    assert_status(
        &fence(host, &["--uid", "4242", "--remove"]),
        0,
        "no longer fenced",
    );

    let ipt = ["--uid", "4242", "--firewall", "iptables"];
    assert_status(
        &fence(host, &[&ipt[..], &["--apply"]].concat()),
        0,
        "fenced uid 4242",
    );
    listing(
        host,
        "iptables",
        &["-w", "-D", "OUTPUT", "-j", "imdsh-fence"],
    );
    let check = fence(host, &[&ipt[..], &["--check"]].concat());
    assert_status(
        &check,
        1,
        "missing: iptables's jump from OUTPUT to imdsh-fence",
    );
    assert_status(
        &fence(host, &[&ipt[..], &["--apply"]].concat()),
        0,
        "fenced uid 4242",
    );
    assert_status(
        &fence(host, &[&ipt[..], &["--check"]].concat()),
        0,
        "is fenced",
    );
    // Two users: removing one keeps the other's fence.
    assert_status(
        &fence(
            host,
            &["--uid", "4343", "--firewall", "iptables", "--apply"],
        ),
        0,
        "fenced uid 4343",
    );
    assert_status(
        &fence(host, &[&ipt[..], &["--remove"]].concat()),
        0,
        "no longer fenced",
    );
    assert_status(
        &fence(
            host,
            &["--uid", "4343", "--firewall", "iptables", "--check"],
        ),
        0,
        "is fenced",
    );
    assert_status(
        &fence(
            host,
            &["--uid", "4343", "--firewall", "iptables", "--remove"],
        ),
        0,
        "no longer fenced",
    );
    untouched();
}

/// The docker backend: rootless Podman as the instance's user `imdsh`, behind slirp4netns
/// and pasta; the relay and the fence in the instance's network namespace.
#[test]
fn docker_rootless_presets_get_the_role_only_through_a_grant_once_fenced() {
    use imds_harness::backend::docker::instance::DockerInstance;
    use imds_harness::backend::docker::leaf::DockerLeaf;

    if !require(
        "fence_docker",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::AwsCli,
            Requirement::SdkClients,
            Requirement::Docker,
        ],
    ) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let lab = imds_e2e::docker::lab(&runtime);
    let instance = DockerInstance::start(&lab.docker, &lab.images, with_deploy_role()).unwrap();
    assert_eq!(instance.mock().options().hop_limit.get(), 1);
    let dir = tempfile::Builder::new()
        .prefix("imdsh-fence-test-")
        .tempdir()
        .unwrap();
    let env = ClientEnv::new(dir.path(), IMDS_URL);
    let relay = RelayProcess::start(
        instance.host_ns(),
        dir.path(),
        &env,
        &["--sts-endpoint", STS_URL],
    );
    for (topology, firewall) in [
        ("podman-rootless", &[][..]),
        ("podman-rootless-pasta", &["--firewall", "iptables"][..]),
    ] {
        let leaf = DockerLeaf::realise(&instance, &Topology::parse(topology).unwrap(), &lab.tools)
            .unwrap();
        let what = format!("docker {topology}");
        let place = Place {
            what: &what,
            host: instance.host_ns(),
            leaf: &leaf,
            rust_sdk: None,
            env: &env,
            relay: &relay,
        };
        fence_and_serve(&place, ROOTLESS_UID, firewall, &|| ());
    }
    let log = relay.stop();
    assert!(log.contains("200 to "), "{log}");
}
