//! Deciding the response: a parsed request plus file metadata in, a [`Plan`] out.
//!
//! The decision is a small state machine so that it stays free of I/O: [`begin`] says which path
//! to open, [`after_open`] looks at what was opened (a directory walks to its index or redirects,
//! a refused type or a special file gets its error page, a servable file goes on), and
//! [`file_plan`] renders the head for the file's bytes, open or cached. The engine performs each
//! file-system step with its own primitives and feeds the result back. Conditional requests (ETag, Last-Modified) and single
//! byte ranges are small functions over the plan, so adding a feature touches this file only.

use std::ffi::CString;
use std::io;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use crate::files::{self, Kind, Meta, PathError, Policy, Target};
use crate::http::{Head, Method, Request, Status};

/// Where a response's body comes from.
#[derive(Debug)]
pub enum Body<F> {
    Empty,
    Static(&'static [u8]),
    Bytes(Bytes),
    /// `len` bytes of an opened file from `offset`.
    File {
        file: F,
        offset: u64,
        len: u64,
    },
}

/// Everything an engine needs to answer: the rendered head and the body source.
#[derive(Debug)]
pub struct Plan<F> {
    pub status: Status,
    pub head: Vec<u8>,
    pub body: Body<F>,
    /// Keep the connection open after this response.
    pub keep_alive: bool,
}

impl<F> Plan<F> {
    /// Bytes this plan puts on the wire.
    pub fn wire_len(&self) -> u64 {
        self.head.len() as u64
            + match &self.body {
                Body::Empty => 0,
                Body::Static(b) => b.len() as u64,
                Body::Bytes(b) => b.len() as u64,
                Body::File { len, .. } => *len,
            }
    }
}

/// The next thing the engine must do for this request.
#[derive(Debug)]
pub enum Step<'a, F> {
    /// Open `rel` beneath the root (read-only, nonblocking, `openat2(RESOLVE_BENEATH)`), stat the
    /// descriptor, and call [`after_open`]. Opening first means the kernel confines every lookup
    /// to the root, so nothing outside it is even stat'ed through a symlink.
    Open(Lookup),
    /// A regular file that may be served, still open, with its type: build the body source and
    /// call [`file_plan`].
    Serve(Lookup, F, Meta, &'a str),
    /// Send this.
    Send(Plan<F>),
}

/// A path being looked up, and whether it is already the directory index.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub rel: CString,
    pub is_index: bool,
}

/// Read-only settings the decisions depend on.
pub struct Rules<'a> {
    pub policy: &'a Policy,
    pub index: &'a str,
    /// False when keep-alive is disabled in the config.
    pub keep_alive: bool,
}

/// Starts answering `req`, whose path the caller has resolved with [`files::resolve`].
pub fn begin<'a, F>(
    rules: &Rules<'a>,
    req: &Request,
    target: Result<Target, PathError>,
) -> Step<'a, F> {
    let keep_alive = rules.keep_alive && req.keep_alive;
    if let Method::Other(_) = req.method {
        let allow = [("Allow", &b"GET, HEAD"[..])];
        return Step::Send(page_plan(
            Status::MethodNotAllowed,
            req.method == Method::Head,
            keep_alive,
            &allow,
        ));
    }
    match target {
        Ok(t) => Step::Open(Lookup {
            rel: t.rel,
            is_index: false,
        }),
        Err(PathError::Escapes) => Step::Send(error_plan(Status::BadRequest, req, false)),
        Err(PathError::Hidden) => Step::Send(error_plan(Status::NotFound, req, keep_alive)),
    }
}

/// Continues after the engine opened `lookup.rel` and stat'ed it. Anything not served is
/// dropped (closed) here.
pub fn after_open<'a, F>(
    rules: &Rules<'a>,
    req: &Request,
    lookup: Lookup,
    opened: io::Result<(F, Meta)>,
) -> Step<'a, F> {
    let keep_alive = rules.keep_alive && req.keep_alive;
    let (file, meta) = match opened {
        Ok(o) => o,
        Err(e) => return Step::Send(error_plan(io_status(&e), req, keep_alive)),
    };
    let slash = req.path.ends_with(b"/");
    match meta.kind {
        Kind::Dir if lookup.is_index => Step::Send(error_plan(Status::NotFound, req, keep_alive)),
        Kind::Dir if !slash => {
            // Built from the normalised path, never from the raw target: `//evil.example/..`
            // must not become a `Location` that browsers read as another host.
            let location = directory_location(&lookup.rel);
            let head_only = req.method == Method::Head;
            let extra = [("Location", &location[..])];
            Step::Send(page_plan(
                Status::MovedPermanently,
                head_only,
                keep_alive,
                &extra,
            ))
        }
        Kind::Dir => Step::Open(Lookup {
            rel: files::join(&lookup.rel, rules.index),
            is_index: true,
        }),
        Kind::Other => Step::Send(error_plan(Status::Forbidden, req, keep_alive)),
        // `/file.html/` names a directory that is a file: not found, as open(2) would say.
        Kind::File if slash && !lookup.is_index => {
            Step::Send(error_plan(Status::NotFound, req, keep_alive))
        }
        Kind::File => match rules.policy.content_type(lookup.rel.as_bytes()) {
            Some(ct) => Step::Serve(lookup, file, meta, ct),
            None => Step::Send(error_plan(Status::Forbidden, req, keep_alive)),
        },
    }
}

/// What a response needs to know about a regular file, computed once per file (and kept with it
/// in the file cache): metadata, type and the rendered validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub meta: Meta,
    pub content_type: String,
    pub etag: String,
    pub last_modified: String,
}

impl FileInfo {
    pub fn new(meta: Meta, content_type: &str) -> FileInfo {
        FileInfo {
            meta,
            content_type: content_type.to_string(),
            etag: etag(&meta),
            last_modified: httpdate::fmt_http_date(mtime(&meta)),
        }
    }
}

fn mtime(meta: &Meta) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(meta.mtime.max(0) as u64)
}

/// Where a file's bytes come from.
#[derive(Debug)]
pub enum Source<F> {
    /// An open file, read by the engine.
    File(F),
    /// The whole file, from the cache.
    Memory(Bytes),
}

/// Finishes once the body source is known; an open file is dropped (closed) for HEAD and 304.
pub fn file_plan<F>(
    rules: &Rules,
    req: &Request,
    info: &FileInfo,
    source: io::Result<Source<F>>,
) -> Plan<F> {
    let keep_alive = rules.keep_alive && req.keep_alive;
    let source = match source {
        Ok(s) => s,
        Err(e) => return error_plan(io_status(&e), req, keep_alive),
    };
    let (meta, etag, last_modified) = (&info.meta, &info.etag, &info.last_modified);
    let not_modified = match (&req.if_none_match, &req.if_modified_since) {
        (Some(inm), _) => inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }),
        (None, Some(ims)) => httpdate::parse_http_date(ims).is_ok_and(|since| mtime(meta) <= since),
        (None, None) => false,
    };
    if not_modified {
        let mut head = Head::new(Vec::new(), Status::NotModified);
        head.header("ETag", etag.as_bytes());
        head.header("Last-Modified", last_modified.as_bytes());
        return Plan {
            status: Status::NotModified,
            head: head.finish_without_length(keep_alive),
            body: Body::Empty,
            keep_alive,
        };
    }

    // If-Range: a range is only valid against the version the client already has.
    let range = match &req.if_range {
        Some(v) if v.trim() != etag && v.trim() != last_modified => None,
        _ => req.range.as_deref(),
    };
    let (status, offset, len) = match range.map(|r| parse_range(r, meta.size)) {
        Some(RangeSpec::Satisfiable(start, end)) => {
            (Status::PartialContent, start, end - start + 1)
        }
        Some(RangeSpec::Unsatisfiable) => {
            let range = format!("bytes */{}", meta.size);
            let extra = [("Content-Range", range.as_bytes())];
            return page_plan(
                Status::RangeNotSatisfiable,
                req.method == Method::Head,
                keep_alive,
                &extra,
            );
        }
        Some(RangeSpec::Ignored) | None => (Status::Ok, 0, meta.size),
    };
    let mut head = Head::new(Vec::with_capacity(256), status);
    head.header("Content-Type", info.content_type.as_bytes());
    head.header("Last-Modified", last_modified.as_bytes());
    head.header("ETag", etag.as_bytes());
    head.header("Accept-Ranges", b"bytes");
    if status == Status::PartialContent {
        let cr = format!("bytes {}-{}/{}", offset, offset + len - 1, meta.size);
        head.header("Content-Range", cr.as_bytes());
    }
    let body = match source {
        _ if req.method == Method::Head || len == 0 => Body::Empty,
        Source::File(file) => Body::File { file, offset, len },
        Source::Memory(b) => Body::Bytes(b.slice(offset as usize..(offset + len) as usize)),
    };
    Plan {
        status,
        head: head.finish(len, keep_alive),
        body,
        keep_alive,
    }
}

/// An error page for `status`; HEAD gets the head only.
pub fn error_plan<F>(status: Status, req: &Request, keep_alive: bool) -> Plan<F> {
    error_response(status, req.method == Method::Head, keep_alive)
}

/// An error page for a request that may not have parsed (so no method is known).
pub fn error_response<F>(status: Status, head_only: bool, keep_alive: bool) -> Plan<F> {
    page_plan(status, head_only, keep_alive, &[])
}

/// The short HTML page of `status`, with `extra` headers (Allow, Location, Content-Range).
fn page_plan<F>(
    status: Status,
    head_only: bool,
    keep_alive: bool,
    extra: &[(&str, &[u8])],
) -> Plan<F> {
    let page = status.error_page();
    let mut head = Head::new(Vec::with_capacity(256), status);
    for (name, value) in extra {
        head.header(name, value);
    }
    head.header("Content-Type", b"text/html; charset=utf-8");
    Plan {
        status,
        head: head.finish(page.len() as u64, keep_alive),
        body: if head_only {
            Body::Empty
        } else {
            Body::Static(page)
        },
        keep_alive,
    }
}

/// `/` + the relative directory path + `/`, percent-encoded where a URL path needs it.
fn directory_location(rel: &CString) -> Vec<u8> {
    let mut out = vec![b'/'];
    if rel.as_bytes() != b"." {
        for &b in rel.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        out.push(b'/');
    }
    out
}

/// Maps a file-system error to the status the client sees.
pub fn io_status(e: &io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Status::NotFound,
        // EXDEV: openat2 refused to leave the root (a symlink pointing outside); ELOOP: a loop.
        Some(libc::EACCES | libc::EPERM | libc::EXDEV | libc::ELOOP) => Status::Forbidden,
        _ => Status::InternalServerError,
    }
}

/// Strong validator: mtime (seconds and nanoseconds) and size in hex, nginx-style.
pub fn etag(meta: &Meta) -> String {
    format!("\"{:x}.{:x}-{:x}\"", meta.mtime, meta.mtime_nsec, meta.size)
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
    use super::*;
    use crate::http::parse;

    fn req(raw: &str) -> Request {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    fn rules(policy: &Policy) -> Rules<'_> {
        Rules {
            policy,
            index: "index.html",
            keep_alive: true,
        }
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
    fn walks_a_directory_to_its_index() {
        let p = Policy::new(&["html"]);
        let r = req("GET /sub/ HTTP/1.1\r\nHost: h\r\n\r\n");
        let Step::<'_, ()>::Open(l) = begin(&rules(&p), &r, files::resolve(&r.path)) else {
            panic!()
        };
        assert_eq!(l.rel.as_bytes(), b"sub");
        let dir = Meta {
            kind: Kind::Dir,
            ..FILE
        };
        let Step::<'_, ()>::Open(l) = after_open(&rules(&p), &r, l, Ok(((), dir))) else {
            panic!()
        };
        assert_eq!(l.rel.as_bytes(), b"sub/index.html");
        let Step::<'_, ()>::Serve(_, _, _, ct) = after_open(&rules(&p), &r, l, Ok(((), FILE)))
        else {
            panic!()
        };
        assert_eq!(ct, "text/html; charset=utf-8");
    }

    #[test]
    fn redirect_location_is_the_normalised_path() {
        let p = Policy::new(&["html"]);
        let dir = Meta {
            kind: Kind::Dir,
            ..FILE
        };
        for (target, rel, want) in [
            ("//evil.example/..", ".", "/"),
            ("/a%20b", "a b", "/a%20b/"),
            ("//x//y", "x/y", "/x/y/"),
        ] {
            let r = req(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n"));
            let l = Lookup {
                rel: CString::new(rel).unwrap(),
                is_index: false,
            };
            let Step::<'_, ()>::Send(plan) = after_open(&rules(&p), &r, l, Ok(((), dir))) else {
                panic!()
            };
            assert!(
                text(&plan).contains(&format!("\r\nLocation: {want}\r\n")),
                "{target}"
            );
        }
    }

    #[test]
    fn directory_without_slash_redirects() {
        let p = Policy::new(&["html"]);
        let r = req("GET /sub?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        let l = Lookup {
            rel: CString::new("sub").unwrap(),
            is_index: false,
        };
        let dir = Meta {
            kind: Kind::Dir,
            ..FILE
        };
        let Step::<'_, ()>::Send(plan) = after_open(&rules(&p), &r, l, Ok(((), dir))) else {
            panic!()
        };
        assert_eq!(plan.status, Status::MovedPermanently);
        assert!(text(&plan).contains("\r\nLocation: /sub/\r\n"));
    }

    #[test]
    fn refused_extension_is_403_and_missing_is_404() {
        let p = Policy::new(&["html"]);
        let r = req("GET /a.jpg HTTP/1.1\r\nHost: h\r\n\r\n");
        let l = Lookup {
            rel: CString::new("a.jpg").unwrap(),
            is_index: false,
        };
        let Step::<'_, ()>::Send(plan) = after_open(&rules(&p), &r, l.clone(), Ok(((), FILE)))
        else {
            panic!()
        };
        assert_eq!(plan.status, Status::Forbidden);
        assert!(plan.keep_alive);
        let gone = io::Error::from_raw_os_error(libc::ENOENT);
        let Step::<'_, ()>::Send(plan) = after_open::<()>(&rules(&p), &r, l, Err(gone)) else {
            panic!()
        };
        assert_eq!(plan.status, Status::NotFound);
    }

    #[test]
    fn head_has_length_but_no_body() {
        let p = Policy::new(&["html"]);
        let r = req("HEAD /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let plan = file_plan(
            &rules(&p),
            &r,
            &FileInfo::new(FILE, "text/html"),
            Ok(Source::File(())),
        );
        assert!(text(&plan).contains("Content-Length: 1000\r\n"));
        assert!(matches!(plan.body, Body::Empty));
    }

    #[test]
    fn cached_bytes_are_sliced_for_a_range() {
        let p = Policy::new(&["html"]);
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\nRange: bytes=2-4\r\n\r\n");
        let meta = Meta { size: 10, ..FILE };
        let info = FileInfo::new(meta, "text/html");
        let body = Source::Memory(Bytes::from_static(b"0123456789"));
        let plan = file_plan::<()>(&rules(&p), &r, &info, Ok(body));
        assert_eq!(plan.status, Status::PartialContent);
        assert!(matches!(plan.body, Body::Bytes(ref b) if &b[..] == b"234"));
    }

    #[test]
    fn conditional_get_gives_304() {
        let p = Policy::new(&["html"]);
        let info = FileInfo::new(FILE, "text/html");
        let status = |extra: &str| {
            let r = req(&format!("GET /a.html HTTP/1.1\r\nHost: h\r\n{extra}\r\n"));
            file_plan(&rules(&p), &r, &info, Ok(Source::File(()))).status
        };
        assert_eq!(
            status(&format!("If-None-Match: {}\r\n", info.etag)),
            Status::NotModified
        );
        assert_eq!(
            status(&format!("If-None-Match: W/{}, \"x\"\r\n", info.etag)),
            Status::NotModified
        );
        let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        assert_eq!(
            status(&format!("If-Modified-Since: {later}\r\n")),
            Status::NotModified
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
    fn method_not_allowed_lists_allow() {
        let p = Policy::new(&["html"]);
        let r = req("POST /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let Step::<'_, ()>::Send(plan) = begin(&rules(&p), &r, files::resolve(&r.path)) else {
            panic!()
        };
        assert_eq!(plan.status, Status::MethodNotAllowed);
        assert!(text(&plan).contains("\r\nAllow: GET, HEAD\r\n"));
    }
}
