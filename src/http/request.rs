//! Request-head parsing: bytes in, a [`Request`] borrowing from them or a [`ParseError`] carrying
//! its status. A request allocates nothing unless its path needs percent-decoding.
//!
//! httparse does the tokenising; this module adds the rules a server must enforce on top of it
//! (RFC 9112): framing checks that stop request smuggling (Content-Length / Transfer-Encoding
//! conflicts), exactly one valid `Host` (required on HTTP/1.1), version, method and target
//! validation, a bound on the empty lines tolerated before a request line, percent-decoding, and
//! the keep-alive decision. It does no I/O and knows nothing about files; a chunked body is
//! decoded by [`super::chunked`], driven by the connection.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::Status;

/// Headers accepted per request; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// Longest method accepted, in bytes; a longer one is answered with 400 as soon as its 33rd byte
/// arrives, without waiting for the rest of the line. The longest registered method
/// (`UPDATEREDIRECTREF`, 17 bytes) fits with room to spare, and the access log keeps the same
/// 32 bytes of a method that did not parse.
pub const MAX_METHOD: usize = 32;

/// Empty lines skipped before a request line (RFC 9112 §2.2 asks servers to skip at least one:
/// some clients send a CRLF after a body); more is 400, so a stream of blank lines cannot hold a
/// connection open.
pub const MAX_EMPTY_LINES: usize = 8;

/// The request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'a> {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `OPTIONS`: answered with 204 and `Allow`, for a path or for `*`.
    Options,
    /// Any other method, as sent; answered with 405.
    Other(&'a str),
}

impl Method<'_> {
    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
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
    /// The target's path as sent (still percent-encoded, query and fragment removed): what the
    /// log shows. `*` for `OPTIONS *`.
    pub raw_path: &'a str,
    /// The query string as sent, without the `?` (`None` when the target has none).
    pub query: Option<&'a str>,
    /// The percent-decoded path, always starting with `/`. Empty for methods that are refused and
    /// for `OPTIONS *`.
    pub path: Cow<'a, [u8]>,
    /// The connection may stay open after the response.
    pub keep_alive: bool,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    /// Bytes of body announced by Content-Length (read and discarded by the connection).
    pub body_len: u64,
    /// A chunked body follows, decoded and discarded by the connection with
    /// [`super::chunked::Decoder`].
    pub chunked: bool,
    /// An HTTP/1.1 request with a body sent `Expect: 100-continue`: the client may wait for an
    /// answer before it sends the body, so it is answered at once (RFC 9110 §10.1.1) and the
    /// connection closes after it (`keep_alive` is false).
    pub expect_continue: bool,
    /// The `If-None-Match` header's value, if sent.
    pub if_none_match: Option<Cow<'a, str>>,
    /// The `If-Modified-Since` header's value, if sent.
    pub if_modified_since: Option<Cow<'a, str>>,
    /// The `Range` header's value, if sent.
    pub range: Option<Cow<'a, str>>,
    /// The `If-Range` header's value, if sent.
    pub if_range: Option<Cow<'a, str>>,
    /// The `Accept-Encoding` values, if sent (several headers joined with `,`, as RFC 9110
    /// §5.3 allows); read only when a file has precompressed variants.
    pub accept_encoding: Option<Cow<'a, [u8]>>,
    /// The first `Referer` header's value as sent, for the access log.
    pub referer: Option<&'a [u8]>,
    /// The first `User-Agent` header's value as sent, for the access log.
    pub user_agent: Option<&'a [u8]>,
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
    precheck(buf)?;
    // Left uninitialised: httparse writes the headers it finds. Writing 64 empty ones first
    // cost 18 of the 85 ns that wrk's head took (`hot_paths`, `http::parse/wrk`).
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
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
        "OPTIONS" => Method::Options,
        m => Method::Other(m),
    };
    // httparse lets UTF-8 through; a request-target is ASCII (RFC 9112 §3.2, RFC 3986), and
    // anything else must be percent-encoded.
    if !target.is_ascii() {
        return Err(bad("non-ASCII byte in the request target"));
    }

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut if_none_match = None;
    let mut if_modified_since = None;
    let mut range = None;
    let mut if_range = None;
    let mut accept_encoding: Option<Cow<'_, [u8]>> = None;
    let mut expect_continue = false;
    let mut referer = None;
    let mut user_agent = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(h.value.trim_ascii()) {
                return Err(bad("invalid Host"));
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
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
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            accept_encoding = Some(match accept_encoding {
                None => Cow::Borrowed(h.value),
                Some(prev) => Cow::Owned([&prev[..], b",", h.value].concat()),
            });
        } else if name.eq_ignore_ascii_case("referer") {
            referer = referer.or(Some(h.value));
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = user_agent.or(Some(h.value));
        }
    }
    if version == Version::Http11 && hosts == 0 {
        return Err(bad("HTTP/1.1 request without Host"));
    }
    if hosts > 1 {
        return Err(bad("more than one Host header"));
    }
    let mut chunked = false;
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
        chunked = true;
    }
    // HTTP/1.0 clients do not know 100-continue, and a request without a body has nothing to
    // wait for.
    let expect_continue = expect_continue
        && version == Version::Http11
        && (chunked || content_length.is_some_and(|n| n > 0));
    let keep_alive = !close && !expect_continue && (version == Version::Http11 || keep_alive_token);

    // The target is ASCII, so the byte offsets of `?` and `#` are char boundaries.
    let (end, query) = target_parts(target.as_bytes());
    let query = query.map(|q| &target[q]);
    let (raw_path, path) = match method {
        Method::Options if target == "*" => ("*", Cow::Borrowed(&[][..])),
        Method::Get | Method::Head | Method::Options => decode_target(&target[..end])?,
        Method::Other(_) => (&target[..end], Cow::Borrowed(&[][..])),
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
        chunked,
        expect_continue,
        if_none_match,
        if_modified_since,
        range,
        if_range,
        accept_encoding,
        referer,
        user_agent,
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

/// What the access log shows of a request line that did not parse: its first three
/// space-separated tokens as sent, each `None` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineHint<'a> {
    /// The first token, at most [`MAX_METHOD`] bytes of it.
    pub method: Option<&'a [u8]>,
    /// The second token (the target, at most 1024 bytes of it) up to its `?` or `#`.
    pub path: Option<&'a [u8]>,
    /// What follows the target's `?`, up to its `#`.
    pub query: Option<&'a [u8]>,
    /// The third token, at most 16 bytes of it: the protocol, when the line got that far.
    pub protocol: Option<&'a [u8]>,
}

/// The tokens of a request line that did not parse, for the access log; allocates nothing.
pub fn line_hint(buf: &[u8]) -> LineHint<'_> {
    let mut tokens = request_line(buf)
        .trim_ascii()
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty());
    let mut next = |limit: usize| tokens.next().map(|t| &t[..t.len().min(limit)]);
    let method = next(MAX_METHOD);
    let target = next(1024);
    let protocol = next(16);
    let (path, query) = match target {
        Some(t) => {
            let (end, query) = target_parts(t);
            (Some(&t[..end]), query.map(|q| &t[q]))
        }
        None => (None, None),
    };
    LineHint {
        method,
        path,
        query,
        protocol,
    }
}

/// Refuses, before httparse sees them, what it would let through or only notice late: more than
/// [`MAX_EMPTY_LINES`] empty lines before the request line, and a method longer than
/// [`MAX_METHOD`] (noticed at its 33rd byte, even while the line is unfinished).
fn precheck(buf: &[u8]) -> Result<(), ParseError> {
    let mut i = 0;
    let mut lines = 0;
    loop {
        match buf[i..] {
            [b'\r', b'\n', ..] => i += 2,
            [b'\n', ..] => i += 1,
            _ => break,
        }
        lines += 1;
        if lines > MAX_EMPTY_LINES {
            return Err(bad("too many empty lines before the request line"));
        }
    }
    let method = buf[i..]
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|&&b| is_tchar(b));
    if method.count() > MAX_METHOD {
        return Err(bad("method longer than 32 bytes"));
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token such as a method.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `Host` value is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): an IP literal in
/// brackets, or a reg-name (IPv4 addresses included) of unreserved characters, percent-escapes
/// and sub-delimiters. It is never empty (RFC 9110 §4.2.1: an `http` URI has a host). A comma
/// is refused although it is a sub-delimiter: it is how two Host lines read once an
/// intermediary joins them into a list.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v {
        [b'[', rest @ ..] => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            if !valid_ip_literal(&rest[..end]) {
                return false;
            }
            match &rest[end + 1..] {
                [] => return true,
                [b':', port @ ..] => (None, port),
                _ => return false,
            }
        }
        _ => match v.iter().rposition(|&b| b == b':') {
            Some(i) => (Some(&v[..i]), &v[i + 1..]),
            None => (Some(v), &[][..]),
        },
    };
    let host_ok = host.is_none_or(|h| {
        let mut i = 0;
        while i < h.len() {
            match h[i] {
                b'%' if h
                    .get(i + 1..i + 3)
                    .is_some_and(|x| x.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    i += 2
                }
                b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b) => {}
                _ => return false,
            }
            i += 1;
        }
        !h.is_empty()
    });
    // The port may be empty (RFC 3986 allows `host:`); otherwise it is a TCP port number.
    let port_ok = port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port)
            .ok()
            .and_then(|p| (!p.is_empty()).then(|| p.parse::<u16>().is_ok()))
            .unwrap_or(true);
    host_ok && port_ok
}

/// The inside of `[...]`: an IPv6 address, or an `IPvFuture` (`v` HEX+ `.` ...).
fn valid_ip_literal(lit: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = lit {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    std::str::from_utf8(lit).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// The first line that is not empty: the request line, after the empty lines that may precede it.
fn request_line(buf: &[u8]) -> &[u8] {
    let mut lines = buf.split(|&b| b == b'\n');
    lines
        .find(|l| !l.trim_ascii().is_empty())
        .unwrap_or_default()
}

/// True when the request line ends in something shaped like `HTTP/x.y`, so a version error means
/// an unsupported version (505) rather than garbage (400). `HTTP/1` (no minor version) does not
/// match the grammar (`HTTP/` DIGIT `.` DIGIT) and is a 400.
fn looks_like_http_version(buf: &[u8]) -> bool {
    let tokens: Vec<&[u8]> = request_line(buf)
        .trim_ascii_end()
        .split(|&b| b == b' ')
        .collect();
    let [_, _, version] = tokens[..] else {
        return false;
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit())
}

/// Content-Length is one or more ASCII digits, nothing else (no sign, no list, no spaces inside).
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Where a request-target's parts lie, found in one pass: it is `target[..end]` (an absolute
/// path or URI) up to the first `?` or `#`, then the query between that `?` and the next `#`.
/// A fragment (`#...`) is not part of a request-target (RFC 9112 §3.2) and browsers never send
/// one; it is ignored as nginx does, so it is never looked up as part of a file name (`%23` is a
/// literal `#` in a name and is kept).
fn target_parts(target: &[u8]) -> (usize, Option<Range<usize>>) {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let query = (target.get(end) == Some(&b'?')).then(|| {
        let from = end + 1;
        let len = target[from..].iter().position(|&b| b == b'#');
        from..len.map_or(target.len(), |n| from + n)
    });
    (end, query)
}

/// Accepts absolute-form targets and percent-decodes the path of `target`, which has neither
/// query nor fragment (see [`target_parts`]).
fn decode_target(target: &str) -> Result<(&str, Cow<'_, [u8]>), ParseError> {
    let mut raw = target;
    for scheme in ["http://", "https://"] {
        let prefix = raw.as_bytes().get(..scheme.len());
        if prefix.is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes())) {
            // The authority ends at the first `/` (or at the `?` or `#` already cut off: in
            // `http://h?/x` or `http://h#/x` the `/x` is a query or fragment, the path is `/`).
            let rest = &raw[scheme.len()..];
            raw = rest.find('/').map_or("/", |i| &rest[i..]);
            break;
        }
    }
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
    fn raw_non_ascii_targets_are_400_and_percent_encoded_ones_decode() {
        for target in ["/abcdeé", "/abcdefé", "/é", "/ééééé.html"] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let e = parse(raw.as_bytes()).unwrap_err();
            assert_eq!(e.status, Status::BadRequest, "{target}");
            assert_eq!(e.reason, "non-ASCII byte in the request target");
        }
        // Invalid UTF-8 is refused by httparse itself.
        assert_eq!(
            err("GET /\u{7f}x HTTP/1.1\r\nHost: h\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n").map_err(|e| e.status),
            Err(Status::BadRequest)
        );
        assert_eq!(
            &*ok("GET /%C3%A9.html HTTP/1.1\r\nHost: h\r\n\r\n").path,
            "/é.html".as_bytes()
        );
    }

    #[test]
    fn fragments_are_never_part_of_the_path() {
        let table = [
            ("/a.html#x", "/a.html", "/a.html", None),
            ("/a.html?q#x", "/a.html", "/a.html", Some("q")),
            ("/a.html#x?q", "/a.html", "/a.html", None),
            ("/a.html?q?r", "/a.html", "/a.html", Some("q?r")),
            ("/a.html?", "/a.html", "/a.html", Some("")),
            ("/a%23b.html", "/a%23b.html", "/a#b.html", None),
            ("http://h#/secret.html", "/", "/", None),
            ("http://h?/secret.html", "/", "/", Some("/secret.html")),
            ("http://h/x.css#/y", "/x.css", "/x.css", None),
        ];
        for (target, raw_path, path, query) in table {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = ok(&raw);
            assert_eq!(r.raw_path, raw_path, "{target}");
            assert_eq!(&*r.path, path.as_bytes(), "{target}");
            assert_eq!(r.query, query, "{target}");
        }
    }

    #[test]
    fn host_values() {
        let valid = [
            "h",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]",
            "[v1.fe:80]",
            "xn--bcher-kva.example",
            "a%41b",
            "under_score~",
        ];
        for host in valid {
            assert!(valid_host(host.as_bytes()), "{host} should be valid");
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(ok(&raw).method, Method::Get, "{host}");
        }
        let invalid = [
            "",
            "user@host",
            "user:pass@host",
            "host/path",
            "a, b",
            "a,b",
            "a b",
            "host:port",
            "host:80:80",
            "host:65536",
            "host:000080",
            ":80",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[zz]",
            "[127.0.0.1]",
            "[v.x]",
            "a%4",
            "a%zz",
            "h\"",
            "h?q",
            "h#f",
            "ho\\st",
        ];
        for host in invalid {
            assert!(!valid_host(host.as_bytes()), "{host} should be invalid");
        }
        for host in ["", "user@host", "host/path", "a, b"] {
            for version in ["1.1", "1.0"] {
                let raw = format!("GET / HTTP/{version}\r\nHost: {host}\r\n\r\n");
                let e = parse(raw.as_bytes()).unwrap_err();
                assert_eq!(
                    (e.status, e.reason),
                    (Status::BadRequest, "invalid Host"),
                    "{raw:?}"
                );
            }
        }
        // HTTP/1.0 may omit Host altogether.
        assert_eq!(ok("GET / HTTP/1.0\r\n\r\n").method, Method::Get);
    }

    #[test]
    fn leading_empty_lines_are_skipped_up_to_a_bound() {
        for lead in ["\r\n", "\n", "\r\n\r\n", &"\r\n".repeat(MAX_EMPTY_LINES)] {
            let raw = format!("{lead}GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = ok(&raw);
            assert_eq!(&*r.path, b"/a.html");
            assert_eq!(
                r.head_len,
                raw.len(),
                "the skipped lines belong to this head"
            );
        }
        let many = "\r\n".repeat(MAX_EMPTY_LINES + 1);
        assert_eq!(
            err(&many),
            Status::BadRequest,
            "refused before any request line"
        );
        assert_eq!(parse("\r\n".repeat(MAX_EMPTY_LINES).as_bytes()), Ok(None));
        assert_eq!(parse(b"\r\n\r"), Ok(None));
        // What follows the empty lines still decides 505 against 400.
        assert_eq!(
            err("\r\nGET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            Status::HttpVersionNotSupported
        );
        let hint = line_hint(b"\r\n\r\nGET /x#y HTTP/9\r\n");
        assert_eq!(
            (hint.method, hint.path),
            (Some(&b"GET"[..]), Some(&b"/x"[..]))
        );
    }

    #[test]
    fn long_methods_are_refused_early() {
        let longest = "A".repeat(MAX_METHOD);
        let raw = format!("{longest} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(ok(&raw).method, Method::Other(&longest));
        let e = parse(format!("{longest}A").as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.reason),
            (Status::BadRequest, "method longer than 32 bytes")
        );
        assert_eq!(
            parse(longest.as_bytes()),
            Ok(None),
            "not refused before it is too long"
        );
    }

    #[test]
    fn options_for_a_path_or_the_server() {
        let r = ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (r.method, r.raw_path, &*r.path),
            (Method::Options, "*", &b""[..])
        );
        let r = ok("OPTIONS /a%20b HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((r.method, &*r.path), (Method::Options, &b"/a b"[..]));
        assert_eq!(
            err("OPTIONS /a%zz HTTP/1.1\r\nHost: h\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(err("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
    }

    #[test]
    fn expect_continue_with_a_body_closes_after_the_answer() {
        let r =
            ok("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(r.expect_continue && !r.keep_alive);
        let r = ok(
            "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(r.expect_continue && !r.keep_alive);
        // Nothing to wait for without a body; HTTP/1.0 ignores it (RFC 9110 §10.1.1).
        let r = ok("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
        assert!(!r.expect_continue && r.keep_alive);
        let r = ok("GET / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(!r.expect_continue);
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
            ("GET / HTTP/1\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET / HTTP/2\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET / HTTP/1.\r\nHost: h\r\n\r\n", Status::BadRequest),
            ("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Status::BadRequest),
            // Framing is checked before the method: these would otherwise be 405s.
            (
                "DELETE / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BadRequest,
            ),
            (
                "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                Status::BadRequest,
            ),
            ("POST /é HTTP/1.1\r\nHost: h\r\n\r\n", Status::BadRequest),
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
    fn a_chunked_body_keeps_the_connection() {
        let r = ok("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.chunked);
        assert!(r.keep_alive, "the connection decodes the body and goes on");
        let r = ok("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(r.chunked);
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
            line_hint(b"GET /x?y#z HTTP/9\r\n"),
            LineHint {
                method: Some(b"GET"),
                path: Some(b"/x"),
                query: Some(b"y"),
                protocol: Some(b"HTTP/9"),
            }
        );
        assert_eq!(
            line_hint(b"\r\nBREW  /pot\xff"),
            LineHint {
                method: Some(b"BREW"),
                path: Some(b"/pot\xff"),
                query: None,
                protocol: None,
            }
        );
        assert_eq!(line_hint(b""), LineHint::default());
    }

    #[test]
    fn referer_and_user_agent_are_kept_as_sent_first_one_wins() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nreferer: http://a/\"\r\n\
                    User-Agent: x\xe9 y\r\nReferer: second\r\n\r\n";
        let req = parse(raw).unwrap().unwrap();
        assert_eq!(req.referer, Some(&b"http://a/\""[..]));
        assert_eq!(req.user_agent, Some(&b"x\xe9 y"[..]));
        let req = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((req.referer, req.user_agent), (None, None));
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
