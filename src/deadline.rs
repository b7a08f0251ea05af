//! Connection timeouts and shutdown without a timer or a channel per operation.
//!
//! A tokio timer registered while the runtime is busy wakes the runtime's driver with an eventfd
//! `write(2)`: with one timer per read and per write that was 1.5 system calls per request, more
//! than io_uring itself needed. Instead each worker keeps one table of deadlines, swept by one
//! task a few times a second. A connection only stores its next deadline in a `Cell`; when a
//! deadline passes, the sweeper shuts the socket down, which completes the operation in flight
//! (under tokio-uring that is the only way to abandon an operation anyway), and the connection
//! sees [`Deadline::expired`] and closes. Timeouts are whole seconds, so firing up to one sweep
//! late is fine.
//!
//! Writes read no clock at all: a write that moves bytes only marks its deadline, and the sweep
//! that sees the mark moves the deadline to a full stall period from then. A stalled write is
//! cut off up to one sweep late, like every other deadline.
//!
//! The same table carries graceful shutdown to the connections: [`Deadlines::close_idle`] shuts
//! the sockets of connections waiting for a next request, [`Deadlines::abort_all`] every socket.
//! So no read or write has to race a shutdown signal. Each entry owns a handle on its socket
//! ([`Shut`]), so the socket stays open for as long as the table can reach it: no descriptor can
//! be closed and reused under the sweeper.

use std::cell::{Cell, RefCell};
use std::net::Shutdown;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, Instant};

/// How often the table is swept while it has entries.
pub const SWEEP: Duration = Duration::from_millis(100);

/// A connection's socket, as the table sees it: something it can shut down.
pub trait Shut {
    /// Shuts down one or both directions, so that an operation in flight completes.
    fn shut(&self, how: Shutdown);
}

/// What the connection is waiting for, which decides how the socket is shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Waiting for the first byte of a next request: closed at once by a graceful shutdown.
    Idle,
    /// Reading a request: shutting down the read side ends the read and still lets a 408 out.
    Read,
    /// Writing: both sides go, so the stuck write fails.
    Write,
}

/// One connection's deadline.
pub struct Deadline {
    handle: Rc<dyn Shut>,
    clock: Clock,
    at: Cell<Option<Instant>>,
    wait: Cell<Wait>,
    /// Time a write may go without progress, for [`Deadline::progress`].
    stall: Cell<Duration>,
    /// A write made progress (or began) since the last sweep, which then restarts the stall
    /// period.
    moved: Cell<bool>,
    expired: Cell<bool>,
}

impl Deadline {
    /// The connection waits for a next request until `at`; a graceful shutdown closes it.
    pub fn idle_until(&self, at: Instant) {
        self.at.set(Some(at));
        self.wait.set(Wait::Idle);
    }

    /// The next read must complete within `d`.
    pub fn read_within(&self, d: Duration) {
        self.read_by(self.clock.now() + d);
    }

    /// The next read must complete by `at`.
    pub fn read_by(&self, at: Instant) {
        self.at.set(Some(at));
        self.wait.set(Wait::Read);
    }

    /// Writes follow; each one must make progress within `stall`, counted from the next sweep.
    /// This starts a new phase, so an expiry of the read before it (answered with a 408) does
    /// not count against the write.
    pub fn writing(&self, stall: Duration) {
        self.stall.set(stall);
        self.wait.set(Wait::Write);
        self.expired.set(false);
        self.at.set(None);
        self.progress();
    }

    /// A write made progress: the next sweep starts the stall period again. Reads no clock.
    pub fn progress(&self) {
        self.moved.set(true);
    }

    /// True once the sweeper has shut the socket down for this deadline.
    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    fn fire(&self, how: Shutdown) {
        self.expired.set(true);
        self.handle.shut(how);
    }
}

/// A worker's deadlines.
#[derive(Default)]
pub struct Deadlines {
    clock: Clock,
    entries: RefCell<Vec<Weak<Deadline>>>,
    nonempty: Notify,
}

impl Deadlines {
    /// A table reading time from `clock`.
    pub fn new(clock: Clock) -> Deadlines {
        Deadlines {
            clock,
            ..Deadlines::default()
        }
    }

    /// Registers a connection's socket; the entry goes away when the returned handle is dropped.
    pub fn register(&self, handle: Rc<dyn Shut>) -> Rc<Deadline> {
        let d = Rc::new(Deadline {
            handle,
            clock: self.clock.clone(),
            at: Cell::new(None),
            wait: Cell::new(Wait::Read),
            stall: Cell::new(Duration::ZERO),
            moved: Cell::new(false),
            expired: Cell::new(false),
        });
        let mut entries = self.entries.borrow_mut();
        entries.push(Rc::downgrade(&d));
        if entries.len() == 1 {
            self.nonempty.notify_one();
        }
        d
    }

    /// Shuts down every socket whose deadline has passed; restarts the stall period of writes
    /// that moved since the last sweep; forgets closed connections.
    pub fn sweep(&self, now: Instant) {
        self.each(|d| {
            if d.wait.get() == Wait::Write && d.moved.replace(false) {
                d.at.set(Some(now + d.stall.get()));
            } else if !d.expired.get() && d.at.get().is_some_and(|at| at <= now) {
                d.fire(match d.wait.get() {
                    Wait::Idle | Wait::Read => Shutdown::Read,
                    Wait::Write => Shutdown::Both,
                });
            }
        });
    }

    /// Graceful shutdown: closes every connection that waits for a next request. The others
    /// notice the shutdown when they finish their response.
    pub fn close_idle(&self) {
        self.each(|d| {
            if d.wait.get() == Wait::Idle {
                d.handle.shut(Shutdown::Read);
            }
        });
    }

    /// The end of a graceful shutdown: every socket is shut down, whatever it was doing.
    pub fn abort_all(&self) {
        self.each(|d| d.fire(Shutdown::Both));
    }

    /// Forgets the entries of closed connections now, rather than at the next sweep.
    pub fn forget_closed(&self) {
        self.each(|_| {});
    }

    /// Connections still registered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    fn each(&self, mut f: impl FnMut(&Deadline)) {
        self.entries.borrow_mut().retain(|w| {
            let Some(d) = w.upgrade() else { return false };
            f(&d);
            true
        });
    }

    /// Sweeps until the worker ends; sleeps without a timer while there is nothing to watch.
    pub async fn run(&self) {
        loop {
            if self.entries.borrow().is_empty() {
                self.nonempty.notified().await;
            }
            tokio::time::sleep(SWEEP).await;
            self.sweep(self.clock.now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Probe(RefCell<Vec<Shutdown>>);

    impl Shut for Probe {
        fn shut(&self, how: Shutdown) {
            self.0.borrow_mut().push(how);
        }
    }

    /// A connection registered in `t`, with the probe that records how it was shut down.
    fn watched(t: &Deadlines) -> (Rc<Probe>, Rc<Deadline>) {
        let probe = Rc::new(Probe::default());
        let d = t.register(probe.clone());
        (probe, d)
    }

    fn table() -> (Deadlines, Clock) {
        let clock = Clock::manual();
        (Deadlines::new(clock.clone()), clock)
    }

    #[test]
    fn expired_read_deadline_shuts_the_read_side() {
        let (t, clock) = table();
        let (probe, d) = watched(&t);
        d.read_within(Duration::from_secs(5));
        t.sweep(clock.now());
        assert!(!d.expired());
        clock.advance(Duration::from_secs(6));
        t.sweep(clock.now());
        assert!(d.expired());
        assert_eq!(*probe.0.borrow(), [Shutdown::Read]);
        // Fired once only.
        t.sweep(clock.now());
        assert_eq!(probe.0.borrow().len(), 1);
    }

    #[test]
    fn a_write_that_never_moves_is_cut_off_one_stall_period_after_the_first_sweep() {
        let (t, clock) = table();
        let (probe, d) = watched(&t);
        d.writing(Duration::from_secs(2));
        // The deadline starts at the first sweep after the write began (at most one sweep late).
        clock.advance(SWEEP);
        t.sweep(clock.now());
        clock.advance(Duration::from_secs(2) - Duration::from_millis(1));
        t.sweep(clock.now());
        assert!(!d.expired());
        clock.advance(Duration::from_millis(1));
        t.sweep(clock.now());
        assert!(d.expired());
        assert_eq!(*probe.0.borrow(), [Shutdown::Both]);
    }

    #[test]
    fn progress_before_a_sweep_counts_once() {
        let (t, clock) = table();
        let (probe, d) = watched(&t);
        d.writing(Duration::from_secs(2));
        t.sweep(clock.now()); // cut off at 2 s without progress
        d.progress();
        d.progress();
        clock.advance(Duration::from_secs(1));
        t.sweep(clock.now()); // moved: 2 s from here, so 3 s
        clock.advance(Duration::from_millis(1500));
        t.sweep(clock.now());
        assert!(!d.expired(), "the progress counted");
        clock.advance(Duration::from_millis(500));
        t.sweep(clock.now()); // 3 s: the second progress() did not count again
        assert_eq!(*probe.0.borrow(), [Shutdown::Both]);
    }

    #[test]
    fn progress_keeps_a_write_alive_past_its_first_stall_period() {
        let (t, clock) = table();
        let (probe, d) = watched(&t);
        d.writing(Duration::from_secs(2));
        t.sweep(clock.now()); // the stall period starts: cut off at 2 s without progress
        clock.advance(Duration::from_millis(1900));
        d.progress();
        clock.advance(Duration::from_millis(200));
        t.sweep(clock.now()); // 2.1 s: moved since the last sweep, so 2 s from here
        assert!(!d.expired(), "progress was made");
        clock.advance(Duration::from_millis(1900));
        t.sweep(clock.now());
        assert!(!d.expired());
        clock.advance(Duration::from_millis(100));
        t.sweep(clock.now()); // 4.1 s: no progress for a whole period
        assert_eq!(*probe.0.borrow(), [Shutdown::Both]);
    }

    #[test]
    fn close_idle_spares_busy_connections_and_abort_takes_all() {
        let (t, clock) = table();
        let (idle, busy) = (Rc::new(Probe::default()), Rc::new(Probe::default()));
        let di = t.register(idle.clone());
        let db = t.register(busy.clone());
        di.idle_until(clock.now() + Duration::from_secs(5));
        db.writing(Duration::from_secs(5));
        t.close_idle();
        assert_eq!(*idle.0.borrow(), [Shutdown::Read]);
        assert!(busy.0.borrow().is_empty());
        t.abort_all();
        assert_eq!(*busy.0.borrow(), [Shutdown::Both]);
        assert!(db.expired());
    }

    #[test]
    fn dropped_handles_leave_the_table() {
        let (t, clock) = table();
        let d = t.register(Rc::new(Probe::default()));
        assert_eq!(t.len(), 1);
        drop(d);
        t.sweep(clock.now());
        assert_eq!(t.len(), 0);
    }
}
