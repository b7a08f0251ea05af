//! Entry points over the sans-I/O core for the fuzz targets in `fuzz/` and the property tests in
//! `tests/properties.rs`, so that neither needs the crate's internals to be public.
//!
//! It owns three things: the re-exports of what is already public (request parsing, path
//! resolution, the access-line renderer), a [`Harness`] that builds the shared state an
//! [`Exchange`] needs from a handful of switches, and a [`FakeFs`] that answers the exchange's
//! steps (stat, open, read) from a script of bytes instead of a file system. It does no I/O
//! besides opening `/` once per harness (the root descriptor nobody opens through) and is not
//! a stable API: it is hidden from the documentation and may change with the core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use crate::clock::Instant;
use crate::config::{Config, HeaderRule};
use crate::exchange::{Done, Exchange, Step};
use crate::files::cache::FileCache;
use crate::files::{Kind, Meta};
use crate::respond::{Body, Plan};
use crate::settings::Settings;
use crate::stats::Stats;

pub use crate::exchange::ConnState;
pub use crate::files::{PathError, Policy, Target, resolve};
pub use crate::http::request::{Request, line_hint, oversize, parse};
pub use crate::log::{Record, RequestText};

/// Configuration switches an input can turn on, one bit each, so a fuzzer explores the
/// decisions each of them adds (fallbacks, error pages, the status page, header rules, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches(pub u8);

impl Switches {
    fn on(self, bit: u8) -> bool {
        self.0 & (1 << bit) != 0
    }

    /// The configuration these switches describe, starting from the defaults.
    pub fn config(self) -> Config {
        let mut c = Config::default();
        if self.on(0) {
            c.files.fallback = "index.html".into();
        }
        if self.on(1) {
            for code in ["400", "403", "404", "405", "413", "500", "503"] {
                c.errors.insert(code.into(), format!("errors/{code}.html"));
            }
        }
        if self.on(2) {
            c.server.status_path = "/status".into();
        }
        if self.on(3) {
            c.files.cache_max_file_bytes = 0;
        }
        if self.on(4) {
            c.limits.keep_alive_timeout_secs = 0;
        }
        if self.on(5) {
            c.files.index = vec!["index.html".into(), "index.htm".into()];
            c.files.allow_dot_paths = vec![".well-known".into()];
        }
        if self.on(6) {
            c.files.allowed_extensions = vec!["*".into()];
            c.files.allow_no_extension = true;
        }
        if self.on(7) {
            c.limits.max_requests_per_connection = 2;
            let set = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
            c.headers = vec![
                HeaderRule {
                    pattern: "*.html".into(),
                    set: set("Cache-Control", "no-cache"),
                    always: false,
                },
                HeaderRule {
                    pattern: "/**".into(),
                    set: set("X-Content-Type-Options", "nosniff"),
                    always: true,
                },
            ];
        }
        c
    }
}

/// A file the fake file system opened: its size, so a plan's byte range can be checked
/// against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeFile {
    /// The file's size, as its metadata said.
    pub size: u64,
}

/// Answers the exchange's steps from a script of bytes: each stat or open takes one byte (what
/// is there: a file, a directory, something special, or an error) and, for files, two more for
/// the size. An exhausted script answers "no such file", so every drive ends.
#[derive(Debug)]
pub struct FakeFs<'a> {
    script: &'a [u8],
}

impl<'a> FakeFs<'a> {
    /// A file system that answers from `script`.
    pub fn new(script: &'a [u8]) -> FakeFs<'a> {
        FakeFs { script }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.script.split_first()?;
        self.script = rest;
        Some(b)
    }

    fn meta(&mut self) -> io::Result<Meta> {
        let Some(what) = self.byte() else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let errno = match what % 16 {
            0..=7 => 0,
            8 => libc::ENOENT,
            9 => libc::ENOTDIR,
            10 => libc::EACCES,
            11 => libc::EXDEV,
            12 => libc::ELOOP,
            13 => libc::EMFILE,
            14 => libc::ENAMETOOLONG,
            _ => libc::EIO,
        };
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let kind = match what % 8 {
            0..=4 => Kind::File,
            5 | 6 => Kind::Dir,
            _ => Kind::Other,
        };
        let hi = u64::from(self.byte().unwrap_or(0));
        let lo = u64::from(self.byte().unwrap_or(0));
        // Up to about 16 MiB: past the cache limit, so both cached and file bodies occur.
        let size = ((hi << 8) | lo) << (what / 16 % 9);
        Ok(Meta {
            kind,
            size,
            mtime: 1_700_000_000 + i64::from(what / 32),
            ino: u64::from(what),
            ctime: 1_700_000_000,
            ..Meta::default()
        })
    }

    fn answer(&mut self, step: &Step<FakeFile>) -> Done<FakeFile> {
        match step {
            Step::Stat(_) => Done::Stat(self.meta()),
            Step::Open(_) => Done::Open(self.meta().map(|m| (FakeFile { size: m.size }, m))),
            // A read may find the file changed (shorter) since it was opened.
            Step::ReadWhole(_, len) => match self.byte() {
                Some(b) if b % 8 == 7 => Done::Read(Err(io::ErrorKind::UnexpectedEof.into())),
                _ => Done::Read(Ok(vec![b'x'; usize::try_from(*len).unwrap_or(0)])),
            },
            Step::List(_) => Done::List(self.meta().map(|_| Default::default())),
            Step::Send(_) => unreachable!("a plan is not a step to answer"),
        }
    }
}

/// A step the exchange asked for, as the property checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Stat this relative path.
    Stat(Vec<u8>),
    /// Open this relative path.
    Open(Vec<u8>),
    /// Read this many bytes of the opened file.
    ReadWhole(u64),
    /// List this relative directory.
    List(Vec<u8>),
}

/// The body of a plan, as the property checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySeen {
    /// No body.
    Empty,
    /// Bytes in memory (built in, or cached), this many.
    Memory(u64),
    /// `len` bytes of a file of `size` bytes, from `offset`.
    File {
        /// The file's size.
        size: u64,
        /// First byte sent.
        offset: u64,
        /// Bytes sent.
        len: u64,
    },
}

/// Where one exchange went: the steps it asked for and the plan it ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Each step before the plan, in order.
    pub asked: Vec<Asked>,
    /// The plan's status code.
    pub status: u16,
    /// The rendered head, blank line included.
    pub head: Vec<u8>,
    /// Where the body comes from.
    pub body: BodySeen,
    /// Whether the connection stays open.
    pub keep_alive: bool,
}

/// Steps after which a drive is declared stuck (a loop in the exchange).
pub const MAX_STEPS: usize = 32;

/// The shared state and file cache of one worker, built from [`Switches`].
pub struct Harness {
    settings: Rc<Settings>,
    stats: Stats,
    cache: RefCell<FileCache>,
    now: std::cell::Cell<Instant>,
}

impl Harness {
    /// A worker's state for `switches`, with an empty cache; panics if `/` cannot be opened. The
    /// shared part is built once per thread and switches, since fuzzers call this per input.
    pub fn new(switches: Switches) -> Harness {
        thread_local! {
            static SETTINGS: RefCell<HashMap<u8, Rc<Settings>>> = RefCell::new(HashMap::new());
        }
        let settings = SETTINGS.with_borrow_mut(|all| {
            all.entry(switches.0)
                .or_insert_with(|| {
                    let root = std::fs::File::open("/").expect("open /");
                    let settings = Settings::with_root(switches.config(), root.into(), 1);
                    Rc::new(settings.expect("valid rules"))
                })
                .clone()
        });
        let files = &settings.config.files;
        let cache = RefCell::new(FileCache::for_config(files, settings.generation));
        Harness {
            settings,
            stats: Stats::new("fuzz", 1),
            cache,
            now: std::cell::Cell::new(Instant::now()),
        }
    }

    /// Moves this harness's clock forward (cached files go stale after `cache_revalidate_secs`).
    pub fn advance(&self, by: std::time::Duration) {
        self.now.set(self.now.get() + by);
    }

    /// Drives `req`'s exchange to its plan on a connection in state `conn`, answering each step
    /// from `fs`. Panics when the exchange asks for more than
    /// [`MAX_STEPS`] steps.
    pub fn drive(&self, req: &Request<'_>, fs: &mut FakeFs<'_>, conn: ConnState) -> Outcome {
        let mut ex = Exchange::<FakeFile>::new(&self.settings, &self.stats, &self.cache, req, conn);
        let mut asked = Vec::new();
        let mut step = ex.start(self.now.get());
        loop {
            let seen = match &step {
                Step::Stat(rel) => Asked::Stat(rel.as_bytes().to_vec()),
                Step::Open(rel) => Asked::Open(rel.as_bytes().to_vec()),
                Step::ReadWhole(_, len) => Asked::ReadWhole(*len),
                Step::List(rel) => Asked::List(rel.as_bytes().to_vec()),
                Step::Send(_) => break,
            };
            asked.push(seen);
            assert!(asked.len() <= MAX_STEPS, "exchange loops: {asked:?}");
            let done = fs.answer(&step);
            step = ex.resume(done, self.now.get());
        }
        let Step::Send(plan) = step else {
            unreachable!("the loop ends on Send")
        };
        outcome(asked, plan)
    }

    /// The plan for a request refused before it parsed.
    pub fn refused(&self, e: crate::http::ParseError) -> Outcome {
        let plan = crate::exchange::refused::<FakeFile>(
            &self.settings,
            crate::exchange::Refusal::Malformed(e),
        );
        outcome(Vec::new(), plan)
    }
}

fn outcome(asked: Vec<Asked>, plan: Plan<FakeFile>) -> Outcome {
    let body = match &plan.body {
        Body::Empty => BodySeen::Empty,
        Body::Static(b) => BodySeen::Memory(b.len() as u64),
        Body::Bytes(b) => BodySeen::Memory(b.len() as u64),
        Body::Cached(_, range) => BodySeen::Memory(range.len() as u64),
        Body::File { file, offset, len } => BodySeen::File {
            size: file.size,
            offset: *offset,
            len: *len,
        },
    };
    Outcome {
        asked,
        status: plan.status.code(),
        head: plan.head,
        body,
        keep_alive: plan.keep_alive,
    }
}

/// Checks what must hold for any bytes handed to the request parser, panicking with the input
/// when something does not:
/// - nothing panics (`parse`, and the log's `line_hint` and `oversize`);
/// - a parsed head never reaches past the input: its length is at most the input's, and it ends
///   at the blank line (CRLF CRLF, or the bare LF line ends RFC 9112 §2.2 lets a server accept);
/// - the head alone parses to the same request (the connection re-parses it after the body);
/// - no split of the head changes the answer: every strict prefix needs more bytes, so a client
///   whose head arrives in pieces gets what it gets in one piece;
/// - a decoded path starts with `/` and holds no control byte.
pub fn check_parse(data: &[u8]) {
    let _ = line_hint(data);
    let _ = oversize(data);
    let Ok(Some(req)) = parse(data) else {
        return;
    };
    let n = req.head_len;
    assert!(n <= data.len(), "head of {n} bytes in {} bytes", data.len());
    let head = &data[..n];
    assert!(
        head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n"),
        "head does not end at a blank line: {head:?}"
    );
    assert_eq!(
        parse(head).ok().flatten().as_ref(),
        Some(&req),
        "the head alone parses differently: {head:?}"
    );
    // Every prefix for short heads; a sample for long ones, to keep the fuzzer fast.
    let stride = if n <= 1024 { 1 } else { 7 };
    for k in (0..n).step_by(stride) {
        assert!(
            matches!(parse(&data[..k]), Ok(None)),
            "the first {k} bytes of a valid head give {:?}: {head:?}",
            parse(&data[..k])
        );
    }
    if !req.path.is_empty() {
        assert!(req.path.starts_with(b"/"), "path {:?}", req.path);
        assert!(
            !req.path.iter().any(|&b| b < 0x20 || b == 0x7f),
            "control byte in path {:?}",
            req.path
        );
    }
}

/// A second, deliberately plain implementation of path normalisation to compare
/// [`resolve`] against: a stack of segments.
fn reference_resolve(path: &[u8], policy: &Policy) -> Result<Vec<u8>, PathError> {
    let mut stack: Vec<&[u8]> = Vec::new();
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if stack.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            s if s.starts_with(b".") && !policy.dot_allowed(s) => return Err(PathError::Hidden),
            s => stack.push(s),
        }
    }
    if stack.iter().any(|s| s.contains(&0)) {
        return Err(PathError::Escapes);
    }
    Ok(if stack.is_empty() {
        b".".to_vec()
    } else {
        stack.join(&b'/')
    })
}

/// Checks what must hold for any decoded request path given to [`resolve`]:
/// - it agrees with a plain stack-based normalisation (same path, same refusal);
/// - a resolved path has no `..`, `.` or empty segment, no NUL, no leading `/`, and no dot
///   segment the policy does not allow (the root itself is `.`);
/// - resolving is idempotent: `/` + the result resolves to the result.
pub fn check_resolve(path: &[u8], policy: &Policy) {
    let got = resolve(path, policy);
    let want = reference_resolve(path, policy);
    match (&got, &want) {
        (Ok(t), Ok(w)) => assert_eq!(t.rel.as_bytes(), &w[..], "{path:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b, "{path:?}"),
        _ => panic!("resolve({path:?}) = {got:?}, the reference says {want:?}"),
    }
    let Ok(t) = got else { return };
    let rel = t.rel.as_bytes();
    assert_eq!(t.trailing_slash, path.ends_with(b"/"), "{path:?}");
    assert!(!rel.is_empty() && !rel.starts_with(b"/"), "{rel:?}");
    assert!(!rel.contains(&0), "{rel:?}");
    if rel != b"." {
        for seg in rel.split(|&b| b == b'/') {
            assert!(
                !matches!(seg, b"" | b"." | b".."),
                "segment {seg:?} in {rel:?}"
            );
            assert!(
                !seg.starts_with(b".") || policy.dot_allowed(seg),
                "hidden segment {seg:?} in {rel:?}"
            );
        }
    }
    let mut again = b"/".to_vec();
    again.extend_from_slice(rel);
    let twice = resolve(&again, policy).expect("a resolved path resolves again");
    assert_eq!(twice.rel.as_bytes(), rel, "not idempotent: {path:?}");
}

/// The values of every header named `name` (case-insensitively) in a parsed response.
fn values<'h>(headers: &[httparse::Header<'h>], name: &str) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// Checks what must hold for any plan an exchange renders, given whether the request was a
/// HEAD:
/// - the head parses back with httparse as one complete HTTP/1.1 response, to its last byte,
///   with the plan's status;
/// - exactly one `Content-Length` (none on 204 and 304), and for anything but HEAD it is the
///   body's length;
/// - exactly one `Date`, one `Server`, one `Connection`, which says what the plan does;
/// - a file body lies within its file, and a 206 says which bytes in `Content-Range`.
pub fn check_outcome(out: &Outcome, head_only: bool) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let parsed = resp.parse(&out.head);
    assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(out.head.len())),
        "head does not parse back: {:?}",
        String::from_utf8_lossy(&out.head)
    );
    assert_eq!(resp.version, Some(1));
    assert_eq!(resp.code, Some(out.status));
    let text = String::from_utf8_lossy(&out.head);
    let lengths = values(resp.headers, "content-length");
    let body_len = match out.body {
        BodySeen::Empty => 0,
        BodySeen::Memory(n) => n,
        BodySeen::File { size, offset, len } => {
            assert!(
                offset.checked_add(len).is_some_and(|end| end <= size),
                "{out:?}"
            );
            assert!(len > 0, "an empty file body: {out:?}");
            len
        }
    };
    if matches!(out.status, 204 | 304) {
        assert!(
            lengths.is_empty(),
            "Content-Length on a {}: {text}",
            out.status
        );
        assert_eq!(out.body, BodySeen::Empty);
    } else {
        assert_eq!(lengths.len(), 1, "{text}");
        let n: u64 = std::str::from_utf8(lengths[0])
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Content-Length not a number: {text}"));
        if head_only {
            assert_eq!(out.body, BodySeen::Empty, "a body for HEAD: {text}");
        } else {
            assert_eq!(
                n, body_len,
                "Content-Length against the body: {text} {out:?}"
            );
        }
    }
    for name in ["date", "server"] {
        assert_eq!(values(resp.headers, name).len(), 1, "{name}: {text}");
    }
    let connection = values(resp.headers, "connection");
    let want: &[u8] = if out.keep_alive {
        b"keep-alive"
    } else {
        b"close"
    };
    assert_eq!(connection, [want], "{text}");
    if out.status == 206 {
        let range = values(resp.headers, "content-range");
        let (offset, len, size) = match out.body {
            BodySeen::File { size, offset, len } => (offset, len, Some(size)),
            _ => (0, 0, None),
        };
        assert_eq!(range.len(), 1, "{text}");
        let range = String::from_utf8_lossy(range[0]);
        if let Some(size) = size {
            let want = format!("bytes {}-{}/{}", offset, offset + len - 1, size);
            assert_eq!(range, want, "{text}");
        }
    }
}

/// Checks an exchange driven by arbitrary bytes: `data[0]` chooses the [`Switches`], `data[1]`
/// how many of the following bytes script the fake file system (and whether the worker is
/// draining, and how long to wait before the second run), the rest is the request. Each
/// request is answered twice with the same cache (cold, then warm or stale).
///
/// On top of [`check_outcome`]: every path the exchange asks to stat or open is relative, with
/// no `..` or empty segment; a draining worker, a disabled keep-alive or the last response
/// `max_requests_per_connection` allows never keeps the connection; a drive ends within
/// [`MAX_STEPS`] steps.
pub fn check_exchange(data: &[u8]) {
    let [switches, control, rest @ ..] = data else {
        return;
    };
    let switches = Switches(*switches);
    let script_len = usize::from(control & 0x3f).min(rest.len());
    let (script, request) = rest.split_at(script_len);
    let conn = ConnState {
        draining: control & 0x40 != 0,
        served: u64::from(switches.0 >> 6),
    };
    let harness = Harness::new(switches);
    let out = match parse(request) {
        Ok(Some(req)) => {
            let head_only = req.method == crate::http::Method::Head;
            for run in 0..2 {
                if run == 1 && control & 0x80 != 0 {
                    harness.advance(std::time::Duration::from_secs(5));
                }
                let out = harness.drive(&req, &mut FakeFs::new(script), conn);
                check_outcome(&out, head_only);
                check_asked(&out.asked);
                let limits = switches.config().limits;
                let max = limits.max_requests_per_connection;
                let last = max > 0 && conn.served + 1 >= max;
                if conn.draining || limits.keep_alive_timeout_secs == 0 || last {
                    assert!(!out.keep_alive, "{out:?}");
                }
            }
            return;
        }
        Ok(None) => return,
        Err(e) => harness.refused(e),
    };
    check_outcome(&out, false);
    assert!(
        !out.keep_alive,
        "a refused head keeps the connection: {out:?}"
    );
}

fn check_asked(asked: &[Asked]) {
    for a in asked {
        let (Asked::Stat(rel) | Asked::Open(rel)) = a else {
            continue;
        };
        assert!(!rel.is_empty() && !rel.starts_with(b"/"), "{asked:?}");
        assert!(!rel.contains(&0), "{asked:?}");
        if rel != b"." {
            for seg in rel.split(|&b| b == b'/') {
                assert!(!matches!(seg, b"" | b".."), "{asked:?}");
            }
        }
    }
}

/// Checks that one access line in the default format, whatever the record holds, is one line of
/// exactly the seven documented space-separated fields, none empty.
pub fn check_access_line(record: &Record) {
    let mut line = String::new();
    format_into(&mut line, record);
    let Some(body) = line.strip_suffix('\n') else {
        panic!("no newline at the end: {line:?}");
    };
    assert!(!body.contains('\n') && !body.contains('\r'), "{line:?}");
    let fields: Vec<&str> = body.split(' ').collect();
    assert_eq!(fields.len(), ACCESS_FIELDS, "{line:?}");
    assert!(fields.iter().all(|f| !f.is_empty()), "{line:?}");
}

/// Renders `r` in the default format (with its newline) into `line`.
pub fn format_into(line: &mut String, r: &Record) {
    let mut out = Vec::new();
    crate::log::format::render(crate::config::LogFormat::Default, r, &mut out);
    line.clear();
    line.push_str(&String::from_utf8_lossy(&out));
}

/// Fields in a default-format access line: time, client, path, status, method, bytes, duration.
pub const ACCESS_FIELDS: usize = 7;
