//! Access-log lines: the request text a [`Record`] carries, and the four line formats
//! (`log.format`) that turn a record into one line.
//!
//! Everything here runs on the writer thread, never on a worker: a worker only copies the raw
//! fields of its request into one [`RequestText`] buffer (one allocation, and only when logging
//! is on), and the escaping, number and date rendering happen here. No line can break the log's
//! framing, whatever a client sends: every format escapes its fields so a record is one line and
//! a field never ends early.
//!
//! - `default`: `<RFC 3339 time> <ip> <path> <status> <method> <bytes> <duration>`, space-separated,
//!   bytes outside printable ASCII, the space and the backslash written as `\xnn`.
//! - `common` and `combined`: the NCSA layouts (`%h %l %u %t "%r" %>s %b`, combined adding
//!   `"%{Referer}i" "%{User-agent}i"`), escaped the way nginx does: `"`, `\` and every byte
//!   outside printable ASCII as `\xNN`. `%b` is the body's bytes, `-` when there were none.
//! - `json`: one object per line, with the keys of [`JSON_KEYS`]; a field the request did not
//!   carry is `null`; strings are JSON-escaped, and bytes that are not UTF-8 become U+FFFD.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Record;
use crate::config::LogFormat;
use crate::http::request::{LineHint, Request, Version};

/// The keys of a `json` line, in the order they are written.
pub const JSON_KEYS: [&str; 11] = [
    "time",
    "ip",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration_us",
    "referer",
    "user_agent",
];

/// The request's own fields a log line may show, in the order [`RequestText`] stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The method as sent.
    Method,
    /// The target's path as sent, still percent-encoded, without its query.
    Path,
    /// The query string as sent, without its `?`.
    Query,
    /// The request line's protocol, e.g. `HTTP/1.1`.
    Protocol,
    /// The `Referer` header's value.
    Referer,
    /// The `User-Agent` header's value.
    UserAgent,
}

const FIELDS: usize = 6;

/// The raw bytes of a request's loggable fields, copied into one buffer: building it is one
/// allocation, sized exactly, whatever the format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestText {
    buf: Vec<u8>,
    /// Where each [`Field`] ends in `buf`; it starts where the one before it ends.
    ends: [usize; FIELDS],
    /// Bit `i` is set when field `i` was carried by the request (an empty value included).
    present: u8,
}

impl RequestText {
    /// The fields in [`Field`] order; `None` for one the request did not carry.
    pub fn new(fields: [Option<&[u8]>; FIELDS]) -> RequestText {
        let len = fields.iter().flatten().map(|f| f.len()).sum();
        let mut text = RequestText {
            buf: Vec::with_capacity(len),
            ends: [0; FIELDS],
            present: 0,
        };
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                text.buf.extend_from_slice(f);
                text.present |= 1 << i;
            }
            text.ends[i] = text.buf.len();
        }
        text
    }

    /// The fields of a parsed request.
    pub fn of_request(req: &Request<'_>) -> RequestText {
        let protocol: &[u8] = match req.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        };
        RequestText::new([
            Some(req.method.as_str().as_bytes()),
            Some(req.raw_path.as_bytes()),
            req.query.map(str::as_bytes),
            Some(protocol),
            req.referer,
            req.user_agent,
        ])
    }

    /// What arrived of a request that was refused before it parsed: its request line's tokens.
    pub fn of_refused(hint: LineHint<'_>) -> RequestText {
        RequestText::new([
            hint.method,
            hint.path,
            hint.query,
            hint.protocol,
            None,
            None,
        ])
    }

    /// One field's bytes as sent, `None` when the request did not carry it.
    pub fn get(&self, field: Field) -> Option<&[u8]> {
        let i = field as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..self.ends[i]])
    }

    /// The method as sent.
    pub fn method(&self) -> Option<&[u8]> {
        self.get(Field::Method)
    }

    /// The target's path as sent.
    pub fn path(&self) -> Option<&[u8]> {
        self.get(Field::Path)
    }
}

/// Renders `r` as one line of `format`, newline included, replacing what `out` held.
pub fn render(format: LogFormat, r: &Record, out: &mut Vec<u8>) {
    out.clear();
    match format {
        LogFormat::Default => default_line(r, out),
        LogFormat::Common => ncsa_line(r, false, out),
        LogFormat::Combined => ncsa_line(r, true, out),
        LogFormat::Json => json_line(r, out),
    }
    out.push(b'\n');
}

/// `2026-11-23T20:10:23.123Z 127.0.0.1 /index.html 200 GET 2027 85us`.
fn default_line(r: &Record, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{} {} ",
        humantime::format_rfc3339_millis(r.time),
        r.ip
    );
    push_default(out, r.text.path());
    let _ = write!(out, " {} ", r.status);
    push_default(out, r.text.method());
    let _ = write!(out, " {} {}us", r.bytes, r.duration.as_micros());
}

/// The default format's escaping: a field is one space-free token, `-` when absent or empty (a
/// target of `?x` has an empty path), so a line always has its seven fields.
fn push_default(out: &mut Vec<u8>, field: Option<&[u8]>) {
    let Some(bytes) = field.filter(|b| !b.is_empty()) else {
        out.push(b'-');
        return;
    };
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// `127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 2326`, and for
/// combined ` "http://ref/" "agent"`.
fn ncsa_line(r: &Record, combined: bool, out: &mut Vec<u8>) {
    let _ = write!(out, "{} - - [", r.ip);
    push_ncsa_time(out, r.time);
    out.extend_from_slice(b"] \"");
    let t = &r.text;
    match t.method() {
        Some(method) => {
            push_ncsa(out, method);
            if let Some(path) = t.path() {
                out.push(b' ');
                push_ncsa(out, path);
                if let Some(query) = t.get(Field::Query) {
                    out.push(b'?');
                    push_ncsa(out, query);
                }
            }
            if let Some(protocol) = t.get(Field::Protocol) {
                out.push(b' ');
                push_ncsa(out, protocol);
            }
        }
        None => out.push(b'-'),
    }
    let _ = write!(out, "\" {} ", r.status);
    match r.body_bytes {
        0 => out.push(b'-'),
        n => {
            let _ = write!(out, "{n}");
        }
    }
    if combined {
        for field in [Field::Referer, Field::UserAgent] {
            out.extend_from_slice(b" \"");
            match t.get(field) {
                Some(v) => push_ncsa(out, v),
                None => out.push(b'-'),
            }
            out.push(b'"');
        }
    }
}

/// nginx's escaping for a quoted field: `"`, `\` and bytes outside printable ASCII as `\xNN`, so a
/// field never ends before its closing quote and the line stays one line.
fn push_ncsa(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

thread_local! {
    /// The last second [`push_ncsa_time`] rendered, and its text: lines come in bursts within
    /// the same second, so the date is worked out once per second, not per line.
    static NCSA: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `10/Oct/2000:13:55:36 +0000` (UTC, whole seconds), rearranged from the HTTP date the `Date`
/// header uses (`Tue, 10 Oct 2000 13:55:36 GMT`), so the calendar is worked out in one place.
fn push_ncsa_time(out: &mut Vec<u8>, time: SystemTime) {
    // httpdate panics before 1970 (a clock set back): such a time is logged as the epoch.
    let time = time.max(UNIX_EPOCH);
    let second = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NCSA.with_borrow_mut(|(last, text)| {
        if *last != second {
            let http = httpdate::fmt_http_date(time);
            let (day, month, year) = (&http[5..7], &http[8..11], &http[12..16]);
            let clock = &http[17..25];
            *text = format!("{day}/{month}/{year}:{clock} +0000");
            *last = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// `{"time":"…","ip":"…","method":"GET",…}` with the keys of [`JSON_KEYS`].
fn json_line(r: &Record, out: &mut Vec<u8>) {
    let t = &r.text;
    let _ = write!(
        out,
        "{{\"time\":\"{}\",\"ip\":\"{}\",\"method\":",
        humantime::format_rfc3339_millis(r.time),
        r.ip
    );
    push_json(out, t.method());
    out.extend_from_slice(b",\"path\":");
    push_json(out, t.path());
    out.extend_from_slice(b",\"query\":");
    push_json(out, t.get(Field::Query));
    out.extend_from_slice(b",\"protocol\":");
    push_json(out, t.get(Field::Protocol));
    let _ = write!(
        out,
        ",\"status\":{},\"bytes\":{},\"duration_us\":{},\"referer\":",
        r.status,
        r.bytes,
        r.duration.as_micros()
    );
    push_json(out, t.get(Field::Referer));
    out.extend_from_slice(b",\"user_agent\":");
    push_json(out, t.get(Field::UserAgent));
    out.push(b'}');
}

/// A JSON string (RFC 8259), or `null`. `"`, `\` and control characters are escaped; valid UTF-8
/// is kept as it is, and each run of bytes that is not valid UTF-8 becomes one U+FFFD (as
/// `String::from_utf8_lossy` does), so the line is always valid UTF-8 and valid JSON.
fn push_json(out: &mut Vec<u8>, field: Option<&[u8]>) {
    let Some(bytes) = field else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-11-18T11:06:40.123Z, a request for `/a b\` with every optional field absent.
    fn record(text: RequestText) -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            ip: "127.0.0.1".parse().unwrap(),
            status: 200,
            bytes: 2027,
            body_bytes: 1800,
            duration: Duration::from_micros(85),
            text,
        }
    }

    fn line(format: LogFormat, r: &Record) -> String {
        let mut out = Vec::new();
        render(format, r, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn full() -> RequestText {
        RequestText::new([
            Some(b"GET"),
            Some(b"/a%20b"),
            Some(b"x=\"1\""),
            Some(b"HTTP/1.1"),
            Some(b"http://r/\"\\"),
            Some(b"ag\xc3\xa9nt \x01\xff"),
        ])
    }

    #[test]
    fn fields_come_back_as_given_and_absent_ones_as_none() {
        let t = RequestText::new([Some(b"GET"), Some(b""), None, Some(b"HTTP/1.0"), None, None]);
        assert_eq!(t.method(), Some(&b"GET"[..]));
        assert_eq!(t.path(), Some(&b""[..]));
        assert_eq!(t.get(Field::Query), None);
        assert_eq!(t.get(Field::Protocol), Some(&b"HTTP/1.0"[..]));
        assert_eq!(t.get(Field::UserAgent), None);
        assert_eq!(t.buf.capacity(), 11, "one allocation, sized exactly");
        assert_eq!(RequestText::default().method(), None);
    }

    #[test]
    fn default_line_is_unchanged() {
        let r = record(RequestText::new([
            Some(b"GET"),
            Some(b"/a b\\"),
            None,
            None,
            None,
            None,
        ]));
        assert_eq!(
            line(LogFormat::Default, &r),
            "2026-11-18T11:06:40.123Z 127.0.0.1 /a\\x20b\\x5c 200 GET 2027 85us\n"
        );
        let r = record(RequestText::default());
        assert_eq!(
            line(LogFormat::Default, &r),
            "2026-11-18T11:06:40.123Z 127.0.0.1 - 200 - 2027 85us\n"
        );
    }

    #[test]
    fn common_and_combined_lines() {
        let r = record(full());
        assert_eq!(
            line(LogFormat::Common, &r),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"GET /a%20b?x=\\x221\\x22 HTTP/1.1\" \
             200 1800\n"
        );
        assert_eq!(
            line(LogFormat::Combined, &r),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"GET /a%20b?x=\\x221\\x22 HTTP/1.1\" \
             200 1800 \"http://r/\\x22\\x5C\" \"ag\\xC3\\xA9nt \\x01\\xFF\"\n"
        );
        let mut r = record(RequestText::new([
            Some(b"HEAD"),
            Some(b"/"),
            None,
            Some(b"HTTP/1.0"),
            None,
            None,
        ]));
        r.body_bytes = 0;
        assert_eq!(
            line(LogFormat::Combined, &r),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"HEAD / HTTP/1.0\" 200 - \"-\" \"-\"\n"
        );
        // A refused line shows what arrived of it; nothing at all is `-`.
        let r = record(RequestText::of_refused(crate::http::request::line_hint(
            b"BREW /pot",
        )));
        assert_eq!(
            line(LogFormat::Common, &r),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"BREW /pot\" 200 1800\n"
        );
        let r = record(RequestText::default());
        assert_eq!(
            line(LogFormat::Common, &r),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"-\" 200 1800\n"
        );
    }

    #[test]
    fn ncsa_dates() {
        let at = |secs: u64| {
            let mut out = Vec::new();
            push_ncsa_time(&mut out, UNIX_EPOCH + Duration::from_secs(secs));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(at(971_196_936), "10/Oct/2000:16:55:36 +0000");
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_399), "28/Feb/2100:23:59:59 +0000");
        assert_eq!(at(4_133_980_799), "31/Dec/2100:23:59:59 +0000");
        // A clock set before 1970 is logged as the epoch, not a panic of the writer.
        let mut out = Vec::new();
        push_ncsa_time(&mut out, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(out, b"01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn json_line_has_the_keys_and_escapes() {
        let r = record(full());
        let text = line(LogFormat::Json, &r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = JSON_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["time"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v["query"], "x=\"1\"");
        assert_eq!(v["referer"], "http://r/\"\\");
        assert_eq!(v["user_agent"], "ag\u{e9}nt \u{1}\u{fffd}");
        assert_eq!(v["bytes"], 2027);
        assert_eq!(v["duration_us"], 85);
        assert!(text.starts_with("{\"time\":"), "{text}");
        let r = record(RequestText::default());
        let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &r)).unwrap();
        for key in [
            "method",
            "path",
            "query",
            "protocol",
            "referer",
            "user_agent",
        ] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
    }

    #[test]
    fn json_strings_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::new();
        push_json(&mut out, Some(&all));
        let s: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(s, String::from_utf8_lossy(&all));
        for text in ["", "plain", "\u{2028}\"\\/\u{0}\u{1f}\u{7f}", "日本"] {
            let mut out = Vec::new();
            push_json(&mut out, Some(text.as_bytes()));
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text);
        }
    }
}
