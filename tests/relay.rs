//! `imds-shim relay` on the netns backend: the simulated instance keeps hop limit 1 with tokens
//! required; the relay runs in the EC2 host's namespace (depth 0) and serves the role's
//! credentials at 169.254.170.2 to builds any number of routing hops deeper, through a grant.
//!
//! The clients are Debian's AWS CLI (`/usr/bin/aws`) and the AWS SDK for Rust's default
//! credentials chain (this test binary re-run in the leaf namespace as a child, see
//! [`rust_sdk_child`]), each with nothing but the grant's environment variables.

mod relay_sim;

use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

use imds_e2e::at_once::at_once;
use imds_e2e::bins;
use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::endpoints::STS_URL;
use imds_harness::probe::programs::SdkProgram;
use imds_harness::topology::Topology;
use imds_mock::MockConfig;
use strum::VariantArray;

use relay_sim::*;

/// The SDK side of [`Sim::rust_sdk`], re-run in the leaf.
#[test]
fn rust_sdk_child() {
    relay_sim::rust_sdk_child();
}

/// Every preset, a grant of the instance role (`--instance-role`) and a scoped one (the deploy
/// role narrowed by a session policy that allows GetCallerIdentity and DescribeInstances only):
/// the AWS CLI, the Rust SDK (both forms each) and the Go v2, Go v1, Ruby and boto3 clients
/// get what their grant serves; the scoped session may not raise the hop limit; `relay list`
/// names both; one AssumeRole serves every fetch of the scoped grant.
#[tokio::test(flavor = "multi_thread")]
async fn every_preset_gets_the_role_through_a_grant_at_hop_limit_1() {
    if !require("relay_presets", PRESET_NEEDS) {
        return;
    }
    // The presets at once: each has its own simulated instance, relay and grants, and most
    // of a preset's time is its clients waiting on the network.
    at_once(&Topology::presets(), |topology| {
        let sim = sim(&topology.name(), scoped_config());
        let relay = sim.start_relay("relay", &["--sts-endpoint", STS_URL]);
        let grant = sim.grant(&["--instance-role", "--label", "preset-build"]);
        let scoped = sim.scoped_grant("scoped build", &[]);
        let scoped_arn = scoped_arn("scoped-build");
        let what = format!("{topology} (depth {})", topology.depth());

        // Without a grant: nothing where the place needs more than hop limit 1; behind a
        // user-space stack the place needs 1 and reaches IMDS itself, grant or not.
        if topology.depth() > 0 {
            let out = sim.cli(&[]);
            let reachable = topology.min_hop_limit().get() == 1;
            assert_eq!(
                cli_arn(&out).is_some(),
                reachable,
                "{what}, needs {}, without a grant: {}",
                topology.min_hop_limit(),
                show(&out)
            );
        }

        // Each client once per form, the two grants shared out between the forms.
        for (vars, arn) in [
            (grant.relative(), ARN),
            (scoped.full(), scoped_arn.as_str()),
        ] {
            let out = sim.cli(&vars);
            assert_eq!(
                cli_arn(&out).as_deref(),
                Some(arn),
                "{what}: {}",
                show(&out)
            );
        }
        for (vars, arn) in [
            (scoped.relative(), scoped_arn.as_str()),
            (grant.full(), ARN),
        ] {
            let sdk = sim.rust_sdk(&vars, 1, Duration::ZERO);
            assert_eq!(sdk, [format!("ARN {arn}")], "{what}");
        }
        // The other SDKs the project runs (Go v2, Go v1, Ruby, boto3), with the scoped grant
        // in the relative URI form: aws-sdk-go-v2 1.17.1 takes a full URI only on a loopback
        // host ("invalid endpoint host, \"169.254.170.2\", only loopback hosts are allowed").
        for &program in SdkProgram::VARIANTS {
            let path = program.prepare().unwrap();
            let env = scoped
                .relative()
                .into_iter()
                .fold(sim.env(), |env, (k, v)| env.with(k, v));
            let out = run_in(&env, sim.site.leaf(), &path, &[STS_URL]);
            assert_eq!(
                cli_arn(&out).as_deref(),
                Some(scoped_arn.as_str()),
                "{what}, {program}: {}",
                show(&out)
            );
        }
        // The scoped session may look, not raise the hop limit.
        let out = sim.cli_modify(&scoped.relative());
        assert!(
            !out.status.success() && text(&out.stderr).contains("UnauthorizedOperation"),
            "{what}: {}",
            show(&out)
        );
        let list = sim.relay_cmd(&["list"]);
        let list = text(&list.stdout);
        assert!(row(&list, &grant.id).contains("instance role"), "{list}");
        assert!(row(&list, &scoped.id).contains("deploy"), "{list}");
        assert!(row(&list, &scoped.id).contains("scoped-build"), "{list}");

        // The instance role's credentials came from IMDSv2 at depth 0; the hop limit is
        // still 1; one AssumeRole (at grant time) served the scoped grant's every fetch.
        let mock = sim.site.mock();
        assert_eq!(mock.options().hop_limit.get(), 1, "{what}");
        let events = mock.events();
        assert!(events.identity_v2 >= 2, "{what}");
        assert_eq!(
            events.identity_role_session,
            2 + SdkProgram::VARIANTS.len() as u64,
            "{what}"
        );
        assert_eq!(events.assume_role, 1, "{what}");
        let sessions = mock.assumed_sessions();
        assert_eq!(sessions[0].session_name, "scoped-build");
        let log = relay.stop();
        let served = 5 + SdkProgram::VARIANTS.len();
        assert_eq!(log.matches("200 to ").count(), served, "{what}: {log}");
        assert!(
            log.contains(&format!(
                "grant {} (\"preset-build\"), instance role",
                grant.id
            )),
            "{log}"
        );
        assert!(!sim.link_exists(), "{what}: the relay's link is left");
    });
}

/// At the deepest preset: no grant, a guessed, an unknown, a revoked or an expired one get
/// nothing, and the relay's log says why, without a secret.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_grant_builds_get_nothing_and_the_log_says_why() {
    if !require("relay_refusals", NEEDS) {
        return;
    }
    let deepest = Topology::presets()
        .into_iter()
        .max_by_key(Topology::min_hop_limit)
        .unwrap();
    let sim = sim(&deepest.name(), MockConfig::default());
    let relay = sim.start_relay("relay", &[]);
    let source = first_hop_address(&deepest);

    // Without a grant, the CLI finds nothing: IMDS is out of reach at hop limit 1.
    let out = sim.cli(&[]);
    assert_eq!(out.status.code(), Some(253), "{}", show(&out));
    assert!(text(&out.stderr).contains("Unable to locate credentials"));

    // The full URI without a token.
    let out = sim.cli(&[(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.2/imds-shim/credentials",
    )]);
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    assert!(relay.log().contains("403 from 172."), "{}", relay.log());
    assert!(relay.log().contains("no Authorization header"));

    let good = sim.grant(&["--instance-role", "--label", "the-good-one"]);
    let guessed = format!("/imds-shim/credentials/{}.{}", good.id, "0".repeat(64));
    let out = sim.cli(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", &guessed)]);
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    assert!(relay.log().contains(&format!(
        "wrong secret for grant {} (\"the-good-one\")",
        good.id
    )));
    let unknown = format!(
        "/imds-shim/credentials/{}.{}",
        "ab".repeat(8),
        "0".repeat(64)
    );
    let out = sim.cli(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", &unknown)]);
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    assert!(relay
        .log()
        .contains(&format!("unknown grant {}", "ab".repeat(8))));

    // Revoked: the CLI and the SDK get nothing.
    let revoked = sim.grant(&["--instance-role", "--label", "revoked-build"]);
    assert!(cli_arn(&sim.cli(&revoked.relative())).is_some());
    let out = sim.relay_cmd(&["revoke", &revoked.id]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sim.cli(&revoked.relative());
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    let sdk = sim.rust_sdk(&revoked.full(), 1, Duration::ZERO);
    assert!(sdk[0].starts_with("ERROR "), "{sdk:?}");
    assert!(
        relay.log().contains(&format!(
            "403 from {source}: grant {} (\"revoked-build\") was revoked",
            revoked.id
        )),
        "{}",
        relay.log()
    );

    // Expired.
    let expired = sim.grant(&["--instance-role", "--ttl", "1s", "--label", "short"]);
    std::thread::sleep(Duration::from_millis(2100));
    let out = sim.cli(&expired.full());
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    assert!(relay
        .log()
        .contains(&format!("grant {} (\"short\") expired", expired.id)));

    // Nothing but the credentials path: no IMDS path, no other method.
    let imds_path = sim.raw(
        "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n".into(),
    );
    assert!(imds_path.starts_with("HTTP/1.1 404"), "{imds_path}");
    let post = sim.raw(format!(
        "POST {} HTTP/1.1\r\nHost: 169.254.170.2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        good.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    ));
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let huge = sim.raw(format!(
        "GET /imds-shim/credentials HTTP/1.1\r\nHost: 169.254.170.2\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20_000)
    ));
    assert!(
        huge.is_empty() || huge.starts_with("HTTP/1.1 431"),
        "{huge}"
    );

    // The good grant still works; the JSON is the container credentials document.
    let ok = sim.raw(format!(
        "GET {} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n",
        good.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    ));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let body: serde_json::Value =
        serde_json::from_str(ok.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    for key in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(body[key].is_string(), "{key}: {body}");
    }

    // A second relay on the same address refuses to start.
    let second = sim.dir.path().join("second.sock");
    let out = sim.env().apply(sim.site.host().exec(
        bins::shim(),
        ["relay", "--control", second.to_str().unwrap()],
    ));
    let out = tokio::task::block_in_place(|| {
        out.stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("169.254.170.2:80 is already served"),
        "{}",
        show(&out)
    );
    assert!(
        !second.exists(),
        "the refused relay left its control socket"
    );

    // No secret in the log: neither the grants' nor the role's.
    let log = relay.stop();
    for grant in [&good, &revoked, &expired] {
        for secret in grant.secrets() {
            assert!(
                !log.contains(&secret),
                "a grant's secret in the log:\n{log}"
            );
        }
    }
    for key in ["SecretAccessKey", "Token"] {
        assert!(
            !log.contains(body[key].as_str().unwrap()),
            "{key} in the log"
        );
    }
    assert!(!sim.link_exists());
}

/// A long build with one SDK client: the role's credentials (8 s lifetime) expire and are
/// refreshed several times, and the relay is restarted in the middle with `--state`: the grant
/// survives, a revoked one stays revoked.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_refresh_across_expiry_and_grants_survive_a_restart() {
    if !require("relay_refresh_restart", NEEDS) {
        return;
    }
    let config = MockConfig {
        credential_lifetime: Duration::from_secs(8),
        ..MockConfig::default()
    };
    let sim = sim("earthly-run", config);
    let state = sim.state();
    let state_arg = ["--state", state.to_str().unwrap()];
    let first = sim.start_relay("first", &state_arg);
    let grant = sim.grant(&["--instance-role", "--label", "long-build"]);
    let revoked = sim.grant(&["--instance-role", "--label", "revoked-before-restart"]);
    assert!(sim.relay_cmd(&["revoke", &revoked.id]).status.success());
    let mode = fs::metadata(&state).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // The build: 6 calls 4 s apart (20 s, over two credential lifetimes), with one client.
    let build = std::thread::scope(|scope| {
        let build = scope.spawn(|| sim.rust_sdk(&grant.relative(), 6, Duration::from_secs(4)));
        std::thread::sleep(Duration::from_secs(6));
        let first_log = first.stop();
        assert!(!sim.link_exists());
        let second = sim.start_relay("second", &state_arg);
        (build.join().unwrap(), first_log, second)
    });
    let (calls, first_log, second) = build;
    assert_eq!(
        calls,
        vec![format!("ARN {ARN}"); 6],
        "{first_log}\n{}",
        second.log()
    );
    assert!(second.log().contains("2 grant(s) from the state file"));

    // The revoked grant stays revoked; the CLI gets the role with the kept one.
    let out = sim.cli(&revoked.relative());
    assert!(cli_arn(&out).is_none(), "{}", show(&out));
    let out = sim.cli(&grant.full());
    assert_eq!(cli_arn(&out).as_deref(), Some(ARN), "{}", show(&out));
    let list = sim.relay_cmd(&["list"]);
    assert!(
        text(&list.stdout).contains(&format!("{}  revoked", revoked.id)),
        "{}",
        show(&list)
    );

    // Several credential sets were served, each fetched from IMDS on the host.
    let second_log = second.stop();
    let both = format!("{first_log}{second_log}");
    assert!(both.contains("refreshed the role's credentials"), "{both}");
    let mut keys: Vec<&str> = both
        .lines()
        .filter(|l| l.contains("200 to "))
        .filter_map(|l| l.rsplit(": ").next())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(
        keys.len() >= 2,
        "one credential set served throughout: {both}"
    );
}

/// The limits: a connection beyond `--max-connections` closes the oldest idle one; a grant over its
/// rate limit gets 429 and a log line, other grants are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn connections_and_requests_per_grant_are_bounded() {
    if !require("relay_limits", &[Requirement::Root, Requirement::NetTools]) {
        return;
    }
    let sim = sim("docker-run", MockConfig::default());
    let source = first_hop_address(&Topology::parse("docker-run").unwrap());
    let limits = ["--max-connections", "2", "--rate", "0.2", "--burst", "2"];
    let relay = sim.start_relay("relay", &limits);
    let a = sim.grant(&["--instance-role", "--label", "a"]);
    let b = sim.grant(&["--instance-role", "--label", "b"]);
    let a_path = a.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").to_owned();
    let b_path = b.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").to_owned();
    let status = |r: Option<String>| r.map(|r| r.lines().next().unwrap_or("").to_owned());

    // Two idle connections take both places: a third is served at once, and the oldest idle
    // one is closed to make room for it.
    let connect = || {
        sim.site
            .leaf()
            .run_in(|| TcpStream::connect_timeout(&RELAY_ADDR, Duration::from_secs(2)))
            .unwrap()
            .unwrap()
    };
    let mut idle = [connect(), connect()];
    std::thread::sleep(Duration::from_millis(200));
    let ok = status(sim.get_within(&a_path, Duration::from_secs(1)));
    assert_eq!(ok.as_deref(), Some("HTTP/1.1 200 OK"));
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(
        idle[0].read(&mut [0; 1]).unwrap(),
        0,
        "the oldest was closed"
    );
    drop(idle);

    // Grant a's burst of 2 is soon used up (the waiting request may have taken one); then
    // 429, while grant b is served.
    let statuses: Vec<Option<String>> = (0..3)
        .map(|_| status(sim.get_within(&a_path, Duration::from_secs(5))))
        .collect();
    let too_many = Some("HTTP/1.1 429 Too Many Requests".to_owned());
    assert!(statuses.contains(&too_many), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&too_many), "{statuses:?}");
    let other = status(sim.get_within(&b_path, Duration::from_secs(5)));
    assert_eq!(other.as_deref(), Some("HTTP/1.1 200 OK"));
    let log = relay.stop();
    assert!(!sim.link_exists());

    // A relay killed with SIGKILL leaves its link; the next one replaces it.
    let killed = sim.start_relay("killed", &[]);
    killed.kill();
    assert!(sim.link_exists());
    let next = sim.start_relay("next", &[]);
    let c = sim.grant(&["--instance-role"]);
    let c_path = c.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let ok = status(sim.get_within(c_path, Duration::from_secs(5)));
    assert_eq!(ok.as_deref(), Some("HTTP/1.1 200 OK"));
    next.stop();
    assert!(
        log.contains(&format!(
            "429 from {source}: grant {} (\"a\") is over its rate limit",
            a.id
        )),
        "{log}"
    );
}

/// `imds-shim <args>` in this namespace, IMDS at a closed loopback port, with `env` added.
fn shim_here(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = duct::cmd(bins::shim(), args)
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
}

/// With no credentials from IMDS the relay does not start, and says why (it stops before it
/// binds or adds anything; it listens on loopback here anyway, which needs no link).
#[test]
fn no_credentials_from_imds_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("c.sock");
    let control = control.to_str().unwrap();
    for env in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_REGION", "us-east-1"),
    ] {
        let relay = ["relay", "--listen", "127.0.0.1:9", "--control", control];
        let out = shim_here(&relay, &[env]);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            text(&out.stderr).contains("IMDS on this host gave no credentials"),
            "{}",
            show(&out)
        );
        assert!(!dir.path().join("c.sock").exists());
    }
    // Without a relay, the control commands say so.
    let out = shim_here(&["relay", "list", "--control", control], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("is `imds-shim relay` running"));
}
