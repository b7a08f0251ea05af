//! Request-head parsing: bytes in, a [`Request`] borrowing from them or a [`ParseError`] carrying
//! its status. A request allocates nothing unless its path needs percent-decoding.
//!
//! httparse does the tokenising; this module adds the rules a server must enforce on top of it:
//! framing checks that stop request smuggling (Content-Length / Transfer-Encoding conflicts),
//! `Host` for HTTP/1.1, version and target validation, percent-decoding, and the keep-alive
//! decision. It does no I/O and knows nothing about files.

use std::borrow::Cow;

use super::Status;

/// Headers accepted per request; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'a> {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Any other method, as sent; answered with 405.
    Other(&'a str),
}

impl Method<'_> {
    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(m) => m,
        }
    }
}

/// The request's HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// A parsed request head, borrowing from the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request method.
    pub method: Method<'a>,
    /// The HTTP version of the request line.
    pub version: Version,
    /// The target's path as sent (still percent-encoded, query removed): what the log shows.
    pub raw_path: &'a str,
    /// The query string as sent, without the `?` (`None` when the target has none).
    pub query: Option<&'a str>,
    /// The percent-decoded path, always starting with `/`. Empty for methods that are refused.
    pub path: Cow<'a, [u8]>,
    /// The connection may stay open after the response.
    pub keep_alive: bool,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    /// Bytes of body announced by Content-Length (read and discarded by the connection).
    pub body_len: u64,
    /// A chunked body follows: its end is not known here, so the connection closes after.
    pub body_unframed: bool,
    /// The `If-None-Match` header's value, if sent.
    pub if_none_match: Option<Cow<'a, str>>,
    /// The `If-Modified-Since` header's value, if sent.
    pub if_modified_since: Option<Cow<'a, str>>,
    /// The `Range` header's value, if sent.
    pub range: Option<Cow<'a, str>>,
    /// The `If-Range` header's value, if sent.
    pub if_range: Option<Cow<'a, str>>,
}

/// Why a head was refused; the connection always closes after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The status to answer with.
    pub status: Status,
    /// A short description of the problem, for the log.
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> ParseError {
    ParseError {
        status: Status::BadRequest,
        reason,
    }
}

/// Parses one request head from the front of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Request<'_>>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ParseError {
                status: Status::HeaderFieldsTooLarge,
                reason: "too many headers",
            });
        }
        Err(httparse::Error::Version) if looks_like_http_version(buf) => {
            return Err(ParseError {
                status: Status::HttpVersionNotSupported,
                reason: "unsupported HTTP version",
            });
        }
        Err(e) => {
            return Err(bad(match e {
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                httparse::Error::NewLine => "invalid line ending",
                httparse::Error::Version => "invalid HTTP version",
                _ => "malformed request line",
            }));
        }
    };
    // httparse returns these once the head is complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m => Method::Other(m),
    };

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut if_none_match = None;
    let mut if_modified_since = None;
    let mut range = None;
    let mut if_range = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value).ok_or(bad("invalid Content-Length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(bad("repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(String::from_utf8_lossy(h.value));
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            if_modified_since = Some(String::from_utf8_lossy(h.value));
        } else if name.eq_ignore_ascii_case("range") {
            range = Some(String::from_utf8_lossy(h.value));
        } else if name.eq_ignore_ascii_case("if-range") {
            if_range = Some(String::from_utf8_lossy(h.value));
        }
    }
    if version == Version::Http11 && hosts == 0 {
        return Err(bad("HTTP/1.1 request without Host"));
    }
    if hosts > 1 {
        return Err(bad("more than one Host header"));
    }
    let mut body_unframed = false;
    if let Some(te) = transfer_encoding {
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if version == Version::Http10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
        if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(bad("Transfer-Encoding without final chunked"));
        }
        body_unframed = true;
    }
    let keep_alive = !close && !body_unframed && (version == Version::Http11 || keep_alive_token);

    let query = target
        .split('#')
        .next()
        .and_then(|t| t.split_once('?'))
        .map(|(_, q)| q);
    let (raw_path, path) = match method {
        Method::Get | Method::Head => decode_target(target)?,
        Method::Other(_) => (
            target.split('?').next().unwrap_or(""),
            Cow::Borrowed(&[][..]),
        ),
    };

    Ok(Some(Request {
        method,
        version,
        raw_path,
        query,
        path,
        keep_alive,
        head_len,
        body_len: content_length.unwrap_or(0),
        body_unframed,
        if_none_match,
        if_modified_since,
        range,
        if_range,
    }))
}

/// For a head that does not fit in the buffer: 414 while the request line itself is unfinished,
/// 431 once it is complete and the headers are what overflowed.
pub fn oversize(buf: &[u8]) -> ParseError {
    if buf.contains(&b'\n') {
        ParseError {
            status: Status::HeaderFieldsTooLarge,
            reason: "request head larger than max_request_bytes",
        }
    } else {
        ParseError {
            status: Status::UriTooLong,
            reason: "request line longer than max_request_bytes",
        }
    }
}

/// The method and target of a request line that did not parse, for the access log: the first
/// two space-separated tokens, or `-`.
pub fn line_hint(buf: &[u8]) -> (String, String) {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut tokens = line
        .trim_ascii()
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty());
    let mut next = |limit: usize| match tokens.next() {
        Some(t) => String::from_utf8_lossy(&t[..t.len().min(limit)]).into_owned(),
        None => "-".to_string(),
    };
    let method = next(32);
    let target = next(1024);
    let path = target.split('?').next().unwrap_or("-").to_string();
    (method, path)
}

/// True when the request line ends in something shaped like `HTTP/x.y`, so a version error means
/// an unsupported version (505) rather than garbage (400).
fn looks_like_http_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let tokens: Vec<&[u8]> = line.trim_ascii_end().split(|&b| b == b' ').collect();
    let [_, _, version] = tokens[..] else {
        return false;
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit())
        || matches!(version, [b'H', b'T', b'T', b'P', b'/', a] if a.is_ascii_digit())
}

/// Content-Length is one or more ASCII digits, nothing else (no sign, no list, no spaces inside).
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Splits off the query, accepts absolute-form targets, and percent-decodes the path.
fn decode_target(target: &str) -> Result<(&str, Cow<'_, [u8]>), ParseError> {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        // Compared as bytes: the target may hold UTF-8, and a str slice could split a character.
        let prefix = t.as_bytes().get(..scheme.len());
        if prefix.is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes())) {
            let rest = &t[scheme.len()..];
            t = rest.find('/').map_or("/", |i| &rest[i..]);
            break;
        }
    }
    let raw = t.split(['?', '#']).next().unwrap_or_default();
    if !raw.starts_with('/') {
        return Err(bad("request target is not an absolute path"));
    }
    let path = if raw.contains('%') {
        Cow::Owned(percent_decode(raw.as_bytes()).ok_or(bad("invalid percent-encoding"))?)
    } else {
        Cow::Borrowed(raw.as_bytes())
    };
    if path.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(bad("control byte in path"));
    }
    Ok((raw, path))
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Request<'_> {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    fn err(raw: &str) -> Status {
        parse(raw.as_bytes()).unwrap_err().status
    }

    #[test]
    fn simple_get() {
        let r = ok("GET /a%20b.html?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(&*r.path, b"/a b.html");
        assert_eq!(r.raw_path, "/a%20b.html");
        assert_eq!(r.query, Some("x=1"));
        assert!(r.keep_alive);
        assert_eq!(r.head_len, 41);
    }

    #[test]
    fn partial_head_needs_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
    }

    #[test]
    fn absolute_form_target() {
        assert_eq!(
            &*ok("GET http://example.com/x/y.css HTTP/1.1\r\nHost: h\r\n\r\n").path,
            b"/x/y.css"
        );
        assert_eq!(
            &*ok("GET HTTP://example.com HTTP/1.1\r\nHost: h\r\n\r\n").path,
            b"/"
        );
    }

    #[test]
    fn non_ascii_targets_do_not_panic() {
        for target in ["/abcdeé", "/abcdefé", "/é", "/ééééé.html"] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = parse(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(&*r.path, target.as_bytes());
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
        );
    }

    #[test]
    fn table_of_refusals() {
        let cases: &[(&str, Status)] = &[
            ("GET / HTTP/1.1\r\n\r\n", Status::BadRequest),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
                Status::HttpVersionNotSupported,
            ),
            (
                "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
                Status::HttpVersionNotSupported,
            ),
            ("GET / FOO\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -3\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Status::BadRequest,
            ),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", Status::BadRequest),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BadRequest,
            ),
            ("GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET /a%0ab HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET /a% HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET * HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET x HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
        ];
        for (raw, want) in cases {
            assert_eq!(
                parse(raw.as_bytes()).map(|_| ()).map_err(|e| e.status),
                Err(*want),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn same_content_length_twice_is_fine() {
        let r = ok("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r.body_len, 3);
    }

    #[test]
    fn chunked_body_closes_the_connection() {
        let r = ok("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.body_unframed);
        assert!(!r.keep_alive);
    }

    #[test]
    fn other_methods_parse_for_a_405() {
        let r = ok("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method, Method::Other("DELETE"));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..MAX_HEADERS {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(err(&raw), Status::HeaderFieldsTooLarge);
    }

    #[test]
    fn hints_for_the_log() {
        assert_eq!(
            line_hint(b"GET /x?y HTTP/9\r\n"),
            ("GET".into(), "/x".into())
        );
        assert_eq!(line_hint(b""), ("-".into(), "-".into()));
    }

    #[test]
    fn oversize_is_414_until_the_request_line_ends() {
        assert_eq!(oversize(b"GET /aaaaaaaa").status, Status::UriTooLong);
        assert_eq!(
            oversize(b"GET / HTTP/1.1\r\nX: aaaa").status,
            Status::HeaderFieldsTooLarge
        );
    }
}
