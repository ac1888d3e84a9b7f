//! Scoped grants of `imds-shim relay` (issue 20): the relay assumes the grant's role with STS
//! `AssumeRole` (the mock's, signed with the instance role's credentials from IMDS on the host)
//! and caches the session per grant; the token in a file; refusals of bad input.
//!
//! Each test runs a simulated instance of the netns backend at hop limit 1, the relay in its
//! host namespace, the clients at the leaf (see `relay_sim`).

mod relay_sim;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::{Duration, Instant, SystemTime};

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

/// How many fetches hit one grant at once.
const CONCURRENT: usize = 1000;

/// Limits wide enough for [`CONCURRENT`] fetches from one address at once.
const WIDE: [&str; 10] = [
    "--sts-endpoint",
    STS_URL,
    "--rate",
    "100000",
    "--burst",
    "100000",
    "--max-connections",
    "4096",
    "--max-connections-per-client",
    "4096",
];

/// The status line and body of a GET of `path` from the leaf, `n` at once, each on a
/// connection of its own; `(status code, body)` per fetch, an error as code 0.
fn fetch_at_once(sim: &Sim, path: &str, n: usize) -> Vec<(u16, String)> {
    let path = path.to_owned();
    sim.site
        .leaf()
        .run_in(move || {
            // Threads made here are in the leaf's namespace too.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (path, start) = (path.clone(), start.clone());
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                            let mut s = tokio::net::TcpStream::connect(RELAY_ADDR).await?;
                            start.wait().await;
                            let req = format!(
                                "GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n"
                            );
                            s.write_all(req.as_bytes()).await?;
                            let mut out = String::new();
                            tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out))
                                .await
                                .map_err(std::io::Error::other)??;
                            Ok::<_, std::io::Error>(out)
                        })
                    })
                    .collect();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(match task.await.unwrap() {
                        Ok(out) => {
                            let code = out
                                .split_whitespace()
                                .nth(1)
                                .and_then(|c| c.parse().ok())
                                .unwrap_or(0);
                            let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
                            (code, body)
                        }
                        Err(e) => (0, e.to_string()),
                    });
                }
                results
            })
        })
        .unwrap()
}

/// 1,000 fetches at once on one scoped grant: one AssumeRole, at grant time. After a restart
/// with `--state` (the session cache empty) 1,000 more at once: one more AssumeRole, all served
/// the same session. `relay list` shows the role, the session and its expiry.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_fetches_at_once_cost_one_assume_role() {
    if !require("relay_scoped_single_flight", NEEDS) {
        return;
    }
    let sim = sim("docker-run", scoped_config());
    let state = sim.state();
    let mut args = WIDE.to_vec();
    args.extend_from_slice(&["--state", state.to_str().unwrap()]);
    let first = sim.start_relay("first", &args);
    let grant = sim.scoped_grant("single flight", &["--duration", "30m"]);
    let path = grant
        .var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .to_owned();
    assert_eq!(sim.site.mock().events().assume_role, 1);

    let keys = |results: &[(u16, String)]| {
        let mut keys: Vec<String> = results
            .iter()
            .map(|(code, body)| {
                assert_eq!(*code, 200, "{body}");
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                v["AccessKeyId"].as_str().unwrap().to_owned()
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let results = fetch_at_once(&sim, &path, CONCURRENT);
    assert_eq!(results.len(), CONCURRENT);
    assert_eq!(keys(&results).len(), 1, "one session served");
    assert_eq!(
        sim.site.mock().events().assume_role,
        1,
        "no AssumeRole per fetch"
    );

    // The session lasts what was asked (30 minutes), and `list` says until when.
    let sessions = sim.site.mock().assumed_sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_name, "single-flight");
    assert_eq!(sessions[0].role, "deploy");
    let list = sim.relay_cmd(&["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = &listed[0];
    assert_eq!(row["role"], "deploy", "{listed}");
    assert_eq!(row["session"], "single-flight");
    let expires = row["credentials_expire"].as_str().unwrap();
    let expires = humantime_secs(expires);
    let lifetime = expires.duration_since(SystemTime::now()).unwrap();
    assert!(
        (Duration::from_mins(28)..=Duration::from_mins(30)).contains(&lifetime),
        "{lifetime:?}"
    );
    let table = text(&sim.relay_cmd(&["list"]).stdout);
    assert!(
        table.contains("ROLE") && table.contains("deploy"),
        "{table}"
    );

    // Restarted: the grant is kept, its session is not; 1,000 at once cause one AssumeRole.
    first.stop();
    let second = sim.start_relay("second", &args);
    let results = fetch_at_once(&sim, &path, CONCURRENT);
    assert_eq!(
        keys(&results).len(),
        1,
        "one session served after the restart"
    );
    assert_eq!(sim.site.mock().events().assume_role, 2);
    let log = second.stop();
    assert_eq!(log.matches("assumed arn:aws:iam::").count(), 1, "{log}");
    for secret in grant.secrets() {
        assert!(!log.contains(&secret));
    }
}

/// RFC 3339 `2026-11-29T12:00:00Z` as a time.
fn humantime_secs(text: &str) -> SystemTime {
    let t =
        aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::DateTime)
            .unwrap();
    SystemTime::try_from(t).unwrap()
}

/// Sessions of 4 s (the mock caps them): a build fetching every 100 ms for 14 s, and the Rust
/// SDK calling STS every 2 s, never fail; the relay refreshes the session before it expires,
/// once per refresh, not once per fetch.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_refresh_across_expiry_without_a_failed_fetch() {
    if !require("relay_scoped_refresh", NEEDS) {
        return;
    }
    let mut config = scoped_config();
    config.iam.session_lifetime = Some(Duration::from_secs(4));
    let sim = sim("earthly-run", config);
    let relay = sim.start_relay("relay", &WIDE);
    let grant = sim.scoped_grant("short sessions", &[]);
    let path = grant
        .var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .to_owned();

    let (fetches, sdk) = std::thread::scope(|scope| {
        let sdk = scope.spawn(|| sim.rust_sdk(&grant.full(), 7, Duration::from_secs(2)));
        let mut fetches = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(14) {
            let out = sim
                .get_within(&path, Duration::from_secs(2))
                .unwrap_or_default();
            fetches.push((SystemTime::now(), out));
            std::thread::sleep(Duration::from_millis(100));
        }
        (fetches, sdk.join().unwrap())
    });
    assert_eq!(
        sdk,
        vec![format!("ARN {}", scoped_arn("short-sessions")); 7],
        "{}",
        relay.log()
    );
    let mut keys = std::collections::BTreeSet::new();
    for (at, out) in &fetches {
        assert!(out.starts_with("HTTP/1.1 200"), "{out}\n{}", relay.log());
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let expires = humantime_secs(body["Expiration"].as_str().unwrap());
        assert!(expires > *at, "served expired credentials: {body}");
        keys.insert(body["AccessKeyId"].as_str().unwrap().to_owned());
    }
    // 14 s of 4 s sessions refreshed at half-life: about 7 sessions, never one per fetch.
    let assumed = sim.site.mock().events().assume_role;
    assert!(
        (4..=12).contains(&assumed),
        "{assumed} AssumeRole calls for {} fetches",
        fetches.len()
    );
    assert!(keys.len() >= 3, "{keys:?}");
    relay.stop();
}

/// Bad input at `relay grant` and, bypassing its checks, at the control socket: an unknown
/// role, a malformed policy, a session name out of range, a duration over the cap, neither
/// `--role-arn` nor `--instance-role`, a token file in a directory its owner cannot enter.
/// Each is a clear error naming what was wrong, and no grant is kept.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_clear_error_and_no_grant_is_kept() {
    if !require("relay_scoped_bad_input", NEEDS) {
        return;
    }
    let sim = sim("host", scoped_config());
    let relay = sim.start_relay("relay", &["--sts-endpoint", STS_URL]);
    let dir = sim.dir.path();
    let policy = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let grammar = policy(
        "grammar.json",
        r#"{"Version":"2012-10-17","Statement":"nope"}"#,
    );
    let not_json = policy("not.json", "{ Allow everything");
    let closed = dir.join("closed");
    fs::create_dir(&closed).unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
    let token = closed.join("token");
    let unknown = "arn:aws:iam::123456789012:role/nope";
    let long_name = "s".repeat(65);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--role-arn", unknown],
            "STS refused AssumeRole of arn:aws:iam::123456789012:role/nope: AccessDenied",
        ),
        (
            vec!["--role-arn", DEPLOY_ARN, "--policy", &grammar],
            "MalformedPolicyDocument",
        ),
        (
            vec!["--role-arn", DEPLOY_ARN, "--policy", &not_json],
            "--policy: the session policy is not JSON",
        ),
        (
            vec!["--role-arn", DEPLOY_ARN, "--session-name", "x"],
            "--session-name \"x\": a session name is 2 to 64 characters",
        ),
        (
            vec!["--role-arn", DEPLOY_ARN, "--session-name", &long_name],
            "a session name is 2 to 64 characters",
        ),
        (
            vec!["--role-arn", DEPLOY_ARN, "--duration", "2h"],
            "--duration 7200 s: a session assumed with the instance role's credentials lasts 15 \
             minutes to 1 hour",
        ),
        (vec!["--label", "neither"], "--role-arn ARN"),
        (
            vec!["--instance-role", "--policy", &not_json],
            "--instance-role serves the instance role itself: --policy needs --role-arn",
        ),
        (
            vec![
                "--instance-role",
                "--token-file",
                token.to_str().unwrap(),
                "--owner",
                "nobody",
            ],
            "user nobody (uid 65534) cannot enter directory",
        ),
    ];
    for (args, said) in &cases {
        let mut all = vec!["grant"];
        all.extend_from_slice(args);
        let out = sim.relay_cmd(&all);
        assert!(!out.status.success(), "{args:?}: {}", show(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed: {}", show(&out));
    }
    assert!(text(&sim.relay_cmd(&["grant", "--label", "x"]).stderr)
        .contains("--instance-role (the instance role itself)"));
    assert!(!token.exists());

    // The relay checks what the control socket says, whatever the client checked.
    let control = dir.join("relay.sock");
    // The reply; a line over the relay's 64 KiB is answered before it is read whole, and the
    // rest of it may meet a closed socket (a reset): `None`.
    let ask = |line: String| {
        let mut s = std::os::unix::net::UnixStream::connect(&control).unwrap();
        let sent = s
            .write_all(line.as_bytes())
            .and_then(|()| s.write_all(b"\n"));
        let mut out = String::new();
        match (sent, s.read_to_string(&mut out)) {
            (Ok(()), Ok(_)) => Some(out),
            _ if !out.is_empty() => Some(out),
            _ => None,
        }
    };
    let scoped = |fields: &str| {
        format!(
            r#"{{"op":"grant","ttl_secs":600,"label":"raw","scope":{{"assumed":{{"role_arn":"{DEPLOY_ARN}",{fields}}}}}}}"#
        )
    };
    for (line, said) in [
        (
            scoped(r#""session_name":"x","duration_secs":900"#),
            "a session name is 2 to 64",
        ),
        (
            scoped(r#""session_name":"ok-name","duration_secs":86400"#),
            "--duration 86400 s",
        ),
        (
            scoped(r#""session_name":"ok-name","duration_secs":900,"policy":"[1]""#),
            "not a JSON object",
        ),
        (
            scoped(r#""session_name":"ok name","duration_secs":900"#),
            "a session name is 2 to 64",
        ),
        (
            r#"{"op":"grant","ttl_secs":600,"label":"raw"}"#.to_owned(),
            "--role-arn ARN",
        ),
        (
            r#"{"op":"grant","ttl_secs":600,"label":"raw","scope":{"assumed":{"role_arn":"arn:aws:iam::1:role/x","session_name":"ok-name","duration_secs":900}}}"#
                .to_owned(),
            "is not a role ARN",
        ),
        (
            scoped(&format!(
                r#""session_name":"ok-name","duration_secs":900,"policy":"{}""#,
                "x".repeat(70_000)
            )),
            "not a control request",
        ),
    ] {
        let oversized = line.len() > 64 * 1024;
        match ask(line) {
            Some(reply) => {
                assert!(reply.contains(r#""reply":"error""#), "{reply}");
                assert!(reply.contains(said), "{said}: {reply}");
            }
            None => assert!(oversized, "{said}: no reply"),
        }
    }
    // A line that is not UTF-8: the reason, not a closed socket.
    let mut raw = std::os::unix::net::UnixStream::connect(&control).unwrap();
    raw.write_all(b"{\"op\":\"li\xffst\"}\n").unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("not a control request"), "{reply:?}");

    // Nothing was kept, and nothing assumed but what STS refused.
    let listed = sim.relay_cmd(&["list", "--json"]);
    assert_eq!(text(&listed.stdout).trim(), "[]", "{}", show(&listed));
    assert_eq!(sim.site.mock().events().assume_role, 0);
    // The relay still grants.
    let ok = sim.scoped_grant("after bad input", &["--session-name", "fine-name"]);
    assert!(!ok.id.is_empty());
    let log = relay.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// `--token-file PATH --owner nobody`: the token in a file of mode 0600 owned by nobody, the
/// environment names it (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) and holds no secret; the
/// Rust SDK reads it. Which of the other clients do is recorded in [`TOKEN_FILE_CLIENTS`].
#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_belongs_to_its_owner_and_the_rust_sdk_reads_it() {
    if !require("relay_scoped_token_file", PRESET_NEEDS) {
        return;
    }
    let sim = sim("docker-run", scoped_config());
    let relay = sim.start_relay("relay", &["--sts-endpoint", STS_URL]);
    let open = sim.dir.path().join("tokens");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(sim.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o711)).unwrap();
    let token = open.join("build.token");
    let grant = sim.scoped_grant(
        "token file",
        &["--token-file", token.to_str().unwrap(), "--owner", "nobody"],
    );
    let names: Vec<&str> = grant.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
        ]
    );
    let meta = fs::metadata(&token).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 65534, "owned by nobody");
    let secret = fs::read_to_string(&token).unwrap();
    assert!(secret.starts_with(&grant.id), "the token is the grant's");

    let vars: Vec<(&str, &str)> = grant
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let arn = scoped_arn("token-file");
    let sdk = sim.rust_sdk(&vars, 1, Duration::ZERO);
    assert_eq!(sdk, [format!("ARN {arn}")]);

    let mut got = Vec::new();
    let out = sim.cli(&vars);
    got.push(("cli", cli_arn(&out).as_deref() == Some(arn.as_str())));
    for &program in SdkProgram::VARIANTS {
        let path = program.prepare().unwrap();
        let env = vars.iter().fold(sim.env(), |env, (k, v)| env.with(k, v));
        let out = run_in(
            &env,
            sim.site.leaf(),
            &path,
            &[imds_harness::backend::endpoints::STS_URL],
        );
        got.push((
            program.file_name(),
            cli_arn(&out).as_deref() == Some(arn.as_str()),
        ));
    }
    assert_eq!(got, TOKEN_FILE_CLIENTS, "{}", relay.log());
    let log = relay.stop();
    assert!(!log.contains(secret.split_once('.').unwrap().1));
}

/// `--token-file` in a directory whose POSIX ACL says more than its mode: the kernel's answer
/// for the owner counts. A directory of mode 0700 whose ACL lets nobody search it takes nobody's
/// token file, which nobody then reads; one of mode 0755 whose ACL denies nobody is refused,
/// the error says there is an ACL, and no grant is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_directory_is_judged_with_its_acl() {
    let needs = [NEEDS, &[Requirement::AclTools]].concat();
    if !require("relay_scoped_token_file_acl", &needs) {
        return;
    }
    let sim = sim("host", MockConfig::default());
    let relay = sim.start_relay("relay", &[]);
    fs::set_permissions(sim.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let acl_dir = |name: &str, mode: u32, entry: &str| {
        let dir = sim.dir.path().join(name);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        let out = duct::cmd!("setfacl", "-m", entry, &dir)
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap();
        assert!(out.status.success(), "setfacl -m {entry}: {}", show(&out));
        dir
    };
    let as_nobody = |args: &[&str]| {
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups"];
        all.extend_from_slice(args);
        duct::cmd("setpriv", &all)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    };

    let allowed = acl_dir("allowed", 0o700, "u:nobody:x");
    let token = allowed.join("build.token");
    let token = token.to_str().unwrap();
    let grant = sim.grant(&[
        "--instance-role",
        "--label",
        "acl-allowed",
        "--token-file",
        token,
        "--owner",
        "nobody",
    ]);
    let read = as_nobody(&["cat", token]);
    assert!(read.status.success(), "{}", show(&read));
    assert!(
        text(&read.stdout).starts_with(&grant.id),
        "nobody reads the token"
    );

    let denied = acl_dir("denied", 0o755, "u:nobody:-");
    let token = denied.join("build.token");
    let out = sim.relay_cmd(&[
        "grant",
        "--instance-role",
        "--label",
        "acl-denied",
        "--token-file",
        token.to_str().unwrap(),
        "--owner",
        "nobody",
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    let said = format!(
        "user nobody (uid 65534) cannot enter directory {} (mode 755, owner uid 0, and an ACL: \
         see getfacl)",
        denied.display()
    );
    assert!(text(&out.stderr).contains(&said), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    assert!(!as_nobody(&["ls", denied.to_str().unwrap()])
        .status
        .success());
    assert!(!token.exists());
    let list = text(&sim.relay_cmd(&["list"]).stdout);
    assert!(
        list.contains("acl-allowed") && !list.contains("acl-denied"),
        "{list}"
    );
    relay.stop();
}

/// Which clients get credentials with `AWS_CONTAINER_CREDENTIALS_FULL_URI` at 169.254.170.2 and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, with the versions Debian 12 ships (docs/relay.md's
/// table): none of them reads the file (AWS CLI 2.9.19, botocore 1.29.27, aws-sdk-go 1.44.133,
/// aws-sdk-go-v2 1.17.1, aws-sdk-core 3.168.1); the Rust SDK, above, does.
const TOKEN_FILE_CLIENTS: [(&str, bool); 5] = [
    ("cli", false),
    ("imdsh-go", false),
    ("imdsh-go-v1", false),
    ("imdsh-ruby", false),
    ("imdsh-boto3", false),
];

/// `--listen` twice: `[fd00:ec2::23]` (EKS Pod Identity's IPv6 address, printed in the full URI
/// as the first) and 169.254.170.2 (the relative URI). At the host and at a leaf three routed
/// layers deep (earthly-with-docker, IPv6 added beside the harness's IPv4, see
/// [`Sim::add_ipv6`]), the Rust SDK gets the scoped session over IPv6, the AWS CLI over IPv4
/// (Debian's botocore takes a full URI at 169.254.170.2 or on loopback only), from one relay;
/// both links go at exit.
#[tokio::test(flavor = "multi_thread")]
async fn one_relay_answers_on_ipv6_and_ipv4() {
    if !require("relay_scoped_listen", NEEDS) {
        return;
    }
    // Where the relay sees each family's requests come from: at the host its own addresses; at
    // the leaf its IPv6 address (nothing masquerades IPv6) and the first layer's IPv4 one.
    let deep = Topology::parse("earthly-with-docker").unwrap();
    for (topology, from_v6, from_v4) in [
        (
            "host",
            "fd00:ec2::23".to_owned(),
            "169.254.170.2".to_owned(),
        ),
        (
            "earthly-with-docker",
            "fd00:1ab:3::2".to_owned(),
            first_hop_address(&deep).to_string(),
        ),
    ] {
        let sim = sim(topology, scoped_config());
        sim.add_ipv6();
        let relay = sim.start_relay(
            "relay",
            &[
                "--sts-endpoint",
                STS_URL,
                "--listen",
                "[fd00:ec2::23]:80",
                "--listen",
                "169.254.170.2:80",
            ],
        );
        let grant = sim.scoped_grant("both families", &[]);
        assert_eq!(
            grant.var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "http://[fd00:ec2::23]/imds-shim/credentials"
        );
        let arn = scoped_arn("both-families");
        let sdk = sim.rust_sdk(&grant.full(), 1, Duration::ZERO);
        assert_eq!(sdk, [format!("ARN {arn}")], "{}", relay.log());
        let out = sim.cli(&grant.relative());
        assert_eq!(
            cli_arn(&out).as_deref(),
            Some(arn.as_str()),
            "{}",
            show(&out)
        );
        let log = relay.stop();
        assert!(
            log.contains(&format!("200 to {from_v6}: ")),
            "{topology}: {log}"
        );
        assert!(
            log.contains(&format!("200 to {from_v4}: ")),
            "{topology}: {log}"
        );
        assert!(log.contains("link imdsh-r6-23"), "{topology}: {log}");
        assert!(!sim.link_exists());
    }
}
