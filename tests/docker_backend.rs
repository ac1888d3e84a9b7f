//! The docker backend with the real engine, real BuildKit and the real clients: a
//! simulated instance (a container with an engine of its own and no route out), the
//! seed's story told in it, its matrix agreeing with the netns backend's, and the relay
//! serving builds at every preset.

mod relay_sim;

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imds_e2e::at_once::at_once;
use imds_e2e::bins;
use imds_e2e::clients::assert_needs_what_the_model_says;
use imds_e2e::docker::lab;
use imds_e2e::output::{show, text};
use imds_e2e::require::{require, Requirement};
use imds_e2e::runs::{containers_of, run_of};
use imds_e2e::shared_instances::SharedInstances;
use imds_harness::backend::docker::instance::DockerInstance;
use imds_harness::backend::docker::lab::DockerLab;
use imds_harness::backend::docker::leaf::DockerLeaf;
use imds_harness::backend::endpoints::{EC2_URL, IMDS_URL, STS_URL};
use imds_harness::backend::netns::NetnsLab;
use imds_harness::probe::env::ClientEnv;
use imds_harness::probe::programs::SdkProgram;
use imds_harness::probe::warm::Starts;
use imds_harness::probe::{cli, Client, Leaf, Probe, Program};
use imds_harness::report;
use imds_harness::sweep::{self, Strategy, SweepPlan};
use imds_harness::topology::{Layer, Preset, Topology, UserStack};
use imds_mock::{MetadataOptionsChange, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};
use strum::VariantArray;

use relay_sim::{
    cli_arn, grant, relay_cmd, row, rust_sdk_in, scoped_arn, scoped_config, start_relay, ARN,
    DEPLOY_ARN, LOOK_ONLY, MODIFY_HOP_LIMIT,
};

const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
    Requirement::Docker,
];

/// The simulated instances the docker sweeps share, a sweep worker each. Most of a
/// topology's time is its slowest client waiting out its time-out (Ruby's, twice), so a
/// third worker still finds CPU to spare (2 cores: the two sweeps took 164 s with two
/// instances, 134 s with three).
const INSTANCES: usize = 3;

fn leaf<'a>(instance: &'a DockerInstance, lab: &DockerLab, name: &str) -> DockerLeaf<'a> {
    DockerLeaf::realise(instance, &Topology::parse(name).unwrap(), &lab.tools).unwrap()
}

/// The seed's story in containers, on `instance` (one of the shared ones, at whatever
/// options the checks before left): at hop limit 2 with tokens required, the real CLI
/// gets an identity on the host, in `docker run` and in a `docker build` RUN step, and
/// not in an Earthly-shaped RUN step; after ModifyInstanceMetadataOptions to 3 through
/// the mock EC2 API (the real CLI, on the instance), it does there too.
fn seed_story(instance: &DockerInstance, lab: &DockerLab) {
    instance.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(2).unwrap()),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(home.path(), IMDS_URL);

    for name in ["host", "docker-run", "buildkit-run"] {
        let outcome = cli::run(&leaf(instance, lab, name), &env, STS_URL).unwrap();
        assert!(outcome.ok, "{name} at hop limit 2: {:?}", outcome.reason);
        assert!(outcome.arn.unwrap().contains(":assumed-role/"), "{name}");
    }
    let earthly = leaf(instance, lab, "earthly-run");
    let outcome = cli::run(&earthly, &env, STS_URL).unwrap();
    assert!(!outcome.ok, "earthly-run at hop limit 2 worked");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("Unable to locate credentials"),
        "earthly-run: {reason}"
    );

    // As a user on the instance would: the AWS CLI with the instance's own role.
    let instance_id = MockConfig::default().identity.instance_id;
    let host = leaf(instance, lab, "host");
    let modified = host
        .run(
            Program::AwsCli,
            &[
                "ec2",
                "modify-instance-metadata-options",
                "--instance-id",
                &instance_id,
                "--http-put-response-hop-limit",
                "3",
                "--http-tokens",
                "required",
                "--endpoint-url",
                EC2_URL,
                "--output",
                "json",
            ],
            &env,
        )
        .unwrap();
    assert!(
        modified.status.success(),
        "modify-instance-metadata-options: {}",
        String::from_utf8_lossy(&modified.stderr)
    );
    assert_eq!(instance.mock().options().hop_limit.get(), 3);

    let outcome = cli::run(&earthly, &env, STS_URL).unwrap();
    assert!(
        outcome.ok,
        "earthly-run at hop limit 3: {:?}",
        outcome.reason
    );
}

/// What each leaf's default route must go via: its last layer's gateway, the bridge's
/// `.1` (docker0, cni-podman0, dind's and the sidecar's docker0 ...), slirp4netns's
/// 10.0.2.2, or for pasta the instance's own gateway, which pasta copies. `None` for the
/// host, which has no layer (and no leaf of its own to look at).
fn last_layers_gateway(topology: &Topology) -> Option<Ipv4Addr> {
    let last = topology.layers().last().copied()?;
    Some(match (topology.preset(), last) {
        // earthly-run's RUN step is on earthly-buildkitd's own engine bridge, one
        // routed hop like the real step's cni0 (earthly-cni makes cni0 itself).
        (Some(Preset::EarthlyRun), _) => Ipv4Addr::new(172, 18, 0, 1),
        (_, Layer::Routed(bridge)) => bridge.gateway(),
        (_, Layer::Proxied(UserStack::Slirp4netns)) => UserStack::SLIRP_GATEWAY,
        // The simulated host's default gateway (the mock's namespace).
        (_, Layer::Proxied(UserStack::Pasta)) => Ipv4Addr::new(169, 254, 0, 254),
    })
}

/// The default route at a leaf, from `/proc/net/route` (gateways little-endian hex).
fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"00000000"))
            .then(|| u32::from_str_radix(fields[2], 16).ok())
            .flatten()
            .map(|gw| Ipv4Addr::from(gw.swap_bytes()))
    })
}

/// The default route at `topology`'s leaf in `instance`: its gateway, or what failed.
fn route_at_leaf(
    instance: &DockerInstance,
    lab: &DockerLab,
    topology: &Topology,
) -> Result<Option<Ipv4Addr>, String> {
    let env = ClientEnv::new(std::path::Path::new("/nonexistent"), IMDS_URL);
    let at_leaf = DockerLeaf::realise(instance, topology, &lab.tools).map_err(|e| e.to_string())?;
    let command = at_leaf
        .command(vec!["cat".into(), "/proc/net/route".into()], &env)
        .ok_or("the leaf has no command line")?;
    let out = instance
        .exec(command, Duration::from_mins(2))
        .map_err(|e| e.to_string())?;
    let route = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(default_gateway(&route))
}

/// The docker backend's sweeps, then the relay and the seed's story, on simulated instances
/// they share, so that each nested engine (and its copy of the probe image) is made once
/// for all five checks:
/// - each preset is the network its layers say: at every leaf (a build's RUN step
///   included) the default route goes via its last layer's gateway;
/// - every preset with the Rust SDK, the CLI and the TTL probe in both tokens modes gives
///   the same minimal hop limits as the netns backend, preset by preset, and the matrix
///   is kept as a snapshot;
/// - every client the probe image carries, with the TTL probe seeding them, with tokens
///   required, gets the role's identity at the model's hop limit (1 + the routed layers
///   before the first user-space stack) and not one below, at every preset (the netns
///   backend's counterpart is in `tests/clients.rs`);
/// - at hop limit 1, every client at every preset gets what its grant of `imds-shim
///   relay` serves, and nothing without one ([`relay_serves`]; the netns backend's
///   counterpart is in `tests/relay.rs`);
/// - the seed's story ([`seed_story`]).
#[test]
fn in_shared_instances_every_leaf_routes_via_its_last_layer_needs_what_netns_and_the_model_say_and_gets_the_relays_grants(
) {
    if !require(
        "docker_sweeps",
        &[NEEDS, &[Requirement::SdkClients]].concat(),
    ) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let lab = lab(&runtime);
    let routes = Mutex::new(Vec::new());
    // Each topology's route once, at its first realisation (the first sweep's: a sweep
    // realises each topology once, so the workers never check the same one).
    let check_route = |instance: &DockerInstance, lab: &DockerLab, topology: &Topology| {
        let checked = routes.lock().unwrap().iter().any(|(t, _)| t == topology);
        if last_layers_gateway(topology).is_some() && !checked {
            let route = route_at_leaf(instance, lab, topology);
            routes.lock().unwrap().push((*topology, route));
        }
    };
    // The relay's scoped grants assume the deploy role, which the instances' mocks declare.
    let shared = SharedInstances::new(&lab, scoped_config(), &check_route);

    // Every client with tokens required, then the matrix's three (the Rust SDK, the CLI
    // and the TTL probe) with tokens optional, on the same instances: the matrix's
    // required half is the first sweep's, not measured twice.
    let clients = SweepPlan {
        topologies: Topology::presets(),
        clients: Probe::all().collect(),
        modes: vec![HttpTokens::Required],
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        parallel: INSTANCES,
    };
    let matrix = SweepPlan {
        clients: vec![
            Probe::Client(Client::RustSdk),
            Probe::Client(Client::Cli),
            Probe::Ttl,
        ],
        modes: vec![HttpTokens::Required, HttpTokens::Optional],
        ..clients.clone()
    };
    let optional = SweepPlan {
        modes: vec![HttpTokens::Optional],
        ..matrix.clone()
    };
    let sweep_shared = |plan: &SweepPlan, what: &str| {
        let started = Instant::now();
        let cells = sweep::run(&&shared, plan, &|_| {}).unwrap();
        eprintln!(
            "docker, {what}: {:.1} s, on {} instances",
            started.elapsed().as_secs_f64(),
            shared.idle()
        );
        cells
    };
    let cells = sweep_shared(&clients, "every client");
    let optional = sweep_shared(&optional, "the matrix's tokens optional");
    assert_eq!(
        shared.idle(),
        INSTANCES,
        "the sweeps started instances of their own"
    );
    assert_eq!(
        cells.len(),
        clients.topologies.len() * clients.clients.len()
    );
    for cell in cells.iter().filter(|c| c.client != Probe::Ttl) {
        assert_needs_what_the_model_says(cell);
    }

    let routes = routes.lock().unwrap().clone();
    for topology in Topology::presets() {
        let Some(expected) = last_layers_gateway(&topology) else {
            continue;
        };
        let Some((_, route)) = routes.iter().find(|(t, _)| *t == topology) else {
            panic!("{topology}: its route was not checked");
        };
        assert_eq!(route, &Ok(Some(expected)), "{topology}");
    }

    // The netns matrix with warm starts, as `measure` runs it (tests/clients.rs shows
    // that warm and cold starts answer alike).
    let netns = sweep::run(
        &NetnsLab {
            tools: lab.tools.clone().starting(Starts::Warm),
        },
        &matrix,
        &|_| {},
    )
    .unwrap();
    assert_eq!(netns.len(), matrix.topologies.len() * 3 * 2);
    let docker: Vec<_> = netns
        .iter()
        .map(|n| {
            let key = (&n.topology, n.client, n.http_tokens);
            cells
                .iter()
                .chain(&optional)
                .find(|d| (&d.topology, d.client, d.http_tokens) == key)
                .unwrap_or_else(|| panic!("docker measured no cell {key:?}"))
                .clone()
        })
        .collect();
    for (d, n) in docker.iter().zip(&netns) {
        let what = format!("{} {} {}", d.topology, d.client, d.http_tokens);
        assert_eq!(
            (&d.topology, d.client, d.http_tokens),
            (&n.topology, n.client, n.http_tokens)
        );
        assert_eq!(
            (d.minimal_hop_limit, d.works_at_any_hop_limit),
            (n.minimal_hop_limit, n.works_at_any_hop_limit),
            "{what}: docker {d:?} netns {n:?}"
        );
        let routed = d.topology.routed_hops();
        if d.client == Probe::Client(Client::Cli) && d.http_tokens == HttpTokens::Optional {
            // The CLI falls back to IMDSv1 where routers stand before the leaf's first
            // user-space stack; behind one it gets its token at hop limit 1.
            assert_eq!(d.works_at_any_hop_limit, routed > 0, "{what}");
            assert_eq!(d.minimal_hop_limit, Some(HopLimit::MIN), "{what}");
        } else {
            assert!(!d.works_at_any_hop_limit, "{what}");
            assert_eq!(d.minimal_hop_limit, Some(d.model), "{what}");
            if d.client != Probe::Ttl {
                assert_eq!(
                    d.model,
                    HopLimit::for_routing_hops(routed).unwrap(),
                    "{what}"
                );
            }
        }
    }
    insta::assert_snapshot!(
        "docker_matrix",
        report::table(&docker, &matrix.clients, false)
    );

    // The relay on each instance in turn, at the presets it realised in the sweeps. Not at
    // once: with three instances' clients at once (load 26 on 2 cores) a `docker build`'s
    // session with its engine timed out ("no active session ... context deadline exceeded").
    let instances = shared.take_idle();
    // The first instance that realised `topology`: each preset is checked once, there.
    let realised_in = |topology: &Topology| {
        instances
            .iter()
            .position(|(_, realised)| realised.contains(topology))
            .unwrap_or_else(|| panic!("{topology} was realised in no instance"))
    };
    let mut presets = vec![Vec::new(); instances.len()];
    for topology in Topology::presets() {
        presets[realised_in(&topology)].push(topology);
    }
    let started = Instant::now();
    for (i, ((instance, _), presets)) in instances.iter().zip(&presets).enumerate() {
        relay_serves(instance, &lab, presets, i == 0);
    }
    eprintln!(
        "the relay at every preset: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The seed's story, where earthly-buildkitd is made.
    let earthly = realised_in(&Topology::parse("earthly-run").unwrap());
    seed_story(&instances[earthly].0, &lab);
}

/// The SDK side of [`relay_serves`]'s Rust SDK client, re-run in the instance's namespace.
#[test]
fn rust_sdk_child() {
    relay_sim::rust_sdk_child();
}

/// A run killed with SIGKILL leaves its instance container behind; `imds-harness
/// cleanup` removes it. A run stopped with Ctrl-C removes its own.
#[test]
fn interrupted_runs_leave_nothing_after_cleanup() {
    if !require("docker_cleanup", NEEDS) {
        return;
    }
    // The images are made (once, by this process) before the runs below look for them.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    lab(&runtime);
    // Only this test's runs are looked at: other binaries' runs may be going on beside it.
    let mut killed = None;
    for (signal, exit) in [("INT", Some(130)), ("KILL", None)] {
        let mut child = Command::new(bins::harness())
            .args([
                "measure",
                "--backend",
                "docker",
                "--topology",
                "earthly-with-docker",
                "--clients",
                "ttl",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let run = loop {
            if let Some(run) = run_of(child.id()).filter(|run| !containers_of(run).is_empty()) {
                break run;
            }
            assert!(
                started.elapsed() < Duration::from_mins(2),
                "no container appeared"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        std::thread::sleep(Duration::from_secs(2));
        Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        drop(child.stderr.take());
        assert_eq!(status.code(), exit, "signal {signal}");
        if exit.is_some() {
            assert_eq!(
                containers_of(&run),
                Vec::<String>::new(),
                "Ctrl-C left a container"
            );
        } else {
            killed = Some(run);
        }
    }
    let killed = killed.unwrap();
    assert!(
        !containers_of(&killed).is_empty(),
        "SIGKILL left nothing to reap"
    );
    let out = Command::new(bins::harness())
        .arg("cleanup")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("container(s) of dead runs"), "{stdout}");
    assert_eq!(containers_of(&killed), Vec::<String>::new());
}

/// The relay on one of the shared instances, at `presets` (realised there by the sweeps, so
/// their nested setups are made): the instance at hop limit 1, tokens required, the relay in
/// its network namespace (the EC2 host). At every preset (`docker run --env`, a `docker
/// build` RUN step, earthly-buildkitd's steps, ...) the AWS CLI, the Go v2, Go v1, Ruby and
/// boto3 clients and the AWS SDK for Rust (`imds-shim whoami`, the default chain) of the
/// probe image get the deploy role's narrowed session through a scoped grant in their
/// environment, the session may not raise the hop limit, the CLI gets the instance role
/// through an `--instance-role` grant, and nothing without a grant; the clients of one
/// preset run at once. This test binary's own Rust SDK client runs at `host` too. With
/// `docs_examples`, the docs' Docker examples get the instance role through an
/// `--instance-role` grant on the instance's engine.
fn relay_serves(
    instance: &DockerInstance,
    lab: &DockerLab,
    presets: &[Topology],
    docs_examples: bool,
) {
    instance.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::MIN),
        http_tokens: Some(HttpTokens::Required),
        ..Default::default()
    });
    let assumed_before = instance.mock().events().assume_role;
    let dir = tempfile::Builder::new()
        .prefix("imdsh-relay-test-")
        .tempdir()
        .unwrap();
    let env = ClientEnv::new(dir.path(), IMDS_URL);
    let relay = start_relay(
        instance.host_ns(),
        dir.path(),
        &env,
        "relay",
        &["--sts-endpoint", STS_URL],
    );
    let granted = grant(dir.path(), &["--instance-role", "--label", "docker-build"]);
    let policy = dir.path().join("look-only.json");
    fs::write(&policy, LOOK_ONLY).unwrap();
    let scoped = grant(
        dir.path(),
        &[
            "--role-arn",
            DEPLOY_ARN,
            "--policy",
            policy.to_str().unwrap(),
            "--label",
            "docker-scoped",
        ],
    );
    let scoped_arn = scoped_arn("docker-scoped");
    let with_scoped = scoped
        .relative()
        .into_iter()
        .fold(env.clone(), |env, (k, v)| env.with(k, v));
    let with_granted = granted
        .relative()
        .into_iter()
        .fold(env.clone(), |env, (k, v)| env.with(k, v));
    let who = [
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        STS_URL,
        "--output",
        "json",
    ];
    let mut served = 0;
    for topology in presets {
        let leaf = DockerLeaf::realise(instance, topology, &lab.tools).unwrap();
        let scoped_session = Expect::Arn(scoped_arn.clone());
        let mut runs = vec![
            Run::new(Program::AwsCli, &who, &with_scoped, scoped_session.clone()),
            Run::new(
                Program::AwsCli,
                &who,
                &with_granted,
                Expect::Arn(ARN.into()),
            ),
            Run::new(
                Program::AwsCli,
                &MODIFY_HOP_LIMIT,
                &with_scoped,
                Expect::Unauthorized,
            ),
        ];
        for &program in SdkProgram::VARIANTS {
            runs.push(Run::new(
                Program::Sdk(program),
                &[STS_URL],
                &with_scoped,
                scoped_session.clone(),
            ));
        }
        // The AWS SDK for Rust's default chain, as the probe image has it: `imds-shim whoami`.
        runs.push(Run::new(
            Program::Shim,
            &["whoami", "--sts-endpoint", STS_URL],
            &with_scoped,
            scoped_session.clone(),
        ));
        served += runs.len();
        // Without a grant, hop limit 1 keeps the role from every place that needs more; a
        // place behind a user-space stack (rootless Podman) needs no more than 1, so it
        // reaches IMDS itself, grant or not: the relay cannot fence it off (`imds-shim
        // fence` does, tests/fence.rs).
        if topology.depth() > 0 {
            let reachable = topology.min_hop_limit().get() == 1;
            let expect = if reachable {
                Expect::Arn(ARN.into())
            } else {
                Expect::Nothing
            };
            runs.push(Run::new(Program::AwsCli, &who, &env, expect));
        }
        let outputs: Vec<Output> = at_once(&runs, |run| {
            let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
            leaf.run(run.program, &args, &run.env).unwrap()
        });
        for (run, out) in runs.iter().zip(&outputs) {
            let what = format!(
                "{topology}, {} {:?}, {:?}: {}",
                run.program.description(),
                run.args,
                run.expect,
                show(out)
            );
            match &run.expect {
                Expect::Arn(arn) => assert_eq!(cli_arn(out).as_ref(), Some(arn), "{what}"),
                Expect::Nothing => assert_eq!(cli_arn(out), None, "{what}"),
                Expect::Unauthorized => assert!(
                    !out.status.success() && text(&out.stderr).contains("UnauthorizedOperation"),
                    "{what}"
                ),
            }
        }
        assert_eq!(
            instance.mock().options().hop_limit,
            HopLimit::MIN,
            "{topology}: the hop limit changed"
        );
        if *topology == Topology::parse("host").unwrap() {
            let rust_env = env.clone().with("AWS_ENDPOINT_URL_STS", STS_URL);
            for (vars, arn) in [
                (scoped.relative(), scoped_arn.as_str()),
                (granted.full(), ARN),
            ] {
                let env = vars
                    .into_iter()
                    .fold(rust_env.clone(), |env, (k, v)| env.with(k, v));
                let sdk = rust_sdk_in(instance.host_ns(), &env, 1, Duration::ZERO);
                assert_eq!(sdk, [format!("ARN {arn}")], "{topology}, the Rust SDK");
            }
            served += 2;
        }
    }

    // docs/relay.md's ways, on the instance's engine: `docker run --env-file` with the grant's
    // env file, and a `docker build` whose RUN step reads it from a secret mount.
    if docs_examples {
        let env_file = granted.env.iter().fold(String::new(), |mut file, (k, v)| {
            let _ = writeln!(file, "{k}={v}");
            file
        });
        let probe = &instance.images().probe;
        let aws = "/usr/bin/aws sts get-caller-identity --output text --query Arn";
        let script = format!(
            r#"set -eu
d=$(mktemp -d)
cat > "$d/build.env" <<'IMDSH_EOF'
{env_file}IMDSH_EOF
docker run --rm --env-file "$d/build.env" --env AWS_REGION=us-east-1 {probe} {aws} --endpoint-url {STS_URL}
cat > "$d/Dockerfile" <<'IMDSH_EOF'
FROM {probe} AS build
RUN --mount=type=secret,id=aws set -a && . /run/secrets/aws && set +a && AWS_REGION=us-east-1 {aws} --endpoint-url {STS_URL} > /arn
FROM scratch
COPY --from=build /arn /
IMDSH_EOF
DOCKER_BUILDKIT=1 docker build --no-cache --progress=plain --secret id=aws,src="$d/build.env" --output "type=local,dest=$d/out" "$d" >&2
cat "$d/out/arn"
rm -rf "$d"
"#
        );
        let out = instance
            .exec(
                vec!["sh".into(), "-c".into(), script],
                Duration::from_mins(5),
            )
            .unwrap();
        assert_eq!(
            text(&out.stdout),
            format!("{ARN}\n{ARN}\n"),
            "{}",
            show(&out)
        );
        served += 2;
    }

    let list = text(&relay_cmd(dir.path(), &["list"]).stdout);
    assert!(row(&list, &granted.id).contains("instance role"), "{list}");
    assert!(row(&list, &scoped.id).contains("docker-scoped"), "{list}");
    assert_eq!(
        instance.mock().events().assume_role - assumed_before,
        1,
        "one AssumeRole serves every fetch of the scoped grant"
    );
    let log = relay.stop();
    assert_eq!(log.matches("200 to ").count(), served, "{log}");
    assert!(
        log.contains(&format!(
            "grant {} (\"docker-build\"), instance role",
            granted.id
        )),
        "{log}"
    );
    for secret in granted.secrets().into_iter().chain(scoped.secrets()) {
        assert!(!log.contains(&secret), "a grant's secret in the log");
    }
}

/// One client run at a docker leaf: the program, its arguments and environment, what it
/// should get.
struct Run {
    program: imds_harness::probe::Program,
    args: Vec<String>,
    env: ClientEnv,
    expect: Expect,
}

/// What a client run should end with.
#[derive(Clone, Debug)]
enum Expect {
    /// GetCallerIdentity says this ARN.
    Arn(String),
    /// No identity.
    Nothing,
    /// EC2 refuses the call with `UnauthorizedOperation`.
    Unauthorized,
}

impl Run {
    fn new(
        program: imds_harness::probe::Program,
        args: &[&str],
        env: &ClientEnv,
        expect: Expect,
    ) -> Run {
        Run {
            program,
            args: args.iter().map(ToString::to_string).collect(),
            env: env.clone(),
            expect,
        }
    }
}
