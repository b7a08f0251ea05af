//! The load generator: running `wrk` (pinned to its own core, bounded in time) and reading its
//! report. wrk prints human-formatted figures (`850.12us`, `1.70ms`, `1.02s`, `33.98k`,
//! `195.54MB`), optional `Socket errors:` and `Non-2xx or 3xx responses:` lines and a
//! `Latency Distribution` block with `--latency`; the small parsers here turn that text into a
//! [`WrkResult`]. They are checked by [`self_test`], which the lab runs before every measurement
//! (a `harness = false` bench never runs `#[test]` functions under `cargo test`).

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One wrk invocation.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    /// CPU to pin wrk to with `taskset`, when pinning.
    pub cpu: Option<usize>,
}

/// Connect/read/write/timeout errors as wrk counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

impl SocketErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// What one wrk run reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkResult {
    /// Responses completed during the run.
    pub requests: u64,
    /// The run's length as wrk measured it, in seconds.
    pub elapsed_s: f64,
    pub bytes_read: f64,
    pub req_per_s: f64,
    pub latency_avg_ms: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: SocketErrors,
    /// Responses with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// wrk's own CPU time (user + system, from `wait4`'s rusage) and its wall-clock life, in
    /// seconds: their ratio says whether wrk had its core to the full (set by [`run`]).
    pub cpu_s: Option<f64>,
    pub wall_s: f64,
}

impl WrkResult {
    /// The share of one core wrk used over its life, when known.
    pub fn core_share(&self) -> Option<f64> {
        self.cpu_s
            .filter(|_| self.wall_s > 0.0)
            .map(|c| c / self.wall_s)
    }
}

/// Seconds wrk waits for a response before counting a timeout: large enough that a 10 MiB
/// response queued behind a thousand others still counts as a (slow) response.
const TIMEOUT_S: u64 = 30;

/// Runs wrk and parses its report. The run is bounded: wrk is killed if it outlives its own
/// duration by more than 20 s.
pub fn run(load: &Load) -> Result<WrkResult, String> {
    let secs = load.duration.as_secs_f64().max(0.1);
    let mut cmd = crate::servers::pinned(load.cpu, "wrk");
    // One wrk thread per core wrk may use: pinned means one core.
    let threads = if load.cpu.is_some() { 1 } else { 2 }.min(load.connections);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", secs.ceil() as u64))
        .arg(format!("--timeout={TIMEOUT_S}s"))
        .arg("--latency")
        .arg(&load.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start wrk: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + load.duration + Duration::from_secs(20);
    let started = Instant::now();
    let pid = child.id() as libc::pid_t;
    // wait4 instead of Child::try_wait: it also returns the child's rusage (taskset execs wrk, so
    // the pid is wrk's).
    let (code, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and ru are valid for writes; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
            break (code, ru);
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(format!(
                "waiting for wrk: {}",
                std::io::Error::last_os_error()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wrk did not finish in time ({})", load.url));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall_s = started.elapsed().as_secs_f64();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_s = secs(usage.ru_utime) + secs(usage.ru_stime);
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if code != 0 {
        return Err(format!(
            "wrk exited with status {code}: {}{}",
            stderr.trim(),
            stdout.trim()
        ));
    }
    let mut result = parse(&stdout).map_err(|e| format!("{e}; wrk said:\n{stdout}{stderr}"))?;
    result.cpu_s = Some(cpu_s);
    result.wall_s = wall_s;
    Ok(result)
}

/// Parses a wrk report (wrk 4.x text output).
pub fn parse(text: &str) -> Result<WrkResult, String> {
    let mut r = WrkResult::default();
    let (mut saw_requests, mut saw_rate) = (false, false);
    let mut in_distribution = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            // "50%    1.00ms"
            if let Some((pct, value)) = t.split_once('%') {
                if let Ok(p) = pct.trim().parse::<f64>() {
                    let ms = parse_time_ms(value.trim())
                        .ok_or_else(|| format!("bad latency percentile line {t:?}"))?;
                    if p == 50.0 {
                        r.p50_ms = Some(ms);
                    } else if p == 99.0 {
                        r.p99_ms = Some(ms);
                    }
                    continue;
                }
            }
            in_distribution = false;
        }
        if let Some(rest) = t.strip_prefix("Latency") {
            // "Latency     1.70ms    1.64ms  10.99ms   87.29%"
            if let Some(avg) = rest.split_whitespace().next() {
                r.latency_avg_ms = parse_time_ms(avg).unwrap_or(f64::NAN);
            }
        } else if let Some((count, rest)) = t.split_once(" requests in ") {
            // "67736 requests in 2.01s, 195.54MB read"
            r.requests = parse_count(count.trim())
                .ok_or_else(|| format!("bad request count in {t:?}"))?
                .round() as u64;
            let (elapsed, bytes) = rest.split_once(',').unwrap_or((rest, ""));
            r.elapsed_s = parse_time_ms(elapsed.trim())
                .ok_or_else(|| format!("bad elapsed time in {t:?}"))?
                / 1000.0;
            r.bytes_read = parse_bytes(bytes.trim().trim_end_matches("read").trim()).unwrap_or(0.0);
            saw_requests = true;
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            // "Socket errors: connect 0, read 12, write 0, timeout 3"
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (Some(name), Some(n)) = (it.next(), it.next()) else {
                    continue;
                };
                let n =
                    parse_count(n).ok_or_else(|| format!("bad socket error count {t:?}"))? as u64;
                match name {
                    "connect" => r.errors.connect = n,
                    "read" => r.errors.read = n,
                    "write" => r.errors.write = n,
                    "timeout" => r.errors.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx =
                parse_count(rest.trim()).ok_or_else(|| format!("bad non-2xx line {t:?}"))? as u64;
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            r.req_per_s = rest
                .trim()
                .parse()
                .map_err(|_| format!("bad Requests/sec line {t:?}"))?;
            saw_rate = true;
        }
    }
    if !saw_requests || !saw_rate {
        return Err("no `requests in` / `Requests/sec` line in wrk's output".into());
    }
    if r.requests == 0 {
        // wrk prints 0.00us percentiles when nothing completed: there is no latency to report.
        (r.p50_ms, r.p99_ms, r.latency_avg_ms) = (None, None, f64::NAN);
    }
    Ok(r)
}

/// `850.12us`, `1.70ms`, `1.02s`, `2.00m`, `1.00h` → milliseconds.
pub fn parse_time_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.trim().parse().ok()?;
    let scale = match unit {
        "ns" => 1e-6,
        "us" | "µs" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v * scale)
}

/// `67736`, `33.98k`, `1.20M`, `3G` → a number (wrk's metric suffixes are powers of 1000).
pub fn parse_count(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        'T' => (&s[..s.len() - 1], 1e12),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * scale)
}

/// `195.54MB`, `300.40KB`, `12B`, `1.5GB` → bytes (wrk's byte units are powers of 1024).
pub fn parse_bytes(s: &str) -> Option<f64> {
    let s = s.trim().strip_suffix('B')?;
    let (num, scale) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024.0),
        'M' => (&s[..s.len() - 1], 1024.0 * 1024.0),
        'G' => (&s[..s.len() - 1], 1024.0 * 1024.0 * 1024.0),
        'T' => (&s[..s.len() - 1], 1024.0f64.powi(4)),
        _ => (s, 1.0),
    };
    num.trim().parse::<f64>().ok().map(|v| v * scale)
}

const SAMPLE: &str = "Running 2s test @ http://127.0.0.1:36439/a.html
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.70ms    1.64ms  10.99ms   87.29%
    Req/Sec    33.98k     8.87k   48.87k    65.00%
  Latency Distribution
     50%  850.00us
     75%    1.77ms
     90%    3.94ms
     99%    1.02s
  67736 requests in 2.01s, 195.54MB read
  Socket errors: connect 0, read 12, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  33734.14
Transfer/sec:     97.38MB
";

const SAMPLE_CLEAN: &str = "Running 1m test @ http://127.0.0.1:1/10m.txt
  1 threads and 1024 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  1.20k requests in 1.00m, 11.72GB read
Requests/sec:     19.99
Transfer/sec:    200.00MB
";

/// Checks the parsers on known inputs; the lab refuses to measure when this fails.
pub fn self_test() -> Result<(), String> {
    fn check(what: &str, ok: bool) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("wrk parser self-test failed: {what}"))
        }
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    check(
        "us",
        parse_time_ms("850.00us").is_some_and(|v| close(v, 0.85)),
    )?;
    check("ms", parse_time_ms("1.70ms").is_some_and(|v| close(v, 1.7)))?;
    check(
        "s",
        parse_time_ms("1.02s").is_some_and(|v| close(v, 1020.0)),
    )?;
    check(
        "m",
        parse_time_ms("2.00m").is_some_and(|v| close(v, 120_000.0)),
    )?;
    check("no unit", parse_time_ms("12").is_none())?;
    check("bad unit", parse_time_ms("12xs").is_none())?;
    check("count", parse_count("67736") == Some(67736.0))?;
    check(
        "count k",
        parse_count("33.98k").is_some_and(|v| close(v, 33_980.0)),
    )?;
    check(
        "count M",
        parse_count("1.5M").is_some_and(|v| close(v, 1_500_000.0)),
    )?;
    check("count junk", parse_count("abc").is_none())?;
    check(
        "bytes MB",
        parse_bytes("2.00MB") == Some(2.0 * 1024.0 * 1024.0),
    )?;
    check("bytes B", parse_bytes("12B") == Some(12.0))?;

    let r = parse(SAMPLE)?;
    check("requests", r.requests == 67736)?;
    check("elapsed", close(r.elapsed_s, 2.01))?;
    check("req/s", close(r.req_per_s, 33734.14))?;
    check("avg", close(r.latency_avg_ms, 1.7))?;
    check("p50", r.p50_ms.is_some_and(|v| close(v, 0.85)))?;
    check("p99", r.p99_ms.is_some_and(|v| close(v, 1020.0)))?;
    check(
        "socket errors",
        r.errors
            == SocketErrors {
                connect: 0,
                read: 12,
                write: 1,
                timeout: 3,
            },
    )?;
    check("socket error total", r.errors.total() == 16)?;
    check("non-2xx", r.non_2xx == 7)?;
    check("bytes", close(r.bytes_read, 195.54 * 1024.0 * 1024.0))?;

    let r = parse(SAMPLE_CLEAN)?;
    check("k requests", r.requests == 1200)?;
    check("minutes elapsed", close(r.elapsed_s, 60.0))?;
    check("no errors", r.errors.total() == 0 && r.non_2xx == 0)?;
    check("GB", close(r.bytes_read, 11.72 * 1024.0 * 1024.0 * 1024.0))?;

    let none = SAMPLE_CLEAN.replace("1.20k requests", "0 requests");
    let r = parse(&none)?;
    check(
        "no latency without responses",
        r.requests == 0 && r.p50_ms.is_none() && r.p99_ms.is_none(),
    )?;

    check(
        "truncated output is an error",
        parse("Running 1s test @ x\n  1 threads and 1 connections\n").is_err(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parsers() {
        super::self_test().unwrap();
    }
}
