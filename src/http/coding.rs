//! Content codings: the three a precompressed sidecar can carry (`br`, `zstd`, `gzip`), and the
//! choice among the variants a file has, from the request's `Accept-Encoding` (RFC 9110 §12.5.3).
//!
//! The client's q-values rank first; `q=0` refuses a coding; among equal q-values the server
//! prefers br, then zstd, then gzip (smallest first). The unencoded file (`identity`) is always
//! acceptable unless refused, and wins over a coding the client ranks lower. Parsing is done in
//! place, without allocating, and only when the file has a variant to choose.

/// A content coding a sidecar file can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli, `app.js.br`.
    Br,
    /// Zstandard, `app.js.zst`.
    Zstd,
    /// gzip, `app.js.gz`.
    Gzip,
}

impl Coding {
    /// Every coding, in the server's order of preference.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token of `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of the sidecar file that holds this coding, dot included.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// Position in [`Coding::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A q-value in thousandths (`q=0.5` is 500); 1000 when absent.
type Q = u16;

/// Reads a q-value (`0`, `0.5`, `1.000`); `None` when malformed, which RFC 9110 §12.4.2 leaves
/// to the server: the element is then ignored.
fn parse_q(s: &[u8]) -> Option<Q> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Q = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| Q::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// What the client said about each coding: `None` when it did not name it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Accepted {
    codings: [Option<Q>; 3],
    identity: Option<Q>,
    any: Option<Q>,
}

fn accepted(header: &[u8]) -> Accepted {
    let mut acc = Accepted::default();
    for element in header.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let mut q = Some(1000);
        for param in parts {
            let param = param.trim_ascii();
            if let Some(v) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            {
                q = parse_q(v.trim_ascii());
            }
        }
        let Some(q) = q else { continue };
        let slot = if name.eq_ignore_ascii_case(b"identity") {
            &mut acc.identity
        } else if name == b"*" {
            &mut acc.any
        } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
            &mut acc.codings[Coding::Gzip.index()]
        } else if name.eq_ignore_ascii_case(b"br") {
            &mut acc.codings[Coding::Br.index()]
        } else if name.eq_ignore_ascii_case(b"zstd") {
            &mut acc.codings[Coding::Zstd.index()]
        } else {
            continue;
        };
        // A coding named twice keeps its best q-value.
        *slot = Some(slot.map_or(q, |old: Q| old.max(q)));
    }
    acc
}

/// The coding to answer with, given the request's `Accept-Encoding` values and which variants
/// the file has (`available[c.index()]`); `None` means the unencoded file.
pub fn choose(accept_encoding: Option<&[u8]>, available: [bool; 3]) -> Option<Coding> {
    let header = accept_encoding?;
    let acc = accepted(header);
    let mut best: Option<(Coding, Q)> = None;
    for c in Coding::ALL {
        let q = acc.codings[c.index()].or(acc.any).unwrap_or(0);
        // Strictly greater: at equal q the earlier (preferred) coding stays.
        if available[c.index()] && q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    let (coding, q) = best?;
    // identity is acceptable by default; it beats a coding only when the client ranks it higher.
    match acc.identity {
        Some(id) if id > q => None,
        _ => Some(coding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    const ALL3: [bool; 3] = [true, true, true];

    #[test]
    fn q_values() {
        for (s, want) in [
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.25", Some(250)),
            ("0.001", Some(1)),
            ("1.5", None),
            ("2", None),
            ("0.0001", None),
            ("", None),
            ("x", None),
        ] {
            assert_eq!(parse_q(s.as_bytes()), want, "{s}");
        }
    }

    #[test]
    fn choices() {
        // (Accept-Encoding, which variants exist [br, zstd, gzip], chosen)
        let table: &[(Option<&str>, [bool; 3], Option<Coding>)] = &[
            (None, ALL3, None),
            (Some(""), ALL3, None),
            (Some("gzip"), ALL3, Some(Gzip)),
            (Some("gzip, deflate, br"), ALL3, Some(Br)),
            (Some("gzip, deflate, br, zstd"), ALL3, Some(Br)),
            (Some("zstd, gzip"), ALL3, Some(Zstd)),
            (Some("gzip, br"), [false, true, true], Some(Gzip)),
            (Some("br;q=0.5, gzip"), ALL3, Some(Gzip)),
            (Some("br;q=0, gzip;q=0.1"), ALL3, Some(Gzip)),
            (Some("br;q=0"), ALL3, None),
            (Some("*"), ALL3, Some(Br)),
            (Some("*;q=0.5, br;q=0"), ALL3, Some(Zstd)),
            (Some("*;q=0"), ALL3, None),
            (Some("gzip;q=0.5, identity"), ALL3, None),
            (Some("gzip, identity;q=0.5"), ALL3, Some(Gzip)),
            (Some("gzip;q=1, identity;q=1"), ALL3, Some(Gzip)),
            (Some("x-gzip"), ALL3, Some(Gzip)),
            (Some("GZIP;Q=0.8 , BR;q=0.9"), ALL3, Some(Br)),
            (Some("gzip;q=2"), ALL3, None),
            (Some("compress, deflate"), ALL3, None),
            (Some("br"), [false, false, true], None),
            (Some(",,;;=,"), ALL3, None),
        ];
        for (header, available, want) in table {
            assert_eq!(
                choose(header.map(str::as_bytes), *available),
                *want,
                "{header:?} {available:?}"
            );
        }
    }
}
