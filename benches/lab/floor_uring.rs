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
//! An experiment (`benches/README.md`): with `FLOOR_URING=oneshot,coop` in its environment the
//! responder works the way tokio-uring lets uring-httpd work, to price those limits apart from
//! the server's own work. `oneshot`: one single-shot recv per request into the connection's own
//! buffer, queued only after the response's send completed (no multishot recv, no buffer ring);
//! `coop`: COOP_TASKRUN instead of DEFER_TASKRUN (which tokio-uring's driver cannot use).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::floor_proto::{self, HeadCounter, Owed, Reply};

/// Submission queue entries; the completion queue gets four times as many.
const ENTRIES: u32 = 4096;
/// Provided buffers in the ring (a power of two) and the size of each.
const BUFS: u16 = 2048;
const BUF_LEN: usize = 2048;
const BGID: u16 = 7;
/// Connections beyond this many (by fd number) are closed on accept.
pub const MAX_CONNS: usize = 16384;

/// user_data: the operation in the high half, the fd in the low one.
const ACCEPT: u64 = 1 << 32;
const RECV: u64 = 2 << 32;
const SEND: u64 = 3 << 32;

#[derive(Default)]
struct Conn {
    /// The connection's read buffer (`oneshot` mode only).
    buf: Vec<u8>,
    heads: HeadCounter,
    owed: Owed,
    recv_armed: bool,
    sending: bool,
    closing: bool,
}

/// The provided buffer ring: [`BUFS`] entries and their buffers, both in anonymous mappings
/// (page aligned, as the kernel wants the ring, and never touched through Rust references while
/// the kernel may write them).
struct BufRing {
    ring: *mut BufRingEntry,
    bufs: *mut u8,
    tail: u16,
}

fn map(len: usize) -> Result<*mut u8, String> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap {len}: {}", std::io::Error::last_os_error()));
    }
    Ok(p.cast())
}

impl BufRing {
    fn new(ring: &IoUring) -> Result<BufRing, String> {
        let entries = map(BUFS as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = map(BUFS as usize * BUF_LEN)?;
        let mut br = BufRing {
            ring: entries.cast(),
            bufs,
            tail: 0,
        };
        // SAFETY: the ring mapping holds BUFS entries, is page aligned and lives as long as the
        // process (never unmapped), so it outlives the registration.
        unsafe {
            ring.submitter()
                .register_buf_ring(br.ring as u64, BUFS, BGID)
        }
        .map_err(|e| format!("register_buf_ring: {e} (kernel ≥ 5.19 needed)"))?;
        for bid in 0..BUFS {
            br.give(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Queues buffer `bid` for the kernel (visible after [`BufRing::publish`]).
    fn give(&mut self, bid: u16) {
        let slot = (self.tail & (BUFS - 1)) as usize;
        // SAFETY: slot < BUFS, inside the ring mapping; the kernel only reads entries between its
        // head and the published tail, and this slot is past the published tail. Only addr, len
        // and bid are written, not the shared tail field of entry 0.
        let e = unsafe { &mut *self.ring.add(slot) };
        // SAFETY: bid < BUFS, so the buffer lies inside the buffers mapping.
        e.set_addr(unsafe { self.bufs.add(bid as usize * BUF_LEN) } as u64);
        e.set_len(BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the given buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the ring's first entry is initialised and its `resv` field is the ring tail
        // the kernel reads; it is aligned for u16 and only ever accessed atomically from here.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.ring) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which the kernel has filled and handed back.
    fn read(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < BUFS && len <= BUF_LEN);
        // SAFETY: bid and len are in bounds (checked); a completion handed this buffer back, so
        // the kernel does not write it until it is given again with `give`.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * BUF_LEN), len) }
    }
}

/// Pushes an entry, submitting the queue first when it is full.
fn push(
    sq: &mut squeue::SubmissionQueue<'_>,
    submitter: &io_uring::Submitter<'_>,
    e: squeue::Entry,
) {
    loop {
        // SAFETY: every entry refers to a live fd and, for sends, to the `Reply` buffer, which
        // lives until the process exits.
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

/// Runs the floor until killed.
pub fn run(port: u16, file: &Path) -> Result<(), String> {
    floor_proto::bound_to_parent();
    let reply = Reply::for_file(file)?;
    let listener = floor_proto::listen(port, false)?;
    let mode = std::env::var("FLOOR_URING").unwrap_or_default();
    let oneshot = mode.split(',').any(|m| m == "oneshot");
    let coop = mode.split(',').any(|m| m == "coop");
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_cqsize(ENTRIES * 4);
    if coop {
        builder.setup_coop_taskrun();
    } else {
        builder.setup_defer_taskrun();
    }
    let mut ring = builder
        .build(ENTRIES)
        .map_err(|e| format!("io_uring setup (SINGLE_ISSUER, FLOOR_URING={mode:?}): {e}"))?;
    let mut bufs = BufRing::new(&ring)?;
    let lfd = listener.as_raw_fd();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    floor_proto::announce("floor-uring", &listener, &reply)?;

    let (submitter, mut sq, mut cq) = ring.split();
    let accept = opcode::AcceptMulti::new(types::Fd(lfd))
        .build()
        .user_data(ACCEPT);
    push(&mut sq, &submitter, accept.clone());
    // A single-shot recv into the connection's buffer (`oneshot` mode).
    let recv_once = |fd: i32, c: &mut Conn, sq: &mut squeue::SubmissionQueue<'_>| {
        let e = opcode::Recv::new(types::Fd(fd), c.buf.as_mut_ptr(), c.buf.len() as u32)
            .build()
            .user_data(RECV | fd as u32 as u64);
        push(sq, &submitter, e);
        c.recv_armed = true;
    };
    let send = |fd: i32, c: &mut Conn, sq: &mut squeue::SubmissionQueue<'_>| {
        let chunk = reply.chunk(&c.owed);
        let e = opcode::Send::new(types::Fd(fd), chunk.as_ptr(), chunk.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(SEND | fd as u32 as u64);
        push(sq, &submitter, e);
        c.sending = true;
    };
    loop {
        sq.sync();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(format!("io_uring_enter: {e}")),
        }
        cq.sync();
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
                            let c = conns[fd as usize].insert(Conn::default());
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
                    if res > 0 {
                        let n = c.heads.feed(&c.buf[..res as usize]);
                        c.owed.add(n);
                        if c.owed.is_empty() {
                            // Part of a head: read on.
                            recv_once(fd, c, &mut sq);
                        } else if !c.sending {
                            send(fd, c, &mut sq);
                        }
                    } else {
                        c.closing = true;
                    }
                    if c.closing && !c.sending {
                        close(fd);
                        conns[fd as usize] = None;
                    }
                }
                RECV => {
                    let c = conns[fd as usize].as_mut().expect("recv on a known fd");
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if res > 0 {
                            let n = c.heads.feed(bufs.read(bid, res as usize));
                            c.owed.add(n);
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
                    if !c.closing && !c.sending && !c.owed.is_empty() {
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
                        c.owed.sent(res as usize, reply.len());
                        if !c.closing && !c.owed.is_empty() {
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
    }
}
