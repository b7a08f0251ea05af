//! Building response plans: pure functions from a request and file facts to a [`Plan`], the
//! rendered head plus where the body comes from.
//!
//! [`crate::exchange`] decides *which* response a request gets; this module renders it: the file
//! response with its validators, conditional requests (ETag, Last-Modified) and single byte
//! ranges ([`file_plan`]), the small HTML pages of errors and redirects ([`page_plan`]). Nothing
//! here does I/O or knows the engines.

use std::ffi::CString;
use std::io;
use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;

use crate::exchange::Refusal;
use crate::files::FileInfo;
use crate::http::coding::Coding;
use crate::http::{Head, Method, Request, Status, date, response};

/// Where a response's body comes from.
#[derive(Debug)]
pub enum Body<F> {
    /// No body (HEAD, 304, an empty file).
    Empty,
    /// A page compiled into the binary.
    Static(&'static [u8]),
    /// Bytes in memory (the status page, a listing).
    Bytes(Bytes),
    /// This range of a cached file, shared with the cache through an `Rc`, whose count is a
    /// plain increment, where a `Bytes` clone and drop are two atomic operations per request. The
    /// whole file stays counted against the cache's budget until the last holder drops it.
    Cached(Rc<Bytes>, Range<usize>),
    /// `len` bytes of an opened file from `offset`.
    File {
        /// The open file.
        file: F,
        /// First byte to send.
        offset: u64,
        /// Bytes to send.
        len: u64,
    },
}

impl<F> Body<F> {
    /// The body's bytes when they are in memory (empty for [`Body::Empty`]); `None` for a file.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match self {
            Body::Empty => Some(&[]),
            Body::Static(b) => Some(b),
            Body::Bytes(b) => Some(b),
            Body::Cached(b, range) => Some(&b[range.clone()]),
            Body::File { .. } => None,
        }
    }
}

/// Everything an engine needs to answer: the rendered head and the body source.
#[derive(Debug)]
pub struct Plan<F> {
    /// The status the head carries.
    pub status: Status,
    /// The rendered head, blank line included.
    pub head: Vec<u8>,
    /// Where the body comes from.
    pub body: Body<F>,
    /// Keep the connection open after this response.
    pub keep_alive: bool,
    /// Why the request was refused, for the diagnostic log (every 5xx is logged with it).
    pub cause: Option<Refusal>,
}

impl<F> Plan<F> {
    /// Bytes this plan puts on the wire.
    pub fn wire_len(&self) -> u64 {
        self.head.len() as u64 + self.body_len()
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::File { len, .. } => *len,
            body => body.in_memory().map_or(0, |b| b.len() as u64),
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug)]
pub enum Source<F> {
    /// An open file, read by the engine.
    File(F),
    /// The whole file, from the cache.
    Memory(Rc<Bytes>),
}

/// Which representation of a file a response carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rep {
    /// The content coding of the bytes sent (a precompressed sidecar), `None` for the file as is.
    pub coding: Option<Coding>,
    /// The file has precompressed variants, so the answer depends on `Accept-Encoding`: every
    /// response for it says `Vary: Accept-Encoding`, so caches keep the variants apart.
    pub vary: bool,
}

impl Rep {
    /// The file as it is, with no variant.
    pub const PLAIN: Rep = Rep {
        coding: None,
        vary: false,
    };

    fn headers(self, head: &mut Head) {
        if let Some(c) = self.coding {
            head.header("Content-Encoding", c.token().as_bytes());
        }
        if self.vary {
            head.header("Vary", b"Accept-Encoding");
        }
    }
}

/// `Last-Modified`, never later than the response's `Date` (RFC 9110 §8.8.2.1: a modification
/// time in the future is replaced by the date of the message). A file's time can be ahead of the
/// clock after the clock was set back, after `touch -d`, from another machine's clock on a shared
/// file system, or by the few milliseconds the coarse clock of `Date` may lag a file written
/// within its last tick.
fn last_modified_header(head: &mut Head, info: &FileInfo) {
    let mtime = mtime_secs(info);
    // Compared with the Date the head already carries (`Head::new` rendered it, so it is this
    // thread's last), not with a new reading of the clock, which could pass into the next second.
    date::with_last(|date_second, date| {
        let value = match mtime <= date_second {
            true => info.last_modified.as_str(),
            false => date,
        };
        head.header("Last-Modified", value.as_bytes());
    });
}

/// Whether the file's Last-Modified is a strong validator (RFC 9110 §8.8.2.2): at least one
/// second before now, so that a change within its second cannot hide behind the same date. An
/// If-Range date validates a range only then (§13.1.5).
fn strong_date(info: &FileInfo) -> bool {
    let mtime = mtime_secs(info);
    date::with_now(|now, _| mtime < now)
}

/// The file's modification second since the epoch; a time before the epoch counts as the epoch.
fn mtime_secs(info: &FileInfo) -> u64 {
    u64::try_from(info.meta.mtime).unwrap_or(0)
}

/// The response for a servable file (the representation `rep` of it, whose facts `info` gives);
/// an open file is dropped (closed) for HEAD and 304.
pub fn file_plan<F>(
    req: &Request,
    keep_alive: bool,
    info: &FileInfo,
    rep: Rep,
    source: Source<F>,
) -> Plan<F> {
    let (meta, etag, last_modified) = (&info.meta, &info.etag, &info.last_modified);
    let not_modified = match (&req.if_none_match, &req.if_modified_since) {
        (Some(inm), _) => inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }),
        // A date in the future is not a valid validator (RFC 9110 §13.1.3): ignored.
        (None, Some(ims)) => httpdate::parse_http_date(ims).is_ok_and(|since| {
            info.meta.modified() <= since && since <= std::time::SystemTime::now()
        }),
        (None, None) => false,
    };
    if not_modified {
        let mut head = Head::new(response::buffer(), Status::NotModified);
        head.header("ETag", etag.as_bytes());
        last_modified_header(&mut head, info);
        // A 304 carries the validators and Vary (RFC 9110 §15.4.5), not the content coding.
        Rep {
            coding: None,
            ..rep
        }
        .headers(&mut head);
        return Plan {
            status: Status::NotModified,
            head: head.finish_without_length(keep_alive),
            body: Body::Empty,
            keep_alive,
            cause: None,
        };
    }

    // If-Range: a range is only valid against the version the client already has.
    let range = match req.if_range.as_deref().map(str::trim) {
        None => req.range.as_deref(),
        Some(v) if v == etag || (v == last_modified && strong_date(info)) => req.range.as_deref(),
        Some(_) => None,
    };
    let (status, offset, len) = match range.map(|r| parse_range(r, meta.size)) {
        Some(RangeSpec::Satisfiable(start, end)) => {
            (Status::PartialContent, start, end - start + 1)
        }
        Some(RangeSpec::Unsatisfiable) => {
            let range = format!("bytes */{}", meta.size);
            let vary: &[u8] = b"Accept-Encoding";
            let extra = [("Content-Range", range.as_bytes()), ("Vary", vary)];
            let extra = if rep.vary { &extra[..] } else { &extra[..1] };
            return page_plan(
                Status::RangeNotSatisfiable,
                req.method == Method::Head,
                keep_alive,
                extra,
            );
        }
        Some(RangeSpec::Ignored) | None => (Status::Ok, 0, meta.size),
    };
    let mut head = Head::new(response::buffer(), status);
    head.header("Content-Type", info.content_type.as_bytes());
    last_modified_header(&mut head, info);
    head.header("ETag", etag.as_bytes());
    head.header("Accept-Ranges", b"bytes");
    rep.headers(&mut head);
    if status == Status::PartialContent {
        let cr = format!("bytes {}-{}/{}", offset, offset + len - 1, meta.size);
        head.header("Content-Range", cr.as_bytes());
    }
    let body = match source {
        _ if req.method == Method::Head || len == 0 => Body::Empty,
        Source::File(file) => Body::File { file, offset, len },
        Source::Memory(b) => Body::Cached(b, offset as usize..(offset + len) as usize),
    };
    Plan {
        status,
        head: head.finish(len, keep_alive),
        body,
        keep_alive,
        cause: None,
    }
}

/// The methods this server allows, for `Allow` on 405 and on the answer to `OPTIONS`.
pub const ALLOW: &[u8] = b"GET, HEAD, OPTIONS";

/// The answer to `OPTIONS` (for a path or `*`): 204 with `Allow`, and no `Content-Length`, which
/// RFC 9110 §8.6 forbids on a 204.
pub fn options_plan<F>(keep_alive: bool) -> Plan<F> {
    let mut head = Head::new(response::buffer(), Status::NoContent);
    head.header("Allow", ALLOW);
    Plan {
        status: Status::NoContent,
        head: head.finish_without_length(keep_alive),
        body: Body::Empty,
        keep_alive,
        cause: None,
    }
}

/// The short HTML page of `status`, with no header beyond the standard ones.
pub fn error_response<F>(status: Status, head_only: bool, keep_alive: bool) -> Plan<F> {
    page_plan(status, head_only, keep_alive, &[])
}

/// The short HTML page of `status`, with `extra` headers (Allow, Location, Content-Range).
pub fn page_plan<F>(
    status: Status,
    head_only: bool,
    keep_alive: bool,
    extra: &[(&str, &[u8])],
) -> Plan<F> {
    let page = status.error_page();
    let (ct, len) = (response::HTML.as_bytes(), page.len() as u64);
    page_with(
        status,
        head_only,
        keep_alive,
        extra,
        ct,
        len,
        Body::Static(page),
    )
}

/// A configured error page: `status` with the page file's bytes and type, and `extra` headers.
pub fn custom_page<F>(
    status: Status,
    head_only: bool,
    keep_alive: bool,
    extra: &[(&str, &[u8])],
    info: &FileInfo,
    file: F,
) -> Plan<F> {
    let len = info.meta.size;
    let body = Body::File {
        file,
        offset: 0,
        len,
    };
    let ct = info.content_type.as_bytes();
    page_with(status, head_only, keep_alive, extra, ct, len, body)
}

/// A whole page (built-in or a file) sent with `status`; HEAD and empty pages get the head only.
fn page_with<F>(
    status: Status,
    head_only: bool,
    keep_alive: bool,
    extra: &[(&str, &[u8])],
    content_type: &[u8],
    len: u64,
    body: Body<F>,
) -> Plan<F> {
    let mut head = Head::new(response::buffer(), status);
    for (name, value) in extra {
        head.header(name, value);
    }
    head.header("Content-Type", content_type);
    Plan {
        status,
        head: head.finish(len, keep_alive),
        body: if head_only || len == 0 {
            Body::Empty
        } else {
            body
        },
        keep_alive,
        cause: None,
    }
}

/// A directory listing's page (see [`crate::files::listing`]).
pub fn listing_plan<F>(html: Vec<u8>, head_only: bool, keep_alive: bool) -> Plan<F> {
    let ct = response::HTML.as_bytes();
    let len = html.len() as u64;
    let body = Body::Bytes(Bytes::from(html));
    page_with(Status::Ok, head_only, keep_alive, &[], ct, len, body)
}

/// A 301 to the directory `rel` with a slash: `/` + the relative path + `/`, percent-encoded
/// where a URL path needs it. Built from the normalised path, never from the raw target:
/// `//evil.example/..` must not become a `Location` that browsers read as another host.
///
/// The query string is kept. The status is 301 rather than 308: only GET and HEAD are served,
/// for which the two mean the same, and every client (HTTP/1.0 ones too) follows a 301.
pub fn directory_redirect<F>(
    rel: &CString,
    query: Option<&str>,
    head_only: bool,
    keep_alive: bool,
) -> Plan<F> {
    let mut location = vec![b'/'];
    if rel.as_bytes() != b"." {
        location.extend(crate::http::percent_encoded(
            rel.as_bytes(),
            b"-._~!$&'()*+,;=:@/",
        ));
        location.push(b'/');
    }
    if let Some(q) = query {
        location.push(b'?');
        location.extend_from_slice(q.as_bytes());
    }
    let extra = [("Location", &location[..])];
    page_plan(Status::MovedPermanently, head_only, keep_alive, &extra)
}

/// Maps a file-system error to the status the client sees.
pub fn io_status(e: &io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Status::NotFound,
        // EXDEV: openat2 refused to leave the root (a symlink pointing outside); ELOOP: a loop.
        Some(libc::EACCES | libc::EPERM | libc::EXDEV | libc::ELOOP) => Status::Forbidden,
        // Out of descriptors or memory: a moment later it may work (503 with Retry-After).
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => Status::ServiceUnavailable,
        _ => Status::InternalServerError,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Inclusive byte positions.
    Satisfiable(u64, u64),
    Unsatisfiable,
    /// Not a single byte range we serve partially (multiple ranges, other units, garbage):
    /// the whole file is sent, as RFC 9110 allows.
    Ignored,
}

fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignored;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Satisfiable(size.saturating_sub(n), size - 1),
            None => RangeSpec::Ignored,
        },
        (first, last) => {
            let Some(first) = num(first) else {
                return RangeSpec::Ignored;
            };
            let last = if last.is_empty() {
                Some(u64::MAX)
            } else {
                num(last)
            };
            match last {
                None => RangeSpec::Ignored,
                Some(last) if last < first => RangeSpec::Ignored,
                Some(_) if first >= size => RangeSpec::Unsatisfiable,
                Some(last) => RangeSpec::Satisfiable(first, last.min(size - 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::files::{Kind, Meta};
    use crate::http::parse;

    fn req(raw: &str) -> Request<'_> {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    const FILE: Meta = Meta {
        kind: Kind::File,
        size: 1000,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        ino: 1,
        ctime: 1_700_000_000,
        ctime_nsec: 0,
    };

    fn text(plan: &Plan<()>) -> String {
        String::from_utf8(plan.head.clone()).unwrap()
    }

    #[test]
    fn redirect_location_is_the_normalised_path() {
        for (rel, want) in [(".", "/"), ("a b", "/a%20b/"), ("x/y", "/x/y/")] {
            let plan = directory_redirect::<()>(&CString::new(rel).unwrap(), None, false, true);
            assert_eq!(plan.status, Status::MovedPermanently);
            assert!(
                text(&plan).contains(&format!("\r\nLocation: {want}\r\n")),
                "{rel}"
            );
        }
    }

    /// The value of header `name` in a rendered head, `text`.
    fn header<'a>(text: &'a str, name: &str) -> &'a str {
        let at = text
            .find(&format!("\r\n{name}: "))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        let rest = &text[at + name.len() + 4..];
        &rest[..rest.find("\r\n").unwrap()]
    }

    #[test]
    fn last_modified_is_never_later_than_date() {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let future = FileInfo::new(
            Meta {
                mtime: now + 86_400,
                ..FILE
            },
            "text/html",
        );
        let past = FileInfo::new(FILE, "text/html");
        for extra in ["", "If-None-Match: \"x\"\r\n", "If-None-Match: *\r\n"] {
            let raw = format!("GET /a.html HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
            let r = req(&raw);
            let plan = file_plan(&r, true, &future, Rep::PLAIN, Source::File(()));
            let t = text(&plan);
            // A day ahead: sent as the head's own Date, even across a second's boundary.
            let (lm, date) = (header(&t, "Last-Modified"), header(&t, "Date"));
            assert_ne!(lm, future.last_modified, "{extra:?}");
            assert_eq!(lm, date, "{extra:?}: {t}");
            // A time in the past is the file's own.
            let plan = file_plan(&r, true, &past, Rep::PLAIN, Source::File(()));
            assert_eq!(
                header(&text(&plan), "Last-Modified"),
                "Tue, 14 Nov 2023 22:13:20 GMT",
                "{extra:?}"
            );
        }
    }

    #[test]
    fn an_if_range_date_validates_only_a_file_older_than_a_second() {
        let secs = || {
            std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        // The status for each If-Range value, for a file modified at `mtime`.
        let statuses = |mtime: u64| {
            let info = FileInfo::new(
                Meta {
                    mtime: mtime as i64,
                    ..FILE
                },
                "text/html",
            );
            let values = [
                info.last_modified.clone(),
                info.etag.clone(),
                "\"other\"".to_string(),
                "Tue, 14 Nov 2023 22:13:21 GMT".to_string(),
            ];
            values.map(|v| {
                let raw = format!(
                    "GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\nIf-Range: {v}\r\n\r\n"
                );
                file_plan(&req(&raw), true, &info, Rep::PLAIN, Source::File(())).status
            })
        };
        let (partial, ok) = (Status::PartialContent, Status::Ok);
        // Its own date, its ETag, another ETag, another date.
        assert_eq!(statuses(1_700_000_000), [partial, partial, ok, ok]);
        // Modified within the current second: its date is weak and validates nothing. (Tried
        // again if the second ended during the requests.)
        for _ in 0..3 {
            let now = secs();
            let got = statuses(now);
            if secs() == now {
                assert_eq!(got, [ok, partial, ok, ok]);
                return;
            }
        }
        panic!("three seconds ended during three sets of four requests");
    }

    #[test]
    fn head_has_length_but_no_body() {
        let r = req("HEAD /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let plan = file_plan(
            &r,
            true,
            &FileInfo::new(FILE, "text/html"),
            Rep::PLAIN,
            Source::File(()),
        );
        assert!(text(&plan).contains("Content-Length: 1000\r\n"));
        assert!(matches!(plan.body, Body::Empty));
    }

    #[test]
    fn cached_bytes_are_sliced_for_a_range() {
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\nRange: bytes=2-4\r\n\r\n");
        let meta = Meta { size: 10, ..FILE };
        let info = FileInfo::new(meta, "text/html");
        let body = Source::Memory(Rc::new(Bytes::from_static(b"0123456789")));
        let plan = file_plan::<()>(&r, true, &info, Rep::PLAIN, body);
        assert_eq!(plan.status, Status::PartialContent);
        assert!(text(&plan).contains("\r\nContent-Range: bytes 2-4/10\r\n"));
        assert!(matches!(plan.body, Body::Cached(ref b, ref r) if &b[r.clone()] == b"234"));
        assert_eq!(plan.body_len(), 3);
    }

    #[test]
    fn conditional_get_gives_304() {
        let info = FileInfo::new(FILE, "text/html");
        let status = |extra: &str| {
            let raw = format!("GET /a.html HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
            let r = req(&raw);
            file_plan(&r, true, &info, Rep::PLAIN, Source::File(())).status
        };
        assert_eq!(
            status(&format!("If-None-Match: {}\r\n", info.etag)),
            Status::NotModified
        );
        assert_eq!(
            status(&format!("If-None-Match: W/{}, \"x\"\r\n", info.etag)),
            Status::NotModified
        );
        let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_750_000_000));
        assert_eq!(
            status(&format!("If-Modified-Since: {later}\r\n")),
            Status::NotModified
        );
        // A date in the future is ignored (RFC 9110 §13.1.3), even though the file is older.
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(86_400));
        assert_eq!(
            status(&format!("If-Modified-Since: {future}\r\n")),
            Status::Ok
        );
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        assert_eq!(
            status(&format!("If-Modified-Since: {earlier}\r\n")),
            Status::Ok
        );
        assert_eq!(status("If-None-Match: \"other\"\r\n"), Status::Ok);
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let table = [
            ("bytes=0-99", Satisfiable(0, 99)),
            ("bytes=900-", Satisfiable(900, 999)),
            ("bytes=-100", Satisfiable(900, 999)),
            ("bytes=-5000", Satisfiable(0, 999)),
            ("bytes=990-5000", Satisfiable(990, 999)),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Ignored),
            ("items=0-1", Ignored),
            ("bytes=5-1", Ignored),
            ("bytes=x-1", Ignored),
        ];
        for (header, want) in table {
            assert_eq!(parse_range(header, 1000), want, "{header}");
        }
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn io_errors_map_to_statuses() {
        let st = |code| io_status(&io::Error::from_raw_os_error(code));
        assert_eq!(st(libc::ENOENT), Status::NotFound);
        assert_eq!(st(libc::EXDEV), Status::Forbidden);
        assert_eq!(st(libc::EMFILE), Status::ServiceUnavailable);
        assert_eq!(st(libc::EIO), Status::InternalServerError);
    }
}
