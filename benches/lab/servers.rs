//! The servers under test: writing their configurations, starting them pinned to the server core,
//! finding the processes to measure, and stopping them. A [`Running`] server is a guard: dropping
//! it (after a normal run, an error or a panic) sends SIGTERM, then SIGKILL after a grace period,
//! and reaps every process it started.
//!
//! Contenders are uring-httpd with `--engine uring`, the same binary with `--engine epoll`, and
//! nginx (when installed) twice, with `sendfile on` and `sendfile off`. All listen on 127.0.0.1 on
//! a free port, run one worker and keep no access log.

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

/// Where nginx is looked for.
pub const NGINX: &str = "/usr/sbin/nginx";

/// A server configuration taking part in the fight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    Uring,
    Epoll,
    NginxSendfileOn,
    NginxSendfileOff,
}

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::Uring => "uring",
            Contender::Epoll => "epoll",
            Contender::NginxSendfileOn => "nginx-sf-on",
            Contender::NginxSendfileOff => "nginx-sf-off",
        }
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
    pub nginx: Option<PathBuf>,
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
    /// nginx worker processes (empty for uring-httpd).
    workers: Vec<i32>,
    /// Lines the server wrote on stderr besides the start-up line (warnings, errors).
    stderr: Arc<Mutex<Vec<String>>>,
    /// nginx's error log, read for diagnostics.
    error_log: Option<PathBuf>,
}

/// How long a server gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

fn pinned(cpu: Option<usize>, program: &Path) -> Command {
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

/// Fills the nginx template.
pub fn nginx_conf(prefix: &Path, root: &Path, port: u16, workers: usize, sendfile: bool) -> String {
    // SAFETY: geteuid cannot fail and touches no memory.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;".to_string()
    } else {
        "# (not root: no `user` directive)".to_string()
    };
    let on_off = |b: bool| if b { "on" } else { "off" };
    NGINX_TEMPLATE
        .replace("{{USER}}", &user)
        .replace("{{WORKERS}}", &workers.to_string())
        .replace("{{PREFIX}}", &prefix.display().to_string())
        .replace("{{ROOT}}", &root.display().to_string())
        .replace("{{PORT}}", &port.to_string())
        .replace("{{SENDFILE}}", on_off(sendfile))
        .replace("{{TCP_NOPUSH}}", on_off(sendfile))
}

impl Running {
    /// Starts `contender` and waits until it accepts connections.
    pub fn start(env: &Env, contender: Contender) -> Result<Running, String> {
        match contender {
            Contender::Uring => Self::start_ours(env, contender, "uring"),
            Contender::Epoll => Self::start_ours(env, contender, "epoll"),
            Contender::NginxSendfileOn => Self::start_nginx(env, contender, true),
            Contender::NginxSendfileOff => Self::start_nginx(env, contender, false),
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
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env.bin.display()))?;
        let (rx, stderr) = drain_stderr(&mut child, listening_addr);
        let mut running = Running {
            contender,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            workers: Vec::new(),
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
        for d in ["", "logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(d))
                .map_err(|e| format!("{}: {e}", prefix.display()))?;
        }
        let conf = prefix.join("nginx.conf");
        let error_log = prefix.join("error.log");
        let _ = std::fs::remove_file(&error_log);
        // The port is chosen here and handed to nginx, so another program may take it in between:
        // try a few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            std::fs::write(
                &conf,
                nginx_conf(&prefix, &env.root, port, env.workers, sendfile),
            )
            .map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut cmd = pinned(env.cpu, nginx);
            cmd.arg("-p")
                .arg(format!("{}/", prefix.display()))
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", nginx.display()))?;
            let (_rx, stderr) = drain_stderr(&mut child, |_| None);
            let mut running = Running {
                contender,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child: Some(child),
                workers: Vec::new(),
                stderr,
                error_log: Some(error_log.clone()),
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
                    running.workers = measure::children(running.pid());
                    if running.workers.len() >= env.workers {
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

    /// The processes whose CPU time counts: uring-httpd's process (all threads), nginx's master
    /// and workers.
    pub fn cpu_pids(&self) -> Vec<i32> {
        let mut v = vec![self.pid()];
        v.extend(&self.workers);
        v
    }

    /// The processes that serve requests: uring-httpd's process, nginx's workers.
    pub fn serving_pids(&self) -> Vec<i32> {
        if self.workers.is_empty() {
            vec![self.pid()]
        } else {
            self.workers.clone()
        }
    }

    /// utime + stime in clock ticks over [`Running::cpu_pids`].
    pub fn cpu_ticks(&self) -> Result<u64, String> {
        self.cpu_pids().into_iter().map(measure::cpu_ticks).sum()
    }

    /// Peak RSS of the serving process(es), in KiB (the largest, for several nginx workers).
    pub fn peak_rss_kib(&self) -> Result<u64, String> {
        let mut peak = 0;
        for p in self.serving_pids() {
            peak = peak.max(measure::peak_rss_kib(p)?);
        }
        Ok(peak)
    }

    /// uring-httpd's own counters from its status page (`None` for nginx).
    pub fn counters(&self) -> Option<Counters> {
        if self.contender.is_nginx() {
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
        // nginx workers outliving their master (after a SIGKILL) are killed by pid, checking the
        // pid still names an nginx process.
        for &w in &self.workers {
            let comm = std::fs::read_to_string(format!("/proc/{w}/comm")).unwrap_or_default();
            if comm.trim() == "nginx" {
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
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head in the response")?;
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
    let c = Counters::parse("requests_total: 10\nrequests_2xx: 7\nrequests_4xx: 3\n");
    if c.requests != 10 || c.non_2xx != 3 {
        return Err("servers self-test failed: counters".into());
    }
    Ok(())
}
