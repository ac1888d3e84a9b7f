//! The SDK clients (`go`, `go-v1`, `ruby`, `boto3`) on the netns backend: each needs what
//! the model says (1 + the routed layers before the first proxied one) with tokens
//! required, at every preset; with tokens optional,
//! what the matrix says about falling back agrees with the credential set the mock saw
//! signing the STS call; what each client prints is what the fixtures keep; and the
//! Earthly CLI's `RUN --aws` path (aws-sdk-go-v2's default chain on the host) works at
//! hop limit 1 with tokens required.

use std::time::{Duration, Instant};

use imds_e2e::clients::{
    assert_needs_what_the_model_says, identity_clients, identity_probes, kept_message, ClientLeaf,
    PRESET,
};
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::netns::NetnsLab;
use imds_harness::cell::Cell;
use imds_harness::probe::warm::Starts;
use imds_harness::probe::{Client, Probe, Tools};
use imds_harness::sweep::{self, Strategy, SweepPlan};
use imds_harness::topology::{Preset, Topology};
use imds_mock::ImdsVersion;
use imds_vocab::{HopLimit, HttpTokens};

const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
    Requirement::SdkClients,
    Requirement::UserStacks,
];

/// The clients this file is about: the programs of ours on an SDK.
fn sdk_clients() -> impl Iterator<Item = Probe> {
    Probe::all().filter(|p| p.sdk_program().is_some())
}

fn sweep_netns(topologies: Vec<Topology>, clients: &[Probe], mode: HttpTokens) -> Vec<Cell> {
    let plan = SweepPlan {
        topologies,
        clients: clients.to_vec(),
        modes: vec![mode],
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        // Every preset at once, as `measure` runs them: most of a cell is waiting.
        parallel: 16,
    };
    let lab = NetnsLab {
        tools: Tools::locate(&plan.clients).unwrap(),
    };
    let started = Instant::now();
    let cells = tokio::task::block_in_place(|| sweep::run(&lab, &plan, &|_| {})).unwrap();
    eprintln!("sweep: {:.1} s", started.elapsed().as_secs_f64());
    cells
}

/// With tokens required, each SDK client gets the role's identity at the model's hop
/// limit and not one below, at every preset (the seed from the TTL probe, or the model
/// behind a user-space stack, makes it exactly those two runs per cell).
#[tokio::test(flavor = "multi_thread")]
async fn each_sdk_client_needs_what_the_model_says_with_tokens_required_at_every_preset() {
    if !require("sdk_clients_required", NEEDS) {
        return;
    }
    let mut clients = vec![Probe::Ttl];
    clients.extend(sdk_clients());
    let cells = sweep_netns(Topology::presets(), &clients, HttpTokens::Required);
    assert_eq!(cells.len(), Topology::presets().len() * clients.len());
    for cell in cells.iter().filter(|c| c.client != Probe::Ttl) {
        assert_needs_what_the_model_says(cell);
    }
}

/// With tokens optional behind a user-space stack, every client gets its token at hop
/// limit 1 (the mock saw the IMDSv2 credential set sign its GetCallerIdentity), while
/// behind routers every client but the Rust SDK gets through by IMDSv1 instead.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_user_space_stack_every_client_gets_a_token_at_hop_limit_1() {
    if !require("sdk_clients_proxied", NEEDS) {
        return;
    }
    let mut clients = vec![Probe::Ttl];
    clients.extend(identity_probes());
    let topologies = [
        Preset::PodmanRootless,
        Preset::PodmanRootlessPasta,
        Preset::GitlabDindBuild,
    ]
    .map(Topology::Preset)
    .to_vec();
    let cells = sweep_netns(topologies, &clients, HttpTokens::Optional);
    for cell in cells.iter().filter(|c| c.client != Probe::Ttl) {
        let what = format!("{} {}", cell.topology, cell.client);
        if cell.topology.is_proxied() {
            assert_eq!(
                cell.minimal_hop_limit,
                Some(HopLimit::MIN),
                "{what}: {cell:?}"
            );
            assert_eq!(cell.via, Some(ImdsVersion::V2), "{what}: {cell:?}");
            assert!(!cell.works_at_any_hop_limit, "{what}");
        } else if cell.client == Probe::Client(Client::RustSdk) {
            assert_eq!(cell.minimal_hop_limit, Some(cell.model), "{what}: {cell:?}");
            assert_eq!(cell.via, Some(ImdsVersion::V2), "{what}: {cell:?}");
        } else {
            assert!(cell.works_at_any_hop_limit, "{what}: {cell:?}");
            assert_eq!(cell.via, Some(ImdsVersion::V1), "{what}: {cell:?}");
        }
    }
}

/// With tokens optional, the matrix's fallback column (`any (IMDSv1)`) for each client
/// is what the mock recorded: the credential set that signed the client's
/// GetCallerIdentity at a hop limit too low for a token, and what the fixtures keep.
#[tokio::test(flavor = "multi_thread")]
async fn the_fallback_column_is_what_the_mock_recorded() {
    if !require("sdk_clients_fallback", NEEDS) {
        return;
    }
    let mut clients = vec![Probe::Ttl];
    clients.extend(identity_probes());
    let cells = sweep_netns(
        vec![Topology::Preset(PRESET)],
        &clients,
        HttpTokens::Optional,
    );
    let timings: toml::Table =
        toml::from_str(&std::fs::read_to_string(imds_e2e::clients::timings_fixture()).unwrap())
            .unwrap();
    let leaf = tokio::task::block_in_place(ClientLeaf::start);
    for client in identity_clients() {
        let cell = cells
            .iter()
            .find(|c| c.client == Probe::Client(client))
            .unwrap();
        let run = tokio::task::block_in_place(|| {
            leaf.run(client, ClientLeaf::too_low(), HttpTokens::Optional)
        });
        let recorded_v1 = run.outcome.ok && run.signed_with == Some(ImdsVersion::V1);
        assert_eq!(
            cell.works_at_any_hop_limit, recorded_v1,
            "{client}: {cell:?} {run:?}"
        );
        if recorded_v1 {
            assert_eq!(cell.via, Some(ImdsVersion::V1), "{client}");
        } else {
            assert!(!run.outcome.ok, "{client}: {run:?}");
            assert_eq!(cell.minimal_hop_limit, Some(cell.model));
        }
        assert_eq!(
            timings[client.name()]["falls_back_to_imdsv1"].as_bool(),
            Some(recorded_v1),
            "{client}: fixtures/clients/timings.toml"
        );
    }
}

/// What each client prints at hop limit one too low, tokens required, is the fixture
/// (`make client-fixtures` regenerates them), which the shim's classifier is tested on.
#[tokio::test(flavor = "multi_thread")]
async fn each_client_prints_what_the_fixture_keeps() {
    if !require("sdk_clients_messages", NEEDS) {
        return;
    }
    let leaf = tokio::task::block_in_place(ClientLeaf::start);
    for client in identity_clients() {
        let run = tokio::task::block_in_place(|| {
            leaf.run(client, ClientLeaf::too_low(), HttpTokens::Required)
        });
        assert!(!run.outcome.ok, "{client}");
        assert_eq!(
            run.outcome.message.unwrap_or_default().trim_end(),
            kept_message(client).trim_end(),
            "{client}: the message changed; `make client-fixtures` and review"
        );
    }
}

/// The interpreted clients (the AWS CLI, boto3, Ruby) forked from an interpreter that
/// imported their SDK (warm starts, as `measure` runs them) do at a leaf what a process
/// of their own does (cold starts): the same verdict, words, identity and credential set,
/// one below the need and at it, in both tokens modes; eight runs at once from one
/// interpreter each get the role; and the interpreters end with the tools that started them.
#[tokio::test(flavor = "multi_thread")]
async fn warm_and_cold_starts_of_a_client_do_the_same() {
    if !require("warm_starts", NEEDS) {
        return;
    }
    let interpreted = [Client::Cli, Client::Boto3, Client::RubySdk];
    let runtime = tokio::runtime::Handle::current();
    let runs = |client: Client, starts: Starts| {
        let _runtime = runtime.enter();
        let leaf = ClientLeaf::start_with(starts);
        let mut seen = Vec::new();
        for tokens in [HttpTokens::Required, HttpTokens::Optional] {
            for hop_limit in [ClientLeaf::too_low(), ClientLeaf::need()] {
                let run = leaf.run(client, hop_limit, tokens);
                let o = run.outcome;
                seen.push((tokens, hop_limit, o.ok, o.reason, o.arn, run.signed_with));
            }
        }
        seen
    };
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = interpreted
                .iter()
                .flat_map(|&client| {
                    [Starts::Warm, Starts::Cold].map(|starts| {
                        let runs = &runs;
                        (client, starts, scope.spawn(move || runs(client, starts)))
                    })
                })
                .collect();
            let mut seen: Vec<_> = handles
                .into_iter()
                .map(|(client, starts, handle)| (client, starts, handle.join().unwrap()))
                .collect();
            while let Some((client, _, cold)) = seen.pop() {
                let (_, _, warm) = seen.pop().unwrap();
                assert_eq!(warm, cold, "{client}");
                // One below the need it fails with tokens required; at it, it gets the role.
                assert!(!warm[0].2 && warm[1].2 && warm[3].2, "{client}: {warm:?}");
            }
        });
    });

    let leaf = tokio::task::block_in_place(ClientLeaf::start);
    let client = Client::Cli;
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let _ = leaf.run(client, ClientLeaf::need(), HttpTokens::Required);
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| leaf.run_here(client)))
                .collect();
            for handle in handles {
                let outcome = handle.join().unwrap();
                assert!(outcome.ok, "{outcome:?}");
            }
        });
    });
    // The leaf's own: other tests of this binary run clients with warm starts beside it.
    let interpreters = leaf.warm_interpreters();
    assert!(
        !interpreters.is_empty() && interpreters.iter().all(|&pid| is_warm_interpreter(pid)),
        "the warm start of the CLI is not running: {interpreters:?}"
    );
    drop(leaf);
    let left: Vec<u32> = interpreters
        .into_iter()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert_eq!(left, Vec::<u32>::new(), "left running");
}

/// Whether process `pid` is a warm-start interpreter (`harness/clients/warm/`) of this
/// process's.
fn is_warm_interpreter(pid: u32) -> bool {
    let me = std::process::id().to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let parent = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1));
    String::from_utf8_lossy(&cmdline).contains("The warm start of") && parent == Some(me.as_str())
}

/// Earthly's `RUN --aws`: the Earthly CLI on the host resolves credentials with
/// aws-sdk-go-v2's default chain. The `go` client on the host (no routing hop) gets the
/// role's identity through IMDSv2 at hop limit 1 with tokens required, while a RUN step
/// two hops away does not.
#[tokio::test(flavor = "multi_thread")]
async fn the_earthly_cli_path_works_at_hop_limit_1_with_tokens_required() {
    if !require("sdk_clients_run_aws", NEEDS) {
        return;
    }
    let cells = sweep_netns(
        vec![
            Topology::Preset(Preset::Host),
            Topology::Preset(Preset::EarthlyRun),
        ],
        &[Probe::Ttl, Probe::Client(Client::GoSdkV2)],
        HttpTokens::Required,
    );
    let go: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.client == Probe::Client(Client::GoSdkV2))
        .collect();
    let host = go[0];
    assert_eq!(host.topology, Topology::Preset(Preset::Host));
    assert_eq!(host.minimal_hop_limit, Some(HopLimit::MIN), "{host:?}");
    assert_eq!(host.via, Some(ImdsVersion::V2), "{host:?}");
    let step = go[1];
    assert_eq!(step.minimal_hop_limit, HopLimit::new(3).ok(), "{step:?}");
}
