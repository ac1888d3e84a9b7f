//! How many clients start up at once. A run's CPU is almost all its client's start-up
//! (the AWS CLI's, boto3's or Ruby's session and model loading: 0.1 to 0.5 s of CPU each,
//! warm or cold, see [`crate::probe::warm`]), and a failing run's waiting for its
//! time-out costs none. So a run holds a place from its start
//! until the mock hears from it (its start-up is over) or it ends: a sweep that runs
//! many cells at once keeps the machine's cores busy with start-ups instead of
//! thrashing them, and a client that has started is not starved while it talks to the
//! mock, which would make a token look late. A free place goes to the waiting run whose
//! client waits longest when it fails (Ruby's 7 s first): its waiting then overlaps the
//! others' start-ups instead of beginning after them. The sweep puts the runs the others
//! wait for (the TTL probe, a topology's leader) before all (`precedence` in the sweep).

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The places for starting clients, shared by every cell of a sweep.
#[derive(Debug)]
pub(super) struct StartUps {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// The runs waiting for a place: the longest wait first, then the earliest come.
    waiting: BTreeSet<(std::cmp::Reverse<Duration>, u64)>,
    tickets: u64,
}

impl StartUps {
    /// `places` clients may start up at once (at least one).
    pub(super) fn new(places: usize) -> StartUps {
        StartUps {
            state: Mutex::new(State {
                free: places.max(1),
                waiting: BTreeSet::new(),
                tickets: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("start-ups")
    }

    /// Two per core of this machine: a start-up also waits for its disk and its
    /// process's set-up, so one per core leaves the cores idle at times.
    pub(super) fn for_this_machine() -> StartUps {
        StartUps::new(2 * std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Waits for a place, and takes it: `time_to_fail` is how long the run's client waits
    /// when it fails; the longest go first.
    pub(super) fn enter(&self, time_to_fail: Duration) -> Place<'_> {
        let mut state = self.lock();
        let ticket = (std::cmp::Reverse(time_to_fail), state.tickets);
        state.tickets += 1;
        state.waiting.insert(ticket);
        while state.free == 0 || state.waiting.first() != Some(&ticket) {
            state = self.freed.wait(state).expect("start-ups");
        }
        state.waiting.remove(&ticket);
        state.free -= 1;
        // The next in line may find a place too.
        self.freed.notify_all();
        Place {
            start_ups: self,
            held: true,
        }
    }
}

/// A place taken; left when [`Place::leave`] is called or it is dropped.
#[derive(Debug)]
pub(super) struct Place<'a> {
    start_ups: &'a StartUps,
    held: bool,
}

impl Place<'_> {
    /// Gives the place to the next client (once; later calls do nothing).
    pub(super) fn leave(&mut self) {
        if std::mem::take(&mut self.held) {
            self.start_ups.lock().free += 1;
            self.start_ups.freed.notify_all();
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn no_more_than_the_places_start_at_once_and_a_left_place_is_taken_again() {
        let start_ups = StartUps::new(2);
        let (inside, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let mut place = start_ups.enter(Duration::ZERO);
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    place.leave();
                    place.leave();
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(start_ups.lock().free, 2, "every place came back once");
        let _held = start_ups.enter(Duration::ZERO);
        assert_eq!(start_ups.lock().free, 1);
    }

    #[test]
    fn a_free_place_goes_to_the_longest_wait_first_then_the_earliest() {
        let start_ups = StartUps::new(1);
        let order = Mutex::new(Vec::new());
        let held = start_ups.enter(Duration::ZERO);
        std::thread::scope(|scope| {
            let comers = [("cli", 2), ("ttl", 0), ("ruby", 7), ("cli2", 2), ("go", 5)];
            for (come, (name, wait)) in comers.into_iter().enumerate() {
                let (start_ups, order) = (&start_ups, &order);
                scope.spawn(move || {
                    let _place = start_ups.enter(Duration::from_secs(wait));
                    order.lock().unwrap().push(name);
                });
                // Each is waiting before the next comes.
                while start_ups.lock().waiting.len() < come + 1 {
                    std::thread::yield_now();
                }
            }
            drop(held);
        });
        assert_eq!(*order.lock().unwrap(), ["ruby", "go", "cli", "cli2", "ttl"]);
    }
}
