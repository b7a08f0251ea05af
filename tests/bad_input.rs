//! Bad input gets a clear answer and the server keeps going: oversize heads, malformed requests,
//! invalid Host values, unsupported versions and methods, request-smuggling shapes, request bodies
//! (chunked or not, well-formed or not, complete or not), hostile paths. Both engines.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use common::{Engine, Server, assert_closed, read_response};

engine_tests!(
    oversize_head_is_431_and_closes,
    oversize_target_is_414,
    malformed_requests_are_400,
    missing_host_in_http11_is_400,
    unsupported_version_is_505,
    other_methods_are_405_with_allow,
    smuggling_shapes_are_400_and_close,
    small_get_body_is_discarded,
    oversize_body_is_413,
    control_bytes_in_path_are_400,
    traversal_never_leaves_root,
    server_survives_garbage,
    invalid_host_is_400,
    framing_is_checked_before_the_method,
    a_fragment_is_never_part_of_the_file_name,
    leading_empty_lines_are_skipped,
    options_is_204_with_allow,
    chunked_body_is_decoded_and_the_connection_kept,
    malformed_chunked_body_is_400_and_closes,
    oversize_chunked_body_is_413,
    body_that_never_arrives_times_out_with_408,
);

/// Sends `raw`, expects one response with `status` followed by the server closing.
fn refused(s: &Server, raw: &[u8], status: u16) {
    let mut c = s.connect();
    c.write_all(raw).unwrap();
    let mut r = BufReader::new(c);
    let resp = read_response(&mut r, false).unwrap_or_else(|| panic!("no response to {raw:?}"));
    assert_eq!(resp.status, status, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(resp.header("Connection"), Some("close"));
    assert!(resp.text().contains(&format!("<h1>{status} ")));
    assert_closed(&mut r);
}

fn oversize_head_is_431_and_closes(e: Engine) {
    let s = Server::start(e);
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    refused(&s, raw.as_bytes(), 431);
    assert_eq!(s.get("/").status, 200);
}

fn oversize_target_is_414(e: Engine) {
    let s = Server::start(e);
    let raw = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    refused(&s, raw.as_bytes(), 414);
}

fn malformed_requests_are_400(e: Engine) {
    let s = Server::start(e);
    for raw in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nBad\x01Name: v\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET relative HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        // No minor version.
        "GET / HTTP/1\r\nHost: t\r\n\r\n",
        // Raw (not percent-encoded) UTF-8 in the target.
        "GET /caf\u{e9}.html HTTP/1.1\r\nHost: t\r\n\r\n",
        // `*` is only a target for OPTIONS.
        "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        refused(&s, raw.as_bytes(), 400);
    }
    // A method longer than 32 bytes is refused as soon as that is known, line unfinished.
    refused(&s, "M".repeat(33).as_bytes(), 400);
    let longest = format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(32));
    assert_eq!(s.request(&longest).status, 405);
    // The same name percent-encoded is served.
    assert_eq!(s.get("/caf%C3%A9.html").body, b"utf-8 name\n");
}

fn invalid_host_is_400(e: Engine) {
    let s = Server::start(e);
    for host in [
        "user@t", "t/path", "", "a, b", "a,b", "t:port", "[::1", "t:99999",
    ] {
        for version in ["1.1", "1.0"] {
            let raw = format!("GET /style.css HTTP/{version}\r\nHost: {host}\r\n\r\n");
            refused(&s, raw.as_bytes(), 400);
        }
    }
    for host in [
        "t",
        "t:8080",
        "127.0.0.1:1",
        "[::1]:8080",
        "xn--caf-dma.example",
    ] {
        let raw = format!("GET /style.css HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(s.request(&raw).status, 200, "{host}");
    }
}

fn framing_is_checked_before_the_method(e: Engine) {
    let s = Server::start(e);
    for head in [
        "DELETE / HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        "PATCH / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        refused(&s, head.as_bytes(), 400);
    }
}

fn a_fragment_is_never_part_of_the_file_name(e: Engine) {
    let s = Server::start(e);
    assert_eq!(s.get("/style.css#x").body, b"body { color: #333; }\n");
    assert_eq!(s.get("/style.css?q=1#x").body, b"body { color: #333; }\n");
    // In absolute form, what follows `#` or `?` after the host is not the path: `/` is.
    for target in ["http://t#/style.css", "http://t?/style.css"] {
        let r = s.get(target);
        assert_eq!(r.status, 200, "{target}");
        assert!(r.text().contains("<title>home</title>"), "{target}");
    }
    // An encoded `#` is part of a name: looked up as such, and not found.
    assert_eq!(s.get("/style.css%23x").status, 404);
}

fn leading_empty_lines_are_skipped(e: Engine) {
    let s = Server::start(e);
    let r = s.request("\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.body, b"body { color: #333; }\n");
    refused(&s, "\r\n".repeat(9).as_bytes(), 400);
}

fn options_is_204_with_allow(e: Engine) {
    let s = Server::start(e);
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\nOPTIONS /index.html HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    for _ in 0..2 {
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("Allow"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(resp.header("Content-Length"), None);
        assert_eq!(resp.header("Connection"), Some("keep-alive"));
    }
    // Nothing followed the 204s' heads: the next bytes are the next response.
    let next = read_response(&mut r, false).unwrap();
    assert_eq!(next.body, b"body { color: #333; }\n");
}

/// Sends `raw` on one connection and reads `n` responses from it.
fn responses(s: &Server, raw: &[u8], n: usize) -> Vec<common::Response> {
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(raw).unwrap();
    (0..n)
        .map(|_| read_response(&mut r, false).expect("a response"))
        .collect()
}

fn chunked_body_is_decoded_and_the_connection_kept(e: Engine) {
    let s = Server::start(e);
    // The chunk data looks like a request and must not be answered as one.
    let smuggled = "GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n";
    let raw = format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};name=\"v\"\r\n{smuggled}\r\n0\r\nX-Trailer: 1\r\n\r\n\
         POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         GET /data.json HTTP/1.1\r\nHost: t\r\n\r\n",
        smuggled.len()
    );
    let got = responses(&s, raw.as_bytes(), 3);
    assert_eq!(got[0].body, b"body { color: #333; }\n");
    assert_eq!(got[0].header("Connection"), Some("keep-alive"));
    assert_eq!(got[1].status, 405);
    assert_eq!(got[2].body, b"{\"a\": 1}\n");
    let log = s.log_lines(3);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(!log.iter().any(|l| l.contains("/app.js")), "{log:?}");
}

fn malformed_chunked_body_is_400_and_closes(e: Engine) {
    let s = Server::start(e);
    let follow = "GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n";
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\r\nabcdef\r\n0\r\n\r\n",
        "3;\r\nabc\r\n0\r\n\r\n",
        "3\nabc\n0\n\n",
        "0\r\nno colon\r\n\r\n",
    ] {
        let raw = format!(
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}{follow}"
        );
        refused(&s, raw.as_bytes(), 400);
    }
}

fn oversize_chunked_body_is_413(e: Engine) {
    let s = Server::start(e);
    // 8193 bytes announced against the default max_request_bytes of 8192.
    refused(
        &s,
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2001\r\nxx",
        413,
    );
}

fn body_that_never_arrives_times_out_with_408(e: Engine) {
    let s = common::Opts::new(e)
        .extra("[limits]\nheader_timeout_secs = 1")
        .start();
    for framing in ["Content-Length: 10", "Transfer-Encoding: chunked"] {
        let c = s.connect();
        let mut w = c.try_clone().unwrap();
        w.write_all(format!("GET /style.css HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes())
            .unwrap();
        // Nothing is answered while the body is awaited (the request is not complete)...
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut r = BufReader::new(c);
        let mut b = [0u8; 1];
        let early = r.read(&mut b);
        assert!(
            early
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "{framing}: {early:?}"
        );
        // ...and the header timeout ends it with a 408, not a hang.
        r.get_ref()
            .set_read_timeout(Some(common::IO_TIMEOUT))
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 408, "{framing}");
        assert_eq!(resp.header("Connection"), Some("close"));
        assert_closed(&mut r);
    }
}

fn missing_host_in_http11_is_400(e: Engine) {
    let s = Server::start(e);
    refused(&s, b"GET / HTTP/1.1\r\n\r\n", 400);
    refused(&s, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

fn unsupported_version_is_505(e: Engine) {
    let s = Server::start(e);
    refused(&s, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    refused(&s, b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505);
    // The client's version is not the server's problem: logged, but not on stderr (where any
    // client could otherwise flood it); a 5xx that is the server's still is.
    let lines = s.log_lines(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains(" 505 ")), "{lines:?}");
    // A server fault is an `ERROR` line "<status>: <cause>"; "505" alone also matched a port
    // or a timestamp's digits in the start-up lines (a few failures in a hundred runs).
    let err = s.stderr();
    assert!(!err.contains("ERROR"), "{err}");
    assert!(!err.contains("505: "), "{err}");
    assert!(!err.contains("unsupported HTTP version"), "{err}");
}

fn other_methods_are_405_with_allow(e: Engine) {
    let s = Server::start(e);
    for m in ["POST", "PUT", "DELETE", "PATCH", "BREW"] {
        let r = s.request(&format!("{m} /index.html HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"), "{m}");
    }
    // The connection survives a 405.
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 405);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
}

fn smuggling_shapes_are_400_and_close(e: Engine) {
    let s = Server::start(e);
    let follow = "GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n";
    for head in [
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    ] {
        // A smuggled second request after the refused one must never be answered.
        refused(&s, format!("{head}{follow}").as_bytes(), 400);
    }
}

fn small_get_body_is_discarded(e: Engine) {
    let s = Server::start(e);
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    let body = "GET /photo.jpg HTTP/1.1\r\nHost: t\r\n\r\n"; // looks like a request, is a body
    w.write_all(
        format!(
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        read_response(&mut r, false).unwrap().body,
        b"body { color: #333; }\n"
    );
    let next = read_response(&mut r, false).unwrap();
    assert_eq!(next.status, 200, "the body was parsed as a request");
    assert_eq!(next.body, b"console.log('hi');\n");
}

fn oversize_body_is_413(e: Engine) {
    let s = Server::start(e);
    refused(
        &s,
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nxx",
        413,
    );
}

fn control_bytes_in_path_are_400(e: Engine) {
    let s = Server::start(e);
    for path in [
        "/a%00.html",
        "/index.html%00.jpg",
        "/a%01b",
        "/a%0d%0aX:%20y",
        "/a%7f",
    ] {
        refused(
            &s,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            400,
        );
    }
    refused(&s, b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
}

fn traversal_never_leaves_root(e: Engine) {
    let s = Server::start(e);
    for path in [
        "/../outside/secret.html",
        "/sub/../../outside/secret.html",
        "/%2e%2e/outside/secret.html",
        "/%2E%2E%2Foutside%2Fsecret.html",
        "/..%2foutside%2fsecret.html",
        "/sub/%2e%2e/%2e%2e/outside/secret.html",
        "/./../outside/secret.html",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}");
        assert!(!r.text().contains("OUTSIDE"), "{path}");
    }
    // A `..` that stays inside the root is fine.
    assert_eq!(s.get("/sub/../style.css").status, 200);
}

fn server_survives_garbage(e: Engine) {
    let s = Server::start(e);
    let junk: Vec<u8> = common::binary_bytes(4096);
    let mut c = s.connect();
    let _ = c.write_all(&junk);
    drop(c);
    let mut c = s.connect();
    let _ = c.write_all(b"\r\n\r\n\r\n");
    drop(c);
    // Half a request and a hang-up.
    let mut c = s.connect();
    c.write_all(b"GET /sty").unwrap();
    drop(c);
    assert_eq!(s.get("/style.css").status, 200);
}
