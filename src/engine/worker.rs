//! A worker's life, shared by both engines: its runtime, its accept loop, its shutdown sequence.
//!
//! Each worker owns one listener and one single-threaded runtime. It caps its open connections
//! with a semaphore, spawns one local task per connection (a panic in one is contained to it:
//! see [`crate::panics`]), and on shutdown stops accepting, lets
//! in-flight responses finish (closing idle connections at once), and after
//! `shutdown_timeout_secs` aborts whatever is left. An engine plugs in through [`Driver`]: how to
//! run a runtime on this thread, and how to accept on it.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::Shared;
use crate::clock::{Clock, Instant};
use crate::conn::{self, Ctx, Phase, Transport};
use crate::deadline::Deadlines;
use crate::panics;
use crate::stats::WorkerPhase;
use crate::tally::{self, Report, Tally};

/// The engine-specific half of a listener.
#[allow(async_fn_in_trait)]
pub trait Acceptor {
    /// A connection, ready to be served.
    type Conn: Transport + 'static;
    /// Waits for the next connection.
    async fn accept(&self) -> io::Result<(Self::Conn, SocketAddr)>;
    /// Makes a pending accept fail, so the listener can be dropped without leaking a connection.
    fn stop(&self);
}

/// What an engine supplies to run a worker on the calling thread.
pub trait Driver {
    /// The engine's listener.
    type Acceptor: Acceptor;
    /// Starts this thread's runtime and runs `fut` on it to completion (inside a `LocalSet`).
    fn block_on(fut: impl Future<Output = ()>) -> io::Result<()>;
    /// Wraps a bound, listening socket; called inside the runtime.
    fn acceptor(listener: std::net::TcpListener) -> io::Result<Self::Acceptor>;
}

/// Why a worker could not start.
#[derive(Debug)]
pub struct WorkerError {
    /// The worker's index.
    pub index: usize,
    /// What failed.
    pub error: io::Error,
}

/// Runs one worker on the calling thread until `stop`; reports start-up success through `ready`.
pub fn run_worker<D: Driver>(
    shared: Arc<Shared>,
    index: usize,
    listener: std::net::TcpListener,
    stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), WorkerError>>,
) {
    let report = ready.clone();
    let ran = D::block_on(async move {
        let acceptor = match D::acceptor(listener) {
            Ok(a) => a,
            Err(error) => {
                let _ = ready.send(Err(WorkerError { index, error }));
                return;
            }
        };
        // Serving from here on (its listener accepts), before start-up reports the server as
        // listening, so readiness never lags the listening line.
        shared.stats.workers[index].set_phase(WorkerPhase::Serving);
        let _ = ready.send(Ok(()));
        if index == 0 && crate::fault::injected("worker-exit") {
            return;
        }
        if index == 0 && crate::fault::injected("worker-panic") {
            panic!("injected fault worker-panic");
        }
        run(acceptor, shared, index, stop).await;
    });
    if let Err(error) = ran {
        let _ = report.send(Err(WorkerError { index, error }));
    }
}

/// Runs the accept loop until `stop` turns true, then drains. Must run inside a `LocalSet`.
async fn run<A: Acceptor>(
    acceptor: A,
    shared: Arc<Shared>,
    worker: usize,
    mut stop: watch::Receiver<bool>,
) {
    // Fixed for the process's life: a reload reports a change of it as needing a restart.
    let max = shared.current().config.limits.max_connections_per_worker;
    let slots = Arc::new(Semaphore::new(max));
    let ctx = Rc::new(Ctx::new(shared.clone(), worker, Clock::turns()));
    let sweeper = tokio::task::spawn_local({
        let deadlines = ctx.deadlines.clone();
        async move { deadlines.run().await }
    });
    let stats = ctx.stats();
    let mut accept_errors = AcceptErrors::default();
    let occupancy = Rc::new(Occupancy::default());

    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            r = acceptor.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                if let Some(line) = accept_errors.accepted(&ctx.clock) {
                    tracing::warn!(worker, "{line}");
                }
                stats.connection_opened();
                occupancy.opened();
                let ctx = ctx.clone();
                let settings = ctx.settings_for_new_connection();
                let occupancy = occupancy.clone();
                tokio::task::spawn_local(async move {
                    let _open = OpenConnection {
                        ctx: &ctx,
                        occupancy: &occupancy,
                        _slot: permit,
                    };
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let socket = conn.handle();
                    let served =
                        panics::contain(conn::serve(conn, peer.ip(), &ctx, settings)).await;
                    if let Err(why) = served {
                        // A bug, confined to this connection: close it, say who it was, go on.
                        socket.shut(Shutdown::Both);
                        tracing::error!(
                            worker,
                            %peer,
                            "connection task failed with a panic: {why}; its connection was \
                             closed and the worker goes on"
                        );
                    }
                });
            }
            Err(e) => {
                let now = ctx.clock.now();
                if let Some(line) = accept_errors.failed(&e, now) {
                    tracing::warn!(worker, "{line}");
                }
                // Out of descriptors (or memory): the connection stays in the backlog and the
                // next accept would fail at once, so pause this worker's accepts; a connection
                // reset before it was accepted is just skipped.
                if let Some(pause) = accept_errors.pause(&e) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    acceptor.stop();
    ctx.set_phase(Phase::Draining);
    // The drain's limit is the one in force when it starts (a reload may have changed it).
    let shutdown_after = Duration::from_secs(shared.current().config.limits.shutdown_timeout_secs);
    if tokio::time::timeout(shutdown_after, all_closed(&slots, max))
        .await
        .is_err()
    {
        tracing::warn!(
            worker,
            "connections still busy after {shutdown_after:?}; closing them"
        );
        ctx.set_phase(Phase::Aborting);
        let _ = tokio::time::timeout(Duration::from_secs(2), all_closed(&slots, max)).await;
    }
    sweeper.abort();
    stats.set_phase(WorkerPhase::Stopped);
}

/// The first pause after an accept failed for want of descriptors or memory; it doubles while
/// accepts keep failing, up to [`ACCEPT_PAUSE_MAX`].
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// The longest pause between accepts while they fail for want of resources.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(100);

/// Failing accepts, kept quiet: under descriptor exhaustion every accept fails at once, and one
/// log line per failure would flood stderr (thousands a second) exactly when the operator needs
/// to read it. They are reported through a [`Tally`] (the first at once, then a count at most
/// every [`tally::INTERVAL`]), and the pause between accepts grows while they keep failing for
/// want of resources.
#[derive(Debug, Default)]
struct AcceptErrors {
    tally: Tally,
    /// The last failure's text.
    last: String,
    /// The current pause, while failures for want of resources go on.
    pause: Option<Duration>,
}

impl AcceptErrors {
    /// Records a failed accept; returns the line to log, if one is due.
    fn failed(&mut self, e: &io::Error, now: Instant) -> Option<String> {
        self.last = tally::describe(e);
        let report = self.tally.event(now)?;
        Some(self.line(report, ""))
    }

    /// Records a successful accept; returns the line to log, if failures are waiting to be
    /// reported and one is due. Reads the clock only then: this runs for every connection.
    fn accepted(&mut self, clock: &Clock) -> Option<String> {
        self.pause = None;
        if !self.tally.pending() {
            return None;
        }
        let report = self.tally.due(clock.now())?;
        Some(self.line(report, "; accepting again"))
    }

    fn line(&self, report: Report, tail: &str) -> String {
        match report {
            Report::First => format!(
                "accept failed: {}; further failures are counted and reported every {}s",
                self.last,
                tally::INTERVAL.as_secs()
            ),
            Report::Since { count, secs } => format!(
                "accept failed {count} times in the last {secs}s: {}{tail}",
                self.last
            ),
        }
    }

    /// How long to wait before the next accept after `e`: nothing for a connection that failed
    /// on its own (reset before it was accepted), a growing pause when descriptors or memory ran
    /// out.
    fn pause(&mut self, e: &io::Error) -> Option<Duration> {
        if !tally::scarce(e) {
            return None;
        }
        let next = self
            .pause
            .map_or(ACCEPT_PAUSE_MIN, |p| (p * 2).min(ACCEPT_PAUSE_MAX));
        self.pause = Some(next);
        Some(next)
    }
}

/// Resolves once every one of the `max` connection slots is free again.
async fn all_closed(slots: &Semaphore, max: usize) {
    let mut held = Vec::new();
    let mut left = max;
    while left > 0 {
        let n = u32::try_from(left).unwrap_or(u32::MAX);
        match slots.acquire_many(n).await {
            Ok(p) => held.push(p),
            Err(_) => return,
        }
        left -= n as usize;
    }
}

/// Held by a connection task: on drop the connection counts as closed and its slot (the permit)
/// frees up.
struct OpenConnection<'a> {
    ctx: &'a Ctx,
    occupancy: &'a Rc<Occupancy>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.ctx.stats().connection_closed();
        // Not while the worker stops: the process is about to give everything back, and the
        // runtime may be dropping its tasks already (nothing can be spawned then).
        if self.ctx.phase.get() == Phase::Running {
            self.occupancy.closed(&self.ctx.deadlines);
        }
    }
}

/// A worker gives memory back to the system once at least this many of its connections have
/// closed since its peak and at most an eighth of that peak is left (see [`Occupancy`]).
const TRIM_AFTER: usize = 256;

/// How long after a drain the memory is given back: time for what a closed connection leaves
/// behind to go too (its deadline entry, forgotten at the next sweep; on the uring engine the
/// socket's close, an operation of its own), so that none of it pins the pages being released.
const TRIM_DELAY: Duration = Duration::from_millis(500);

/// How many connections a worker holds, and the most it held since it last gave memory back.
///
/// Each connection allocates its buffers (a read buffer, grown up to `max_request_bytes`, the
/// connection's state, a response buffer now and then). glibc keeps freed memory in the worker
/// thread's arena for reuse and returns it to the system only from the arena's top, so after a
/// burst of 10,000 connections closed, some 100 MB stayed resident for good
/// (`scripts/rss-cycles.py`, release build, 2 workers: 4.5 MB at start, 94 MB at the peak, 94-121
/// MB after each of 3 cycles; with this, 5.1-5.7 MB after every cycle on both engines). When at
/// least [`TRIM_AFTER`] connections of a worker have closed since its peak and it is down to an
/// eighth of that peak, it schedules (after [`TRIM_DELAY`]) freeing the pooled answers and response
/// buffers ([`conn::release_pooled`]), the engine's pools ([`super::release_pooled`]: parked read
/// buffers, the io_uring engine's copy buffers and pipes) and `malloc_trim(0)`, which hands the
/// free pages of every arena back, and the peak starts again from what is open; when the last
/// connection closes after such a trim, it trims once more. So a burst that drains costs two or
/// three calls, never one per request, and a steady load none. A worker whose peak stays below
/// [`TRIM_AFTER`] keeps its pools: at most what its busiest moment had in flight.
#[derive(Debug, Default)]
struct Occupancy {
    open: std::cell::Cell<usize>,
    peak: std::cell::Cell<usize>,
    /// The last trim was decided while connections were still open.
    owed: std::cell::Cell<bool>,
    /// A trim is scheduled and has not run yet.
    scheduled: std::cell::Cell<bool>,
    /// Another trim was decided while one was scheduled.
    again: std::cell::Cell<bool>,
}

impl Occupancy {
    fn opened(&self) {
        let open = self.open.get() + 1;
        self.open.set(open);
        self.peak.set(self.peak.get().max(open));
    }

    fn closed(self: &Rc<Self>, deadlines: &Rc<Deadlines>) {
        let open = self.open.get().saturating_sub(1);
        self.open.set(open);
        let peak = self.peak.get();
        // Once more when the last one closes, if connections were still open at the last trim:
        // their memory went back to the allocator only after it.
        if (peak - open >= TRIM_AFTER && open <= peak / 8) || (open == 0 && self.owed.get()) {
            self.peak.set(open);
            self.owed.set(open > 0);
            if self.scheduled.replace(true) {
                // Decided again before the scheduled trim ran: it runs once more after.
                self.again.set(true);
                return;
            }
            let (me, deadlines) = (self.clone(), deadlines.clone());
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(TRIM_DELAY).await;
                    deadlines.forget_closed();
                    conn::release_pooled();
                    super::release_pooled();
                    give_memory_back();
                    if !me.again.replace(false) {
                        break;
                    }
                }
                me.scheduled.set(false);
            });
        }
    }
}

/// Returns the allocator's free pages to the system (glibc; nothing elsewhere), in two steps.
///
/// `malloc_trim(0)` releases the free pages inside every arena, but not the free space at the
/// top of a thread's arena: when a drain frees everything, small chunks wait in glibc's fast
/// bins, merge into that top only when consolidated, and nothing then shrinks it (seen as 26 MB
/// kept by one worker's arena, per /proc/PID/smaps, with under 1 MB in use). Freeing a block of
/// at least 64 KiB in this thread's arena makes glibc consolidate and shrink the top, so that
/// comes first.
fn give_memory_back() {
    #[cfg(target_env = "gnu")]
    {
        // 64 KiB and more is glibc's FASTBIN_CONSOLIDATION_THRESHOLD; below 128 KiB, its smallest
        // mmap threshold, so it comes from (and returns to) this thread's arena.
        let block: Vec<u8> = Vec::with_capacity(96 * 1024);
        drop(std::hint::black_box(block));
        // SAFETY: malloc_trim only releases memory the allocator holds free; it takes the arenas'
        // locks itself and touches no memory the program uses.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn accept_failures_are_reported_once_then_counted_per_interval() {
        let mut a = AcceptErrors::default();
        let clock = Clock::manual();
        let t0 = clock.now();
        let first = a
            .failed(&emfile(), t0)
            .expect("the first failure is reported");
        assert!(
            first.starts_with("accept failed: Too many open files (os error 24) (limit "),
            "{first}"
        );
        // A storm within the interval: silent.
        for i in 1..2400 {
            let at = t0 + Duration::from_millis(i * 4);
            assert_eq!(a.failed(&emfile(), at), None);
        }
        let at = t0 + Duration::from_secs(10);
        let line = a.failed(&emfile(), at).expect("a report per interval");
        assert!(
            line.starts_with("accept failed 2400 times in the last 10s: Too many open files"),
            "{line}"
        );
        // Recovery within the next interval says nothing yet; after it, the count and that
        // accepts work again.
        assert_eq!(a.failed(&emfile(), at + Duration::from_secs(1)), None);
        clock.advance(Duration::from_secs(12));
        assert_eq!(a.accepted(&clock), None);
        clock.advance(Duration::from_secs(9));
        let line = a.accepted(&clock).unwrap();
        assert!(
            line.starts_with("accept failed 1 times in the last 11s"),
            "{line}"
        );
        assert!(line.ends_with("; accepting again"), "{line}");
        clock.advance(Duration::from_secs(30));
        assert_eq!(a.accepted(&clock), None, "nothing left");
    }

    #[test]
    fn only_scarce_resources_pause_accepts_and_the_pause_grows_then_resets() {
        let mut a = AcceptErrors::default();
        let reset = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(a.pause(&reset), None);
        let pauses: Vec<u64> = (0..6)
            .map(|_| a.pause(&emfile()).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 100, 100]);
        a.accepted(&Clock::System);
        assert_eq!(a.pause(&emfile()), Some(ACCEPT_PAUSE_MIN));
    }
}
