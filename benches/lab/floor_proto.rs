//! What the two floor responders ([`crate::floor_uring`], [`crate::floor_epoll`]) share, and
//! nothing else: the fixed response they send, counting request heads in a byte stream that may
//! split a `\r\n\r\n` across reads, the per-connection account of response bytes still owed, and
//! the listening socket. All but [`listen`] is pure code, tested under `cargo test`
//! (`tests/lab.rs` includes this file).
//!
//! A floor answers every request head it sees with the same response: the lab's file with a head
//! of exactly the length uring-httpd writes for it (the same header names, values of the same
//! widths), so that the bytes on the wire match and the difference in CPU per request is the
//! servers' own work. It parses nothing but the `\r\n\r\n` that ends a head.

use std::net::TcpListener;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::floor_core::{Answers, Turn};

/// How many copies of the response [`Reply`] holds back to back: the most one send carries.
pub const COPIES: usize = 32;

/// The fixed response, repeated [`COPIES`] times in one buffer so that any run of owed bytes
/// (from inside one response to the end of up to [`COPIES`] of them) is one contiguous slice:
/// a batch of pipelined requests is answered with one send, without copying per request.
pub struct Reply {
    one: usize,
    buf: Box<[u8]>,
}

impl Reply {
    /// `head` (ending in the blank line) followed by `body`.
    pub fn new(head: &[u8], body: &[u8]) -> Reply {
        let mut one = head.to_vec();
        one.extend_from_slice(body);
        Reply {
            one: one.len(),
            buf: one.repeat(COPIES).into_boxed_slice(),
        }
    }

    /// The response for the file at `path`, its head shaped like uring-httpd's (see [`head`]).
    pub fn for_file(path: &Path) -> Result<Reply, String> {
        let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let h = head(content_type(name), body.len(), mtime, SystemTime::now());
        Ok(Reply::new(h.as_bytes(), &body))
    }

    /// Bytes in one response.
    pub fn len(&self) -> usize {
        self.one
    }

    /// The next bytes to send for `owed`: from where the first owed response was left off to the
    /// end of at most [`COPIES`] responses. Empty when nothing is owed.
    pub fn chunk(&self, owed: &Owed) -> &[u8] {
        let whole = owed.responses.min(COPIES as u64) as usize;
        if whole == 0 {
            return &[];
        }
        &self.buf[owed.offset..whole * self.one]
    }
}

/// The media type a floor announces, by file extension (the lab's three fixture kinds).
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A response head with the header names uring-httpd sends for a cached file, and values of the
/// same widths (`Server: uring-floor/0.1.0` is as long as `uring-httpd/0.1.0`; the ETag has
/// uring-httpd's `"mtime-secs.mtime-nanos-length"` hex shape), so a floor's response has the
/// same length on the wire as the real server's.
pub fn head(content_type: &str, len: usize, mtime: SystemTime, now: SystemTime) -> String {
    let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "HTTP/1.1 200 OK\r\n\
         Server: uring-floor/0.1.0\r\n\
         Date: {}\r\n\
         Content-Type: {content_type}\r\n\
         Last-Modified: {}\r\n\
         ETag: \"{:08x}.{:08x}-{len:x}\"\r\n\
         Accept-Ranges: bytes\r\n\
         Content-Length: {len}\r\n\
         Connection: keep-alive\r\n\r\n",
        httpdate::fmt_http_date(now),
        httpdate::fmt_http_date(mtime),
        since.as_secs() as u32,
        since.subsec_nanos(),
    )
}

/// Counts request heads (`\r\n\r\n` terminators) in a stream fed in pieces; a terminator split
/// across two pieces counts once.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadCounter {
    /// How many bytes of `\r\n\r\n` the stream currently ends with.
    matched: u8,
}

impl HeadCounter {
    /// Heads completed by `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> u64 {
        const END: &[u8; 4] = b"\r\n\r\n";
        let mut m = self.matched as usize;
        let mut heads = 0;
        for &b in bytes {
            if b == END[m] {
                m += 1;
                if m == END.len() {
                    heads += 1;
                    m = 0;
                }
            } else {
                // The only proper prefix of the terminator that can end here is a lone `\r`.
                m = usize::from(b == b'\r');
            }
        }
        self.matched = m as u8;
        heads
    }
}

/// The response bytes a connection still owes: `responses` not yet fully sent, of which the first
/// has its first `offset` bytes sent already. Since every response is the same, this pair is the
/// whole of the unsent data; [`Reply::chunk`] turns it into bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owed {
    pub responses: u64,
    pub offset: usize,
}

impl Owed {
    pub fn add(&mut self, responses: u64) {
        self.responses += responses;
    }

    /// Accounts for `bytes` sent, of responses `one` bytes long.
    pub fn sent(&mut self, bytes: usize, one: usize) {
        let done = self.offset + bytes;
        self.responses = self.responses.saturating_sub((done / one) as u64);
        self.offset = if self.responses == 0 { 0 } else { done % one };
    }
}

/// What a floor's connection owes its client, by the floor's mode: the fixed reply once per
/// request head, or (`core`) uring-httpd's answers ([`crate::floor_core`]).
pub enum Owes {
    Fixed { heads: HeadCounter, owed: Owed },
    Core(Answers),
}

impl Owes {
    pub fn new(core: bool) -> Owes {
        match core {
            true => Owes::Core(Answers::default()),
            false => Owes::Fixed {
                heads: HeadCounter::default(),
                owed: Owed::default(),
            },
        }
    }

    /// Takes received bytes: counts their heads, or keeps them for [`Owes::answer`].
    pub fn take(&mut self, bytes: &[u8]) {
        match self {
            Owes::Fixed { heads, owed } => owed.add(heads.feed(bytes)),
            Owes::Core(a) => a.take(bytes),
        }
    }

    /// `core`: answers the complete heads taken. Never while a send of [`Owes::chunk`] is in
    /// flight: the bytes may move.
    pub fn answer(&mut self, turn: &Turn<'_>) {
        if let Owes::Core(a) = self {
            a.answer(turn);
        }
    }

    /// The next bytes to send (empty when nothing is owed).
    pub fn chunk<'a>(&'a self, reply: &'a Reply) -> &'a [u8] {
        match self {
            Owes::Fixed { owed, .. } => reply.chunk(owed),
            Owes::Core(a) => a.unsent(),
        }
    }

    /// Accounts for `n` bytes of [`Owes::chunk`] sent.
    pub fn sent(&mut self, n: usize, reply: &Reply) {
        match self {
            Owes::Fixed { owed, .. } => owed.sent(n, reply.len()),
            Owes::Core(a) => a.sent(n),
        }
    }

    /// Whether everything is sent and the last response said the connection ends (`core`).
    pub fn finished(&self) -> bool {
        matches!(self, Owes::Core(a) if a.finished())
    }
}

/// A listening socket on 127.0.0.1:`port` (0: any free port) with uring-httpd's backlog.
pub fn listen(port: u16, nonblocking: bool) -> Result<TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    let err = |what: &str, e: std::io::Error| format!("listen on 127.0.0.1:{port}: {what}: {e}");
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| err("socket", e))?;
    s.set_reuse_address(true)
        .map_err(|e| err("SO_REUSEADDR", e))?;
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .map_err(|e| err("bind", e))?;
    s.listen(4096).map_err(|e| err("listen", e))?;
    s.set_nonblocking(nonblocking)
        .map_err(|e| err("O_NONBLOCK", e))?;
    Ok(s.into())
}

/// The start-up line on stderr, in the form the lab reads from uring-httpd
/// ([`crate::servers::listening_addr`]).
pub fn announce(name: &str, listener: &TcpListener, reply: &Reply) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "{name} listening on http://{addr}/ (fixed response of {} bytes)",
        reply.len()
    );
    Ok(())
}

/// Makes the floor die with the lab (it runs until SIGTERM otherwise) and keeps a vanished
/// peer's SIGPIPE from killing it.
pub fn bound_to_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and signal(SIGPIPE, SIG_IGN) take integer arguments only
    // and change process attributes; no memory is shared.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Sets TCP_NODELAY on an accepted socket (as nginx's `tcp_nodelay on` and uring-httpd do).
pub fn nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed; a bad fd only yields an error.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    // Bench targets are built with cfg(test) but without their #[test] functions.
    #![allow(unused_imports)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn heads_across_pieces() {
        let mut h = HeadCounter::default();
        assert_eq!(h.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        let three = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        assert_eq!(h.feed(three), 3);
        // Split inside the terminator, at every position.
        for cut in 1..4 {
            let mut h = HeadCounter::default();
            let msg = b"GET / HTTP/1.1\r\n\r\n";
            let at = msg.len() - 4 + cut;
            assert_eq!(h.feed(&msg[..at]) + h.feed(&msg[at..]), 1, "cut {cut}");
        }
        let mut h = HeadCounter::default();
        assert_eq!(h.feed(b"\r\r\n\r\r\n\r\n"), 1);
        assert_eq!(h.feed(b"\n\n\r\n"), 0);
        assert_eq!(h.feed(b"\r\n"), 1);
    }

    #[test]
    fn owed_and_chunks() {
        let r = Reply::new(b"H\r\n\r\n", b"body");
        assert_eq!(r.len(), 9);
        let mut o = Owed::default();
        assert!(r.chunk(&o).is_empty());
        o.add(2);
        assert_eq!(r.chunk(&o).len(), 18);
        o.sent(5, r.len());
        assert_eq!(
            o,
            Owed {
                responses: 2,
                offset: 5
            }
        );
        assert_eq!(r.chunk(&o), b"bodyH\r\n\r\nbody");
        o.sent(4, r.len());
        assert_eq!(
            o,
            Owed {
                responses: 1,
                offset: 0
            }
        );
        o.add(COPIES as u64 + 5);
        assert_eq!(r.chunk(&o).len(), COPIES * 9);
        o.sent(COPIES * 9, r.len());
        assert_eq!(o.responses, 6);
        o.sent(6 * 9, r.len());
        assert_eq!(o, Owed::default());
    }

    #[test]
    fn head_has_uring_httpds_length() {
        // uring-httpd 0.1.0's head for the lab's 2048-byte html file is 268 bytes long.
        let t = UNIX_EPOCH + Duration::new(1_795_496_000, 123_456_789);
        let h = head(content_type("2k.html"), 2048, t, t);
        assert_eq!(h.len(), 268, "{h}");
        assert!(h.ends_with("Connection: keep-alive\r\n\r\n"));
        assert_eq!(content_type("a.png"), "image/png");
    }
}
