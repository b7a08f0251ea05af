//! The io_uring engine's receive side: a small ring of the worker's own, beside tokio-uring's,
//! that carries one multishot `IORING_OP_RECV` per connection into a ring of provided buffers.
//!
//! tokio-uring 0.5 submits only operations with a single completion, so on its ring a connection
//! needs a receive per request, and each one arms a poll on the socket and takes it down again.
//! Here a connection's receive is armed once and stays armed: whenever bytes arrive the kernel
//! takes a buffer from the worker's [`Bufs`], receives into it and posts a completion; the
//! connection copies the bytes into its own buffer at its next read and gives the buffer back. An
//! idle connection holds no buffer and no operation of tokio-uring's.
//!
//! The ring is made with COOP_TASKRUN and SINGLE_ISSUER, like tokio-uring's: its completions are
//! posted at the worker's next system call (tokio-uring's submit or tokio's `epoll_wait` when the
//! thread parks). Its descriptor is registered with tokio's reactor, and one task per worker
//! ([`drive`]) hands completions to connections and submits what they queued: a receive to arm
//! (once per connection, and again after it ended) or to cancel. Sends, accepts and file
//! operations stay on tokio-uring.
//!
//! What keeps it sound and fair:
//! - a receive keeps its socket alive in the kernel until its last completion: a dropped
//!   connection's receive is cancelled, and its slot is reused only after that last completion,
//!   so no later connection sees a completion of an earlier one;
//! - a connection holds at most [`HELD`] buffers; at that many its receive is cancelled and armed
//!   again once it has read them, so a client that sends without reading its answers is held back
//!   by TCP's window, not by the worker's buffers;
//! - a receive that found no buffer (`ENOBUFS`) is armed again once a buffer comes back;
//! - a socket shut down (a timeout, a shutdown) while no receive is armed wakes its reader, which
//!   then sees end of stream.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_uring::net::TcpStream;

use super::read_bufs;
use crate::deadline::Shut;

/// Buffers in a worker's ring (a power of two, as the kernel requires).
const BUFS: u16 = 512;
/// Bytes per buffer: a typical request head fits in one; a longer one takes several. The kernel
/// fills the buffers in turn, so all of them are soon touched: 512 KiB of a worker's memory.
const BUF_LEN: usize = 1024;
/// The buffer group the receives select from.
const BGID: u16 = 0;
/// Buffers one connection may hold unread before its receive is cancelled.
const HELD: usize = 4;
/// Submission queue entries: only arms and cancels go through it.
const ENTRIES: u32 = 256;
/// Completion queue entries: every arrival of bytes on any connection posts one.
const CQ_ENTRIES: u32 = 4096;
/// `user_data` bit of a cancellation (its completion carries nothing to hand on).
const CANCEL: u64 = 1 << 32;

/// A worker's receive ring. Shared by its connections through `Rc`.
pub struct Receiver {
    inner: RefCell<Inner>,
}

struct Inner {
    /// Declared before `bufs`: fields drop in order, and the ring must close before its buffers
    /// are unmapped.
    ring: IoUring,
    bufs: Bufs,
    slots: Vec<Slot>,
    /// Slots free for a new connection.
    free: Vec<u32>,
    /// Entries that found the submission queue full, in order: the driver's next turn submits
    /// them after the ones in the queue. A connection never submits, so none of them waits on
    /// the kernel (which may refuse a submission while its completion queue overflows, until the
    /// driver has taken completions).
    backlog: VecDeque<squeue::Entry>,
    /// Entries queued (or in the backlog) and not yet submitted.
    queued: bool,
    /// The driver task, woken when there is something to submit.
    driver: Option<Waker>,
}

/// One connection's receive.
#[derive(Default)]
struct Slot {
    /// Received bytes not yet read: (buffer, bytes read of it, bytes it holds).
    queue: VecDeque<(u16, u16, u16)>,
    /// The connection's read, waiting.
    reader: Option<Waker>,
    /// The socket's descriptor (tokio-uring's stream owns it).
    fd: RawFd,
    /// A receive is in the kernel (until its completion without `F_MORE`).
    armed: bool,
    /// Its cancellation has been queued.
    cancelling: bool,
    /// It ended with `ENOBUFS`: armed again once a buffer comes back.
    starved: bool,
    /// It ended for good: 0 at end of stream, or a negated errno.
    end: Option<i32>,
    /// The socket was shut down.
    shut: bool,
    /// The connection is gone; the slot is freed at the receive's last completion.
    gone: bool,
}

impl Receiver {
    /// A ring with its buffers, or why this kernel cannot have one (multishot receives and
    /// SINGLE_ISSUER both need Linux 6.0; buffer rings 5.19): the engine then receives with one
    /// operation per request on tokio-uring's ring.
    pub fn new() -> io::Result<Rc<Receiver>> {
        Receiver::with_entries(ENTRIES)
    }

    /// [`Receiver::new`] with a submission queue of `entries` (a test's is small, to fill it).
    fn with_entries(entries: u32) -> io::Result<Rc<Receiver>> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_cqsize(CQ_ENTRIES)
            .build(entries)?;
        let bufs = Bufs::new(&ring)?;
        Ok(Rc::new(Receiver {
            inner: RefCell::new(Inner {
                ring,
                bufs,
                slots: Vec::new(),
                free: Vec::new(),
                backlog: VecDeque::new(),
                queued: false,
                driver: None,
            }),
        }))
    }

    /// A slot for a newly accepted connection on `fd`; nothing is armed until its first read.
    pub fn open(self: &Rc<Self>, fd: RawFd) -> Rx {
        let mut inner = self.inner.borrow_mut();
        let slot = Slot {
            fd,
            ..Slot::default()
        };
        let id = match inner.free.pop() {
            Some(id) => {
                inner.slots[id as usize] = slot;
                id
            }
            None => {
                inner.slots.push(slot);
                (inner.slots.len() - 1) as u32
            }
        };
        Rx {
            recv: self.clone(),
            id,
        }
    }

    /// The driver task of this ring: submits what connections queued and hands completions on,
    /// each time the ring's descriptor turns readable or something is queued. Runs until the
    /// worker's runtime ends.
    pub async fn drive(self: Rc<Self>) {
        let fd = self.inner.borrow().ring.as_raw_fd();
        // SAFETY: the descriptor is the ring's, which `self` owns: it stays open and the same
        // for as long as this local, which drops before `self`.
        let fd = match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                // Nothing completes without it: the connections' reads would wait for ever.
                tracing::error!("io_uring receive ring: registering with the reactor: {e}");
                return;
            }
        };
        loop {
            if !self.turn() {
                // The kernel refused the submission or took none of it (short of room): let the
                // connections run (they give buffers back, take completions) before trying again.
                tokio::task::yield_now().await;
                continue;
            }
            poll_fn(|cx| {
                let mut inner = self.inner.borrow_mut();
                if inner.queued {
                    return Poll::Ready(());
                }
                set_waker(&mut inner.driver, cx);
                drop(inner);
                match fd.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut ready)) => {
                        // Before the completions are taken: one posted after this is a new
                        // readiness, which this does not clear.
                        ready.clear_ready();
                        Poll::Ready(())
                    }
                    Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
                }
            })
            .await;
        }
    }

    /// Submits what is queued, the backlog included (and flushes completions the kernel kept
    /// back when the queue was full), then hands every completion on. False when the kernel
    /// refused a submission or took none of a full queue (what it did not take stays queued, and
    /// the driver lets the worker's other tasks run before it tries again).
    fn turn(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        let Inner {
            ring,
            bufs,
            slots,
            free,
            backlog,
            queued,
            ..
        } = &mut *inner;
        let mut submitted = true;
        if *queued || ring.submission().cq_overflow() {
            // A failed submit (EBUSY, EAGAIN: the kernel is short of room) is retried next turn,
            // after this one has taken the completions.
            loop {
                while let Some(e) = backlog.front() {
                    // SAFETY: see `enqueue`, which put it there.
                    if unsafe { ring.submission().push(e) }.is_err() {
                        break;
                    }
                    backlog.pop_front();
                }
                if ring.submit().is_err() {
                    submitted = false;
                    break;
                }
                // All submitted, or the kernel took none of a full queue: no more this turn.
                if backlog.is_empty() || ring.submission().is_full() {
                    break;
                }
            }
            submitted &= backlog.is_empty();
            *queued = !submitted;
        }
        let mut gave = false;
        let mut cancels = Vec::new();
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            if ud & CANCEL != 0 {
                continue;
            }
            let id = ud as u32;
            let slot = &mut slots[id as usize];
            let (res, flags) = (cqe.result(), cqe.flags());
            if let Some(bid) = cqueue::buffer_select(flags) {
                bufs.taken();
                if res > 0 && !slot.gone {
                    slot.queue.push_back((bid, 0, res as u16));
                } else {
                    bufs.give(bid);
                    gave = true;
                }
            }
            if !cqueue::more(flags) {
                slot.armed = false;
                slot.cancelling = false;
                if slot.gone {
                    free.push(id);
                    continue;
                }
                match res {
                    0 => slot.end = Some(0),
                    e if e == -libc::ENOBUFS => slot.starved = true,
                    // Cancelled for holding too many buffers, or ended by the kernel (its
                    // completion queue overflowed): the next read arms it again.
                    e if e == -libc::ECANCELED || e > 0 => {}
                    e => slot.end = Some(e),
                }
            } else if slot.queue.len() >= HELD && !slot.cancelling {
                slot.cancelling = true;
                cancels.push(id);
            }
            if let Some(w) = slot.reader.take() {
                w.wake();
            }
        }
        if gave {
            bufs.publish();
        }
        release_if_idle(slots, free, bufs);
        for id in cancels {
            enqueue(ring, backlog, &cancel(id));
            *queued = true;
        }
        submitted
    }
}

/// Slots a worker keeps however its connections come and go; past this many, the memory of its
/// connections' slots and of the buffers they touched goes back when its last connection is gone.
const KEEP_SLOTS: usize = 64;

/// Once every connection is gone after a burst (more than [`KEEP_SLOTS`] at once), frees the
/// slots and hands the buffers' pages back to the system. Safe for the buffers: with no
/// connection there is no receive in the kernel to write one, and a page dropped with
/// `MADV_DONTNEED` reads as zeros when touched again.
fn release_if_idle(slots: &mut Vec<Slot>, free: &mut Vec<u32>, bufs: &Bufs) {
    if slots.len() > KEEP_SLOTS && free.len() == slots.len() {
        *slots = Vec::new();
        *free = Vec::new();
        bufs.drop_pages();
    }
}

/// Stores the waker of `cx` in `at`, unless the one there already wakes the same task.
fn set_waker(at: &mut Option<Waker>, cx: &Context<'_>) {
    match at {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *at = Some(cx.waker().clone()),
    }
}

/// Puts an entry in the submission queue for the driver's next turn, or in the backlog behind
/// it when the queue is full (or the backlog not empty: entries keep their order, so a receive's
/// cancellation never goes before its arming).
fn enqueue(ring: &mut IoUring, backlog: &mut VecDeque<squeue::Entry>, e: &squeue::Entry) {
    // SAFETY: the entries queued here are receives into the registered buffer group of a socket
    // a connection keeps open (the kernel holds its own reference once submitted) and
    // cancellations; neither points at memory of ours.
    if !backlog.is_empty() || unsafe { ring.submission().push(e) }.is_err() {
        backlog.push_back(e.clone());
    }
}

fn arm(id: u32, fd: RawFd) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), BGID)
        .build()
        .user_data(u64::from(id))
}

fn cancel(id: u32) -> squeue::Entry {
    opcode::AsyncCancel::new(u64::from(id))
        .build()
        .user_data(CANCEL | u64::from(id))
}

/// A connection's receive, in its worker's ring.
pub struct Rx {
    recv: Rc<Receiver>,
    id: u32,
}

impl Rx {
    /// Reads what has arrived into the spare room of `buf` (which must have some), waiting for
    /// bytes if none have; 0 at end of stream, and after the socket was shut down. While it
    /// waits, an idle connection's empty buffer is parked ([`read_bufs`]): nothing needs it
    /// until bytes have arrived.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if !self.recv.inner.borrow().slots[self.id as usize].ready() && read_bufs::park(&mut buf) {
            poll_fn(|cx| self.poll_ready(cx)).await;
            buf = read_bufs::unpark();
        }
        let r = poll_fn(|cx| self.poll_read(cx, &mut buf)).await;
        (r, buf)
    }

    /// Ready once a read would not wait.
    fn poll_ready(&self, cx: &Context<'_>) -> Poll<()> {
        let mut inner = self.recv.inner.borrow_mut();
        if inner.slots[self.id as usize].ready() {
            return Poll::Ready(());
        }
        inner.wait(self.id, cx);
        Poll::Pending
    }

    fn poll_read(&self, cx: &Context<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        let mut inner = self.recv.inner.borrow_mut();
        let Inner { bufs, slots, .. } = &mut *inner;
        let slot = &mut slots[self.id as usize];
        let mut n = 0;
        let mut gave = false;
        while let Some((bid, at, len)) = slot.queue.front_mut() {
            let room = buf.capacity() - buf.len();
            if room == 0 {
                break;
            }
            let data = &bufs.get(*bid, *len as usize)[*at as usize..];
            let take = room.min(data.len());
            buf.extend_from_slice(&data[..take]);
            *at += take as u16;
            n += take;
            if at == len {
                bufs.give(*bid);
                slot.queue.pop_front();
                gave = true;
            }
        }
        if gave {
            bufs.publish();
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        match slot.end {
            Some(0) => return Poll::Ready(Ok(0)),
            Some(e) => return Poll::Ready(Err(io::Error::from_raw_os_error(-e))),
            None if slot.shut && !slot.armed => return Poll::Ready(Ok(0)),
            None => {}
        }
        inner.wait(self.id, cx);
        Poll::Pending
    }
}

impl Slot {
    /// Whether a read would not wait: bytes have arrived, or the receive ended for good, or the
    /// socket was shut down with none armed.
    fn ready(&self) -> bool {
        !self.queue.is_empty() || self.end.is_some() || (self.shut && !self.armed)
    }
}

impl Inner {
    /// Makes connection `id`'s reader wait for its receive: arms it unless one is armed (or the
    /// last found no buffer and none has come back), and registers the reader's waker.
    fn wait(&mut self, id: u32, cx: &Context<'_>) {
        let slot = &mut self.slots[id as usize];
        set_waker(&mut slot.reader, cx);
        if slot.armed {
            return;
        }
        if slot.starved && self.bufs.held == BUFS {
            // Still none: woken when one comes back.
            self.bufs.starved.push(cx.waker().clone());
            return;
        }
        slot.starved = false;
        slot.armed = true;
        let e = arm(id, slot.fd);
        self.submit_soon(&e);
    }

    /// Queues `e` for the driver task's next turn, and wakes it.
    fn submit_soon(&mut self, e: &squeue::Entry) {
        enqueue(&mut self.ring, &mut self.backlog, e);
        self.queued = true;
        if let Some(w) = self.driver.take() {
            w.wake();
        }
    }

    /// Connection `id` is gone: gives back the buffers it held, and frees its slot, or, with a
    /// receive armed, cancels that and leaves the slot to its last completion.
    fn close(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.gone = true;
        slot.reader = None;
        let (armed, cancelling) = (slot.armed, slot.cancelling);
        // Taken, not drained: its memory goes with the connection (kept in the slot, small
        // blocks allocated during a burst would pin heap pages the worker's trim could free).
        let queue = std::mem::take(&mut slot.queue);
        if !queue.is_empty() {
            for (bid, _, _) in queue {
                self.bufs.give(bid);
            }
            self.bufs.publish();
        }
        if !armed {
            self.free.push(id);
            release_if_idle(&mut self.slots, &mut self.free, &self.bufs);
        } else if !cancelling {
            // The socket stays open in the kernel until this completes: submitted this turn.
            self.slots[id as usize].cancelling = true;
            self.submit_soon(&cancel(id));
        }
    }

    /// Marks connection `id`'s socket shut down, so a read with no receive armed ends instead of
    /// waiting.
    fn shut(&mut self, id: u32) {
        // A handle outlives nothing it shuts (a connection drops its deadline, and the handle,
        // before its transport), but a slot gone or freed is skipped rather than trusted.
        if let Some(slot) = self.slots.get_mut(id as usize).filter(|s| !s.gone) {
            slot.shut = true;
            if let Some(w) = slot.reader.take() {
                w.wake();
            }
        }
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        self.recv.inner.borrow_mut().close(self.id);
    }
}

impl Rx {
    /// A handle on the connection's socket for the deadline table and the shutdown sequence.
    pub fn handle(&self, stream: Rc<TcpStream>) -> Handle {
        Handle {
            stream,
            recv: self.recv.clone(),
            id: self.id,
        }
    }
}

/// A connection's socket as the deadline table and the shutdown sequence reach it: shutting it
/// down ends an armed receive (end of stream), and wakes a reader that has none armed.
pub struct Handle {
    stream: Rc<TcpStream>,
    recv: Rc<Receiver>,
    id: u32,
}

impl Shut for Handle {
    fn shut(&self, how: Shutdown) {
        let _ = self.stream.shutdown(how);
        self.recv.inner.borrow_mut().shut(self.id);
    }
}

/// The worker's provided buffers, with what the receive ring tracks of them.
struct Bufs {
    ring: BufRing,
    /// Buffers the kernel has handed back and this side not yet returned.
    held: u16,
    /// Readers whose receive found no buffer, woken when one comes back.
    starved: Vec<Waker>,
}

impl Bufs {
    fn new(ring: &IoUring) -> io::Result<Bufs> {
        Ok(Bufs {
            ring: BufRing::new(ring, BUFS, BUF_LEN, BGID)?,
            held: 0,
            starved: Vec::new(),
        })
    }

    /// Counts a buffer handed back by a completion.
    fn taken(&mut self) {
        self.held += 1;
    }

    /// Gives buffer `bid` back to the kernel (visible after [`Bufs::publish`]).
    fn give(&mut self, bid: u16) {
        self.ring.give(bid);
        self.held -= 1;
    }

    /// Makes the buffers given back visible to the kernel, and wakes the readers that found none.
    fn publish(&mut self) {
        for w in self.starved.drain(..) {
            w.wake();
        }
        self.ring.publish();
    }

    fn get(&self, bid: u16, len: usize) -> &[u8] {
        self.ring.get(bid, len)
    }

    fn drop_pages(&self) {
        self.ring.drop_pages();
    }
}

/// A ring of provided buffers registered with an io_uring (`IORING_REGISTER_PBUF_RING`, Linux
/// 5.19): `count` entries (a power of two) and as many buffers of `len` bytes, in anonymous
/// mappings (page aligned, as the kernel wants the entries, and never touched through Rust
/// references while the kernel may write them). The lab's floors use it too.
///
/// Dropping it unmaps both: the io_uring it is registered with must be closed first (declared
/// before it in a struct), or the kernel could still take a buffer after the memory is gone.
pub struct BufRing {
    entries: *mut BufRingEntry,
    data: *mut u8,
    /// The next entry to fill.
    tail: u16,
    count: u16,
    len: usize,
}

fn map(len: usize) -> io::Result<*mut u8> {
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
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Maps and registers the ring as buffer group `bgid` of `ring`, every buffer given.
    pub fn new(ring: &IoUring, count: u16, len: usize, bgid: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && u32::try_from(len).is_ok());
        let entries = map(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let data = match map(count as usize * len) {
            Ok(d) => d,
            Err(e) => {
                let n = count as usize * std::mem::size_of::<BufRingEntry>();
                // SAFETY: mapped just above with this length; nothing points into it.
                unsafe { libc::munmap(entries.cast(), n) };
                return Err(e);
            }
        };
        let mut bufs = BufRing {
            entries: entries.cast(),
            data,
            tail: 0,
            count,
            len,
        };
        // SAFETY: the entries' mapping holds `count` entries and is page aligned; the caller
        // closes the ring before dropping this (see the type's documentation).
        unsafe {
            ring.submitter()
                .register_buf_ring(bufs.entries as u64, count, bgid)?
        };
        for bid in 0..count {
            bufs.give(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Queues buffer `bid` for the kernel (visible after [`BufRing::publish`]).
    pub fn give(&mut self, bid: u16) {
        assert!(bid < self.count);
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: slot < count, inside the entries' mapping; the kernel reads only entries
        // between its head and the published tail, and this one is past the published tail. Only
        // addr, len and bid are written, not the shared tail field of entry 0.
        let e = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: bid < count (checked), so the buffer lies inside the data mapping.
        e.set_addr(unsafe { self.data.add(bid as usize * self.len) } as u64);
        e.set_len(self.len as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the first entry's `resv` field is the ring's tail, which the kernel reads; it
        // is aligned for u16 and only ever accessed atomically from this side.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed back.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.len);
        // SAFETY: in bounds (checked); the kernel does not write this buffer again until it is
        // given back with `give`, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.data.add(bid as usize * self.len), len) }
    }

    /// Hands the buffers' pages back to the system; they read as zeros when touched again. Only
    /// while no operation in the kernel may write a buffer (see [`release_if_idle`]).
    fn drop_pages(&self) {
        // SAFETY: the data mapping is ours with this length; MADV_DONTNEED only replaces its
        // pages with zero-filled ones.
        unsafe {
            libc::madvise(
                self.data.cast(),
                self.count as usize * self.len,
                libc::MADV_DONTNEED,
            )
        };
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both were mapped with these lengths in `BufRing::new`, and the ring they were
        // registered with is closed (the type's rule): nothing reads or writes them any more.
        unsafe {
            libc::munmap(
                self.entries.cast(),
                self.count as usize * std::mem::size_of::<BufRingEntry>(),
            );
            libc::munmap(self.data.cast(), self.count as usize * self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A peer, the connection's end of the socket pair, and its receive.
    type Pair = (UnixStream, UnixStream, Rx);

    /// A receive ring with `n` connected socket pairs, each connection's end opened in it; or
    /// `None` (the test is skipped) where io_uring is unavailable.
    fn ring_with(n: usize) -> Option<(Rc<Receiver>, Vec<Pair>)> {
        ring_of(ENTRIES, n)
    }

    /// [`ring_with`] on a ring whose submission queue has `entries`.
    fn ring_of(entries: u32, n: usize) -> Option<(Rc<Receiver>, Vec<Pair>)> {
        if let Err(why) = crate::engine::probe_uring() {
            assert!(
                std::env::var_os("URING_HTTPD_REQUIRE_URING").is_none_or(|v| v != "1"),
                "io_uring is unavailable here and URING_HTTPD_REQUIRE_URING=1 requires it: {why}"
            );
            eprintln!("note: skipped: {why}");
            return None;
        }
        let recv = Receiver::with_entries(entries).expect("a receive ring on this kernel");
        let conns = (0..n)
            .map(|_| {
                let (peer, sock) = UnixStream::pair().unwrap();
                let rx = recv.open(sock.as_raw_fd());
                (peer, sock, rx)
            })
            .collect();
        Some((recv, conns))
    }

    /// Polls a read once into `buf`'s spare room.
    fn poll_once(rx: &Rx, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        rx.poll_read(&Context::from_waker(Waker::noop()), buf)
    }

    fn bytes_for(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 7 + j * 13 % 251) as u8).collect()
    }

    /// 200 connections each receive 8 KiB before any is read: 1.6 MB against a ring of 512 KiB.
    /// Receives are cancelled at a connection's share ([`HELD`]), others find the ring empty
    /// (`ENOBUFS`). Then each receives 8 KiB more, which only a receive armed again can take:
    /// every byte arrives once, in order, and at the end the kernel has every buffer back.
    #[test]
    fn more_bytes_than_the_ring_holds_all_arrive_in_order() {
        let Some((recv, conns)) = ring_with(200) else {
            return;
        };
        const LEN: usize = 8192;
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
        // The first reads arm the receives; then every peer sends before anything is read.
        for (i, (_, _, rx)) in conns.iter().enumerate() {
            let mut buf = Vec::with_capacity(2 * LEN);
            assert!(poll_once(rx, &mut buf).is_pending());
            got[i] = buf;
        }
        for (i, (peer, _, _)) in conns.iter().enumerate() {
            (&*peer).write_all(&bytes_for(i, 2 * LEN)[..LEN]).unwrap();
        }
        recv.turn();
        recv.turn();
        {
            let inner = recv.inner.borrow();
            let slots = &inner.slots;
            let starved = slots.iter().filter(|s| s.starved).count();
            let capped = slots.iter().filter(|s| s.queue.len() >= HELD).count();
            assert!(starved > 0, "no receive ran out of buffers");
            assert!(capped > 0, "no connection reached its share");
            assert_eq!(inner.bufs.held, BUFS, "the ring is empty");
            assert!(
                slots.iter().all(|s| s.end.is_none()),
                "a receive ended for good"
            );
        }
        for (i, (peer, _, _)) in conns.iter().enumerate() {
            (&*peer).write_all(&bytes_for(i, 2 * LEN)[LEN..]).unwrap();
        }
        // Read everything, a turn of the ring between rounds, until each has its 16 KiB.
        for _ in 0..1000 {
            if got.iter().all(|b| b.len() == 2 * LEN) {
                break;
            }
            for (i, (_, _, rx)) in conns.iter().enumerate() {
                while got[i].len() < 2 * LEN {
                    match poll_once(rx, &mut got[i]) {
                        Poll::Ready(Ok(n)) => assert!(n > 0, "end of stream on {i}"),
                        Poll::Ready(Err(e)) => panic!("connection {i}: {e}"),
                        Poll::Pending => break,
                    }
                }
            }
            recv.turn();
        }
        for (i, b) in got.iter().enumerate() {
            assert!(
                *b == bytes_for(i, 2 * LEN),
                "connection {i} got other bytes"
            );
        }
        assert_eq!(recv.inner.borrow().bufs.held, 0, "buffers not given back");
    }

    /// The first reads of 8 connections, on a submission queue of 2, and the cancellation of the
    /// last one's receive queued behind its arming: none waits for the kernel, the driver's next
    /// turn submits them all in order, every connection gets its bytes, and the dropped one's
    /// slot is freed at its receive's end.
    #[test]
    fn entries_that_find_the_queue_full_wait_in_order_for_the_driver() {
        let Some((recv, mut conns)) = ring_of(2, 8) else {
            return;
        };
        for (_, _, rx) in &conns {
            assert!(poll_once(rx, &mut Vec::with_capacity(64)).is_pending());
        }
        assert_eq!(recv.inner.borrow().backlog.len(), 6);
        let (_peer, _sock, rx) = conns.pop().unwrap();
        let gone = rx.id;
        drop(rx);
        assert_eq!(recv.inner.borrow().backlog.len(), 7);
        assert!(recv.turn());
        assert!(recv.inner.borrow().backlog.is_empty());
        for (i, (peer, _, _)) in conns.iter().enumerate() {
            (&*peer)
                .write_all(format!("request {i}").as_bytes())
                .unwrap();
        }
        for _ in 0..3 {
            recv.turn();
        }
        for (i, (_, _, rx)) in conns.iter().enumerate() {
            let mut buf = Vec::with_capacity(64);
            assert!(matches!(poll_once(rx, &mut buf), Poll::Ready(Ok(9))));
            assert_eq!(buf, format!("request {i}").as_bytes());
        }
        assert!(
            recv.inner.borrow().free.contains(&gone),
            "the dropped connection's receive was not cancelled"
        );
    }

    /// A connection dropped with bytes unread and its receive armed gives its buffers back, and
    /// its slot is reused only after the receive's last completion; a read on a socket shut
    /// down while no receive is armed ends with 0.
    #[test]
    fn dropping_and_shutting_down_end_receives_cleanly() {
        let Some((recv, mut conns)) = ring_with(2) else {
            return;
        };
        let (peer, sock, rx) = conns.remove(0);
        let mut buf = Vec::with_capacity(64);
        assert!(poll_once(&rx, &mut buf).is_pending());
        (&peer).write_all(b"unread").unwrap();
        recv.turn();
        assert_eq!(recv.inner.borrow().bufs.held, 1);
        let id = rx.id;
        drop(rx);
        // The cancellation is queued, the slot not yet free.
        assert!(!recv.inner.borrow().free.contains(&id));
        recv.turn();
        recv.turn();
        let inner = recv.inner.borrow();
        assert!(
            inner.free.contains(&id),
            "slot not freed after the cancellation"
        );
        assert_eq!(inner.bufs.held, 0);
        drop(inner);
        drop((peer, sock));

        // Shut down with nothing armed (never read): the read ends at once.
        let (peer, _sock, rx) = conns.remove(0);
        recv.inner.borrow_mut().shut(rx.id);
        let mut buf = Vec::with_capacity(64);
        assert!(matches!(poll_once(&rx, &mut buf), Poll::Ready(Ok(0))));
        // End of stream from the peer, with the receive armed.
        let (mut p2, s2) = UnixStream::pair().unwrap();
        let rx2 = recv.open(s2.as_raw_fd());
        assert!(poll_once(&rx2, &mut buf).is_pending());
        p2.write_all(b"last").unwrap();
        p2.shutdown(Shutdown::Write).unwrap();
        recv.turn();
        assert!(matches!(poll_once(&rx2, &mut buf), Poll::Ready(Ok(4))));
        assert!(matches!(poll_once(&rx2, &mut buf), Poll::Ready(Ok(0))));
        assert_eq!(buf, b"last");
        drop((peer, rx2, s2));
    }
}
