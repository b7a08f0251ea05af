//! Status codes, their small HTML error bodies, and response-head rendering.
//!
//! A [`Head`] writes the status line and the headers every response carries (`Server`, `Date`,
//! then whatever the caller adds, then `Content-Length` and `Connection`) into a reusable buffer.
//!
//! Response buffers come from a per-thread pool ([`buffer`]) and go back to it after their write
//! ([`recycle`]): a head plus a cached body costs no allocation in the steady state.

use super::date;

/// The `Server` header's value: the crate name and version.
pub const SERVER: &str = concat!("uring-httpd/", env!("CARGO_PKG_VERSION"));

/// The Content-Type of the pages the server writes itself (errors, redirects, listings) and of
/// a custom error page whose extension has no type.
pub const HTML: &str = "text/html; charset=utf-8";

macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal;)*) => {
        /// The statuses this server answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Status { $(#[doc = concat!($code, " ", $reason, ".")] $name),* }

        impl Status {
            /// The numeric status code.
            pub fn code(self) -> u16 {
                match self { $(Status::$name => $code),* }
            }
            /// The status with this numeric code, if the server answers with it.
            pub fn from_code(code: u16) -> Option<Status> {
                match code { $($code => Some(Status::$name),)* _ => None }
            }
            fn line(self) -> &'static str {
                match self { $(Status::$name => concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n")),* }
            }
            /// The short HTML page sent with an error status.
            pub fn error_page(self) -> &'static [u8] {
                match self {
                    $(Status::$name => concat!(
                        "<!DOCTYPE html>\n<html><head><title>", $code, " ", $reason,
                        "</title></head>\n<body><h1>", $code, " ", $reason,
                        "</h1><hr><p>uring-httpd</p></body></html>\n"
                    ).as_bytes()),*
                }
            }
        }
    };
}

impl Status {
    /// Whether this status reports the server's own failure, whose cause goes to stderr. Every
    /// 5xx except 505: that one says the client spoke another HTTP version, and said on stderr
    /// at the rate such requests come, it would let any client flood it.
    pub fn is_server_fault(self) -> bool {
        self.code() >= 500 && self != Status::HttpVersionNotSupported
    }
}

statuses! {
    Ok = 200 "OK";
    NoContent = 204 "No Content";
    PartialContent = 206 "Partial Content";
    MovedPermanently = 301 "Moved Permanently";
    NotModified = 304 "Not Modified";
    BadRequest = 400 "Bad Request";
    Forbidden = 403 "Forbidden";
    NotFound = 404 "Not Found";
    MethodNotAllowed = 405 "Method Not Allowed";
    RequestTimeout = 408 "Request Timeout";
    PayloadTooLarge = 413 "Content Too Large";
    UriTooLong = 414 "URI Too Long";
    RangeNotSatisfiable = 416 "Range Not Satisfiable";
    HeaderFieldsTooLarge = 431 "Request Header Fields Too Large";
    InternalServerError = 500 "Internal Server Error";
    ServiceUnavailable = 503 "Service Unavailable";
    HttpVersionNotSupported = 505 "HTTP Version Not Supported";
}

thread_local! {
    /// Response buffers of this worker thread, handed back after their write completes, so the
    /// steady state allocates none (see [`buffer`] and [`recycle`]).
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bufs: Vec::new(), bytes: 0 })
    };
}

/// A thread's idle response buffers, and their capacity in bytes.
#[derive(Default)]
struct Pool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

/// Capacity of a new response buffer: a head plus a small cached file in one write.
const BUFFER: usize = 4096;
/// Capacity a thread keeps; beyond it buffers are freed. That is 1,024 buffers of [`BUFFER`]
/// bytes (a head and a body of up to 2 KiB or so), as many as [`crate::conn`]'s answers in flight
/// at 1,024 connections on the io_uring engine; of buffers grown by bigger bodies, fewer.
const POOL_BYTES: usize = 1024 * BUFFER;
/// Buffers larger than this are freed rather than kept (a head and an uncached body below 64 KiB
/// read behind it, the io_uring engine's small-file path, fit).
const KEEP_MAX: usize = 80 * 1024;

/// An empty buffer for a response, from this thread's pool when it has one.
pub fn buffer() -> Vec<u8> {
    POOL.with_borrow_mut(|p| {
        let buf = p.bufs.pop()?;
        debug_assert!(p.bytes >= buf.capacity());
        p.bytes -= buf.capacity();
        Some(buf)
    })
    .unwrap_or_else(|| Vec::with_capacity(BUFFER))
}

/// Returns a response buffer to this thread's pool once its bytes are on the wire.
pub fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_MAX || buf.capacity() == 0 {
        return;
    }
    buf.clear();
    POOL.with_borrow_mut(|p| {
        if p.bytes + buf.capacity() <= POOL_BYTES {
            p.bytes += buf.capacity();
            p.bufs.push(buf);
        }
    });
}

/// Frees this thread's idle response buffers (a worker giving memory back after a drain).
pub fn release_buffers() {
    drop(POOL.take());
}

/// A response head being rendered into a buffer.
pub struct Head {
    buf: Vec<u8>,
}

impl Head {
    /// Starts a head in `buf` (cleared first, so a connection can reuse one allocation).
    pub fn new(mut buf: Vec<u8>, status: Status) -> Head {
        buf.clear();
        buf.extend_from_slice(status.line().as_bytes());
        buf.extend_from_slice(b"Server: ");
        buf.extend_from_slice(SERVER.as_bytes());
        buf.extend_from_slice(b"\r\nDate: ");
        date::with_now(|_, d| buf.extend_from_slice(d.as_bytes()));
        buf.extend_from_slice(b"\r\n");
        Head { buf }
    }

    /// Adds a header line.
    pub fn header(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a header line whose value is a decimal number.
    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.header(name, itoa::Buffer::new().format(value).as_bytes())
    }

    /// Adds `Content-Length` and `Connection`, ends the head and returns the bytes.
    pub fn finish(mut self, content_length: u64, keep_alive: bool) -> Vec<u8> {
        self.header_u64("Content-Length", content_length);
        self.finish_without_length(keep_alive)
    }

    /// Ends a head that must not carry `Content-Length` (a 304: RFC 9110 8.6 allows it only when
    /// it equals the 200's, and caches may take it for the representation's length).
    pub fn finish_without_length(mut self, keep_alive: bool) -> Vec<u8> {
        self.buf.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_the_headers_every_response_carries() {
        let mut h = Head::new(Vec::new(), Status::NotFound);
        h.header("Content-Type", b"text/html; charset=utf-8");
        let text = String::from_utf8(h.finish(12, true)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nServer: uring-httpd/"),
            "{text}"
        );
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(
            text.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Content-Length: 12\r\nConnection: keep-alive\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn the_buffer_pool_keeps_its_budget_and_gives_everything_back() {
        release_buffers();
        let many: Vec<_> = (0..POOL_BYTES / BUFFER + 10).map(|_| buffer()).collect();
        for mut b in many {
            b.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            recycle(b);
        }
        let (kept, bytes) = POOL.with_borrow(|p| (p.bufs.len(), p.bytes));
        assert_eq!(
            kept,
            POOL_BYTES / BUFFER,
            "every buffer up to the budget comes back"
        );
        assert_eq!(bytes, POOL_BYTES);
        let again = buffer();
        assert!(
            again.is_empty() && again.capacity() == BUFFER,
            "a kept buffer comes back empty"
        );
        assert_eq!(POOL.with_borrow(|p| p.bytes), POOL_BYTES - BUFFER);
        release_buffers();
        assert_eq!(POOL.with_borrow(|p| (p.bufs.len(), p.bytes)), (0, 0));
        // On an empty pool, so that only the size rules decide.
        recycle(Vec::with_capacity(KEEP_MAX + 1));
        recycle(Vec::new());
        assert_eq!(
            POOL.with_borrow(|p| p.bufs.len()),
            0,
            "outsized and empty: freed"
        );
        recycle(Vec::with_capacity(KEEP_MAX));
        assert_eq!(
            POOL.with_borrow(|p| p.bytes),
            KEEP_MAX,
            "the largest kept size"
        );
        release_buffers();
    }

    #[test]
    fn error_pages_name_the_status() {
        let page = std::str::from_utf8(Status::Forbidden.error_page()).unwrap();
        assert!(page.contains("<title>403 Forbidden</title>"), "{page}");
        assert_eq!(Status::HeaderFieldsTooLarge.code(), 431);
    }
}
