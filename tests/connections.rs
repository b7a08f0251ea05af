//! Persistent connections: keep-alive rules for HTTP/1.1 and 1.0, `Connection: close`,
//! pipelining, the idle timeout, and the header timeout against slow clients. Both engines.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use common::{Engine, Opts, Server, assert_closed, read_response};

engine_tests!(
    http11_keeps_the_connection_for_many_requests,
    http10_closes_by_default,
    http10_keep_alive_is_echoed,
    connection_close_is_honoured,
    pipelined_requests_are_answered_in_order,
    bursts_of_pipelined_requests_on_many_connections_are_all_answered,
    reads_that_drain_the_socket_still_see_later_bytes_and_the_close,
    idle_connection_closes_after_keep_alive_timeout,
    keep_alive_timeout_zero_disables_keep_alive,
    slow_head_blocks_nobody_and_times_out,
    client_that_stops_reading_is_cut_off,
    connections_do_not_leak_descriptors,
    out_of_descriptors_gives_503_never_a_truncated_200,
    max_requests_per_connection_closes_after_the_nth_response,
);

fn http11_keeps_the_connection_for_many_requests(e: Engine) {
    let s = Server::start(e);
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    for i in 0..50 {
        let path = if i % 2 == 0 {
            "/style.css"
        } else {
            "/image.png"
        };
        w.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("Connection"), Some("keep-alive"));
    }
}

fn http10_closes_by_default(e: Engine) {
    let s = Server::start(e);
    let out = s.exchange_until_close(b"GET /style.css HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(text.ends_with("body { color: #333; }\n"), "{text}");
}

fn http10_keep_alive_is_echoed(e: Engine) {
    let s = Server::start(e);
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    for _ in 0..3 {
        w.write_all(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("Connection"), Some("keep-alive"));
    }
}

fn connection_close_is_honoured(e: Engine) {
    let s = Server::start(e);
    let mut c = s.connect();
    c.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.header("Connection"), Some("close"));
    assert_closed(&mut r);
}

fn pipelined_requests_are_answered_in_order(e: Engine) {
    let s = Server::start(e);
    let mut c = s.connect();
    let paths = [
        "/style.css",
        "/missing.html",
        "/app.js",
        "/sub/",
        "/photo.jpg",
        "/image.png",
    ];
    let mut batch = String::new();
    for p in paths {
        batch.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    batch.push_str("GET /data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.write_all(batch.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let want = [200, 404, 200, 200, 403, 200, 200];
    for (i, status) in want.iter().enumerate() {
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, *status, "response {i}");
    }
    assert_closed(&mut r);
}

/// 96 connections each send 100 pipelined requests (15 KB) before reading any answer: 1.4 MB
/// in all, more than the io_uring engine's receive ring holds (512 buffers of 1 KiB), so receives
/// stop at a connection's share or find no buffer and are armed again (the ring's own tests in
/// `engine::multishot` show both happen). Every answer still arrives, complete and in order.
fn bursts_of_pipelined_requests_on_many_connections_are_all_answered(e: Engine) {
    const CONNS: usize = 96;
    const EACH: usize = 100;
    let s = Server::start(e);
    let one = format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(100)
    );
    let burst = one.repeat(EACH);
    let conns: Vec<_> = (0..CONNS).map(|_| s.connect()).collect();
    for mut c in &conns {
        c.write_all(burst.as_bytes()).unwrap();
    }
    for (i, c) in conns.into_iter().enumerate() {
        let mut r = BufReader::new(c);
        for j in 0..EACH {
            let resp = read_response(&mut r, false)
                .unwrap_or_else(|| panic!("connection {i}: no answer {j}"));
            assert_eq!(
                (resp.status, &resp.body[..]),
                (200, &b"body { color: #333; }\n"[..]),
                "connection {i}, answer {j}"
            );
        }
    }
}

/// A read that drains the socket leaves the connection waiting for the next readiness event,
/// with no further read to see EAGAIN. Bytes dripped in later, a head larger than the idle read
/// buffer (its first read fills the buffer and drains nothing), and a half-close that arrives
/// with the last request must all still be seen.
fn reads_that_drain_the_socket_still_see_later_bytes_and_the_close(e: Engine) {
    let s = Server::start(e);
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for piece in ["GET /style.css HT", "TP/1.1\r\nHost:", " t\r\n", "\r\n"] {
        c.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(
        (resp.status, &resp.body[..]),
        (200, &b"body { color: #333; }\n"[..])
    );
    let long = format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(3000)
    );
    c.write_all(long.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    // The last request and the client's FIN leave together.
    c.write_all(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert_closed(&mut r);
}

fn idle_connection_closes_after_keep_alive_timeout(e: Engine) {
    let s = Opts::new(e)
        .extra("[limits]\nkeep_alive_timeout_secs = 1")
        .start();
    let mut c = s.connect();
    c.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    // The read blocks until the server closes the idle connection (bounded by the socket timeout).
    let started = std::time::Instant::now();
    assert_closed(&mut r);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
}

fn keep_alive_timeout_zero_disables_keep_alive(e: Engine) {
    let s = Opts::new(e)
        .extra("[limits]\nkeep_alive_timeout_secs = 0")
        .start();
    let out = s.exchange_until_close(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(String::from_utf8_lossy(&out).contains("\r\nConnection: close\r\n"));
}

fn slow_head_blocks_nobody_and_times_out(e: Engine) {
    let s = Opts::new(e)
        .extra("[limits]\nheader_timeout_secs = 1")
        .extra("[server]\nworkers = 1")
        .start();
    let mut slow = s.connect();
    slow.write_all(b"GET /style.css HTTP/1.1\r\nHo").unwrap();
    // The single worker still serves everyone else meanwhile.
    for _ in 0..5 {
        assert_eq!(s.get("/style.css").status, 200);
    }
    // Then the slow client is answered 408 and closed.
    let mut out = Vec::new();
    slow.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    let lines = s.log_lines(6);
    let line = lines
        .iter()
        .find(|l| l.contains(" 408 "))
        .expect("a 408 line");
    // Logged with what arrived of the head, and with the bytes actually sent.
    assert!(line.contains(" /style.css 408 GET "), "{line}");
    let bytes: usize = line.split(' ').nth(5).unwrap().parse().unwrap();
    assert_eq!(bytes, out.len(), "{line}");
}

fn connections_do_not_leak_descriptors(e: Engine) {
    let s = common::from_file(e);
    // Warm up so lazily opened descriptors (log file, runtime internals) exist before counting.
    assert_eq!(s.get("/").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let before = s.open_fds();
    for i in 0..200 {
        match i % 4 {
            0 => drop(s.get("/image.png")),
            1 => drop(s.get("/missing")),
            2 => drop(s.exchange_until_close(b"GARBAGE\r\n\r\n")),
            _ => {
                // A client that disappears mid-response.
                let mut c = s.connect();
                c.write_all(b"GET /image.png HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                let mut b = [0u8; 10];
                c.read_exact(&mut b).unwrap();
            }
        }
    }
    // Descriptors of closed connections are released once the server notices; give it a moment.
    // The io_uring engine keeps clean splice pipes in a per-worker pool (image.png is spliced):
    // sequential requests need at most one per worker, two descriptors each.
    let pooled = if e == Engine::Uring { 2 * 2 } else { 0 };
    let mut after = s.open_fds();
    for _ in 0..100 {
        if after <= before + pooled {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = s.open_fds();
    }
    assert!(
        after <= before + pooled,
        "descriptors before {before}, after {after}"
    );
}

fn client_that_stops_reading_is_cut_off(e: Engine) {
    let s = Opts::new(e)
        .extra("[limits]\nsend_timeout_secs = 1")
        .start();
    std::fs::write(s.root.join("big.png"), common::binary_bytes(20 << 20)).unwrap();
    let mut c = s.get_slowly("/big.png", 16 * 1024);
    // Never read: the server's write stalls, and after send_timeout_secs it gives up. The log line
    // is written when the response ends, with 0 bytes counted for an unfinished response.
    let lines = s.log_lines(1);
    assert_eq!(
        lines.len(),
        1,
        "no log line: the stalled response never ended"
    );
    assert!(lines[0].contains(" /big.png 200 GET 0 "), "{lines:?}");
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.len() < 20 << 20, "the whole file arrived");
}

/// With descriptors nearly exhausted, a file whose body cannot be sent (no descriptor left for
/// the uring engine's splice pipe) gets a 503 with Retry-After before any byte of a 200 goes out;
/// the epoll engine needs no pipe and serves it. Once descriptors are free again the request is
/// served byte-exact, and idle keep-alive connections that were sent big files pin no pipes.
fn out_of_descriptors_gives_503_never_a_truncated_200(e: Engine) {
    const LIMIT: u64 = 64;
    // The 100 KiB file is kept out of the cache, so the uring engine splices it.
    let mut o = Opts::new(e)
        .extra("[limits]\nkeep_alive_timeout_secs = 60")
        .extra(common::FROM_FILE);
    o.workers = 1;
    o.nofile = Some(LIMIT);
    let s = o.start();
    let big = common::binary_bytes(100 * 1024);
    std::fs::write(s.root.join("big.png"), &big).unwrap();
    let get = |path: &str| {
        let mut c = BufReader::new(s.connect());
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.get_mut().write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut c, false).expect("a complete response");
        (c, r)
    };
    // Fill the table with idle keep-alive connections until exactly two descriptors are free.
    let mut idle = Vec::new();
    while (s.open_fds() as u64) < LIMIT - 2 {
        let (c, r) = get("/style.css");
        assert_eq!(r.status, 200);
        idle.push(c);
    }
    // The request's connection takes one descriptor, the file the other: no room for a pipe.
    let (_c, r) = get("/big.png");
    match e {
        Engine::Uring => {
            assert_eq!(r.status, 503, "{:?}", r.headers);
            assert_eq!(r.header("Retry-After"), Some("1"));
            assert_eq!(r.header("Connection"), Some("close"));
            // The reason reaches stderr before the response; the test reads stderr in a thread.
            s.wait_stderr("503: cannot send the body now", 1);
        }
        Engine::Epoll => {
            assert_eq!(r.status, 200);
            assert!(r.body == big, "a 200 carries its whole body");
        }
    }
    // Free descriptors: served in full, and five idle connections that each got the big file
    // hold no pipe of their own (one pooled pipe at most, for the worker).
    drop(idle);
    let before = s.settled_fds();
    let mut kept = Vec::new();
    for _ in 0..5 {
        let (c, r) = get("/big.png");
        assert_eq!(r.status, 200);
        assert!(r.body == big);
        kept.push(c);
    }
    // Files are closed through the ring just after their response: let that happen.
    let grown = s.settled_fds().saturating_sub(before);
    assert!(grown <= 5 + 2, "{grown} descriptors for 5 idle connections");
}

/// `max_requests_per_connection = 3`: the third response says `Connection: close` and the
/// server closes; the next connection gets its own three.
fn max_requests_per_connection_closes_after_the_nth_response(e: Engine) {
    let s = Opts::new(e)
        .extra("[limits]\nmax_requests_per_connection = 3")
        .start();
    for _ in 0..2 {
        let c = s.connect();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        for want in ["keep-alive", "keep-alive", "close"] {
            w.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("Connection"), Some(want));
            assert_eq!(resp.body, b"body { color: #333; }\n");
        }
        assert_closed(&mut r);
    }
    assert_eq!(s.log_lines(6).len(), 6);
}
