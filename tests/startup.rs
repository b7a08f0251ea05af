//! Start-up: the config file and its errors (file, line, key), command-line overrides, built-in
//! defaults, ports already taken, and the engine choice, including the fallback to epoll when
//! io_uring is forbidden by a real seccomp filter.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Engine, Listening, Server, listen};

/// Runs the binary to completion; for configurations that must fail before listening.
fn run_failing(dir: &Path, args: &[&str]) -> Output {
    let out = common::server_command()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "expected failure, stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("uring.toml"), text).unwrap();
    let out = run_failing(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn invalid_toml_names_file_and_line() {
    let err = config_error("[server]\nport = 80\n[files\nroot = \"root\"\n");
    assert!(err.contains("uring.toml:3"), "{err}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = config_error("[server]\nport = 8080\n\n[limits]\nmax_request_byte = 10\n");
    assert!(
        err.contains("uring.toml:5: key `limits.max_request_byte`"),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let err = config_error("[server]\nworkers = \"many\"\n");
    assert!(err.contains("uring.toml:2: key `server.workers`"), "{err}");
    // Not a host name either, so it is refused without a DNS lookup.
    let err = config_error("[server]\nhost = \"not an ip\"\n");
    assert!(err.contains("uring.toml:2: key `server.host`"), "{err}");
    let err = config_error("[server]\nport = 70000\n");
    assert!(err.contains("uring.toml:2: key `server.port`"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let err = config_error("[limits]\nmax_request_bytes = 10\n");
    assert!(
        err.contains("uring.toml:2: key `limits.max_request_bytes`"),
        "{err}"
    );
    let err = config_error("[server]\nengine = \"kqueue\"\n");
    assert!(err.contains("key `server.engine`"), "{err}");
}

#[test]
fn missing_root_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("uring.toml"),
        "[files]\nroot = \"no-such-site\"\n",
    )
    .unwrap();
    let out = run_failing(dir.path(), &[]);
    let err = stderr(&out);
    assert!(err.contains("no-such-site"), "{err}");
    assert!(err.contains("key `files.root`"), "{err}");
}

#[test]
fn explicit_config_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_failing(dir.path(), &["--config", "nope.toml"]);
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
}

/// Starts the binary with `args` in `dir`: the child, its address, what it printed.
fn spawn_listening(dir: &Path, args: &[&str]) -> (std::process::Child, String, String) {
    let mut cmd = common::server_command();
    cmd.args(args).current_dir(dir);
    let l = listen(cmd);
    (l.child, l.addr, l.seen)
}

/// A directory holding `root/index.html` with `index` in it.
fn site(index: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/index.html"), index).unwrap();
    dir
}

#[test]
fn builtin_defaults_apply_without_a_config_file() {
    let dir = site("default root\n");
    let (child, addr, seen) = spawn_listening(dir.path(), &["--host", "127.0.0.1", "--port", "0"]);
    assert!(seen.contains("config built-in defaults"), "{seen}");
    assert_eq!(common::fetch(&addr, "/").body, b"default root\n");
    common::stop_child(child);
    // The default access log is access.log in the working directory.
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(log.contains(" / 200 GET "), "{log}");
}

#[test]
fn relative_root_is_relative_to_the_config_file_and_cli_overrides_win() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("site")).unwrap();
    std::fs::write(conf.join("site/index.html"), "site\n").unwrap();
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/index.html"), "other\n").unwrap();
    std::fs::write(
        conf.join("u.toml"),
        "[server]\nhost = \"127.0.0.1\"\nport = 1\nworkers = 3\n[files]\nroot = \"site\"\n[log]\naccess = \"off\"\n",
    )
    .unwrap();
    // The working directory is `dir`, the config is in `dir/conf`: root resolves to conf/site.
    let (child, addr, seen) =
        spawn_listening(dir.path(), &["--config", "conf/u.toml", "--port", "0"]);
    assert!(seen.contains("3 workers"), "{seen}");
    assert_eq!(common::fetch(&addr, "/").body, b"site\n");
    common::stop_child(child);
    let (child, addr, _) = spawn_listening(
        dir.path(),
        &[
            "--config",
            "conf/u.toml",
            "--port",
            "0",
            "--root",
            "other",
            "--workers",
            "1",
            "--engine",
            "epoll",
        ],
    );
    assert_eq!(common::fetch(&addr, "/").body, b"other\n");
    common::stop_child(child);
}

#[test]
fn port_held_by_another_program_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let out = run_failing(dir.path(), &["--host", "127.0.0.1", "--port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn second_server_on_the_same_port_is_refused() {
    let s = Server::start(Engine::Epoll);
    let port = s.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let out = run_failing(dir.path(), &["--host", "127.0.0.1", "--port", &port]);
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    assert_eq!(s.get("/style.css").status, 200);
}

fn command_without_io_uring(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = common::server_command();
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    common::without_io_uring(&mut cmd);
    cmd
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_forbidden() {
    let dir = site("fallback\n");
    let Listening {
        child, addr, seen, ..
    } = listen(command_without_io_uring(
        dir.path(),
        &["--host", "127.0.0.1", "--port", "0", "--engine", "auto"],
    ));
    let warns: Vec<&str> = seen.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 1, "{seen}");
    assert!(
        warns[0].contains("epoll") && warns[0].contains("seccomp"),
        "{seen}"
    );
    assert!(seen.contains("(engine epoll,"), "{seen}");
    assert_eq!(common::fetch(&addr, "/").body, b"fallback\n");
    common::stop_child(child);
}

#[test]
fn uring_demanded_where_forbidden_exits_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let out = command_without_io_uring(
        dir.path(),
        &["--host", "127.0.0.1", "--port", "0", "--engine", "uring"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("engine = \"uring\" cannot run here"), "{err}");
    assert!(err.contains("seccomp"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn auto_picks_uring_where_available() {
    if common::skip_uring() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let (child, _, seen) = spawn_listening(
        dir.path(),
        &["--host", "127.0.0.1", "--port", "0", "--engine", "auto"],
    );
    assert!(seen.contains("(engine uring,"), "{seen}");
    assert!(!seen.contains("WARN"), "{seen}");
    common::stop_child(child);
}

#[test]
fn listens_on_ipv6_loopback() {
    let dir = site("six\n");
    let (child, addr, _) = spawn_listening(dir.path(), &["--host", "::1", "--port", "0"]);
    assert!(addr.starts_with("[::1]:"), "{addr}");
    assert_eq!(common::fetch(&addr, "/").body, b"six\n");
    common::stop_child(child);
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(log.contains(" ::1 / 200 GET "), "{log}");
}

#[test]
fn log_level_must_be_a_level() {
    // EnvFilter took "verbose" for a target name and silenced everything.
    let err = config_error("[server]\nport = 0\n[log]\nlevel = \"verbose\"\n");
    assert!(err.contains("uring.toml:4: key `log.level`"), "{err}");
    assert!(err.contains("\"verbose\" is not a level"), "{err}");
    // Any case is fine, and the listening line shows at info.
    let dir = site("levels\n");
    std::fs::write(
        dir.path().join("uring.toml"),
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n[log]\nlevel = \"INFO\"\n",
    )
    .unwrap();
    let (child, addr, _) = spawn_listening(dir.path(), &[]);
    assert_eq!(common::fetch(&addr, "/").body, b"levels\n");
    common::stop_child(child);
}

#[test]
fn host_names_and_the_cli_host_are_resolved() {
    let dir = site("named\n");
    let (child, addr, _) = spawn_listening(dir.path(), &["--host", "localhost", "--port", "0"]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(common::fetch(&addr, "/").body, b"named\n");
    common::stop_child(child);
    let out = run_failing(dir.path(), &["--host", "no such host", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("command line: key `--host`: \"no such host\" is not an IP address"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn listening_on_any_ipv6_address_accepts_ipv4_too() {
    let dir = site("dual\n");
    let (child, addr, _) = spawn_listening(dir.path(), &["--host", "::", "--port", "0"]);
    assert!(addr.starts_with("[::]:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap();
    assert_eq!(
        common::fetch(&format!("127.0.0.1:{port}"), "/").body,
        b"dual\n"
    );
    assert_eq!(common::fetch(&format!("[::1]:{port}"), "/").body, b"dual\n");
    common::stop_child(child);
    // The IPv4 client is logged as IPv4, not as ::ffff:127.0.0.1.
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(log.contains(" 127.0.0.1 / 200 GET "), "{log}");
    assert!(log.contains(" ::1 / 200 GET "), "{log}");
}

#[test]
fn a_log_that_cannot_be_written_is_reported_not_silent() {
    let dir = site("full\n");
    std::fs::write(
        dir.path().join("uring.toml"),
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n[log]\naccess = \"/dev/full\"\n",
    )
    .unwrap();
    let mut cmd = common::server_command();
    cmd.current_dir(dir.path());
    let Listening {
        mut child,
        addr,
        later,
        ..
    } = listen(cmd);
    // Serving goes on while the log cannot be written.
    assert_eq!(common::fetch(&addr, "/").body, b"full\n");
    assert_eq!(common::fetch(&addr, "/").body, b"full\n");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let rest = later.lock().unwrap().clone();
    assert!(rest.contains("access log write failed"), "{rest}");
    assert!(
        rest.contains("2 access log lines could not be written"),
        "{rest}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "lost log lines must not look like a clean exit"
    );
}
