//! The one helper every integration test uses: a real `uring-httpd` process on an ephemeral port
//! on 127.0.0.1, serving a fixture site in a temporary directory, plus a tiny HTTP client over
//! plain sockets that returns statuses, headers and exact body bytes.
//!
//! Every socket has read and write timeouts so a broken server fails a test instead of hanging it;
//! none of them is an assertion about speed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_uring-httpd");
/// Upper bound for any single socket operation in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Generates one `#[test]` per engine for each listed function `fn name(engine: Engine)`.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() {
                if $crate::common::skip_uring() {
                    return;
                }
                super::$name($crate::common::Engine::Uring)
            } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name($crate::common::Engine::Epoll) } )*
        }
    };
}

pub use uring_httpd::engine::Engine;

/// Set to `1` to make the io_uring half of the suite fail, instead of being skipped, where
/// io_uring is unavailable (`.ci/run` sets it, so CI never passes without io_uring unnoticed).
pub const REQUIRE_URING: &str = "URING_HTTPD_REQUIRE_URING";

/// Set to `1` to make a test that needs an outside tool or privilege (GoAccess, systemd-analyze,
/// root for a tmpfs mount) fail where it is missing, instead of skipping with a note (`.ci/run`
/// sets it after installing what they need).
pub const REQUIRE_TOOLS: &str = "URING_HTTPD_REQUIRE_TOOLS";

/// A test that cannot run here says why on stderr (past libtest's capture of passing tests) and
/// returns; with `URING_HTTPD_REQUIRE_TOOLS=1` it fails instead.
pub fn skip(why: &str) {
    if std::env::var_os(REQUIRE_TOOLS).is_some_and(|v| v == "1") {
        panic!("{why}, and {REQUIRE_TOOLS}=1 does not allow skipping");
    }
    let _ = writeln!(std::io::stderr(), "note: skipped: {why}");
}

/// The variables the server reads; cleared for every server a test starts, so a developer's own
/// settings cannot change a test.
pub const SERVER_ENV: [&str; 6] = [
    "URING_HTTPD_CONFIG",
    "URING_HTTPD_HOST",
    "URING_HTTPD_PORT",
    "URING_HTTPD_ROOT",
    "URING_HTTPD_WORKERS",
    "URING_HTTPD_ENGINE",
];

/// A command for the server binary, with none of the [`SERVER_ENV`] variables of whoever runs
/// the tests.
pub fn server_command() -> Command {
    let mut cmd = Command::new(BIN);
    for k in SERVER_ENV {
        cmd.env_remove(k);
    }
    cmd
}

/// True when an io_uring test should return at once because io_uring is unavailable here (a
/// container's seccomp profile, `kernel.io_uring_disabled`, an old kernel). The first skip of a
/// `cargo test` run writes one line saying why, straight to stderr, where libtest's capture of
/// passing tests' output does not reach. With `URING_HTTPD_REQUIRE_URING=1` it panics instead.
pub fn skip_uring() -> bool {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    let why = WHY.get_or_init(|| {
        uring_httpd::engine::probe_uring()
            .err()
            .map(|e| e.to_string())
    });
    let Some(why) = why else {
        return false;
    };
    if std::env::var_os(REQUIRE_URING).is_some_and(|v| v == "1") {
        panic!("io_uring is unavailable here and {REQUIRE_URING}=1 requires it: {why}");
    }
    static NOTED: Once = Once::new();
    NOTED.call_once(|| {
        // cargo runs each test binary as a child of its own; a marker named after that parent
        // keeps the note to one line per `cargo test`, not one per binary.
        let first = skip_marker().is_none_or(|m| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(m)
                .is_ok()
        });
        if first {
            let _ = writeln!(
                std::io::stderr(),
                "note: io_uring unavailable, so the io_uring half of the suite is skipped (its \
                 tests pass without running; the epoll half runs; set {REQUIRE_URING}=1 to fail \
                 instead): {why}"
            );
        }
    });
    true
}

/// `target/tmp/uring-skip-noted-<parent pid>-<parent start time>`, when /proc tells.
fn skip_marker() -> Option<PathBuf> {
    let parent = std::os::unix::process::parent_id();
    let stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
    // Field 22, starttime, counted after the parenthesised command name (fields 1 and 2).
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("uring-skip-noted-{parent}-{start}")))
}

/// A seccomp filter that makes io_uring_setup fail with EPERM, as Docker's default profile does
/// since Docker 25.
pub fn deny_io_uring() -> seccompiler::BpfProgram {
    use seccompiler::{SeccompAction, SeccompFilter};
    let rules = [(libc::SYS_io_uring_setup, vec![])].into_iter().collect();
    let arch = std::env::consts::ARCH.try_into().unwrap();
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .unwrap()
    .try_into()
    .unwrap()
}

/// Makes `cmd` start under [`deny_io_uring`].
pub fn without_io_uring(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let filter = deny_io_uring();
    // SAFETY: the closure runs between fork and exec; apply_filter only makes two system calls
    // (prctl and seccomp) on a program built before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&filter).map_err(std::io::Error::other))
    }
}

/// A started server: its process, its address, what it printed up to the listening line, and
/// (filled by a thread until it exits) what it printed after.
pub struct Listening {
    pub child: Child,
    pub addr: String,
    pub seen: String,
    pub later: Arc<Mutex<String>>,
}

/// `GET path` on a new connection to `addr` (a server a test started itself), the response.
pub fn fetch(addr: &str, path: &str) -> Response {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut BufReader::new(c), false).unwrap()
}

/// Stops a server a test started itself with SIGTERM; it must exit 0.
pub fn stop_child(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Starts `cmd` with stderr captured and waits for its listening line.
pub fn listen(mut cmd: Command) -> Listening {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(i) = line.find("listening on http://") {
            let addr = line[i + 20..].split('/').next().unwrap().to_string();
            let later = Arc::new(Mutex::new(String::new()));
            let sink = later.clone();
            std::thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&l);
                    s.push('\n');
                }
            });
            return Listening {
                child,
                addr,
                seen,
                later,
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("did not start: {seen}");
}

/// Config that keeps the demo's `image.png` (70,000 bytes) out of the file cache (whose default
/// limit is 1 MiB), so it is sent from the file: spliced by the io_uring engine, `sendfile`d by
/// the epoll engine.
pub const FROM_FILE: &str = "[files]\ncache_max_file_bytes = 65536";

/// A server that sends `image.png` from the file ([`FROM_FILE`]).
pub fn from_file(e: Engine) -> Server {
    Opts::new(e).extra(FROM_FILE).start()
}

/// Bytes with every value 0..=255 several times over, in a PNG wrapper name: a binary file.
pub fn binary_bytes(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut x: u32 = 0x1234_5678;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x >> 24) as u8);
    }
    v.truncate(len);
    v
}

/// Writes the fixture site: pages, a binary image, refused types, dotfiles, symlinks.
pub fn write_site(root: &Path, outside: &Path) {
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w(
        "index.html",
        b"<!DOCTYPE html><title>home</title><p>home \xe2\x80\x94 page</p>\n",
    );
    w("style.css", b"body { color: #333; }\n");
    w("app.js", b"console.log('hi');\n");
    w("data.json", b"{\"a\": 1}\n");
    w("image.png", &binary_bytes(70_000));
    w("photo.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    w("README", b"no extension\n");
    w("hello world.txt", b"spaces\n");
    w("caf\u{e9}.html", b"utf-8 name\n");
    w("sub/index.html", b"<p>sub index</p>\n");
    w("sub/page.html", b"<p>sub page</p>\n");
    w("empty/.keep.txt", b"");
    w(".hidden.html", b"secret dotfile\n");
    w(".git/config.txt", b"[core]\n");
    std::fs::create_dir_all(outside).unwrap();
    std::fs::write(outside.join("secret.html"), b"OUTSIDE THE ROOT\n").unwrap();
    std::os::unix::fs::symlink("index.html", root.join("inside-link.html")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.html"), root.join("outside-link.html"))
        .unwrap();
    std::os::unix::fs::symlink("../outside/secret.html", root.join("relative-escape.html"))
        .unwrap();
    std::os::unix::fs::symlink(outside, root.join("outside-dir")).unwrap();
}

/// Whether the server binary is built with AddressSanitizer, whose allocator (with its
/// quarantine) keeps freed memory: tests that bound the server's RSS skip themselves then.
pub fn built_with_asan() -> bool {
    let binary = std::fs::read(BIN).unwrap();
    let asan = binary.windows(11).any(|w| w == b"__asan_init");
    if asan {
        eprintln!(
            "skipped: the server is built with AddressSanitizer, whose allocator keeps memory"
        );
    }
    asan
}

/// How to start a server.
pub struct Opts {
    pub engine: Engine,
    /// TOML appended to the generated config (keys in their own sections).
    pub extra: String,
    pub workers: usize,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A descriptor limit (soft and hard) for the server process.
    pub nofile: Option<u64>,
    /// A soft descriptor limit for the server process, the hard one left as it is.
    pub nofile_soft: Option<u64>,
}

impl Opts {
    pub fn new(engine: Engine) -> Opts {
        Opts {
            engine,
            extra: String::new(),
            workers: 2,
            args: Vec::new(),
            env: Vec::new(),
            nofile: None,
            nofile_soft: None,
        }
    }

    pub fn extra(mut self, toml: &str) -> Opts {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn start(self) -> Server {
        Server::start_with(self)
    }
}

/// This process's hard descriptor limit (what a child inherits).
pub fn nofile_hard() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `l`, a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    l.rlim_max
}

/// A running server and its temporary directory (config, root, access log).
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub log_path: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    /// A test that makes the server panic on purpose sets this; otherwise any "panicked" on
    /// stderr fails the test.
    pub panic_expected: bool,
}

/// The config every test starts from; `[limits]` and `[log]` keys come from `Opts::extra`.
fn base_config(o: &Opts) -> String {
    let mut sections: Vec<(String, Vec<String>)> = vec![
        (
            "server".into(),
            vec![
                "host = \"127.0.0.1\"".into(),
                "port = 0".into(),
                format!("workers = {}", o.workers),
                format!("engine = \"{}\"", o.engine.name()),
            ],
        ),
        ("files".into(), vec!["root = \"root\"".into()]),
        ("limits".into(), vec![]),
        ("log".into(), vec![]),
    ];
    // Merge extra lines into their sections so a test can override any key.
    let mut current = String::new();
    for line in o.extra.lines() {
        let t = line.trim();
        if t.starts_with("[[") {
            // An array of tables: every occurrence is a table of its own, never merged.
            current = format!("{t}#{}", sections.len());
            sections.push((current.clone(), vec![]));
        } else if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if !t.is_empty() {
            let key = t.split('=').next().unwrap().trim().to_string();
            let sec = match sections.iter_mut().find(|(s, _)| *s == current) {
                Some(s) => s,
                None => {
                    sections.push((current.clone(), vec![]));
                    sections.last_mut().unwrap()
                }
            };
            sec.1.retain(|l| l.split('=').next().unwrap().trim() != key);
            sec.1.push(t.to_string());
        }
    }
    if !sections
        .iter()
        .any(|(s, lines)| s == "log" && lines.iter().any(|l| l.starts_with("access")))
    {
        sections
            .iter_mut()
            .find(|(s, _)| s == "log")
            .unwrap()
            .1
            .push("access = \"access.log\"".into());
    }
    let mut text = String::new();
    for (s, lines) in sections {
        match s.split_once('#') {
            Some((array, _)) => text.push_str(&format!("{array}\n")),
            None => text.push_str(&format!("[{s}]\n")),
        }
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
    }
    text
}

impl Server {
    pub fn start(engine: Engine) -> Server {
        Opts::new(engine).start()
    }

    fn start_with(o: Opts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write_site(&root, &dir.path().join("outside"));
        let cfg = dir.path().join("uring.toml");
        std::fs::write(&cfg, base_config(&o)).unwrap();
        let mut cmd = server_command();
        cmd.arg("--config").arg(&cfg).args(&o.args);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        if o.nofile.is_some() || o.nofile_soft.is_some() {
            use std::os::unix::process::CommandExt;
            let hard = o.nofile.unwrap_or_else(nofile_hard);
            let limit = libc::rlimit {
                rlim_cur: o.nofile_soft.or(o.nofile).unwrap_or(hard),
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe and only touches the child being started.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start uring-httpd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let err = child.stderr.take().unwrap();
            let buf = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    {
                        let mut b = buf.lock().unwrap();
                        b.push_str(&line);
                        b.push('\n');
                    }
                    // Announced after it is recorded, so a test that sees the address also sees
                    // the line.
                    if let Some(i) = line.find("listening on http://") {
                        let rest = &line[i + "listening on http://".len()..];
                        let addr = rest.split('/').next().unwrap().to_string();
                        let _ = tx.send(addr);
                    }
                }
            });
            let mut out = child.stdout.take().unwrap();
            let buf = stdout.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = out.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        let addr = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            addr,
            log_path: dir.path().join("access.log"),
            root,
            dir,
            stderr,
            stdout,
            panic_expected: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Waits (at most [`IO_TIMEOUT`]) until stderr holds `needle` at least `count` times, and
    /// returns it; panics with what it holds otherwise.
    pub fn wait_stderr(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let err = self.stderr();
            if err.matches(needle).count() >= count {
                return err;
            }
            if Instant::now() > deadline {
                panic!("stderr never held {count}× {needle:?}:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The config file the server was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("uring.toml")
    }

    /// Rewrites the config file through `edit` (for reload tests).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        std::fs::write(self.config_path(), edit(text)).unwrap();
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// One GET on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let head_only = raw.starts_with("HEAD ");
        read_response(&mut BufReader::new(s), head_only).expect("a response")
    }

    /// Sends `GET path` on a new connection whose receive buffer is only `rcvbuf` bytes, and
    /// returns the connection unread: the server has to write the response in many pieces.
    pub fn get_slowly(&self, path: &str, rcvbuf: usize) -> TcpStream {
        let mut c = self.connect();
        socket2::SockRef::from(&c)
            .set_recv_buffer_size(rcvbuf)
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        c
    }

    /// Starts a 20 MiB download of a new `big.png` that stays in flight (a small receive buffer
    /// keeps most of it inside the server) and reads its first 4 KiB. Returns the connection,
    /// the file's bytes and what was read, for the shutdown and drain tests.
    pub fn download_in_flight(&self) -> (TcpStream, Vec<u8>, [u8; 4096]) {
        let big = binary_bytes(20 << 20);
        std::fs::write(self.root.join("big.png"), &big).unwrap();
        let mut c = self.get_slowly("/big.png", 64 * 1024);
        let mut first = [0u8; 4096];
        c.read_exact(&mut first).unwrap();
        (c, big, first)
    }

    /// Sends raw bytes and returns everything the server sends until it closes the connection.
    pub fn exchange_until_close(&self, raw: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("server closes the connection");
        out
    }

    /// Access-log lines, waiting until at least `n` are there (the writer flushes in batches).
    pub fn log_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(String::from).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Sends SIGTERM and waits for the exit status (killing the process if it hangs).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                // Let the reader threads take the last output.
                std::thread::sleep(Duration::from_millis(50));
                let err = self.stderr();
                assert!(
                    self.panic_expected || !err.contains("panicked"),
                    "the server panicked:\n{err}"
                );
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A value from /proc/PID/status, in kB (e.g. "VmHWM").
    pub fn proc_status_kb(&self, key: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The server's open descriptors once the count has stopped changing.
    pub fn settled_fds(&self) -> usize {
        settled(|| self.open_fds())
    }
}

/// `f()` once it has returned the same value five times in a row, 20 ms apart (a count the
/// server is still changing, such as its descriptors or resident memory after a burst).
pub fn settled<T: PartialEq>(f: impl Fn() -> T) -> T {
    let mut last = f();
    let mut same = 0;
    while same < 5 {
        std::thread::sleep(Duration::from_millis(20));
        let now = f();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Every test also checks that nothing it sent made the server panic.
            std::thread::sleep(Duration::from_millis(20));
            let err = self.stderr();
            if !std::thread::panicking() && !self.panic_expected {
                assert!(!err.contains("panicked"), "the server panicked:\n{err}");
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Bytes of head plus body as the server sent them.
    pub fn wire_len(&self) -> u64 {
        let head: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum();
        let line = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).len();
        (line + head + 2 + self.body.len()) as u64
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `None` when the connection closed before a status line.
pub fn read_response<R: BufRead>(r: &mut R, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next()?;
    assert_eq!(version, "HTTP/1.1", "status line {line:?}");
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        assert!(h.ends_with("\r\n"), "header line without CRLF: {h:?}");
        let h = h.trim_end_matches("\r\n");
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(": ").expect("header with ': '");
        headers.push((n.to_string(), v.to_string()));
    }
    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    // 204 and 304 have no body (and a 204 no Content-Length).
    if !head_only && status != 304 && status != 204 {
        let len: usize = resp
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).ok()?;
    }
    Some(resp)
}

/// Asserts that the peer closed the connection (EOF, or a reset after it closed).
pub fn assert_closed(s: &mut impl Read) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected the connection to be closed, got more bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the connection to be closed, got {e}"),
    }
}
