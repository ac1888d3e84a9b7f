//! What `measure` shows while it runs (a bar per topology: its cells as they settle and
//! the runs it is waiting for; one overall bar with an estimate of the time left), and
//! how much of the run was time-outs, for its last line.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imds_harness::probe::Probe;
use imds_harness::sweep::{CellKey, SweepEvent, SweepPlan};
use imds_harness::topology::Topology;
use imds_vocab::{HopLimit, HttpTokens};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How many runs a cell takes with a right seed: the seed, the one below it, and that
/// failure once more. The estimate of the time left counts on it.
const RUNS_PER_CELL: u32 = 3;

/// The progress of a sweep, fed its [`SweepEvent`]s from the worker threads.
pub(super) struct SweepProgress {
    overall: ProgressBar,
    bars: HashMap<Topology, ProgressBar>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The runs under way: their hop limit and when they started.
    running: HashMap<CellKey, (Option<HopLimit>, Instant)>,
    /// The cells not settled yet, with the runs each has made.
    unsettled: HashMap<CellKey, u32>,
    /// The longest run of each client so far.
    longest: HashMap<Probe, Duration>,
    /// Every failing run: when it started and how long it waited.
    failures: Vec<(Instant, Duration)>,
}

impl SweepProgress {
    /// Bars for `plan` on stderr; `visible: false` draws nothing (but still counts).
    pub(super) fn new(plan: &SweepPlan, visible: bool) -> SweepProgress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let per_topology = (plan.clients.len() * plan.modes.len()) as u64;
        let overall = multi.add(
            ProgressBar::new(per_topology * plan.topologies.len() as u64).with_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} cells {wide_msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
        );
        let style =
            ProgressStyle::with_template("  {prefix:<22} [{bar:14}] {pos:>2}/{len} {wide_msg}")
                .expect("a valid template")
                .progress_chars("=> ");
        let bars = plan
            .topologies
            .iter()
            .map(|&topology| {
                let bar = multi.add(
                    ProgressBar::new(per_topology)
                        .with_style(style.clone())
                        .with_prefix(topology.to_string())
                        .with_message("waiting for a worker"),
                );
                (topology, bar)
            })
            .collect();
        overall.enable_steady_tick(Duration::from_millis(250));
        let unsettled = plan
            .topologies
            .iter()
            .flat_map(|&topology| {
                plan.modes.iter().flat_map(move |&http_tokens| {
                    plan.clients.iter().map(move |&client| CellKey {
                        topology,
                        client,
                        http_tokens,
                    })
                })
            })
            .map(|key| (key, 0))
            .collect();
        SweepProgress {
            overall,
            bars,
            state: Mutex::new(State {
                unsettled,
                ..State::default()
            }),
        }
    }

    /// Takes in one event of the sweep.
    pub(super) fn on_event(&self, event: SweepEvent<'_>) {
        let mut state = self.state.lock().expect("progress");
        let topology = match event {
            SweepEvent::Probing { key, hop_limit } => {
                state.running.insert(key, (hop_limit, Instant::now()));
                key.topology
            }
            SweepEvent::Probed {
                key,
                ok,
                started,
                elapsed,
                ..
            } => {
                state.running.remove(&key);
                if let Some(runs) = state.unsettled.get_mut(&key) {
                    *runs += 1;
                }
                let longest = state.longest.entry(key.client).or_default();
                *longest = (*longest).max(elapsed);
                if !ok {
                    state.failures.push((started, elapsed));
                }
                key.topology
            }
            SweepEvent::Settled(cell) => {
                let key = CellKey {
                    topology: cell.topology,
                    client: cell.client,
                    http_tokens: cell.http_tokens,
                };
                state.unsettled.remove(&key);
                self.overall.inc(1);
                if let Some(bar) = self.bars.get(&cell.topology) {
                    bar.inc(1);
                }
                cell.topology
            }
        };
        if let Some(bar) = self.bars.get(&topology) {
            if bar.position() == bar.length().unwrap_or(0) {
                bar.finish_with_message(format!("done in {:.1} s", bar.elapsed().as_secs_f64()));
            } else {
                bar.set_message(state.waiting_for(topology));
            }
        }
        self.overall.set_message(match state.time_left() {
            Some(left) => format!("~{} s left", left.as_secs()),
            None => String::new(),
        });
    }

    /// Removes the bars; what the run spent waiting for time-outs.
    pub(super) fn finish(&self) -> TimeOuts {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
        TimeOuts::of(&self.state.lock().expect("progress").failures)
    }
}

impl State {
    /// The runs under way at `topology`: `required: ruby@2 go@2, optional: cli@1`.
    fn waiting_for(&self, topology: Topology) -> String {
        let mut modes: Vec<(HttpTokens, Vec<String>)> = Vec::new();
        let mut running: Vec<_> = self
            .running
            .iter()
            .filter(|(key, _)| key.topology == topology)
            .collect();
        running.sort_by_key(|(key, _)| (key.http_tokens == HttpTokens::Optional, key.client));
        for (key, (hop_limit, _)) in running {
            let run = match hop_limit {
                Some(h) => format!("{}@{h}", key.client),
                None => key.client.to_string(),
            };
            match modes.iter_mut().find(|(mode, _)| *mode == key.http_tokens) {
                Some((_, runs)) => runs.push(run),
                None => modes.push((key.http_tokens, vec![run])),
            }
        }
        if modes.is_empty() {
            return String::new();
        }
        let modes: Vec<String> = modes
            .into_iter()
            .map(|(mode, runs)| format!("{mode}: {}", runs.join(" ")))
            .collect();
        format!("waiting for {}", modes.join(", "))
    }

    /// An estimate of the time left: every unsettled cell makes the runs a seeded cell
    /// makes, each as long as its client's longest so far; a topology's cells at once
    /// (both backends), the topologies at once. `None` before any client ended a run.
    fn time_left(&self) -> Option<Duration> {
        let slowest = self.longest.values().max()?;
        let mut per_topology: HashMap<Topology, Duration> = HashMap::new();
        for (key, &runs) in &self.unsettled {
            let run = self.longest.get(&key.client).unwrap_or(slowest);
            let mut left = *run * RUNS_PER_CELL.saturating_sub(runs).max(1);
            if let Some((_, started)) = self.running.get(key) {
                left = left.saturating_sub(started.elapsed().min(*run));
            }
            let topology = per_topology.entry(key.topology).or_default();
            *topology = (*topology).max(left);
        }
        Some(per_topology.into_values().max().unwrap_or_default())
    }
}

/// How much of a run was client time-outs: the failing runs' waiting, summed over runs,
/// and the part of the run during which at least one was waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TimeOuts {
    /// The failing runs' durations, summed.
    pub(super) total: Duration,
    /// The wall-clock time covered by at least one failing run.
    pub(super) covered: Duration,
    /// How many runs failed.
    pub(super) runs: usize,
}

impl TimeOuts {
    /// Of failing runs, each as (start, duration).
    fn of(failures: &[(Instant, Duration)]) -> TimeOuts {
        let mut spans: Vec<(Instant, Instant)> = failures
            .iter()
            .map(|&(start, elapsed)| (start, start + elapsed))
            .collect();
        spans.sort();
        let mut covered = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (start, end) in spans {
            current = match current {
                Some((from, to)) if start <= to => Some((from, to.max(end))),
                Some((from, to)) => {
                    covered += to - from;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((from, to)) = current {
            covered += to - from;
        }
        TimeOuts {
            total: failures.iter().map(|(_, elapsed)| *elapsed).sum(),
            covered,
            runs: failures.len(),
        }
    }
}

/// `14.2 s of it waiting for time-outs (183.0 s in 61 failing runs, overlapped)`.
impl fmt::Display for TimeOuts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1} s of it waiting for time-outs ({:.1} s in {} failing run{}, overlapped)",
            self.covered.as_secs_f64(),
            self.total.as_secs_f64(),
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_outs_sum_the_failures_and_cover_their_union() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let failures = [
            (t0, s(7)),
            (t0 + s(1), s(2)),
            (t0 + s(5), s(5)),
            (t0 + s(20), s(1)),
        ];
        let time_outs = TimeOuts::of(&failures);
        assert_eq!(time_outs.total, s(15));
        assert_eq!(time_outs.covered, s(11), "0..10 and 20..21");
        assert_eq!(time_outs.runs, 4);
        assert_eq!(
            time_outs.to_string(),
            "11.0 s of it waiting for time-outs (15.0 s in 4 failing runs, overlapped)"
        );
        assert_eq!(
            TimeOuts::of(&[]),
            TimeOuts {
                total: Duration::ZERO,
                covered: Duration::ZERO,
                runs: 0
            }
        );
    }

    #[test]
    fn the_estimate_waits_for_the_slowest_cell_of_a_topology() {
        let topology = Topology::parse("docker-run").unwrap();
        let key = |client| CellKey {
            topology,
            client,
            http_tokens: HttpTokens::Required,
        };
        let (ruby, sdk) = (
            Probe::Client(imds_vocab::Client::RubySdk),
            Probe::Client(imds_vocab::Client::RustSdk),
        );
        let mut state = State {
            unsettled: HashMap::from([(key(ruby), 1), (key(sdk), 2)]),
            ..State::default()
        };
        assert_eq!(state.time_left(), None, "no run has ended yet");
        state.longest.insert(ruby, Duration::from_secs(7));
        state.longest.insert(sdk, Duration::from_secs(1));
        // Ruby: two runs of 7 s left; the SDK one of 1 s.
        assert_eq!(state.time_left(), Some(Duration::from_secs(14)));
        state.unsettled.remove(&key(ruby));
        assert_eq!(state.time_left(), Some(Duration::from_secs(1)));
        assert!(state.waiting_for(topology).is_empty());
        state
            .running
            .insert(key(sdk), (HopLimit::new(2).ok(), Instant::now()));
        assert_eq!(state.waiting_for(topology), "waiting for required: sdk@2");
    }
}
