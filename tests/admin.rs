//! The admin listener over real sockets, both engines: exact counter values in `/metrics` after
//! known traffic (parsed line by line), the cache gauge counting a body still being sent after
//! its entry was evicted, `/healthz`, `/readyz` in steady state and during a drain,
//! 404 and 405, off by default (no socket listening), its own requests neither counted nor
//! logged, and an unusable `admin.listen` refused with file, line and key.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Engine, IO_TIMEOUT, Opts, Response, Server, read_response};

engine_tests!(
    metrics_count_exactly_what_was_served,
    cache_metrics_are_exact_on_one_worker,
    cache_bytes_count_a_body_still_being_sent,
    health_readiness_and_other_paths,
    readyz_turns_503_while_draining,
    admin_listener_is_off_by_default,
);

/// A server with the admin listener on a free loopback port, and that port.
fn start(o: Opts) -> (Server, SocketAddr) {
    let s = o.extra("[admin]\nlisten = \"127.0.0.1:0\"").start();
    let err = s.wait_stderr("admin listener on http://", 1);
    let at = err.find("admin listener on http://").unwrap() + "admin listener on http://".len();
    let addr = err[at..].split('/').next().unwrap().parse().unwrap();
    (s, addr)
}

/// One request to the admin listener, on its own connection (it closes after each answer).
fn admin(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut r = BufReader::new(c);
    let resp = read_response(&mut r, method == "HEAD").expect("an answer");
    assert_eq!(resp.header("Connection"), Some("close"));
    // The same head as the server's own answers.
    assert!(
        resp.header("Server")
            .is_some_and(|v| v.starts_with("uring-httpd/"))
    );
    assert!(resp.header("Date").is_some_and(|v| v.ends_with(" GMT")));
    assert_eq!(resp.header("Cache-Control"), Some("no-store"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the answer: {rest:?}");
    resp
}

/// One parsed sample line: name, labels in order, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Scrapes `/metrics` and parses every sample line (checking the exposition's shape).
fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let r = admin(addr, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let labels = inner
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (
                            k.to_string(),
                            v.unwrap_or_else(|| panic!("{line}")).to_string(),
                        )
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        samples.push((name.to_string(), labels, value));
    }
    samples
}

/// The sum of `name` over the samples whose labels include every pair of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> u64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect();
    assert!(!matching.is_empty(), "no {name} {with:?}");
    matching.iter().map(|(_, _, v)| *v as u64).sum()
}

/// Scrapes until `done` holds (the counters a closing connection or the log writer updates
/// land a moment after the client saw its response), at most `IO_TIMEOUT`.
fn scrape_until(addr: SocketAddr, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let m = scrape(addr);
        if done(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metrics_count_exactly_what_was_served(e: Engine) {
    let (mut s, addr) = start(Opts::new(e));
    // Before any traffic: every series is there, at zero.
    let m = scrape(addr);
    assert_eq!(sum(&m, "uring_httpd_requests_total", &[]), 0);
    for worker in ["0", "1"] {
        for code in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            let labels = [("code", code), ("worker", worker)];
            assert_eq!(sum(&m, "uring_httpd_requests_total", &labels), 0);
        }
    }
    let engine = [("engine", e.name())];
    assert_eq!(sum(&m, "uring_httpd_engine_info", &engine), 1);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(sum(&m, "uring_httpd_build_info", &version), 1);

    const N: usize = 7;
    let mut bytes = 0;
    for _ in 0..N {
        let r = s.get("/style.css");
        assert_eq!(r.status, 200);
        bytes += r.wire_len();
    }
    for path in ["/missing.html", "/photo.jpg", "/.hidden.html"] {
        let r = s.get(path);
        assert!(matches!(r.status, 403 | 404), "{path}");
        bytes += r.wire_len();
    }
    let r = s.get("/sub");
    assert_eq!(r.status, 301);
    bytes += r.wire_len();
    let served = N as u64 + 4;

    let m = scrape_until(addr, |m| {
        sum(m, "uring_httpd_connections_open", &[]) == 0
            && sum(m, "uring_httpd_log_lines_written_total", &[]) == served
    });
    assert_eq!(
        sum(&m, "uring_httpd_requests_total", &[("code", "2xx")]),
        N as u64
    );
    assert_eq!(sum(&m, "uring_httpd_requests_total", &[("code", "3xx")]), 1);
    assert_eq!(sum(&m, "uring_httpd_requests_total", &[("code", "4xx")]), 3);
    assert_eq!(sum(&m, "uring_httpd_requests_total", &[("code", "5xx")]), 0);
    assert_eq!(sum(&m, "uring_httpd_requests_total", &[("code", "1xx")]), 0);
    assert_eq!(sum(&m, "uring_httpd_sent_bytes_total", &[]), bytes);
    assert_eq!(
        sum(&m, "uring_httpd_connections_accepted_total", &[]),
        served
    );
    assert_eq!(sum(&m, "uring_httpd_connections_open", &[]), 0);
    assert_eq!(sum(&m, "uring_httpd_log_lines_written_total", &[]), served);
    assert_eq!(sum(&m, "uring_httpd_log_lines_dropped_total", &[]), 0);
    assert_eq!(sum(&m, "uring_httpd_log_lines_failed_total", &[]), 0);
    // The histogram: every response in it once, buckets cumulative up to +Inf.
    let hist = "uring_httpd_request_duration_seconds";
    assert_eq!(sum(&m, &format!("{hist}_count"), &[]), served);
    assert_eq!(
        sum(&m, &format!("{hist}_bucket"), &[("le", "+Inf")]),
        served
    );
    let buckets: Vec<u64> = m
        .iter()
        .filter(|(n, _, _)| *n == format!("{hist}_bucket"))
        .map(|(_, _, v)| *v as u64)
        .collect();
    assert_eq!(buckets.len(), 17);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(sum(&m, "uring_httpd_ready", &[]), 1);
    assert_eq!(sum(&m, "uring_httpd_config_generation", &[]), 1);

    // The scrapes themselves are neither counted nor logged.
    let again = scrape(addr);
    assert_eq!(sum(&again, "uring_httpd_requests_total", &[]), served);
    assert!(s.stop().success());
    let log = std::fs::read_to_string(&s.log_path).unwrap();
    assert_eq!(log.lines().count(), served as usize, "{log}");
    assert!(!log.contains("/metrics"), "{log}");
}

fn cache_metrics_are_exact_on_one_worker(e: Engine) {
    let mut o = Opts::new(e);
    o.workers = 1;
    let (mut s, addr) = start(o);
    for _ in 0..4 {
        assert_eq!(s.get("/style.css").status, 200);
    }
    assert_eq!(s.get("/missing.html").status, 404);
    let m = scrape_until(addr, |m| sum(m, "uring_httpd_connections_open", &[]) == 0);
    // The first /style.css and the missing file opened; three came from memory.
    assert_eq!(
        sum(&m, "uring_httpd_cache_hits_total", &[("worker", "0")]),
        3
    );
    assert_eq!(
        sum(&m, "uring_httpd_cache_misses_total", &[("worker", "0")]),
        2
    );
    // One entry: its 22-byte body, its 9-byte key ("style.css") and the fixed 512 bytes each
    // entry is charged for.
    assert_eq!(
        sum(&m, "uring_httpd_cache_bytes", &[("worker", "0")]),
        22 + 9 + 512
    );
    assert!(s.stop().success());
}

/// A cached body being sent to a slow reader keeps counting in `uring_httpd_cache_bytes` after
/// its entry is evicted, and while it does, a miss that would not fit beside it is served from
/// the file instead of read into memory; once the response ends, the bytes are free again.
fn cache_bytes_count_a_body_still_being_sent(e: Engine) {
    // 10 MiB: more than the kernel's socket buffers take in, so a response to a client that
    // stops reading stays in flight. The budget holds one such body, not two.
    const SIZE: u64 = 10 << 20;
    let mut o = Opts::new(e).extra(&format!(
        "[files]\ncache_max_file_bytes = {}\ncache_bytes_per_worker = {}",
        SIZE,
        SIZE + SIZE / 2
    ));
    o.workers = 1;
    let (mut s, addr) = start(o);
    let body = common::binary_bytes(SIZE as usize);
    std::fs::write(s.root.join("big.png"), &body).unwrap();
    std::fs::write(s.root.join("other.png"), &body).unwrap();
    let gauge = || sum(&scrape(addr), "uring_httpd_cache_bytes", &[("worker", "0")]);
    assert!(s.get("/big.png").body == body);
    assert_eq!(gauge(), SIZE + 7 + 512, "big.png cached");
    // A slow reader takes big.png from the cache and stops reading after 4 KiB.
    let mut slow = BufReader::new(s.get_slowly("/big.png", 16 * 1024));
    let mut first = [0u8; 4096];
    slow.read_exact(&mut first).unwrap();
    // other.png fits only once big.png is evicted, and big.png's body is still being sent: it
    // is evicted, other.png goes out from the file, and the gauge shows the body in flight.
    assert!(
        s.get("/other.png").body == body,
        "served whole from the file"
    );
    assert_eq!(gauge(), SIZE, "only the body still being sent");
    // A small file still fits beside it.
    assert_eq!(s.get("/style.css").status, 200);
    let style = 22 + 9 + 512;
    assert_eq!(gauge(), SIZE + style);
    // The slow reader finishes; the gauge falls once the server's last write completes, with
    // no request needed to update it.
    let head_len = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let mut rest = vec![0u8; head_len + SIZE as usize - first.len()];
    slow.read_exact(&mut rest).unwrap();
    let got: Vec<u8> = first[head_len..].iter().chain(&rest).copied().collect();
    assert!(got == body, "byte-exact from memory");
    let worker0 = [("worker", "0")];
    let m = scrape_until(addr, |m| {
        sum(m, "uring_httpd_cache_bytes", &worker0) == style
    });
    assert_eq!(sum(&m, "uring_httpd_cache_bytes", &worker0), style);
    assert!(s.get("/other.png").body == body);
    assert_eq!(gauge(), style + SIZE + 9 + 512, "other.png cached now");
    assert!(s.stop().success());
}

fn health_readiness_and_other_paths(e: Engine) {
    let (mut s, addr) = start(Opts::new(e));
    let r = admin(addr, "GET", "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = admin(addr, "HEAD", "/healthz");
    assert_eq!((r.status, r.header("Content-Length")), (200, Some("3")));
    let r = admin(addr, "GET", "/readyz");
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    assert_eq!(admin(addr, "GET", "/metrics?name=x").status, 200);
    // It never serves files, not even the ones the server does.
    assert_eq!(admin(addr, "GET", "/index.html").status, 404);
    assert_eq!(admin(addr, "GET", "/").status, 404);
    let r = admin(addr, "POST", "/metrics");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    assert_eq!(admin(addr, "DELETE", "/healthz").status, 405);
    // A request that is not HTTP.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(c), false).unwrap();
    assert_eq!(r.status, 400);

    // The admin listener is fixed at start: a reload reports a change and keeps it.
    s.edit_config(|t| t.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:9\""));
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr("configuration reloaded from ", 1);
    assert!(
        err.contains("needs a restart: admin.listen (\"127.0.0.1:0\" → \"127.0.0.1:9\")"),
        "{err}"
    );
    assert_eq!(admin(addr, "GET", "/healthz").status, 200);
    assert_eq!(sum(&scrape(addr), "uring_httpd_config_generation", &[]), 2);

    // None of that was served traffic.
    assert!(s.stop().success());
    assert_eq!(std::fs::read_to_string(&s.log_path).unwrap_or_default(), "");
    assert!(
        s.stderr().contains(" connections, 0 requests, "),
        "{}",
        s.stderr()
    );
}

fn readyz_turns_503_while_draining(e: Engine) {
    let (mut s, addr) = start(Opts::new(e).extra("[limits]\nshutdown_timeout_secs = 60"));
    let (mut c, big, first) = s.download_in_flight();
    assert_eq!(admin(addr, "GET", "/readyz").status, 200);

    s.signal(libc::SIGTERM);
    // The workers start draining at once (an idle one stops at once); the one sending the
    // download drains until this test has read it all.
    let deadline = Instant::now() + IO_TIMEOUT;
    let drained = loop {
        let r = admin(addr, "GET", "/readyz");
        if r.text().contains("Draining") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(drained.status, 503);
    assert!(
        drained.text().starts_with("not ready: worker 0 "),
        "{}",
        drained.text()
    );
    assert!(drained.text().contains("Draining"), "{}", drained.text());
    assert_eq!(
        admin(addr, "GET", "/healthz").status,
        200,
        "alive while draining"
    );
    assert_eq!(sum(&scrape(addr), "uring_httpd_ready", &[]), 0);

    // The download completes, the process exits 0, and the admin listener is gone with it.
    let mut all = first.to_vec();
    c.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(all[split..] == big[..], "body differs");
    assert!(s.wait().success());
    assert!(TcpStream::connect(addr).is_err());
}

/// The TCP sockets in LISTEN state that process `pid` holds, from /proc.
fn listening_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state (0A = LISTEN), field 9 the inode.
            if f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                n += 1;
            }
        }
    }
    n
}

fn admin_listener_is_off_by_default(e: Engine) {
    let mut s = Server::start(e);
    assert_eq!(s.get("/").status, 200);
    // One listener per worker (2), nothing else.
    assert_eq!(listening_sockets(s.pid()), 2);
    assert!(!s.stderr().contains("admin listener"), "{}", s.stderr());
    assert!(s.stop().success());
    // And with it on, exactly one more.
    let (mut s, _) = start(Opts::new(e));
    assert_eq!(listening_sockets(s.pid()), 3);
    assert!(s.stop().success());
}

#[test]
fn an_unusable_admin_address_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let cfg = "[server]\nport = 0\n\n[admin]\nlisten = \"nonsense\"\n";
    std::fs::write(dir.path().join("uring.toml"), cfg).unwrap();
    let mut cmd = common::server_command();
    let out = cmd
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "configuration error: uring.toml:5: key `admin.listen`: \"nonsense\" is not an \
             address and port"
        ),
        "{err}"
    );
}
