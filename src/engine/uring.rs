//! The io_uring engine: tokio-uring runtimes, one per worker thread. Accepts, socket reads and
//! writes, `statx`, `openat2` (beneath the root, enforced by the kernel), file reads and closes
//! are all io_uring operations, batched into one `io_uring_enter` each time the thread parks.
//! The one exception: a plain write (a head with its small body, or what a partial `sendmsg` left)
//! made while no other connection of the worker has a read on the ring goes out with a direct
//! `send(2)` first, since no batch would share its round trip (`UringConn::write_buf`).
//!
//! tokio-uring has no `openat2` and no dirfd-relative `statx` taking a raw descriptor, so both are
//! submitted as custom one-shot operations whose path and result buffers live on the heap until
//! the completion arrives. Operations cannot be cancelled: code that abandons one shuts the socket
//! down first (see [`Transport::abort`]).
//!
//! Socket reads go through the worker's receive ring ([`super::multishot`]): one multishot
//! receive per connection, armed once, into provided buffers, on a small ring beside tokio-uring's
//! (which cannot take an operation with more than one completion). On kernels without it (before
//! 6.0) each read is a single-shot `IORING_OP_RECV` on tokio-uring's ring, as described next.
//!
//! Socket reads and writes are `IORING_OP_RECV`, `IORING_OP_SEND` and (a head with a shared cached
//! body) `IORING_OP_SENDMSG`, custom operations all, not tokio-uring's `read`/`write`/`writev`,
//! whose `IORING_OP_READ`/`WRITE`/`WRITEV` go through the file layer
//! (`rw_verify_area`, `sock_read_iter`, kiocb set-up) on every call. Every socket read is
//! submitted with `IORING_RECVSEND_POLL_FIRST`: most are for the next request, which the client
//! has usually not sent yet, so the kernel arms its poll at once instead of first trying a
//! receive that fails with `EAGAIN` (kernels before 5.19 refuse the flag, and the engine then
//! stops asking for it; some older ones ignore it, which leaves a plain receive).
//!
//! Uncached bodies from 64 KiB to 1 MiB go out with `IORING_OP_SPLICE`, file → pipe → socket, so
//! their bytes never pass through user space (the io_uring counterpart of `sendfile`). Each such
//! operation holds `Rc` handles to the socket, the file and the pipe, so none of those descriptors
//! can be closed (and its number reused) while the kernel may still act on it. Bodies from 1 MiB
//! are copied through a pooled buffer instead ([`COPY_MIN`]).

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types};
use tokio_uring::buf::{BoundedBuf, IoBuf};
use tokio_uring::fs::File;
use tokio_uring::net::{TcpListener, TcpStream};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

use super::multishot::{Receiver, Rx};
use super::worker::{Acceptor, Driver};
use crate::conn::Transport;
use crate::deadline::{Deadline, Shut};
use crate::files::{self, Meta};

/// The io_uring engine, for [`super::worker::run_worker`].
pub struct Uring;

impl Driver for Uring {
    type Acceptor = UringAcceptor;

    fn block_on(fut: impl Future<Output = ()>) -> io::Result<()> {
        // COOP_TASKRUN: completions that arrive while the worker runs wait for its next system
        // call instead of interrupting it with an IPI (0.85-0.95x CPU per request on 2 KiB,
        // benches/README.md); SINGLE_ISSUER: only this thread submits, so the kernel skips
        // locking. Kernels before 6.0 refuse the pair (EINVAL): a two-entry ring tries it first
        // (a failed tokio_uring::Runtime::new would leak the tokio runtime it had built), and
        // without it the ring is made with neither.
        let mut ring = tokio_uring::uring_builder();
        ring.setup_coop_taskrun().setup_single_issuer();
        let mut builder = tokio_uring::builder();
        builder.entries(1024);
        if ring.build(2).is_ok() {
            builder.uring_builder(&ring);
        }
        let rt = tokio_uring::Runtime::new(&builder)?;
        rt.block_on(fut);
        Ok(())
    }

    fn acceptor(listener: std::net::TcpListener) -> io::Result<UringAcceptor> {
        let recv = if crate::fault::injected("no-recv-ring") {
            Err(io::Error::other("injected fault no-recv-ring"))
        } else {
            Receiver::new()
        };
        let recv = match recv {
            Ok(recv) => {
                tokio_uring::spawn(recv.clone().drive());
                Some(recv)
            }
            Err(e) => {
                tracing::warn!(
                    "io_uring: no multishot receive ring ({e}; Linux 6.0 or later has one): \
                     one receive per request instead"
                );
                None
            }
        };
        Ok(UringAcceptor {
            listener: TcpListener::from_std(listener),
            recv,
        })
    }
}

/// A worker's listener on the ring.
pub struct UringAcceptor {
    listener: TcpListener,
    /// The worker's receive ring ([`super::multishot`]), when the kernel has one.
    recv: Option<Rc<Receiver>>,
}

impl Acceptor for UringAcceptor {
    type Conn = UringConn;

    async fn accept(&self) -> io::Result<(UringConn, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        stream.set_nodelay(true)?;
        let rx = self.recv.as_ref().map(|r| r.open(stream.as_raw_fd()));
        Ok((
            UringConn {
                stream: Rc::new(stream),
                rx,
                pipe: None,
            },
            peer,
        ))
    }

    fn stop(&self) {
        // SAFETY: shutdown(2) on a descriptor this listener owns; it only changes socket state.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

impl Shut for TcpStream {
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// One connection on the ring.
pub struct UringConn {
    /// The socket's receive on the worker's receive ring. A receive armed there holds the
    /// kernel's own reference to the socket, which stays open until the cancellation that
    /// dropping this queues has completed, whichever field drops first.
    rx: Option<Rx>,
    stream: Rc<TcpStream>,
    /// The pipe secured for the response about to be spliced ([`Transport::secure_body`]); it
    /// goes back to the worker's pool afterwards, so idle connections hold none.
    pipe: Option<Rc<Pipe>>,
}

/// A pipe for splicing: file → `w`, `r` → socket.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes the pipe holds, read once when it is made.
    capacity: usize,
}

/// Bodies from this size up are spliced; smaller ones are read into the head's buffer and sent
/// with one write, which costs fewer operations than two splices.
const SPLICE_MIN: u64 = 64 * 1024;
/// Pipe capacity asked for (the default limit for unprivileged users is 1 MiB).
const PIPE_SIZE: usize = 1 << 20;

thread_local! {
    /// Clean pipes of this worker, reused across connections.
    static PIPES: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bodies from this size up are copied through a user-space buffer, read and written in turn,
/// instead of spliced: on loopback that sends 10 MiB files 1.6-2x faster than splicing (whose
/// file-to-pipe half runs on io-wq threads, with context switches), for about nginx's CPU per
/// byte; below it splicing costs less CPU (`benches/README.md`, big files).
const COPY_MIN: u64 = 1 << 20;
/// The copy buffer: big enough for few operations per file, small enough to pool.
const COPY_CHUNK: usize = 256 * 1024;

thread_local! {
    /// Copy buffers of this worker, reused across responses.
    static COPY_BUFS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copy buffers a worker keeps for reuse; more are freed.
const POOLED_COPY_BUFS: usize = 8;

/// Pipes a worker keeps for reuse; more are closed.
const POOLED_PIPES: usize = 16;

/// Frees the worker's pooled copy buffers and closes its pooled pipes ([`super::release_pooled`]).
pub(super) fn release_pooled() {
    COPY_BUFS.with_borrow_mut(|p| *p = Vec::new());
    PIPES.with_borrow_mut(|p| *p = Vec::new());
}

impl Pipe {
    /// A pipe from the worker's pool, or a new one.
    fn take() -> io::Result<Pipe> {
        match PIPES.with_borrow_mut(|p| p.pop()) {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    /// Returns a pipe that holds no bytes to the worker's pool.
    fn give_back(self) {
        PIPES.with_borrow_mut(|p| {
            if p.len() < POOLED_PIPES {
                p.push(self);
            }
        });
    }

    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe means fewer operations per file; the default 64 KiB still works.
        // SAFETY: fcntl on a descriptor we own (F_SETPIPE_SZ returns the size it set).
        let set =
            unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
        let size = if set > 0 {
            set
        } else {
            // SAFETY: as above.
            unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) }
        };
        let capacity = usize::try_from(size)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(64 * 1024);
        Ok(Pipe { r, w, capacity })
    }
}

impl UringConn {
    /// One IORING_OP_SPLICE; `keep` holds whatever must stay open until it completes.
    async fn splice(
        &self,
        keep: Keep,
        fd_in: RawFd,
        off_in: i64,
        fd_out: RawFd,
        len: usize,
    ) -> io::Result<usize> {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let sqe = opcode::Splice::new(types::Fd(fd_in), off_in, types::Fd(fd_out), -1, len)
            .flags(libc::SPLICE_F_MOVE)
            .build();
        UnsubmittedOneshot::new(Box::new(keep), SpliceDone, sqe)
            .submit()
            .await
    }

    /// Sends the head with the first bytes of `pos..end` of `file`, then the rest, reading each
    /// chunk into a pooled buffer and writing it out.
    async fn send_copied(
        &self,
        head: Vec<u8>,
        file: File,
        mut pos: u64,
        end: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        let mut buf = COPY_BUFS
            .with_borrow_mut(|p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(COPY_CHUNK + 4096));
        buf.clear();
        buf.extend_from_slice(&head);
        let mut result = Ok(());
        while pos < end && result.is_ok() {
            let want = ((end - pos) as usize).min(buf.capacity() - buf.len());
            let (read, b) = read_exact_at(&file, buf, pos, want).await;
            buf = b;
            pos += want as u64;
            result = match read {
                Ok(()) => {
                    let (wrote, b) = self.write_buf(buf, deadline).await;
                    buf = b;
                    wrote
                }
                Err(e) => Err(e),
            };
            buf.clear();
        }
        close_in_ring(file);
        COPY_BUFS.with_borrow_mut(|p| {
            if p.len() < POOLED_COPY_BUFS {
                p.push(buf);
            }
        });
        (result, head)
    }

    /// Sends the head, then `pos..end` of `file` by splicing it through the connection's pipe.
    async fn send_spliced(
        &mut self,
        head: Vec<u8>,
        file: File,
        mut pos: u64,
        end: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        let pipe = match self.pipe.take() {
            Some(p) => p,
            // Secured before the head by the caller; made here only if it was not.
            None => match Pipe::take() {
                Ok(p) => Rc::new(p),
                Err(e) => return (Err(e), head),
            },
        };
        let (wrote, head) = self.write_buf(head, deadline).await;
        if let Err(e) = wrote {
            return (Err(e), head);
        }
        let file = Rc::new(file);
        let chunk = pipe.capacity;
        let sock = self.stream.as_raw_fd();
        let result: io::Result<()> = async {
            while pos < end {
                let want = (end - pos).min(chunk as u64) as usize;
                let keep = Keep(Some(file.clone()), pipe.clone(), self.stream.clone());
                let filled = self
                    .splice(keep, file.as_raw_fd(), pos as i64, pipe.w.as_raw_fd(), want)
                    .await?;
                if filled == 0 {
                    return Err(files::shrank());
                }
                pos += filled as u64;
                let mut left = filled;
                while left > 0 {
                    let keep = Keep(None, pipe.clone(), self.stream.clone());
                    match self
                        .splice(keep, pipe.r.as_raw_fd(), -1, sock, left)
                        .await?
                    {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => left -= n,
                    }
                    deadline.progress();
                }
            }
            Ok(())
        }
        .await;
        // A pipe left holding bytes would corrupt the next response: only a clean one is kept.
        if result.is_ok() {
            if let Ok(pipe) = Rc::try_unwrap(pipe) {
                pipe.give_back();
            }
        }
        if let Ok(file) = Rc::try_unwrap(file) {
            close_in_ring(file);
        }
        (result, head)
    }

    /// Writes all of `buf` (a `Vec`, or a cached file's shared `Bytes`), one write operation at
    /// a time, refreshing the deadline after each write that moved bytes (a slow reader is not
    /// cut off as long as it keeps reading).
    ///
    /// When no other connection of the worker is waiting for a request, nothing would share the
    /// ring's next round trip with this write, and on tokio-uring a write's completion costs a
    /// round trip of its own (an `io_uring_enter`, then an `epoll_wait` that returns at once):
    /// the bytes then go straight to the socket with one non-blocking `send(2)`, and only what
    /// it left goes through the ring.
    async fn write_buf<B: IoBuf>(&self, buf: B, deadline: &Deadline) -> (io::Result<()>, B) {
        let (mut buf, mut done) = (buf, 0);
        if WAITING.get() == 0 && buf.bytes_init() > 0 {
            // SAFETY: `buf` owns `bytes_init()` initialised bytes at `stable_ptr()`, alive while
            // it is borrowed here.
            let bytes = unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) };
            // MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            let n = super::sock::send(self.stream.as_raw_fd(), bytes, flags);
            match n {
                1.. => {
                    done = n as usize;
                    deadline.progress();
                }
                0 => return (Err(io::ErrorKind::WriteZero.into()), buf),
                _ => {
                    let e = io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) {
                        return (Err(e), buf);
                    }
                }
            }
        }
        while done < buf.bytes_init() {
            let r;
            (r, buf) = self.send(buf, done).await;
            match r {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => {
                    done += n;
                    deadline.progress();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }
}

impl UringConn {
    /// One IORING_OP_RECV into the spare room of `buf` (after its length, which grows by what
    /// arrived).
    async fn recv(&self, mut buf: Vec<u8>, poll_first: bool) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        let room = u32::try_from(buf.capacity() - len).unwrap_or(u32::MAX);
        // The pointer stays valid: the Vec moves into the operation, its heap block does not.
        let at = buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let mut sqe = opcode::Recv::new(types::Fd(self.stream.as_raw_fd()), at, room).build();
        if poll_first {
            set_ioprio(&mut sqe, RECVSEND_POLL_FIRST);
        }
        let data = SocketOp {
            buf,
            _socket: self.stream.clone(),
        };
        UnsubmittedOneshot::new(data, RecvDone, sqe).submit().await
    }

    /// One IORING_OP_SENDMSG of `head` then `body`; both come back with the bytes sent.
    async fn send_pair(&self, head: Vec<u8>, body: Bytes) -> (io::Result<usize>, Vec<u8>, Bytes) {
        // The iovecs point at the heap bytes of `head` and `body`, which stay put when the two
        // move into the box; only `msg` must point into the box itself, at `iov`.
        let iov = super::iovecs(&head, &body);
        // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value.
        let msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let mut op = Box::new(PairOp {
            head,
            body,
            iov,
            msg,
            _socket: self.stream.clone(),
        });
        op.msg.msg_iov = op.iov.as_mut_ptr();
        op.msg.msg_iovlen = 2;
        let sqe = opcode::SendMsg::new(types::Fd(self.stream.as_raw_fd()), &op.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        UnsubmittedOneshot::new(op, PairDone, sqe).submit().await
    }

    /// One IORING_OP_SEND of `buf` from byte `from`.
    async fn send<B: IoBuf>(&self, buf: B, from: usize) -> (io::Result<usize>, B) {
        let len = u32::try_from(buf.bytes_init() - from).unwrap_or(u32::MAX);
        // SAFETY: `from` is within the buffer's initialised bytes; the buffer moves into the
        // operation, and an `IoBuf`'s bytes stay where they are while it is owned.
        let at = unsafe { buf.stable_ptr().add(from) };
        let sqe = opcode::Send::new(types::Fd(self.stream.as_raw_fd()), at, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        let data = SocketOp {
            buf,
            _socket: self.stream.clone(),
        };
        UnsubmittedOneshot::new(data, SendDone(PhantomData), sqe)
            .submit()
            .await
    }
}

/// What an IORING_OP_SENDMSG of a head and a body owns until its completion. Boxed: `msg` points
/// at `iov`, which points into `head` and `body` (their heap bytes, which do not move).
struct PairOp {
    head: Vec<u8>,
    body: Bytes,
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
    _socket: Rc<TcpStream>,
}

struct PairDone;

impl OneshotOutputTransform for PairDone {
    type Output = (io::Result<usize>, Vec<u8>, Bytes);
    type StoredData = Box<PairOp>;

    fn transform_oneshot_output(self, op: Box<PairOp>, cqe: cqueue::Entry) -> Self::Output {
        let PairOp { head, body, .. } = *op;
        (completed(&cqe), head, body)
    }
}

/// A completion's result: the count it carries, or the error its negative value names.
fn completed(cqe: &cqueue::Entry) -> io::Result<usize> {
    match cqe.result() {
        r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
        n => Ok(n as usize),
    }
}

/// `IORING_RECVSEND_POLL_FIRST` (io_uring.h), in the SQE's `ioprio` field of RECV and SEND.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Sets the `ioprio` field of an SQE, which io-uring 0.6's `Recv` builder does not expose.
fn set_ioprio(sqe: &mut squeue::Entry, ioprio: u16) {
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe`, whose
    // u16 `ioprio` is at byte offset 2 (after the u8 opcode and u8 flags), a fixed part of the ABI.
    unsafe {
        let raw = (sqe as *mut squeue::Entry).cast::<u8>();
        raw.add(2).cast::<u16>().write_unaligned(ioprio);
    }
}

thread_local! {
    /// Whether this worker's kernel takes [`RECVSEND_POLL_FIRST`]; cleared at the first EINVAL.
    static POLL_FIRST: Cell<bool> = const { Cell::new(true) };
}

/// What a socket operation owns until its completion: the buffer the kernel reads or fills, and
/// the socket, so its descriptor cannot close (and its number be reused) while the kernel may act
/// on it.
struct SocketOp<B> {
    buf: B,
    _socket: Rc<TcpStream>,
}

struct RecvDone;

impl OneshotOutputTransform for RecvDone {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = SocketOp<Vec<u8>>;

    fn transform_oneshot_output(self, op: SocketOp<Vec<u8>>, cqe: cqueue::Entry) -> Self::Output {
        let mut buf = op.buf;
        let n = completed(&cqe);
        if let Ok(n) = n {
            // SAFETY: the kernel wrote `n` bytes into the spare room after the old length, and
            // never more than the room it was given.
            unsafe { buf.set_len(buf.len() + n) };
        }
        (n, buf)
    }
}

struct SendDone<B>(PhantomData<B>);

impl<B> OneshotOutputTransform for SendDone<B> {
    type Output = (io::Result<usize>, B);
    type StoredData = SocketOp<B>;

    fn transform_oneshot_output(self, op: SocketOp<B>, cqe: cqueue::Entry) -> Self::Output {
        (completed(&cqe), op.buf)
    }
}

thread_local! {
    /// Connections of this worker with a read waiting (on tokio-uring's ring or the receive
    /// ring): waiting for a request, or reading and discarding during a lingering close.
    static WAITING: Cell<usize> = const { Cell::new(0) };
}

/// Counts one connection in [`WAITING`] for as long as it lives (its read's future may be
/// dropped before the read completes).
struct Waiting;

impl Waiting {
    fn start() -> Waiting {
        WAITING.set(WAITING.get() + 1);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.set(WAITING.get() - 1);
    }
}

impl Transport for UringConn {
    type File = File;

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let _waiting = Waiting::start();
        if let Some(rx) = &self.rx {
            return rx.read(buf).await;
        }
        let poll_first = POLL_FIRST.get();
        let (r, buf) = self.recv(buf, poll_first).await;
        match r {
            Err(e) if poll_first && e.raw_os_error() == Some(libc::EINVAL) => {
                POLL_FIRST.set(false);
                self.recv(buf, false).await
            }
            r => (r, buf),
        }
    }

    async fn stat(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Meta> {
        statx(root.as_raw_fd(), rel.to_owned(), 0).await
    }

    async fn open(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<(File, Meta)> {
        let data = Box::new(OpenData {
            path: rel.to_owned(),
            how: types::OpenHow::new()
                .flags(files::OPEN_FLAGS)
                .resolve(files::RESOLVE),
        });
        let root = types::Fd(root.as_raw_fd());
        let sqe = opcode::OpenAt2::new(root, data.path.as_ptr(), &data.how).build();
        let file = UnsubmittedOneshot::new(data, OpenDone, sqe)
            .submit()
            .await?;
        // The descriptor stays open (owned by `file`) until this statx completes: it is awaited
        // here, and nothing cancels it.
        let meta = statx(file.as_raw_fd(), CString::default(), libc::AT_EMPTY_PATH).await?;
        Ok((file, meta))
    }

    async fn read_whole(&mut self, file: File, len: u64) -> io::Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let (result, buf) = read_exact_at(&file, Vec::with_capacity(len), 0, len).await;
        close_in_ring(file);
        result.map(|()| buf)
    }

    async fn write_all(&mut self, buf: Vec<u8>, deadline: &Deadline) -> (io::Result<()>, Vec<u8>) {
        self.write_buf(buf, deadline).await
    }

    async fn write_parts(
        &mut self,
        head: Vec<u8>,
        body: Bytes,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        // One IORING_OP_SENDMSG for both; whatever a partial send left goes out with plain
        // sends of the rest.
        let (r, mut head, body) = self.send_pair(head, body).await;
        let mut done = match r {
            Ok(n) => n,
            // Nothing sent: the plain sends below send it all, as write_buf retries EINTR.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return (Err(e), head),
        };
        if done > 0 {
            deadline.progress();
        }
        if done < head.len() {
            // Rare: the head itself was cut short. Its rest moves to the front and goes first.
            head.drain(..done);
            let (wrote, rest) = self.write_buf(head, deadline).await;
            head = rest;
            done = 0;
            if let Err(e) = wrote {
                return (Err(e), head);
            }
        } else {
            done -= head.len();
        }
        if done < body.len() {
            let (wrote, _) = self.write_buf(Bytes::slice(&body, done..), deadline).await;
            return (wrote, head);
        }
        (Ok(()), head)
    }

    async fn send_file(
        &mut self,
        head: Vec<u8>,
        file: File,
        offset: u64,
        len: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        if len >= COPY_MIN {
            return self
                .send_copied(head, file, offset, offset + len, deadline)
                .await;
        }
        if len >= SPLICE_MIN {
            return self
                .send_spliced(head, file, offset, offset + len, deadline)
                .await;
        }
        // A small file goes out in the same write as the head.
        let mut buf = head;
        buf.reserve_exact(len as usize);
        let (read, buf) = read_exact_at(&file, buf, offset, len as usize).await;
        close_in_ring(file);
        if let Err(e) = read {
            return (Err(e), buf);
        }
        self.write_buf(buf, deadline).await
    }

    fn secure_body(&mut self, len: u64) -> io::Result<()> {
        if (SPLICE_MIN..COPY_MIN).contains(&len) && self.pipe.is_none() {
            self.pipe = Some(Rc::new(Pipe::take()?));
        }
        Ok(())
    }

    fn handle(&self) -> Rc<dyn Shut> {
        match &self.rx {
            Some(rx) => Rc::new(rx.handle(self.stream.clone())),
            None => self.stream.clone(),
        }
    }
}

/// IORING_OP_STATX of `path` relative to `dirfd` (an empty path with AT_EMPTY_PATH: `dirfd`
/// itself).
async fn statx(dirfd: RawFd, path: CString, flags: i32) -> io::Result<Meta> {
    let mut data = Box::new(StatxData {
        path,
        // SAFETY: statx is a plain C struct for which all-zero bytes are a valid value.
        buf: unsafe { std::mem::zeroed() },
    });
    let sqe = opcode::Statx::new(
        types::Fd(dirfd),
        data.path.as_ptr(),
        (&mut data.buf as *mut libc::statx).cast::<types::statx>(),
    )
    .flags(flags)
    .mask(files::STATX_MASK)
    .build();
    UnsubmittedOneshot::new(data, StatxDone, sqe).submit().await
}

/// Appends exactly `len` bytes of `file`, read from `offset`, to `buf` (whose spare capacity must
/// hold them). Fails with UnexpectedEof when the file is shorter than its promised length.
async fn read_exact_at(
    file: &File,
    mut buf: Vec<u8>,
    offset: u64,
    len: usize,
) -> (io::Result<()>, Vec<u8>) {
    let (start, end) = (buf.len(), buf.len() + len);
    while buf.len() < end {
        let at = buf.len();
        let (r, slice) = file
            .read_at(buf.slice(at..end), offset + (at - start) as u64)
            .await;
        buf = slice.into_inner();
        match r {
            Ok(0) => return (Err(files::shrank()), buf),
            Ok(_) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Closes through the ring instead of a close(2) on drop.
fn close_in_ring(file: File) {
    tokio_uring::spawn(async move {
        let _ = file.close().await;
    });
}

/// What a splice keeps open until its completion: the file (when it reads one), the pipe and the
/// socket. The fields are never read: holding them is the point.
#[allow(dead_code)]
struct Keep(Option<Rc<File>>, Rc<Pipe>, Rc<TcpStream>);

struct SpliceDone;

impl OneshotOutputTransform for SpliceDone {
    type Output = io::Result<usize>;
    type StoredData = Box<Keep>;

    fn transform_oneshot_output(self, _keep: Box<Keep>, cqe: cqueue::Entry) -> io::Result<usize> {
        completed(&cqe)
    }
}

struct StatxData {
    path: CString,
    buf: libc::statx,
}

struct StatxDone;

impl OneshotOutputTransform for StatxDone {
    type Output = io::Result<Meta>;
    type StoredData = Box<StatxData>;

    fn transform_oneshot_output(
        self,
        data: Box<StatxData>,
        cqe: cqueue::Entry,
    ) -> io::Result<Meta> {
        completed(&cqe).map(|_| Meta::from_statx(&data.buf))
    }
}

struct OpenData {
    path: CString,
    how: types::OpenHow,
}

struct OpenDone;

impl OneshotOutputTransform for OpenDone {
    type Output = io::Result<File>;
    type StoredData = Box<OpenData>;

    fn transform_oneshot_output(
        self,
        _data: Box<OpenData>,
        cqe: cqueue::Entry,
    ) -> io::Result<File> {
        // SAFETY: a successful OPENAT2 completion carries a new descriptor that nothing else owns.
        completed(&cqe).map(|fd| unsafe { File::from_raw_fd(fd as RawFd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// One RECV of up to 16 bytes with `ioprio`, on a raw ring of its own, from one end of a
    /// socket pair: `ready` is written to the other end before the RECV is submitted, `send` after
    /// it was seen waiting. Returns the completion's result and the bytes received.
    fn recv_with_ioprio(ioprio: u16, ready: &[u8], send: &[u8]) -> (i32, Vec<u8>) {
        let mut ring = io_uring::IoUring::new(4).expect("io_uring (probed by the caller)");
        let (mut peer, sock) = UnixStream::pair().unwrap();
        peer.write_all(ready).unwrap();
        let mut buf = vec![0u8; 16];
        let mut sqe = opcode::Recv::new(types::Fd(sock.as_raw_fd()), buf.as_mut_ptr(), 16)
            .build()
            .user_data(7);
        set_ioprio(&mut sqe, ioprio);
        // SAFETY: `buf` and `sock` outlive the operation, which completes before they drop.
        unsafe { ring.submission().push(&sqe).unwrap() };
        ring.submit().unwrap();
        if !send.is_empty() {
            assert!(
                ring.completion().next().is_none(),
                "with no bytes to read, the receive waits for them"
            );
            peer.write_all(send).unwrap();
        }
        ring.submit_and_wait(1).unwrap();
        let cqe = ring.completion().next().expect("a completion");
        assert_eq!(cqe.user_data(), 7);
        let n = cqe.result();
        buf.truncate(n.max(0) as usize);
        (n, buf)
    }

    /// The worker's trim empties the io_uring engine's pools: its copy buffers are freed and its
    /// pipes closed (the pipe's descriptors are then no longer open).
    #[test]
    fn releasing_the_pools_frees_copy_buffers_and_closes_pipes() {
        let pipe = Pipe::new().expect("a pipe");
        let fds = [pipe.r.as_raw_fd(), pipe.w.as_raw_fd()];
        pipe.give_back();
        COPY_BUFS.with_borrow_mut(|p| p.push(Vec::with_capacity(COPY_CHUNK)));
        // The pipe's inode behind `fd`, if `fd` is open (another test's thread may have been
        // given the number again once it was closed, but never this pipe).
        let inode = |fd: RawFd| {
            // SAFETY: `stat` is a plain C struct for which all-zero bytes are a valid value.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat writes into `st`, which outlives the call, and only reads `fd`.
            let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
            ok.then_some(st.st_ino)
        };
        let pipe_ino = inode(fds[0]).expect("the pipe is open");
        crate::engine::release_pooled();
        assert!(COPY_BUFS.with_borrow(|p| p.is_empty()));
        assert!(PIPES.with_borrow(|p| p.is_empty()));
        assert!(
            fds.iter().all(|&fd| inode(fd) != Some(pipe_ino)),
            "a pooled pipe stayed open"
        );
    }

    #[test]
    fn poll_first_goes_where_the_kernel_reads_it() {
        if let Err(why) = crate::engine::probe_uring() {
            // As the integration tests do (tests/common::skip_uring).
            assert!(
                std::env::var_os("URING_HTTPD_REQUIRE_URING").is_none_or(|v| v != "1"),
                "io_uring is unavailable here and URING_HTTPD_REQUIRE_URING=1 requires it: {why}"
            );
            eprintln!("note: skipped: {why}");
            return;
        }
        // The flag is taken: the receive waits, then completes with the bytes.
        assert_eq!(
            recv_with_ioprio(RECVSEND_POLL_FIRST, b"", b"GET /"),
            (5, b"GET /".to_vec())
        );
        // The same field with a bit RECV does not know is refused, so it is the field the
        // kernel checks (a write to the wrong bytes of the SQE would not be). A byte is waiting,
        // so a kernel that ignored the field would complete the receive, not hang the test.
        assert_eq!(
            recv_with_ioprio(0x8000, b"x", b"").0,
            -libc::EINVAL,
            "this kernel does not check the RECV ioprio field"
        );
    }
}
