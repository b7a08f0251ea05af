//! Properties of the sans-I/O core, checked on generated inputs with a fixed number of cases so
//! `cargo test` stays fast: the request parser, path resolution, the plans the exchange renders,
//! and the access line. The checks themselves live in `uring_httpd::fuzzing` and are the same
//! ones the fuzz targets in `fuzz/` run; here the inputs are shaped like requests (methods,
//! targets with dots, percent-escapes and slashes, the headers the server reads) so that every
//! case reaches deep into the code, where a fuzzer's random bytes take a long run to get.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use uring_httpd::fuzzing::{self, Policy, Record, RequestText};

/// Cases per property: enough to cover the shapes below many times over, in about a second.
const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Failures are reported with their minimal case; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A path segment: names, extensions, dots, escapes and the bytes that matter to resolution.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(".git".to_string()),
        Just(".well-known".to_string()),
        Just("index.html".to_string()),
        Just("a.css".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2E.".to_string()),
        Just("%2f".to_string()),
        Just("%00".to_string()),
        Just("%".to_string()),
        Just("a%20b.txt".to_string()),
        Just("x?q=1".to_string()),
        Just("y#frag".to_string()),
        "[a-z]{1,6}(\\.[a-z]{1,4})?",
        "[ -~]{0,6}",
    ]
}

/// A request target: origin form built from segments, absolute form, `*`, or anything.
fn target() -> impl Strategy<Value = String> {
    let origin =
        || prop::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/")));
    prop_oneof![
        6 => origin(),
        1 => origin().prop_map(|p| format!("http://example.com{p}")),
        1 => Just("*".to_string()),
        1 => "[ -~]{0,12}",
    ]
}

/// A header line the server reads, with a plausible or hostile value.
fn header() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "[ -~]{0,12}",
        Just("0".to_string()),
        Just("5".to_string()),
        Just("chunked".to_string()),
        Just("close".to_string()),
        Just("keep-alive".to_string()),
        Just("100-continue".to_string()),
        Just("bytes=0-3".to_string()),
        Just("bytes=-2".to_string()),
        Just("bytes=5-".to_string()),
        Just("bytes=9999999-".to_string()),
        Just("*".to_string()),
        Just("\"655d1a00.0-4\"".to_string()),
        Just("Tue, 14 Nov 2023 22:13:20 GMT".to_string()),
    ];
    let name = prop_oneof![
        Just("Host"),
        Just("Content-Length"),
        Just("Transfer-Encoding"),
        Just("Connection"),
        Just("Expect"),
        Just("Range"),
        Just("If-Range"),
        Just("If-None-Match"),
        Just("If-Modified-Since"),
        Just("X-Other"),
    ];
    (name, value).prop_map(|(n, v)| format!("{n}: {v}"))
}

/// A request head (usually well-formed), sometimes with bytes after it.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        4 => Just("GET"),
        2 => Just("HEAD"),
        1 => Just("OPTIONS"),
        1 => Just("POST"),
        1 => Just("DELETE"),
    ];
    let version = prop_oneof![4 => Just("1.1"), 1 => Just("1.0"), 1 => Just("2.0")];
    let eol = prop_oneof![8 => Just("\r\n"), 1 => Just("\n")];
    (
        method,
        target(),
        version,
        any::<bool>(),
        prop::collection::vec(header(), 0..5),
        eol,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(m, t, v, host, headers, eol, after)| {
            let mut head = format!("{m} {t} HTTP/{v}{eol}");
            if host {
                head.push_str(&format!("Host: h{eol}"));
            }
            for h in headers {
                head.push_str(&h);
                head.push_str(eol);
            }
            head.push_str(eol);
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&after);
            bytes
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_parsed_request_never_reads_past_its_head(raw in request()) {
        fuzzing::check_parse(&raw);
    }

    #[test]
    fn arbitrary_bytes_never_break_the_parser(raw in prop::collection::vec(any::<u8>(), 0..96)) {
        fuzzing::check_parse(&raw);
    }

    #[test]
    fn a_resolved_path_stays_under_the_root(
        segments in prop::collection::vec(segment(), 0..8),
        trailing in any::<bool>(),
        dots in any::<bool>(),
    ) {
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        let policy = policy(dots);
        // As decoded bytes, and as a target the parser decodes first.
        fuzzing::check_resolve(path.as_bytes(), &policy);
        let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        if let Ok(Some(req)) = fuzzing::parse(raw.as_bytes()) {
            fuzzing::check_resolve(&req.path, &policy);
        }
    }

    #[test]
    fn arbitrary_paths_resolve_like_the_reference(
        path in prop::collection::vec(prop_oneof![Just(b'/'), Just(b'.'), Just(0u8), any::<u8>()], 0..24),
        dots in any::<bool>(),
    ) {
        fuzzing::check_resolve(&path, &policy(dots));
    }

    #[test]
    fn every_plan_renders_a_head_that_parses_back(
        switches in any::<u8>(),
        control in any::<u8>(),
        script in prop::collection::vec(any::<u8>(), 0..24),
        raw in request(),
    ) {
        // The layout check_exchange reads: switches, control (its low bits: the script's
        // length), the file system's script, the request.
        let mut data = vec![switches, (control & 0xc0) | script.len() as u8];
        data.extend_from_slice(&script);
        data.extend_from_slice(&raw);
        fuzzing::check_exchange(&data);
    }

    #[test]
    fn an_access_line_always_has_the_documented_fields(
        path in any::<String>(),
        method in any::<String>(),
        v6 in any::<bool>(),
        ip in any::<u128>(),
        status in any::<u16>(),
        bytes in any::<u64>(),
        micros in any::<u64>(),
        // Up to the year 9999, as RFC 3339 writes it.
        secs in 0u64..253_402_300_799,
    ) {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(ip))
        } else {
            IpAddr::V4(Ipv4Addr::from(ip as u32))
        };
        fuzzing::check_access_line(&Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            ip,
            status,
            bytes,
            body_bytes: bytes,
            duration: Duration::from_micros(micros),
            text: RequestText::new([
                Some(method.as_bytes()),
                Some(path.as_bytes()),
                None,
                Some(b"HTTP/1.1"),
                None,
                None,
            ]),
        });
    }
}

fn policy(dots: bool) -> Policy {
    let mut files = uring_httpd::config::Files::default();
    if dots {
        files.allow_dot_paths = vec![".well-known".into(), ".git".into()];
    }
    Policy::for_config(&files)
}

/// The checks must be able to fail: a head with two Content-Lengths, or with one on a 304, is
/// caught. (The access-line check at the end is the positive case: a path with a space and a
/// newline still makes a line of seven fields.)
#[test]
fn the_checks_catch_what_they_are_meant_to() {
    use fuzzing::{BodySeen, Outcome, check_outcome};
    let outcome = |status: u16, head: &str, body: BodySeen| Outcome {
        asked: Vec::new(),
        status,
        head: head.as_bytes().to_vec(),
        body,
        keep_alive: true,
    };
    let std = "Server: s\r\nDate: d\r\nConnection: keep-alive\r\n";
    let good = outcome(
        200,
        &format!("HTTP/1.1 200 OK\r\n{std}Content-Length: 3\r\n\r\n"),
        BodySeen::Memory(3),
    );
    check_outcome(&good, false);
    let bad = [
        outcome(
            200,
            &format!("HTTP/1.1 200 OK\r\n{std}Content-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            BodySeen::Memory(3),
        ),
        outcome(
            304,
            &format!("HTTP/1.1 304 Not Modified\r\n{std}Content-Length: 0\r\n\r\n"),
            BodySeen::Empty,
        ),
        outcome(
            200,
            &format!("HTTP/1.1 200 OK\r\n{std}Content-Length: 4\r\n\r\n"),
            BodySeen::Memory(3),
        ),
        outcome(
            200,
            &format!("HTTP/1.1 200 OK\r\n{std}Content-Length: 3\r\n"),
            BodySeen::Memory(3),
        ),
    ];
    for b in bad {
        let caught = std::panic::catch_unwind(|| check_outcome(&b, false)).is_err();
        assert!(caught, "not caught: {:?}", String::from_utf8_lossy(&b.head));
    }
    let record = Record {
        time: SystemTime::UNIX_EPOCH,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        status: 200,
        bytes: 1,
        body_bytes: 0,
        duration: Duration::ZERO,
        text: RequestText::new([Some(b"GET"), Some(b"/a b\n"), None, None, None, None]),
    };
    fuzzing::check_access_line(&record);
}
