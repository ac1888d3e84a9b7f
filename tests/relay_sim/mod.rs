//! What the relay's netns tests share (`mod relay_sim;` in `tests/relay.rs` and
//! `tests/relay_scoped.rs`): a simulated instance at hop limit 1, the relay started in its
//! host namespace, grants, and the clients run at the leaf: Debian's AWS CLI and the AWS SDK for
//! Rust's default chain (the test binary re-run in the leaf as a child, [`rust_sdk_child`]).
#![allow(
    dead_code,
    reason = "each test file that includes this module uses a part of it"
)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use imds_e2e::bins;
use imds_e2e::output::{show, text};
/// A running `imds-shim relay`, killed on drop if still running.
pub(crate) use imds_e2e::relay_process::RelayProcess as Relay;
use imds_e2e::require::Requirement;
use imds_harness::backend::endpoints::{EC2_URL, IMDS_URL, STS_URL};
use imds_harness::backend::netns::{Namespace, NetnsSite};
use imds_harness::probe::env::ClientEnv;
use imds_harness::topology::{Layer, Topology};
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};

pub(crate) const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
];
/// The preset test also runs the other SDKs' clients.
pub(crate) const PRESET_NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
    Requirement::SdkClients,
];
pub(crate) const ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/imds-harness-build-role/i-0123456789abcdef0";
pub(crate) const LINK: &str = "imdsh-relay0";
/// The role scoped grants assume: the mock declares it (see [`scoped_config`]).
pub(crate) const DEPLOY_ARN: &str = "arn:aws:iam::123456789012:role/deploy";
/// The instance the mock serves.
pub(crate) const INSTANCE_ID: &str = "i-0123456789abcdef0";
/// The session policy of issue 20: an identity and a look, nothing else.
pub(crate) const LOOK_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Action":["sts:GetCallerIdentity","ec2:DescribeInstances"],"Resource":"*"}]}"#;

/// The AWS CLI's arguments that raise the mock instance's hop limit to 5.
pub(crate) const MODIFY_HOP_LIMIT: [&str; 8] = [
    "ec2",
    "modify-instance-metadata-options",
    "--instance-id",
    INSTANCE_ID,
    "--http-put-response-hop-limit",
    "5",
    "--endpoint-url",
    EC2_URL,
];

/// What GetCallerIdentity says for a session `session` of the deploy role.
pub(crate) fn scoped_arn(session: &str) -> String {
    format!("arn:aws:sts::123456789012:assumed-role/deploy/{session}")
}

/// A mock whose account has the role `deploy` (which may do everything) to assume.
pub(crate) fn scoped_config() -> MockConfig {
    let mut config = MockConfig::default();
    config.iam.assumable_roles.insert("deploy".into(), None);
    config
}
pub(crate) const RELAY_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(169, 254, 170, 2),
    80,
));
/// Set in the child's environment: run the SDK calls of [`rust_sdk_child`].
pub(crate) const CHILD: &str = "IMDSH_RELAY_SDK_CHILD";
/// How many calls the child makes, and the pause between them in milliseconds.
pub(crate) const CHILD_CALLS: &str = "IMDSH_RELAY_SDK_CALLS";
pub(crate) const CHILD_PAUSE_MS: &str = "IMDSH_RELAY_SDK_PAUSE_MS";
/// Starts each line of the child's results (libtest writes its own text around them).
pub(crate) const MARK: &str = "@@relay-sdk@@ ";

/// A simulated instance at hop limit 1, tokens required, and a scratch directory.
pub(crate) struct Sim {
    pub(crate) site: NetnsSite,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn sim(topology: &str, config: MockConfig) -> Sim {
    let site = NetnsSite::start(&Topology::parse(topology).unwrap(), config).unwrap();
    site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(1).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-test-")
        .tempdir()
        .unwrap();
    Sim { site, dir }
}

/// The address the relay sees a build's requests come from: the outermost layer's, as every
/// routed layer masquerades what it forwards.
pub(crate) fn first_hop_address(topology: &Topology) -> std::net::Ipv4Addr {
    match topology.layers().first() {
        Some(Layer::Routed(bridge)) => bridge.member(),
        other => panic!("{topology}: the outermost layer is {other:?}, not a routed one"),
    }
}

impl Sim {
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("grants.json")
    }

    /// A client environment: IMDS and STS of the mock, nothing else.
    pub(crate) fn env(&self) -> ClientEnv {
        ClientEnv::new(self.dir.path(), IMDS_URL).with("AWS_ENDPOINT_URL_STS", STS_URL)
    }

    /// Starts the relay in the host namespace; waits until it serves.
    pub(crate) fn start_relay(&self, name: &str, extra: &[&str]) -> Relay {
        start_relay(self.site.host(), self.dir.path(), &self.env(), name, extra)
    }

    pub(crate) fn relay_cmd(&self, args: &[&str]) -> Output {
        relay_cmd(self.dir.path(), args)
    }

    pub(crate) fn grant(&self, extra: &[&str]) -> Grant {
        grant(self.dir.path(), extra)
    }

    /// A grant of the deploy role narrowed by [`LOOK_ONLY`], labelled `label` (the session
    /// name), with `extra` arguments.
    pub(crate) fn scoped_grant(&self, label: &str, extra: &[&str]) -> Grant {
        let policy = self.dir.path().join("look-only.json");
        fs::write(&policy, LOOK_ONLY).unwrap();
        let mut args = vec![
            "--role-arn",
            DEPLOY_ARN,
            "--policy",
            policy.to_str().unwrap(),
            "--label",
            label,
        ];
        args.extend_from_slice(extra);
        grant(self.dir.path(), &args)
    }

    /// `aws ec2 modify-instance-metadata-options` raising the hop limit to 5, in the leaf
    /// with `vars` added.
    pub(crate) fn cli_modify(&self, vars: &[(&str, &str)]) -> Output {
        self.aws(vars, &MODIFY_HOP_LIMIT)
    }

    /// `aws sts get-caller-identity` in the leaf with `vars` added.
    pub(crate) fn cli(&self, vars: &[(&str, &str)]) -> Output {
        self.aws(
            vars,
            &[
                "sts",
                "get-caller-identity",
                "--output",
                "json",
                "--endpoint-url",
                STS_URL,
            ],
        )
    }

    /// The AWS CLI with `args` in the leaf with `vars` added.
    fn aws(&self, vars: &[(&str, &str)], args: &[&str]) -> Output {
        let env = vars.iter().fold(self.env(), |env, (k, v)| env.with(k, v));
        run_in(
            &env,
            self.site.leaf(),
            imds_e2e::aws_env::AWS_CLI.as_ref(),
            args,
        )
    }

    /// The AWS SDK for Rust's default chain in the leaf with `vars`: `calls` GetCallerIdentity
    /// calls with one client, `pause` apart. One line per call: `ARN <arn>` or `ERROR <why>`.
    pub(crate) fn rust_sdk(
        &self,
        vars: &[(&str, &str)],
        calls: u32,
        pause: Duration,
    ) -> Vec<String> {
        let env = vars.iter().fold(self.env(), |env, (k, v)| env.with(k, v));
        rust_sdk_in(self.site.leaf(), &env, calls, pause)
    }

    /// One raw HTTP exchange with the relay from the leaf.
    pub(crate) fn raw(&self, request: String) -> String {
        self.site
            .leaf()
            .run_in(move || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&RELAY_ADDR, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(request.as_bytes())?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            })
            .unwrap()
            .unwrap()
    }

    /// A GET of `path` from the leaf: the response, or `None` when none came within `wait`.
    pub(crate) fn get_within(&self, path: &str, wait: Duration) -> Option<String> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n");
        self.site
            .leaf()
            .run_in(move || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&RELAY_ADDR, Duration::from_secs(2))?;
                s.set_read_timeout(Some(wait))?;
                s.write_all(request.as_bytes())?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            })
            .unwrap()
            .ok()
            .filter(|r| !r.is_empty())
    }

    /// IPv6 beside the site's IPv4, on the routed layers between the host and the leaf, so
    /// that a client at the leaf reaches an address the relay listens on in the host's
    /// namespace (`[fd00:ec2::23]`): layer `n`'s bridge gets `fd00:1ab:n::1/64` in its parent,
    /// the child's uplink `fd00:1ab:n::2/64` and its default route; every parent forwards
    /// IPv6 and routes the deeper subnets through its child. Only this site's namespaces
    /// change, after the harness made them: the IPv4 the harness measures is as it was.
    pub(crate) fn add_ipv6(&self) {
        let host = self.site.host().name();
        let prefix = host
            .strip_suffix("-h")
            .expect("a host namespace named <prefix>-h");
        let ns = |depth: usize| match depth {
            0 => host.to_owned(),
            d => format!("{prefix}-{d}"),
        };
        let layers = self.site.topology().layers();
        assert_eq!(ns(layers.len()), self.site.leaf().name());
        for (i, layer) in layers.iter().enumerate() {
            let Some(bridge) = layer.bridge() else {
                panic!(
                    "layer {} is {layer:?}: IPv6 is added on routed layers only",
                    i + 1
                )
            };
            let (parent, child, n) = (ns(i), ns(i + 1), i + 1);
            ip(
                &parent,
                &[
                    "addr",
                    "add",
                    &format!("fd00:1ab:{n}::1/64"),
                    "dev",
                    &bridge.name(),
                    "nodad",
                ],
            );
            ip(
                &child,
                &[
                    "addr",
                    "add",
                    &format!("fd00:1ab:{n}::2/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ],
            );
            ip(
                &child,
                &[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("fd00:1ab:{n}::1"),
                ],
            );
            let forward = duct::cmd!(
                "ip",
                "netns",
                "exec",
                &parent,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=1"
            );
            forward.run().unwrap();
            for upper in 0..i {
                let via = format!("fd00:1ab:{}::2", upper + 1);
                ip(
                    &ns(upper),
                    &[
                        "-6",
                        "route",
                        "add",
                        &format!("fd00:1ab:{n}::/64"),
                        "via",
                        &via,
                    ],
                );
            }
        }
    }

    pub(crate) fn link_exists(&self) -> bool {
        duct::cmd!(
            "ip",
            "-n",
            self.site.host().name(),
            "link",
            "show",
            "dev",
            LINK
        )
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .unwrap()
        .status
        .success()
    }
}

/// `ip -n <ns> <args>`, which must succeed.
fn ip(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    let out = duct::cmd("ip", &all)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert!(out.status.success(), "ip {}: {}", all.join(" "), show(&out));
}

/// Starts `imds-shim relay` in `ns` (its control socket and log in `dir`); waits until it serves.
pub(crate) fn start_relay(
    ns: &Namespace,
    dir: &Path,
    env: &ClientEnv,
    name: &str,
    extra: &[&str],
) -> Relay {
    Relay::start_named(ns, dir, env, name, extra)
}

/// `imds-shim relay <args>` (grant, revoke, list) from the root namespace: the control
/// socket is a file, and no packet is sent.
pub(crate) fn relay_cmd(dir: &Path, args: &[&str]) -> Output {
    let control = dir.join("relay.sock");
    let mut all = vec!["relay"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", control.to_str().unwrap()]);
    duct::cmd(bins::shim(), &all)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
}

/// A new grant: its id and environment.
pub(crate) fn grant(dir: &Path, extra: &[&str]) -> Grant {
    let mut args = vec!["grant"];
    args.extend_from_slice(extra);
    let out = relay_cmd(dir, &args);
    assert!(out.status.success(), "{}", show(&out));
    let env: Vec<(String, String)> = text(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let stderr = text(&out.stderr);
    let id = stderr
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_owned();
    Grant { id, env }
}

pub(crate) struct Grant {
    pub(crate) id: String,
    pub(crate) env: Vec<(String, String)>,
}

impl Grant {
    pub(crate) fn var(&self, name: &str) -> &str {
        &self
            .env
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} not in {:?}", self.env))
            .1
    }

    pub(crate) fn relative(&self) -> Vec<(&str, &str)> {
        let name = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
        vec![(name, self.var(name))]
    }

    pub(crate) fn full(&self) -> Vec<(&str, &str)> {
        [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ]
        .into_iter()
        .map(|n| (n, self.var(n)))
        .collect()
    }

    /// The secrets: the part after the id of the capability and the token.
    pub(crate) fn secrets(&self) -> Vec<String> {
        [
            self.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        ]
        .iter()
        .map(|v| v.rsplit_once('.').unwrap().1.to_owned())
        .collect()
    }
}

/// The AWS SDK for Rust's default chain in `ns` with `env` (STS at `AWS_ENDPOINT_URL_STS`):
/// `calls` GetCallerIdentity calls with one client, `pause` apart, by this test binary re-run
/// as [`rust_sdk_child`]. One line per call: `ARN <arn>` or `ERROR <why>`.
pub(crate) fn rust_sdk_in(
    ns: &Namespace,
    env: &ClientEnv,
    calls: u32,
    pause: Duration,
) -> Vec<String> {
    let env = env
        .clone()
        .with(CHILD, "1")
        .with(CHILD_CALLS, &calls.to_string())
        .with(CHILD_PAUSE_MS, &pause.as_millis().to_string());
    let exe = std::env::current_exe().unwrap();
    let out = run_in(
        &env,
        ns,
        &exe,
        &[
            "--exact",
            "rust_sdk_child",
            "--nocapture",
            "--test-threads=1",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(MARK))
        .map(str::to_owned)
        .collect()
}

pub(crate) fn run_in(env: &ClientEnv, ns: &Namespace, program: &Path, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| {
        env.apply(ns.exec(program, args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    })
}

/// The row of grant `id` in `relay list`'s table `list`.
pub(crate) fn row<'a>(list: &'a str, id: &str) -> &'a str {
    list.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

pub(crate) fn cli_arn(out: &Output) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["Arn"].as_str().map(str::to_owned))
}

/// The SDK side of [`Sim::rust_sdk`]: does nothing unless [`CHILD`] is set. Each test binary
/// that uses [`Sim::rust_sdk`] calls it from a test named `rust_sdk_child`.
pub(crate) fn rust_sdk_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let calls: u32 = std::env::var(CHILD_CALLS).unwrap().parse().unwrap();
    let pause = Duration::from_millis(std::env::var(CHILD_PAUSE_MS).unwrap().parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use aws_config::BehaviorVersion;
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .load()
            .await;
        let sts = aws_sdk_sts::Client::new(&conf);
        for i in 0..calls {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            match sts.get_caller_identity().send().await {
                Ok(out) => println!("\n{MARK}ARN {}", out.arn().unwrap_or_default()),
                Err(e) => println!(
                    "\n{MARK}ERROR {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ),
            }
        }
    });
}
