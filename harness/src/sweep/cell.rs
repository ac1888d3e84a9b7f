//! Measuring one cell: a client's search over hop limits at a leaf, against one mock
//! already set to the cell's tokens mode, with the retry rule and the "via IMDSv1"
//! attribution read from that mock alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use imds_mock::{ImdsVersion, MockAws, RequestRecord, Service};
use imds_vocab::HopLimit;

use super::client::run_client_at;
use super::error::{Stop, Stopped, SweepError};
use super::plan::{CellKey, SweepEvent, SweepPlan};
use super::search::{search, Search, Strategy};
use super::start_ups::StartUps;
use crate::cell::Cell;
use crate::model;
use crate::probe::env::ClientEnv;
use crate::probe::{Leaf, Probe, ProbeOutcome};

/// How often a failed run that shows no dropped token is run again.
const RETRIES: u32 = 2;

/// An IMDS GET the mock answered with 200: with tokens required its caller had a token.
fn answered_imds_get(request: &RequestRecord) -> bool {
    request.service == Service::Imds && request.method == "GET" && request.status == 200
}

/// Everything one cell's measurement uses.
pub(super) struct CellRun<'a> {
    /// Which cell.
    pub(super) key: CellKey,
    /// Where the client runs.
    pub(super) leaf: &'a dyn Leaf,
    /// The mock the client reaches through `env`, set to the cell's tokens mode; only
    /// this cell's client talks to it while the cell is measured.
    pub(super) mock: &'a MockAws,
    /// The client's environment, naming `mock`'s IMDS.
    pub(super) env: &'a ClientEnv,
    /// `mock`'s STS as the leaf reaches it.
    pub(super) sts_url: &'a str,
    /// The plan (strategy and probe timeout).
    pub(super) plan: &'a SweepPlan,
    /// Told of every run and of the settled cell.
    pub(super) events: &'a (dyn Fn(SweepEvent<'_>) + Sync),
    /// The sweep's first error: no run starts after it.
    pub(super) stop: &'a Stop,
    /// Where the client waits for its turn to start up.
    pub(super) start_ups: &'a StartUps,
    /// Its place in that line: the longest first ([`StartUps::enter`]).
    pub(super) precedence: Duration,
}

/// How often a run's start-up is checked for being over.
const START_UP_POLL: Duration = Duration::from_millis(20);

impl CellRun<'_> {
    /// Runs the client once at the mock's current hop limit (`None`: the TTL probe, which
    /// needs none). A failure counts only while the mock serves: checked after every run.
    fn run_once(&self, hop_limit: Option<HopLimit>) -> Result<ProbeOutcome, Stopped> {
        self.stop.check()?;
        let key = self.key;
        let mark = self.mock.request_mark();
        let mut place = self.start_ups.enter(self.precedence);
        (self.events)(SweepEvent::Probing { key, hop_limit });
        let started = Instant::now();
        let ended = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            // The start-up is over when the mock hears from the client, or the run ends.
            scope.spawn(|| {
                while !ended.load(Ordering::SeqCst) && self.mock.request_mark() == mark {
                    std::thread::sleep(START_UP_POLL);
                }
                place.leave();
            });
            let outcome = run_client_at(
                self.leaf,
                self.env,
                self.plan.probe_timeout,
                key.client,
                self.sts_url,
            );
            ended.store(true, Ordering::SeqCst);
            outcome
        })
        .map_err(|source| {
            self.stop.fail(SweepError::Probe {
                topology: key.topology,
                client: key.client,
                source,
            })
        })?;
        (self.events)(SweepEvent::Probed {
            key,
            hop_limit,
            ok: outcome.ok,
            started,
            elapsed: started.elapsed(),
        });
        if !self.mock.is_serving() {
            return Err(self.stop.fail(SweepError::MockDied {
                topology: key.topology,
                client: key.client,
                http_tokens: key.http_tokens,
            }));
        }
        Ok(outcome)
    }

    /// The cell, its search seeded by `seed` (with the bisect strategy).
    pub(super) fn measure(&self, seed: Option<HopLimit>) -> Result<Cell, Stopped> {
        let key = self.key;
        let started = Instant::now();
        let mut via_at: BTreeMap<HopLimit, ImdsVersion> = BTreeMap::new();
        let mut reasons: BTreeMap<HopLimit, String> = BTreeMap::new();
        let mut ttl_reason = None;
        let searched = if key.client == Probe::Ttl {
            let outcome = self.run_once(None)?;
            // A place that needs a TTL above 64 gets no token at any hop limit.
            let needed = outcome
                .hop_limit_needed
                .and_then(|h| HopLimit::new(h.into()).ok());
            ttl_reason = outcome.reason;
            Search {
                minimal: needed,
                tried: needed.map(|h| vec![(h, true)]).unwrap_or_default(),
            }
        } else {
            search(
                self.plan.strategy,
                seed.filter(|_| self.plan.strategy == Strategy::Bisect),
                |h| {
                    self.mock.set_hop_limit(h);
                    let (outcome, via) = self.run_with_retries(h)?;
                    if let Some(via) = via {
                        via_at.insert(h, via);
                    } else if let Some(reason) = outcome.reason {
                        reasons.insert(h, reason);
                    }
                    Ok::<_, Stopped>(outcome.ok)
                },
            )?
        };
        let topology = key.topology;
        let minimal = searched.minimal;
        let cell = Cell {
            topology,
            depth: topology.depth(),
            layers: topology.spelling(),
            model: model::predicted(&topology, key.client),
            client: key.client,
            http_tokens: key.http_tokens,
            minimal_hop_limit: minimal,
            works_at_any_hop_limit: key.client != Probe::Ttl
                && minimal == Some(HopLimit::MIN)
                && topology.routed_hops() > 0,
            via: minimal.and_then(|h| via_at.get(&h).copied()),
            failure_below: minimal
                .and_then(HopLimit::below)
                .and_then(|h| reasons.get(&h).cloned())
                .or(ttl_reason),
            tried: searched.tried,
            elapsed: started.elapsed(),
        };
        (self.events)(SweepEvent::Settled(&cell));
        Ok(cell)
    }

    /// The client's run at hop limit `h`, and on success the IMDS version its credentials
    /// came from. The hop limit drops only the answers to token requests. A failed run
    /// that shows no dropped token says nothing about it, and is run again, up to
    /// [`RETRIES`] times: one the mock saw nothing of (a connect that timed out on a busy
    /// machine), or one whose token came through (a GET was answered, then something
    /// timed out).
    fn run_with_retries(
        &self,
        h: HopLimit,
    ) -> Result<(ProbeOutcome, Option<ImdsVersion>), Stopped> {
        let mut attempt = 0;
        let (before, outcome, after) = loop {
            let before = self.mock.events();
            let mark = self.mock.request_mark();
            let outcome = self.run_once(Some(h))?;
            let after = self.mock.events();
            if outcome.ok || attempt == RETRIES {
                break (before, outcome, after);
            }
            let token_came_through = self.mock.requests_since(mark).iter().any(answered_imds_get);
            if after != before && !token_came_through {
                break (before, outcome, after);
            }
            attempt += 1;
            tracing::debug!(
                topology = %self.key.topology,
                client = %self.key.client,
                hop_limit = %h,
                attempt,
                "the mock saw nothing of a failed run; again"
            );
        };
        let via = outcome
            .ok
            .then_some(if after.identity_v1 > before.identity_v1 {
                ImdsVersion::V1
            } else {
                ImdsVersion::V2
            });
        Ok((outcome, via))
    }
}
