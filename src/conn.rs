//! One connection's life, written once for every engine: read a head, parse it, walk the
//! response steps, send, log, count; keep-alive, pipelining, timeouts and graceful shutdown.
//!
//! The engine supplies a [`Transport`] (how bytes move and how files are stat'ed and opened);
//! everything else a user can observe is decided here and in the I/O-free modules it calls, so
//! the io_uring and epoll engines behave identically by construction.

use std::cell::RefCell;
use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use bytes::Bytes;

use crate::Shared;
use crate::deadline::{Deadline, Deadlines};
use crate::files::cache::{self, FileCache, Lookup};
use crate::files::{self, Meta};
use crate::http::{self, Head, Method, Request, Status};
use crate::log::Record;
use crate::respond::{self, FileInfo, Plan, Rules, Source, Step};

/// What an engine provides to serve one connection. All futures run on the worker's own
/// single-threaded runtime, which is why they need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Transport {
    type File;
    /// Reads more bytes into the spare capacity of `buf` (never past `buf.capacity()`), returning
    /// the count (0 at end of stream) and the buffer.
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Metadata of `rel` (relative to the root), following symlinks: for revalidating a cached
    /// file, whose version it must match exactly.
    async fn stat(&mut self, rel: &CStr) -> io::Result<Meta>;
    /// Opens `rel` with [`crate::files::OPEN_FLAGS`] beneath the root (the kernel refuses any
    /// resolution that leaves it, symlinks included) and stats the descriptor.
    async fn open(&mut self, rel: &CStr) -> io::Result<(Self::File, Meta)>;
    /// Reads exactly `len` bytes of `file` from its start (for the cache), then closes it.
    async fn read_whole(&mut self, file: Self::File, len: u64) -> io::Result<Vec<u8>>;
    /// Writes the head and body of `plan`, calling `deadline.progress()` after each write that
    /// moved bytes (a stalled write is ended by the worker's deadline sweeper).
    async fn send(&mut self, plan: Plan<Self::File>, deadline: &Deadline) -> io::Result<()>;
    /// The socket, for the deadline sweeper to shut down.
    fn fd(&self) -> RawFd;
    /// Stops sending (half-close) while still reading.
    fn close_write(&mut self);
    /// Shuts the socket down, so that any operation still in flight completes and the
    /// descriptor is released once the transport is dropped.
    fn abort(&mut self);
}

/// Shutdown phases, broadcast inside one worker.
pub const RUNNING: u8 = 0;
/// Finish the response in progress, take no new request, close idle connections.
pub const DRAINING: u8 = 1;
/// Give up on whatever is still in progress.
pub const ABORTING: u8 = 2;

/// What a connection task needs from its worker.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub worker: usize,
    pub phase: watch::Receiver<u8>,
    pub deadlines: Rc<Deadlines>,
    pub cache: RefCell<FileCache>,
}

/// Serves one accepted connection until it closes.
pub async fn serve<T: Transport>(mut io: T, peer: IpAddr, ctx: &Ctx) {
    let limits = &ctx.shared.config.limits;
    let max = limits.max_request_bytes;
    let keep_alive_for = Duration::from_secs(limits.keep_alive_timeout_secs);
    let header_for = Duration::from_secs(limits.header_timeout_secs);
    let mut phase = ctx.phase.clone();
    // Dropped before `io` (locals go before parameters), so the sweeper never sees a closed fd.
    let timer = ctx.deadlines.register(io.fd());

    let mut buf = Vec::with_capacity(max);
    // Body bytes of the previous request still to be read and thrown away.
    let mut skip: u64 = 0;
    // When the first byte of the current head arrived: the header timeout runs from there.
    let mut head_started: Option<Instant> = None;
    let mut idle_since = Instant::now();

    loop {
        if skip > 0 && !buf.is_empty() {
            let n = skip.min(buf.len() as u64) as usize;
            buf.drain(..n);
            skip -= n as u64;
        }
        if skip == 0 && !buf.is_empty() {
            head_started.get_or_insert_with(Instant::now);
            let exchange = match http::parse(&buf) {
                Ok(None) if buf.len() < max => None,
                Ok(Some(req)) => Some(Ok(req)),
                Ok(None) => Some(Err(http::request::oversize_status(&buf))),
                Err(e) => Some(Err(e.status)),
            };
            if let Some(exchange) = exchange {
                let consumed = exchange.as_ref().ok().map(|r| (r.head_len, r.body_len));
                let outcome = answer(&mut io, ctx, peer, exchange, &buf, &mut phase, &timer).await;
                head_started = None;
                idle_since = Instant::now();
                match (outcome, consumed) {
                    (Outcome::KeepAlive, Some((head_len, body_len))) => {
                        buf.drain(..head_len);
                        skip = body_len;
                        continue;
                    }
                    (Outcome::Failed, _) => {
                        io.abort();
                        return;
                    }
                    (_, consumed) => {
                        // Unread input (a refused head, a pipelined request, an unread body)
                        // needs a lingering close; a clean close can just drop the socket.
                        let unread = consumed.is_none_or(|(h, b)| buf.len() > h || b > 0);
                        if unread {
                            linger(&mut io, buf, &timer).await;
                        }
                        return;
                    }
                }
            }
        }

        // More bytes are needed. Idle connections go away as soon as shutdown starts.
        let idle = buf.is_empty() && skip == 0;
        if idle && *phase.borrow() != RUNNING {
            return;
        }
        timer.read_by(match head_started {
            Some(t) => t + header_for,
            None if skip > 0 => idle_since + header_for,
            None => idle_since + keep_alive_for,
        });
        let got = tokio::select! {
            biased;
            r = io.read(buf) => Some(r),
            _ = wait_for(&mut phase, if idle { DRAINING } else { ABORTING }) => None,
        };
        let Some((read, b)) = got else {
            io.abort();
            return;
        };
        buf = b;
        match read {
            Ok(n) if n > 0 && !timer.expired() => {
                if skip == 0 && head_started.is_none() {
                    head_started = Some(Instant::now());
                }
            }
            _ if timer.expired() => {
                // A head that never completed gets a 408 (logged with what arrived of it); an idle
                // keep-alive just closes.
                if head_started.is_some() {
                    let timed_out = Err(Status::RequestTimeout);
                    let _ = answer(&mut io, ctx, peer, timed_out, &buf, &mut phase, &timer).await;
                }
                io.abort();
                return;
            }
            Ok(_) => return, // the peer closed
            Err(_) => {
                io.abort();
                return;
            }
        }
    }
}

/// How a connection continues after a response.
enum Outcome {
    KeepAlive,
    Close,
    /// The response could not be sent completely.
    Failed,
}

/// Decides, sends, logs and counts one response. `Err(status)` is a request that was refused
/// before it parsed; `head` is what arrived of it, for the log.
async fn answer<T: Transport>(
    io: &mut T,
    ctx: &Ctx,
    peer: IpAddr,
    exchange: Result<Request, Status>,
    head: &[u8],
    phase: &mut watch::Receiver<u8>,
    timer: &Deadline,
) -> Outcome {
    let shared = &*ctx.shared;
    let limits = &shared.config.limits;
    let started = Instant::now();
    // The wall-clock time is only needed for a log line.
    let time = shared.log.enabled().then(SystemTime::now);
    let (plan, path, method) = match exchange {
        Ok(req) => {
            let keep_alive = limits.keep_alive_timeout_secs > 0 && *phase.borrow() == RUNNING;
            let plan = if req.body_len > limits.max_request_bytes as u64 {
                respond::error_plan(Status::PayloadTooLarge, &req, false)
            } else {
                decide(io, ctx, &req, keep_alive).await
            };
            (plan, req.raw_path, req.method)
        }
        Err(status) => {
            let (method, path) = http::request::line_hint(head);
            let plan = respond::error_response(status, false, false);
            (plan, path, Method::Other(method))
        }
    };
    let status = plan.status.code();
    let keep_alive = plan.keep_alive;
    let wire = plan.wire_len();
    let stats = &shared.stats.workers[ctx.worker];
    stats.response(status);
    timer.writing(Duration::from_secs(limits.send_timeout_secs));
    let sent = tokio::select! {
        biased;
        r = io.send(plan, timer) => r.is_ok() && !timer.expired(),
        _ = wait_for(phase, ABORTING) => false,
    };
    if sent {
        stats.sent(wire);
    }
    if let Some(time) = time {
        let method = match method {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Other(m) => m,
        };
        shared.log.send(Record {
            time,
            ip: peer,
            path,
            status,
            method,
            bytes: if sent { wire } else { 0 },
            duration: started.elapsed(),
        });
    }
    match (sent, keep_alive) {
        (false, _) => Outcome::Failed,
        (true, true) => Outcome::KeepAlive,
        (true, false) => Outcome::Close,
    }
}

/// Answers from the file cache when it can; otherwise walks the response steps, doing each
/// file-system step with the engine's primitives, and keeps small files it served in the cache.
async fn decide<T: Transport>(
    io: &mut T,
    ctx: &Ctx,
    req: &Request,
    keep_alive: bool,
) -> Plan<T::File> {
    let shared = &*ctx.shared;
    let config = &shared.config;
    let status_path = config.server.status_path.as_bytes();
    if !status_path.is_empty() && req.path == status_path {
        return status_page(shared, req, keep_alive && req.keep_alive);
    }
    let rules = Rules {
        policy: &shared.policy,
        index: &config.files.index,
        keep_alive,
    };
    let target = files::resolve(&req.path);
    let key = target.as_ref().ok().map(cache::key);
    if let Some(key) = &key {
        let found = ctx.cache.borrow().lookup(key, Instant::now());
        let hit = match found {
            Lookup::Fresh(info, body) => Some((info, body)),
            Lookup::Stale(rel) => {
                let stat = io.stat(&rel).await.ok();
                ctx.cache.borrow_mut().revalidate(key, stat, Instant::now())
            }
            Lookup::Miss => None,
        };
        if let Some((info, body)) = hit {
            return respond::file_plan(&rules, req, &info, Ok(Source::Memory(body)));
        }
    }

    let mut step = respond::begin(&rules, req, target);
    loop {
        step = match step {
            Step::Open(lookup) => {
                let opened = io.open(&lookup.rel).await;
                respond::after_open(&rules, req, lookup, opened)
            }
            Step::Serve(lookup, file, meta, content_type) => {
                let info = FileInfo::new(meta, content_type);
                let Some(key) = key.filter(|_| ctx.cache.borrow().wants(meta.size)) else {
                    return respond::file_plan(&rules, req, &info, Ok(Source::File(file)));
                };
                return match io.read_whole(file, meta.size).await {
                    Ok(bytes) => {
                        let (info, body) = (Rc::new(info), Bytes::from(bytes));
                        let mut cache = ctx.cache.borrow_mut();
                        cache.insert(key, lookup.rel, info.clone(), body.clone(), Instant::now());
                        drop(cache);
                        respond::file_plan(&rules, req, &info, Ok(Source::Memory(body)))
                    }
                    // The file changed while it was read: serve it as it is now, uncached.
                    Err(_) => match io.open(&lookup.rel).await {
                        Ok((file, meta)) if meta.kind == files::Kind::File => {
                            let info = FileInfo::new(meta, content_type);
                            respond::file_plan(&rules, req, &info, Ok(Source::File(file)))
                        }
                        Ok(_) => respond::error_plan(Status::NotFound, req, keep_alive),
                        Err(e) => respond::file_plan(&rules, req, &info, Err(e)),
                    },
                };
            }
            Step::Send(plan) => return plan,
        }
    }
}

/// The counters as `name: value` lines.
fn status_page<F>(shared: &Shared, req: &Request, keep_alive: bool) -> Plan<F> {
    let text = shared.stats.render().into_bytes();
    let mut head = Head::new(Vec::with_capacity(256), Status::Ok);
    head.header("Content-Type", b"text/plain; charset=utf-8");
    head.header("Cache-Control", b"no-store");
    let head = head.finish(text.len() as u64, keep_alive);
    let body = if req.method == Method::Head {
        respond::Body::Empty
    } else {
        respond::Body::Bytes(Bytes::from(text))
    };
    Plan {
        status: Status::Ok,
        head,
        body,
        keep_alive,
    }
}

/// Closing after an error while the client may still be sending: a plain close with unread
/// bytes makes the kernel send a reset, which can destroy the response before the client reads
/// it. So stop writing, then read and discard for a short while (nginx's lingering close).
async fn linger<T: Transport>(io: &mut T, mut buf: Vec<u8>, timer: &Deadline) {
    const LINGER: Duration = Duration::from_secs(2);
    const LIMIT: usize = 256 * 1024;
    io.close_write();
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
    io.abort();
}

/// Resolves once the worker's phase reaches `at_least`.
async fn wait_for(phase: &mut watch::Receiver<u8>, at_least: u8) {
    while *phase.borrow_and_update() < at_least {
        if phase.changed().await.is_err() {
            return;
        }
    }
}
