//! The floors' `serve` experiment (`FLOOR_URING=serve`, `FLOOR_EPOLL=serve`): uring-httpd's own
//! connection loop, [`conn::serve`] unchanged (with a worker's context, deadline table, exchange,
//! file cache and counters), driven by a minimal executor of the lab's own instead of tokio and
//! tokio-uring, over each floor's I/O. On io_uring: SINGLE_ISSUER | DEFER_TASKRUN, one multishot
//! accept, per connection one multishot recv drawing from the floor's provided buffer ring, sends
//! as io_uring operations, and one `submit_and_wait(1)` per turn, so the thread's only wait is the
//! ring's own. On epoll: edge-triggered readiness (in, out and peer half-close, registered once),
//! nonblocking `recv`/`send`, one `epoll_wait` per turn. Either way the clock is read once per
//! turn, as a worker's [`Clock::turns`] does, and the deadline table is swept every [`SWEEP`].
//!
//! Beside the floors' `core` experiment (the HTTP work with no connection loop at all,
//! [`crate::floor_core`]) and the engines (this same loop on tokio-uring and on tokio), it prices
//! what a runtime of uring-httpd's own would give each engine (`benches/README.md`, the
//! fourteenth session).
//!
//! Bounds of an experiment: one thread, whose wakers only work on it (a wake from another thread
//! is lost, so a directory listing, which wakes from the blocking pool, would hang: the lab serves
//! files); files are opened, stat'ed and read with blocking system calls, and a body sent from
//! its file (one over the cache's limit) goes out in 64 KiB `pread`s and sends, correct but not
//! fast; peers are logged as 127.0.0.1 (the lab's log is
//! off); tasks are never cancelled, only run to their end.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::fs::File;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::Instant;

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use uring_httpd::Shared;
use uring_httpd::clock::Clock;
use uring_httpd::config::{AccessTarget, Config, LogFormat};
use uring_httpd::conn::{self, Ctx, Transport};
use uring_httpd::deadline::{Deadline, SWEEP, Shut};
use uring_httpd::engine::multishot::BufRing;
use uring_httpd::files::{Meta, sys};
use uring_httpd::settings::Settings;

use crate::floor_epoll::LISTENER;
use crate::floor_proto::{self, Reply};
use crate::floor_uring::{BGID, MAX_CONNS, buf_ring};

/// Bodies up to this size are read behind the head and sent with it, as the epoll engine does.
const INLINE: u64 = 16 * 1024;
/// Submission queue entries; the completion queue gets four times as many.
const ENTRIES: u32 = 4096;
/// Bodies over [`INLINE`] go out in reads and sends of this size.
const CHUNK: usize = 64 * 1024;
/// epoll events taken per wait.
const EVENTS: usize = 512;

// ---------------------------------------------------------------------------------------------
// The executor: tasks in a slab, woken by index onto a thread-local ready list.

type Task = Pin<Box<dyn Future<Output = ()>>>;

#[derive(Default)]
struct Ready {
    ids: Vec<usize>,
    queued: Vec<bool>,
}

thread_local! {
    static READY: RefCell<Ready> = RefCell::new(Ready::default());
}

fn wake(id: usize) {
    READY.with_borrow_mut(|r| {
        if r.queued.len() <= id {
            r.queued.resize(id + 1, false);
        }
        if !r.queued[id] {
            r.queued[id] = true;
            r.ids.push(id);
        }
    });
}

fn clone_raw(p: *const ()) -> RawWaker {
    RawWaker::new(p, &VTABLE)
}
fn wake_raw(p: *const ()) {
    wake(p.addr());
}
fn drop_raw(_: *const ()) {}

/// A waker carries its task's index and owns nothing. Waking from another thread than the
/// executor's queues the index on that thread's list, where nothing runs it: a lost wake, never
/// memory unsafety (see the module's bounds).
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn waker(id: usize) -> Waker {
    // SAFETY: the vtable's functions never dereference the data pointer (an index), and do
    // nothing thread-unsafe: each touches only its own thread's list.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::without_provenance(id), &VTABLE)) }
}

#[derive(Default)]
struct Tasks {
    slots: Vec<Option<Task>>,
    free: Vec<usize>,
    batch: Vec<usize>,
}

impl Tasks {
    fn spawn(&mut self, f: impl Future<Output = ()> + 'static) {
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.slots[id] = Some(Box::pin(f));
        wake(id);
    }

    /// Polls woken tasks until none is left. A stale wake (of a finished task, or of one whose
    /// slot was reused) costs a spurious poll, which futures allow.
    fn run(&mut self) {
        loop {
            READY.with_borrow_mut(|r| std::mem::swap(&mut r.ids, &mut self.batch));
            if self.batch.is_empty() {
                return;
            }
            for i in 0..self.batch.len() {
                let id = self.batch[i];
                READY.with_borrow_mut(|r| r.queued[id] = false);
                let Some(task) = self.slots[id].as_mut() else {
                    continue;
                };
                let w = waker(id);
                if task.as_mut().poll(&mut Context::from_waker(&w)).is_ready() {
                    self.slots[id] = None;
                    self.free.push(id);
                }
            }
            self.batch.clear();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What both reactors share: the worker's context and the blocking file primitives.

/// A worker's context with uring-httpd's default configuration over `file`'s directory, the log
/// off, and a clock that moves only when the loop advances it (once per turn).
fn worker(file: &Path) -> Result<(&'static Ctx, Clock), String> {
    let root = file
        .parent()
        .ok_or_else(|| format!("{}: not a file in a directory", file.display()))?;
    let mut config = Config::default();
    config.log.access = "off".into();
    let settings =
        Settings::open(config, root, 1).map_err(|e| format!("{}: {e}", root.display()))?;
    let (log, _writer) = uring_httpd::log::start(&AccessTarget::Off, LogFormat::Default, 1)
        .map_err(|e| format!("access log: {e}"))?;
    let shared = Arc::new(Shared::new(settings, log, "floor-serve", 1));
    let clock = Clock::manual();
    let ctx = Box::leak(Box::new(Ctx::new(shared, 0, clock.clone())));
    Ok((ctx, clock))
}

/// One turn's clock reading.
fn turn(clock: &Clock) {
    clock.advance(Instant::now().saturating_duration_since(clock.now()));
}

/// Sweeps the deadline table when a sweep is due.
fn sweep(ctx: &Ctx, next: &mut Instant) {
    let now = ctx.clock.now();
    if now >= *next {
        ctx.deadlines.sweep(now);
        *next = now + SWEEP;
    }
}

const LAB_PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn serve_task(io: impl Transport, ctx: &'static Ctx) {
    let settings = ctx.settings_for_new_connection();
    conn::serve(io, LAB_PEER, ctx, settings).await;
}

fn close(fd: i32) {
    // SAFETY: fd was accepted by this process, and nothing uses it any more.
    unsafe { libc::close(fd) };
}

fn os_error(neg: i32) -> io::Error {
    io::Error::from_raw_os_error(-neg)
}

/// A body the connection hands to a send, kept where the kernel reads it until the send is over.
enum Keep {
    Vec(Vec<u8>),
    Bytes(Bytes),
}

impl Keep {
    fn bytes(&self) -> &[u8] {
        match self {
            Keep::Vec(v) => v,
            Keep::Bytes(b) => b,
        }
    }
    fn into_vec(self) -> Vec<u8> {
        match self {
            Keep::Vec(v) => v,
            Keep::Bytes(_) => Vec::new(),
        }
    }
}

/// A connection's socket as both reactors keep it.
struct Sock {
    fd: i32,
    /// Received and not yet read: (buffer id, consumed, length) on io_uring.
    inbox: RefCell<VecDeque<(u16, usize, usize)>>,
    /// End of stream (0) or an error (-errno), once seen.
    end: Cell<Option<i32>>,
    reader: RefCell<Option<Waker>>,
    writer: RefCell<Option<Waker>>,
    /// io_uring: the multishot recv is armed. epoll: the socket may be readable.
    armed: Cell<bool>,
    /// epoll: the socket may take more bytes.
    writable: Cell<bool>,
    /// epoll: the peer half-closed (the socket stays readable: its end is still to be read).
    hup: Cell<bool>,
    /// The connection has ended; the descriptor is closed once nothing is in flight on it.
    dropped: Cell<bool>,
    closed: Cell<bool>,
}

impl Sock {
    fn new(fd: i32) -> Sock {
        Sock {
            fd,
            inbox: RefCell::default(),
            end: Cell::new(None),
            reader: RefCell::default(),
            writer: RefCell::default(),
            armed: Cell::new(false),
            writable: Cell::new(true),
            hup: Cell::new(false),
            dropped: Cell::new(false),
            closed: Cell::new(false),
        }
    }

    fn close(&self) {
        if !self.closed.replace(true) {
            close(self.fd);
        }
    }

    fn wake_reader(&self) {
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
    }
}

impl Shut for Sock {
    fn shut(&self, how: Shutdown) {
        if !self.closed.get() {
            let how = match how {
                Shutdown::Read => libc::SHUT_RD,
                Shutdown::Write => libc::SHUT_WR,
                Shutdown::Both => libc::SHUT_RDWR,
            };
            // SAFETY: the descriptor is open (not `closed`).
            unsafe { libc::shutdown(self.fd, how) };
        }
    }
}

/// A reactor's connections, by fd.
#[derive(Default)]
struct Socks(RefCell<Vec<Option<Rc<Sock>>>>);

impl Socks {
    /// A new connection on `fd`.
    fn insert(&self, fd: i32) -> Rc<Sock> {
        let sock = Rc::new(Sock::new(fd));
        let mut socks = self.0.borrow_mut();
        if socks.len() <= fd as usize {
            socks.resize_with(fd as usize + 1, || None);
        }
        socks[fd as usize] = Some(sock.clone());
        sock
    }

    fn get(&self, fd: i32) -> Option<Rc<Sock>> {
        self.0.borrow().get(fd as usize).cloned().flatten()
    }

    /// Closes `sock`'s descriptor and forgets it.
    fn close(&self, sock: &Sock) {
        sock.close();
        self.0.borrow_mut()[sock.fd as usize] = None;
    }
}

/// How a reactor reads and writes a connection's socket, and lets it go.
#[allow(async_fn_in_trait)]
trait Reactor: 'static {
    /// Reads into the spare capacity of `buf`, as [`Transport::read`].
    async fn read(&self, sock: &Sock, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Sends all of `keep`, marking progress on `deadline`; hands `keep` back.
    async fn send_all(
        &self,
        sock: &Sock,
        keep: Keep,
        deadline: &Deadline,
    ) -> (io::Result<()>, Keep);
    /// The connection has ended: close its descriptor once nothing is in flight on it.
    fn ended(&self, sock: &Sock);
}

/// A connection on reactor `R`: the [`Transport`] `conn::serve` drives.
struct Conn<R: Reactor> {
    reactor: Rc<R>,
    sock: Rc<Sock>,
}

impl<R: Reactor> Transport for Conn<R> {
    type File = File;

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.reactor.read(&self.sock, buf).await
    }

    async fn stat(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Meta> {
        sys::statx(root.as_raw_fd(), rel, 0)
    }

    async fn open(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<(File, Meta)> {
        sys::open_file(root.as_raw_fd(), rel)
    }

    async fn read_whole(&mut self, file: File, len: u64) -> io::Result<Vec<u8>> {
        sys::read_whole(&file, len)
    }

    async fn write_all(&mut self, buf: Vec<u8>, deadline: &Deadline) -> (io::Result<()>, Vec<u8>) {
        let (r, keep) = self
            .reactor
            .send_all(&self.sock, Keep::Vec(buf), deadline)
            .await;
        (r, keep.into_vec())
    }

    async fn write_parts(
        &mut self,
        head: Vec<u8>,
        body: Bytes,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        let (r, head) = self.write_all(head, deadline).await;
        if r.is_err() {
            return (r, head);
        }
        let (r, _) = self
            .reactor
            .send_all(&self.sock, Keep::Bytes(body), deadline)
            .await;
        (r, head)
    }

    async fn send_file(
        &mut self,
        mut head: Vec<u8>,
        file: File,
        offset: u64,
        len: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        if len <= INLINE {
            let at = head.len();
            head.resize(at + len as usize, 0);
            if let Err(e) = sys::read_exact_at(&file, &mut head[at..], offset) {
                return (Err(e), head);
            }
            return self.write_all(head, deadline).await;
        }
        let (r, head) = self.write_all(head, deadline).await;
        if r.is_err() {
            return (r, head);
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let n = (end - at).min(CHUNK as u64) as usize;
            chunk.resize(n, 0);
            if let Err(e) = sys::read_exact_at(&file, &mut chunk, at) {
                return (Err(e), head);
            }
            let (r, back) = self.write_all(chunk, deadline).await;
            if r.is_err() {
                return (r, head);
            }
            chunk = back;
            at += n as u64;
        }
        (Ok(()), head)
    }

    fn secure_body(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    fn handle(&self) -> Rc<dyn Shut> {
        self.sock.clone()
    }
}

impl<R: Reactor> Drop for Conn<R> {
    fn drop(&mut self) {
        self.sock.dropped.set(true);
        self.reactor.ended(&self.sock);
    }
}

// ---------------------------------------------------------------------------------------------
// io_uring.

/// user_data: the kind in the high half; an operation's slot or a connection's fd in the low one.
const ACCEPT: u64 = 1 << 32;
const RECV: u64 = 2 << 32;
const OP: u64 = 4 << 32;

/// One io_uring operation a task waits for.
#[derive(Default)]
struct Slot {
    res: Option<i32>,
    waker: Option<Waker>,
    keep: Option<Keep>,
    /// Its future was dropped before the completion: the completion frees the slot.
    orphan: bool,
}

struct Ring {
    ring: RefCell<IoUring>,
    bufs: RefCell<&'static mut BufRing>,
    ops: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    socks: Socks,
}

impl Ring {
    fn push(&self, e: &squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: every entry refers to an open fd and, for sends, to memory kept in the
            // operation's slot until its completion.
            if unsafe { ring.submission().push(e) }.is_ok() {
                return;
            }
            let _ = ring.submit();
        }
    }

    fn arm_recv(&self, sock: &Sock) {
        let e = opcode::RecvMulti::new(types::Fd(sock.fd), BGID)
            .build()
            .user_data(RECV | sock.fd as u32 as u64);
        self.push(&e);
        sock.armed.set(true);
    }

    /// Sends `keep[at..]` on `fd` as an io_uring operation; the future yields the result and
    /// hands `keep` back.
    fn send(&self, fd: i32, keep: Keep, at: usize) -> OpFuture<'_> {
        let id = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut ops = self.ops.borrow_mut();
            ops.push(Slot::default());
            ops.len() - 1
        });
        let data = &keep.bytes()[at..];
        let e = opcode::Send::new(types::Fd(fd), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(OP | id as u64);
        self.ops.borrow_mut()[id] = Slot {
            keep: Some(keep),
            ..Slot::default()
        };
        self.push(&e);
        OpFuture {
            ring: self,
            id,
            done: false,
        }
    }

    fn complete(&self, id: usize, res: i32) {
        let mut ops = self.ops.borrow_mut();
        let slot = &mut ops[id];
        if slot.orphan {
            *slot = Slot::default();
            self.free.borrow_mut().push(id);
            return;
        }
        slot.res = Some(res);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }

    fn received(&self, fd: i32, res: i32, flags: u32) {
        let Some(sock) = self.socks.get(fd) else {
            return;
        };
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && !sock.dropped.get() {
                sock.inbox.borrow_mut().push_back((bid, 0, res as usize));
            } else {
                self.bufs.borrow_mut().give(bid);
                self.bufs.borrow().publish();
            }
        }
        if res == 0 || (res < 0 && res != -libc::ENOBUFS) {
            sock.end.set(Some(res.min(0)));
        }
        if !cqueue::more(flags) {
            sock.armed.set(false);
            if sock.end.get().is_none() && !sock.dropped.get() {
                self.arm_recv(&sock);
            }
        }
        sock.wake_reader();
        if sock.dropped.get() && !sock.armed.get() {
            self.socks.close(&sock);
        }
    }

    fn accepted(self: &Rc<Self>, fd: i32, tasks: &mut Tasks, ctx: &'static Ctx) {
        if fd as usize >= MAX_CONNS {
            close(fd);
            return;
        }
        floor_proto::nodelay(fd);
        let sock = self.socks.insert(fd);
        self.arm_recv(&sock);
        let io = Conn {
            reactor: self.clone(),
            sock,
        };
        tasks.spawn(serve_task(io, ctx));
    }
}

struct OpFuture<'a> {
    ring: &'a Ring,
    id: usize,
    done: bool,
}

impl Future for OpFuture<'_> {
    type Output = (i32, Keep);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, Keep)> {
        let id = self.id;
        let mut ops = self.ring.ops.borrow_mut();
        let slot = &mut ops[id];
        match slot.res {
            Some(res) => {
                let keep = slot.keep.take().expect("a send's body");
                *slot = Slot::default();
                drop(ops);
                self.ring.free.borrow_mut().push(id);
                self.done = true;
                Poll::Ready((res, keep))
            }
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for OpFuture<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut ops = self.ring.ops.borrow_mut();
            if ops[self.id].res.is_some() {
                ops[self.id] = Slot::default();
                self.ring.free.borrow_mut().push(self.id);
            } else {
                ops[self.id].orphan = true;
            }
        }
    }
}

/// A connection on the io_uring reactor.
impl Reactor for Ring {
    async fn read(&self, sock: &Sock, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let r = poll_fn(|cx| {
            let mut inbox = sock.inbox.borrow_mut();
            let mut n = 0;
            let mut gave = false;
            while let Some((bid, at, len)) = inbox.front_mut() {
                let room = buf.capacity() - buf.len();
                if room == 0 {
                    break;
                }
                let bufs = self.bufs.borrow();
                let data = &bufs.get(*bid, *len)[*at..];
                let take = room.min(data.len());
                buf.extend_from_slice(&data[..take]);
                drop(bufs);
                *at += take;
                n += take;
                if at == len {
                    let bid = *bid;
                    inbox.pop_front();
                    self.bufs.borrow_mut().give(bid);
                    gave = true;
                }
            }
            if gave {
                self.bufs.borrow().publish();
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            match sock.end.get() {
                Some(0) => Poll::Ready(Ok(0)),
                Some(e) => Poll::Ready(Err(os_error(e))),
                None => {
                    *sock.reader.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        (r, buf)
    }

    async fn send_all(
        &self,
        sock: &Sock,
        mut keep: Keep,
        deadline: &Deadline,
    ) -> (io::Result<()>, Keep) {
        let len = keep.bytes().len();
        let mut at = 0;
        while at < len {
            let (res, k) = self.send(sock.fd, keep, at).await;
            keep = k;
            match res {
                r if r < 0 => return (Err(os_error(r)), keep),
                0 => return (Err(io::ErrorKind::WriteZero.into()), keep),
                r => at += r as usize,
            }
            deadline.progress();
        }
        (Ok(()), keep)
    }

    fn ended(&self, sock: &Sock) {
        let mut bufs = self.bufs.borrow_mut();
        for (bid, _, _) in sock.inbox.borrow_mut().drain(..) {
            bufs.give(bid);
        }
        bufs.publish();
        if sock.armed.get() {
            // Ends the multishot recv; its last completion closes the descriptor.
            sock.shut(Shutdown::Both);
        } else {
            self.socks.close(sock);
        }
    }
}

/// Serves `listener` with `conn::serve` on the io_uring reactor, for ever; `ready` runs once the
/// ring is set up. Returns only on an error of the ring.
pub fn serve_uring(
    listener: &TcpListener,
    file: &Path,
    ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let (ctx, clock) = worker(file)?;
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(ENTRIES * 4)
        .build(ENTRIES)
        .map_err(|e| format!("io_uring setup (SINGLE_ISSUER | DEFER_TASKRUN): {e}"))?;
    let bufs = buf_ring(&ring)?;
    let ring = Rc::new(Ring {
        ring: RefCell::new(ring),
        bufs: RefCell::new(bufs),
        ops: RefCell::default(),
        free: RefCell::default(),
        socks: Socks::default(),
    });
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT);
    ring.push(&accept);
    ready()?;
    let mut tasks = Tasks::default();
    let mut done: Vec<(u64, i32, u32)> = Vec::new();
    let mut next_sweep = Instant::now();
    loop {
        tasks.run();
        sweep(ctx, &mut next_sweep);
        {
            let mut r = ring.ring.borrow_mut();
            match r.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(format!("io_uring_enter: {e}")),
            }
            done.extend(
                r.completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
        }
        turn(&clock);
        for (ud, res, flags) in done.drain(..) {
            let low = ud as u32;
            match ud & !0xffff_ffff {
                ACCEPT => {
                    if res >= 0 {
                        ring.accepted(res, &mut tasks, ctx);
                    }
                    if !cqueue::more(flags) {
                        ring.push(&accept);
                    }
                }
                RECV => ring.received(low as i32, res, flags),
                OP => ring.complete(low as usize, res),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// epoll.

struct Epoll {
    epfd: std::os::fd::OwnedFd,
    socks: Socks,
}

impl Reactor for Epoll {
    async fn read(&self, sock: &Sock, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let r = poll_fn(|cx| {
            loop {
                if !sock.armed.get() {
                    *sock.reader.borrow_mut() = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let room = buf.spare_capacity_mut();
                let (at, len) = (room.as_mut_ptr(), room.len());
                // SAFETY: fd is open; the spare capacity is valid for `len` bytes, and recv only
                // writes into it.
                let n = unsafe { libc::recv(sock.fd, at.cast(), len, libc::MSG_DONTWAIT) };
                if n >= 0 {
                    // SAFETY: recv initialised the first n bytes of the spare capacity.
                    unsafe { buf.set_len(buf.len() + n as usize) };
                    // A short read drained the socket, as the engine reads it (and nginx): the
                    // next read waits for epoll's next edge instead of spending a recv on EAGAIN.
                    if n > 0 && (n as usize) < len && !sock.hup.get() {
                        sock.armed.set(false);
                    }
                    return Poll::Ready(Ok(n as usize));
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) => sock.armed.set(false),
                    _ => return Poll::Ready(Err(e)),
                }
            }
        })
        .await;
        (r, buf)
    }

    async fn send_all(
        &self,
        sock: &Sock,
        keep: Keep,
        deadline: &Deadline,
    ) -> (io::Result<()>, Keep) {
        let buf = keep.bytes();
        let mut done = 0;
        while done < buf.len() {
            let b = &buf[done..];
            // SAFETY: fd is open while the connection lives; `b` is valid for its length.
            let n = unsafe {
                libc::send(
                    sock.fd,
                    b.as_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                done += n as usize;
                deadline.progress();
                continue;
            }
            let e = match n {
                0 => io::ErrorKind::WriteZero.into(),
                _ => io::Error::last_os_error(),
            };
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN) => {
                    sock.writable.set(false);
                    poll_fn(|cx| {
                        if sock.writable.get() {
                            Poll::Ready(())
                        } else {
                            *sock.writer.borrow_mut() = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                }
                _ => return (Err(e), keep),
            }
        }
        (Ok(()), keep)
    }

    fn ended(&self, sock: &Sock) {
        // Closing the descriptor removes it from the epoll set; nothing is in flight on it.
        self.socks.close(sock);
    }
}

/// Serves `listener` (nonblocking) with `conn::serve` on the epoll reactor, for ever; `ready`
/// runs once epoll is set up. Returns only on an error of epoll.
pub fn serve_epoll(
    listener: &TcpListener,
    file: &Path,
    ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let (ctx, clock) = worker(file)?;
    let epfd = crate::floor_epoll::create()?;
    let (lfd, ep) = (listener.as_raw_fd(), epfd.as_raw_fd());
    crate::floor_epoll::register(ep, lfd, libc::EPOLLIN as u32, LISTENER)?;
    let poll = Rc::new(Epoll {
        epfd,
        socks: Socks::default(),
    });
    ready()?;
    let mut tasks = Tasks::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut next_sweep = Instant::now();
    let conn_events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    loop {
        tasks.run();
        sweep(ctx, &mut next_sweep);
        // SAFETY: `events` has room for EVENTS entries and outlives the call.
        let n = unsafe {
            libc::epoll_wait(
                poll.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        turn(&clock);
        for ev in &events[..n as usize] {
            let (bits, data) = (ev.events, ev.u64);
            if data == LISTENER {
                crate::floor_epoll::accept_all(lfd, ep, conn_events, |fd| {
                    let sock = poll.socks.insert(fd);
                    sock.armed.set(true);
                    let io = Conn {
                        reactor: poll.clone(),
                        sock,
                    };
                    tasks.spawn(serve_task(io, ctx));
                });
                continue;
            }
            let Some(sock) = poll.socks.get(data as i32) else {
                continue;
            };
            if bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0
            {
                if bits & libc::EPOLLRDHUP as u32 != 0 {
                    sock.hup.set(true);
                }
                sock.armed.set(true);
                sock.wake_reader();
            }
            if bits & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                sock.writable.set(true);
                if let Some(w) = sock.writer.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }
}

/// `lab floor-uring` / `floor-epoll` with `serve` as their mode: listens on `port` and serves
/// `file`'s directory with the connection loop on the chosen reactor.
pub fn run(port: u16, file: &Path, uring: bool) -> Result<(), String> {
    floor_proto::bound_to_parent();
    let reply = Reply::for_file(file)?;
    let listener = floor_proto::listen(port, !uring)?;
    if uring {
        let name = "floor-uring (FLOOR_URING=serve)";
        serve_uring(&listener, file, || {
            floor_proto::announce(name, &listener, &reply)
        })
    } else {
        let name = "floor-epoll (FLOOR_EPOLL=serve)";
        serve_epoll(&listener, file, || {
            floor_proto::announce(name, &listener, &reply)
        })
    }
}
