//! Engines move bytes: accepting, reading, stat'ing, opening and sending, each with its own
//! primitives, while [`crate::conn`] decides everything a client can observe.
//!
//! This module owns the choice between them: probing io_uring at start (a small ring plus the
//! opcodes the uring engine submits) and explaining, in one message, why it is unavailable and how
//! to enable it; and the little both engines build alike ([`iovecs`], the socket calls of
//! [`sock`], the pool of idle connections' [`read_bufs`]).

pub mod epoll;
pub mod listener;
pub mod multishot;
pub mod uring;
pub mod worker;

use std::fmt;
use std::io;

use crate::config::EngineChoice;

/// The engine a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// io_uring through tokio-uring.
    Uring,
    /// epoll through tokio's reactor.
    Epoll,
}

impl Engine {
    /// The name used in the config and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "uring",
            Engine::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why io_uring cannot be used here, with what to do about it.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolves the configured choice into the engine to run. `Ok((engine, Some(reason)))` is an
/// `auto` fallback to epoll; the caller logs the reason once as a warning.
pub fn choose(choice: EngineChoice) -> Result<(Engine, Option<Unavailable>), Unavailable> {
    match choice {
        EngineChoice::Epoll => Ok((Engine::Epoll, None)),
        EngineChoice::Uring => probe_uring().map(|()| (Engine::Uring, None)),
        EngineChoice::Auto => match probe_uring() {
            Ok(()) => Ok((Engine::Uring, None)),
            Err(why) => Ok((Engine::Epoll, Some(why))),
        },
    }
}

/// The two iovecs of a head and a body sent in one call (`writev`, `sendmsg`): they point into
/// the slices, which must outlive the call or operation that reads them.
pub(crate) fn iovecs(head: &[u8], body: &[u8]) -> [libc::iovec; 2] {
    [head, body].map(|part| libc::iovec {
        iov_base: part.as_ptr() as *mut libc::c_void,
        iov_len: part.len(),
    })
}

/// Empty read buffers parked by connections waiting for a request. An idle connection's empty
/// buffer of [`IDLE_READ`] bytes waits here, not in the connection, and it takes one back when
/// bytes arrive; a grown buffer stays with its connection (freeing it would cost a `malloc` per
/// request). Used by the epoll engine and the io_uring engine's receive ring, whose waits need no
/// buffer.
pub(crate) mod read_bufs {
    use std::cell::RefCell;

    use crate::conn::IDLE_READ;

    /// Buffers a worker keeps: enough for every connection of a busy worker to find one without
    /// `malloc`, at most 272 KiB.
    const POOLED: usize = 1024;

    thread_local! {
        static READ_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// Parks `buf` if it is an empty buffer of [`IDLE_READ`] bytes, leaving an unallocated one in
    /// its place; says whether it did (the caller then takes one back with [`unpark`]).
    pub(crate) fn park(buf: &mut Vec<u8>) -> bool {
        if !buf.is_empty() || buf.capacity() != IDLE_READ {
            return false;
        }
        let buf = std::mem::take(buf);
        READ_BUFS.with_borrow_mut(|p| {
            if p.len() < POOLED {
                p.push(buf);
            }
        });
        true
    }

    /// An empty read buffer of [`IDLE_READ`] bytes, from the pool when it has one.
    pub(crate) fn unpark() -> Vec<u8> {
        READ_BUFS
            .with_borrow_mut(|p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(IDLE_READ))
    }

    /// Frees the pool (the worker's trim after a burst).
    pub(crate) fn release() {
        READ_BUFS.with_borrow_mut(|p| *p = Vec::new());
    }
}

/// Frees what this thread's engine keeps for later connections and responses: the parked read
/// buffers, and the io_uring engine's copy buffers and clean pipes (the worker's trim after a
/// burst; on an epoll worker the io_uring pools are empty).
pub(crate) fn release_pooled() {
    read_bufs::release();
    uring::release_pooled();
}

/// Socket calls made straight through syscall(2) (non-blocking through the socket's mode or the
/// caller's flags). glibc's `send`, `recv` and `writev` are thread cancellation points: in a
/// process with threads each one brackets its system call with two calls that enable and disable
/// asynchronous cancellation (0.8% of the epoll engine's samples at 50 connections under `perf
/// record`). No thread of ours is ever cancelled, so the engines skip them. Each returns what the
/// system call returns (-1 with `errno` set on failure).
pub(crate) mod sock {
    use std::mem::MaybeUninit;
    use std::os::fd::RawFd;
    use std::ptr;

    use libc::c_long;

    // syscall(2) is variadic and reads every argument as a `long`: integers are widened to
    // `c_long` here; pointers and lengths already have its size.
    const NONE: c_long = 0;

    /// send(2) of `buf` with `flags`.
    pub(crate) fn send(fd: RawFd, buf: &[u8], flags: i32) -> isize {
        let (fd, flags, no_addr) = (c_long::from(fd), c_long::from(flags), ptr::null::<u8>());
        // SAFETY: sendto(2) only reads `buf.len()` bytes of the live slice; no address.
        let n = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                buf.as_ptr(),
                buf.len(),
                flags,
                no_addr,
                NONE,
            )
        };
        n as isize
    }

    /// recv(2) into `buf`; the first `n` bytes are initialised when it returns `n >= 0`.
    pub(crate) fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> isize {
        let (fd, no_addr, no_len) = (
            c_long::from(fd),
            ptr::null_mut::<u8>(),
            ptr::null_mut::<u32>(),
        );
        // SAFETY: recvfrom(2) writes at most `buf.len()` bytes into the live slice; no address.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                buf.len(),
                NONE,
                no_addr,
                no_len,
            )
        };
        n as isize
    }

    /// writev(2) of `head` then `body`.
    pub(crate) fn writev(fd: RawFd, head: &[u8], body: &[u8]) -> isize {
        let iov = super::iovecs(head, body);
        // SAFETY: both iovecs point into slices that live for the call; writev(2) only reads them.
        let n =
            unsafe { libc::syscall(libc::SYS_writev, c_long::from(fd), iov.as_ptr(), iov.len()) };
        n as isize
    }
}

/// The opcodes the uring engine submits (tokio-uring's own and our custom operations): every
/// one must be listed, or a kernel without it fails mid-request instead of at start.
const NEEDED: &[(u8, &str)] = &[
    (io_uring::opcode::Accept::CODE, "ACCEPT"),
    (io_uring::opcode::Read::CODE, "READ"),
    (io_uring::opcode::Recv::CODE, "RECV"),
    (io_uring::opcode::Send::CODE, "SEND"),
    (io_uring::opcode::SendMsg::CODE, "SENDMSG"),
    (io_uring::opcode::Statx::CODE, "STATX"),
    (io_uring::opcode::OpenAt2::CODE, "OPENAT2"),
    (io_uring::opcode::Close::CODE, "CLOSE"),
    (io_uring::opcode::Splice::CODE, "SPLICE"),
];

/// Creates a small ring and checks that every opcode the engine needs is supported.
pub fn probe_uring() -> Result<(), Unavailable> {
    let ring = io_uring::IoUring::new(8).map_err(|e| Unavailable(explain(&e)))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        Unavailable(format!(
            "io_uring is present but cannot be probed ({e}); Linux 5.10 or newer is needed"
        ))
    })?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "this kernel's io_uring lacks {}; Linux 5.10 or newer is needed",
            missing.join(", ")
        )))
    }
}

fn explain(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "io_uring_setup was refused ({e}). Docker's default seccomp profile blocks io_uring \
             since Docker 25: run the container with `--security-opt \
             seccomp=docker/seccomp-io_uring.json` (Docker's default profile plus io_uring_setup, \
             io_uring_enter and io_uring_register; deploy/seccomp has the Kubernetes one); elsewhere \
             check `sysctl kernel.io_uring_disabled` (0 enables it for everyone)"
        ),
        Some(libc::ENOSYS) => format!(
            "this kernel has no io_uring ({e}); it needs Linux 5.10 or newer built with CONFIG_IO_URING"
        ),
        _ => format!("io_uring_setup failed ({e})"),
    }
}
