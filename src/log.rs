//! The access log: records built by the workers, and the one writer thread that formats and
//! writes them.
//!
//! Workers never touch the log file. They send a [`Record`] over an unbounded channel (so a slow
//! disk can never drop a line or stall a worker) and the writer thread formats, buffers and
//! writes. The writer drains the channel in batches and flushes after each batch; when the
//! channel closes (every worker has finished) it writes what is left, flushes, and returns, so
//! no line is lost at shutdown.
//!
//! Line format: `<RFC 3339 UTC time> <client ip> <path> <status> <method> <bytes> <duration>`,
//! e.g. `2026-11-23T20:10:23.123Z 127.0.0.1 /index.html 200 GET 2027 85us`.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::config::AccessTarget;

/// One served (or refused) request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Wall-clock time at which the server began answering the request.
    pub time: SystemTime,
    /// The client's address.
    pub ip: IpAddr,
    /// The target path as sent, `-` when the request line did not parse.
    pub path: String,
    /// The response's status code.
    pub status: u16,
    /// The method as sent, `-` when unknown.
    pub method: String,
    /// Bytes of the response put on the wire (head plus body); 0 when sending failed.
    pub bytes: u64,
    /// Time taken to answer, from the start of the response to its last byte sent.
    pub duration: Duration,
}

/// The workers' end of the log: cheap to clone, a no-op when logging is off.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<Sender<Record>>,
}

impl AccessLog {
    /// A log that drops every record.
    pub fn off() -> AccessLog {
        AccessLog { tx: None }
    }

    /// A log whose records arrive on the returned receiver, for tests that assert what was logged.
    #[cfg(test)]
    pub(crate) fn channel() -> (AccessLog, Receiver<Record>) {
        let (tx, rx) = mpsc::channel();
        (AccessLog { tx: Some(tx) }, rx)
    }

    /// Whether records are written anywhere (false when logging is off).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands a record to the writer thread; never blocks, and does nothing when logging is off.
    pub fn send(&self, record: Record) {
        if let Some(tx) = &self.tx {
            // Only fails when the writer is gone, which happens after every worker has stopped.
            let _ = tx.send(record);
        }
    }
}

/// The writer thread; [`Writer::finish`] waits until every line is written and flushed.
pub struct Writer {
    handle: Option<JoinHandle<io::Result<u64>>>,
}

impl Writer {
    /// Waits for the writer to drain the channel; call after dropping every [`AccessLog`].
    /// Returns the number of lines written.
    pub fn finish(mut self) -> io::Result<u64> {
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("log writer panicked"))),
            None => Ok(0),
        }
    }
}

/// Opens the destination (creating or appending to a file) and starts the writer thread.
pub fn start(target: &AccessTarget) -> io::Result<(AccessLog, Writer)> {
    let out: Box<dyn Write + Send> = match target {
        AccessTarget::Off => {
            return Ok((AccessLog::off(), Writer { handle: None }));
        }
        AccessTarget::Stdout => Box::new(io::stdout()),
        AccessTarget::File(path) => Box::new(WholeLines::new(open_append(path)?)),
    };
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_loop(rx, BufWriter::with_capacity(64 * 1024, out)))?;
    Ok((
        AccessLog { tx: Some(tx) },
        Writer {
            handle: Some(handle),
        },
    ))
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
fn write_loop(rx: Receiver<Record>, out: BufWriter<Box<dyn Write + Send>>) -> io::Result<u64> {
    const POLL: Duration = Duration::from_millis(5);
    const IDLE_POLLS: u32 = 200;
    let mut sink = Sink::new(out);
    let mut idle = 0u32;
    loop {
        let mut batch = 0;
        loop {
            match rx.try_recv() {
                Ok(r) => {
                    sink.write(&r);
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
                Ok(r) => {
                    sink.write(&r);
                    sink.flush();
                    idle = 0;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return sink.finish(),
            }
        }
    }
}

/// The log destination, and an honest count of what reached it.
struct Sink {
    /// `None` only for the instant a failed buffer is being replaced.
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    line: String,
    /// Lines in the buffer, not yet flushed.
    pending: u64,
    written: u64,
    failed: u64,
    last_error: Option<io::ErrorKind>,
}

impl Sink {
    fn new(out: BufWriter<Box<dyn Write + Send>>) -> Sink {
        Sink {
            out: Some(out),
            line: String::with_capacity(256),
            pending: 0,
            written: 0,
            failed: 0,
            last_error: None,
        }
    }

    fn write(&mut self, r: &Record) {
        format_into(&mut self.line, r);
        let Some(out) = self.out.as_mut() else { return };
        match out.write_all(self.line.as_bytes()) {
            Ok(()) => self.pending += 1,
            Err(e) => {
                self.pending += 1;
                self.fail(e);
            }
        }
    }

    fn flush(&mut self) {
        let Some(out) = self.out.as_mut() else { return };
        match out.flush() {
            Ok(()) => {
                self.written += self.pending;
                self.pending = 0;
            }
            Err(e) => self.fail(e),
        }
    }

    /// A full disk must not stop the server, but it must not be silent either: say so once per
    /// kind of error, drop what is buffered (so it is not counted twice), and keep trying with
    /// the next batch.
    fn fail(&mut self, e: io::Error) {
        self.failed += self.pending;
        self.pending = 0;
        if let Some(out) = self.out.take() {
            let (inner, _unwritten) = out.into_parts();
            self.out = Some(BufWriter::with_capacity(64 * 1024, inner));
        }
        if self.last_error != Some(e.kind()) {
            tracing::error!("access log write failed: {e}; lines are being lost");
            self.last_error = Some(e.kind());
        }
    }

    fn finish(mut self) -> io::Result<u64> {
        self.flush();
        if self.failed > 0 {
            return Err(io::Error::other(format!(
                "{} access log lines could not be written",
                self.failed
            )));
        }
        Ok(self.written)
    }
}

/// Renders one line (with its newline) into `line`.
pub fn format_into(line: &mut String, r: &Record) {
    use std::fmt::Write as _;
    line.clear();
    let _ = write!(
        line,
        "{} {} ",
        humantime::format_rfc3339_millis(r.time),
        r.ip
    );
    push_escaped(line, &r.path);
    line.push(' ');
    let _ = write!(line, "{} ", r.status);
    push_escaped(line, &r.method);
    let _ = writeln!(line, " {} {}us", r.bytes, r.duration.as_micros());
}

/// Keeps the log one record per line and space-separated: anything outside printable ASCII, and
/// the space and backslash themselves, is written as `\xNN`, and an empty value as `-` (a target
/// of `?x` has an empty path), so a line always has its seven fields.
fn push_escaped(line: &mut String, s: &str) {
    use std::fmt::Write as _;
    if s.is_empty() {
        line.push('-');
        return;
    }
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'\\' {
            line.push(b as char);
        } else {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            ip: "127.0.0.1".parse().unwrap(),
            path: "/a b\\".into(),
            status: 200,
            method: "GET".into(),
            bytes: 2027,
            duration: Duration::from_micros(85),
        };
        let mut line = String::new();
        format_into(&mut line, &r);
        assert_eq!(
            line,
            "2026-11-18T11:06:40.123Z 127.0.0.1 /a\\x20b\\x5c 200 GET 2027 85us\n"
        );
    }

    /// Found by the property suite: `BREW ?x HTTP/1.1` logs an empty path, which left two
    /// spaces side by side and a line of six whitespace-separated fields.
    #[test]
    fn an_empty_path_or_method_is_logged_as_a_dash() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH,
            ip: "127.0.0.1".parse().unwrap(),
            path: String::new(),
            status: 405,
            method: String::new(),
            bytes: 0,
            duration: Duration::ZERO,
        };
        let mut line = String::new();
        format_into(&mut line, &r);
        assert_eq!(line, "1970-01-01T00:00:00.000Z 127.0.0.1 - 405 - 0 0us\n");
    }

    #[test]
    fn every_line_reaches_the_file_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let (log, writer) = start(&AccessTarget::File(path.clone())).unwrap();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        log.send(Record {
                            time: SystemTime::now(),
                            ip: "::1".parse().unwrap(),
                            path: format!("/{t}/{i}"),
                            status: 200,
                            method: "GET".into(),
                            bytes: 1,
                            duration: Duration::ZERO,
                        });
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        drop(log);
        assert_eq!(writer.finish().unwrap(), 20_000);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        assert!(text.contains(" ::1 /3/4999 200 GET 1 0us\n"));
    }
}
