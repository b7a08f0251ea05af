//! The monotonic clock connections and deadlines read, injectable so that timeouts can be tested
//! in microseconds: [`Clock::System`] in the server, [`Clock::manual`] in tests, which only moves
//! when the test advances it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

pub use std::time::Instant;

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The operating system's monotonic clock.
    #[default]
    System,
    /// A clock that stands still until [`Clock::advance`] moves it.
    Manual(Rc<Cell<Instant>>),
}

impl Clock {
    /// A manual clock, starting now.
    pub fn manual() -> Clock {
        Clock::Manual(Rc::new(Cell::new(Instant::now())))
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
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
