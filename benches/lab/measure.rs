//! What the lab reads from the kernel about a server: CPU time split into user and kernel time
//! (utime and stime of each process from `/proc/PID/stat`, which sums all its threads, dead ones
//! included), context switches (voluntary and involuntary, from `/proc/PID/task/TID/status`,
//! summed over the threads alive at the reading), peak resident memory (`VmHWM` in
//! `/proc/PID/status`), child processes (nginx's workers, h2o's helpers), syscall counts by name
//! from a separate `strace -f -c` pass, an untraced syscall count from `perf stat -e
//! raw_syscalls:sys_enter` in the same pass, the whole machine's busy CPU time (`/proc/stat`),
//! and the machine description for the report header.
//!
//! The strace pass is kept apart from the throughput runs because tracing every syscall slows a
//! server by an order of magnitude; only the ratio calls / requests is taken from it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Clock ticks per second, the unit of utime/stime.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime of process `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: i32) -> Result<u64, String> {
    let (u, s) = cpu_split(pid)?;
    Ok(u + s)
}

/// (utime, stime) of process `pid` (all its threads), in clock ticks.
pub fn cpu_split(pid: i32) -> Result<(u64, u64), String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_stat_times(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// utime + stime from a `/proc/PID/stat` line.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    parse_stat_times(stat).map(|(u, s)| u + s)
}

/// Fields 14 (utime) and 15 (stime) of a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so counting starts after its last `)`.
pub fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// Busy CPU time of the whole machine so far, all CPUs, in clock ticks: everything but idle and
/// iowait (why the lab reads it: `benches/README.md`, "How CPU is measured").
pub fn machine_busy_ticks() -> Result<u64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    parse_proc_stat_busy(&stat).ok_or_else(|| "/proc/stat: unexpected format".to_string())
}

/// user + nice + system + irq + softirq + steal of the aggregate `cpu` line of `/proc/stat`
/// (guest time is already inside user and nice).
pub fn parse_proc_stat_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    Some(f.get(0..3)?.iter().sum::<u64>() + f.get(5..8)?.iter().sum::<u64>())
}

/// Resource use of a set of processes at one moment; differences of two readings are what a run
/// cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User and kernel CPU time, clock ticks (processes' totals, all threads).
    pub user_ticks: u64,
    pub sys_ticks: u64,
    /// Context switches, summed over the threads alive at the reading.
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Usage {
    /// Reads the usage of `pids`, each with all its threads.
    pub fn read(pids: &[i32]) -> Result<Usage, String> {
        let mut u = Usage::default();
        for &pid in pids {
            let (user, sys) = cpu_split(pid)?;
            u.user_ticks += user;
            u.sys_ticks += sys;
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
            for t in tasks.flatten() {
                // A thread may end between listing and reading: skip it.
                if let Ok(text) = std::fs::read_to_string(t.path().join("status")) {
                    let (v, i) = parse_ctxt_switches(&text).unwrap_or((0, 0));
                    u.voluntary += v;
                    u.involuntary += i;
                }
            }
        }
        Ok(u)
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Usage) -> Usage {
        Usage {
            user_ticks: self.user_ticks.saturating_sub(before.user_ticks),
            sys_ticks: self.sys_ticks.saturating_sub(before.sys_ticks),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

/// (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`) of a `/proc/PID/task/TID/status`.
pub fn parse_ctxt_switches(status: &str) -> Option<(u64, u64)> {
    Some((
        parse_status_kib(status, "voluntary_ctxt_switches:")?,
        parse_status_kib(status, "nonvoluntary_ctxt_switches:")?,
    ))
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: i32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    parse_status_kib(&status, "VmHWM:").ok_or_else(|| format!("/proc/{pid}/status: no VmHWM"))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Direct children of `pid` (for nginx: its workers), over all its threads.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every process below `pid` (children, their children, ...), at most 64.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            if out.len() < 64 && !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// A running `strace -f -c -p PID…`, counting syscalls until [`StracePass::finish`].
pub struct StracePass {
    child: Option<Child>,
    summary: std::path::PathBuf,
}

impl StracePass {
    /// Attaches strace to `pids` (and, with `-f`, all their threads) and waits until it reports
    /// the attachment. strace itself is pinned to `cpu` when given (the load generator's core),
    /// so the server keeps its core to itself.
    pub fn attach(pids: &[i32], summary: &Path, cpu: Option<usize>) -> Result<StracePass, String> {
        let mut cmd = crate::servers::pinned(cpu, "strace");
        // `-U calls,name` keeps the summary to two unambiguous columns; the parser also reads the
        // default layout.
        cmd.args(["-f", "-c", "-U", "calls,name", "-o"])
            .arg(summary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for p in pids {
            cmd.arg("-p").arg(p.to_string());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start strace: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut attached = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !attached && line.contains("attached") {
                    attached = true;
                    let _ = tx.send(Ok(()));
                } else if !attached && line.contains("strace:") && !line.contains("attach") {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let mut pass = StracePass {
            child: Some(child),
            summary: summary.to_path_buf(),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {
                // strace attaches to the other threads right after the first message.
                std::thread::sleep(Duration::from_millis(300));
                Ok(pass)
            }
            Ok(Err(line)) => {
                pass.stop();
                Err(format!("strace failed: {line}"))
            }
            Err(_) => {
                pass.stop();
                Err("strace did not attach within 5 s".into())
            }
        }
    }

    /// Detaches (SIGINT, as a user pressing Ctrl-C) and returns the calls per syscall name, most
    /// frequent first, and the total.
    pub fn finish(mut self) -> Result<(Vec<(String, u64)>, u64), String> {
        if !self.stop() {
            return Err("strace had to be killed; no summary".into());
        }
        let text = std::fs::read_to_string(&self.summary)
            .map_err(|e| format!("{}: {e}", self.summary.display()))?;
        let total = parse_strace_total(&text)
            .ok_or_else(|| format!("no `total` line in strace's summary:\n{text}"))?;
        let mut rows = parse_strace_rows(&text).unwrap_or_default();
        rows.retain(|(name, _)| name != "total");
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok((rows, total))
    }

    /// SIGINT, wait up to 10 s, then SIGKILL. True when strace ended on SIGINT (summary written).
    fn stop(&mut self) -> bool {
        interrupt(self.child.take())
    }
}

impl Drop for StracePass {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGINT to `child` and waits up to 10 s, then SIGKILL. True when it ended on SIGINT.
fn interrupt(child: Option<Child>) -> bool {
    let Some(mut child) = child else {
        return false;
    };
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// A running `perf stat -e raw_syscalls:sys_enter -p PID,…`: counts syscalls without tracing
/// each one (a counter in the kernel's tracepoint, so the server runs at nearly full speed and
/// batches as it would untraced, where strace's per-syscall stops make it batch more).
pub struct PerfPass {
    child: Option<Child>,
    out: std::path::PathBuf,
}

impl PerfPass {
    /// Starts counting for `pids` (all their threads); perf itself runs on `cpu` when given.
    pub fn attach(pids: &[i32], out: &Path, cpu: Option<usize>) -> Result<PerfPass, String> {
        let mut cmd = crate::servers::pinned(cpu, "perf");
        let list = pids
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        cmd.args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-o"])
            .arg(out)
            .args(["-p", &list])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("cannot start perf: {e}"))?;
        // perf prints nothing when attached; give it the time strace needs.
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(st)) = child.try_wait() {
            let text = std::fs::read_to_string(out).unwrap_or_default();
            return Err(format!("perf stat exited at once ({st}): {}", text.trim()));
        }
        Ok(PerfPass {
            child: Some(child),
            out: out.to_path_buf(),
        })
    }

    /// Stops counting and returns the number of syscalls.
    pub fn finish(mut self) -> Result<u64, String> {
        if !interrupt(self.child.take()) {
            return Err("perf stat had to be killed; no count".into());
        }
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| format!("{}: {e}", self.out.display()))?;
        parse_perf_count(&text).ok_or_else(|| format!("no syscall count in perf's output: {text}"))
    }
}

impl Drop for PerfPass {
    fn drop(&mut self) {
        interrupt(self.child.take());
    }
}

/// The count of `perf stat -x ,` output's `raw_syscalls:sys_enter` line (its first field; absent
/// when perf printed `<not counted>` or `<not supported>`).
pub fn parse_perf_count(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter") && !l.starts_with('#'))?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The `calls` figure of strace's `total` line.
pub fn parse_strace_total(text: &str) -> Option<u64> {
    parse_strace_rows(text)?
        .into_iter()
        .find_map(|(name, calls)| (name == "total").then_some(calls))
}

/// Every (syscall, calls) row of a `strace -c` summary, the `total` row included, in the file's
/// order. The columns are right-aligned under the header and the `errors` / `usecs/call` cells
/// may be blank, so a row's count is the number that ends where the header's `calls` ends; the
/// name is the last word. With `-f` strace may print a summary per attach batch: the last header
/// and the rows after it count.
pub fn parse_strace_rows(text: &str) -> Option<Vec<(String, u64)>> {
    let lines: Vec<&str> = text.lines().collect();
    let h = lines
        .iter()
        .rposition(|l| l.contains("calls") && l.contains("syscall"))?;
    let end = lines[h].find("calls")? + "calls".len();
    let mut rows = Vec::new();
    for line in &lines[h + 1..] {
        let Some(name) = line.split_whitespace().last() else {
            continue;
        };
        if name.starts_with('-') {
            continue;
        }
        let mut pos = 0;
        for tok in line.split_whitespace() {
            let Some(at) = line[pos..].find(tok) else {
                break;
            };
            pos += at + tok.len();
            if pos == end {
                if let Ok(n) = tok.parse() {
                    rows.push((name.to_string(), n));
                }
                break;
            }
        }
    }
    rows.iter().any(|(n, _)| n == "total").then_some(rows)
}

/// The machine, for the report header.
#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub time: String,
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
}

impl Machine {
    pub fn describe() -> Machine {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".to_string(), |(_, v)| v.trim().to_string());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Machine {
            date: now[..10].to_string(),
            time: now[11..19].to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |s| s.trim().to_string()),
            cpu,
            cores,
        }
    }
}

const STRACE_DEFAULT: &str = "% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.31    0.120000           3     40000           writev
 30.00    0.080000           2     40000      1200 read
  0.00    0.000000           0         1           rseq
------ ----------- ----------- --------- --------- ----------------
100.00    0.200000           2     80001      1200 total
";

const STRACE_COLUMNS: &str = "    calls syscall
--------- ----------------
   123456 io_uring_enter
        5 epoll_wait
--------- ----------------
   123461 total
";

/// Checks the /proc and strace parsers on known inputs.
pub fn self_test() -> Result<(), String> {
    fn check(what: &str, ok: bool) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("measure parser self-test failed: {what}"))
        }
    }
    check(
        "strace default",
        parse_strace_total(STRACE_DEFAULT) == Some(80001),
    )?;
    check(
        "strace -U calls,name",
        parse_strace_total(STRACE_COLUMNS) == Some(123461),
    )?;
    check(
        "strace blank errors",
        parse_strace_total(&STRACE_DEFAULT.replace("      1200 total", "           total"))
            == Some(80001),
    )?;
    check(
        "strace garbage",
        parse_strace_total("nothing here").is_none(),
    )?;
    check(
        "strace rows",
        parse_strace_rows(STRACE_DEFAULT).is_some_and(|r| {
            r == [
                ("writev".to_string(), 40000),
                ("read".to_string(), 40000),
                ("rseq".to_string(), 1),
                ("total".to_string(), 80001),
            ]
        }),
    )?;
    check(
        "strace rows -U calls,name",
        parse_strace_rows(STRACE_COLUMNS)
            .is_some_and(|r| r.len() == 3 && r[0] == ("io_uring_enter".to_string(), 123456)),
    )?;
    check(
        "stat split",
        parse_stat_times("7 (x) S 1 2 3 4 5 6 7 8 9 10 31 101 0") == Some((31, 101)),
    )?;
    check(
        "perf count",
        parse_perf_count(
            "# started on Tue Nov 24 04:16:14 2026\n\n138596,,raw_syscalls:sys_enter,342687078,100.00,,\n",
        ) == Some(138596),
    )?;
    check(
        "perf not counted",
        parse_perf_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n").is_none(),
    )?;
    check(
        "ctxt switches",
        parse_ctxt_switches(
            "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n",
        ) == Some((12, 3)),
    )?;
    check(
        "proc stat busy",
        parse_proc_stat_busy("cpu  10 1 20 500 7 3 4 2 0 0\ncpu0 5 0 10 250 3 1 2 1 0 0\n")
            == Some(10 + 1 + 20 + 3 + 4 + 2),
    )?;
    check(
        "proc stat busy short",
        parse_proc_stat_busy("cpu  10 1 20 500\n").is_none(),
    )?;
    check("own /proc/stat", machine_busy_ticks().is_ok_and(|t| t > 0))?;
    let stat = "25710 (uring-httpd (x)) S 1 25706 5034 0 -1 4194560 595 0 1 0 31 101 0 0 20 0 7 0";
    check("stat", parse_stat_cpu(stat) == Some(132))?;
    check("stat short", parse_stat_cpu("1 (a) S 1 2").is_none())?;
    check(
        "VmHWM",
        parse_status_kib("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t    4321 kB\n", "VmHWM:")
            == Some(4321),
    )?;
    // The lab's own process must be readable the way servers will be.
    let me = std::process::id() as i32;
    check("own /proc/PID/stat", cpu_ticks(me).is_ok())?;
    check("own VmHWM", peak_rss_kib(me).is_ok_and(|k| k > 0))?;
    // A process just started may not have been switched out yet: only readability is checked.
    check("own usage", Usage::read(&[me]).is_ok())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parsers() {
        super::self_test().unwrap();
    }
}
