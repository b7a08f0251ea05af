//! `uring-httpd probe`, the image's health check, over real sockets: healthy answers (2xx, 3xx),
//! unhealthy ones (an error status, a refused port, a silent peer, a peer that is not HTTP),
//! unusable URLs, and the URL it derives from the config file and the environment.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Engine, IO_TIMEOUT, Server};

/// Runs `uring-httpd probe ARGS` in `dir` with `env`: exit code, stdout, stderr.
fn probe_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = common::server_command();
    cmd.arg("probe")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn probe(args: &[&str]) -> (Option<i32>, String, String) {
    probe_in(Path::new("/"), args, &[])
}

#[test]
fn healthy_on_a_200_and_on_a_redirect() {
    let s = Server::start(Engine::Epoll);
    let url = format!("http://{}/", s.addr);
    assert_eq!(
        probe(&[&url]),
        (Some(0), format!("{url}: 200 OK\n"), "".into())
    );
    let url = format!("http://{}/sub", s.addr);
    assert_eq!(
        probe(&[&url]),
        (
            Some(0),
            format!("{url}: 301 Moved Permanently\n"),
            "".into()
        )
    );
    // The probe's requests are ordinary requests: logged, and read to the end.
    let lines = s.log_lines(2);
    assert!(lines[0].contains(" / 200 GET "), "{lines:?}");
    assert!(lines[1].contains(" /sub 301 GET "), "{lines:?}");
}

#[test]
fn unhealthy_on_an_error_status() {
    let s = Server::start(Engine::Epoll);
    for (path, status) in [
        ("/nope.html", "404 Not Found"),
        ("/photo.jpg", "403 Forbidden"),
    ] {
        let url = format!("http://{}{path}", s.addr);
        assert_eq!(
            probe(&[&url]),
            (
                Some(1),
                "".into(),
                format!("uring-httpd probe: {url}: {status}\n")
            )
        );
    }
}

#[test]
fn unhealthy_when_nothing_listens() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, out, err) = probe(&[&url]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        format!(
            "uring-httpd probe: {url}: cannot connect to 127.0.0.1:{port}: Connection refused (os error 111)\n"
        )
    );
}

#[test]
fn unhealthy_when_the_peer_never_answers_within_the_timeout() {
    // Listening but never accepting: the connection completes in the backlog, no byte comes back.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let started = Instant::now();
    let got = probe(&["--timeout", "300ms", &url]);
    let took = started.elapsed();
    assert_eq!(
        got,
        (
            Some(1),
            "".into(),
            format!("uring-httpd probe: {url}: no response within 300ms\n")
        )
    );
    assert!(
        took >= Duration::from_millis(300),
        "gave up early: {took:?}"
    );
    assert!(
        took < IO_TIMEOUT,
        "the timeout did not bound the probe: {took:?}"
    );
}

/// A one-connection peer that reads the request head, then answers `reply` and closes.
fn peer(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 512];
        while !head.ends_with(b"\r\n\r\n") {
            match c.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        let _ = c.write_all(reply);
    });
    format!("http://{addr}/x")
}

#[test]
fn unhealthy_when_the_peer_is_not_http() {
    let url = peer(b"SSH-2.0-OpenSSH_9.2\r\n");
    assert_eq!(
        probe(&[&url]),
        (
            Some(1),
            "".into(),
            format!(
                "uring-httpd probe: {url}: not an HTTP response: \"SSH-2.0-OpenSSH_9.2\\r\\n\"\n"
            )
        )
    );
    let url = peer(b"");
    assert_eq!(
        probe(&[&url]).2,
        format!("uring-httpd probe: {url}: the connection closed without a response\n")
    );
    let url = peer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        probe(&[&url]),
        (
            Some(1),
            "".into(),
            format!("uring-httpd probe: {url}: 503 Service Unavailable\n")
        )
    );
}

#[test]
fn unusable_urls_exit_2_and_say_why() {
    let cases = [
        ("127.0.0.1:8080", "only http:// URLs can be probed"),
        ("https://127.0.0.1/", "https is not supported"),
        (
            "http://example.com/",
            "\"example.com\" is not an IP address or localhost",
        ),
        ("http://127.0.0.1:0/", "\"0\" is not a port (1 to 65535)"),
        ("http://[::1/", "an IPv6 address must be closed with ']'"),
    ];
    for (url, why) in cases {
        let (code, out, err) = probe(&[url]);
        assert_eq!((code, out.as_str()), (Some(2), ""), "{url}: {err}");
        assert!(
            err.starts_with(&format!("uring-httpd probe: bad URL {url:?}: {why}")),
            "{url}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn without_a_url_it_probes_the_configured_server_and_follows_the_environment() {
    let s = Server::start(Engine::Epoll);
    let port = s.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    // ./uring.toml names another port; 0.0.0.0 is probed on 127.0.0.1.
    std::fs::write(
        dir.path().join("uring.toml"),
        "[server]\nhost = \"0.0.0.0\"\nport = 1\n[files]\nroot = \"www\"\n",
    )
    .unwrap();
    let want = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        probe_in(dir.path(), &[], &[("URING_HTTPD_PORT", &port)]),
        (Some(0), format!("{want}: 200 OK\n"), "".into())
    );
    let (code, _, err) = probe_in(dir.path(), &[], &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("uring-httpd probe: http://127.0.0.1:1/: cannot connect"),
        "{err}"
    );
    // The config file named by URING_HTTPD_CONFIG.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        format!("[server]\nhost = \"127.0.0.1\"\nport = {port}\n[files]\nroot = \"www\"\n"),
    )
    .unwrap();
    assert_eq!(
        probe_in(
            Path::new("/"),
            &[],
            &[("URING_HTTPD_CONFIG", other.to_str().unwrap())]
        ),
        (Some(0), format!("{want}: 200 OK\n"), "".into())
    );
    // A configuration that gives no port to probe, or none at all, is exit 2.
    let (code, _, err) = probe_in(dir.path(), &[], &[("URING_HTTPD_PORT", "0")]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "uring-httpd probe: server.port is 0 (a free port is picked at start), so give the probe \
         a URL\n"
    );
    let (code, _, err) = probe_in(dir.path(), &[], &[("URING_HTTPD_PORT", "http")]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with(
            "uring-httpd probe: configuration error: environment variable URING_HTTPD_PORT: "
        ),
        "{err}"
    );
}
