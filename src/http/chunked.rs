//! A sans-I/O decoder for the chunked transfer coding (RFC 9112 §7.1) of request bodies that are
//! read only to be thrown away: it checks the syntax, counts, and finds where the body ends, so
//! the connection can keep going after a well-formed chunked body and the next request parses.
//!
//! The decoder keeps no bytes: it is a state machine fed slices in whatever pieces the socket
//! delivers them, and it stops exactly at the end of the body (the bytes after it belong to the
//! next request). It is strict where leniency has caused request smuggling between proxies and
//! servers: lines end with CRLF only (a bare CR or LF is an error), whitespace is allowed only
//! where the grammar puts `BWS` (around the `;` and `=` of an extension, never after a bare
//! size), chunk data must be followed by CRLF, and trailer fields must be well-formed. What it
//! accepts is bounded: at most `limit` bytes of data (the body as decoded) and at most `limit`
//! bytes of framing (size lines, extensions, trailers), so a client cannot make the server read
//! forever with tiny chunks or endless extensions. It does no I/O and allocates nothing.

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The coding is malformed (400 and close); the reason is for the log.
    Syntax(&'static str),
    /// More than `limit` bytes of data or of framing (413 and close): the bytes announced or seen.
    TooLarge(u64),
}

/// How far the body has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every byte given was part of the body; more is needed.
    NeedMore,
    /// The body ended after this many bytes of the last input; the rest is the next request.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// In the chunk size's hex digits.
    Size,
    /// Whitespace after the size or after an extension: only `;` may follow (BWS ";").
    ExtWs,
    /// After `;`: whitespace or an extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name: `=` or `;` may follow.
    ExtNameWs,
    /// After `=`: whitespace, a token or a quoted string.
    ExtValueStart,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a quoted-string value: whitespace, `;` or the end of the line.
    ExtQuotedEnd,
    /// After a backslash in a quoted string.
    ExtQuotedEscape,
    /// After a CR ending a size line: LF must come.
    SizeLf,
    /// In chunk data; this many bytes remain.
    Data(u64),
    /// After chunk data: CR must come.
    DataCr,
    /// After chunk data and CR: LF must come.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After a CR ending a trailer line: LF must come.
    TrailerLf,
    /// After the CR of the final empty line: LF must come, and the body ends.
    EndLf,
    /// The body has ended.
    Done,
}

/// Decodes (and discards) one chunked body. See the module documentation.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The chunk size being read, or the data of the current chunk.
    size: u64,
    /// Data bytes announced so far (chunk sizes summed).
    data: u64,
    /// Framing bytes seen so far (everything that is not data).
    framing: u64,
    limit: u64,
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `qdtext` of RFC 9110 §5.6.4, besides the backslash and the closing quote.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

fn syntax(reason: &'static str) -> Error {
    Error::Syntax(reason)
}

impl Decoder {
    /// A decoder accepting at most `limit` bytes of data and `limit` bytes of framing.
    pub fn new(limit: u64) -> Decoder {
        Decoder {
            state: State::SizeStart,
            size: 0,
            data: 0,
            framing: 0,
            limit,
        }
    }

    /// Feeds the next bytes of the body. After an error the decoder must not be fed again.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, Error> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(left) = self.state {
                // Skip data in bulk: it is not looked at.
                let n = left.min((input.len() - i) as u64);
                i += n as usize;
                self.state = if n == left {
                    State::DataCr
                } else {
                    State::Data(left - n)
                };
                continue;
            }
            self.framing += 1;
            if self.framing > self.limit {
                return Err(Error::TooLarge(self.data + self.framing));
            }
            let b = input[i];
            i += 1;
            self.state = self.step(b)?;
            if self.state == State::Done {
                return Ok(Progress::Done(i));
            }
        }
        Ok(Progress::NeedMore)
    }

    /// The state after one framing byte.
    fn step(&mut self, b: u8) -> Result<State, Error> {
        use State::*;
        let ws = b == b' ' || b == b'\t';
        if b == b'\n' && !matches!(self.state, SizeLf | DataLf | TrailerLf | EndLf) {
            return Err(syntax("bare LF in chunked framing (lines end with CRLF)"));
        }
        Ok(match (self.state, b) {
            (SizeStart, _) => match hex(b) {
                Some(d) if self.data + d > self.limit => {
                    return Err(Error::TooLarge(self.data + d));
                }
                Some(d) => {
                    self.size = d;
                    Size
                }
                None => return Err(syntax("chunk size is not a hex number")),
            },
            (Size, _) if hex(b).is_some() => {
                // Checked at each digit, so endless digits stop at the limit and never overflow.
                self.size = self.size.saturating_mul(16) + hex(b).unwrap_or_default();
                let announced = self.data.saturating_add(self.size);
                if announced > self.limit {
                    return Err(Error::TooLarge(announced));
                }
                Size
            }
            (Size | ExtWs | ExtQuotedEnd, _) if ws => ExtWs,
            (Size | ExtWs | ExtName | ExtNameWs | ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
            (Size | ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
            (Size, _) => return Err(syntax("invalid byte in chunk size")),
            (ExtWs, _) => return Err(syntax("whitespace in a chunk-size line not before ';'")),
            (ExtNameStart, _) if ws => ExtNameStart,
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtNameStart, _) => return Err(syntax("chunk extension without a name")),
            (ExtName | ExtNameWs, _) if ws => ExtNameWs,
            (ExtName | ExtNameWs, b'=') => ExtValueStart,
            (ExtName | ExtNameWs, _) => return Err(syntax("invalid chunk extension name")),
            (ExtValueStart, _) if ws => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtValueStart, _) => return Err(syntax("chunk extension without a value")),
            (ExtToken, _) if ws => ExtWs,
            (ExtToken, _) => return Err(syntax("invalid chunk extension value")),
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
            (ExtQuoted, _) => return Err(syntax("invalid byte in a quoted chunk extension")),
            (ExtQuotedEscape, _) if b == b'\t' || (b' '..=0x7e).contains(&b) || b >= 0x80 => {
                ExtQuoted
            }
            (ExtQuotedEscape, _) => return Err(syntax("invalid escape in a chunk extension")),
            (ExtQuotedEnd, _) => return Err(syntax("invalid byte after a quoted chunk extension")),
            (SizeLf, b'\n') if self.size == 0 => TrailerStart,
            (SizeLf, b'\n') => {
                self.data += self.size;
                Data(self.size)
            }
            (SizeLf, _) => return Err(syntax("chunk-size line not ended by CRLF")),
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(syntax("chunk data longer than its size")),
            (DataLf, b'\n') => SizeStart,
            (DataLf, _) => return Err(syntax("chunk data not ended by CRLF")),
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerStart, _) => return Err(syntax("invalid trailer field")),
            (TrailerName, b':') => TrailerValue,
            (TrailerName, _) => return Err(syntax("invalid trailer field name")),
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if b == b'\t' || (b >= b' ' && b != 0x7f) => TrailerValue,
            (TrailerValue, _) => return Err(syntax("invalid byte in a trailer field")),
            (TrailerLf, b'\n') => TrailerStart,
            (TrailerLf, _) => return Err(syntax("trailer field not ended by CRLF")),
            (EndLf, b'\n') => Done,
            (EndLf, _) => return Err(syntax("chunked body not ended by CRLF")),
            (Data(_) | Done, _) => return Err(syntax("chunked body read past its end")),
        })
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole, then again byte by byte: both must give the same answer, since the
    /// socket may split the body anywhere.
    fn decode(input: &[u8], limit: u64) -> Result<Progress, Error> {
        let whole = Decoder::new(limit).feed(input);
        let mut d = Decoder::new(limit);
        let mut split = Ok(Progress::NeedMore);
        for (i, b) in input.iter().enumerate() {
            match d.feed(std::slice::from_ref(b)) {
                Ok(Progress::Done(1)) => {
                    split = Ok(Progress::Done(i + 1));
                    break;
                }
                Ok(Progress::NeedMore) => {}
                other => {
                    split = other;
                    break;
                }
            }
        }
        assert_eq!(whole, split, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn well_formed_bodies_end_where_they_end() {
        let table: &[&str] = &[
            "0\r\n\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            "A\r\n0123456789\r\n0\r\n\r\n",
            "a\r\n0123456789\r\n000\r\n\r\n",
            "5;name=value\r\nhello\r\n0\r\n\r\n",
            "5 ; name = value ; flag\r\nhello\r\n0;last\r\n\r\n",
            "5;q=\"a \\\" b;c\"\r\nhello\r\n0\r\n\r\n",
            "5;a=\"x\" ; b=y\r\nhello\r\n0\r\n\r\n",
            "0\r\nExpires: never\r\nX-Sum:\tabc \r\n\r\n",
            // Data is opaque: CRLFs and anything else inside it are data.
            "4\r\n\r\n\r\n\r\n0\r\n\r\n",
        ];
        for body in table {
            let next = "GET / HTTP/1.1\r\n";
            let input = format!("{body}{next}");
            assert_eq!(
                decode(input.as_bytes(), 1000),
                Ok(Progress::Done(body.len())),
                "{body:?}"
            );
        }
    }

    #[test]
    fn incomplete_bodies_need_more() {
        for body in [
            "",
            "5",
            "5\r",
            "5\r\nhel",
            "5\r\nhello\r\n",
            "0\r\n",
            "0\r\nX: y\r\n",
        ] {
            assert_eq!(
                decode(body.as_bytes(), 1000),
                Ok(Progress::NeedMore),
                "{body:?}"
            );
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let table: &[&str] = &[
            "\r\n",
            "x\r\n",
            "-5\r\nhello\r\n0\r\n\r\n",
            "0x5\r\nhello\r\n0\r\n\r\n",
            "+5\r\nhello\r\n0\r\n\r\n",
            " 5\r\nhello\r\n0\r\n\r\n",
            "5 \r\nhello\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
            "5\rhello\r\n0\r\n\r\n",
            "5\r\nhello\n0\r\n\r\n",
            "5\r\nhelloXX0\r\n\r\n",
            "5\r\nhello world\r\n0\r\n\r\n",
            "5;\r\nhello\r\n0\r\n\r\n",
            "5;=v\r\nhello\r\n0\r\n\r\n",
            "5;n=\r\nhello\r\n0\r\n\r\n",
            "5;n=a b\r\nhello\r\n0\r\n\r\n",
            "5;n v\r\nhello\r\n0\r\n\r\n",
            "5;n=\"unterminated\r\nhello\r\n0\r\n\r\n",
            "5;n=\"a\"b\r\nhello\r\n0\r\n\r\n",
            "5;n=\"a\" \r\nhello\r\n0\r\n\r\n",
            "5;n \r\nhello\r\n0\r\n\r\n",
            "5;n@=v\r\nhello\r\n0\r\n\r\n",
            "5,6\r\nhello\r\n0\r\n\r\n",
            "0\r\nNoColon\r\n\r\n",
            "0\r\n: empty name\r\n\r\n",
            "0\r\nX : y\r\n\r\n",
            "0\r\nX: a\x01b\r\n\r\n",
            "0\r\nX: y\n\r\n",
            "0\r\n\n",
            "0\r\n\rX",
        ];
        for body in table {
            assert!(
                matches!(decode(body.as_bytes(), 1000), Err(Error::Syntax(_))),
                "{body:?} gave {:?}",
                decode(body.as_bytes(), 1000)
            );
        }
    }

    #[test]
    fn data_and_framing_are_bounded() {
        // Data: the announced size is refused as soon as it exceeds the limit, before any data.
        assert_eq!(decode(b"65\r\n", 100), Err(Error::TooLarge(101)));
        assert_eq!(decode(b"64\r\n", 100), Ok(Progress::NeedMore));
        let two = format!("32\r\n{}\r\n33\r\n", "x".repeat(50));
        assert_eq!(decode(two.as_bytes(), 100), Err(Error::TooLarge(101)));
        // A size with endless digits never overflows: it is refused at the limit.
        let huge = format!("{}\r\n", "f".repeat(40));
        assert!(matches!(
            decode(huge.as_bytes(), 100),
            Err(Error::TooLarge(_))
        ));
        // Framing: long extensions, endless leading zeros or trailers count too.
        let ext = format!("1;{}\r\n", "e".repeat(200));
        assert!(matches!(
            decode(ext.as_bytes(), 100),
            Err(Error::TooLarge(_))
        ));
        let zeros = "0".repeat(200);
        assert!(matches!(
            decode(zeros.as_bytes(), 100),
            Err(Error::TooLarge(_))
        ));
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(50));
        assert!(matches!(
            decode(trailers.as_bytes(), 100),
            Err(Error::TooLarge(_))
        ));
        // Exactly at the limit is fine.
        let full = format!("64\r\n{}\r\n0\r\n\r\n", "x".repeat(100));
        assert_eq!(decode(full.as_bytes(), 100), Ok(Progress::Done(full.len())));
    }
}
