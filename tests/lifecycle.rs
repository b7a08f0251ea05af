//! The access log (format, destinations, no line lost under load) and graceful shutdown on
//! SIGTERM and SIGINT (in-flight responses finish, idle connections close, exit 0). Both engines.

mod common;

use std::io::{BufReader, Read, Write};

use common::{Engine, Opts, Server, assert_closed, read_response};

engine_tests!(
    access_log_line_has_the_documented_fields,
    refused_requests_are_logged_too,
    access_log_to_stdout,
    access_log_off_writes_nothing,
    no_log_line_is_lost_under_load,
    sigterm_finishes_in_flight_response,
    sigint_shuts_down_cleanly,
    idle_connections_close_at_shutdown,
    a_worker_that_dies_stops_the_process_loudly,
    a_worker_that_panics_stops_the_process_loudly,
);

/// Splits a log line into its fields, checking each one's shape.
fn fields(line: &str) -> Vec<&str> {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 7, "{line}");
    let t = f[0];
    assert!(
        t.ends_with('Z') && t.len() == 24 && &t[10..11] == "T",
        "{line}"
    );
    assert!(humantime::parse_rfc3339(t).is_ok(), "{line}");
    assert!(f[3].parse::<u16>().is_ok(), "{line}");
    assert!(f[5].parse::<u64>().is_ok(), "{line}");
    assert!(
        f[6].ends_with("us") && f[6][..f[6].len() - 2].parse::<u64>().is_ok(),
        "{line}"
    );
    f
}

fn access_log_line_has_the_documented_fields(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/style.css");
    let lines = s.log_lines(1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = fields(&lines[0]);
    assert_eq!(
        &f[1..6],
        [
            "127.0.0.1",
            "/style.css",
            "200",
            "GET",
            &r_wire_len(&r).to_string()
        ]
    );
}

/// Bytes of head plus body as the server sent them.
fn r_wire_len(r: &common::Response) -> usize {
    let head: usize = r
        .headers
        .iter()
        .map(|(n, v)| n.len() + 2 + v.len() + 2)
        .sum();
    format!("HTTP/1.1 {} {}\r\n", r.status, r.reason).len() + head + 2 + r.body.len()
}

fn refused_requests_are_logged_too(e: Engine) {
    let s = Server::start(e);
    s.get("/missing.html");
    s.get("/photo.jpg");
    s.exchange_until_close(b"GET /x HTTP/1.1\r\n\r\n");
    s.exchange_until_close(b"BREW /pot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    // An empty path (the target is only a query) is logged as `-`, keeping seven fields.
    s.exchange_until_close(b"BREW ?x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let lines = s.log_lines(5);
    let mut got: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            let f = fields(l);
            (f[2].to_string(), f[3].to_string(), f[4].to_string())
        })
        .collect();
    got.sort();
    let want = [
        ("-", "405", "BREW"),
        ("/missing.html", "404", "GET"),
        ("/photo.jpg", "403", "GET"),
        ("/pot", "405", "BREW"),
        ("/x", "400", "GET"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
}

fn access_log_to_stdout(e: Engine) {
    let mut s = Opts::new(e).extra("[log]\naccess = \"-\"").start();
    s.get("/app.js");
    assert!(s.stop().success());
    let out = s.stdout();
    let line = out
        .lines()
        .find(|l| l.contains(" /app.js "))
        .unwrap_or_else(|| panic!("stdout: {out}"));
    assert_eq!(fields(line)[3], "200");
    assert!(!s.log_path.exists());
}

fn access_log_off_writes_nothing(e: Engine) {
    let mut s = Opts::new(e).extra("[log]\naccess = \"off\"").start();
    assert_eq!(s.get("/").status, 200);
    assert!(s.stop().success());
    assert!(!s.log_path.exists());
    assert!(!s.stdout().contains(" / 200 "));
}

fn no_log_line_is_lost_under_load(e: Engine) {
    let mut s = Server::start(e);
    const THREADS: usize = 8;
    const EACH: usize = 250;
    let addr = s.addr;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                for i in 0..EACH {
                    let path = format!("/style.css?t={t}&i={i}");
                    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
                    w.write_all(req.as_bytes()).unwrap();
                    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Stop at once: the lines still in the channel must be written before the process exits.
    assert!(s.stop().success());
    let text = std::fs::read_to_string(&s.log_path).unwrap();
    assert_eq!(text.lines().count(), THREADS * EACH);
    assert!(text.lines().all(|l| fields(l)[3] == "200"));
    assert!(
        s.stderr()
            .contains(&format!("{} log lines", THREADS * EACH)),
        "{}",
        s.stderr()
    );
}

fn sigterm_finishes_in_flight_response(e: Engine) {
    let mut s = Server::start(e);
    let (mut c, big, first) = s.download_in_flight();
    s.signal(libc::SIGTERM);
    // While the download drains, new connections are refused rather than left unanswered.
    let mut refused = false;
    for _ in 0..100 {
        match std::net::TcpStream::connect(s.addr) {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    assert!(refused, "still completing handshakes while draining");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        all[split..] == big[..],
        "body differs: {} of {} bytes",
        all.len() - split,
        big.len()
    );
    assert!(s.wait().success());
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "still accepting after shutdown"
    );
    let log = std::fs::read_to_string(&s.log_path).unwrap();
    assert!(log.contains(" /big.png 200 GET "), "{log}");
}

fn sigint_shuts_down_cleanly(e: Engine) {
    let mut s = Server::start(e);
    assert_eq!(s.get("/").status, 200);
    s.signal(libc::SIGINT);
    assert!(s.wait().success());
    assert_eq!(s.log_lines(1).len(), 1);
}

fn idle_connections_close_at_shutdown(e: Engine) {
    let mut s = Opts::new(e)
        .extra("[limits]\nkeep_alive_timeout_secs = 60\nshutdown_timeout_secs = 20")
        .start();
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert!(s.stop().success());
    assert_closed(&mut r);
    // Closed because it was idle, not because the drain gave up on it.
    assert!(!s.stderr().contains("still busy"), "{}", s.stderr());
}

/// A worker thread that ends on its own (forced here by a debug-build fault switch) must not
/// leave a half-served process running: the others stop, the error is logged, the exit code is 3.
fn a_worker_that_dies_stops_the_process_loudly(e: Engine) {
    let mut o = Opts::new(e);
    o.env
        .push(("URING_HTTPD_FAULT".into(), "worker-exit".into()));
    let mut s = o.start();
    let status = s.wait();
    assert_eq!(status.code(), Some(3), "{}", s.stderr());
    let err = s.stderr();
    assert!(
        err.contains("worker 0 returned while serving; stopping the server"),
        "{err}"
    );
    assert!(err.contains("a worker stopped unexpectedly"), "{err}");
}

/// The same when the worker thread panics (outside any connection, so nothing contains it): the
/// panic is printed, the death logged, the others stopped, exit code 3.
fn a_worker_that_panics_stops_the_process_loudly(e: Engine) {
    let mut o = Opts::new(e);
    o.env
        .push(("URING_HTTPD_FAULT".into(), "worker-panic".into()));
    let mut s = o.start();
    s.panic_expected = true;
    let status = s.wait();
    assert_eq!(status.code(), Some(3), "{}", s.stderr());
    let err = s.stderr();
    assert!(err.contains("injected fault worker-panic"), "{err}");
    assert!(
        err.contains("worker 0 panicked while serving; stopping the server"),
        "{err}"
    );
    assert!(err.contains("a worker stopped unexpectedly"), "{err}");
}
