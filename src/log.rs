//! The access log: the [`Record`] a worker hands over for each response, the bounded queue it
//! goes through, the one writer thread that formats and writes it ([`format`]), the counters of
//! what was written and dropped, and reopening the file for log rotation.
//!
//! Workers never touch the log file and never format a line: they send a [`Record`] (the
//! request's raw fields in one small buffer, see [`RequestText`]) and go on serving. The writer
//! drains the queue in batches, renders each record in the configured [`LogFormat`], and flushes
//! after each batch; when every sender is gone (every worker has finished) it writes what is
//! left, flushes, and returns, so no queued line is lost at shutdown.
//!
//! # When the writer falls behind
//! The queue holds at most `log.buffer_lines` records (default 65536), so a disk or pipe slower
//! than the traffic costs bounded memory. A worker never waits on the writer for long: when the
//! queue is full it spins and yields for at most [`FULL_WAIT`] (1 ms) for room, never blocks in
//! the kernel on the writer, and then drops the record and counts it. After one such wait ran out
//! the next full queue drops at once, without waiting, until the writer takes a record again; so
//! a stuck log costs a worker 1 ms once, not 1 ms per request. A drop is never silent: the first
//! one is reported on stderr at once, later ones once per [`REPORT_EVERY`] with their count
//! (`access log: dropped N lines in the last 10s: the writer is behind ...`), and shutdown ends
//! with a summary of every drop since start.
//!
//! The queue is a `std::sync::mpsc` channel with a counter in front of it, rather than
//! `sync_channel(buffer_lines)`: the bounded channel allocates and touches every slot up front
//! (65536 slots of 160 bytes are 10 MiB of resident memory, for a server that may log a few
//! lines a minute), while this one allocates its blocks as the backlog grows and frees them as
//! the writer drains it. The bound is the same: a record is only sent once a slot has been counted for it.
//!
//! # Counters
//! [`LogCounters`] (from [`AccessLog::counters`]) holds `written` (lines that reached the
//! destination, counted at each successful flush), `dropped` (records a full queue refused) and
//! `failed` (lines lost to write errors, e.g. a full disk). They are lock-free `AtomicU64`s, only
//! ever incremented; read them with `Ordering::Relaxed` from any thread, e.g. for metrics.
//!
//! # Rotation
//! [`Writer::reopen`] (SIGUSR1, see `main.rs`) makes the writer flush what it holds and open
//! the configured path anew, so logrotate can rename the file and signal the server: lines
//! queued before the signal land in the old file, later ones in the new.
//!
//! # Reload
//! [`Writer::retarget`] (SIGHUP, see [`crate::reload`]) hands the writer another destination or
//! format the same way: the new file is opened by the caller (so an error is the reload's to
//! report while the old file goes on), and lines queued before land in the old destination and
//! format, later ones in the new.

pub mod format;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

pub use self::format::RequestText;
use crate::config::{AccessTarget, LogFormat};

/// How long a worker may wait for room in a full queue before it drops its record.
pub const FULL_WAIT: Duration = Duration::from_millis(1);

/// Drops are reported on stderr at most once per this interval (the first one at once).
pub const REPORT_EVERY: Duration = crate::tally::INTERVAL;

/// One served (or refused) request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Wall-clock time at which the server began answering the request.
    pub time: SystemTime,
    /// The client's address.
    pub ip: IpAddr,
    /// The response's status code.
    pub status: u16,
    /// Bytes of the response put on the wire (head plus body); 0 when sending failed.
    pub bytes: u64,
    /// Bytes of the response's body put on the wire; 0 when it had none or sending failed.
    pub body_bytes: u64,
    /// Time taken to answer, from the request's first byte to the response's last byte sent.
    pub duration: Duration,
    /// The request's own fields (method, target, protocol, referer, user agent) as sent.
    pub text: RequestText,
}

/// What the access log has done since start; see the module documentation.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Lines written to the destination and flushed.
    pub written: AtomicU64,
    /// Records dropped because the queue was full (the writer was behind).
    pub dropped: AtomicU64,
    /// Lines lost because writing them failed.
    pub failed: AtomicU64,
}

/// What goes through the queue.
pub(crate) enum Msg {
    /// A line to write; counted in [`State::queued`].
    Record(Record),
    /// Flush, then open the file anew (not counted: it is not a line, and must not be refused).
    Reopen,
    /// Flush, then go on in another format, and to another destination when one is given (not
    /// counted either).
    Switch(LogFormat, Option<Destination>),
}

/// An opened destination: what to write to, and the path to reopen when it is a file.
pub(crate) struct Destination {
    out: Box<dyn Write + Send>,
    path: Option<PathBuf>,
}

impl Destination {
    /// Opens `target` (creating or appending to a file); `None` for [`AccessTarget::Off`].
    fn open(target: &AccessTarget) -> io::Result<Option<Destination>> {
        Ok(match target {
            AccessTarget::Off => None,
            AccessTarget::Stdout => Some(Destination {
                out: Box::new(io::stdout()),
                path: None,
            }),
            AccessTarget::File(path) => Some(Destination::file(path)?),
        })
    }

    /// Opens the file at `path`, creating it or appending to it.
    fn file(path: &Path) -> io::Result<Destination> {
        Ok(Destination {
            out: Box::new(WholeLines::new(open_append(path)?)),
            path: Some(path.to_path_buf()),
        })
    }
}

/// State shared by the workers, the writer and the reporter.
#[derive(Debug)]
struct State {
    counters: Arc<LogCounters>,
    /// Records sent and not yet taken by the writer; never above `capacity` for long (a failed
    /// reservation adds and takes back one).
    queued: AtomicUsize,
    capacity: usize,
    /// A worker's wait for room ran out; set until the writer takes a record again.
    behind: AtomicBool,
    /// A drop happened that the reporter has not been woken for.
    alarm: AtomicBool,
    /// The reporter thread, woken by the first drop after a quiet spell.
    reporter: OnceLock<Thread>,
    /// Tells the reporter to end.
    stop: AtomicBool,
}

impl State {
    fn new(capacity: usize) -> State {
        State {
            counters: Arc::default(),
            queued: AtomicUsize::new(0),
            capacity,
            behind: AtomicBool::new(false),
            alarm: AtomicBool::new(false),
            reporter: OnceLock::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Counts a slot for one record, if there is room.
    fn reserve(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::Relaxed) < self.capacity {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// The full-queue policy: spin, then yield, for at most [`FULL_WAIT`]; not at all when the
    /// last wait already ran out and the writer has not moved since.
    fn wait_for_room(&self) -> bool {
        if self.behind.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = Instant::now() + FULL_WAIT;
        let mut spins = 0u32;
        loop {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
            if self.reserve() {
                return true;
            }
            if Instant::now() >= deadline {
                self.behind.store(true, Ordering::Relaxed);
                return false;
            }
        }
    }

    /// Counts a dropped record and wakes the reporter if it is not woken yet. SeqCst, with the
    /// reporter's clearing of `alarm` and its reload of `dropped`: either the reporter sees this
    /// drop, or this drop sees the alarm cleared and wakes it.
    fn drop_one(&self) {
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
        if !self.alarm.load(Ordering::SeqCst) && !self.alarm.swap(true, Ordering::SeqCst) {
            if let Some(t) = self.reporter.get() {
                t.unpark();
            }
        }
    }

    /// The writer took a record: its slot is free again.
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        if self.behind.load(Ordering::Relaxed) {
            self.behind.store(false, Ordering::Relaxed);
        }
    }
}

/// The workers' end of the log: a no-op when logging is off.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<Sender<Msg>>,
    state: Arc<State>,
}

impl AccessLog {
    /// A log whose records arrive on the returned receiver, for tests that assert what was logged.
    #[cfg(test)]
    pub(crate) fn channel(capacity: usize) -> (AccessLog, Records) {
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(State::new(capacity));
        let records = Records {
            rx,
            state: state.clone(),
        };
        (
            AccessLog {
                tx: Some(tx),
                state,
            },
            records,
        )
    }

    /// Whether records are written anywhere (false when logging is off).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands a record to the writer thread. Never blocks for longer than [`FULL_WAIT`]; drops
    /// and counts the record when the queue stays full. Does nothing when logging is off.
    pub fn send(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        let state = &*self.state;
        if state.reserve() || state.wait_for_room() {
            // Only fails when the writer is gone, which happens after every worker has stopped.
            if tx.send(Msg::Record(record)).is_err() {
                state.queued.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            state.drop_one();
        }
    }

    /// The counters of lines written and dropped, for whoever reports them.
    pub fn counters(&self) -> &Arc<LogCounters> {
        &self.state.counters
    }
}

/// Test access to what a [`AccessLog::channel`] log received.
#[cfg(test)]
pub(crate) struct Records {
    rx: Receiver<Msg>,
    state: Arc<State>,
}

#[cfg(test)]
impl Records {
    /// The records received so far, freeing their slots.
    pub(crate) fn try_iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.rx.try_iter().filter_map(|m| match m {
            Msg::Record(r) => {
                self.state.taken();
                Some(r)
            }
            Msg::Reopen | Msg::Switch(..) => None,
        })
    }
}

/// The writer thread and the drop reporter; [`Writer::finish`] waits until every line is written
/// and flushed.
pub struct Writer {
    handle: Option<JoinHandle<io::Result<u64>>>,
    reporter: Option<JoinHandle<()>>,
    /// For [`Writer::reopen`]; dropped by [`Writer::finish`] so the queue can close.
    tx: Option<Sender<Msg>>,
    target: AccessTarget,
    format: LogFormat,
    state: Arc<State>,
}

impl Writer {
    /// Makes the writer go on with `format`, to `target` (opened here: an error leaves everything
    /// as it was); lines queued before keep the old ones. `Ok(false)` when there was nothing to
    /// change, or no writer to change (the log was off at start: turning it on needs a restart,
    /// and so does turning it off).
    pub fn retarget(&mut self, target: &AccessTarget, format: LogFormat) -> io::Result<bool> {
        let Some(tx) = &self.tx else { return Ok(false) };
        if *target == AccessTarget::Off || (*target == self.target && format == self.format) {
            return Ok(false);
        }
        let destination = match *target == self.target {
            true => None,
            false => Destination::open(target)?,
        };
        if tx.send(Msg::Switch(format, destination)).is_err() {
            return Ok(false);
        }
        self.target = target.clone();
        self.format = format;
        Ok(true)
    }

    /// Asks the writer to flush and reopen the log file (for log rotation); it logs
    /// `access log reopened: PATH` once done. Nothing to do when the log is not a file.
    pub fn reopen(&self) {
        match (&self.target, &self.tx) {
            (AccessTarget::File(_), Some(tx)) => {
                let _ = tx.send(Msg::Reopen);
            }
            _ => tracing::info!("the access log is not a file: nothing to reopen"),
        }
    }

    /// Waits for the writer to drain the queue; call after dropping every [`AccessLog`].
    /// Returns the number of lines written, or an error when lines could not be written. Lines
    /// dropped because the writer was behind are reported here (they are not an error: the
    /// policy chose to drop them, and each interval's count was already on stderr).
    pub fn finish(mut self) -> io::Result<u64> {
        self.tx = None;
        let written = match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("log writer panicked"))),
            None => Ok(0),
        };
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reporter.take() {
            r.thread().unpark();
            let _ = r.join();
        }
        let c = &self.state.counters;
        let dropped = c.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                "access log: dropped {dropped} lines since start because the writer was behind \
                 ({} written)",
                c.written.load(Ordering::Relaxed)
            );
        }
        written
    }
}

/// Opens the destination (creating or appending to a file) and starts the writer thread, which
/// writes `format` lines, and the reporter of drops. The queue holds `capacity` records.
pub fn start(
    target: &AccessTarget,
    format: LogFormat,
    capacity: usize,
) -> io::Result<(AccessLog, Writer)> {
    let state = Arc::new(State::new(capacity));
    let destination = match Destination::open(target)? {
        Some(d) => d,
        None => {
            let log = AccessLog {
                tx: None,
                state: state.clone(),
            };
            let writer = Writer {
                handle: None,
                reporter: None,
                tx: None,
                target: target.clone(),
                format,
                state,
            };
            return Ok((log, writer));
        }
    };
    let (tx, rx) = mpsc::channel();
    let sink = Sink::new(destination, format, state.counters.clone());
    let st = state.clone();
    let handle = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_loop(rx, sink, &st))?;
    let st = state.clone();
    let reporter = std::thread::Builder::new()
        .name("access-log-drops".into())
        .spawn(move || report_loop(&st))?;
    let _ = state.reporter.set(reporter.thread().clone());
    let log = AccessLog {
        tx: Some(tx.clone()),
        state: state.clone(),
    };
    let writer = Writer {
        handle: Some(handle),
        reporter: Some(reporter),
        tx: Some(tx),
        target: target.clone(),
        format,
        state,
    };
    Ok((log, writer))
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// A log file that only ever holds whole lines. When the file system fills, a write can stop in
/// the middle of a line (a short write, then ENOSPC); left there, that fragment would be glued to
/// the next line written once space frees up. So this tracks how much of an unfinished line the
/// file holds and, when a write fails, truncates the file back to the end of its last whole line.
/// The lines after it are reported lost by the writer, as before. Only files get this: standard
/// output may be a pipe, which cannot be truncated (and does not fill up).
struct WholeLines {
    file: std::fs::File,
    /// Bytes of an unfinished line at the end of the file.
    torn: u64,
}

impl WholeLines {
    fn new(file: std::fs::File) -> WholeLines {
        WholeLines { file, torn: 0 }
    }

    /// Cuts an unfinished line off the end of the file. The file is opened O_APPEND and only
    /// this writer appends to it, so its offset after our last write is its end.
    fn untear(&mut self) {
        use std::io::Seek;
        if self.torn == 0 {
            return;
        }
        let cut = self
            .file
            .stream_position()
            .map(|end| end.saturating_sub(self.torn))
            .and_then(|whole| self.file.set_len(whole));
        if cut.is_ok() {
            self.torn = 0;
        }
    }
}

impl Write for WholeLines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.write(buf) {
            Ok(n) => {
                self.torn = match buf[..n].iter().rposition(|&b| b == b'\n') {
                    Some(i) => (n - i - 1) as u64,
                    None => self.torn + n as u64,
                };
                if n == 0 && !buf.is_empty() {
                    // The caller gives up on a write that moves nothing.
                    self.untear();
                }
                Ok(n)
            }
            Err(e) => {
                self.untear();
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Drains in batches. While records keep coming it polls every few milliseconds, so senders
/// never have to wake it (no futex call on the request path); once idle it blocks.
fn write_loop(rx: Receiver<Msg>, mut sink: Sink, state: &State) -> io::Result<u64> {
    const POLL: Duration = Duration::from_millis(5);
    const IDLE_POLLS: u32 = 200;
    let mut idle = 0u32;
    loop {
        let mut batch = 0;
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    sink.take(m, state);
                    batch += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return sink.finish(),
            }
        }
        if batch > 0 {
            sink.flush();
            idle = 0;
            std::thread::sleep(POLL);
        } else if idle < IDLE_POLLS {
            idle += 1;
            std::thread::sleep(POLL);
        } else {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => {
                    sink.take(m, state);
                    sink.flush();
                    idle = 0;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return sink.finish(),
            }
        }
    }
}

/// Reports drops: at once for the first one after a quiet spell (a worker wakes this thread),
/// then at most once per [`REPORT_EVERY`] while they go on. Runs until [`Writer::finish`].
fn report_loop(state: &State) {
    let counters = &state.counters;
    let mut reported = 0u64;
    let mut since = Instant::now();
    loop {
        // At shutdown the final summary in [`Writer::finish`] counts what is not reported yet.
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let dropped = counters.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            tracing::warn!(
                "access log: dropped {} lines in the last {}s: the writer is behind (the log's \
                 disk or pipe is slower than the traffic; the queue holds {} lines)",
                dropped - reported,
                since.elapsed().as_secs().max(1),
                state.capacity
            );
            reported = dropped;
            since = Instant::now();
            // Quiet for a whole interval, whatever the workers do.
            let until = since + REPORT_EVERY;
            while !state.stop.load(Ordering::SeqCst) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::park_timeout(left);
            }
            continue;
        }
        // Re-armed, then checked once more: a drop counted just before the alarm was cleared
        // did not wake this thread, and must not wait for the next one to be reported.
        state.alarm.store(false, Ordering::SeqCst);
        if counters.dropped.load(Ordering::SeqCst) == reported {
            std::thread::park_timeout(REPORT_EVERY);
        }
    }
}

/// The log destination, and an honest count of what reached it.
struct Sink {
    /// `None` only for the instant a failed buffer is being replaced.
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    /// The file, when the destination is one (for reopening).
    path: Option<PathBuf>,
    format: LogFormat,
    line: Vec<u8>,
    /// Lines in the buffer, not yet flushed.
    pending: u64,
    last_error: Option<io::ErrorKind>,
    counters: Arc<LogCounters>,
}

const BUFFER: usize = 64 * 1024;

impl Sink {
    fn new(to: Destination, format: LogFormat, counters: Arc<LogCounters>) -> Sink {
        Sink {
            out: Some(BufWriter::with_capacity(BUFFER, to.out)),
            path: to.path,
            format,
            line: Vec::with_capacity(512),
            pending: 0,
            last_error: None,
            counters,
        }
    }

    fn take(&mut self, m: Msg, state: &State) {
        match m {
            Msg::Record(r) => {
                state.taken();
                self.write(&r);
            }
            Msg::Reopen => self.reopen(),
            Msg::Switch(format, destination) => self.switch(format, destination),
        }
    }

    /// Flushes into the destination written so far, then goes on in `format`, to `destination`
    /// when there is one.
    fn switch(&mut self, format: LogFormat, destination: Option<Destination>) {
        self.flush();
        self.format = format;
        if let Some(d) = destination {
            self.write_to(d);
        }
    }

    /// Goes on writing to `to` (the previous destination is flushed already).
    fn write_to(&mut self, to: Destination) {
        self.out = Some(BufWriter::with_capacity(BUFFER, to.out));
        self.path = to.path;
        self.last_error = None;
    }

    fn write(&mut self, r: &Record) {
        format::render(self.format, r, &mut self.line);
        let Some(out) = self.out.as_mut() else { return };
        self.pending += 1;
        if let Err(e) = out.write_all(&self.line) {
            self.fail(e);
        }
    }

    fn flush(&mut self) {
        let Some(out) = self.out.as_mut() else { return };
        match out.flush() {
            Ok(()) => {
                self.counters
                    .written
                    .fetch_add(self.pending, Ordering::Relaxed);
                self.pending = 0;
            }
            Err(e) => self.fail(e),
        }
    }

    /// A full disk must not stop the server, but it must not be silent either: say so once per
    /// kind of error, drop what is buffered (so it is not counted twice), and keep trying with
    /// the next batch.
    fn fail(&mut self, e: io::Error) {
        self.counters
            .failed
            .fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
        if let Some(out) = self.out.take() {
            let (inner, _unwritten) = out.into_parts();
            self.out = Some(BufWriter::with_capacity(BUFFER, inner));
        }
        if self.last_error != Some(e.kind()) {
            tracing::error!("access log write failed: {e}; lines are being lost");
            self.last_error = Some(e.kind());
        }
    }

    /// Flushes into the file written so far, then opens the path anew (logrotate has renamed
    /// the old file). When the new file cannot be opened, the old one is kept and the error
    /// said: lines go on landing somewhere rather than nowhere.
    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        self.flush();
        match Destination::file(&path) {
            Ok(d) => {
                self.write_to(d);
                tracing::info!("access log reopened: {}", path.display());
            }
            Err(e) => {
                tracing::error!("cannot reopen the access log, still writing to the old file: {e}")
            }
        }
    }

    /// Flushes; the lines written, or an error when any were lost (the writer's counters are
    /// this sink's: one sink per writer).
    fn finish(mut self) -> io::Result<u64> {
        self.flush();
        let failed = self.counters.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} access log lines could not be written"
            )));
        }
        Ok(self.counters.written.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> Record {
        Record {
            time: SystemTime::now(),
            ip: "::1".parse().unwrap(),
            status: 200,
            bytes: 1,
            body_bytes: 1,
            duration: Duration::ZERO,
            text: RequestText::new([
                Some(b"GET"),
                Some(path.as_bytes()),
                None,
                Some(b"HTTP/1.1"),
                None,
                None,
            ]),
        }
    }

    #[test]
    fn retarget_sends_later_lines_elsewhere_and_in_another_format() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let target_b = AccessTarget::File(b.clone());
        let (log, mut writer) =
            start(&AccessTarget::File(a.clone()), LogFormat::Default, 1 << 20).unwrap();
        log.send(record("/first"));
        assert!(writer.retarget(&target_b, LogFormat::Json).unwrap());
        log.send(record("/second"));
        assert!(
            !writer.retarget(&target_b, LogFormat::Json).unwrap(),
            "no change"
        );
        assert!(writer.retarget(&target_b, LogFormat::Common).unwrap());
        log.send(record("/third"));
        // A destination that cannot be opened changes nothing.
        let missing = AccessTarget::File(dir.path().join("no/such/dir.log"));
        assert!(writer.retarget(&missing, LogFormat::Default).is_err());
        assert!(
            !writer
                .retarget(&AccessTarget::Off, LogFormat::Default)
                .unwrap()
        );
        log.send(record("/fourth"));
        drop(log);
        assert_eq!(writer.finish().unwrap(), 4);
        let a = std::fs::read_to_string(a).unwrap();
        assert_eq!(a.lines().count(), 1, "{a}");
        assert!(a.ends_with(" ::1 /first 200 GET 1 0us\n"), "{a}");
        let b = std::fs::read_to_string(b).unwrap();
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 3, "{b}");
        assert!(
            lines[0].starts_with('{') && lines[0].contains("/second"),
            "{b}"
        );
        assert!(lines[1].contains("\"GET /third HTTP/1.1\" 200 1"), "{b}");
        assert!(lines[2].contains("\"GET /fourth HTTP/1.1\" 200 1"), "{b}");
    }

    /// Found by the property suite: `BREW ?x HTTP/1.1` logs an empty path, which left two
    /// spaces side by side and a line of six whitespace-separated fields.
    #[test]
    fn an_empty_path_or_method_is_logged_as_a_dash() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH,
            ip: "127.0.0.1".parse().unwrap(),
            status: 405,
            bytes: 0,
            body_bytes: 0,
            duration: Duration::ZERO,
            text: RequestText::new([Some(b""), Some(b""), Some(b"x"), None, None, None]),
        };
        let mut line = Vec::new();
        format::render(LogFormat::Default, &r, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "1970-01-01T00:00:00.000Z 127.0.0.1 - 405 - 0 0us\n"
        );
    }

    #[test]
    fn every_line_reaches_the_file_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let target = AccessTarget::File(path.clone());
        let (log, writer) = start(&target, LogFormat::Default, 1 << 20).unwrap();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        log.send(record(&format!("/{t}/{i}")));
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        let counters = log.counters().clone();
        drop(log);
        assert_eq!(writer.finish().unwrap(), 20_000);
        assert_eq!(counters.written.load(Ordering::Relaxed), 20_000);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        assert!(text.contains(" ::1 /3/4999 200 GET 1 0us\n"));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (log, records) = AccessLog::channel(3);
        for i in 0..10 {
            log.send(record(&format!("/{i}")));
        }
        let c = log.counters();
        assert_eq!(c.dropped.load(Ordering::Relaxed), 7);
        // The first wait ran out; until the writer takes a record, drops do not wait at all.
        assert!(log.state.behind.load(Ordering::Relaxed));
        let got: Vec<String> = records
            .try_iter()
            .map(|r| String::from_utf8_lossy(r.text.path().unwrap()).into_owned())
            .collect();
        assert_eq!(got, ["/0", "/1", "/2"]);
        assert!(!log.state.behind.load(Ordering::Relaxed));
        // Room again: the queue takes records until it is full once more.
        for i in 10..14 {
            log.send(record(&format!("/{i}")));
        }
        assert_eq!(c.dropped.load(Ordering::Relaxed), 8);
        assert_eq!(records.try_iter().count(), 3);
    }

    #[test]
    fn reopen_switches_files_and_keeps_the_old_one_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let target = AccessTarget::File(path.clone());
        let (log, writer) = start(&target, LogFormat::Common, 16).unwrap();
        let wait_for = |p: &Path, n: usize| {
            for _ in 0..500 {
                let lines = std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .count();
                if lines >= n {
                    return lines;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{} never had {n} lines", p.display());
        };
        log.send(record("/old"));
        wait_for(&path, 1);
        let rotated = dir.path().join("a.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        writer.reopen();
        log.send(record("/new"));
        wait_for(&path, 1);
        // The directory is gone: the reopen fails, and lines go on to the file already open.
        let moved = tempfile::tempdir().unwrap();
        let gone = moved.path().join("d");
        std::fs::rename(dir.path(), &gone).unwrap();
        writer.reopen();
        log.send(record("/after"));
        drop(log);
        assert_eq!(writer.finish().unwrap(), 3);
        let old = std::fs::read_to_string(gone.join("a.log.1")).unwrap();
        let new = std::fs::read_to_string(gone.join("a.log")).unwrap();
        assert!(old.contains("\"GET /old HTTP/1.1\"") && old.lines().count() == 1);
        assert!(new.contains("\"GET /new HTTP/1.1\"") && new.contains("/after"));
    }
}
