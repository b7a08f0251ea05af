//! The epoll floor responder (`lab floor-epoll PORT FILE`): the least work a server on raw,
//! edge-triggered epoll can do per keep-alive request, beside [`crate::floor_uring`].
//!
//! One thread, one epoll instance; the listener and every connection are registered
//! edge-triggered (connections for in, out and peer half-close at once, so each is registered
//! exactly once). A readable connection is read until a short read (the queue is drained; as in
//! nginx, a short read without a pending half-close needs no extra read to see EAGAIN), the
//! request heads in the bytes are counted ([`crate::floor_proto`]), and the owed responses go out
//! with one send per batch; what the socket does not take is kept per connection (owed responses
//! and an offset) and sent when epoll reports it writable. Peer close, EAGAIN, EINTR and partial
//! sends are handled. Bounded: at most [`MAX_CONNS`] connections (more are closed at once), one
//! fixed read buffer, and the process dies with the lab (PR_SET_PDEATHSIG).
//!
//! An experiment (`benches/README.md`): with `FLOOR_EPOLL=core` in its environment the responder
//! answers with uring-httpd's own HTTP core instead of the fixed response ([`crate::floor_core`]),
//! to price the epoll engine's runtime apart from its HTTP work; with `FLOOR_EPOLL=serve`,
//! uring-httpd's whole connection loop runs on an executor of the lab's own over edge-triggered
//! epoll ([`crate::floor_serve`]), to price an epoll runtime of uring-httpd's own.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::floor_core::Core;
use crate::floor_proto::{self, Owes, Reply};

/// Connections beyond this many (by fd number) are closed on accept.
pub const MAX_CONNS: usize = 16384;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 512;
/// The read buffer, shared by all connections (each read is consumed at once).
const READ_LEN: usize = 64 * 1024;
/// epoll data of the listener (connections use their fd).
pub(crate) const LISTENER: u64 = u64::MAX;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A new epoll instance (also the io_uring floor's, for its `epoll` experiment).
pub fn create() -> Result<OwnedFd, String> {
    // SAFETY: epoll_create1 takes a flag only.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(format!(
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: epfd was just returned to this process and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(epfd) })
}

/// Accepts every connection waiting on the nonblocking listener `lfd`: until EAGAIN, or an error
/// such as EMFILE, which the listener's next edge retries. Each one is registered with `epfd` for
/// `events` with its fd as data, gets TCP_NODELAY, and goes to `take`; one past [`MAX_CONNS`], or
/// one that cannot be registered, is closed.
pub fn accept_all(lfd: i32, epfd: i32, events: u32, mut take: impl FnMut(i32)) {
    loop {
        // SAFETY: null address pointers are allowed; the flags are valid.
        let fd = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            match errno() {
                libc::EINTR | libc::ECONNABORTED => continue,
                _ => return,
            }
        }
        if fd as usize >= MAX_CONNS || register(epfd, fd, events, fd as u64).is_err() {
            // SAFETY: fd was just accepted and is not used elsewhere.
            unsafe { libc::close(fd) };
            continue;
        }
        floor_proto::nodelay(fd);
        take(fd);
    }
}

/// Adds `fd` to `epfd`'s interest list with `events`, tagged `data`.
pub fn register(epfd: i32, fd: i32, events: u32, data: u64) -> Result<(), String> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(format!(
            "epoll_ctl ADD {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Sends what `c` owes until done or the socket is full; false when the connection failed or
/// (`core`) its last response is out.
fn flush(fd: i32, c: &mut Owes, reply: &Reply) -> bool {
    loop {
        let chunk = c.chunk(reply);
        if chunk.is_empty() {
            return !c.finished();
        }
        // SAFETY: chunk is a live slice of the reply or the answers; its length is passed.
        let n = unsafe { libc::send(fd, chunk.as_ptr().cast(), chunk.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            let short = (n as usize) < chunk.len();
            c.sent(n as usize, reply);
            if short {
                // The socket buffer is full: EPOLLOUT will say when there is room.
                return true;
            }
        } else {
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => return true,
                _ => return false,
            }
        }
    }
}

/// Reads until a short read, EAGAIN or end of stream, handing the bytes to `c`. False when the
/// connection is over (peer closed or failed).
fn drain(fd: i32, c: &mut Owes, buf: &mut [u8], half_closed: bool) -> bool {
    loop {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            let n = n as usize;
            c.take(&buf[..n]);
            if n < buf.len() && !half_closed {
                return true;
            }
        } else if n == 0 {
            return false;
        } else {
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => return true,
                _ => return false,
            }
        }
    }
}

/// Runs the floor until killed.
pub fn run(port: u16, file: &Path) -> Result<(), String> {
    let words = std::env::var("FLOOR_EPOLL").unwrap_or_default();
    if words == "serve" {
        return crate::floor_serve::run(port, file, false);
    }
    floor_proto::bound_to_parent();
    let reply = Reply::for_file(file)?;
    let core = match words.as_str() {
        "" => None,
        "core" => Some(Core::new(file)?),
        other => return Err(format!("FLOOR_EPOLL: unknown mode {other:?}")),
    };
    let listener = floor_proto::listen(port, true)?;
    let name = match core {
        Some(_) => "floor-epoll (FLOOR_EPOLL=core)",
        None => "floor-epoll",
    };
    serve(&listener, &reply, core.as_ref(), || {
        floor_proto::announce(name, &listener, &reply)
    })
}

/// Serves `reply` to every request head on `listener`'s connections (nonblocking; with `core`,
/// that core's answers instead), for ever; `ready` runs once epoll is set up. It returns only on
/// an error of epoll.
pub fn serve(
    listener: &std::net::TcpListener,
    reply: &Reply,
    core: Option<&Core>,
    ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let lfd = listener.as_raw_fd();
    let owned = create()?;
    let epfd = owned.as_raw_fd();
    register(epfd, lfd, (libc::EPOLLIN | libc::EPOLLET) as u32, LISTENER)?;
    ready()?;
    let mut conns: Vec<Option<Owes>> = Vec::new();
    let mut buf = vec![0u8; READ_LEN];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let conn_events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    loop {
        // SAFETY: `events` holds EVENTS writable entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as i32, -1) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(format!("epoll_wait: {}", std::io::Error::last_os_error()));
        }
        let turn = core.map(Core::turn);
        for ev in &events[..n as usize] {
            let (bits, data) = (ev.events, ev.u64);
            if data == LISTENER {
                accept_all(lfd, epfd, conn_events, |fd| {
                    if conns.len() <= fd as usize {
                        conns.resize_with(fd as usize + 1, || None);
                    }
                    conns[fd as usize] = Some(Owes::new(core.is_some()));
                });
                continue;
            }
            let fd = data as i32;
            let Some(c) = conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                continue;
            };
            let mut alive = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0;
            if alive && bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 {
                let half_closed = bits & libc::EPOLLRDHUP as u32 != 0;
                alive = drain(fd, c, &mut buf, half_closed);
            }
            if let Some(turn) = &turn {
                c.answer(turn);
            }
            if alive {
                alive = flush(fd, c, reply);
            }
            if !alive {
                conns[fd as usize] = None;
                // SAFETY: fd is a connection of this process; closing also deregisters it.
                unsafe { libc::close(fd) };
            }
        }
    }
}
