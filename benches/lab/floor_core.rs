//! The floor's `core` experiment (`FLOOR_URING=core`, [`crate::floor_uring`]): uring-httpd's own
//! per-request work, done the way a connection does it, on the floor's raw io_uring loop with no
//! runtime under it. It parses each head (`http::parse`), runs the exchange against a file cache
//! warmed at start (`Exchange`), renders the head and copies a small body behind it
//! (`respond`), and counts the response as a worker does (`Stats`), reading the monotonic clock
//! once per batch of completions as the engine reads it once per turn. What it leaves out: the
//! tokio and tokio-uring machinery (tasks, wakers, the operation slab), the connection task's
//! futures, deadlines and the access log (which the lab's configurations turn off).
//!
//! Priced beside the plain floor and the engine, it splits the engine's distance from the floor
//! into the HTTP work itself and what the runtime adds (`benches/README.md`, the thirteenth
//! session). File steps a cache miss needs (open, stat, read) are blocking system calls here:
//! the lab serves one cached file, so they happen once, at start.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use uring_httpd::config::Config;
use uring_httpd::exchange::{self, ConnState, Done, Exchange, Refusal, Step};
use uring_httpd::files::cache::FileCache;
use uring_httpd::files::sys;
use uring_httpd::http::{self, response};
use uring_httpd::respond::{Body, Plan};
use uring_httpd::settings::Settings;
use uring_httpd::stats::Stats;

/// uring-httpd's HTTP core with its default configuration, serving one directory.
pub struct Core {
    settings: Settings,
    stats: Stats,
    cache: RefCell<FileCache>,
}

/// The core for one batch of completions, with the one clock reading its requests share (as a
/// worker's turn has): the only way to answer, so no loop can answer with a stale reading.
pub struct Turn<'a> {
    core: &'a Core,
    now: Instant,
}

impl Core {
    /// The core serving `file`'s directory, its cache warmed with `file` by one request for it.
    pub fn new(file: &Path) -> Result<Core, String> {
        let (root, name) = match (file.parent(), file.file_name().and_then(|n| n.to_str())) {
            (Some(root), Some(name)) => (root, name),
            _ => return Err(format!("{}: not a file in a directory", file.display())),
        };
        let settings = Settings::open(Config::default(), root, 1)
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let cache = FileCache::for_config(&settings.config.files, 1);
        let core = Core {
            settings,
            stats: Stats::new("floor-core", 1),
            cache: RefCell::new(cache),
        };
        let warm = format!("GET /{name} HTTP/1.1\r\nHost: lab\r\n\r\n");
        let (mut input, mut output) = (warm.into_bytes(), Vec::new());
        core.turn().answer_all(&mut input, &mut output);
        if !output.starts_with(b"HTTP/1.1 200 ") {
            let line = output.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(format!(
                "{}: the core answered {:?}",
                file.display(),
                String::from_utf8_lossy(line)
            ));
        }
        Ok(core)
    }

    /// Starts a batch of completions: reads the clock once for all its requests.
    pub fn turn(&self) -> Turn<'_> {
        Turn {
            core: self,
            now: Instant::now(),
        }
    }
}

impl Turn<'_> {
    /// Answers every complete request head at the front of `input`, appending the responses to
    /// `output` and removing the heads. Returns false once the connection is to close (after a
    /// refused head, a `Connection: close`, or a request with a body, which the experiment answers
    /// but does not read): nothing after it is answered.
    pub fn answer_all(&self, input: &mut Vec<u8>, output: &mut Vec<u8>) -> bool {
        let mut used = 0;
        let mut open = true;
        while open && used < input.len() {
            let (plan, len, more) = match http::parse(&input[used..]) {
                Ok(None) => break,
                Ok(Some(req)) => {
                    let bodiless = req.body_len == 0 && !req.chunked;
                    (self.exchange(&req), req.head_len, bodiless)
                }
                Err(e) => {
                    let refused = exchange::refused(&self.core.settings, Refusal::Malformed(e));
                    (refused, 0, false)
                }
            };
            used += len;
            open = more && plan.keep_alive;
            self.core.put(plan, output);
        }
        input.drain(..used);
        open
    }

    /// One request's exchange, run to its plan with blocking file steps.
    fn exchange(&self, req: &http::Request<'_>) -> Plan<File> {
        let core = self.core;
        let mut ex = Exchange::new(
            &core.settings,
            &core.stats,
            &core.cache,
            req,
            ConnState::default(),
        );
        let root = core.settings.root_fd.as_raw_fd();
        let mut step = ex.start(self.now);
        loop {
            let done = match step {
                Step::Stat(rel) => Done::Stat(sys::statx(root, &rel, 0)),
                Step::Open(rel) => Done::Open(sys::open_file(root, &rel)),
                Step::List(_) => Done::List(Err(io::ErrorKind::Unsupported.into())),
                Step::ReadWhole(file, len) => Done::Read(sys::read_whole(&file, len)),
                Step::Send(plan) => {
                    if let Some(used) = ex.cache_use() {
                        core.stats.workers[0].cache_lookup(used == exchange::CacheUse::Hit);
                    }
                    return plan;
                }
            };
            step = ex.resume(done, self.now);
        }
    }
}

impl Core {
    /// Puts `plan` behind `output`, counted as a worker counts a response it sent.
    fn put(&self, plan: Plan<File>, output: &mut Vec<u8>) {
        let worker = &self.stats.workers[0];
        worker.response(plan.status.code());
        let wire = plan.wire_len();
        output.extend_from_slice(&plan.head);
        match plan.body {
            Body::File { file, offset, len } => {
                let at = output.len();
                output.resize(at + len as usize, 0);
                if sys::read_exact_at(&file, &mut output[at..], offset).is_err() {
                    // The floor serves files it read at start; a file that shrank since is cut
                    // short, and the client sees it.
                    output.truncate(at);
                }
            }
            body => output.extend_from_slice(body.in_memory().unwrap_or_default()),
        }
        response::recycle(plan.head);
        worker.sent(wire);
        // The engine reads its clock once per turn: a request answered within one turn, as every
        // request here is, took no time on it.
        worker.duration(Duration::ZERO);
    }
}

/// A connection's side of the experiment: bytes received and not yet answered, the responses
/// not yet sent (from `out_sent` on), and whether one of them ends the connection.
#[derive(Default)]
pub struct Answers {
    input: Vec<u8>,
    output: Vec<u8>,
    out_sent: usize,
    last: bool,
}

impl Answers {
    /// Keeps received bytes for [`Answers::answer`] (none after the last response).
    pub fn take(&mut self, bytes: &[u8]) {
        if !self.last {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Answers the complete heads waiting. Never while a send of [`Answers::unsent`] is in
    /// flight: the output may move.
    pub fn answer(&mut self, turn: &Turn<'_>) {
        if !self.last && !self.input.is_empty() {
            self.last = !turn.answer_all(&mut self.input, &mut self.output);
        }
    }

    /// The response bytes still to send.
    pub fn unsent(&self) -> &[u8] {
        &self.output[self.out_sent..]
    }

    /// Accounts for `n` bytes of [`Answers::unsent`] sent.
    pub fn sent(&mut self, n: usize) {
        self.out_sent += n;
        if self.out_sent == self.output.len() {
            self.output.clear();
            self.out_sent = 0;
        }
    }

    /// Whether everything is sent and the last response said the connection ends.
    pub fn finished(&self) -> bool {
        self.last && self.output.is_empty()
    }
}

#[cfg(test)]
mod tests {
    // Bench targets are built with cfg(test) but without their #[test] functions.
    #![allow(unused_imports, dead_code)]
    use super::*;

    #[test]
    fn the_core_answers_like_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("2k.html");
        std::fs::write(&page, vec![b'x'; 2048]).unwrap();
        let core = Core::new(&page).unwrap();
        let get = b"GET /2k.html HTTP/1.1\r\nHost: lab\r\n\r\n";
        // Two pipelined heads and half of a third: two answers, the half kept.
        let mut input = [&get[..], get, &get[..9]].concat();
        let mut output = Vec::new();
        assert!(core.turn().answer_all(&mut input, &mut output));
        assert_eq!(input, &get[..9]);
        let text = String::from_utf8_lossy(&output).into_owned();
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
        assert!(text.contains("Content-Length: 2048\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/html"), "{text}");
        let one = output.len() / 2;
        assert!(output[..one].ends_with(&[b'x'; 2048]));
        // A missing file: 404, and the connection stays open.
        let mut input = b"GET /nope.html HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec();
        let mut output = Vec::new();
        assert!(core.turn().answer_all(&mut input, &mut output));
        assert!(output.starts_with(b"HTTP/1.1 404 "));
        // A head that does not parse: 400, and nothing after it is answered.
        let mut input = [&b"GARBAGE\r\n\r\n"[..], get].concat();
        let mut output = Vec::new();
        assert!(!core.turn().answer_all(&mut input, &mut output));
        assert!(output.starts_with(b"HTTP/1.1 400 "));
        assert_eq!(
            String::from_utf8_lossy(&output).matches("HTTP/1.1").count(),
            1
        );
    }
}
