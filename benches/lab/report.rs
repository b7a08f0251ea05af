//! Results: the raw samples of every run, their medians across rounds, the nginx best-of
//! (sendfile on or off), the ratios, the distance of every server to the floor responders, where
//! the CPU went (user or kernel, context switches, the syscall mix) and which side limited req/s,
//! and the Markdown report written to `benches/results/` and printed on stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::measure::Machine;
use crate::servers::Contender;
use crate::wrk::WrkResult;

/// A fixture file every server serves.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File name under the root, e.g. `100k.png`.
    pub name: String,
    pub bytes: u64,
    /// Human label, e.g. `100 KiB png`.
    pub label: String,
}

/// One measured wrk run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub round: usize,
    pub contender: Contender,
    pub fixture: usize,
    pub connections: usize,
    /// The run's figures, or why there are none.
    pub outcome: Result<Measured, String>,
}

/// Figures of one successful run.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wrk: WrkResult,
    /// Server CPU (user + kernel) per request, and its two parts.
    pub cpu_us_per_req: Option<f64>,
    pub user_us_per_req: Option<f64>,
    pub sys_us_per_req: Option<f64>,
    /// The whole machine's busy CPU per request (server, wrk and the kernel between them).
    pub machine_us_per_req: Option<f64>,
    /// Voluntary and involuntary context switches of the server per request.
    pub vcs_per_req: Option<f64>,
    pub ivcs_per_req: Option<f64>,
    /// Server CPU time over the run's wall-clock time: 1.0 is one full core.
    pub server_core: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    /// Non-2xx responses counted by uring-httpd's status page during the run (not for nginx).
    pub server_non_2xx: Option<u64>,
    /// Warnings and errors the server logged.
    pub diagnostics: Vec<String>,
}

/// What one strace pass counted.
#[derive(Debug, Clone, Default)]
pub struct Traced {
    pub calls: u64,
    pub requests: u64,
    /// The untraced count from `perf stat` over a run of the same length on the same server:
    /// (syscalls, requests), or why there is none.
    pub perf: Option<Result<(u64, u64), String>>,
    /// Calls per syscall name, most frequent first.
    pub by_name: Vec<(String, u64)>,
}

/// One strace pass.
#[derive(Debug, Clone)]
pub struct SyscallPass {
    pub contender: Contender,
    pub fixture: usize,
    pub connections: usize,
    pub secs: u64,
    /// The counts, or why there are none.
    pub outcome: Result<Traced, String>,
}

impl SyscallPass {
    pub fn per_request(&self) -> Option<f64> {
        match &self.outcome {
            Ok(t) if t.requests > 0 => Some(t.calls as f64 / t.requests as f64),
            _ => None,
        }
    }

    /// Syscalls per request counted by perf, untraced.
    pub fn perf_per_request(&self) -> Option<f64> {
        match &self.outcome {
            Ok(Traced {
                perf: Some(Ok((calls, reqs))),
                ..
            }) if *reqs > 0 => Some(*calls as f64 / *reqs as f64),
            _ => None,
        }
    }

    /// The `n` most frequent syscalls with their calls per request.
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        match &self.outcome {
            Ok(t) if t.requests > 0 => t
                .by_name
                .iter()
                .take(n)
                .map(|(name, c)| (name.clone(), *c as f64 / t.requests as f64))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `io_uring_enter 0.08, epoll_wait 0.01`: a syscall mix for a table cell.
pub fn mix(top: &[(String, f64)]) -> String {
    if top.is_empty() {
        return "—".into();
    }
    top.iter()
        .map(|(name, per)| format!("{name} {}", opt(Some(*per), 2)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shares of a core at or above which a side counts as saturated.
pub const SATURATED: f64 = 0.90;

/// Which side limited req/s, from the server's and wrk's shares of their cores: `wrk` when wrk
/// had its core full and the server had idle time, `server` when the server had its core full,
/// `neither` when both had idle time (latency, the loopback path or the connection count limit).
pub fn limited_by(server_core: Option<f64>, wrk_core: Option<f64>) -> &'static str {
    match (server_core, wrk_core) {
        (Some(s), _) if s >= SATURATED => "server",
        (Some(_), Some(w)) if w >= SATURATED => "**wrk**",
        (Some(_), Some(_)) => "neither",
        _ => "?",
    }
}

/// How the lab was run, for the header.
#[derive(Debug, Clone)]
pub struct Setup {
    pub machine: Machine,
    pub rounds: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub strace_s: u64,
    pub strace_connections: usize,
    pub concurrencies: Vec<usize>,
    pub contenders: Vec<Contender>,
    pub server_cpu: Option<usize>,
    pub wrk_cpu: Option<usize>,
    pub workers: usize,
    pub revision: String,
    pub nginx_version: Option<String>,
    pub lighttpd_version: Option<String>,
    pub h2o_version: Option<String>,
    pub quick: bool,
    /// Things the reader must know (skipped servers, missing tools).
    pub notes: Vec<String>,
}

/// Everything the lab gathered.
#[derive(Debug, Clone)]
pub struct Lab {
    pub setup: Setup,
    pub fixtures: Vec<Fixture>,
    pub samples: Vec<Sample>,
    pub syscalls: Vec<SyscallPass>,
}

/// The medians of one (server, fixture, concurrency) across rounds.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub req_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_us: Option<f64>,
    pub rss_mib: Option<f64>,
    pub syscalls: Option<f64>,
    pub user_us: Option<f64>,
    pub sys_us: Option<f64>,
    /// The whole machine's busy CPU per request.
    pub machine_us: Option<f64>,
    /// Context switches (voluntary + involuntary) per request.
    pub cs_per_req: Option<f64>,
    pub vcs_per_req: Option<f64>,
    /// Shares of a core used by the server and by wrk.
    pub server_core: Option<f64>,
    pub wrk_core: Option<f64>,
    /// Socket errors plus non-2xx responses, summed over rounds.
    pub errors: u64,
    pub failed_runs: usize,
    /// Every round's req/s, for the chart.
    pub all_req_s: Vec<f64>,
}

/// The median of the finite values; `None` when there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Which row of the main tables (and line of the chart) a contender belongs to; nginx's two
/// settings share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Uring,
    Epoll,
    Nginx,
    Lighttpd,
    H2o,
    FloorUring,
    FloorEpoll,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Uring,
        Column::Epoll,
        Column::Nginx,
        Column::Lighttpd,
        Column::H2o,
        Column::FloorUring,
        Column::FloorEpoll,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Column::Uring => "uring",
            Column::Epoll => "epoll",
            Column::Nginx => "nginx",
            Column::Lighttpd => "lighttpd",
            Column::H2o => "h2o",
            Column::FloorUring => "floor-uring",
            Column::FloorEpoll => "floor-epoll",
        }
    }

    /// The contender shown in this column (nginx: decided per case by [`Lab::shown`]).
    fn single(self) -> Option<Contender> {
        match self {
            Column::Uring => Some(Contender::Uring),
            Column::Epoll => Some(Contender::Epoll),
            Column::Nginx => None,
            Column::Lighttpd => Some(Contender::Lighttpd),
            Column::H2o => Some(Contender::H2o),
            Column::FloorUring => Some(Contender::FloorUring),
            Column::FloorEpoll => Some(Contender::FloorEpoll),
        }
    }
}

/// A cell as shown: the medians, and for nginx which sendfile setting won and the other's req/s.
#[derive(Debug, Clone)]
pub struct Shown {
    pub cell: Cell,
    pub nginx_choice: Option<(Contender, Option<f64>)>,
}

impl Lab {
    /// Medians per (contender, fixture, concurrency).
    pub fn cells(&self) -> BTreeMap<(Contender, usize, usize), Cell> {
        let mut groups: BTreeMap<(Contender, usize, usize), Vec<&Sample>> = BTreeMap::new();
        for s in &self.samples {
            groups
                .entry((s.contender, s.fixture, s.connections))
                .or_default()
                .push(s);
        }
        let mut out = BTreeMap::new();
        for (key, samples) in groups {
            let ok: Vec<&Measured> = samples
                .iter()
                .filter_map(|s| s.outcome.as_ref().ok())
                .collect();
            let all_req_s: Vec<f64> = ok.iter().map(|m| m.wrk.req_per_s).collect();
            let syscalls = self
                .syscalls
                .iter()
                .find(|p| p.contender == key.0 && p.fixture == key.1)
                .and_then(SyscallPass::per_request);
            let cell = Cell {
                req_s: median(all_req_s.iter().copied()).unwrap_or(f64::NAN),
                p50_ms: median(ok.iter().filter_map(|m| m.wrk.p50_ms)),
                p99_ms: median(ok.iter().filter_map(|m| m.wrk.p99_ms)),
                cpu_us: median(ok.iter().filter_map(|m| m.cpu_us_per_req)),
                rss_mib: median(
                    ok.iter()
                        .filter_map(|m| m.peak_rss_kib.map(|k| k as f64 / 1024.0)),
                ),
                syscalls,
                user_us: median(ok.iter().filter_map(|m| m.user_us_per_req)),
                sys_us: median(ok.iter().filter_map(|m| m.sys_us_per_req)),
                machine_us: median(ok.iter().filter_map(|m| m.machine_us_per_req)),
                cs_per_req: median(
                    ok.iter()
                        .filter_map(|m| Some(m.vcs_per_req? + m.ivcs_per_req?)),
                ),
                vcs_per_req: median(ok.iter().filter_map(|m| m.vcs_per_req)),
                server_core: median(ok.iter().filter_map(|m| m.server_core)),
                wrk_core: median(ok.iter().filter_map(|m| m.wrk.core_share())),
                errors: ok
                    .iter()
                    .map(|m| m.wrk.errors.total() + m.wrk.non_2xx)
                    .sum(),
                failed_runs: samples.len() - ok.len(),
                all_req_s,
            };
            out.insert(key, cell);
        }
        out
    }

    /// The columns per (fixture, concurrency): one per server, nginx's better sendfile setting
    /// (by median req/s) in one.
    pub fn shown(&self) -> BTreeMap<(usize, usize, Column), Shown> {
        let cells = self.cells();
        let mut out = BTreeMap::new();
        for f in 0..self.fixtures.len() {
            for &c in &self.setup.concurrencies {
                for col in Column::ALL {
                    let Some(contender) = col.single() else {
                        continue;
                    };
                    if let Some(cell) = cells.get(&(contender, f, c)) {
                        out.insert(
                            (f, c, col),
                            Shown {
                                cell: cell.clone(),
                                nginx_choice: None,
                            },
                        );
                    }
                }
                let on = cells.get(&(Contender::NginxSendfileOn, f, c));
                let off = cells.get(&(Contender::NginxSendfileOff, f, c));
                let rate = |x: Option<&Cell>| x.map(|c| c.req_s).filter(|r| r.is_finite());
                let pick = match (rate(on), rate(off)) {
                    (Some(a), Some(b)) if b > a => {
                        Some((Contender::NginxSendfileOff, off, Some(a)))
                    }
                    (Some(_), b) => Some((Contender::NginxSendfileOn, on, b)),
                    (None, Some(_)) => Some((Contender::NginxSendfileOff, off, None)),
                    (None, None) => on
                        .or(off)
                        .map(|_| (Contender::NginxSendfileOn, on.or(off), None)),
                };
                if let Some((winner, Some(cell), other)) = pick {
                    out.insert(
                        (f, c, Column::Nginx),
                        Shown {
                            cell: cell.clone(),
                            nginx_choice: Some((winner, other)),
                        },
                    );
                }
            }
        }
        out
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let s = &self.setup;
        let m = &s.machine;
        let shown = self.shown();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# uring-httpd engine lab, {}{}\n",
            m.date,
            if s.quick { " (quick run)" } else { "" }
        );
        let _ = writeln!(o, "- **When**: {} {} UTC", m.date, m.time);
        let _ = writeln!(
            o,
            "- **Machine**: kernel {}, CPU {}, {} cores",
            m.kernel, m.cpu, m.cores
        );
        let _ = writeln!(o, "- **Code**: uring-httpd {}", s.revision);
        let pin = match (s.server_cpu, s.wrk_cpu) {
            (Some(sc), Some(wc)) => format!(
                "server pinned to CPU {sc} (`taskset -c {sc}`), wrk to CPU {wc} (`taskset -c {wc} wrk -t1`)"
            ),
            _ => "not pinned (fewer than 2 usable cores or no taskset); wrk -t2".into(),
        };
        let _ = writeln!(
            o,
            "- **Pinning**: {pin}; {} worker for every server; everything on 127.0.0.1",
            s.workers
        );
        let servers: Vec<String> = s.contenders.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            o,
            "- **Servers**: {} — uring-httpd `--engine uring` / `--engine epoll` (access log off, \
             keep-alive 65 s, its defaults otherwise); nginx {} from `benches/nginx/lab.conf` (`worker_processes {}`, \
             `access_log off`, `open_file_cache max=1000 inactive=60s`, `keepalive_requests 1000000`), \
             run with `sendfile on` + `tcp_nopush on` and with `sendfile off`, the better median \
             req/s shown in the main table; lighttpd {} from `benches/lighttpd/lab.conf` (one \
             process, no access log, sendfile backend, `server.max-keep-alive-requests = 1000000`); \
             h2o {} from `benches/h2o/lab.conf` (`num-threads: 1`, worker mode, no access log); \
             `floor-uring` / `floor-epoll`: the lab's fixed-response floor responders (raw io_uring \
             with multishot accept and recv on a provided buffer ring, SINGLE_ISSUER | \
             DEFER_TASKRUN; raw edge-triggered epoll), serving only files up to 64 KiB",
            servers.join(", "),
            s.nginx_version.as_deref().unwrap_or("(absent)"),
            s.workers,
            s.lighttpd_version.as_deref().unwrap_or("(absent)"),
            s.h2o_version.as_deref().unwrap_or("(absent)"),
        );
        let _ = writeln!(
            o,
            "- **Server CPU**: utime and stime from `/proc/PID/stat` of every process the server \
             started (the started process and its descendants: nginx master + worker, h2o's process \
             + helper child; all threads of each), read before and after the measured run; context \
             switches from `/proc/PID/task/TID/status` of the same processes. **wrk's CPU**: its \
             rusage from `wait4`"
        );
        let _ = writeln!(
            o,
            "- **Load**: wrk `--latency`, {} round(s) × {} s per (server, file, connections), each \
             after a {} s warm-up with the same load on a freshly started server; connections {}; \
             the server order rotates every run; every figure is the **median across rounds**",
            s.rounds,
            s.duration_s,
            s.warmup_s,
            s.concurrencies
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            o,
            "- **Syscalls/req**: a separate {} s pass under `strace -f -c` at {} connections per \
             server and file (traced runs are much slower, so they are kept out of the throughput \
             figures; syscalls per request barely depend on concurrency, so the figure is repeated \
             on every row), preceded on the same server by a run of the same length counted \
             untraced with `perf stat -e raw_syscalls:sys_enter`. io_uring operations are not \
             syscalls: one `io_uring_enter` carries many",
            s.strace_s, s.strace_connections
        );
        for n in &s.notes {
            let _ = writeln!(o, "- **Note**: {n}");
        }
        o.push('\n');

        for (f, fx) in self.fixtures.iter().enumerate() {
            let _ = writeln!(o, "## {} (`{}`, {} bytes)\n", fx.label, fx.name, fx.bytes);
            let _ = writeln!(
                o,
                "| conns | server | req/s | p50 ms | p99 ms | CPU µs/req | syscalls/req | peak RSS MiB | vs nginx | uring/epoll | errors |"
            );
            let _ = writeln!(
                o,
                "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for &c in &s.concurrencies {
                let nginx_rate = shown.get(&(f, c, Column::Nginx)).map(|x| x.cell.req_s);
                let epoll_rate = shown.get(&(f, c, Column::Epoll)).map(|x| x.cell.req_s);
                for col in Column::ALL {
                    let Some(x) = shown.get(&(f, c, col)) else {
                        continue;
                    };
                    let cell = &x.cell;
                    let name = match x.nginx_choice {
                        Some((winner, other)) => {
                            let setting = if winner == Contender::NginxSendfileOn {
                                ("on", "off")
                            } else {
                                ("off", "on")
                            };
                            match other {
                                Some(r) => format!(
                                    "nginx (sendfile {}; {}: {})",
                                    setting.0,
                                    setting.1,
                                    rate(r)
                                ),
                                None => format!("nginx (sendfile {})", setting.0),
                            }
                        }
                        None => col.label().to_string(),
                    };
                    let vs_nginx = match (col, nginx_rate) {
                        (Column::Nginx, _) | (_, None) => "—".to_string(),
                        (_, Some(n)) => ratio(cell.req_s, n),
                    };
                    let vs_epoll = match (col, epoll_rate) {
                        (Column::Uring, Some(e)) => ratio(cell.req_s, e),
                        _ => "—".to_string(),
                    };
                    let mut errors = cell.errors.to_string();
                    if cell.failed_runs > 0 {
                        let _ = write!(errors, " ({} failed)", cell.failed_runs);
                    }
                    let _ = writeln!(
                        o,
                        "| {c} | {name} | {} | {} | {} | {} | {} | {} | {vs_nginx} | {vs_epoll} | {errors} |",
                        rate(cell.req_s),
                        opt(cell.p50_ms, 3),
                        opt(cell.p99_ms, 3),
                        opt(cell.cpu_us, 1),
                        opt(cell.syscalls, 2),
                        opt(cell.rss_mib, 1),
                    );
                }
            }
            o.push('\n');
            self.cpu_table(&mut o, f);
        }

        self.floor_table(&mut o);
        self.same_round_table(&mut o);

        let _ = writeln!(o, "## Ratios (medians)\n");
        let _ = writeln!(
            o,
            "| file | conns | uring/nginx req/s | epoll/nginx req/s | uring/epoll req/s | uring/nginx CPU/req | uring/epoll CPU/req | uring/epoll syscalls/req |"
        );
        let _ = writeln!(o, "|:---|---:|---:|---:|---:|---:|---:|---:|");
        for (f, fx) in self.fixtures.iter().enumerate() {
            for &c in &s.concurrencies {
                let get = |col| shown.get(&(f, c, col)).map(|x: &Shown| &x.cell);
                let (u, e, n) = (get(Column::Uring), get(Column::Epoll), get(Column::Nginx));
                let r = |a: Option<&Cell>, b: Option<&Cell>, k: fn(&Cell) -> Option<f64>| match (
                    a.and_then(k),
                    b.and_then(k),
                ) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => "—".into(),
                };
                let rps = |c: &Cell| Some(c.req_s).filter(|r| r.is_finite());
                let _ = writeln!(
                    o,
                    "| {} | {c} | {} | {} | {} | {} | {} | {} |",
                    fx.name,
                    r(u, n, rps),
                    r(e, n, rps),
                    r(u, e, rps),
                    r(u, n, |c| c.cpu_us),
                    r(u, e, |c| c.cpu_us),
                    r(u, e, |c| c.syscalls),
                );
            }
        }
        o.push('\n');

        if !self.syscalls.is_empty() {
            let _ = writeln!(o, "## strace passes: syscalls and the syscall mix\n");
            let _ = writeln!(
                o,
                "| server | file | conns | seconds | syscalls | requests | syscalls/req | untraced syscalls/req (perf) | top syscalls per request |"
            );
            let _ = writeln!(o, "|:---|:---|---:|---:|---:|---:|---:|---:|:---|");
            for p in &self.syscalls {
                let (calls, reqs) = match &p.outcome {
                    Ok(t) => (t.calls.to_string(), t.requests.to_string()),
                    Err(_) => ("failed".into(), "—".into()),
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {calls} | {reqs} | {} | {} | {} |",
                    p.contender,
                    self.fixtures[p.fixture].name,
                    p.connections,
                    p.secs,
                    opt(p.per_request(), 2),
                    opt(p.perf_per_request(), 3),
                    mix(&p.top(5)),
                );
            }
            o.push('\n');
        }

        let _ = writeln!(o, "## How to read it\n");
        o.push_str(
            "- **req/s**: completed responses per second reported by wrk (higher is better); \
             **p50/p99**: wrk's latency percentiles in milliseconds.\n\
             - **CPU µs/req**: server CPU time (utime + stime from `/proc/PID/stat` of the server's \
             whole process tree, all threads: nginx master + worker, h2o and its helper child) \
             during the measured run divided by the requests wrk completed. \
             The server core's capacity is 1 000 000 µs per second, so 1e6 / (CPU µs/req) is the \
             rate the server could reach if it got the whole core; when req/s is far below that, \
             the client (wrk on the other core) or the network path is the limit, not the server.\n\
             - **syscalls/req**: from the separate strace pass (see above); the **syscall mix** \
             lists the most frequent syscalls of that pass per request. strace stops the server at \
             every syscall, so a traced server batches more per wait and strace undercounts wait \
             calls: **untraced syscalls/req (perf)** counts `raw_syscalls:sys_enter` with \
             `perf stat` over a second run of the same length on the same server, untraced (when \
             perf is installed and allowed).\n\
             - **× uring floor**: this server's CPU µs/req divided by `floor-uring`'s in the same \
             case (file and connections): 1.00× is the least CPU a server on raw io_uring spends on \
             loopback TCP for this response; the rest is the server's own work. `floor-epoll` is the \
             same responder on raw edge-triggered epoll; the floors serve one fixed response (the \
             file, with a head as long as uring-httpd's) and parse nothing but `\\r\\n\\r\\n`.\n\
             - **user / kernel µs/req**: the CPU µs/req split into utime and stime; **cs/req**: \
             voluntary + involuntary context switches of the server per request (voluntary in \
             brackets: a thread that blocked).\n\
             - **server core / wrk core**: CPU time over wall-clock time of the server (all its \
             processes) and of wrk, each pinned to its own core; **limited by**: `server` when the \
             server used ≥ 90% of its core, **wrk** when wrk used ≥ 90% of its core while the \
             server had idle time — then req/s measures wrk and only CPU µs/req ranks the servers — \
             and `neither` when both had idle time (latency or the loopback path).\n\
             - **machine µs/req**: the whole machine's busy CPU time over the run (every CPU: \
             all but idle and iowait in `/proc/stat`) per request: the server, wrk and the kernel \
             between them, and whatever else ran on the machine (noisier than the server's \
             figure: compare it within a round). On loopback the kernel delivers a send into \
             wrk's socket in whichever context pushes it, the server's send or wrk's ACK on \
             wrk's core, so on big files a server can lower its own CPU µs/req by moving that \
             delivery onto wrk's core (and lose req/s when wrk's core is the bottleneck). \
             Compare servers by both columns there.\n\
             - **peak RSS**: `VmHWM` of the serving process at the end of the run (nginx: its \
             worker; h2o: the larger of its process and helper).\n\
             - **vs nginx**: this row's req/s divided by nginx's (best of sendfile on/off, the winner \
             named in its row with the loser's req/s); above 1.00× beats nginx. **uring/epoll**: \
             the uring engine's req/s divided by the epoll engine's. In the ratio table, CPU ratios \
             below 1.00× mean the first server spends less CPU per request.\n\
             - **errors**: wrk socket errors (connect/read/write/timeout) plus non-2xx responses, \
             summed over rounds; should be 0 (details under Anomalies).\n\
             - Absolute figures drift between minutes on a shared 2-core machine; compare ratios \
             measured in the same run. Every run's own figures are in the `.tsv` file of the \
             same name.\n",
        );

        // Where a run finished fewer responses than it had connections, most connections never
        // completed one: req/s then counts a lucky few and ignores the bytes still in flight.
        let mut starved: Vec<String> = Vec::new();
        for smp in &self.samples {
            if let Ok(m) = &smp.outcome {
                let case = format!("{} c={}", self.fixtures[smp.fixture].name, smp.connections);
                if m.wrk.requests < smp.connections as u64 && !starved.contains(&case) {
                    starved.push(case);
                }
            }
        }
        if !starved.is_empty() {
            let _ = writeln!(
                o,
                "- **Fewer responses than connections** in at least one run of: {}. There a \
                 response waits behind nearly all the others, so a run completes only a few of \
                 them (possibly none: 0 req/s): req/s and latency then measure how the server \
                 shares its bandwidth among connections more than its throughput (wrk's \
                 Transfer/sec would be the fairer figure). Compare these rows with care.\n",
                starved.join(", ")
            );
        }

        if !o.ends_with("\n\n") {
            o.push('\n');
        }
        let _ = writeln!(o, "## Anomalies\n");
        let anomalies = self.anomalies();
        if anomalies.is_empty() {
            let _ = writeln!(
                o,
                "None: no socket errors, no non-2xx responses, no failed runs, no server warnings."
            );
        } else {
            for a in anomalies {
                let _ = writeln!(o, "- {a}");
            }
        }
        o
    }

    /// Per fixture: every contender (both nginx settings) with where its CPU went and what
    /// limited its req/s.
    fn cpu_table(&self, o: &mut String, f: usize) {
        let cells = self.cells();
        let s = &self.setup;
        let _ = writeln!(
            o,
            "CPU per request, where it went, and which side limited req/s ({}):\n",
            self.fixtures[f].name
        );
        let _ = writeln!(
            o,
            "| conns | server | req/s | CPU µs/req | × uring floor | user µs/req | kernel µs/req | kernel share | cs/req (vol.) | server core | wrk core | limited by | machine µs/req |"
        );
        let _ = writeln!(
            o,
            "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|"
        );
        let mut wrk_bound = Vec::new();
        for &c in &s.concurrencies {
            let floor = cells
                .get(&(Contender::FloorUring, f, c))
                .and_then(|x| x.cpu_us);
            for &contender in &s.contenders {
                let Some(cell) = cells.get(&(contender, f, c)) else {
                    continue;
                };
                let share = match (cell.user_us, cell.sys_us) {
                    (Some(u), Some(k)) if u + k > 0.0 => format!("{:.0}%", 100.0 * k / (u + k)),
                    _ => "—".into(),
                };
                let pct = |v: Option<f64>| v.map_or("—".into(), |v| format!("{:.0}%", 100.0 * v));
                let limit = limited_by(cell.server_core, cell.wrk_core);
                if limit == "**wrk**" {
                    wrk_bound.push(format!("{contender} at {c} conns"));
                }
                let _ = writeln!(
                    o,
                    "| {c} | {contender} | {} | {} | {} | {} | {} | {share} | {} ({}) | {} | {} | {} | {} |",
                    rate(cell.req_s),
                    opt(cell.cpu_us, 2),
                    match (cell.cpu_us, floor) {
                        (Some(a), Some(b)) => ratio(a, b),
                        _ => "—".into(),
                    },
                    opt(cell.user_us, 2),
                    opt(cell.sys_us, 2),
                    opt(cell.cs_per_req, 3),
                    opt(cell.vcs_per_req, 3),
                    pct(cell.server_core),
                    pct(cell.wrk_core),
                    limit,
                    opt(cell.machine_us, 2),
                );
            }
        }
        o.push('\n');
        if !wrk_bound.is_empty() {
            let _ = writeln!(
                o,
                "**wrk, not the server, limited req/s** for {}: wrk used ≥ {:.0}% of its core while \
                 the server had idle time, so these req/s are wrk's ceiling; compare these servers \
                 by CPU µs/req.\n",
                wrk_bound.join(", "),
                100.0 * SATURATED
            );
        }
    }

    /// CPU per request of every contender as a multiple of `floor-uring`'s, per case.
    fn floor_table(&self, o: &mut String) {
        let cells = self.cells();
        let s = &self.setup;
        if !s.contenders.contains(&Contender::FloorUring) {
            return;
        }
        let others: Vec<Contender> = s
            .contenders
            .iter()
            .copied()
            .filter(|c| *c != Contender::FloorUring)
            .collect();
        let _ = writeln!(
            o,
            "## Distance to the floor: CPU µs/req ÷ floor-uring's (medians)\n\n\
             The floor is `floor-uring`, the raw io_uring fixed-response responder, for every \
             server; `floor-uring` column: its own CPU µs/req. Only files the floors serve (≤ 64 KiB).\n"
        );
        let mut head = String::from("| file | conns | floor-uring µs/req |");
        let mut rule = String::from("|:---|---:|---:|");
        for c in &others {
            let _ = write!(head, " {c} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(o, "{head}\n{rule}");
        for (f, fx) in self.fixtures.iter().enumerate() {
            for &c in &s.concurrencies {
                let Some(floor) = cells
                    .get(&(Contender::FloorUring, f, c))
                    .and_then(|x| x.cpu_us)
                else {
                    continue;
                };
                let mut line = format!("| {} | {c} | {} |", fx.name, opt(Some(floor), 2));
                for other in &others {
                    let v = cells.get(&(*other, f, c)).and_then(|x| x.cpu_us);
                    let _ = write!(line, " {} |", v.map_or("—".into(), |v| ratio(v, floor)));
                }
                let _ = writeln!(o, "{line}");
            }
        }
        o.push('\n');
    }

    /// The ratios (engine ÷ its floor, engine ÷ the best peer) taken within each round
    /// and then summarised: servers measured one after another in the same case share the host's
    /// speed of that minute, which a ratio of medians across rounds does not.
    fn same_round_table(&self, o: &mut String) {
        const PEERS: [Contender; 4] = [
            Contender::NginxSendfileOn,
            Contender::NginxSendfileOff,
            Contender::Lighttpd,
            Contender::H2o,
        ];
        let rows: [(&str, &[Contender], &[Contender]); 4] = [
            (
                "uring ÷ floor-uring",
                &[Contender::Uring],
                &[Contender::FloorUring],
            ),
            (
                "epoll ÷ floor-epoll",
                &[Contender::Epoll],
                &[Contender::FloorEpoll],
            ),
            ("uring ÷ best peer", &[Contender::Uring], &PEERS),
            ("floor-uring ÷ best peer", &[Contender::FloorUring], &PEERS),
        ];
        let mut lines = Vec::new();
        for (f, fx) in self.fixtures.iter().enumerate() {
            for &c in &self.setup.concurrencies {
                for (label, a, b) in rows {
                    if let Some(sp) = Spread::of(same_round(&self.samples, f, c, a, b)) {
                        lines.push(format!(
                            "| {} | {c} | {label} | {:.2}× | {:.2}×–{:.2}× | {} |",
                            fx.name, sp.median, sp.min, sp.max, sp.rounds
                        ));
                    }
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "## Same-round ratios\n\n\
             CPU µs/req of the first server ÷ the second's, in each round that measured both, then \
             the median and the range over rounds. \"Best peer\": the least CPU/req among nginx (either \
             sendfile setting), lighttpd and h2o in that round. The floor-uring row shows roughly \
             the best an io_uring server can reach against the peers on this host.\n\n\
             | file | conns | ratio | median | range | rounds |\n|:---|---:|:---|---:|---:|---:|"
        );
        for l in lines {
            let _ = writeln!(o, "{l}");
        }
        o.push('\n');
    }

    /// Every run's raw figures, tab-separated, one line per run (the medians' inputs).
    pub fn raw_tsv(&self) -> String {
        // New columns go after `error`, so readers of the first fifteen keep working.
        let mut o = String::from(
            "round\tserver\tfile\tconnections\treq_per_s\trequests\tmib_per_s\tp50_ms\tp99_ms\t\
             cpu_us_per_req\tpeak_rss_kib\tsocket_errors\tnon_2xx\tserver_non_2xx\terror\t\
             user_us_per_req\tsys_us_per_req\tvoluntary_cs_per_req\tinvoluntary_cs_per_req\t\
             server_core\twrk_core\tmachine_us_per_req\n",
        );
        let num = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.4}"));
        for s in &self.samples {
            let _ = write!(
                o,
                "{}\t{}\t{}\t{}\t",
                s.round + 1,
                s.contender,
                self.fixtures[s.fixture].name,
                s.connections
            );
            let _ = match &s.outcome {
                Ok(m) => writeln!(
                    o,
                    "{:.2}\t{}\t{:.1}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    m.wrk.req_per_s,
                    m.wrk.requests,
                    m.wrk.bytes_read / m.wrk.elapsed_s.max(1e-9) / (1024.0 * 1024.0),
                    num(m.wrk.p50_ms),
                    num(m.wrk.p99_ms),
                    num(m.cpu_us_per_req),
                    m.peak_rss_kib.map_or(String::new(), |k| k.to_string()),
                    m.wrk.errors.total(),
                    m.wrk.non_2xx,
                    m.server_non_2xx.map_or(String::new(), |k| k.to_string()),
                    num(m.user_us_per_req),
                    num(m.sys_us_per_req),
                    num(m.vcs_per_req),
                    num(m.ivcs_per_req),
                    num(m.server_core),
                    num(m.wrk.core_share()),
                    num(m.machine_us_per_req),
                ),
                Err(e) => writeln!(o, "\t\t\t\t\t\t\t\t\t\t{}\t\t\t\t\t\t\t", one_line(e)),
            };
        }
        o
    }

    /// Runs with errors, non-2xx responses, failures or server warnings, one line each.
    pub fn anomalies(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.samples {
            let what = format!(
                "round {} {} {} c={}",
                s.round + 1,
                s.contender,
                self.fixtures[s.fixture].name,
                s.connections
            );
            match &s.outcome {
                Err(e) => out.push(format!("{what}: run failed: {}", one_line(e))),
                Ok(m) => {
                    let e = m.wrk.errors;
                    if e.total() > 0 || m.wrk.non_2xx > 0 || m.server_non_2xx.unwrap_or(0) > 0 {
                        out.push(format!(
                            "{what}: wrk socket errors connect {} read {} write {} timeout {}, \
                             non-2xx {}{}",
                            e.connect,
                            e.read,
                            e.write,
                            e.timeout,
                            m.wrk.non_2xx,
                            m.server_non_2xx.map_or(String::new(), |n| format!(
                                "; the server counted {n} non-2xx"
                            ))
                        ));
                    }
                    if !m.diagnostics.is_empty() {
                        let shown: Vec<String> =
                            m.diagnostics.iter().take(5).map(|l| one_line(l)).collect();
                        out.push(format!(
                            "{what}: the server logged {} line(s): {}",
                            m.diagnostics.len(),
                            shown.join(" / ")
                        ));
                    }
                }
            }
        }
        for p in &self.syscalls {
            match &p.outcome {
                Err(e) => out.push(format!(
                    "strace pass {} {}: {}",
                    p.contender,
                    self.fixtures[p.fixture].name,
                    one_line(e)
                )),
                Ok(Traced {
                    perf: Some(Err(e)), ..
                }) => out.push(format!(
                    "perf count {} {}: {}",
                    p.contender,
                    self.fixtures[p.fixture].name,
                    one_line(e)
                )),
                Ok(_) => {}
            }
        }
        out
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

/// `12345.6` → `12.3k`; below 1000 with one decimal.
pub fn rate(r: f64) -> String {
    if !r.is_finite() {
        "—".into()
    } else if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.1}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => {
            // Keep small latencies readable without drowning large ones in digits.
            let d = if x >= 100.0 {
                decimals.min(1)
            } else {
                decimals
            };
            format!("{x:.d$}")
        }
        _ => "—".into(),
    }
}

/// The ratios, one per round, of the least CPU µs/req among `a` to the least among `b`, in
/// case (`fixture`, `connections`); rounds missing either side are left out.
pub fn same_round(
    samples: &[Sample],
    fixture: usize,
    connections: usize,
    a: &[Contender],
    b: &[Contender],
) -> Vec<f64> {
    let least = |who: &[Contender], round: usize| {
        samples
            .iter()
            .filter(|s| {
                s.round == round
                    && s.fixture == fixture
                    && s.connections == connections
                    && who.contains(&s.contender)
            })
            .filter_map(|s| s.outcome.as_ref().ok()?.cpu_us_per_req)
            .filter(|v| v.is_finite() && *v > 0.0)
            .min_by(f64::total_cmp)
    };
    let mut rounds: Vec<usize> = samples.iter().map(|s| s.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    rounds
        .into_iter()
        .filter_map(|r| Some(least(a, r)? / least(b, r)?))
        .collect()
}

/// The median and range of some ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    pub fn of(ratios: Vec<f64>) -> Option<Spread> {
        let ratios: Vec<f64> = ratios.into_iter().filter(|r| r.is_finite()).collect();
        Some(Spread {
            median: median(ratios.iter().copied())?,
            min: ratios.iter().copied().min_by(f64::total_cmp)?,
            max: ratios.iter().copied().max_by(f64::total_cmp)?,
            rounds: ratios.len(),
        })
    }
}

/// Checks the median and formatting helpers.
pub fn self_test() -> Result<(), String> {
    let ok = median([3.0, 1.0, 2.0]) == Some(2.0)
        && median([4.0, 1.0, 2.0, 3.0]) == Some(2.5)
        && median([f64::NAN]).is_none()
        && median(std::iter::empty()).is_none()
        && rate(12345.6) == "12.3k"
        && rate(999.94) == "999.9"
        && ratio(3.0, 2.0) == "1.50×"
        && ratio(1.0, 0.0) == "—"
        && opt(Some(0.1234), 3) == "0.123"
        && opt(Some(1234.5), 3) == "1234.5"
        && limited_by(Some(0.95), Some(1.0)) == "server"
        && limited_by(Some(0.6), Some(0.97)) == "**wrk**"
        && limited_by(Some(0.6), Some(0.5)) == "neither"
        && limited_by(None, Some(1.0)) == "?"
        && mix(&[("read".into(), 1.0), ("io_uring_enter".into(), 0.083)])
            == "read 1.00, io_uring_enter 0.08"
        && mix(&[]) == "—";
    if ok {
        Ok(())
    } else {
        Err("report self-test failed".into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians_and_formatting() {
        super::self_test().unwrap();
    }

    #[test]
    fn same_round_ratios_pair_servers_within_a_round() {
        use super::*;
        fn run(round: usize, who: Contender, cpu: Option<f64>) -> Sample {
            Sample {
                round,
                contender: who,
                fixture: 0,
                connections: 50,
                outcome: Ok(Measured {
                    wrk: WrkResult::default(),
                    cpu_us_per_req: cpu,
                    user_us_per_req: None,
                    sys_us_per_req: None,
                    machine_us_per_req: None,
                    vcs_per_req: None,
                    ivcs_per_req: None,
                    server_core: None,
                    peak_rss_kib: None,
                    server_non_2xx: None,
                    diagnostics: Vec::new(),
                }),
            }
        }
        use Contender::*;
        // The host is fast in round 0 and slow in round 1; the medians of the two servers
        // would pair one's fast round with the other's slow one.
        let mut samples = vec![
            run(0, Uring, Some(5.5)),
            run(0, FloorUring, Some(5.0)),
            run(0, NginxSendfileOff, Some(6.0)),
            run(0, H2o, Some(5.8)),
            run(1, Uring, Some(6.6)),
            run(1, FloorUring, Some(6.0)),
            run(1, NginxSendfileOff, Some(7.0)),
            run(1, H2o, None),
            run(2, Uring, Some(7.0)),
            // Another file, and a figure that is no measurement: neither may count.
            Sample {
                fixture: 1,
                ..run(0, FloorUring, Some(1.0))
            },
            run(1, H2o, Some(0.0)),
        ];
        samples.push(Sample {
            outcome: Err("wrk failed".into()),
            ..run(2, FloorUring, None)
        });
        let r = same_round(&samples, 0, 50, &[Uring], &[FloorUring]);
        assert_eq!(r.len(), 2, "round 2 has no floor figure: {r:?}");
        assert!(
            (r[0] - 1.1).abs() < 1e-9 && (r[1] - 1.1).abs() < 1e-9,
            "{r:?}"
        );
        // The best peer is the cheaper of those measured in each round: h2o, then nginx.
        let p = same_round(&samples, 0, 50, &[Uring], &[NginxSendfileOff, H2o]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!((p[0] - 5.5 / 5.8).abs() < 1e-9 && (p[1] - 6.6 / 7.0).abs() < 1e-9);
        assert!(same_round(&samples, 0, 256, &[Uring], &[FloorUring]).is_empty());
        let s = Spread::of(vec![1.2, 1.0, 1.1]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (1.1, 1.0, 1.2, 3));
        assert_eq!(Spread::of(Vec::new()), None);
        assert_eq!(Spread::of(vec![f64::NAN, 2.0]).map(|s| s.rounds), Some(1));
    }
}
