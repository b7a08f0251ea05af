//! The io_uring floor responder (`lab floor-uring PORT FILE`): the least work a server on raw
//! io_uring can do per keep-alive request, as the yardstick the lab measures servers against.
//!
//! One thread, one ring set up with SINGLE_ISSUER | DEFER_TASKRUN and driven by
//! `submit_and_wait(1)`; one multishot accept; per connection one multishot recv drawing from a
//! provided buffer ring (`register_buf_ring`), so an idle connection holds no buffer and a request
//! costs no submission; per batch of received bytes one send carrying a fixed response for every
//! request head (`\r\n\r\n`) in them ([`crate::floor_proto`]). Unsent bytes are kept per
//! connection (as a count of owed responses and an offset) and re-sent on a partial send. A peer
//! close or an error ends the connection once no operation on it is in flight, so an fd is never
//! reused under a pending completion. Bounded: at most [`MAX_CONNS`] connections (more are
//! closed at once), a fixed buffer ring, and the process dies with the lab (PR_SET_PDEATHSIG).
//!
//! An experiment (`benches/README.md`): with `FLOOR_URING=oneshot,coop,epoll[,direct]` in its
//! environment the responder does its I/O the way tokio-uring 0.5 lets uring-httpd do it, to price
//! those limits apart from the server's own work (unknown words, `epoll` without `coop` and
//! `direct` without `oneshot` are refused). `oneshot`: one single-shot recv per request into the
//! connection's own buffer, queued only after the response's send completed (no multishot recv, no
//! buffer ring); `coop`: COOP_TASKRUN instead of DEFER_TASKRUN (which tokio-uring's driver cannot
//! use); `epoll` (with `coop`): wait the way tokio-uring 0.5 parks, an `io_uring_enter` that only
//! submits (made even when nothing is queued) and then an `epoll_wait` on the ring's descriptor,
//! starting over from the submit when that wait is interrupted (the task work of a completion
//! arrives as a signal-like notification and ends it with `EINTR`), instead of one
//! `submit_and_wait(1)`; `direct` (with `oneshot`): while no other connection has a recv in flight,
//! the response goes out with a plain `send(2)` and the next recv is queued at once, as uring-httpd
//! answers then (`UringConn::write_buf`), so a lone connection costs one park per request.
//! `core` (with any of them): answer with uring-httpd's own HTTP core instead of the fixed
//! response ([`crate::floor_core`]), to price the engine's runtime apart from its HTTP work.
//! `serve` (alone): uring-httpd's whole connection loop on an executor of the lab's own over this
//! floor's I/O ([`crate::floor_serve`]), to price a runtime of uring-httpd's own.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use uring_httpd::engine::multishot::BufRing;

use crate::floor_core::{Core, Turn};
use crate::floor_proto::{self, Owes, Reply};

/// Submission queue entries; the completion queue gets four times as many.
const ENTRIES: u32 = 4096;
/// Provided buffers in the ring (a power of two) and the size of each.
const BUFS: u16 = 2048;
const BUF_LEN: usize = 2048;
pub(crate) const BGID: u16 = 7;
/// Connections beyond this many (by fd number) are closed on accept.
pub const MAX_CONNS: usize = 16384;

/// user_data: the operation in the high half, the fd in the low one.
const ACCEPT: u64 = 1 << 32;
const RECV: u64 = 2 << 32;
const SEND: u64 = 3 << 32;

struct Conn {
    /// The connection's read buffer (`oneshot` mode only).
    buf: Vec<u8>,
    owes: Owes,
    recv_armed: bool,
    sending: bool,
    closing: bool,
}

impl Conn {
    fn new(core: bool) -> Conn {
        Conn {
            buf: Vec::new(),
            owes: Owes::new(core),
            recv_armed: false,
            sending: false,
            closing: false,
        }
    }

    /// Takes received bytes, and (`core`) answers them while no send is in flight (later ones
    /// wait for it).
    fn received(&mut self, bytes: &[u8], turn: Option<&Turn<'_>>) {
        self.owes.take(bytes);
        if let Some(turn) = turn.filter(|_| !self.sending) {
            self.owes.answer(turn);
        }
    }

    /// Whether response bytes wait to be sent.
    fn unsent(&self, reply: &Reply) -> bool {
        !self.owes.chunk(reply).is_empty()
    }
}

/// The provided buffer ring, uring-httpd's own ([`BufRing`]): [`BUFS`] buffers of [`BUF_LEN`]
/// bytes as group [`BGID`]. Leaked: it lives as long as the process, so it outlives the ring
/// whichever way a floor returns.
pub(crate) fn buf_ring(ring: &IoUring) -> Result<&'static mut BufRing, String> {
    let bufs = BufRing::new(ring, BUFS, BUF_LEN, BGID)
        .map_err(|e| format!("register_buf_ring: {e} (kernel ≥ 5.19 needed)"))?;
    Ok(Box::leak(Box::new(bufs)))
}

/// Pushes an entry, submitting the queue first when it is full.
fn push(
    sq: &mut squeue::SubmissionQueue<'_>,
    submitter: &io_uring::Submitter<'_>,
    e: squeue::Entry,
) {
    loop {
        // SAFETY: every entry refers to a live fd and, for sends, to the `Reply` buffer, which
        // outlives `serve` (and `serve` leaves the connections' buffers to the process's end).
        if unsafe { sq.push(&e) }.is_ok() {
            return;
        }
        sq.sync();
        let _ = submitter.submit();
        sq.sync();
    }
}

fn close(fd: i32) {
    // SAFETY: fd was accepted by this process and no operation on it is in flight.
    unsafe { libc::close(fd) };
}

/// An epoll instance watching the ring's descriptor (level-triggered: readable while
/// completions wait), for the `epoll` experiment.
fn ring_epoll(ring_fd: i32) -> Result<std::os::fd::OwnedFd, String> {
    let epfd = crate::floor_epoll::create()?;
    crate::floor_epoll::register(epfd.as_raw_fd(), ring_fd, libc::EPOLLIN as u32, 0)?;
    Ok(epfd)
}

/// Responses that went out with a plain `send(2)` (`direct`), for the test.
static DIRECT_SENDS: AtomicU64 = AtomicU64::new(0);

/// The experiment's switches, from `FLOOR_URING` (comma-separated).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mode {
    oneshot: bool,
    coop: bool,
    epoll: bool,
    direct: bool,
    core: bool,
}

impl Mode {
    /// Refuses unknown words and combinations that would measure something else than they say.
    pub fn parse(s: &str) -> Result<Mode, String> {
        let mut m = Mode::default();
        for word in s.split(',').filter(|w| !w.is_empty()) {
            match word {
                "oneshot" => m.oneshot = true,
                "coop" => m.coop = true,
                "epoll" => m.epoll = true,
                "direct" => m.direct = true,
                "core" => m.core = true,
                // `run` takes `serve` alone before parsing: it is another server, not a switch.
                "serve" => return Err("FLOOR_URING: serve goes alone".into()),
                _ => return Err(format!("FLOOR_URING: unknown mode {word:?}")),
            }
        }
        if m.epoll && !m.coop {
            // A DEFER_TASKRUN ring posts completions only inside a waiting io_uring_enter.
            return Err("FLOOR_URING: epoll needs coop".into());
        }
        if m.direct && !m.oneshot {
            return Err("FLOOR_URING: direct needs oneshot".into());
        }
        Ok(m)
    }
}

/// Runs the floor until killed.
pub fn run(port: u16, file: &Path) -> Result<(), String> {
    let words = std::env::var("FLOOR_URING").unwrap_or_default();
    if words == "serve" {
        return crate::floor_serve::run(port, file, true);
    }
    floor_proto::bound_to_parent();
    let reply = Reply::for_file(file)?;
    let listener = floor_proto::listen(port, false)?;
    let mode = Mode::parse(&words)?;
    let core = match mode.core {
        true => Some(Core::new(file)?),
        false => None,
    };
    let name = match words.as_str() {
        "" => "floor-uring".to_string(),
        w => format!("floor-uring (FLOOR_URING={w})"),
    };
    serve(&listener, &reply, core.as_ref(), mode, || {
        floor_proto::announce(&name, &listener, &reply)
    })
}

/// Serves `reply` to every request head on `listener`'s connections (with `core`, that core's
/// answers instead), for ever; `ready` runs once the ring is set up. It returns only on an error
/// of the ring or of the wait.
fn serve(
    listener: &std::net::TcpListener,
    reply: &Reply,
    core: Option<&Core>,
    mode: Mode,
    ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let Mode {
        oneshot,
        coop,
        epoll,
        direct,
        core: _,
    } = mode;
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_cqsize(ENTRIES * 4);
    if coop {
        builder.setup_coop_taskrun();
    } else {
        builder.setup_defer_taskrun();
    }
    let mut ring = builder
        .build(ENTRIES)
        .map_err(|e| format!("io_uring setup (SINGLE_ISSUER, {mode:?}): {e}"))?;
    let bufs = buf_ring(&ring)?;
    let lfd = listener.as_raw_fd();
    let mut conns: Vec<Option<Conn>> = Vec::new();

    let epfd = if epoll {
        Some(ring_epoll(ring.as_raw_fd())?)
    } else {
        None
    };
    ready()?;
    let (submitter, mut sq, mut cq) = ring.split();
    let accept = opcode::AcceptMulti::new(types::Fd(lfd))
        .build()
        .user_data(ACCEPT);
    push(&mut sq, &submitter, accept.clone());
    // Single-shot recvs in flight (`oneshot` mode), for `direct`.
    let armed = std::cell::Cell::new(0usize);
    // A single-shot recv into the connection's buffer (`oneshot` mode).
    let recv_once = |fd: i32, c: &mut Conn, sq: &mut squeue::SubmissionQueue<'_>| {
        armed.set(armed.get() + 1);
        let e = opcode::Recv::new(types::Fd(fd), c.buf.as_mut_ptr(), c.buf.len() as u32)
            .build()
            .user_data(RECV | fd as u32 as u64);
        push(sq, &submitter, e);
        c.recv_armed = true;
    };
    // The rest of the owed answers with a plain send(2) (`direct`); whatever it leaves stays owed.
    let send_now = |fd: i32, c: &mut Conn| {
        let chunk = c.owes.chunk(reply);
        // SAFETY: fd is open; `chunk` is valid for its length.
        let n = unsafe {
            libc::send(
                fd,
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            c.owes.sent(n as usize, reply);
            DIRECT_SENDS.fetch_add(1, Ordering::Relaxed);
        }
    };
    let send = |fd: i32, c: &mut Conn, sq: &mut squeue::SubmissionQueue<'_>| {
        let chunk = c.owes.chunk(reply);
        let e = opcode::Send::new(types::Fd(fd), chunk.as_ptr(), chunk.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(SEND | fd as u32 as u64);
        push(sq, &submitter, e);
        c.sending = true;
    };
    let want = if epfd.is_some() { 0 } else { 1 };
    let failure = loop {
        sq.sync();
        match submitter.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => break format!("io_uring_enter: {e}"),
        }
        if let Some(epfd) = &epfd {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: one event's room, in `ev`, which outlives the call.
            if unsafe { libc::epoll_wait(epfd.as_raw_fd(), &mut ev, 1, -1) } < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    break format!("epoll_wait: {e}");
                }
                // tokio's park reports no readiness, so tokio-uring parks again: submit, wait.
                continue;
            }
        }
        cq.sync();
        let turn = core.map(Core::turn);
        let mut gave = false;
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let fd = ud as u32 as i32;
            let res = cqe.result();
            let flags = cqe.flags();
            match ud & !0xffff_ffff {
                ACCEPT => {
                    if res >= 0 {
                        let fd = res;
                        if fd as usize >= MAX_CONNS {
                            close(fd);
                        } else {
                            floor_proto::nodelay(fd);
                            if conns.len() <= fd as usize {
                                conns.resize_with(fd as usize + 1, || None);
                            }
                            let c = conns[fd as usize].insert(Conn::new(core.is_some()));
                            if oneshot {
                                c.buf = vec![0; BUF_LEN];
                                recv_once(fd, c, &mut sq);
                            } else {
                                c.recv_armed = true;
                                let recv = opcode::RecvMulti::new(types::Fd(fd), BGID)
                                    .build()
                                    .user_data(RECV | fd as u32 as u64);
                                push(&mut sq, &submitter, recv);
                            }
                        }
                    }
                    if !cqueue::more(flags) {
                        push(&mut sq, &submitter, accept.clone());
                    }
                }
                RECV if oneshot => {
                    let c = conns[fd as usize].as_mut().expect("recv on a known fd");
                    c.recv_armed = false;
                    armed.set(armed.get() - 1);
                    if res > 0 {
                        let buf = std::mem::take(&mut c.buf);
                        c.received(&buf[..res as usize], turn.as_ref());
                        c.buf = buf;
                        if direct && armed.get() == 0 && !c.sending && c.unsent(reply) {
                            send_now(fd, c);
                        }
                        if c.owes.finished() {
                            // `core`: the connection's last response went out directly.
                            c.closing = true;
                        } else if !c.unsent(reply) {
                            // Part of a head, or the response went out directly: read on.
                            recv_once(fd, c, &mut sq);
                        } else if !c.sending {
                            send(fd, c, &mut sq);
                        }
                    } else {
                        c.closing = true;
                    }
                    if c.closing && !c.sending && !c.recv_armed {
                        close(fd);
                        conns[fd as usize] = None;
                    }
                }
                RECV => {
                    let c = conns[fd as usize].as_mut().expect("recv on a known fd");
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if res > 0 {
                            c.received(bufs.get(bid, res as usize), turn.as_ref());
                        }
                        bufs.give(bid);
                        gave = true;
                    }
                    if res <= 0 && res != -libc::ENOBUFS {
                        // End of stream or an error: finish with this connection.
                        c.closing = true;
                    }
                    if !cqueue::more(flags) {
                        c.recv_armed = false;
                        if !c.closing {
                            // Out of buffers, or the kernel ended the multishot: re-arm.
                            let recv = opcode::RecvMulti::new(types::Fd(fd), BGID)
                                .build()
                                .user_data(RECV | fd as u32 as u64);
                            push(&mut sq, &submitter, recv);
                            c.recv_armed = true;
                        }
                    }
                    if !c.closing && !c.sending && c.unsent(reply) {
                        send(fd, c, &mut sq);
                    }
                    if c.closing && !c.sending && !c.recv_armed {
                        close(fd);
                        conns[fd as usize] = None;
                    }
                }
                SEND => {
                    let c = conns[fd as usize].as_mut().expect("send on a known fd");
                    c.sending = false;
                    if res >= 0 {
                        c.owes.sent(res as usize, reply);
                        if let Some(turn) = &turn {
                            // Requests that came in during the send.
                            c.owes.answer(turn);
                            if c.owes.finished() && !c.closing {
                                c.closing = true;
                                // SAFETY: fd is open (closed only once nothing is in flight).
                                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                            }
                        }
                        if !c.closing && c.unsent(reply) {
                            send(fd, c, &mut sq);
                        } else if oneshot && !c.closing && !c.recv_armed {
                            // The response is out: now the next request's read.
                            recv_once(fd, c, &mut sq);
                        }
                    } else if !c.closing {
                        c.closing = true;
                        // End the armed recv too; its last completion closes the fd.
                        // SAFETY: fd is open (closed only once nothing is in flight).
                        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                    }
                    if c.closing && !c.sending && !c.recv_armed {
                        close(fd);
                        conns[fd as usize] = None;
                    }
                }
                _ => {}
            }
        }
        if gave {
            bufs.publish();
        }
        // Hand the consumed completions back before waiting: while the kernel still sees them
        // in the queue, the next wait returns at once and costs a system call for nothing.
        cq.sync();
    };
    // Receives may still be in flight into the connections' buffers, and the ring's teardown is
    // asynchronous: leave that memory to the process's end (the buffer ring's mappings are never
    // unmapped either).
    std::mem::forget(conns);
    Err(failure)
}

#[cfg(test)]
mod tests {
    // Bench targets are built with cfg(test) but without their #[test] functions.
    #![allow(unused_imports, dead_code)]
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Reads one `want`-sized answer and compares it byte for byte.
    fn expect(s: &mut TcpStream, want: &[u8]) {
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).expect("the floor's answer");
        assert_eq!(got, want);
    }

    /// A client of the floor at `addr`, which gives up on a read after 10 s.
    fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Ends the connection from our side and expects the floor to close it with nothing more.
    fn expect_end(s: TcpStream) {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_closed(s);
    }

    /// Expects the floor to close the connection with nothing more.
    fn expect_closed(mut s: TcpStream) {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("the floor's close");
        assert!(
            rest.is_empty(),
            "{} bytes after the last answer",
            rest.len()
        );
    }

    /// Held by each socket test: [`DIRECT_SENDS`] counts for the whole process.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn every_mode_answers_pipelined_split_and_concurrent_heads() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
        let one = [head, b"body"].concat();
        let get: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for words in [
            "",
            "oneshot",
            "oneshot,coop",
            "oneshot,coop,epoll",
            "oneshot,coop,epoll,direct",
        ] {
            let listener = floor_proto::listen(0, false).unwrap();
            let addr = listener.local_addr().unwrap();
            let direct_before = DIRECT_SENDS.load(Ordering::Relaxed);
            // The responder runs for ever, and its thread ends with the test process; the reply
            // is leaked so that it outlives any send still in flight.
            std::thread::spawn(move || {
                let reply: &'static Reply = Box::leak(Box::new(Reply::new(head, b"body")));
                let mode = Mode::parse(words).unwrap();
                let failure = serve(&listener, reply, None, mode, || Ok(()));
                eprintln!("floor ({words:?}) stopped: {failure:?}");
            });
            let mut a = connect(addr);
            // Three heads in one write: three answers.
            a.write_all(&get.repeat(3)).unwrap();
            expect(&mut a, &one.repeat(3));
            // A head split across writes (usually two receives): one answer, after its end.
            a.write_all(&get[..9]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            a.write_all(&get[9..]).unwrap();
            expect(&mut a, &one);
            // Two connections with heads waiting at once.
            let mut b = connect(addr);
            b.write_all(get).unwrap();
            a.write_all(get).unwrap();
            expect(&mut b, &one);
            expect(&mut a, &one);
            expect_end(b);
            a.write_all(get).unwrap();
            expect(&mut a, &one);
            expect_end(a);
            let direct = DIRECT_SENDS.load(Ordering::Relaxed) - direct_before;
            assert_eq!(
                direct > 0,
                words.contains("direct"),
                "{direct} direct sends with {words:?}"
            );
        }
    }

    /// Reads one response (its head, then a Content-Length body) and returns both.
    fn response(s: &mut TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("a response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0; len];
        s.read_exact(&mut body).expect("the body");
        (head, body)
    }

    #[test]
    fn the_core_and_serve_modes_of_both_floors_answer_with_uring_httpds_core() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("2k.html");
        let bytes: Vec<u8> = (0..2048).map(|i| (i % 251) as u8).collect();
        std::fs::write(&page, &bytes).unwrap();
        // Over the cache's 1 MiB limit, so it is sent from the file (by the `serve` experiment
        // in 64 KiB reads and sends after the head).
        let big: Vec<u8> = (0..1_200_000).map(|i| (i % 241) as u8).collect();
        std::fs::write(dir.path().join("big.txt"), &big).unwrap();
        let get: &[u8] = b"GET /2k.html HTTP/1.1\r\nHost: x\r\n\r\n";
        // The io_uring floor's modes, the epoll floor (`FLOOR_EPOLL=core`), then the `serve`
        // experiment on both reactors (`FLOOR_URING=serve`, `FLOOR_EPOLL=serve`).
        let (epoll, serve_uring, serve_epoll) = ("floor-epoll", "serve uring", "serve epoll");
        for words in [
            "core",
            "oneshot,coop,epoll,core",
            "oneshot,coop,epoll,direct,core",
            epoll,
            serve_uring,
            serve_epoll,
        ] {
            let nonblocking = words == epoll || words == serve_epoll;
            let listener = floor_proto::listen(0, nonblocking).unwrap();
            let addr = listener.local_addr().unwrap();
            let page = page.clone();
            // As above: the responder's thread ends with the test process.
            std::thread::spawn(move || {
                let reply: &'static Reply = Box::leak(Box::new(Reply::new(b"unused", b"")));
                let core: &'static Core = Box::leak(Box::new(Core::new(&page).unwrap()));
                let failure = match words {
                    w if w == epoll => {
                        crate::floor_epoll::serve(&listener, reply, Some(core), || Ok(()))
                    }
                    w if w == serve_uring => {
                        crate::floor_serve::serve_uring(&listener, &page, || Ok(()))
                    }
                    w if w == serve_epoll => {
                        crate::floor_serve::serve_epoll(&listener, &page, || Ok(()))
                    }
                    _ => {
                        let mode = Mode::parse(words).unwrap();
                        serve(&listener, reply, Some(core), mode, || Ok(()))
                    }
                };
                eprintln!("floor ({words:?}) stopped: {failure:?}");
            });
            let ok = |(head, body): (String, Vec<u8>)| {
                assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{words}: {head}");
                assert!(head.contains("Content-Type: text/html"), "{words}: {head}");
                assert_eq!(body, bytes, "{words}");
            };
            let mut a = connect(addr);
            // Three pipelined heads, then one split across writes.
            a.write_all(&get.repeat(3)).unwrap();
            for _ in 0..3 {
                ok(response(&mut a));
            }
            a.write_all(&get[..9]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            a.write_all(&get[9..]).unwrap();
            ok(response(&mut a));
            // A missing file on a second connection: 404, and it stays open.
            let mut b = connect(addr);
            b.write_all(b"GET /nope.html HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let (head, _) = response(&mut b);
            assert!(head.starts_with("HTTP/1.1 404 "), "{words}: {head}");
            b.write_all(get).unwrap();
            ok(response(&mut b));
            // A 1.2 MB file, byte for byte.
            b.write_all(b"GET /big.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let (head, body) = response(&mut b);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{words}: {head}");
            assert!(body == big, "{words}: {} bytes, not the file's", body.len());
            expect_end(b);
            // `Connection: close` is answered, then the floor closes.
            a.write_all(b"GET /2k.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let (head, body) = response(&mut a);
            assert!(head.contains("Connection: close\r\n"), "{words}: {head}");
            assert_eq!(body, bytes, "{words}");
            expect_closed(a);
        }
    }

    #[test]
    fn modes_parse_from_their_words() {
        assert_eq!(Mode::parse(""), Ok(Mode::default()));
        let m = Mode::parse("oneshot,coop,epoll,direct,core").unwrap();
        assert!(m.oneshot && m.coop && m.epoll && m.direct && m.core);
        assert!(!Mode::parse("coop").unwrap().oneshot);
        assert!(
            Mode::parse("oneshot,epol")
                .unwrap_err()
                .contains("\"epol\"")
        );
        assert!(
            Mode::parse("epoll")
                .unwrap_err()
                .contains("epoll needs coop")
        );
        assert!(
            Mode::parse("coop,direct")
                .unwrap_err()
                .contains("direct needs oneshot")
        );
        assert!(
            Mode::parse("serve,core")
                .unwrap_err()
                .contains("serve goes alone")
        );
    }
}
