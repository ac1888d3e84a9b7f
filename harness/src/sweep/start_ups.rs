//! How many clients start up at once. A run's CPU is almost all its client's start-up
//! (the AWS CLI's, boto3's or Ruby's session and model loading: 0.1 to 0.5 s of CPU each,
//! warm or cold, see [`crate::probe::warm`]), and a failing run's waiting for its
//! time-out costs none. So a run holds a place from its start
//! until the mock hears from it (its start-up is over) or it ends: a sweep that runs
//! many cells at once keeps the machine's cores busy with start-ups instead of
//! thrashing them, and a client that has started is not starved while it talks to the
//! mock, which would make a token look late.

use std::sync::{Condvar, Mutex};

/// The places for starting clients, shared by every cell of a sweep.
#[derive(Debug)]
pub(super) struct StartUps {
    free: Mutex<usize>,
    freed: Condvar,
}

impl StartUps {
    /// `places` clients may start up at once (at least one).
    pub(super) fn new(places: usize) -> StartUps {
        StartUps {
            free: Mutex::new(places.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Two per core of this machine: a start-up also waits for its disk and its
    /// process's set-up, so one per core leaves the cores idle at times.
    pub(super) fn for_this_machine() -> StartUps {
        StartUps::new(2 * std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Waits for a place, and takes it.
    pub(super) fn enter(&self) -> Place<'_> {
        let mut free = self.free.lock().expect("start-ups");
        while *free == 0 {
            free = self.freed.wait(free).expect("start-ups");
        }
        *free -= 1;
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
            *self.start_ups.free.lock().expect("start-ups") += 1;
            self.start_ups.freed.notify_one();
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
                    let mut place = start_ups.enter();
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
        assert_eq!(
            *start_ups.free.lock().unwrap(),
            2,
            "every place came back once"
        );
        let _held = start_ups.enter();
        assert_eq!(*start_ups.free.lock().unwrap(), 1);
    }
}
