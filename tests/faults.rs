//! Faults and exhaustion, over sockets on both engines: a connection whose task panics (the
//! debug-build fault `URING_HTTPD_FAULT=conn-panic`) costs that connection only; running out of
//! descriptors at accept keeps stderr to a few lines; the access log on a full disk keeps whole
//! lines; memory taken by a burst of connections goes back once they close. And the io_uring
//! engine without its receive ring (`URING_HTTPD_FAULT=no-recv-ring`), as on kernels before 6.0.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use common::{Engine, Opts, read_response};

engine_tests!(
    a_panicking_connection_costs_only_itself,
    out_of_descriptors_at_accept_stays_quiet,
    the_open_files_limit_is_raised_and_said_once,
    memory_comes_back_after_a_burst,
);

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
    // Warm up (the file cached, a pipe pooled), on a connection the server closes itself.
    let out =
        s.exchange_until_close(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let baseline = s.settled_fds();

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
    s.wait_stderr(&peer, 1);
    let err = s.stderr();
    let naming: Vec<&str> = err.lines().filter(|l| l.contains(&peer)).collect();
    assert_eq!(naming.len(), 1, "{err}");
    assert!(
        naming[0].contains("ERROR")
            && naming[0].contains("connection task failed with a panic: injected fault conn-panic"),
        "{err}"
    );
    assert_eq!(err.matches("conn-panic").count(), 1, "said once: {err}");
    assert_eq!(s.settled_fds(), baseline, "descriptors now and before");
    // Nothing else changed: a clean exit, every answered request logged.
    assert!(s.stop().success(), "{}", s.stderr());
    assert_eq!(s.log_lines(2).len(), 2);
}

/// With 64 descriptors and 150 clients, most connections wait in the backlog while every
/// accept fails with EMFILE, and requests that were accepted with the last descriptors get 503s
/// (no descriptor left for their file): stderr gets one line per worker for each (and a count
/// at most every 10 s), not one per failure. Once clients leave, accepting resumes.
fn out_of_descriptors_at_accept_stays_quiet(e: Engine) {
    let mut o = Opts::new(e).extra("[limits]\nkeep_alive_timeout_secs = 60");
    o.nofile = Some(64);
    let s = o.start();
    let started = s.stderr().lines().count();
    let mut clients = Vec::new();
    for _ in 0..150 {
        // The kernel completes the handshake into the backlog whether or not it is accepted.
        let mut c = s.connect();
        c.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        clients.push(c);
    }
    // Every worker fills its table and then fails at accept; let that go on for many rounds of
    // the accept loop (a failure a few milliseconds apart before this change).
    let failing = || {
        s.stderr()
            .matches("accept failed: Too many open files")
            .count()
    };
    assert!(eventually(|| failing() == 2), "{}", s.stderr());
    std::thread::sleep(Duration::from_millis(500));
    let err = s.stderr();
    let new_lines: Vec<&str> = err.lines().skip(started).collect();
    // Per worker: one line for accepts, one for the first request that could not open its file.
    assert!(
        new_lines.len() <= 4,
        "{} new lines:\n{err}",
        new_lines.len()
    );
    assert!(
        new_lines.iter().all(|l| {
            (l.contains("accept failed") && l.contains("(limit 64)"))
                || l.contains("503: file system: Too many open files")
        }),
        "{err}"
    );
    // Clients leave: the waiting ones are accepted and answered (a 503 where a worker that had
    // not cached the file still found no descriptor for it), and new ones are served.
    let waiting = clients.split_off(120);
    drop(clients);
    for c in waiting {
        let mut r = BufReader::new(c);
        let resp = read_response(&mut r, false).expect("answered once descriptors are free");
        assert!(matches!(resp.status, 200 | 503), "{resp:?}");
    }
    assert_eq!(s.get("/style.css").status, 200);
}

/// Started with a soft limit of 256 below the hard one, the server raises it and says so in one
/// start-up line; started at the hard limit, it says that instead.
fn the_open_files_limit_is_raised_and_said_once(e: Engine) {
    let hard = common::nofile_hard();
    if hard <= 256 {
        common::skip(&format!(
            "the hard descriptor limit here ({hard}) leaves nothing to raise"
        ));
        return;
    }
    let mut o = Opts::new(e);
    o.nofile_soft = Some(256);
    let s = o.start();
    let line = format!("open files limit raised to {hard} (was 256)");
    let err = s.stderr();
    assert_eq!(err.matches("open files limit").count(), 1, "{err}");
    assert!(err.contains(&line), "{err}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, [hard.to_string(), hard.to_string()], "{row}");

    let mut o = Opts::new(e);
    o.nofile = Some(300);
    let s = o.start();
    let err = s.stderr();
    assert_eq!(err.matches("open files limit").count(), 1, "{err}");
    assert!(
        err.contains("open files limit 300 (already the hard limit)"),
        "{err}"
    );
}

/// A tmpfs of 64 KiB mounted for one test, unmounted when dropped: by mount(2) as root, else
/// through passwordless `sudo -n` (a CI runner's usual user), writable by everyone.
struct SmallDisk {
    dir: tempfile::TempDir,
    sudo: bool,
}

impl SmallDisk {
    fn mount() -> Result<SmallDisk, String> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: mount(2) with NUL-terminated strings that live across the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=64k".as_ptr().cast(),
            )
        };
        if r == 0 {
            return Ok(SmallDisk { dir, sudo: false });
        }
        let direct = std::io::Error::last_os_error();
        let sudo = std::process::Command::new("sudo")
            .args([
                "-n",
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=64k,mode=1777",
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match sudo {
            Ok(s) if s.success() => Ok(SmallDisk { dir, sudo: true }),
            _ => Err(format!("{direct}, and `sudo -n mount` did not work either")),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        if self.sudo {
            let _ = std::process::Command::new("sudo")
                .args(["-n", "umount", "-l"])
                .arg(self.dir.path())
                .status();
            return;
        }
        let target = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: umount2(2) on the mount point this value mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The access log on a file system that fills up (a 64 KiB tmpfs): the server keeps serving,
/// says the log is failing, exits 1 for the lost lines, and the file holds whole lines only,
/// never a torn one. Needs root (or passwordless sudo) for the mount; skipped visibly otherwise.
#[test]
fn a_full_disk_leaves_whole_access_lines_only() {
    let disk = match SmallDisk::mount() {
        Ok(d) => d,
        Err(e) => {
            return common::skip(&format!(
                "a_full_disk_leaves_whole_access_lines_only: cannot mount a 64 KiB tmpfs ({e}); \
                 it needs root or passwordless sudo"
            ));
        }
    };
    let log = disk.dir.path().join("access.log");
    let mut s = Opts::new(Engine::Epoll)
        .extra(&format!("[log]\naccess = \"{}\"", log.display()))
        .start();
    // About 75 bytes a line: 2000 lines are more than twice what fits.
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    for i in 0..2000 {
        let path = format!("/style.css?{i}");
        w.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
        if i % 200 == 0 {
            // Let the writer flush in several batches, as it does under real traffic.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop((w, r));
    let status = s.stop();
    let err = s.stderr();
    assert_eq!(status.code(), Some(1), "lines were lost: {err}");
    assert!(
        err.contains("access log write failed: No space left on device"),
        "{err}"
    );
    let text = std::fs::read(&log).unwrap();
    assert!(
        text.len() > 32 * 1024,
        "the disk filled: {} bytes",
        text.len()
    );
    assert!(
        text.ends_with(b"\n"),
        "a torn last line: {:?}",
        &text[text.len() - 80..]
    );
    let text = String::from_utf8(text).unwrap();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 7, "{line:?}");
        assert_eq!((f[2], f[3], f[4]), ("/style.css", "200", "GET"), "{line:?}");
    }
}

/// After a burst of 4,000 keep-alive connections closes, most of the memory they took goes back
/// to the system (the worker trims the allocator once most of its connections are gone). The
/// bound is generous, half of what the burst added, and measured once the resident size has
/// stopped changing (waiting up to seconds for it), so it does not depend on timing; without
/// the trim nearly all of it stays.
fn memory_comes_back_after_a_burst(e: Engine) {
    if common::built_with_asan() {
        return;
    }
    let mut o =
        Opts::new(e).extra("[limits]\nkeep_alive_timeout_secs = 60\n[log]\naccess = \"off\"");
    o.workers = 1;
    let s = o.start();
    assert_eq!(s.get("/style.css").status, 200);
    let rss = || s.proc_status_kb("VmRSS");
    let settled = || common::settled(rss);
    let start = settled();
    let mut clients = Vec::new();
    for _ in 0..4000 {
        let mut c = s.connect();
        c.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        clients.push(c);
    }
    for c in &mut clients {
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let peak = rss();
    assert!(
        // About 1.5 KiB per connection (an idle one holds 1.4-1.5 KiB, see benches/README.md).
        peak > start + 4 * 1024,
        "the burst took memory: {start} -> {peak} KiB"
    );
    // And not much more: an idle connection stays under 1.75 KiB (issue 7's budget is 1.5 KiB
    // at 10,000 connections; a task future that doubled its size once cost 2.1 KiB here).
    assert!(
        peak - start < 4000 * 7 / 4,
        "4,000 idle connections took {} KiB, more than 1.75 KiB each",
        peak - start
    );
    drop(clients);
    // The worker gives the memory back half a second after the drain (and again when the last
    // connection is gone); wait, bounded, for most of it before asserting the generous bound.
    let bound = start + (peak - start) / 2;
    eventually(|| settled() < start + (peak - start) / 8);
    let after = settled();
    eprintln!("resident {start} KiB before, {peak} KiB at the peak, {after} KiB after");
    assert!(
        after < bound,
        "resident {start} KiB before, {peak} KiB at the peak, {after} KiB after"
    );
}

/// Without its receive ring (as on kernels before 6.0, forced here by a fault) the io_uring
/// engine says so once and receives with one operation per request: keep-alive, pipelined and
/// split heads, and the close after `Connection: close`, all still answered byte for byte.
#[test]
fn the_uring_engine_serves_without_its_receive_ring() {
    if common::skip_uring() {
        return;
    }
    let mut o = Opts::new(Engine::Uring);
    o.workers = 1;
    o.env
        .push(("URING_HTTPD_FAULT".into(), "no-recv-ring".into()));
    let s = o.start();
    let err = s.stderr();
    assert_eq!(
        err.matches("no multishot receive ring (injected fault no-recv-ring")
            .count(),
        1,
        "{err}"
    );
    let css = &b"body { color: #333; }\n"[..];
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for piece in ["GET /style.css HT", "TP/1.1\r\nHost: t\r\n", "\r\n"] {
        c.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!((resp.status, &resp.body[..]), (200, css));
    c.write_all(
        b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /missing.html HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for want in [200, 404, 200] {
        assert_eq!(read_response(&mut r, false).unwrap().status, want);
    }
    common::assert_closed(&mut r);
}
