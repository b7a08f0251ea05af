//! Where io_uring is refused (a container's seccomp profile, `kernel.io_uring_disabled`), the
//! io_uring half of the suite is skipped with one line on stderr that `cargo test` shows, the
//! epoll half still runs, and `URING_HTTPD_REQUIRE_URING=1` turns the skip into a failure.
//!
//! This binary holds one test per engine and re-runs them as a child of itself under a real
//! seccomp filter that makes io_uring_setup fail with EPERM, as Docker 25's default profile does.

mod common;

use std::process::{Command, Output};

use common::{Engine, REQUIRE_URING, Server};

fn serves_the_index(engine: Engine) {
    let s = Server::start(engine);
    assert_eq!(s.get("/").status, 200);
    assert!(
        s.stderr().contains(&format!("(engine {engine}, ")),
        "{}",
        s.stderr()
    );
}

engine_tests!(serves_the_index);

/// Runs this binary's test `name` (exactly) where io_uring_setup is refused; `require` is the
/// value of URING_HTTPD_REQUIRE_URING, if any. Output is captured as cargo captures it.
fn rerun_without_io_uring(name: &str, require: Option<&str>) -> (Output, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--test-threads=1"])
        .env_remove(REQUIRE_URING);
    if let Some(v) = require {
        cmd.env(REQUIRE_URING, v);
    }
    let out = common::without_io_uring(&mut cmd).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn the_io_uring_half_is_skipped_with_one_line_that_shows() {
    let (out, stdout, stderr) = rerun_without_io_uring("uring::serves_the_index", None);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test uring::serves_the_index ... ok"),
        "{stdout}"
    );
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("io_uring half of the suite is skipped"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].starts_with("note: io_uring unavailable, so the io_uring half"),
        "{stderr}"
    );
    assert!(notes[0].contains("io_uring_setup was refused"), "{stderr}");
    assert!(
        notes[0].contains("set URING_HTTPD_REQUIRE_URING=1 to fail"),
        "{stderr}"
    );
    // Anything but 1 keeps the skip.
    let (out, _, stderr) = rerun_without_io_uring("uring::serves_the_index", Some("0"));
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn the_epoll_half_still_runs_there() {
    let (out, stdout, stderr) = rerun_without_io_uring("epoll::serves_the_index", None);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test epoll::serves_the_index ... ok"),
        "{stdout}"
    );
    assert!(!stderr.contains("skipped"), "{stderr}");
}

#[test]
fn require_uring_turns_the_skip_into_a_failure() {
    let (out, stdout, stderr) = rerun_without_io_uring("uring::serves_the_index", Some("1"));
    assert_eq!(out.status.code(), Some(101), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test uring::serves_the_index ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("io_uring is unavailable here and URING_HTTPD_REQUIRE_URING=1 requires it: io_uring_setup was refused"),
        "{stdout}"
    );
}
