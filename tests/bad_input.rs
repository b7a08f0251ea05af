//! Bad input gets a clear answer and the server keeps going: oversize heads, malformed requests,
//! unsupported versions and methods, request-smuggling shapes, hostile paths. Both engines.

mod common;

use std::io::{BufReader, Write};

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
    ] {
        refused(&s, raw.as_bytes(), 400);
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
}

fn other_methods_are_405_with_allow(e: Engine) {
    let s = Server::start(e);
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
        let r = s.request(&format!("{m} /index.html HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{m}");
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
