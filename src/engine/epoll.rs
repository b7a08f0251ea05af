//! The epoll engine: one tokio current-thread runtime per worker (tokio's reactor is epoll), with
//! nonblocking socket reads and writes, `statx` and `openat2` as plain system calls, and file
//! bodies sent with `sendfile(2)` after the head (the head is sent with `MSG_MORE`, so head and
//! first file bytes leave in the same segment). Small files are read into the head's buffer and
//! sent with one write instead: two system calls either way, and one fewer packet.
//!
//! An idle connection holds no read buffer: a read that finds nothing to read hands its empty
//! buffer to the worker's pool while it waits for readability, and takes one back when the
//! socket turns readable.
//!
//! The open and stat calls block the thread, as they do in nginx without thread pools; on files in
//! the page cache they take microseconds. Files are opened `O_NONBLOCK`, so a FIFO in the root
//! cannot stall the worker.

use std::ffi::CStr;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::read_bufs;
use super::worker::{Acceptor, Driver};
use crate::conn::Transport;
use crate::deadline::{Deadline, Shut};
use crate::files::{self, Meta, sys};

/// Files up to this size are read into the head's buffer and sent with one write.
const INLINE: u64 = 16 * 1024;

/// The epoll engine, for [`super::worker::run_worker`].
pub struct Epoll;

impl Driver for Epoll {
    type Acceptor = EpollAcceptor;

    fn block_on(fut: impl Future<Output = ()>) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio::task::LocalSet::new().block_on(&rt, fut);
        Ok(())
    }

    fn acceptor(listener: std::net::TcpListener) -> io::Result<EpollAcceptor> {
        Ok(EpollAcceptor {
            listener: TcpListener::from_std(listener)?,
        })
    }
}

/// A worker's listener on tokio's reactor.
pub struct EpollAcceptor {
    listener: TcpListener,
}

impl Acceptor for EpollAcceptor {
    type Conn = EpollConn;

    async fn accept(&self) -> io::Result<(EpollConn, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((
            EpollConn {
                stream: Rc::new(stream),
            },
            peer,
        ))
    }

    fn stop(&self) {
        // Stop the kernel from completing handshakes for us while the worker drains: new
        // connections are refused at once instead of waiting for a listener that never accepts.
        // SAFETY: shutdown(2) on a descriptor this listener owns; it only changes socket state.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

impl Shut for TcpStream {
    fn shut(&self, how: Shutdown) {
        let _ = socket2::SockRef::from(self).shutdown(how);
    }
}

/// One connection on tokio's reactor.
pub struct EpollConn {
    /// Shared with the worker's deadline table.
    stream: Rc<TcpStream>,
}

impl EpollConn {
    /// Sends all of `buf` with send(2) (`flags` 0 or MSG_MORE).
    async fn send_all(&self, buf: &[u8], flags: i32, deadline: &Deadline) -> io::Result<()> {
        let fd = self.stream.as_raw_fd();
        self.push(buf.len() as u64, deadline, |done| {
            super::sock::send(fd, &buf[done as usize..], flags)
        })
        .await
    }

    /// Sends `offset..end` of `file` with sendfile(2): no copy through user space.
    async fn sendfile(
        &self,
        file: &std::fs::File,
        offset: u64,
        end: u64,
        deadline: &Deadline,
    ) -> io::Result<()> {
        let (sock, fd) = (self.stream.as_raw_fd(), file.as_raw_fd());
        self.push(end - offset, deadline, |done| {
            let mut off = (offset + done) as libc::off_t;
            let count = (end - offset - done).min(1 << 30) as usize;
            // SAFETY: both descriptors are open for the duration of the call; `off` is a local.
            unsafe { libc::sendfile(sock, fd, &mut off, count) }
        })
        .await
    }

    /// Runs a nonblocking write system call until `total` bytes are out: `call(done)` sends
    /// from `done` on and returns what send(2)/sendfile(2) return; EAGAIN waits for writability.
    async fn push(
        &self,
        total: u64,
        deadline: &Deadline,
        mut call: impl FnMut(u64) -> isize,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < total {
            let sent = self.stream.try_io(Interest::WRITABLE, || match call(done) {
                r if r < 0 => Err(io::Error::last_os_error()),
                r => Ok(r as u64),
            });
            match sent {
                // sendfile at the end of a file that shrank under us; send never returns 0 here.
                Ok(0) => return Err(files::shrank()),
                Ok(n) => {
                    done += n;
                    deadline.progress();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stream.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Transport for EpollConn {
    type File = std::fs::File;

    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let fd = self.stream.as_raw_fd();
        loop {
            // The caller leaves spare capacity (a zero-length recv would read as the end).
            debug_assert!(buf.len() < buf.capacity());
            // Without readiness tokio answers WouldBlock itself, with no system call. A short
            // read drained the socket, so it clears the readiness as EAGAIN would (as nginx
            // does): the next request's read then waits for epoll's next edge (every arrival
            // makes one; a half-close stays ready, since tokio never clears it) instead of
            // spending a recv(2) on EAGAIN.
            let before = buf.len();
            let read = self.stream.try_io(Interest::READABLE, || {
                let spare = buf.spare_capacity_mut();
                let room = spare.len();
                let n = super::sock::recv(fd, spare);
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                // SAFETY: the kernel initialised the first `n` spare bytes.
                unsafe { buf.set_len(before + n) };
                if n > 0 && n < room {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match read {
                Ok(n) => return (Ok(n), buf),
                // The short read's bytes are in `buf`.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && buf.len() > before => {
                    return (Ok(buf.len() - before), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            // Nothing to read yet.
            let parked = read_bufs::park(&mut buf);
            let ready = self.stream.readable().await;
            if parked {
                buf = read_bufs::unpark();
            }
            if let Err(e) = ready {
                return (Err(e), buf);
            }
        }
    }

    async fn stat(&mut self, root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Meta> {
        sys::statx(root.as_raw_fd(), rel, 0)
    }

    async fn open(
        &mut self,
        root: BorrowedFd<'_>,
        rel: &CStr,
    ) -> io::Result<(std::fs::File, Meta)> {
        sys::open_file(root.as_raw_fd(), rel)
    }

    async fn read_whole(&mut self, file: std::fs::File, len: u64) -> io::Result<Vec<u8>> {
        sys::read_whole(&file, len)
    }

    async fn write_all(&mut self, buf: Vec<u8>, deadline: &Deadline) -> (io::Result<()>, Vec<u8>) {
        let r = self.send_all(&buf, 0, deadline).await;
        (r, buf)
    }

    async fn write_parts(
        &mut self,
        head: Vec<u8>,
        body: Bytes,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        let fd = self.stream.as_raw_fd();
        let total = (head.len() + body.len()) as u64;
        let sent = self
            .push(total, deadline, |done| {
                let done = done as usize;
                let (h, b) = if done < head.len() {
                    (&head[done..], &body[..])
                } else {
                    (&[][..], &body[done - head.len()..])
                };
                super::sock::writev(fd, h, b)
            })
            .await;
        (sent, head)
    }

    async fn send_file(
        &mut self,
        head: Vec<u8>,
        file: std::fs::File,
        offset: u64,
        len: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        if len <= INLINE {
            let mut buf = head;
            let at = buf.len();
            buf.resize(at + len as usize, 0);
            if let Err(e) = sys::read_exact_at(&file, &mut buf[at..], offset) {
                return (Err(e), buf);
            }
            let sent = self.send_all(&buf, 0, deadline).await;
            return (sent, buf);
        }
        // The head is held back briefly (MSG_MORE) to leave in one segment with the first file
        // bytes.
        let sent = match self.send_all(&head, libc::MSG_MORE, deadline).await {
            Ok(()) => self.sendfile(&file, offset, offset + len, deadline).await,
            Err(e) => Err(e),
        };
        (sent, head)
    }

    fn secure_body(&mut self, _len: u64) -> io::Result<()> {
        // sendfile needs nothing but the file, which is already open.
        Ok(())
    }

    fn handle(&self) -> Rc<dyn Shut> {
        self.stream.clone()
    }
}
