//! HTTP/1.1 protocol logic with no I/O: request parsing ([`request`]), chunked request bodies
//! ([`chunked`]), content-coding negotiation ([`coding`]), status codes and response-head rendering ([`response`]), and the per-thread
//! cached `Date` value ([`date`]).
//!
//! Engines hand this module bytes and get back plain values; nothing here knows about sockets.

pub mod chunked;
pub mod coding;
pub mod date;
pub mod request;
pub mod response;

pub use request::{Method, ParseError, Request, Version, parse};
pub use response::{Head, Status};

/// `bytes` percent-encoded for a URL: ASCII letters, digits and the bytes of `keep` as they are,
/// every other byte as `%XX`.
pub fn percent_encoded<'a>(bytes: &'a [u8], keep: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    bytes.iter().flat_map(move |&b| {
        let plain = b.is_ascii_alphanumeric() || keep.contains(&b);
        let coded = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
        let (bytes, n) = if plain { ([b, 0, 0], 1) } else { (coded, 3) };
        bytes.into_iter().take(n)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_only_what_it_is_told() {
        let enc =
            |b: &[u8], keep: &[u8]| String::from_utf8(super::percent_encoded(b, keep).collect());
        assert_eq!(enc(b"a b/%\xff", b"/").unwrap(), "a%20b/%25%FF");
        assert_eq!(enc(b"a b/", b"").unwrap(), "a%20b%2F");
    }
}
