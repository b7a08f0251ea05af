//! Signals as nginx users expect them, over real sockets, both engines: SIGQUIT stops gracefully
//! like SIGTERM, SIGUSR2 and the other stray signals are logged and ignored, SIGHUP reloads the
//! configuration (live settings for new connections, connections opened before keep theirs,
//! fixed settings reported as needing a restart, a broken file changes nothing).

mod common;

use std::io::{BufReader, Read, Write};

use common::{Engine, Opts, Server, read_response};

engine_tests!(
    sigquit_stops_gracefully_like_sigterm,
    stray_signals_are_logged_and_ignored,
    sighup_applies_root_extensions_and_headers_to_new_connections,
    sighup_reports_fixed_settings_as_needing_a_restart,
    sighup_with_a_broken_file_keeps_the_running_config,
    sighup_moves_the_access_log_and_changes_its_format,
);

const RELOADED: &str = "configuration reloaded from ";

fn sigquit_stops_gracefully_like_sigterm(e: Engine) {
    let mut s = Server::start(e);
    let (mut c, big, first) = s.download_in_flight();
    s.signal(libc::SIGQUIT);
    s.wait_stderr("SIGQUIT: finishing in-flight responses", 1);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(all[split..] == big[..], "body differs");
    let status = s.wait();
    assert_eq!(status.code(), Some(0), "{}", s.stderr());
    assert!(std::net::TcpStream::connect(s.addr).is_err());
    let log = std::fs::read_to_string(&s.log_path).unwrap();
    assert!(log.contains(" /big.png 200 GET "), "{log}");
}

fn stray_signals_are_logged_and_ignored(e: Engine) {
    let mut s = Server::start(e);
    s.signal(libc::SIGUSR2);
    s.wait_stderr("SIGUSR2 ignored: uring-httpd has no binary upgrade", 1);
    assert_eq!(s.get("/").status, 200);
    // Every other signal whose default would end the process: logged, and serving goes on.
    let rt = libc::SIGRTMIN() + 2;
    for (sig, name) in [
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGXCPU, "SIGXCPU"),
        (rt, "SIGRTMIN+2"),
    ] {
        s.signal(sig);
        s.wait_stderr(&format!("{name} ignored"), 1);
        assert_eq!(s.get("/style.css").status, 200, "after {name}");
    }
    // SIGPIPE is ignored by the runtime: nothing to log, still serving.
    s.signal(libc::SIGPIPE);
    assert_eq!(s.get("/app.js").status, 200);
    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());
}

/// A keep-alive connection, and one request on it.
struct KeepAlive {
    w: std::net::TcpStream,
    r: BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    fn open(s: &Server) -> KeepAlive {
        let c = s.connect();
        KeepAlive {
            w: c.try_clone().unwrap(),
            r: BufReader::new(c),
        }
    }

    fn get(&mut self, path: &str) -> common::Response {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        self.w.write_all(req.as_bytes()).unwrap();
        read_response(&mut self.r, false).expect("a response")
    }
}

fn sighup_applies_root_extensions_and_headers_to_new_connections(e: Engine) {
    let mut s = Opts::new(e)
        .extra("[limits]\nkeep_alive_timeout_secs = 60")
        .start();
    // Opened and used before the reload; the index is cached by now.
    let mut before = KeepAlive::open(&s);
    assert_eq!(before.get("/style.css").status, 200);
    let home = before.get("/");
    assert!(home.text().contains("home"), "{}", home.text());
    assert_eq!(s.get("/photo.jpg").status, 403);

    let root2 = s.dir.path().join("root2");
    std::fs::create_dir(&root2).unwrap();
    std::fs::write(root2.join("index.html"), b"<p>second root</p>\n").unwrap();
    std::fs::write(root2.join("photo.jpg"), b"\xff\xd8 jpeg").unwrap();
    std::fs::write(root2.join("style.css"), b"p {}\n").unwrap();
    s.edit_config(|t| {
        t.replace(
            "root = \"root\"",
            "root = \"root2\"\nallowed_extensions = [\"html\", \"jpg\"]",
        ) + "[[headers]]\nmatch = \"/**\"\nset = { \"X-Generation\" = \"2\" }\n"
    });
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr(RELOADED, 1);
    assert!(
        err.contains(&format!("{RELOADED}{}", s.config_path().display())),
        "{err}"
    );
    assert!(!err.contains("needs a restart"), "{err}");

    // New connections: the new root (not the old root's cached index), the new extension
    // policy, the new header.
    let home = s.get("/");
    assert_eq!(home.status, 200);
    assert_eq!(home.text(), "<p>second root</p>\n");
    assert_eq!(home.header("X-Generation"), Some("2"));
    let jpg = s.get("/photo.jpg");
    assert_eq!(
        (jpg.status, jpg.body.as_slice()),
        (200, &b"\xff\xd8 jpeg"[..])
    );
    assert_eq!(s.get("/style.css").status, 403, "css is no longer allowed");

    // The connection opened before keeps the settings it was accepted with.
    let css = before.get("/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("X-Generation"), None);
    assert!(before.get("/").text().contains("home"));
    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());
}

fn sighup_reports_fixed_settings_as_needing_a_restart(e: Engine) {
    let mut s = Server::start(e);
    s.edit_config(|t| {
        t.replace("port = 0", "port = 1")
            .replace("workers = 2", "workers = 3")
    });
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr(RELOADED, 1);
    assert!(
        err.contains("needs a restart: server.port (0 → 1)"),
        "{err}"
    );
    assert!(
        err.contains("needs a restart: server.workers (2 → 3)"),
        "{err}"
    );
    // Still on the same address, with the same workers.
    assert_eq!(s.get("/").status, 200);
    let threads = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?.path().join("comm");
            std::fs::read_to_string(t).ok()
        })
        .filter(|name| name.starts_with("worker-"))
        .count();
    assert_eq!(threads, 2);
    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());
}

fn sighup_with_a_broken_file_keeps_the_running_config(e: Engine) {
    let mut s = Server::start(e);
    let path = s.config_path().display().to_string();
    // A value of the wrong type: the error names the file, the line and the key.
    let good = std::fs::read_to_string(s.config_path()).unwrap();
    s.edit_config(|t| {
        t.replace(
            "[limits]\n",
            "[limits]\nkeep_alive_timeout_secs = \"soon\"\n",
        )
    });
    let line = std::fs::read_to_string(s.config_path())
        .unwrap()
        .lines()
        .position(|l| l.contains("\"soon\""))
        .unwrap()
        + 1;
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr("configuration not reloaded", 1);
    let want = format!("{path}:{line}: key `limits.keep_alive_timeout_secs`: ");
    assert!(err.contains(&want), "want {want:?} in:\n{err}");
    assert!(!err.contains(RELOADED), "{err}");
    assert_eq!(s.get("/").status, 200);

    // Broken TOML: the line and the key it is in.
    std::fs::write(s.config_path(), good.replace("[files]", "[files")).unwrap();
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr("configuration not reloaded", 2);
    let line = good.lines().position(|l| l == "[files]").unwrap() + 1;
    assert!(err.contains(&format!("{path}:{line}: ")), "{err}");

    // A root that does not exist: the key and its line.
    std::fs::write(s.config_path(), good.replace("\"root\"", "\"nowhere\"")).unwrap();
    s.signal(libc::SIGHUP);
    let err = s.wait_stderr("configuration not reloaded", 3);
    let line = good.lines().position(|l| l.starts_with("root =")).unwrap() + 1;
    assert!(
        err.contains(&format!("{path}:{line}: key `files.root`: root directory ")),
        "{err}"
    );
    let home = s.get("/");
    assert_eq!(home.status, 200);
    assert!(home.text().contains("home"));

    // And a good file after all that is applied.
    std::fs::write(s.config_path(), good).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_stderr(RELOADED, 1);
    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());
}

fn sighup_moves_the_access_log_and_changes_its_format(e: Engine) {
    let mut s = Server::start(e);
    assert_eq!(s.get("/style.css").status, 200);
    assert_eq!(s.log_lines(1).len(), 1);
    s.edit_config(|t| {
        t.replace(
            "access = \"access.log\"",
            "access = \"moved.log\"\nformat = \"common\"",
        )
    });
    s.signal(libc::SIGHUP);
    s.wait_stderr(RELOADED, 1);
    assert_eq!(s.get("/app.js").status, 200);
    assert_eq!(s.stop().code(), Some(0), "{}", s.stderr());
    let old = std::fs::read_to_string(&s.log_path).unwrap();
    let moved = std::fs::read_to_string(s.dir.path().join("moved.log")).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains(" /style.css 200 GET "), "{old}");
    assert_eq!(moved.lines().count(), 1, "{moved}");
    // In the new format too.
    assert!(moved.contains("\"GET /app.js HTTP/1.1\" 200 "), "{moved}");
    assert!(moved.starts_with("127.0.0.1 - - ["), "{moved}");
}
