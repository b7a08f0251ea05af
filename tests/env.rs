//! Configuration from the environment, against the real binary: each `URING_HTTPD_*` variable,
//! the order command line > environment > file > built-in defaults, empty variables, and errors
//! that name the variable.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{SERVER_ENV, listen};

/// The binary in `dir` with `args`, and only the `URING_HTTPD_*` variables given here.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::server_command();
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    cmd.envs(env.iter().copied());
    cmd
}

/// A directory with `name/index.html` holding `name`, for each name.
fn sites(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::create_dir_all(dir.path().join(n)).unwrap();
        std::fs::write(dir.path().join(n).join("index.html"), format!("{n}\n")).unwrap();
    }
    dir
}

/// A port that something else holds, so a server told to use it cannot start.
fn held_port() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port().to_string();
    (l, p)
}

#[test]
fn the_environment_beats_the_file() {
    let dir = sites(&["root", "envroot"]);
    let (_held, port) = held_port();
    std::fs::write(
        dir.path().join("uring.toml"),
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nworkers = 3\nengine = \"uring\"\n\
             [log]\naccess = \"off\"\n"
        ),
    )
    .unwrap();
    let l = listen(command(
        dir.path(),
        &[],
        &[
            ("URING_HTTPD_HOST", "::1"),
            ("URING_HTTPD_PORT", "0"),
            ("URING_HTTPD_WORKERS", "2"),
            ("URING_HTTPD_ENGINE", "epoll"),
            ("URING_HTTPD_ROOT", "envroot"),
        ],
    ));
    assert!(l.addr.starts_with("[::1]:"), "{}", l.seen);
    assert!(
        l.seen.contains("(engine epoll, 2 workers, root "),
        "{}",
        l.seen
    );
    assert!(
        l.seen.contains(
            "config uring.toml + environment (URING_HTTPD_HOST, URING_HTTPD_PORT, \
             URING_HTTPD_ROOT, URING_HTTPD_WORKERS, URING_HTTPD_ENGINE))"
        ),
        "{}",
        l.seen
    );
    assert_eq!(common::fetch(&l.addr, "/").body, b"envroot\n");
    common::stop_child(l.child);
}

#[test]
fn the_command_line_beats_the_environment() {
    let dir = sites(&["root", "envroot"]);
    let (_held, port) = held_port();
    let l = listen(command(
        dir.path(),
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workers",
            "1",
            "--engine",
            "epoll",
            "--root",
            "root",
        ],
        &[
            ("URING_HTTPD_HOST", "::1"),
            ("URING_HTTPD_PORT", &port),
            ("URING_HTTPD_WORKERS", "5"),
            ("URING_HTTPD_ENGINE", "uring"),
            ("URING_HTTPD_ROOT", "envroot"),
        ],
    ));
    assert!(l.addr.starts_with("127.0.0.1:"), "{}", l.seen);
    assert!(
        l.seen.contains("(engine epoll, 1 workers, root "),
        "{}",
        l.seen
    );
    // Every variable was overridden, so none is in force.
    assert!(l.seen.contains("config built-in defaults)"), "{}", l.seen);
    assert_eq!(common::fetch(&l.addr, "/").body, b"root\n");
    common::stop_child(l.child);
}

#[test]
fn variables_left_empty_count_as_unset() {
    let dir = sites(&["root"]);
    std::fs::write(
        dir.path().join("uring.toml"),
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nworkers = 1\n[log]\naccess = \"off\"\n",
    )
    .unwrap();
    let env: Vec<(&str, &str)> = SERVER_ENV.iter().map(|k| (*k, "")).collect();
    let l = listen(command(dir.path(), &[], &env));
    assert!(l.seen.contains("1 workers"), "{}", l.seen);
    assert!(l.seen.contains("config uring.toml)"), "{}", l.seen);
    assert_eq!(common::fetch(&l.addr, "/").body, b"root\n");
    common::stop_child(l.child);
}

#[test]
fn the_config_file_named_by_the_environment() {
    let dir = sites(&["root", "conf/www", "conf2/www"]);
    let conf = "[server]\nhost = \"127.0.0.1\"\nport = 0\n[files]\nroot = \"www\"\n[log]\naccess = \"off\"\n";
    std::fs::write(dir.path().join("conf/u.toml"), conf).unwrap();
    std::fs::write(dir.path().join("conf2/u.toml"), conf).unwrap();
    // Relative to the working directory; the root is relative to the file, as always.
    let l = listen(command(
        dir.path(),
        &[],
        &[("URING_HTTPD_CONFIG", "conf/u.toml")],
    ));
    assert!(l.seen.contains("config conf/u.toml)"), "{}", l.seen);
    assert_eq!(common::fetch(&l.addr, "/").body, b"conf/www\n");
    common::stop_child(l.child);
    // --config wins over the variable.
    let l = listen(command(
        dir.path(),
        &["--config", "conf2/u.toml"],
        &[("URING_HTTPD_CONFIG", "conf/u.toml")],
    ));
    assert_eq!(common::fetch(&l.addr, "/").body, b"conf2/www\n");
    common::stop_child(l.child);
}

/// Runs the binary with one variable set and returns its stderr; it must exit 2 before listening.
fn refused(var: &str, value: &str) -> String {
    let dir = sites(&["root"]);
    // A value that is wrongly accepted starts a server: bound the wait so the test fails
    // instead of hanging.
    let mut child = command(dir.path(), &[], &[(var, value)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{var}={value} was accepted: the server started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn bad_values_name_the_variable() {
    let p = "uring-httpd: configuration error: environment variable";
    let cases = [
        (
            "URING_HTTPD_PORT",
            "eighty",
            format!(
                "{p} URING_HTTPD_PORT: \"eighty\" is not a port number (0 to 65535, 0 picks a free one)\n"
            ),
        ),
        (
            "URING_HTTPD_PORT",
            "65536",
            format!(
                "{p} URING_HTTPD_PORT: \"65536\" is not a port number (0 to 65535, 0 picks a free one)\n"
            ),
        ),
        (
            "URING_HTTPD_HOST",
            "user@host",
            format!(
                "{p} URING_HTTPD_HOST: \"user@host\" is not an IP address or a host name (e.g. \
                 \"0.0.0.0\", \"::\", \"localhost\")\n"
            ),
        ),
        (
            "URING_HTTPD_WORKERS",
            "many",
            format!(
                "{p} URING_HTTPD_WORKERS: \"many\" is not a number of worker threads (0 = one per CPU)\n"
            ),
        ),
        (
            "URING_HTTPD_ENGINE",
            "kqueue",
            format!("{p} URING_HTTPD_ENGINE: \"kqueue\" is not an engine (uring, epoll or auto)\n"),
        ),
        (
            "URING_HTTPD_ROOT",
            "/no/such/site",
            format!(
                "{p} URING_HTTPD_ROOT: root directory /no/such/site cannot be used: No such file \
                 or directory (os error 2)\n"
            ),
        ),
        (
            "URING_HTTPD_CONFIG",
            "/no/such/u.toml",
            format!(
                "{p} URING_HTTPD_CONFIG: cannot read the config file /no/such/u.toml: No such \
                 file or directory (os error 2)\n"
            ),
        ),
    ];
    for (var, value, want) in cases {
        assert_eq!(refused(var, value), want);
    }
    // A value that parses but fails the file's validation is still named by its variable.
    let err = refused("URING_HTTPD_WORKERS", "5000");
    assert!(
        err.starts_with(&format!("{p} URING_HTTPD_WORKERS: ")) && err.contains("5000"),
        "{err}"
    );
}
