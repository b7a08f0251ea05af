//! Faults and exhaustion, over sockets on both engines: a connection whose task panics (the
//! debug-build fault `URING_HTTPD_FAULT=conn-panic`) costs that connection only; running out of
//! descriptors at accept keeps stderr to a few lines.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Engine, Opts};

engine_tests!(a_panicking_connection_costs_only_itself);

/// Waits (bounded) until `f` holds; returns whether it did. For state the server reaches a moment
/// after the client sees the answer (a line on stderr, a descriptor closed through the ring).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn a_panicking_connection_costs_only_itself(e: Engine) {
    let mut o = Opts::new(e);
    // One worker: the connection served after the panic is served by the worker that panicked.
    o.workers = 1;
    o.env
        .push(("URING_HTTPD_FAULT".into(), "conn-panic".into()));
    let mut s = o.start();
    assert_eq!(s.get("/style.css").status, 200);
    let mut baseline = s.open_fds();
    eventually(|| {
        let now = s.open_fds();
        let settled = now == baseline;
        baseline = now;
        settled
    });

    let mut c = s.connect();
    let port = c.local_addr().unwrap().port();
    c.write_all(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    match c.read_to_end(&mut got) {
        Ok(_) => assert_eq!(got, b"", "no answer, just a close"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }

    // The worker goes on: the next connection is served in full.
    let r = s.get("/style.css");
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"body { color: #333; }\n"[..])
    );

    let peer = format!("127.0.0.1:{port}");
    assert!(eventually(|| s.stderr().contains(&peer)), "{}", s.stderr());
    let err = s.stderr();
    let naming: Vec<&str> = err.lines().filter(|l| l.contains(&peer)).collect();
    assert_eq!(naming.len(), 1, "{err}");
    assert!(
        naming[0].contains("ERROR")
            && naming[0].contains("connection task failed with a panic: injected fault conn-panic"),
        "{err}"
    );
    assert_eq!(err.matches("conn-panic").count(), 1, "said once: {err}");
    assert!(
        eventually(|| s.open_fds() == baseline),
        "descriptors: {} now, {baseline} before",
        s.open_fds()
    );
    // Nothing else changed: a clean exit, every answered request logged.
    assert!(s.stop().success(), "{}", s.stderr());
    assert_eq!(s.log_lines(2).len(), 2);
}
