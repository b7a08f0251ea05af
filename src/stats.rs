//! Server counters: one block of relaxed atomics per worker, each on its own cache lines, summed
//! only when someone reads them.
//!
//! A worker only ever writes its own block, so a count is a plain load and store of the atomic
//! (no locked read-modify-write, see [`add`]) and no cache line bounces between cores; nothing
//! here allocates or locks. Readers (the admin listener's metrics, the status page, the shutdown
//! summary) read the blocks and add them up; the sum is a snapshot, not a transaction, which is
//! all a counter needs. The request-duration histogram is kept the same way: fixed buckets, one
//! atomic each, per worker.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the request-duration buckets, in microseconds, from 100 µs to 10 s; a last,
/// unbounded bucket (`+Inf`) follows them.
pub const DURATION_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Duration buckets, the unbounded one included.
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS_US.len() + 1;

/// Where a worker is in its life, as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerPhase {
    /// Not accepting yet.
    Starting = 0,
    /// Accepting and serving.
    Serving = 1,
    /// Shutting down: no longer accepting, finishing what is in flight.
    Draining = 2,
    /// Gone.
    Stopped = 3,
}

/// One worker's counters, padded so that neighbouring workers never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Responses by status class: index 0 is 1xx, 4 is 5xx.
    pub requests: [AtomicU64; 5],
    /// Bytes put on the wire, heads and bodies.
    pub bytes_sent: AtomicU64,
    /// Requests answered from the file cache.
    pub cache_hits: AtomicU64,
    /// Requests that looked in the file cache and had to open the file.
    pub cache_misses: AtomicU64,
    /// Memory the file cache counts against its budget now: kept up by the cache itself
    /// ([`crate::files::cache::FileCache::counted_in`]) as bodies come and go, read when scraped.
    pub cache_bytes: Arc<AtomicUsize>,
    /// Responses by duration: slot `i` counts those within `DURATION_BOUNDS_US[i]` and above the
    /// bound before it; the last slot counts the rest. Not cumulative.
    pub durations: [AtomicU64; DURATION_BUCKETS],
    /// The durations added up, in nanoseconds.
    pub duration_sum_ns: AtomicU64,
    /// A [`WorkerPhase`].
    pub phase: AtomicU8,
}

/// Adds `n` (wrapping) to a counter that only one thread writes: its worker. A load and a store
/// instead of a `lock`-prefixed add, which costs about 20 times as much in a loop and, as a full
/// barrier, more amid a request's work; readers on other threads see the old or the new value,
/// never a torn one.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    /// Counts a newly accepted connection.
    pub fn connection_opened(&self) {
        add(&self.accepted, 1);
        add(&self.open, 1);
    }

    /// Counts a connection that was closed.
    pub fn connection_closed(&self) {
        add(&self.open, 1u64.wrapping_neg());
    }

    /// Counts a response by status class (1xx..5xx). Called before the response is sent, so a
    /// client never sees a response that the counters do not include yet.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        add(&self.requests[class], 1);
    }

    /// Counts bytes put on the wire.
    pub fn sent(&self, bytes: u64) {
        add(&self.bytes_sent, bytes);
    }

    /// Records how long a response took, from its start to its last byte.
    pub fn duration(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = DURATION_BOUNDS_US.partition_point(|&bound| bound < us);
        add(&self.durations[slot], 1);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        add(&self.duration_sum_ns, ns);
    }

    /// Counts a request answered from the file cache (`true`) or not (`false`).
    pub fn cache_lookup(&self, hit: bool) {
        match hit {
            true => add(&self.cache_hits, 1),
            false => add(&self.cache_misses, 1),
        }
    }

    /// Publishes the worker's phase.
    pub fn set_phase(&self, phase: WorkerPhase) {
        self.phase.store(phase as u8, Relaxed);
    }

    /// The worker's phase.
    pub fn phase(&self) -> WorkerPhase {
        match self.phase.load(Relaxed) {
            0 => WorkerPhase::Starting,
            1 => WorkerPhase::Serving,
            2 => WorkerPhase::Draining,
            _ => WorkerPhase::Stopped,
        }
    }

    /// Reads this worker's counters.
    pub fn read(&self) -> Snapshot {
        Snapshot {
            accepted: self.accepted.load(Relaxed),
            open: self.open.load(Relaxed),
            requests: self.requests.each_ref().map(|c| c.load(Relaxed)),
            bytes_sent: self.bytes_sent.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_bytes: self.cache_bytes.load(Relaxed) as u64,
            durations: self.durations.each_ref().map(|c| c.load(Relaxed)),
            duration_sum_ns: self.duration_sum_ns.load(Relaxed),
        }
    }
}

/// All workers' counters plus the facts fixed at start.
#[derive(Debug)]
pub struct Stats {
    /// Name of the I/O engine in use (`uring` or `epoll`).
    pub engine: &'static str,
    /// One block of counters per worker, indexed by worker number.
    pub workers: Box<[WorkerStats]>,
}

/// A summed reading of every worker's counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open at the time of reading.
    pub open: u64,
    /// Responses by class: index 0 is 1xx, 4 is 5xx.
    pub requests: [u64; 5],
    /// Bytes put on the wire, heads and bodies.
    pub bytes_sent: u64,
    /// Requests answered from the file cache.
    pub cache_hits: u64,
    /// Requests that looked in the file cache and had to open the file.
    pub cache_misses: u64,
    /// Memory the file caches hold.
    pub cache_bytes: u64,
    /// Responses by duration bucket (see [`WorkerStats::durations`]), not cumulative.
    pub durations: [u64; DURATION_BUCKETS],
    /// The durations added up, in nanoseconds.
    pub duration_sum_ns: u64,
}

impl Snapshot {
    /// Responses of every class together.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Adds another reading to this one.
    pub fn add(&mut self, o: &Snapshot) {
        self.accepted += o.accepted;
        self.open += o.open;
        for (sum, n) in self.requests.iter_mut().zip(&o.requests) {
            *sum += n;
        }
        self.bytes_sent += o.bytes_sent;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.cache_bytes += o.cache_bytes;
        for (sum, n) in self.durations.iter_mut().zip(&o.durations) {
            *sum += n;
        }
        self.duration_sum_ns += o.duration_sum_ns;
    }
}

impl Stats {
    /// Zeroed counters for `workers` workers running on `engine`.
    pub fn new(engine: &'static str, workers: usize) -> Stats {
        Stats {
            engine,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
        }
    }

    /// Sums every worker's counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for w in self.workers.iter() {
            s.add(&w.read());
        }
        s
    }

    /// Ready to take traffic: every worker is serving (none starting, draining or gone).
    pub fn ready(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.phase() == WorkerPhase::Serving)
    }

    /// The status page: `name: value` lines, easy for people and for `grep`. The same numbers as
    /// the admin listener's `/metrics`, summed over the workers.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let _ = writeln!(out, "engine: {}", self.engine);
        let _ = writeln!(out, "workers: {}", self.workers.len());
        let _ = writeln!(out, "ready: {}", self.ready());
        let _ = writeln!(out, "connections_accepted: {}", s.accepted);
        let _ = writeln!(out, "connections_open: {}", s.open);
        let _ = writeln!(out, "requests_total: {}", s.total_requests());
        for (i, n) in s.requests.iter().enumerate() {
            let _ = writeln!(out, "requests_{}xx: {n}", i + 1);
        }
        let _ = writeln!(out, "bytes_sent: {}", s.bytes_sent);
        let _ = writeln!(out, "cache_hits: {}", s.cache_hits);
        let _ = writeln!(out, "cache_misses: {}", s.cache_misses);
        let _ = writeln!(out, "cache_bytes: {}", s.cache_bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_workers() {
        let st = Stats::new("uring", 2);
        st.workers[0].connection_opened();
        st.workers[1].connection_opened();
        st.workers[1].connection_closed();
        st.workers[0].response(200);
        st.workers[0].sent(10);
        st.workers[1].response(404);
        st.workers[1].sent(5);
        st.workers[1].response(503);
        st.workers[1].sent(1);
        let s = st.snapshot();
        assert_eq!((s.accepted, s.open, s.bytes_sent), (2, 1, 16));
        assert_eq!(s.requests, [0, 1, 0, 1, 1]);
        assert!(st.render().contains("requests_4xx: 1\n"));
    }

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let w = WorkerStats::default();
        for us in [
            0,
            100,
            101,
            250,
            9_999_999,
            10_000_000,
            10_000_001,
            u64::MAX / 1000,
        ] {
            w.duration(Duration::from_micros(us));
        }
        let d = w.read().durations;
        assert_eq!((d[0], d[1], d[2]), (2, 2, 0));
        assert_eq!(d[DURATION_BUCKETS - 2], 2);
        assert_eq!(d[DURATION_BUCKETS - 1], 2);
        assert_eq!(d.iter().sum::<u64>(), 8);
    }

    #[test]
    fn ready_only_when_every_worker_serves() {
        let st = Stats::new("epoll", 2);
        assert!(!st.ready());
        st.workers[0].set_phase(WorkerPhase::Serving);
        assert!(!st.ready());
        st.workers[1].set_phase(WorkerPhase::Serving);
        assert!(st.ready());
        st.workers[1].set_phase(WorkerPhase::Draining);
        assert!(!st.ready());
    }
}
