//! Server counters: one block of relaxed atomics per worker, each on its own cache lines, summed
//! only when someone reads them.
//!
//! A worker only ever writes its own block, so counting costs an uncontended atomic add and no
//! cache line bounces between cores. Readers (the status page, the shutdown summary) add the
//! blocks up; the sum is a snapshot, not a transaction, which is all a counter needs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
}

impl WorkerStats {
    /// Counts a newly accepted connection.
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
    }

    /// Counts a connection that was closed.
    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// Counts a response by status class (1xx..5xx). Called before the response is sent, so a
    /// client never sees a response that the counters do not include yet.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Relaxed);
    }

    /// Counts bytes put on the wire.
    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Relaxed);
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
}

impl Snapshot {
    /// Responses of every class together.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
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
            s.accepted += w.accepted.load(Relaxed);
            s.open += w.open.load(Relaxed);
            for (sum, c) in s.requests.iter_mut().zip(&w.requests) {
                *sum += c.load(Relaxed);
            }
            s.bytes_sent += w.bytes_sent.load(Relaxed);
        }
        s
    }

    /// The status page: `name: value` lines, easy for people and for `grep`.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let _ = writeln!(out, "engine: {}", self.engine);
        let _ = writeln!(out, "workers: {}", self.workers.len());
        let _ = writeln!(out, "connections_accepted: {}", s.accepted);
        let _ = writeln!(out, "connections_open: {}", s.open);
        let _ = writeln!(out, "requests_total: {}", s.total_requests());
        for (i, n) in s.requests.iter().enumerate() {
            let _ = writeln!(out, "requests_{}xx: {n}", i + 1);
        }
        let _ = writeln!(out, "bytes_sent: {}", s.bytes_sent);
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
        assert_eq!(std::mem::align_of::<WorkerStats>(), 128);
    }
}
