//! The monotonic clock connections and deadlines read, injectable so that timeouts can be tested
//! in microseconds: [`Clock::turns`] in a worker (one reading per turn of its runtime),
//! [`Clock::System`] elsewhere, [`Clock::manual`] in tests, which only moves when the test
//! advances it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::runtime::RuntimeMetrics;

pub use std::time::Instant;

/// How many readings one clock read may serve within a turn of the runtime before the next
/// reading reads the clock again: on a worker so busy that it never sleeps, a reading is shared
/// by at most this many askers (about eight requests), not for an unbounded time.
const SHARED_READINGS: u32 = 16;

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The operating system's monotonic clock.
    #[default]
    System,
    /// The operating system's monotonic clock, read once per turn of the worker's runtime.
    Turns(Rc<Turns>),
    /// A clock that stands still until [`Clock::advance`] moves it.
    Manual(Rc<Cell<Instant>>),
}

/// The state of [`Clock::Turns`]: the reading of the current turn.
///
/// A turn is what the runtime does between two sleeps: it wakes, runs every task that became
/// ready, and sleeps again, within microseconds on a busy worker. Everything that asks for the
/// time in one turn gets the same reading, as nginx's cached time (updated once per event loop
/// iteration) does: a request read and answered in the same turn lasted 0 µs, as in nginx's
/// `$request_time`. tokio's park count tells turns apart (an atomic load); it counts only parks
/// that sleep, so a runtime that polls its drivers without sleeping (every 61 tasks, or while
/// work remains) stays in one turn, and after [`SHARED_READINGS`] readings in one turn the clock
/// is read again.
#[derive(Debug)]
pub struct Turns {
    metrics: RuntimeMetrics,
    parks: Cell<u64>,
    left: Cell<u32>,
    at: Cell<Instant>,
}

impl Turns {
    fn now(&self) -> Instant {
        let parks = self.metrics.worker_park_count(0);
        let left = self.left.get();
        if parks == self.parks.get() && left > 0 {
            self.left.set(left - 1);
            return self.at.get();
        }
        let now = Instant::now();
        self.parks.set(parks);
        self.left.set(SHARED_READINGS - 1);
        self.at.set(now);
        now
    }
}

impl Clock {
    /// A manual clock, starting now.
    pub fn manual() -> Clock {
        Clock::Manual(Rc::new(Cell::new(Instant::now())))
    }

    /// The clock of a worker thread's runtime, read at most once per turn of it (see
    /// [`Turns`]). Must be called inside a current-thread tokio runtime (a worker's).
    pub fn turns() -> Clock {
        let metrics = tokio::runtime::Handle::current().metrics();
        // This reading is the current turn's: it serves the next SHARED_READINGS readings.
        Clock::Turns(Rc::new(Turns {
            parks: Cell::new(metrics.worker_park_count(0)),
            metrics,
            left: Cell::new(SHARED_READINGS),
            at: Cell::new(Instant::now()),
        }))
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Turns(t) => t.now(),
            Clock::Manual(t) => t.get(),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.set(t.get() + by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    }

    #[test]
    fn one_reading_serves_a_turn_and_a_park_starts_the_next() {
        runtime().block_on(async {
            let clock = Clock::turns();
            let first = clock.now();
            // No park in between: the same reading, though time moved on.
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(clock.now(), first);
            // Sleeping parks the runtime: a new turn, a new reading.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let second = clock.now();
            assert!(
                second >= first + Duration::from_millis(4),
                "{first:?} {second:?}"
            );
            assert_eq!(clock.now(), second);
        });
    }

    #[test]
    fn a_turn_that_never_parks_still_reads_the_clock_every_few_readings() {
        runtime().block_on(async {
            let clock = Clock::turns();
            let first = clock.now();
            std::thread::sleep(Duration::from_millis(2));
            let readings: Vec<Instant> = (0..SHARED_READINGS).map(|_| clock.now()).collect();
            // The turn's first reading serves SHARED_READINGS readings in all; the next one reads.
            let (shared, fresh) = readings.split_at(SHARED_READINGS as usize - 1);
            assert!(shared.iter().all(|&r| r == first));
            assert!(fresh[0] >= first + Duration::from_millis(2));
        });
    }
}
