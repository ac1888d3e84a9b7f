//! The gate cannot pass by accident: a topology whose clients get no identity at any
//! hop limit fails it (and shows as failed test cases in the JUnit report, read back
//! with a real JUnit parser), and a mock that dies mid-sweep is a failed measurement,
//! with nothing left behind.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use imds_e2e::require::{require, Requirement};
use imds_harness::backend::netns::{NamespaceLeaf, NetnsError, NetnsSite};
use imds_harness::backend::{Lab, Site};
use imds_harness::cell::Verdict;
use imds_harness::gate::{self, Baseline, Comparison, Decision, Recorded};
use imds_harness::lifecycle;
use imds_harness::probe::{Client, Leaf, Probe, Tools};
use imds_harness::report;
use imds_harness::sweep::{self, Strategy, SweepError, SweepPlan};
use imds_harness::topology::{Preset, Topology};
use imds_mock::{MockAws, MockConfig};
use imds_vocab::{HopLimit, HttpTokens};

/// A netns site, with a fault made on purpose.
struct Faulty {
    site: NetnsSite,
    leaf: NamespaceLeaf,
    /// The mock stops serving when the sweep asks for it this many times.
    mock_dies_at: Option<usize>,
    asked: AtomicUsize,
}

impl Site for Faulty {
    fn mock(&self) -> &MockAws {
        let asked = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(asked) == self.mock_dies_at {
            self.site.mock().stop();
        }
        self.site.mock()
    }

    fn leaf(&self) -> &dyn Leaf {
        &self.leaf
    }
}

/// The netns backend, where `cut`'s leaf has no route at all (so no client there can
/// reach the IMDS at any hop limit) and the mock of `dying` stops serving mid-sweep.
struct FaultyLab {
    tools: Tools,
    cut: Option<Preset>,
    dying: Option<(Preset, usize)>,
}

impl Lab for FaultyLab {
    type Worker = ();
    type Error = NetnsError;

    fn worker(&self) -> Result<(), NetnsError> {
        Ok(())
    }

    fn realise<'b>(
        &self,
        _worker: &'b mut (),
        topology: &Topology,
    ) -> Result<Box<dyn Site + 'b>, NetnsError> {
        let site = NetnsSite::start(topology, MockConfig::default())?;
        if topology.preset() == self.cut {
            let status = Command::new("ip")
                .args(["-n", site.leaf().name(), "route", "flush", "table", "main"])
                .status()
                .expect("ip runs");
            assert!(status.success(), "removing the leaf's routes");
        }
        let mock_dies_at = self
            .dying
            .filter(|(preset, _)| topology.preset() == Some(*preset))
            .map(|(_, at)| at);
        Ok(Box::new(Faulty {
            leaf: NamespaceLeaf {
                namespace: site.leaf().clone(),
                tools: self.tools.clone(),
            },
            site,
            mock_dies_at,
            asked: AtomicUsize::new(0),
        }))
    }
}

fn plan(topologies: &[Preset], clients: &[Probe]) -> SweepPlan {
    SweepPlan {
        topologies: topologies.iter().map(|p| Topology::from(*p)).collect(),
        clients: clients.to_vec(),
        modes: vec![HttpTokens::Required],
        strategy: Strategy::Bisect,
        probe_timeout: Duration::from_millis(300),
        parallel: 2,
    }
}

/// This process's namespaces still there.
fn my_namespaces() -> Vec<String> {
    let run = lifecycle::run_id().unwrap();
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("imdsh-{run}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// What junitparser, a real JUnit reader, makes of `xml`: per suite its name, tests
/// and failures, then per case its name and result.
fn read_with_junitparser(xml: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from junitparser import JUnitXml, Failure
suites = []
for suite in JUnitXml.fromfile(sys.argv[1]):
    cases = []
    for case in suite:
        failed = [r for r in case.result if isinstance(r, Failure)]
        cases.append({"name": case.name, "classname": case.classname,
                      "failed": bool(failed),
                      "message": failed[0].message if failed else None})
    suites.append({"name": suite.name, "tests": suite.tests,
                   "failures": suite.failures, "cases": cases})
print(json.dumps(suites))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(xml)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "junitparser could not read the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topology_no_client_can_reach_fails_the_gate_and_the_junit_report() {
    if !require(
        "gate_never",
        &[
            Requirement::Root,
            Requirement::NetTools,
            Requirement::AwsCli,
            Requirement::JunitParser,
        ],
    ) {
        return;
    }
    let plan = plan(
        &[Preset::Host, Preset::DockerRun],
        &[
            Probe::Ttl,
            Probe::Client(Client::RustSdk),
            Probe::Client(Client::Cli),
        ],
    );
    let lab = FaultyLab {
        tools: Tools::locate(&plan.clients).unwrap(),
        cut: Some(Preset::DockerRun),
        dying: None,
    };
    let cells = tokio::task::block_in_place(|| sweep::run(&lab, &plan, &|_| {})).unwrap();
    assert_eq!(cells.len(), 6);
    let docker_run = Topology::from(Preset::DockerRun);
    for cell in &cells {
        if cell.topology == docker_run {
            assert_eq!(cell.minimal_hop_limit, None, "{cell:?}");
            assert_eq!(cell.verdict(), Verdict::Never);
        } else {
            assert_eq!(cell.minimal_hop_limit, Some(HopLimit::MIN), "{cell:?}");
        }
    }

    // Without a baseline, the never cells alone fail the run.
    let alone = gate::judge(&cells, None, false);
    assert_eq!(alone.never.len(), 3, "{:?}", alone.never);
    assert_eq!(alone.decision, Decision::Regression);

    // With a baseline that records docker-run = 2, it is a regression of docker-run.
    let recorded = Baseline::parse("[hop-limits]\nhost = 1\ndocker-run = 2\n", "b").unwrap();
    let path = Path::new("fixtures/hop-limits.toml");
    let against = Recorded {
        baseline: &recorded,
        path,
        restricted: false,
    };
    let judged = gate::judge(&cells, Some(against), true);
    let comparisons = judged.comparisons;
    assert_eq!(
        comparisons[0],
        Comparison::Never {
            topology: docker_run,
            recorded: HopLimit::new(2).ok(),
        }
    );
    assert!(comparisons[0].is_regression());
    assert_eq!(judged.decision, Decision::Regression);
    assert!(
        matches!(judged.to_record, Some(Err(_))),
        "a never cannot be recorded"
    );

    // The JUnit report, read back by junitparser.
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("junit.xml");
    let report = report::junit("netns", &cells, &comparisons, Some(path));
    std::fs::write(&xml, report.to_string().unwrap()).unwrap();
    let suites = read_with_junitparser(&xml);
    assert_eq!(suites[0]["tests"], 6, "{suites}");
    assert_eq!(suites[0]["failures"], 3, "{suites}");
    for case in suites[0]["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        assert_eq!(case["failed"], name.starts_with("docker-run "), "{case}");
        if name.starts_with("docker-run ") {
            assert!(
                case["message"]
                    .as_str()
                    .unwrap()
                    .contains("no identity at any hop limit"),
                "{case}"
            );
        }
    }
    assert_eq!(suites[1]["tests"], 2, "{suites}");
    assert_eq!(suites[1]["failures"], 1, "{suites}");
    let failed: Vec<&str> = suites[1]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["failed"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["docker-run"]);
    assert!(my_namespaces().is_empty(), "{:?}", my_namespaces());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mock_that_dies_mid_sweep_is_a_failed_measurement_naming_the_cell() {
    if !require(
        "gate_mock_dies",
        &[Requirement::Root, Requirement::NetTools],
    ) {
        return;
    }
    let plan = plan(
        &[Preset::EarthlyRun],
        &[Probe::Ttl, Probe::Client(Client::RustSdk)],
    );
    let lab = FaultyLab {
        tools: Tools::locate(&plan.clients).unwrap(),
        cut: None,
        // After the tokens mode is set and the TTL probe has run: during the SDK's search.
        dying: Some((Preset::EarthlyRun, 3)),
    };
    let err = tokio::task::block_in_place(|| sweep::run(&lab, &plan, &|_| {})).unwrap_err();
    match &err {
        SweepError::MockDied {
            topology,
            client,
            http_tokens,
        } => {
            assert_eq!(*topology, Topology::from(Preset::EarthlyRun));
            assert_eq!(*client, Probe::Client(Client::RustSdk));
            assert_eq!(*http_tokens, HttpTokens::Required);
        }
        other => panic!("not a dead mock: {other}"),
    }
    assert_eq!(
        err.to_string(),
        "topology earthly-run, client sdk, tokens required: the mock stopped serving \
         during the measurement, so nothing after it can be trusted"
    );
    assert!(my_namespaces().is_empty(), "{:?}", my_namespaces());
}
