//! Connection timeouts without a timer per operation.
//!
//! A tokio timer registered while the runtime is busy wakes the runtime's driver with an eventfd
//! `write(2)`: with one timer per read and per write that was 1.5 system calls per request, more
//! than io_uring itself needed. Instead each worker keeps one table of deadlines, swept by one
//! task a few times a second. A connection only stores its next deadline in a `Cell`; when a
//! deadline passes, the sweeper shuts the socket down, which completes the operation in flight
//! (under tokio-uring that is the only way to abandon an operation anyway), and the connection
//! sees [`Deadline::expired`] and closes. Timeouts are whole seconds, so firing up to one sweep
//! late is fine.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How often the table is swept while it has entries.
pub const SWEEP: Duration = Duration::from_millis(100);

/// What the connection is waiting for, which decides how the socket is shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Reading: shutting down the read side ends the read and still lets a 408 go out.
    Read,
    /// Writing: both sides go, so the stuck write fails.
    Write,
}

/// One connection's deadline.
#[derive(Debug)]
pub struct Deadline {
    fd: RawFd,
    at: Cell<Option<Instant>>,
    wait: Cell<Wait>,
    /// Time a write may go without progress, for [`Deadline::progress`].
    stall: Cell<Duration>,
    expired: Cell<bool>,
}

impl Deadline {
    /// The next read must complete within `d`.
    pub fn read_within(&self, d: Duration) {
        self.at.set(Some(Instant::now() + d));
        self.wait.set(Wait::Read);
    }

    /// The next read must complete by `at`.
    pub fn read_by(&self, at: Instant) {
        self.at.set(Some(at));
        self.wait.set(Wait::Read);
    }

    /// Writes follow; each one must make progress within `stall`. This starts a new phase, so an
    /// expiry of the read before it (answered with a 408) does not count against the write.
    pub fn writing(&self, stall: Duration) {
        self.stall.set(stall);
        self.wait.set(Wait::Write);
        self.expired.set(false);
        self.progress();
    }

    /// A write made progress: the stall clock starts again.
    pub fn progress(&self) {
        self.at.set(Some(Instant::now() + self.stall.get()));
    }

    /// True once the sweeper has shut the socket down for this deadline.
    pub fn expired(&self) -> bool {
        self.expired.get()
    }
}

/// A worker's deadlines.
#[derive(Debug, Default)]
pub struct Deadlines {
    entries: RefCell<Vec<Weak<Deadline>>>,
    nonempty: Notify,
}

impl Deadlines {
    /// Registers the socket `fd`; the entry goes away when the returned handle is dropped, which
    /// must happen before the socket is closed.
    pub fn register(&self, fd: RawFd) -> Rc<Deadline> {
        let d = Rc::new(Deadline {
            fd,
            at: Cell::new(None),
            wait: Cell::new(Wait::Read),
            stall: Cell::new(Duration::ZERO),
            expired: Cell::new(false),
        });
        let mut entries = self.entries.borrow_mut();
        entries.push(Rc::downgrade(&d));
        if entries.len() == 1 {
            self.nonempty.notify_one();
        }
        d
    }

    /// Shuts down every socket whose deadline has passed; forgets closed connections.
    pub fn sweep(&self, now: Instant) {
        self.entries.borrow_mut().retain(|w| {
            let Some(d) = w.upgrade() else { return false };
            if !d.expired.get() && d.at.get().is_some_and(|at| at <= now) {
                d.expired.set(true);
                let how = match d.wait.get() {
                    Wait::Read => libc::SHUT_RD,
                    Wait::Write => libc::SHUT_RDWR,
                };
                // SAFETY: the entry is alive, so its connection still owns the open socket `fd`
                // (the handle is dropped before the socket); shutdown(2) only changes its state.
                unsafe { libc::shutdown(d.fd, how) };
            }
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
            self.sweep(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn expired_read_deadline_ends_the_read_side() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let table = Deadlines::default();
        let d = table.register(server.as_raw_fd());
        d.read_within(Duration::from_secs(5));
        table.sweep(Instant::now());
        assert!(!d.expired());
        table.sweep(Instant::now() + Duration::from_secs(6));
        assert!(d.expired());
        // The read side is shut: reads end at once, writes still reach the client.
        let mut b = [0u8; 1];
        assert_eq!(server.read(&mut b).unwrap(), 0);
        server.write_all(b"x").unwrap();
        client.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn dropped_handles_leave_the_table() {
        let table = Deadlines::default();
        let d = table.register(-1);
        drop(d);
        table.sweep(Instant::now());
        assert!(table.entries.borrow().is_empty());
    }
}
