//! One connection's life, written once for every engine: read a head, parse it, read and discard
//! its body, run its [`Exchange`] with the engine's primitives, send, log, count; keep-alive,
//! pipelining, timeouts and graceful shutdown.
//!
//! A request is answered once it is complete: a body (Content-Length, or chunked and checked by
//! [`chunked::Decoder`]) is read and thrown away first, so a body that never arrives is not
//! answered but ends in a 408 at `header_timeout_secs` (which covers the whole request, from its
//! first byte), and a malformed chunked body is answered with 400 instead of a response to a
//! request that was not well-formed. A body larger than `max_request_bytes` is not waited for
//! (413 at once), nor is one the client holds back for `Expect: 100-continue` (answered at once,
//! then the connection closes).
//!
//! This module decides nothing a client can observe about a response: that is the exchange's
//! job. The engine supplies a [`Transport`] (how bytes move and how files are stat'ed and
//! opened), so the io_uring and epoll engines behave identically by construction, and the tests
//! in `tests.rs` drive [`serve`] over a scripted transport with an in-memory file system and a
//! manual clock.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::Shared;
use crate::clock::{Clock, Instant};
use crate::deadline::{Deadline, Deadlines, Shut};
use crate::exchange::{self, CacheUse, ConnState, Done, Exchange, Refusal, Step};
use crate::files::Meta;
use crate::files::cache::FileCache;
use crate::files::listing::{self, Listing};
use crate::http::chunked::{self, Progress};
use crate::http::{self, ParseError, Request, Status, response};
use crate::log::{Record, RequestText};
use crate::respond::{Body, Plan};
use crate::settings::Settings;
use crate::stats::{WorkerPhase, WorkerStats};
use crate::tally::{self, Report, Tally};
use reuse::Reused;

mod reuse;
#[cfg(test)]
mod tests;

/// Frees the memory this thread keeps for the next answers and response buffers (up to some
/// 7 MiB after a burst at 1,024 connections), so that a worker giving memory back after a drain
/// gives that back too.
pub fn release_pooled() {
    reuse::release();
    response::release_buffers();
}

/// What an engine provides to serve one connection. All futures run on the worker's own
/// single-threaded runtime, which is why they need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// An open file, as the engine reads it.
    type File;
    /// Reads more bytes into the spare capacity of `buf` (never past `buf.capacity()`), returning
    /// the count (0 at end of stream) and the buffer.
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Metadata of `rel` (relative to the directory `root`), following symlinks: for
    /// revalidating a cached file, whose version it must match exactly.
    async fn stat(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Meta>;
    /// Opens `rel` with [`crate::files::OPEN_FLAGS`] beneath the directory `root` (the kernel
    /// refuses any resolution that leaves it, symlinks included) and stats the descriptor.
    async fn open(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<(Self::File, Meta)>;
    /// Reads the directory `rel` beneath the directory `root` for a listing. Both engines do it
    /// on the blocking pool (no io_uring operation reads a directory), with a descriptor of the
    /// root of its own, which nothing can close under it.
    async fn list(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Listing> {
        let (root, rel) = (root.try_clone_to_owned()?, rel.to_owned());
        crate::blocking::run(move || listing::read_dir(root.as_raw_fd(), &rel)).await?
    }
    /// Reads exactly `len` bytes of `file` from its start (for the cache), then closes it.
    async fn read_whole(&mut self, file: Self::File, len: u64) -> io::Result<Vec<u8>>;
    /// Writes all of `buf`, calling `deadline.progress()` after each write that moved bytes (a
    /// stalled write is ended by the worker's deadline sweeper). Hands the buffer back.
    async fn write_all(&mut self, buf: Vec<u8>, deadline: &Deadline) -> (io::Result<()>, Vec<u8>);
    /// Writes `head`, then `body` from where it lies (a cached file's memory), without copying
    /// it behind the head, with the same progress rule as [`Transport::write_all`]. Hands the
    /// head's buffer back.
    async fn write_parts(
        &mut self,
        head: Vec<u8>,
        body: Bytes,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>);
    /// Writes `head`, then `len` bytes of `file` from `offset`, the engine's best way, with the
    /// same progress rule as [`Transport::write_all`]. Hands the head's buffer back (for the
    /// response pool; it may hold the body's first bytes too).
    async fn send_file(
        &mut self,
        head: Vec<u8>,
        file: Self::File,
        offset: u64,
        len: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>);
    /// Secures, before any byte of the response goes out, whatever sending a file body of `len`
    /// bytes will need besides the file (the uring engine's splice pipe). An error here turns the
    /// response into a 503, so a client never gets a head whose body cannot follow.
    fn secure_body(&mut self, len: u64) -> io::Result<()>;
    /// A handle on the socket, for the deadline table and for closing: shutting it down
    /// completes any operation in flight.
    fn handle(&self) -> Rc<dyn Shut>;
}

/// Where a worker is in its life; connections look at it between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving.
    Running,
    /// Finish the response in progress, take no new request, close idle connections.
    Draining,
    /// Give up on whatever is still in progress.
    Aborting,
}

/// What a connection task needs from its worker.
pub struct Ctx {
    /// The settings in force, the counters, the log.
    pub shared: Arc<Shared>,
    /// This worker's index, for its counters.
    pub worker: usize,
    /// The worker's phase; changed only by the worker's shutdown sequence.
    pub phase: Cell<Phase>,
    /// Timeouts, and the sockets a shutdown must reach.
    pub deadlines: Rc<Deadlines>,
    /// The worker's file cache. It belongs to one settings generation, and connections served
    /// with other settings neither read nor fill it (see [`Ctx::settings_for_new_connection`]).
    pub cache: RefCell<FileCache>,
    /// Where "now" comes from.
    pub clock: Clock,
    /// 5xx answers for want of descriptors or memory, reported through a tally rather than one
    /// line each (under exhaustion they come at the request rate).
    pub scarce: RefCell<Tally>,
    /// The debug-build fault `conn-panic`: a request for `/__panic` panics (see
    /// [`crate::fault`]). Read once when the worker starts; always false in release builds.
    pub panic_on_request: bool,
}

impl Ctx {
    /// A worker's context, with a fresh cache sized by the settings in force.
    pub fn new(shared: Arc<Shared>, worker: usize, clock: Clock) -> Ctx {
        let settings = shared.current();
        let cache = FileCache::for_config(&settings.config.files, settings.generation)
            .counted_in(shared.stats.workers[worker].cache_bytes.clone());
        Ctx {
            shared,
            worker,
            phase: Cell::new(Phase::Running),
            deadlines: Rc::new(Deadlines::new(clock.clone())),
            cache: RefCell::new(cache),
            clock,
            scarce: RefCell::new(Tally::default()),
            panic_on_request: crate::fault::injected("conn-panic"),
        }
    }

    /// The settings a connection just accepted is served with, for its whole life: the ones in
    /// force now. The first connection after a reload renews the worker's cache for the new
    /// generation, so nothing read from the old root or under the old rules is served again.
    pub fn settings_for_new_connection(&self) -> Arc<Settings> {
        let settings = self.shared.current();
        if self.cache.borrow().generation() != settings.generation {
            let files = &settings.config.files;
            let renewed = self.cache.borrow().renewed(files, settings.generation);
            *self.cache.borrow_mut() = renewed;
        }
        settings
    }

    /// This worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.shared.stats.workers[self.worker]
    }

    /// Moves the worker to `phase`, tells the connections that must know at once, and publishes
    /// it for readiness.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
        match phase {
            Phase::Running => self.stats().set_phase(WorkerPhase::Serving),
            Phase::Draining => {
                self.stats().set_phase(WorkerPhase::Draining);
                self.deadlines.close_idle();
            }
            Phase::Aborting => {
                self.stats().set_phase(WorkerPhase::Draining);
                self.deadlines.abort_all();
            }
        }
    }
}

/// A request body being read and thrown away before its request is answered.
enum Skip {
    /// This many bytes of a Content-Length body remain.
    Length(u64),
    /// A chunked body, checked as it goes.
    Chunked(chunked::Decoder),
}

impl Skip {
    /// Consumes the body's bytes from the front of `input`.
    fn feed(&mut self, input: &[u8]) -> Result<Progress, chunked::Error> {
        match self {
            Skip::Length(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                Ok(if *left == 0 {
                    Progress::Done(n as usize)
                } else {
                    Progress::NeedMore
                })
            }
            Skip::Chunked(d) => d.feed(input),
        }
    }
}

/// The read buffer a connection starts with, grown when a head needs more (up to
/// `max_request_bytes`): an idle io_uring connection lends its buffer to the kernel, so this is
/// what each one holds. Heads from wrk or curl fit; a browser's takes a second read into 1 KiB.
pub const IDLE_READ: usize = 256;

/// Serves one accepted connection until it closes, with `settings` throughout (a reload while
/// it is open does not change them).
pub async fn serve<T: Transport>(mut io: T, peer: IpAddr, ctx: &Ctx, settings: Arc<Settings>) {
    // IPv4 clients of a dual-stack (`::`) listener arrive as `::ffff:a.b.c.d`: log them as IPv4.
    let peer = peer.to_canonical();
    let settings = &*settings;
    let limits = &settings.config.limits;
    let max = limits.max_request_bytes;
    let keep_alive_for = Duration::from_secs(limits.keep_alive_timeout_secs);
    let header_for = Duration::from_secs(limits.header_timeout_secs);
    let socket = io.handle();
    let timer = ctx.deadlines.register(socket.clone());

    let mut buf = Vec::with_capacity(max.min(IDLE_READ));
    // A parsed head at the front of `buf` (this many bytes) whose body is being read and thrown
    // away; the body's bytes are removed from `buf` as they arrive, and the head is answered
    // once the body is complete.
    let mut body: Option<(usize, Skip)> = None;
    // When the first byte of the current request arrived: the header timeout runs from there.
    let mut head_started: Option<Instant> = None;
    let mut idle_since = ctx.clock.now();
    // Responses sent so far, for `max_requests_per_connection` (the exchange decides).
    let mut served: u64 = 0;

    loop {
        // The answer to a parsed request (or a refused one), with what the loop needs after it.
        // Built in a scope of its own, and on the heap, so that neither the parsed request (256
        // bytes) nor the deepest answer's state (2.6 KiB) is stored in this task's future, which
        // every idle connection holds while it waits for a request. `Reused`: the heap memory of
        // the worker's last finished answer, not a `malloc` per request.
        let answering = {
            // The body of the parsed head, as far as it has arrived; `complete` once it has.
            let mut complete = false;
            let mut bad_body = None;
            if let Some((head_len, skip)) = &mut body {
                let head_len = *head_len;
                match skip.feed(&buf[head_len..]) {
                    Ok(Progress::NeedMore) => buf.truncate(head_len),
                    Ok(Progress::Done(n)) => {
                        buf.drain(head_len..head_len + n);
                        complete = true;
                    }
                    Err(chunked::Error::Syntax(reason)) => {
                        let e = ParseError {
                            status: Status::BadRequest,
                            reason,
                        };
                        bad_body = Some(Refusal::Malformed(e));
                    }
                    Err(chunked::Error::TooLarge(n)) => bad_body = Some(Refusal::BodyTooLarge(n)),
                }
            }
            let parsed = if let Some(refusal) = bad_body {
                Some(Err(refusal))
            } else if complete {
                body = None;
                // The same head parsed before its body was read; it parses the same way again.
                Some(
                    http::parse(&buf)
                        .and_then(|r| r.ok_or(REPARSE))
                        .map_err(Refusal::Malformed),
                )
            } else if body.is_none() && !buf.is_empty() {
                head_started.get_or_insert_with(|| ctx.clock.now());
                match http::parse(&buf) {
                    Ok(None) if buf.len() < max => None,
                    Ok(Some(req)) => match body_to_skip(&req, max) {
                        Some(skip) => {
                            body = Some((req.head_len, skip));
                            continue;
                        }
                        None => Some(Ok(req)),
                    },
                    Ok(None) => Some(Err(Refusal::Malformed(http::request::oversize(&buf)))),
                    Err(e) => Some(Err(Refusal::Malformed(e))),
                }
            } else {
                None
            };
            parsed.map(|parsed| {
                let consumed = parsed.as_ref().ok().map(|r| r.head_len);
                // A body that was not read first (too large, or held back for 100-continue) is
                // still coming.
                let body_unread =
                    !complete && parsed.as_ref().is_ok_and(|r| r.body_len > 0 || r.chunked);
                // The request's time runs from its first byte, as nginx's $request_time does.
                let started = head_started.unwrap_or_else(|| ctx.clock.now());
                let answer = Reused::new(answer(
                    &mut io, ctx, settings, peer, parsed, &buf, &timer, served, started,
                ));
                (answer, consumed, body_unread)
            })
        };
        // Moved whole into the match (`identity`), so its borrows end with it.
        let answered = match std::convert::identity(answering) {
            Some((answer, consumed, body_unread)) => Some((answer.await, consumed, body_unread)),
            None => None,
        };
        if let Some(((outcome, ended), consumed, body_unread)) = answered {
            served += 1;
            head_started = None;
            idle_since = ended;
            match (outcome, consumed) {
                (Outcome::KeepAlive, Some(head_len)) if !body_unread => {
                    buf.drain(..head_len);
                    continue;
                }
                (Outcome::Failed, _) => {
                    socket.shut(Shutdown::Both);
                    return;
                }
                (_, consumed) => {
                    // Unread input (a refused head, a pipelined request, an unread body) needs a
                    // lingering close; a clean close can just drop the socket.
                    let unread = body_unread || consumed.is_none_or(|h| buf.len() > h);
                    if unread {
                        Box::pin(linger(&mut io, &*socket, buf, &timer)).await;
                    }
                    return;
                }
            }
        }

        // More bytes are needed. Idle connections go away as soon as shutdown starts.
        let idle = buf.is_empty() && body.is_none();
        match ctx.phase.get() {
            Phase::Aborting => {
                socket.shut(Shutdown::Both);
                return;
            }
            Phase::Draining if idle => return,
            _ => {}
        }
        match head_started {
            Some(t) => timer.read_by(t + header_for),
            None => timer.idle_until(idle_since + keep_alive_for),
        }
        if buf.len() == buf.capacity() {
            match body {
                // A head outgrew the buffer: four times the room, up to the largest head allowed
                // (beyond it the head is refused, so it is never read past `max`).
                None if buf.len() < max => {
                    let room = (buf.capacity() * 4).min(max);
                    buf.reserve_exact(room - buf.len());
                }
                // A body is read behind its head; a head that fills the buffer leaves no room.
                _ => buf.reserve(4096),
            }
        }
        let (read, b) = io.read(buf).await;
        buf = b;
        if ctx.phase.get() == Phase::Aborting {
            socket.shut(Shutdown::Both);
            return;
        }
        match read {
            Ok(n) if n > 0 && !timer.expired() => {
                head_started.get_or_insert_with(|| ctx.clock.now());
            }
            _ if timer.expired() => {
                // A request that never completed (its head or its body) gets a 408, logged with
                // what arrived of it; an idle keep-alive just closes.
                if let Some(started) = head_started {
                    let timed_out = Err(Refusal::Timeout);
                    let answering = answer(
                        &mut io, ctx, settings, peer, timed_out, &buf, &timer, served, started,
                    );
                    let _ = Reused::new(answering).await;
                }
                socket.shut(Shutdown::Both);
                return;
            }
            // The peer closed, or a graceful shutdown closed this idle connection.
            Ok(_) => return,
            Err(_) => {
                socket.shut(Shutdown::Both);
                return;
            }
        }
    }
}

/// A head that parsed once and not the second time: cannot happen, but is answered, not panicked.
const REPARSE: ParseError = ParseError {
    status: Status::BadRequest,
    reason: "request head changed while its body was read",
};

/// The body to read and discard before answering `req`, if any. Not a body larger than `max`
/// (the exchange answers 413 at once), nor one the client holds back until it hears from us
/// (`Expect: 100-continue`).
fn body_to_skip(req: &Request<'_>, max: usize) -> Option<Skip> {
    if req.expect_continue {
        None
    } else if req.chunked {
        Some(Skip::Chunked(chunked::Decoder::new(max as u64)))
    } else if req.body_len > 0 && req.body_len <= max as u64 {
        Some(Skip::Length(req.body_len))
    } else {
        None
    }
}

/// How a connection continues after a response.
enum Outcome {
    KeepAlive,
    Close,
    /// The response could not be sent completely.
    Failed,
}

/// Runs the exchange, sends, logs and counts one response. `Err(refusal)` is a request that was
/// refused before it parsed; `head` is what arrived of it, for the log. `served` responses went
/// out on this connection before this one. `started` is when the request's first byte arrived;
/// the instant the response was done comes back with the outcome. Those two are the only clock
/// readings a request answered from the cache costs (deadlines and the exchange reuse them); a
/// miss reads it again after each file-system step.
#[allow(clippy::too_many_arguments)] // the connection's parts an answer needs, each borrowed separately
async fn answer<T: Transport>(
    io: &mut T,
    ctx: &Ctx,
    settings: &Settings,
    peer: IpAddr,
    parsed: Result<Request<'_>, Refusal>,
    head: &[u8],
    timer: &Deadline,
    served: u64,
    started: Instant,
) -> (Outcome, Instant) {
    let shared = &*ctx.shared;
    let logging = shared.log.enabled();
    // The wall-clock time is only needed for a log line.
    let time = logging.then(SystemTime::now);
    // The request's fields as the log shows them, copied only when something will be logged.
    let (plan, text) = match parsed {
        Ok(req) => {
            if ctx.panic_on_request && *req.path == *b"/__panic" {
                panic!("injected fault conn-panic");
            }
            let mut plan = run_exchange(io, ctx, settings, &req, served, started).await;
            if let Body::File { len, .. } = plan.body {
                if let Err(e) = io.secure_body(len) {
                    let head_only = req.method == http::Method::Head;
                    plan = exchange::body_unavailable(settings, &req.path, head_only, e);
                }
            }
            let text =
                (logging || plan.status.is_server_fault()).then(|| RequestText::of_request(&req));
            (plan, text)
        }
        Err(refusal) => {
            let plan = exchange::refused(settings, refusal);
            let text = (logging || plan.status.is_server_fault())
                .then(|| RequestText::of_refused(http::request::line_hint(head)));
            (plan, text)
        }
    };
    let status = plan.status.code();
    if plan.status.is_server_fault() {
        let cause = plan
            .cause
            .as_ref()
            .map_or("-".to_string(), |c| c.to_string());
        let path = text.as_ref().and_then(RequestText::path).unwrap_or(b"-");
        let path = &*String::from_utf8_lossy(path);
        let scarce = match &plan.cause {
            Some(Refusal::Io(e) | Refusal::BodyUnavailable(e)) => tally::scarce(e),
            _ => false,
        };
        let worker = ctx.worker;
        if !scarce {
            tracing::error!(worker, %peer, path, "{status}: {cause}");
        } else {
            match ctx.scarce.borrow_mut().event(ctx.clock.now()) {
                Some(Report::First) => tracing::error!(
                    worker,
                    %peer,
                    path,
                    "{status}: {cause}; further answers failing for want of resources are \
                     counted and reported every {}s",
                    tally::INTERVAL.as_secs()
                ),
                Some(Report::Since { count, secs }) => tracing::error!(
                    worker,
                    "{count} answers failed for want of resources in the last {secs}s; the \
                     last one: {status}: {cause}"
                ),
                None => {}
            }
        }
    }
    let keep_alive = plan.keep_alive;
    let wire = plan.wire_len();
    let body_len = plan.body_len();
    let stats = ctx.stats();
    stats.response(status);
    timer.writing(Duration::from_secs(
        settings.config.limits.send_timeout_secs,
    ));
    let sent = send(io, plan, timer).await.is_ok() && !timer.expired();
    if sent {
        stats.sent(wire);
    }
    let ended = ctx.clock.now();
    let duration = ended.saturating_duration_since(started);
    stats.duration(duration);
    if let (Some(time), Some(text)) = (time, text) {
        shared.log.send(Record {
            time,
            ip: peer,
            status,
            bytes: if sent { wire } else { 0 },
            body_bytes: if sent { body_len } else { 0 },
            duration,
            text,
        });
    }
    let outcome = match (sent, keep_alive) {
        (false, _) => Outcome::Failed,
        (true, true) => Outcome::KeepAlive,
        (true, false) => Outcome::Close,
    };
    (outcome, ended)
}

/// Drives `req`'s exchange to its plan, doing each file-system step with the engine, beneath
/// the root of `settings`. `now` is the request's start: a cache hit reads no clock.
async fn run_exchange<T: Transport>(
    io: &mut T,
    ctx: &Ctx,
    settings: &Settings,
    req: &Request<'_>,
    served: u64,
    now: Instant,
) -> Plan<T::File> {
    let conn = ConnState {
        draining: ctx.phase.get() != Phase::Running,
        served,
    };
    let stats = &ctx.shared.stats;
    let mut ex = Exchange::new(settings, stats, &ctx.cache, req, conn);
    let root = settings.root_fd.as_fd();
    let mut step = ex.start(now);
    loop {
        let done = match step {
            Step::Stat(rel) => Done::Stat(io.stat(root, &rel).await),
            Step::List(rel) => Done::List(io.list(root, &rel).await),
            Step::Open(rel) => Done::Open(io.open(root, &rel).await),
            Step::ReadWhole(file, len) => Done::Read(io.read_whole(file, len).await),
            Step::Send(plan) => {
                count_cache_use(ctx, ex.cache_use());
                return plan;
            }
        };
        step = ex.resume(done, ctx.clock.now());
    }
}

/// Counts what the file cache did for a request (its size is kept up by the cache itself).
fn count_cache_use(ctx: &Ctx, used: Option<CacheUse>) {
    if let Some(used) = used {
        ctx.stats().cache_lookup(used == CacheUse::Hit);
    }
}

/// Bodies in memory up to this size are copied behind the head and go out in one write; larger
/// ones are written from where they lie, so a response's buffer does not grow with the file.
const COPY_BEHIND_HEAD: usize = 16 * 1024;

/// Puts a plan on the wire: small bodies in memory go out behind the head in one write; a file
/// body is left to the engine's best way of sending files. The head's buffer goes back to the
/// response pool, whichever way it went out.
async fn send<T: Transport>(io: &mut T, plan: Plan<T::File>, timer: &Deadline) -> io::Result<()> {
    let mut buf = plan.head;
    let (sent, buf) = match plan.body {
        Body::File { file, offset, len } => io.send_file(buf, file, offset, len, timer).await,
        Body::Cached(b, range) if range.len() > COPY_BEHIND_HEAD => {
            io.write_parts(buf, b.slice(range), timer).await
        }
        Body::Bytes(b) if b.len() > COPY_BEHIND_HEAD => io.write_parts(buf, b, timer).await,
        body => {
            // A file body went to `send_file` above: this one is in memory.
            buf.extend_from_slice(body.in_memory().unwrap_or_default());
            io.write_all(buf, timer).await
        }
    };
    response::recycle(buf);
    sent
}

/// Closing after an error while the client may still be sending: a plain close with unread
/// bytes makes the kernel send a reset, which can destroy the response before the client reads
/// it. So stop writing, then read and discard for a short while (nginx's lingering close).
async fn linger<T: Transport>(io: &mut T, socket: &dyn Shut, mut buf: Vec<u8>, timer: &Deadline) {
    const LINGER: Duration = Duration::from_secs(2);
    const LIMIT: usize = 256 * 1024;
    socket.shut(Shutdown::Write);
    timer.read_within(LINGER);
    let mut seen = 0;
    while seen < LIMIT && !timer.expired() {
        buf.clear();
        match io.read(buf).await {
            (Ok(n), b) if n > 0 => {
                seen += n;
                buf = b;
            }
            _ => break,
        }
    }
    socket.shut(Shutdown::Both);
}
