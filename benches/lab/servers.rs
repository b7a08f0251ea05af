//! The servers under test: writing their configurations, starting them pinned to the server core,
//! finding the processes to measure, and stopping them. A [`Running`] server is a guard: dropping
//! it (after a normal run, an error or a panic) sends SIGTERM, then SIGKILL after a grace period,
//! and reaps every process it started.
//!
//! Contenders are uring-httpd with `--engine uring`, the same binary with `--engine epoll`, nginx
//! (when installed) twice, with `sendfile on` and `sendfile off`, lighttpd and h2o (when
//! installed), and the two floor responders, which are this lab binary run as
//! `floor-uring PORT FILE` / `floor-epoll PORT FILE`. All listen on 127.0.0.1 on a free port, run
//! one worker (process or thread) and keep no access log.
//!
//! CPU is measured over the whole process tree a server starts (the started process and every
//! descendant found after the warm-up, all threads of each): for nginx the master and its worker,
//! for h2o its process and helper child, for the others their one process.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::measure;

/// nginx's configuration template, filled by [`nginx_conf`].
const NGINX_TEMPLATE: &str = include_str!("../nginx/lab.conf");
/// lighttpd's and h2o's templates, filled by [`fill`].
const LIGHTTPD_TEMPLATE: &str = include_str!("../lighttpd/lab.conf");
const H2O_TEMPLATE: &str = include_str!("../h2o/lab.conf");

/// Where nginx is looked for.
pub const NGINX: &str = "/usr/sbin/nginx";
/// Where lighttpd and h2o are looked for (Debian's paths), by name then on PATH.
pub const LIGHTTPD: &str = "/usr/sbin/lighttpd";
pub const H2O: &str = "/usr/bin/h2o";

/// The largest file a floor responder serves (it keeps 32 copies of the response in memory).
pub const FLOOR_MAX_BYTES: u64 = 64 * 1024;

/// A server configuration taking part in the fight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    Uring,
    Epoll,
    NginxSendfileOn,
    NginxSendfileOff,
    Lighttpd,
    H2o,
    FloorUring,
    FloorEpoll,
}

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::Uring => "uring",
            Contender::Epoll => "epoll",
            Contender::NginxSendfileOn => "nginx-sf-on",
            Contender::NginxSendfileOff => "nginx-sf-off",
            Contender::Lighttpd => "lighttpd",
            Contender::H2o => "h2o",
            Contender::FloorUring => "floor-uring",
            Contender::FloorEpoll => "floor-epoll",
        }
    }

    pub fn is_floor(self) -> bool {
        matches!(self, Contender::FloorUring | Contender::FloorEpoll)
    }

    /// Whether this contender serves `bytes`-long files in the lab.
    pub fn serves(self, bytes: u64) -> bool {
        !self.is_floor() || bytes <= FLOOR_MAX_BYTES
    }

    pub fn is_nginx(self) -> bool {
        matches!(
            self,
            Contender::NginxSendfileOn | Contender::NginxSendfileOff
        )
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What every server start needs to know.
#[derive(Debug, Clone)]
pub struct Env {
    /// The uring-httpd binary cargo built for this bench.
    pub bin: PathBuf,
    /// This lab binary, which runs the floor responders.
    pub lab: PathBuf,
    pub nginx: Option<PathBuf>,
    pub lighttpd: Option<PathBuf>,
    pub h2o: Option<PathBuf>,
    /// Directory holding the fixture files (the document root of every server).
    pub root: PathBuf,
    /// Scratch directory for configurations, nginx's prefix, strace summaries.
    pub work: PathBuf,
    /// CPU the server is pinned to, when pinning.
    pub cpu: Option<usize>,
    pub workers: usize,
}

/// A started server; stopped when dropped.
pub struct Running {
    pub contender: Contender,
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Processes below the started one (nginx's workers, h2o's helper), as last looked up.
    workers: Vec<i32>,
    /// The command name of those processes, checked before killing one by pid.
    comm: &'static str,
    /// Lines the server wrote on stderr besides the start-up line (warnings, errors).
    stderr: Arc<Mutex<Vec<String>>>,
    /// The server's error log (nginx, lighttpd, h2o), read for diagnostics.
    error_log: Option<PathBuf>,
}

/// How long a server gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// `program` pinned to `cpu` with taskset when one is given (servers, wrk, strace and perf).
pub fn pinned(cpu: Option<usize>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Reads a child's stderr on a thread: lines matching `ready` are sent on the channel, the others
/// kept (at most 200) for the report.
fn drain_stderr(
    child: &mut Child,
    ready: impl Fn(&str) -> Option<SocketAddr> + Send + 'static,
) -> (mpsc::Receiver<SocketAddr>, Arc<Mutex<Vec<String>>>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = kept.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = ready(&line) {
                let _ = tx.send(addr);
                continue;
            }
            let mut v = sink.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() < 200 {
                v.push(line);
            }
        }
    });
    (rx, kept)
}

/// The address in uring-httpd's start-up line `... listening on http://127.0.0.1:PORT/ ...`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    rest[..rest.find('/')?].parse().ok()
}

/// A port that was free a moment ago on 127.0.0.1 (for nginx, which cannot report port 0).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Fills a template's `{{USER}}`, `{{PREFIX}}`, `{{ROOT}}` and `{{PORT}}`; `user` is the line
/// for `{{USER}}` when running as root (servers would otherwise drop to a user that cannot read
/// the lab's private temporary directory).
pub fn fill(template: &str, user: &str, prefix: &Path, root: &Path, port: u16) -> String {
    let user = if running_as_root() {
        user
    } else {
        "# (not root: no user directive)"
    };
    template
        .replace("{{USER}}", user)
        .replace("{{PREFIX}}", &prefix.display().to_string())
        .replace("{{ROOT}}", &root.display().to_string())
        .replace("{{PORT}}", &port.to_string())
}

/// Fills the nginx template.
pub fn nginx_conf(prefix: &Path, root: &Path, port: u16, workers: usize, sendfile: bool) -> String {
    let on_off = |b: bool| if b { "on" } else { "off" };
    fill(NGINX_TEMPLATE, "user root root;", prefix, root, port)
        .replace("{{WORKERS}}", &workers.to_string())
        .replace("{{SENDFILE}}", on_off(sendfile))
        .replace("{{TCP_NOPUSH}}", on_off(sendfile))
}

/// Fills the lighttpd template.
pub fn lighttpd_conf(prefix: &Path, root: &Path, port: u16) -> String {
    fill(
        LIGHTTPD_TEMPLATE,
        "# (root: lighttpd keeps running as root without server.username)",
        prefix,
        root,
        port,
    )
}

/// Fills the h2o template.
pub fn h2o_conf(prefix: &Path, root: &Path, port: u16) -> String {
    fill(H2O_TEMPLATE, "user: root", prefix, root, port)
}

impl Running {
    /// Starts `contender` serving the lab's root (a floor: serving `file` under it, whatever the
    /// path asked) and waits until it accepts connections.
    pub fn start(env: &Env, contender: Contender, file: &str) -> Result<Running, String> {
        match contender {
            Contender::Uring => Self::start_ours(env, contender, "uring"),
            Contender::Epoll => Self::start_ours(env, contender, "epoll"),
            Contender::NginxSendfileOn => Self::start_nginx(env, contender, true),
            Contender::NginxSendfileOff => Self::start_nginx(env, contender, false),
            Contender::Lighttpd => Self::start_lighttpd(env),
            Contender::H2o => Self::start_h2o(env),
            Contender::FloorUring | Contender::FloorEpoll => {
                let mut cmd = pinned(env.cpu, &env.lab);
                cmd.arg(contender.label()).arg("0").arg(env.root.join(file));
                Self::start_announcing(cmd, contender, &env.lab)
            }
        }
    }

    fn start_ours(env: &Env, contender: Contender, engine: &str) -> Result<Running, String> {
        let cfg = env.work.join("uring-httpd.toml");
        // Only keys that exist since the first release, so the lab keeps working as options grow.
        let text = format!(
            "# Written by benches/lab for one lab run.\n\
             [server]\nhost = \"127.0.0.1\"\nport = 0\nworkers = {}\nstatus_path = \"/server-status\"\n\n\
             [files]\nroot = {:?}\n\n\
             [limits]\nkeep_alive_timeout_secs = 65\nshutdown_timeout_secs = 2\n\n\
             [log]\naccess = \"off\"\nlevel = \"info\"\n",
            env.workers,
            env.root.display().to_string()
        );
        std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let mut cmd = pinned(env.cpu, &env.bin);
        cmd.arg("--config")
            .arg(&cfg)
            .args(["--port", "0", "--engine", engine, "--workers"])
            .arg(env.workers.to_string())
            .env("RUST_LOG", "info");
        Self::start_announcing(cmd, contender, &env.bin)
    }

    /// Starts a server that reports its address on stderr the way uring-httpd does (uring-httpd,
    /// the floors).
    fn start_announcing(
        mut cmd: Command,
        contender: Contender,
        program: &Path,
    ) -> Result<Running, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let (rx, stderr) = drain_stderr(&mut child, listening_addr);
        let mut running = Running {
            contender,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            workers: Vec::new(),
            comm: "",
            stderr,
            error_log: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    running.addr = addr;
                    return Ok(running);
                }
                Err(_) if Instant::now() > deadline => {
                    return Err(format!(
                        "{contender} did not report its address within 10 s: {}",
                        running.diagnostics().join(" | ")
                    ));
                }
                Err(_) => {
                    if running.exited() {
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(format!(
                            "{contender} exited at start: {}",
                            running.diagnostics().join(" | ")
                        ));
                    }
                }
            }
        }
    }

    fn start_nginx(env: &Env, contender: Contender, sendfile: bool) -> Result<Running, String> {
        let nginx = env.nginx.as_ref().ok_or("nginx is not installed")?;
        let prefix = env.work.join(format!("nginx-{}", contender.label()));
        let conf = prefix.join("nginx.conf");
        let error_log = prefix.join("error.log");
        Self::start_on_port(
            contender,
            &prefix,
            &error_log,
            "nginx",
            env.workers,
            |port| {
                write_conf(
                    &conf,
                    &nginx_conf(&prefix, &env.root, port, env.workers, sendfile),
                )?;
                let mut cmd = pinned(env.cpu, nginx);
                cmd.arg("-p")
                    .arg(format!("{}/", prefix.display()))
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(&error_log)
                    .args(["-g", "daemon off;"]);
                Ok(cmd)
            },
        )
    }

    fn start_lighttpd(env: &Env) -> Result<Running, String> {
        let lighttpd = env.lighttpd.as_ref().ok_or("lighttpd is not installed")?;
        let prefix = env.work.join("lighttpd");
        let conf = prefix.join("lighttpd.conf");
        Self::start_on_port(
            Contender::Lighttpd,
            &prefix,
            &prefix.join("error.log"),
            "lighttpd",
            0,
            |port| {
                write_conf(&conf, &lighttpd_conf(&prefix, &env.root, port))?;
                let mut cmd = pinned(env.cpu, lighttpd);
                cmd.arg("-D").arg("-f").arg(&conf);
                Ok(cmd)
            },
        )
    }

    fn start_h2o(env: &Env) -> Result<Running, String> {
        let h2o = env.h2o.as_ref().ok_or("h2o is not installed")?;
        let prefix = env.work.join("h2o");
        let conf = prefix.join("h2o.conf");
        Self::start_on_port(
            Contender::H2o,
            &prefix,
            &prefix.join("error.log"),
            "h2o",
            0,
            |port| {
                write_conf(&conf, &h2o_conf(&prefix, &env.root, port))?;
                let mut cmd = pinned(env.cpu, h2o);
                cmd.args(["-m", "worker", "-c"]).arg(&conf);
                Ok(cmd)
            },
        )
    }

    /// Starts a server that is told its port (nginx, lighttpd, h2o): `command(port)` writes its
    /// configuration and returns the command line. Ready once the port accepts connections and
    /// at least `min_children` child processes exist. The port is chosen here, so another
    /// program may take it in between: a few are tried.
    fn start_on_port(
        contender: Contender,
        prefix: &Path,
        error_log: &Path,
        comm: &'static str,
        min_children: usize,
        command: impl Fn(u16) -> Result<Command, String>,
    ) -> Result<Running, String> {
        for d in ["", "logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(d))
                .map_err(|e| format!("{}: {e}", prefix.display()))?;
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let _ = std::fs::remove_file(error_log);
            let port = free_port()?;
            let mut cmd = command(port)?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {contender}: {e}"))?;
            let (_rx, stderr) = drain_stderr(&mut child, |_| None);
            let mut running = Running {
                contender,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child: Some(child),
                workers: Vec::new(),
                comm,
                stderr,
                error_log: Some(error_log.to_path_buf()),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut listening = false;
            while Instant::now() < deadline && !running.exited() {
                if !listening {
                    listening =
                        TcpStream::connect_timeout(&running.addr, Duration::from_millis(200))
                            .is_ok();
                }
                if listening {
                    running.workers = measure::descendants(running.pid());
                    if running.workers.len() >= min_children {
                        return Ok(running);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_err = running.diagnostics().join(" | ");
            if !last_err.contains("Address already in use") {
                break;
            }
        }
        Err(format!("{contender} did not start: {last_err}"))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Looks up the started process's descendants again (after the warm-up, before measuring).
    pub fn refresh_tree(&mut self) {
        let pid = self.pid();
        for d in measure::descendants(pid) {
            if !self.workers.contains(&d) {
                self.workers.push(d);
            }
        }
    }

    /// The processes whose CPU time counts: the whole tree the server started (uring-httpd's and
    /// lighttpd's one process, nginx's master and workers, h2o's process and its helper), all
    /// threads of each.
    pub fn cpu_pids(&self) -> Vec<i32> {
        let mut v = vec![self.pid()];
        v.extend(&self.workers);
        v
    }

    /// The processes to trace and to read peak RSS from: the started process and, when it has
    /// children, those too (nginx's master is idle, so tracing it costs nothing).
    pub fn serving_pids(&self) -> Vec<i32> {
        if self.contender.is_nginx() && !self.workers.is_empty() {
            self.workers.clone()
        } else {
            self.cpu_pids()
        }
    }

    /// CPU time and context switches of [`Running::cpu_pids`] now.
    pub fn usage(&self) -> Result<measure::Usage, String> {
        measure::Usage::read(&self.cpu_pids())
    }

    /// Peak RSS of the serving process(es), in KiB (the largest, for several nginx workers).
    pub fn peak_rss_kib(&self) -> Result<u64, String> {
        let mut peak = 0;
        for p in self.serving_pids() {
            peak = peak.max(measure::peak_rss_kib(p)?);
        }
        Ok(peak)
    }

    /// uring-httpd's own counters from its status page (`None` for the others).
    pub fn counters(&self) -> Option<Counters> {
        if !matches!(self.contender, Contender::Uring | Contender::Epoll) {
            return None;
        }
        let r = http_get(self.addr, "/server-status").ok()?;
        (r.status == 200).then(|| Counters::parse(&String::from_utf8_lossy(&r.body)))
    }

    /// Warnings and errors the server wrote (stderr, nginx's error log), newest last.
    pub fn diagnostics(&self) -> Vec<String> {
        let mut v = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(log) = &self.error_log {
            if let Ok(text) = std::fs::read_to_string(log) {
                v.extend(text.lines().map(str::to_string));
            }
        }
        // Start-up and shutdown chatter is not news.
        v.retain(|l| {
            !l.trim().is_empty()
                && !l.contains(" INFO ")
                && !l.contains("[notice]")
                && !l.contains("[info]")
                && !l.contains("[INFO]")
                && !l.contains("server started (lighttpd")
                && !l.contains("server stopped by UID")
                && !l.contains("is ready to serve requests")
                && !l.contains("received SIGTERM")
        });
        v
    }

    /// Stops the server: SIGTERM, SIGKILL after [`GRACE`], reaping every process started.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Children outliving their parent (after a SIGKILL) are killed by pid, checking the pid
        // still names a process of the server's name.
        for &w in &self.workers {
            let comm = std::fs::read_to_string(format!("/proc/{w}/comm")).unwrap_or_default();
            if !self.comm.is_empty() && comm.trim().starts_with(self.comm) {
                let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_conf(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// uring-httpd's counters (the subset the lab reads).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub requests: u64,
    pub non_2xx: u64,
    pub accepted: u64,
}

impl Counters {
    pub fn parse(text: &str) -> Counters {
        let mut c = Counters::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let Ok(n) = v.trim().parse::<u64>() else {
                continue;
            };
            match k.trim() {
                "requests_total" => c.requests = n,
                "connections_accepted" => c.accepted = n,
                "requests_1xx" | "requests_3xx" | "requests_4xx" | "requests_5xx" => c.non_2xx += n,
                _ => {}
            }
        }
        c
    }

    /// Counts between two snapshots.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            requests: self.requests.saturating_sub(before.requests),
            non_2xx: self.non_2xx.saturating_sub(before.non_2xx),
            accepted: self.accepted.saturating_sub(before.accepted),
        }
    }
}

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_length: Option<u64>,
    pub body: Vec<u8>,
}

/// A one-shot `GET` with `Connection: close`, for the checks around each run.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    // Read until the body is complete by Content-Length, or the end of stream: a floor answers
    // `Connection: close` with a keep-alive response and keeps the connection open.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16384];
    let split = loop {
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        raw.extend_from_slice(&chunk[..n]);
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(split) = split {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if n == 0 || len.is_some_and(|len| raw.len() >= split + 4 + len) {
                break split;
            }
        } else if n == 0 {
            return Err("no end of head in the response".into());
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let content_length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    Ok(Response {
        status,
        content_length,
        body: raw[split + 4..].to_vec(),
    })
}

/// Checks `addr` serves `path` with status 200 and exactly `len` body bytes.
pub fn verify_fixture(addr: SocketAddr, path: &str, len: u64) -> Result<(), String> {
    let r = http_get(addr, path)?;
    if r.status != 200 || r.content_length != Some(len) || r.body.len() as u64 != len {
        return Err(format!(
            "GET {path}: status {}, Content-Length {:?}, {} body bytes; expected 200 and {len}",
            r.status,
            r.content_length,
            r.body.len()
        ));
    }
    Ok(())
}

/// Checks the start-up line and template parsing.
pub fn self_test() -> Result<(), String> {
    let line = "2026-11-23T21:10:37Z  INFO uring-httpd 0.1.0 listening on http://127.0.0.1:36439/ \
                (engine uring, 1 workers)";
    if listening_addr(line) != Some(SocketAddr::from(([127, 0, 0, 1], 36439))) {
        return Err("servers self-test failed: start-up line".into());
    }
    if listening_addr("INFO something else").is_some() {
        return Err("servers self-test failed: non start-up line".into());
    }
    let conf = nginx_conf(Path::new("/p"), Path::new("/r"), 8, 1, false);
    if conf.contains("{{") || !conf.contains("listen 127.0.0.1:8 reuseport") {
        return Err(format!("servers self-test failed: nginx template:\n{conf}"));
    }
    let conf = lighttpd_conf(Path::new("/p"), Path::new("/r"), 9);
    if conf.contains("{{") || !conf.contains("server.port = 9\n") {
        return Err(format!(
            "servers self-test failed: lighttpd template:\n{conf}"
        ));
    }
    let conf = h2o_conf(Path::new("/p"), Path::new("/r"), 10);
    if conf.contains("{{") || !conf.contains("port: 10\n") || !conf.contains("file.dir: \"/r\"") {
        return Err(format!("servers self-test failed: h2o template:\n{conf}"));
    }
    let c = Counters::parse("requests_total: 10\nrequests_2xx: 7\nrequests_4xx: 3\n");
    if c.requests != 10 || c.non_2xx != 3 {
        return Err("servers self-test failed: counters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_up_lines_templates_counters() {
        super::self_test().unwrap();
    }
}
