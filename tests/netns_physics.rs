//! The physics on the netns backend, with the real clients: the token response's TTL
//! runs out after the instance's hop limit in routers, and the minimal hop limit of
//! every topology is its depth + 1, except for clients that fall back to IMDSv1.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use imds_e2e::require::{require, Requirement};
use imds_harness::backend::endpoints::STS_URL;
use imds_harness::backend::netns::NamespaceLeaf;
use imds_harness::backend::netns::{NetnsLab, NetnsSite};
use imds_harness::backend::{Lab, Site};
use imds_harness::cell::{Cell, ModelCheck};
use imds_harness::probe::env::ClientEnv;
use imds_harness::probe::{cli, Client, Probe};
use imds_harness::report;
use imds_harness::sweep::{self, Strategy, SweepPlan, Tools};
use imds_harness::topology::{Forwarding, Topology};
use imds_mock::{MetadataOptionsChange, MockAws, MockConfig, IMDS_PORT};
use imds_vocab::{HopLimit, HttpTokens};

const NEEDS: &[Requirement] = &[
    Requirement::Root,
    Requirement::NetTools,
    Requirement::AwsCli,
    Requirement::UserStacks,
];

fn topology(name: &str) -> Topology {
    Topology::parse(name).unwrap()
}

/// One raw HTTP/1.1 exchange from inside `site`'s leaf; `None` when nothing came back
/// within the timeout (the response was dropped on the way).
fn exchange_from_leaf(site: &NetnsSite, request: &'static str) -> Option<String> {
    site.leaf()
        .run_in(move || -> std::io::Result<Option<String>> {
            use std::io::{Read, Write};
            let imds = SocketAddr::from(([169, 254, 169, 254], IMDS_PORT));
            let mut stream = TcpStream::connect_timeout(&imds, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_millis(800)))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            match stream.read_to_string(&mut response) {
                Ok(_) if !response.is_empty() => Ok(Some(response)),
                _ => Ok(None),
            }
        })
        .expect("the leaf namespace runs the client")
        .unwrap_or(None)
}

const TOKEN_PUT: &str = "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
    X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n";
const TOKENLESS_GET: &str =
    "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_token_response_dies_after_hop_limit_routers_and_tokenless_gets_do_not() {
    if !require("ttl_proof", &[Requirement::Root, Requirement::NetTools]) {
        return;
    }
    // Mock namespace -- host namespace (a router) -- client namespace.
    let site = NetnsSite::start(&topology("chain:1"), MockConfig::default()).unwrap();
    let status = |r: Option<String>| r.map(|r| r.lines().next().unwrap_or("").to_string());

    site.mock().set_hop_limit(HopLimit::new(1).unwrap());
    let at_one = tokio::task::block_in_place(|| exchange_from_leaf(&site, TOKEN_PUT));
    assert_eq!(
        status(at_one),
        None,
        "hop limit 1: the router drops the token response"
    );

    site.mock().set_hop_limit(HopLimit::new(2).unwrap());
    let at_two = tokio::task::block_in_place(|| exchange_from_leaf(&site, TOKEN_PUT));
    assert_eq!(status(at_two).as_deref(), Some("HTTP/1.1 200 OK"));

    site.mock().modify(&MetadataOptionsChange {
        hop_limit: Some(HopLimit::new(1).unwrap()),
        http_tokens: Some(HttpTokens::Optional),
        ..Default::default()
    });
    let v1 = tokio::task::block_in_place(|| exchange_from_leaf(&site, TOKENLESS_GET)).unwrap();
    assert!(v1.starts_with("HTTP/1.1 200 OK"), "{v1}");
    assert!(v1.ends_with("i-0123456789abcdef0"), "{v1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_token_response_does_not_pin_a_connection() {
    if !require(
        "dropped_response_bound",
        &[Requirement::Root, Requirement::NetTools],
    ) {
        return;
    }
    // Hop limit 1 (the default) behind one router: every token response is dropped.
    let site = NetnsSite::start(&topology("chain:1"), MockConfig::default()).unwrap();
    assert_eq!(site.mock().events().tokens_issued, 0);
    for _ in 0..5 {
        let dropped = tokio::task::block_in_place(|| exchange_from_leaf(&site, TOKEN_PUT));
        assert!(dropped.is_none());
    }
    // Nothing came back, but each request did reach the mock, which answered it: an
    // exchange that never connected (no route, nothing listening) also gives `None`.
    assert_eq!(
        site.mock().events().tokens_issued,
        5,
        "every token request reached the IMDS and was answered"
    );
    // The server wrote its responses and closed; nothing waits on the lost packets.
    let mut open = site.mock().imds_open_connections();
    for _ in 0..50 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = site.mock().imds_open_connections();
    }
    assert_eq!(open, 0, "connections still held by the IMDS");
}

/// The seed's story: hop limit 2 serves host, docker run and docker build, not Earthly.
#[tokio::test(flavor = "multi_thread")]
async fn hop_limit_2_serves_docker_but_not_earthly_and_3_serves_all() {
    if !require("seed_story", NEEDS) {
        return;
    }
    let tools = Tools::locate(&[Probe::Client(Client::Cli)]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(home.path(), imds_harness::backend::endpoints::IMDS_URL);
    let sites: Vec<NetnsSite> = ["host", "docker-run", "buildkit-run", "earthly-run"]
        .iter()
        .map(|name| NetnsSite::start(&topology(name), MockConfig::default()).unwrap())
        .collect();
    let outcomes = |hop_limit: u32| -> Vec<(String, bool, Option<String>)> {
        tokio::task::block_in_place(|| {
            sites
                .iter()
                .map(|site| {
                    site.mock().set_hop_limit(HopLimit::new(hop_limit).unwrap());
                    let leaf = NamespaceLeaf {
                        namespace: site.leaf().clone(),
                        tools: tools.clone(),
                    };
                    let outcome = cli::run(&leaf, &env, STS_URL).unwrap();
                    (site.topology().to_string(), outcome.ok, outcome.reason)
                })
                .collect()
        })
    };

    let at_two = outcomes(2);
    for (name, ok, reason) in &at_two[..3] {
        assert!(ok, "{name} at hop limit 2: {reason:?}");
    }
    let (name, ok, reason) = &at_two[3];
    assert_eq!(name, "earthly-run");
    assert!(!ok);
    assert!(
        reason
            .as_deref()
            .unwrap()
            .contains("Unable to locate credentials"),
        "{reason:?}"
    );

    for (name, ok, reason) in outcomes(3) {
        assert!(ok, "{name} at hop limit 3: {reason:?}");
    }
}

/// A cell's own mock ([`Site::cell_mock`], on an address of its own beside
/// 169.254.169.254) is where the IMDS is: behind a router, two, slirp4netns and pasta
/// the TTL probe needs there what it needs at the IMDS, and the Ruby SDK (which takes
/// the endpoint's host but always port 80) gets its identity from it at the
/// topology's need. Two cell mocks of one site, probed at the same time at the need and
/// one below, keep their own hop limit and events: one serves the identity, the other
/// only a token that never arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_cell_mock_is_where_the_imds_is_and_keeps_its_own_hop_limit() {
    if !require(
        "cell_mock",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::UserStacks,
            Requirement::SdkClients,
        ],
    ) {
        return;
    }
    let ruby = Probe::Client(Client::RubySdk);
    let lab = NetnsLab {
        tools: Tools::locate(&[ruby, Probe::Ttl]).unwrap(),
    };
    let home = tempfile::tempdir().unwrap();
    let run = |site: &dyn Site, mock: &MockAws, probe: Probe| {
        let endpoints = mock.endpoints();
        let env = ClientEnv::new(home.path(), &endpoints.imds);
        sweep::run_client_at(
            site.leaf(),
            &env,
            Duration::from_millis(300),
            probe,
            &endpoints.sts,
        )
        .unwrap()
    };
    for name in [
        "docker-run",
        "earthly-run",
        "podman-rootless",
        "podman-rootless-pasta",
    ] {
        let topology = topology(name);
        tokio::task::block_in_place(|| {
            #[expect(clippy::let_unit_value, reason = "a lab's worker, () on netns")]
            let mut worker = lab.worker().unwrap();
            let site = lab.realise(&mut worker, &topology).unwrap();
            let [works, fails] = [(); 2].map(|()| {
                let mock = site.cell_mock().expect("netns makes cell mocks").unwrap();
                mock.modify(&MetadataOptionsChange {
                    http_tokens: Some(HttpTokens::Required),
                    ..Default::default()
                });
                mock
            });
            assert_ne!(works.endpoints().imds, fails.endpoints().imds);
            assert_ne!(works.endpoints().imds, site.mock().endpoints().imds);

            let ttl = run(&*site, &works, Probe::Ttl);
            assert_eq!(
                ttl.hop_limit_needed,
                Some(topology.ttl_probe_hop_limit().get()),
                "{name}: {ttl:?}"
            );

            let need = topology.min_hop_limit();
            works.set_hop_limit(need);
            let Some(below) = need.below() else {
                let outcome = run(&*site, &works, ruby);
                assert!(outcome.ok, "{name} at {need}: {outcome:?}");
                return;
            };
            fails.set_hop_limit(below);
            let (worked, failed) = std::thread::scope(|scope| {
                let failed = scope.spawn(|| run(&*site, &fails, ruby));
                (run(&*site, &works, ruby), failed.join().unwrap())
            });
            assert!(worked.ok, "{name} at {need}: {worked:?}");
            assert!(!failed.ok, "{name} at {below}: {failed:?}");
            let (served, starved) = (works.events(), fails.events());
            assert_eq!(served.identity_v2, 1, "{name}: {served:?}");
            assert_eq!(
                (starved.identity_v1, starved.identity_v2),
                (0, 0),
                "{name}: {starved:?}"
            );
            assert!(starved.tokens_issued >= 1, "{name}: {starved:?}");
        });
    }
}

/// The seeded bisect on the netns backend, 16 topologies at a time as `measure` runs them,
/// with the probes' timeout of 300 ms.
fn sweep_netns(
    topologies: Vec<Topology>,
    clients: Vec<Probe>,
    modes: Vec<HttpTokens>,
) -> (SweepPlan, Vec<Cell>) {
    let plan = SweepPlan {
        topologies,
        clients,
        modes,
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        parallel: 16,
    };
    let lab = NetnsLab {
        tools: Tools::locate(&plan.clients).unwrap(),
    };
    let cells = tokio::task::block_in_place(|| sweep::run(&lab, &plan, &|_| {})).unwrap();
    (plan, cells)
}

/// Mixed chains in the matrix: a user-space stack first, after routers, before a router.
const MIXED: [&str; 5] = ["chain:p", "chain:rp", "chain:pr", "chain:rrpr", "chain:prp"];

/// Every preset, chain:0..=6 and mixed chains, with the CLI, the Rust SDK and the TTL
/// probe, both tokens modes: every cell is what the model predicts.
#[tokio::test(flavor = "multi_thread")]
async fn every_topology_and_client_needs_what_the_model_predicts() {
    if !require("netns_matrix", NEEDS) {
        return;
    }
    let mut topologies = Topology::presets();
    topologies.extend((0..=6).map(|n| Topology::chain(n).unwrap()));
    topologies.extend(MIXED.map(topology));
    let (plan, cells) = sweep_netns(
        topologies,
        vec![
            Probe::Client(Client::RustSdk),
            Probe::Client(Client::Cli),
            Probe::Ttl,
        ],
        vec![HttpTokens::Required, HttpTokens::Optional],
    );
    assert_eq!(cells.len(), plan.topologies.len() * 3 * 2);

    for cell in &cells {
        let what = format!("{} {} {}", cell.topology, cell.client, cell.http_tokens);
        let need = cell.topology.min_hop_limit();
        match (cell.http_tokens, cell.client) {
            (_, Probe::Ttl) => {
                assert_eq!(cell.model, cell.topology.ttl_probe_hop_limit(), "{what}");
                assert_eq!(cell.minimal_hop_limit, Some(cell.model), "{what}: {cell:?}");
            }
            (HttpTokens::Optional, Probe::Client(Client::Cli)) if need > HopLimit::MIN => {
                assert_eq!(
                    cell.minimal_hop_limit,
                    Some(HopLimit::MIN),
                    "{what}: {cell:?}"
                );
                assert!(cell.works_at_any_hop_limit, "{what}");
                assert_eq!(cell.verdict().to_string(), "any (IMDSv1)", "{what}");
            }
            _ => {
                assert_eq!(cell.model, need, "{what}");
                assert_eq!(cell.minimal_hop_limit, Some(need), "{what}: {cell:?}");
                assert!(!cell.works_at_any_hop_limit, "{what}");
            }
        }
        if cell.client == Probe::Client(Client::Cli)
            && cell.http_tokens == HttpTokens::Required
            && need > HopLimit::MIN
        {
            let below = cell.failure_below.as_deref().unwrap_or_default();
            assert!(
                below.contains("Unable to locate credentials"),
                "{what}: {below}"
            );
        }
    }
    let check = ModelCheck::of(&cells);
    assert!(check.holds(), "{check}");
    insta::assert_snapshot!("netns_matrix", report::table(&cells, &plan.clients, false));
    insta::assert_snapshot!("netns_model_check", check.to_string());
}

/// The rule itself, on every chain of 0 to 6 layers, each routed or proxied by the real
/// slirp4netns (127 chains): the Rust SDK needs 1 + the routed layers before the first
/// proxied one, and the TTL probe reports 1 + those after the last, with tokens
/// required.
#[tokio::test(flavor = "multi_thread")]
async fn the_rule_holds_on_every_mixed_chain_up_to_six_layers() {
    if !require(
        "mixed_chains",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::UserStacks,
        ],
    ) {
        return;
    }
    let topologies: Vec<Topology> = (0..=6u32)
        .flat_map(|len| {
            (0..1u32 << len).map(move |bits| {
                let letters: String = (0..len)
                    .map(|i| if bits & 1 << i != 0 { 'p' } else { 'r' })
                    .collect();
                match letters.as_str() {
                    "" => topology("chain:0"),
                    letters => topology(&format!("chain:{letters}")),
                }
            })
        })
        .collect();
    assert_eq!(topologies.len(), 127);
    let (_, cells) = sweep_netns(
        topologies,
        vec![Probe::Client(Client::RustSdk), Probe::Ttl],
        vec![HttpTokens::Required],
    );
    assert_eq!(cells.len(), 127 * 2);
    for cell in &cells {
        let layers = cell.topology.layers();
        let before_first_proxy = layers
            .iter()
            .take_while(|l| l.forwarding() == Forwarding::Routed)
            .count();
        let after_last_proxy = layers
            .iter()
            .rev()
            .take_while(|l| l.forwarding() == Forwarding::Routed)
            .count();
        let expected = match cell.client {
            Probe::Ttl => after_last_proxy,
            Probe::Client(_) => before_first_proxy,
        };
        assert_eq!(
            cell.minimal_hop_limit,
            HopLimit::for_routing_hops(expected).ok(),
            "{} {}: {cell:?}",
            cell.topology,
            cell.client
        );
    }
    let check = ModelCheck::of(&cells);
    assert!(check.holds(), "{check}");
    assert_eq!(check.held, 127 * 2);
}
