//! [`serve`] driven over a scripted transport, in the style of quinn-proto's `Pair`: bytes arrive
//! in the chunks a test chooses, files live in a map, time moves only when the test moves it,
//! and every byte the server writes is asserted. No socket, no sleep: each test runs in well
//! under a millisecond of real time.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::{Ctx, Phase, Transport, serve};
use crate::Shared;
use crate::clock::Clock;
use crate::config::Config;
use crate::deadline::{Deadline, Shut};
use crate::files::listing::{Entry, Listing};
use crate::files::{Kind, Meta};
use crate::log::{AccessLog, Record, Records};
use crate::settings::Settings;

/// The peer's side of a scripted connection, plus the in-memory file system.
#[derive(Default)]
struct Script {
    inbox: RefCell<VecDeque<Vec<u8>>>,
    /// The peer closed its sending side once the inbox is drained.
    eof: Cell<bool>,
    out: RefCell<Vec<u8>>,
    shut_read: Cell<bool>,
    shut_write: Cell<bool>,
    /// While set, writes wait (a peer that does not read).
    stall_writes: Cell<bool>,
    /// While set, a file body cannot be secured (as when descriptors run out).
    no_body_source: Cell<bool>,
    wake: Notify,
    files: RefCell<HashMap<Vec<u8>, (Meta, Bytes)>>,
    /// File-system operations the server asked for, in order: "stat a.html", "open a.html", ...
    ops: RefCell<Vec<String>>,
    /// A file that disappears once it has been stat'ed (deleted between a stat and an open).
    vanish_after_stat: RefCell<Option<Vec<u8>>>,
}

impl Shut for Script {
    fn shut(&self, how: Shutdown) {
        if how != Shutdown::Write {
            self.shut_read.set(true);
        }
        if how != Shutdown::Read {
            self.shut_write.set(true);
        }
        self.wake.notify_one();
    }
}

struct MockFile {
    bytes: Bytes,
}

struct Scripted(Rc<Script>);

fn op(s: &Script, what: &str, rel: &CStr) {
    s.ops
        .borrow_mut()
        .push(format!("{what} {}", rel.to_string_lossy()));
}

impl Transport for Scripted {
    type File = MockFile;

    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if self.0.shut_read.get() {
                return (Ok(0), buf);
            }
            let chunk = self.0.inbox.borrow_mut().pop_front();
            if let Some(mut chunk) = chunk {
                let room = buf.capacity() - buf.len();
                if chunk.len() > room {
                    let rest = chunk.split_off(room);
                    self.0.inbox.borrow_mut().push_front(rest);
                }
                buf.extend_from_slice(&chunk);
                return (Ok(chunk.len()), buf);
            }
            if self.0.eof.get() {
                return (Ok(0), buf);
            }
            self.0.wake.notified().await;
        }
    }

    async fn stat(&mut self, _root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Meta> {
        op(&self.0, "stat", rel);
        let mut files = self.0.files.borrow_mut();
        let (meta, _) = *files.get(rel.to_bytes()).ok_or(enoent())?;
        if self.0.vanish_after_stat.borrow().as_deref() == Some(rel.to_bytes()) {
            files.remove(rel.to_bytes());
        }
        Ok(meta)
    }

    async fn open(&mut self, _root: BorrowedFd<'_>, rel: &CStr) -> io::Result<(MockFile, Meta)> {
        op(&self.0, "open", rel);
        let files = self.0.files.borrow();
        let (meta, bytes) = files.get(rel.to_bytes()).ok_or(enoent())?;
        let file = MockFile {
            bytes: bytes.clone(),
        };
        Ok((file, *meta))
    }

    async fn list(&mut self, _root: BorrowedFd<'_>, rel: &CStr) -> io::Result<Listing> {
        op(&self.0, "list", rel);
        let mut prefix = rel.to_bytes().to_vec();
        prefix.push(b'/');
        let entries = self
            .0
            .files
            .borrow()
            .iter()
            .filter_map(|(path, (meta, _))| {
                let name = path.strip_prefix(&prefix[..])?;
                (!name.contains(&b'/')).then(|| Entry {
                    name: name.to_vec(),
                    meta: *meta,
                })
            })
            .collect();
        Ok(Listing {
            entries,
            truncated: false,
        })
    }

    async fn read_whole(&mut self, file: MockFile, len: u64) -> io::Result<Vec<u8>> {
        self.0.ops.borrow_mut().push("read".into());
        if file.bytes.len() as u64 != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(file.bytes.to_vec())
    }

    async fn write_all(&mut self, buf: Vec<u8>, deadline: &Deadline) -> (io::Result<()>, Vec<u8>) {
        while self.0.stall_writes.get() && !self.0.shut_write.get() {
            self.0.wake.notified().await;
        }
        if self.0.shut_write.get() {
            return (Err(io::ErrorKind::BrokenPipe.into()), buf);
        }
        self.0.out.borrow_mut().extend_from_slice(&buf);
        deadline.progress();
        (Ok(()), buf)
    }

    async fn write_parts(
        &mut self,
        mut head: Vec<u8>,
        body: Bytes,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        self.0
            .ops
            .borrow_mut()
            .push(format!("write parts {}+{}", head.len(), body.len()));
        head.extend_from_slice(&body);
        self.write_all(head, deadline).await
    }

    async fn send_file(
        &mut self,
        mut head: Vec<u8>,
        file: MockFile,
        offset: u64,
        len: u64,
        deadline: &Deadline,
    ) -> (io::Result<()>, Vec<u8>) {
        head.extend_from_slice(&file.bytes[offset as usize..(offset + len) as usize]);
        self.write_all(head, deadline).await
    }

    fn secure_body(&mut self, _len: u64) -> io::Result<()> {
        match self.0.no_body_source.get() {
            true => Err(io::Error::from_raw_os_error(libc::EMFILE)),
            false => Ok(()),
        }
    }

    fn handle(&self) -> Rc<dyn Shut> {
        self.0.clone()
    }
}

/// The logged path, as text.
fn path_of(r: &Record) -> String {
    String::from_utf8_lossy(r.text.path().unwrap_or(b"-")).into_owned()
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

/// One scripted connection against a real `serve`, with its worker context.
struct Pair {
    script: Rc<Script>,
    ctx: Rc<Ctx>,
    log: Records,
    done: Rc<Cell<bool>>,
}

impl Pair {
    /// Starts `serve` on a scripted connection; `config` adjusts the defaults.
    fn start(config: impl FnOnce(&mut Config)) -> Pair {
        let mut c = Config::default();
        config(&mut c);
        let (log, records) = AccessLog::channel(1 << 20);
        let root = std::fs::File::open("/").unwrap();
        let settings = Settings::with_root(c, root.into(), 1).unwrap();
        let shared = Arc::new(Shared::new(settings, log, "test", 1));
        let ctx = Rc::new(Ctx::new(shared, 0, Clock::manual()));
        let script = Rc::new(Script::default());
        let done = Rc::new(Cell::new(false));
        let (s, c2, d) = (script.clone(), ctx.clone(), done.clone());
        tokio::task::spawn_local(async move {
            let peer: IpAddr = "192.0.2.7".parse().unwrap();
            let settings = c2.settings_for_new_connection();
            serve(Scripted(s), peer, &c2, settings).await;
            d.set(true);
        });
        Pair {
            script,
            ctx,
            log: records,
            done,
        }
    }

    fn file(&self, rel: &str, body: &[u8], mtime: i64) {
        let meta = Meta {
            kind: Kind::File,
            size: body.len() as u64,
            mtime,
            ..Meta::default()
        };
        let bytes = Bytes::copy_from_slice(body);
        self.script
            .files
            .borrow_mut()
            .insert(rel.as_bytes().to_vec(), (meta, bytes));
    }

    fn dir(&self, rel: &str) {
        let meta = Meta {
            kind: Kind::Dir,
            ..Meta::default()
        };
        let entry = (meta, Bytes::new());
        self.script
            .files
            .borrow_mut()
            .insert(rel.as_bytes().to_vec(), entry);
    }

    /// Delivers a chunk and lets the server run until it waits again.
    async fn send(&self, chunk: &str) {
        self.script
            .inbox
            .borrow_mut()
            .push_back(chunk.as_bytes().to_vec());
        self.script.wake.notify_one();
        settle().await;
    }

    /// Moves the clock, sweeps the deadlines as the worker would, and lets the server run.
    async fn wait(&self, secs: u64) {
        self.ctx.clock.advance(Duration::from_secs(secs));
        self.ctx.deadlines.sweep(self.ctx.clock.now());
        settle().await;
    }

    /// Everything written so far (and forgets it), with each Date value replaced by `D`.
    fn take(&self) -> String {
        let out = std::mem::take(&mut *self.script.out.borrow_mut());
        let text = String::from_utf8(out).unwrap();
        let mut clean = String::new();
        for line in text.split_inclusive("\r\n") {
            if line.starts_with("Date: ") {
                clean.push_str("Date: D\r\n");
            } else {
                clean.push_str(line);
            }
        }
        clean
    }

    fn ops(&self) -> Vec<String> {
        std::mem::take(&mut *self.script.ops.borrow_mut())
    }

    fn logged(&self) -> Vec<(u16, String, u64)> {
        self.log
            .try_iter()
            .map(|r| (r.status, path_of(&r), r.bytes))
            .collect()
    }

    fn closed(&self) -> bool {
        self.done.get()
    }
}

/// Lets every ready task run until all of them wait again.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, test());
}

const SERVER: &str = crate::http::response::SERVER;

fn ok_head(len: usize, ct: &str, etag: &str, keep: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: D\r\nContent-Type: {ct}\r\n\
         Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\
         Content-Length: {len}\r\nConnection: {keep}\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    )
}

const MTIME: i64 = 1_700_000_000;

/// `before`, the stats of `rel`'s three sidecars (the probe for precompressed variants), then
/// `after`.
fn with_probes(rel: &str, before: &[&str], after: &[&str]) -> Vec<String> {
    let probes = [".br", ".zst", ".gz"].map(|s| format!("stat {rel}{s}"));
    let before = before.iter().map(|s| s.to_string());
    let after = after.iter().map(|s| s.to_string());
    before.chain(probes).chain(after).collect()
}

/// Bytes on the wire for an expected text whose Date values read `D` (a real one has 29 bytes).
fn wire(expected: &str) -> u64 {
    (expected.len() + 28 * expected.matches("\r\nDate: D\r\n").count()) as u64
}

fn page(code: &str, keep: &str, extra: &str) -> String {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code}</title></head>\n<body><h1>{code}</h1><hr>\
         <p>uring-httpd</p></body></html>\n"
    );
    format!(
        "HTTP/1.1 {code}\r\nServer: {SERVER}\r\nDate: D\r\n{extra}Content-Type: text/html; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: {keep}\r\n\
         X-Content-Type-Options: nosniff\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn pipelined_requests_split_across_chunks_are_answered_in_order() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"<p>a</p>", MTIME);
        p.file("b.css", b"b{}", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHo").await;
        assert_eq!(p.take(), "", "nothing before the head is complete");
        p.send("st: h\r\n\r\nGET /b.c").await;
        let a = ok_head(
            8,
            "text/html; charset=utf-8",
            "\"6553f100.0-8\"",
            "keep-alive",
        );
        assert_eq!(p.take(), format!("{a}<p>a</p>"));
        p.send("ss HTTP/1.1\r\nHost: h\r\n\r\nHEAD /a.html HTTP/1.1\r\nHost: h\r\n\r\n")
            .await;
        let b = ok_head(
            3,
            "text/css; charset=utf-8",
            "\"6553f100.0-3\"",
            "keep-alive",
        );
        assert_eq!(p.take(), format!("{b}b{{}}{a}"));
        assert_eq!(
            p.logged(),
            [
                (200, "/a.html".into(), wire(&a) + 8),
                (200, "/b.css".into(), wire(&b) + 3),
                (200, "/a.html".into(), wire(&a)),
            ]
        );
        assert!(!p.closed());
    });
}

#[test]
fn a_request_body_is_skipped_even_when_it_arrives_in_pieces() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nGET /x")
            .await;
        let a = ok_head(
            1,
            "text/html; charset=utf-8",
            "\"6553f100.0-1\"",
            "keep-alive",
        );
        // A request is answered once its body is complete.
        assert_eq!(p.take(), "");
        // The rest of the body (4 of its 10 bytes) looks like a request but is not one.
        p.send(".htm").await;
        assert_eq!(p.take(), format!("{a}A"));
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(p.take(), format!("{a}A"));
    });
}

const A: &str = "GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n";

fn a_ok(keep: &str) -> String {
    let head = ok_head(1, "text/html; charset=utf-8", "\"6553f100.0-1\"", keep);
    format!("{head}A")
}

#[test]
fn a_chunked_body_in_pieces_is_decoded_and_the_connection_goes_on() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        // Pieces split inside the size line, the extension, the data and the trailers.
        let pieces = [
            "GET /a.html HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1",
            "4;ext=\"x\"\r",
            // 0x14 = 20 bytes of data that look like a request line.
            "\nGET /x.html HTTP/1.1\r",
            "\n0\r\nX-Trailer: ",
            "1\r\n",
        ];
        for piece in pieces {
            p.send(piece).await;
            assert_eq!(p.take(), "", "answered before the body ended: {piece:?}");
        }
        // The empty line ending the trailers, and a pipelined request behind it.
        p.send(&format!("\r\n{A}")).await;
        assert_eq!(
            p.take(),
            format!("{}{}", a_ok("keep-alive"), a_ok("keep-alive"))
        );
        assert!(!p.closed());
        assert_eq!(
            p.ops(),
            with_probes("a.html", &["open a.html"], &["read"]),
            "the body was never looked up"
        );
        assert_eq!(p.logged().len(), 2);
    });
}

#[test]
fn a_malformed_chunked_body_is_400_and_closes() {
    // A bad size, data longer than its size, a bad extension, whitespace after a bare size, a bad
    // trailer, a bare LF.
    let table = [
        "zz\r\n",
        "5\r\nhelloXX",
        "5;=x\r\n",
        "5 \r\n",
        "0\r\nbad trailer\r\n",
        "5\nhello",
    ];
    for body in table {
        run(|| async {
            let p = Pair::start(|_| {});
            p.file("a.html", b"A", MTIME);
            p.send(&format!(
                "GET /a.html HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}{A}"
            ))
            .await;
            let bad = page("400 Bad Request", "close", "");
            assert_eq!(p.take(), bad, "{body:?}");
            assert!(p.script.shut_write.get(), "{body:?}");
            let records: Vec<Record> = p.log.try_iter().collect();
            assert_eq!(records.len(), 1);
            assert_eq!(
                (records[0].status, &*path_of(&records[0])),
                (400, "/a.html")
            );
            assert_eq!(p.ops(), Vec::<String>::new(), "{body:?}");
        });
    }
}

#[test]
fn a_chunked_body_over_the_limit_is_413_at_once() {
    run(|| async {
        let p = Pair::start(|c| c.limits.max_request_bytes = 1000);
        // 0x3e9 = 1001 bytes announced: refused before any of them is read.
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n")
            .await;
        assert_eq!(p.take(), page("413 Content Too Large", "close", ""));
        // Two chunks that only together exceed it.
        let q = Pair::start(|c| c.limits.max_request_bytes = 1000);
        q.send("GET /a.html HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        q.send(&format!("1f4\r\n{}\r\n", "x".repeat(500))).await;
        assert_eq!(q.take(), "");
        q.send("1f5\r\n").await;
        assert_eq!(q.take(), page("413 Content Too Large", "close", ""));
        q.wait(3).await;
        assert!(q.closed(), "the lingering close is bounded");
    });
}

#[test]
fn a_body_that_never_arrives_is_not_answered_but_times_out_with_408() {
    for (framing, partial) in [
        ("Content-Length: 10", "12345"),
        ("Transfer-Encoding: chunked", "a\r\n12345"),
    ] {
        run(|| async {
            let p = Pair::start(|c| c.limits.header_timeout_secs = 10);
            p.file("a.html", b"A", MTIME);
            p.send(&format!(
                "GET /a.html HTTP/1.1\r\nHost: h\r\n{framing}\r\n\r\n"
            ))
            .await;
            p.wait(5).await;
            p.send(partial).await;
            // The timeout runs from the request's first byte, not from the last byte read.
            p.wait(4).await;
            assert_eq!(p.take(), "", "{framing}");
            assert!(!p.closed());
            p.wait(2).await;
            assert_eq!(
                p.take(),
                page("408 Request Timeout", "close", ""),
                "{framing}"
            );
            assert!(p.closed());
            assert_eq!(p.logged()[0].0, 408);
        });
    }
}

#[test]
fn a_body_cut_short_by_the_client_gets_no_answer() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345")
            .await;
        p.script.eof.set(true);
        p.send("").await;
        assert!(p.closed());
        assert_eq!(p.take(), "");
        assert_eq!(p.logged(), []);
    });
}

#[test]
fn expect_100_continue_is_answered_at_once_then_the_connection_closes() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send(
            "GET /a.html HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await;
        assert_eq!(p.take(), a_ok("close"));
        assert!(p.script.shut_write.get());
        // The body may still come: it is drained by the lingering close, never parsed.
        p.send("hello").await;
        assert_eq!(p.take(), "");
    });
}

#[test]
fn a_crlf_after_a_body_is_skipped_before_the_next_request() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send(&format!(
            "POST /a.html HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\r\n{A}"
        ))
        .await;
        let allow = "Allow: GET, HEAD, OPTIONS\r\n";
        let refused = page("405 Method Not Allowed", "keep-alive", allow);
        assert_eq!(p.take(), format!("{refused}{}", a_ok("keep-alive")));
        assert!(!p.closed());
    });
}

#[test]
fn options_is_204_with_allow_and_no_body() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.send("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\nOPTIONS /a.html HTTP/1.1\r\nHost: h\r\n\r\n")
            .await;
        let head = format!(
            "HTTP/1.1 204 No Content\r\nServer: {SERVER}\r\nDate: D\r\n\
             Allow: GET, HEAD, OPTIONS\r\nConnection: keep-alive\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        );
        assert_eq!(p.take(), format!("{head}{head}"));
        assert_eq!(p.ops(), Vec::<String>::new(), "no file is looked at");
        assert_eq!(
            p.logged(),
            [
                (204, "*".into(), wire(&head)),
                (204, "/a.html".into(), wire(&head))
            ]
        );
    });
}

#[test]
fn a_stalled_head_gets_408_at_the_header_timeout_and_is_logged() {
    run(|| async {
        let p = Pair::start(|c| c.limits.header_timeout_secs = 10);
        p.send("GET /slow.html HTTP/1.1\r\nHo").await;
        p.wait(9).await;
        assert_eq!(p.take(), "");
        assert!(!p.closed());
        p.wait(2).await;
        assert_eq!(p.take(), page("408 Request Timeout", "close", ""));
        assert!(p.closed());
        assert!(p.script.shut_write.get());
        assert_eq!(p.logged()[0].0, 408);
        assert_eq!(p.logged(), []);
    });
}

#[test]
fn an_idle_keep_alive_connection_closes_silently_at_its_timeout() {
    run(|| async {
        let p = Pair::start(|c| c.limits.keep_alive_timeout_secs = 5);
        p.file("a.html", b"A", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(p.take().starts_with("HTTP/1.1 200 OK\r\n"));
        p.wait(4).await;
        assert!(!p.closed());
        p.wait(2).await;
        assert!(p.closed());
        assert_eq!(p.take(), "");
        assert_eq!(p.logged().len(), 1);
    });
}

#[test]
fn a_refused_head_closes_with_a_lingering_read() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nmore bytes the client still sends")
            .await;
        assert_eq!(p.take(), page("400 Bad Request", "close", ""));
        // The write side is shut at once; the read side stays open to drain the client.
        assert!(p.script.shut_write.get());
        assert!(!p.closed());
        p.send("and more").await;
        assert!(!p.closed());
        p.script.eof.set(true);
        p.send("").await;
        assert!(p.closed());
        assert_eq!(
            p.logged(),
            [(400, "/".into(), wire(&page("400 Bad Request", "close", "")))]
        );
    });
}

#[test]
fn a_body_too_large_is_413_and_the_connection_lingers_then_closes() {
    run(|| async {
        let p = Pair::start(|c| c.limits.max_request_bytes = 1000);
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\nxxxx")
            .await;
        assert_eq!(p.take(), page("413 Content Too Large", "close", ""));
        // Lingering is bounded in time.
        p.wait(3).await;
        assert!(p.closed());
    });
}

/// A connection whose response is stuck (the peer does not read) when the worker starts to
/// drain: it must stay open until the response ends one way or the other.
async fn stalled_response_while_draining() -> Pair {
    let p = Pair::start(|_| {});
    p.file("a.html", b"A", MTIME);
    p.script.stall_writes.set(true);
    p.send("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n").await;
    p.ctx.set_phase(Phase::Draining);
    settle().await;
    assert!(!p.closed(), "a response in progress is not cut by a drain");
    p
}

#[test]
fn drain_lets_a_response_in_progress_finish_then_closes() {
    run(|| async {
        let p = stalled_response_while_draining().await;
        p.script.stall_writes.set(false);
        p.script.wake.notify_one();
        settle().await;
        let a = ok_head(
            1,
            "text/html; charset=utf-8",
            "\"6553f100.0-1\"",
            "keep-alive",
        );
        assert_eq!(p.take(), format!("{a}A"));
        assert!(p.closed(), "then the connection closes");
    });
}

#[test]
fn drain_closes_idle_connections_at_once() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n").await;
        p.take();
        assert!(!p.closed());
        p.ctx.set_phase(Phase::Draining);
        settle().await;
        assert!(p.closed());
        assert_eq!(p.take(), "");
    });
}

#[test]
fn a_request_answered_while_draining_says_connection_close() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.html", b"A", MTIME);
        p.send("GET /a.html HTTP/1.1\r\nHo").await;
        p.ctx.set_phase(Phase::Draining);
        p.send("st: h\r\n\r\n").await;
        let a = ok_head(1, "text/html; charset=utf-8", "\"6553f100.0-1\"", "close");
        assert_eq!(p.take(), format!("{a}A"));
        assert!(p.closed());
    });
}

#[test]
fn abort_ends_a_stuck_response() {
    run(|| async {
        let p = stalled_response_while_draining().await;
        p.ctx.set_phase(Phase::Aborting);
        settle().await;
        assert!(p.closed());
        assert_eq!(p.take(), "");
        // Logged as not sent.
        assert_eq!(p.logged(), [(200, "/a.html".into(), 0)]);
    });
}

#[test]
fn cache_miss_then_hit_then_stale_revalidated_then_changed() {
    run(|| async {
        let p = Pair::start(|c| c.files.cache_revalidate_secs = 1);
        p.file("a.html", b"v1", MTIME);
        let get = "GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n";
        let v1 = ok_head(
            2,
            "text/html; charset=utf-8",
            "\"6553f100.0-2\"",
            "keep-alive",
        );
        p.send(get).await;
        assert_eq!(p.take(), format!("{v1}v1"));
        assert_eq!(
            p.ops(),
            with_probes("a.html", &["open a.html"], &["read"]),
            "a miss opens, probes for sidecars and reads"
        );
        p.send(get).await;
        assert_eq!(p.take(), format!("{v1}v1"));
        assert_eq!(p.ops(), Vec::<String>::new(), "a hit touches no file");
        p.wait(2).await;
        p.send(get).await;
        assert_eq!(p.take(), format!("{v1}v1"));
        assert_eq!(
            p.ops(),
            with_probes("a.html", &["stat a.html"], &[]),
            "a stale entry is re-stat'ed, its sidecars too"
        );
        p.file("a.html", b"v2!", MTIME + 1);
        p.wait(2).await;
        p.send(get).await;
        let v2 = ok_head(
            3,
            "text/html; charset=utf-8",
            "\"6553f101.0-3\"",
            "keep-alive",
        )
        .replace("22:13:20", "22:13:21");
        assert_eq!(p.take(), format!("{v2}v2!"));
        // Changed: reopened at once; its sidecars are probed only on the new open.
        assert_eq!(
            p.ops(),
            with_probes("a.html", &["stat a.html", "open a.html"], &["read"])
        );
    });
}

#[test]
fn directories_redirect_or_serve_their_index() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.dir("sub");
        p.file("sub/index.html", b"I", MTIME);
        p.send("GET /sub?x=1 HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(
            p.take(),
            page(
                "301 Moved Permanently",
                "keep-alive",
                "Location: /sub/?x=1\r\n"
            )
        );
        p.send("GET /sub/ HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let i = ok_head(
            1,
            "text/html; charset=utf-8",
            "\"6553f100.0-1\"",
            "keep-alive",
        );
        assert_eq!(p.take(), format!("{i}I"));
        assert_eq!(
            p.ops(),
            with_probes(
                "sub/index.html",
                &["open sub", "open sub", "open sub/index.html"],
                &["read"]
            )
        );
    });
}

#[test]
fn an_oversized_head_is_431_and_a_long_request_line_414() {
    run(|| async {
        let p = Pair::start(|c| c.limits.max_request_bytes = 256);
        p.send(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(300)))
            .await;
        assert_eq!(p.take(), page("414 URI Too Long", "close", ""));
        let q = Pair::start(|c| c.limits.max_request_bytes = 256);
        q.send(&format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(300)))
            .await;
        assert_eq!(
            q.take(),
            page("431 Request Header Fields Too Large", "close", "")
        );
    });
}

#[test]
fn a_body_that_cannot_be_secured_gets_503_never_a_truncated_200() {
    run(|| async {
        // Too big for the cache, so it is sent from the file.
        let p = Pair::start(|c| c.files.cache_max_file_bytes = 0);
        p.file("big.png", &[7u8; 1000], MTIME);
        p.script.no_body_source.set(true);
        p.send("GET /big.png HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let out = p.take();
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nRetry-After: 1\r\n"), "{out}");
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
        assert!(!out.contains("200 OK"), "{out}");
        assert_eq!(p.logged()[0].0, 503);
    });
}

/// The head of a 200 or 206 for `a.js`'s representation: its length, ETag and coding, with Vary.
fn js_head(status: &str, len: usize, etag: &str, coding: Option<&str>, extra: &str) -> String {
    let coding = coding.map_or(String::new(), |c| format!("Content-Encoding: {c}\r\n"));
    format!(
        "HTTP/1.1 {status}\r\nServer: {SERVER}\r\nDate: D\r\n\
         Content-Type: text/javascript; charset=utf-8\r\n\
         Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\
         {coding}Vary: Accept-Encoding\r\n{extra}Content-Length: {len}\r\nConnection: keep-alive\r\n\
         X-Content-Type-Options: nosniff\r\n\r\n"
    )
}

#[test]
fn precompressed_variants_are_negotiated_cached_and_ranged() {
    run(|| async {
        let p = Pair::start(|_| {});
        p.file("a.js", b"plain-js", MTIME);
        p.file("a.js.gz", b"GZ", MTIME);
        p.file("a.js.br", b"BROT", MTIME);
        let get = |ae: &str, extra: &str| {
            format!("GET /a.js HTTP/1.1\r\nHost: h\r\nAccept-Encoding: {ae}\r\n{extra}\r\n")
        };
        let (br_tag, gz_tag) = ("\"6553f100.0-4-br\"", "\"6553f100.0-2-gzip\"");
        p.send(&get("gzip, br", "")).await;
        assert_eq!(
            p.take(),
            format!("{}BROT", js_head("200 OK", 4, br_tag, Some("br"), ""))
        );
        // The miss read the file and both variants into the cache.
        assert_eq!(
            p.ops(),
            with_probes(
                "a.js",
                &["open a.js"],
                &["read", "open a.js.br", "read", "open a.js.gz", "read"]
            )
        );
        // Each answer below comes from the cache: no file is touched.
        p.send(&get("gzip", "")).await;
        assert_eq!(
            p.take(),
            format!("{}GZ", js_head("200 OK", 2, gz_tag, Some("gzip"), ""))
        );
        p.send(&get("br;q=0, gzip;q=0.5, identity", "")).await;
        let plain_tag = "\"6553f100.0-8\"";
        assert_eq!(
            p.take(),
            format!("{}plain-js", js_head("200 OK", 8, plain_tag, None, ""))
        );
        // No Accept-Encoding: the file itself, still with Vary.
        p.send("GET /a.js HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(
            p.take(),
            format!("{}plain-js", js_head("200 OK", 8, plain_tag, None, ""))
        );
        // A range applies to the variant's bytes.
        p.send(&get("br", "Range: bytes=1-2\r\n")).await;
        let cr = "Content-Range: bytes 1-2/4\r\n";
        assert_eq!(
            p.take(),
            format!(
                "{}RO",
                js_head("206 Partial Content", 2, br_tag, Some("br"), cr)
            )
        );
        // A conditional request is checked against the variant's own ETag.
        p.send(&get("br", &format!("If-None-Match: {br_tag}\r\n")))
            .await;
        let not_modified = p.take();
        assert!(
            not_modified.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{not_modified}"
        );
        assert!(not_modified.contains("\r\nVary: Accept-Encoding\r\n"));
        assert!(!not_modified.contains("Content-Encoding"));
        p.send(&get("gzip", &format!("If-None-Match: {br_tag}\r\n")))
            .await;
        assert!(p.take().starts_with("HTTP/1.1 200 OK\r\n"));
        assert_eq!(p.ops(), Vec::<String>::new());
        // A bare request for the sidecar is judged by its own extension: gz is not allowed.
        p.send("GET /a.js.gz HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(p.take().starts_with("HTTP/1.1 403 Forbidden\r\n"));
    });
}

#[test]
fn uncached_files_open_the_chosen_variant_and_fall_back_when_it_vanished() {
    run(|| async {
        let p = Pair::start(|c| c.files.cache_max_file_bytes = 0);
        p.file("a.js", b"plain-js", MTIME);
        p.file("a.js.zst", b"ZSTD", MTIME);
        let get = "GET /a.js HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip, zstd\r\n\r\n";
        p.send(get).await;
        let zst_tag = "\"6553f100.0-4-zstd\"";
        assert_eq!(
            p.take(),
            format!("{}ZSTD", js_head("200 OK", 4, zst_tag, Some("zstd"), ""))
        );
        assert_eq!(
            p.ops(),
            with_probes("a.js", &["open a.js"], &["open a.js.zst"])
        );
        // The probe sees a sidecar that is gone by the time it is opened (as if deleted
        // between the two): the file itself is sent, from the descriptor already open.
        p.script
            .vanish_after_stat
            .replace(Some(b"a.js.zst".to_vec()));
        p.send(get).await;
        assert_eq!(
            p.take(),
            format!(
                "{}plain-js",
                js_head("200 OK", 8, "\"6553f100.0-8\"", None, "")
            )
        );
        // Switched off: no probe, no Vary.
        let q = Pair::start(|c| c.files.precompressed = false);
        q.file("a.js", b"plain-js", MTIME);
        q.file("a.js.zst", b"ZSTD", MTIME);
        q.send(get).await;
        let out = q.take();
        assert!(out.ends_with("plain-js") && !out.contains("Vary"), "{out}");
        assert_eq!(q.ops(), ["open a.js", "read"]);
    });
}

#[test]
fn a_directory_without_index_is_listed_only_when_listing_is_on() {
    run(|| async {
        for listing in [false, true] {
            let p = Pair::start(|c| c.files.listing = listing);
            p.dir("docs");
            p.file("docs/b.html", b"bb", MTIME);
            p.dir("docs/a-dir");
            p.send("GET /docs/ HTTP/1.1\r\nHost: h\r\n\r\n").await;
            let out = p.take();
            if !listing {
                assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
                assert_eq!(p.ops(), ["open docs", "open docs/index.html"]);
                continue;
            }
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
            let dir = out
                .find("href=\"a-dir/\"")
                .expect("the directory is listed");
            let file = out.find("href=\"b.html\"").expect("the file is listed");
            assert!(dir < file, "directories first: {out}");
            assert_eq!(p.ops(), ["open docs", "open docs/index.html", "list docs"]);
        }
    });
}

#[test]
fn max_requests_per_connection_closes_after_the_nth_response() {
    run(|| async {
        let p = Pair::start(|c| c.limits.max_requests_per_connection = 2);
        p.file("a.html", b"A", MTIME);
        // Three pipelined requests: the second answer is the last, and says so.
        p.send(&format!("{A}{A}{A}")).await;
        assert_eq!(p.take(), format!("{}{}", a_ok("keep-alive"), a_ok("close")));
        assert!(
            p.script.shut_write.get(),
            "closed after the second response"
        );
        assert_eq!(p.logged().len(), 2, "the third request is never answered");
        // The unanswered request behind it is drained by the lingering close, then it ends.
        p.script.eof.set(true);
        p.send("").await;
        assert!(p.closed());
    });
}

#[test]
fn max_requests_per_connection_of_one_closes_every_connection_after_its_answer() {
    run(|| async {
        let p = Pair::start(|c| c.limits.max_requests_per_connection = 1);
        p.file("a.html", b"A", MTIME);
        p.send(A).await;
        assert_eq!(p.take(), a_ok("close"));
        assert!(p.closed(), "nothing unread: a plain close");
    });
}

#[test]
fn cached_bodies_over_16_kib_go_out_from_the_cache_behind_their_head() {
    run(|| async {
        let p = Pair::start(|_| {});
        let get = "GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n";
        // At the limit a cached body is copied behind the head (one write, no op recorded);
        // one byte more and it is written from the cache's memory with the head beside it.
        for (size, mtime) in [(16 * 1024, MTIME), (16 * 1024 + 1, MTIME + 1)] {
            let body = vec![b'x'; size];
            p.file("a.html", &body, mtime);
            p.send(get).await; // the miss that fills the cache
            p.take();
            p.ops();
            p.send(get).await;
            let out = p.take();
            let (head, sent) = out.split_once("\r\n\r\n").expect("a whole response");
            assert!(
                head.contains(&format!("\r\nContent-Length: {size}\r\n")),
                "{head}"
            );
            assert_eq!(
                sent.as_bytes(),
                &body[..],
                "{size}: the body, byte for byte"
            );
            // (The recorded head length is the real one; `take` shortens the Date to "D".)
            let ops = p.ops();
            match size > 16 * 1024 {
                true => assert!(
                    ops.len() == 1
                        && ops[0].starts_with("write parts ")
                        && ops[0].ends_with(&format!("+{size}")),
                    "{size}: {ops:?}"
                ),
                false => assert_eq!(ops, Vec::<String>::new(), "{size}"),
            }
            p.wait(2).await; // past revalidation, so the next size is seen
        }
    });
}
