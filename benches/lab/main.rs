//! The engine lab: `cargo bench --bench lab [-- OPTIONS]`.
//!
//! It serves three fixture files (2 KiB html, 100 KiB png, 10 MiB txt, generated in a temporary
//! directory) with uring-httpd's io_uring engine, its epoll engine and nginx (when
//! `/usr/sbin/nginx` exists, with sendfile on and off), loads each with wrk at several
//! connection counts, and writes a Markdown table and an SVG chart to `benches/results/`.
//! Rounds alternate the servers so machine noise hits all of them alike; the figures reported are
//! medians across rounds. Syscalls per request come from a separate, shorter strace pass.
//!
//! This file owns the command line, the fixtures and the schedule; [`servers`] starts and stops
//! the servers, [`wrk`] drives the load, [`measure`] reads /proc and strace, [`report`] and
//! [`chart`] turn the samples into files.
//!
//! cargo passes `--bench` to bench targets; without it (e.g. `cargo test --benches`) the binary
//! only runs its parser self-tests and exits, so a test run never starts a 20-minute lab.

mod chart;
mod measure;
mod report;
mod servers;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use report::{Fixture, Lab, Measured, Sample, Setup, SyscallPass};
use servers::{Contender, Env, Running};

const USAGE: &str = "\
usage: cargo bench --bench lab [-- OPTIONS]

  --quick              1 round, 2 s runs, connections 1 and 256 only
  --rounds N           rounds of every (server, file, connections) run (default 3)
  --duration S         seconds per measured wrk run (default 5; --quick: 2)
  --warmup S           seconds of warm-up load before each measured run (default 1)
  --strace-secs S      seconds of the strace pass per server and file (default 3; --quick: 2)
  --connections LIST   comma-separated connection counts (default 1,50,256,1024)
  --servers LIST       comma-separated, from uring,epoll,nginx (default: all three)
  --out DIR            where the report goes (default benches/results)
";

/// Connections used for the strace pass.
const STRACE_CONNECTIONS: usize = 50;

#[derive(Debug, Clone)]
struct Options {
    bench: bool,
    quick: bool,
    rounds: usize,
    duration_s: u64,
    warmup_s: u64,
    strace_s: u64,
    concurrencies: Vec<usize>,
    servers: Vec<String>,
    out: PathBuf,
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut bench = false;
    let mut quick = false;
    let (mut rounds, mut duration, mut warmup, mut strace, mut conns, mut servers, mut out) =
        (None, None, None, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} wants a positive integer, not {v:?}"))
        };
        match flag {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--rounds" => rounds = Some(number(flag, value(flag)?)? as usize),
            "--duration" => duration = Some(number(flag, value(flag)?)?),
            "--warmup" => warmup = Some(number(flag, value(flag)?)?),
            "--strace-secs" => strace = Some(number(flag, value(flag)?)?),
            "--connections" => {
                let v = value(flag)?;
                let list = v
                    .split(',')
                    .map(|s| number(flag, s.trim().to_string()).map(|n| n as usize))
                    .collect::<Result<Vec<_>, _>>()?;
                conns = Some(list);
            }
            "--servers" => {
                let v = value(flag)?;
                let list: Vec<String> = v.split(',').map(|s| s.trim().to_lowercase()).collect();
                if let Some(bad) = list
                    .iter()
                    .find(|s| !["uring", "epoll", "nginx"].contains(&s.as_str()))
                {
                    return Err(format!("unknown server {bad:?} (uring, epoll, nginx)"));
                }
                servers = Some(list);
            }
            "--out" => out = Some(PathBuf::from(value(flag)?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut concurrencies = conns.unwrap_or_else(|| {
        if quick {
            vec![1, 256]
        } else {
            vec![1, 50, 256, 1024]
        }
    });
    concurrencies.sort_unstable();
    concurrencies.dedup();
    Ok(Some(Options {
        bench,
        quick,
        rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
        duration_s: duration.unwrap_or(if quick { 2 } else { 5 }),
        warmup_s: warmup.unwrap_or(1),
        strace_s: strace.unwrap_or(if quick { 2 } else { 3 }),
        concurrencies,
        servers: servers.unwrap_or_else(|| vec!["uring".into(), "epoll".into(), "nginx".into()]),
        out: out.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results")),
    }))
}

fn self_test() -> Result<(), String> {
    wrk::self_test()?;
    measure::self_test()?;
    servers::self_test()?;
    report::self_test()?;
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let o = parse_args(&args(&[
        "--bench",
        "--quick",
        "--rounds=2",
        "--servers",
        "epoll",
    ]))?
    .ok_or("args self-test: unexpected help")?;
    if !(o.bench && o.quick && o.rounds == 2 && o.duration_s == 2)
        || o.concurrencies != [1, 256]
        || o.servers != ["epoll"]
    {
        return Err(format!("args self-test failed: {o:?}"));
    }
    if parse_args(&args(&["--rounds", "0"])).is_ok() || parse_args(&args(&["--what"])).is_ok() {
        return Err("args self-test failed: bad input accepted".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lab: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The parsers are checked before every lab run: harness = false benches never run #[test].
    if let Err(e) = self_test() {
        eprintln!("lab: {e}");
        return ExitCode::FAILURE;
    }
    if !opts.bench {
        println!("lab: self-test passed (measure with `cargo bench --bench lab`)");
        return ExitCode::SUCCESS;
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `program` is found on PATH (or is an existing path).
fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Raises the soft open-file limit to the hard one (wrk and the servers inherit it).
fn raise_nofile() -> Result<u64, String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    }
    Ok(hard)
}

/// Deterministic filler bytes (xorshift), so fixture files do not compress to nothing.
fn filler(len: usize, seed: u64, printable: bool) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if printable {
                b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(x % 38) as usize]
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

fn make_fixtures(root: &Path) -> Result<Vec<Fixture>, String> {
    let mut html = b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lab</title></head>\n<body><p>\n"
        .to_vec();
    let tail = b"\n</p></body></html>\n";
    html.extend(filler(2048 - html.len() - tail.len(), 1, true));
    html.extend_from_slice(tail);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(filler(100 * 1024 - png.len(), 2, false));
    let txt = filler(10 * 1024 * 1024, 3, true);
    let mut out = Vec::new();
    for (name, label, bytes) in [
        ("2k.html", "2 KiB html", html),
        ("100k.png", "100 KiB png", png),
        ("10m.txt", "10 MiB txt", txt),
    ] {
        let p = root.join(name);
        std::fs::write(&p, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(Fixture {
            name: name.into(),
            bytes: bytes.len() as u64,
            label: label.into(),
        });
    }
    Ok(out)
}

fn revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", "src"])
                .is_some_and(|s| !s.is_empty());
            format!(
                "{} at {rev}{}",
                env!("CARGO_PKG_VERSION"),
                if dirty {
                    " + uncommitted changes in src/"
                } else {
                    ""
                }
            )
        }
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn nginx_version(nginx: &Path) -> Option<String> {
    let out = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    text.trim()
        .strip_prefix("nginx version: nginx/")
        .map(str::to_string)
        .or(Some(text.trim().to_string()))
}

/// Pins to CPUs 1 (server) and 0 (wrk) when both exist and taskset works.
fn pinning(cores: usize) -> (Option<usize>, Option<usize>) {
    let works = |cpu: &str| {
        Command::new("taskset")
            .args(["-c", cpu, "true"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if cores >= 2 && works("0") && works("1") {
        (Some(1), Some(0))
    } else {
        (None, None)
    }
}

/// Progress on stderr: the line is started before the work and finished after it.
struct Progress {
    done: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    fn begin(&mut self, what: &str) {
        self.done += 1;
        let w = self.total.to_string().len();
        eprint!("[{:>w$}/{}] {what} ... ", self.done, self.total);
    }

    fn end(&self, result: &str) {
        let secs = self.started.elapsed().as_secs();
        eprintln!("{result}  ({}m{:02}s)", secs / 60, secs % 60);
    }
}

fn run(opts: &Options) -> Result<(), String> {
    if !have("wrk") {
        return Err("wrk is not installed (Debian: apt-get install wrk)".into());
    }
    let mut notes = Vec::new();
    match raise_nofile() {
        Ok(n) if n < 4096 => notes.push(format!(
            "open-file limit is only {n}: high connection counts may fail"
        )),
        Ok(_) => {}
        Err(e) => notes.push(format!("could not raise the open-file limit: {e}")),
    }
    let machine = measure::Machine::describe();
    let (server_cpu, wrk_cpu) = if have("taskset") {
        pinning(machine.cores)
    } else {
        (None, None)
    };
    let nginx = Path::new(servers::NGINX);
    let nginx = nginx.is_file().then(|| nginx.to_path_buf());
    let mut contenders = Vec::new();
    for s in &opts.servers {
        match s.as_str() {
            "uring" => contenders.push(Contender::Uring),
            "epoll" => contenders.push(Contender::Epoll),
            _ if nginx.is_some() => {
                contenders.extend([Contender::NginxSendfileOn, Contender::NginxSendfileOff])
            }
            _ => notes.push(format!(
                "nginx skipped: {} is not installed (Debian: apt-get install nginx-light)",
                servers::NGINX
            )),
        }
    }
    contenders.dedup();
    if contenders.is_empty() {
        return Err("no server to measure".into());
    }
    let strace = have("strace");
    if !strace {
        notes.push("strace is not installed: no syscalls/req figures".into());
    }

    let tmp = tempfile::Builder::new()
        .prefix("uring-httpd-lab-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let root = tmp.path().join("root");
    let work = tmp.path().join("work");
    for d in [&root, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let fixtures = make_fixtures(&root)?;
    let env = Env {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_uring-httpd")),
        nginx: nginx.clone(),
        root: root.canonicalize().map_err(|e| e.to_string())?,
        work,
        cpu: server_cpu,
        workers: 1,
    };

    let cases: Vec<(usize, usize)> = (0..fixtures.len())
        .flat_map(|f| opts.concurrencies.iter().map(move |&c| (f, c)))
        .collect();
    let runs = opts.rounds * cases.len() * contenders.len();
    let passes = if strace {
        fixtures.len() * contenders.len()
    } else {
        0
    };
    let estimate = runs as u64 * (opts.duration_s + opts.warmup_s + 1)
        + passes as u64 * (opts.strace_s + opts.warmup_s + 2);
    eprintln!(
        "lab: {} round(s) × {} files × {} connection counts × {} servers = {runs} runs of {} s, \
         plus {passes} strace passes; about {} min. Server on CPU {}, wrk on CPU {}.",
        opts.rounds,
        fixtures.len(),
        opts.concurrencies.len(),
        contenders.len(),
        opts.duration_s,
        estimate.div_ceil(60),
        server_cpu.map_or("any".into(), |c| c.to_string()),
        wrk_cpu.map_or("any".into(), |c| c.to_string()),
    );

    let mut progress = Progress {
        done: 0,
        total: runs + passes,
        started: Instant::now(),
    };
    let mut samples = Vec::new();
    for round in 0..opts.rounds {
        for (k, &(f, c)) in cases.iter().enumerate() {
            // Rotate the order every case and every round, so each server takes each position.
            let n = contenders.len();
            for i in 0..n {
                let contender = contenders[(i + round + k) % n];
                let fx = &fixtures[f];
                progress.begin(&format!(
                    "round {}/{} {contender} {} c={c}",
                    round + 1,
                    opts.rounds,
                    fx.name
                ));
                let outcome = measure_run(&env, contender, fx, c, opts, wrk_cpu);
                progress.end(&match &outcome {
                    Ok(m) => {
                        let mut s = format!(
                            "{} req/s, p99 {} ms, {} µs CPU/req",
                            report::rate(m.wrk.req_per_s),
                            m.wrk.p99_ms.map_or("?".into(), |v| format!("{v:.2}")),
                            m.cpu_us_per_req.map_or("?".into(), |v| format!("{v:.1}")),
                        );
                        let errs = m.wrk.errors.total() + m.wrk.non_2xx;
                        if errs > 0 {
                            s.push_str(&format!(", {errs} ERRORS"));
                        }
                        s
                    }
                    Err(e) => format!("FAILED: {e}"),
                });
                samples.push(Sample {
                    round,
                    contender,
                    fixture: f,
                    connections: c,
                    outcome,
                });
            }
        }
    }

    let mut syscalls = Vec::new();
    if strace {
        for (f, fx) in fixtures.iter().enumerate() {
            for &contender in &contenders {
                progress.begin(&format!(
                    "strace {contender} {} c={STRACE_CONNECTIONS} {} s",
                    fx.name, opts.strace_s
                ));
                let outcome = syscall_pass(&env, contender, fx, opts, wrk_cpu);
                progress.end(&match &outcome {
                    Ok((calls, reqs)) => format!(
                        "{calls} syscalls / {reqs} requests = {:.2}",
                        *calls as f64 / (*reqs).max(1) as f64
                    ),
                    Err(e) => format!("FAILED: {e}"),
                });
                syscalls.push(SyscallPass {
                    contender,
                    fixture: f,
                    connections: STRACE_CONNECTIONS,
                    secs: opts.strace_s,
                    outcome,
                });
            }
        }
    }

    let lab = Lab {
        setup: Setup {
            machine,
            rounds: opts.rounds,
            duration_s: opts.duration_s,
            warmup_s: opts.warmup_s,
            strace_s: opts.strace_s,
            strace_connections: STRACE_CONNECTIONS,
            concurrencies: opts.concurrencies.clone(),
            contenders,
            server_cpu,
            wrk_cpu,
            workers: env.workers,
            revision: revision(),
            nginx_version: nginx.as_deref().and_then(nginx_version),
            quick: opts.quick,
            notes,
        },
        fixtures,
        samples,
        syscalls,
    };
    write_outputs(&lab, &opts.out)
}

fn write_outputs(lab: &Lab, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let stem = format!(
        "lab-{}{}",
        lab.setup.machine.date,
        if lab.setup.quick { "-quick" } else { "" }
    );
    let md = lab.markdown();
    let md_path = out.join(format!("{stem}.md"));
    let svg_path = out.join(format!("{stem}.svg"));
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    chart::write_svg(lab, &svg_path)?;
    let tsv_path = out.join(format!("{stem}.tsv"));
    std::fs::write(&tsv_path, lab.raw_tsv()).map_err(|e| format!("{}: {e}", tsv_path.display()))?;
    for (from, to) in [
        (&md_path, "latest.md"),
        (&svg_path, "latest.svg"),
        (&tsv_path, "latest.tsv"),
    ] {
        std::fs::copy(from, out.join(to))
            .map_err(|e| format!("{}: {e}", out.join(to).display()))?;
    }
    println!("{md}");
    eprintln!(
        "lab: wrote {}, {} and {} (every run's figures); copies: latest.md, latest.svg, latest.tsv",
        md_path.display(),
        svg_path.display(),
        tsv_path.display()
    );
    Ok(())
}

fn load(
    server: &Running,
    fx: &Fixture,
    connections: usize,
    secs: u64,
    cpu: Option<usize>,
) -> wrk::Load {
    wrk::Load {
        url: format!("http://{}/{}", server.addr, fx.name),
        connections,
        duration: Duration::from_secs(secs),
        cpu,
    }
}

/// One measured run on a fresh server: check the file, warm up, measure, read /proc, stop.
fn measure_run(
    env: &Env,
    contender: Contender,
    fx: &Fixture,
    connections: usize,
    opts: &Options,
    wrk_cpu: Option<usize>,
) -> Result<Measured, String> {
    let mut server = Running::start(env, contender)?;
    servers::verify_fixture(server.addr, &format!("/{}", fx.name), fx.bytes)?;
    wrk::run(&load(&server, fx, connections, opts.warmup_s, wrk_cpu))
        .map_err(|e| format!("warm-up: {e}"))?;
    let counters_before = server.counters();
    let cpu_before = server.cpu_ticks()?;
    let result = wrk::run(&load(&server, fx, connections, opts.duration_s, wrk_cpu))?;
    let cpu_after = server.cpu_ticks()?;
    let counters_after = server.counters();
    let peak_rss_kib = server.peak_rss_kib().ok();
    let server_non_2xx = match (counters_before, counters_after) {
        (Some(b), Some(a)) => Some(a.since(&b).non_2xx),
        _ => None,
    };
    server.stop();
    let cpu_us_per_req = (result.requests > 0).then(|| {
        (cpu_after.saturating_sub(cpu_before)) as f64 * 1e6
            / measure::clock_ticks() as f64
            / result.requests as f64
    });
    Ok(Measured {
        wrk: result,
        cpu_us_per_req,
        peak_rss_kib,
        server_non_2xx,
        diagnostics: server.diagnostics(),
    })
}

/// The strace pass: a fresh server, warm-up, then `strace -f -c` around a short wrk run.
fn syscall_pass(
    env: &Env,
    contender: Contender,
    fx: &Fixture,
    opts: &Options,
    wrk_cpu: Option<usize>,
) -> Result<(u64, u64), String> {
    let server = Running::start(env, contender)?;
    servers::verify_fixture(server.addr, &format!("/{}", fx.name), fx.bytes)?;
    wrk::run(&load(
        &server,
        fx,
        STRACE_CONNECTIONS,
        opts.warmup_s,
        wrk_cpu,
    ))
    .map_err(|e| format!("warm-up: {e}"))?;
    let summary = env.work.join(format!("strace-{contender}-{}.txt", fx.name));
    let pass = measure::StracePass::attach(&server.serving_pids(), &summary, wrk_cpu)?;
    let result = wrk::run(&load(
        &server,
        fx,
        STRACE_CONNECTIONS,
        opts.strace_s,
        wrk_cpu,
    ));
    let calls = pass.finish();
    drop(server);
    let result = result?;
    Ok((calls?, result.requests))
}
