//! The engine lab: `cargo bench --bench lab [-- OPTIONS]`.
//!
//! It serves three fixture files (2 KiB html, 100 KiB png, 10 MiB txt, generated in a temporary
//! directory) with uring-httpd's io_uring engine, its epoll engine, nginx (with sendfile on and
//! off), lighttpd and h2o (each when installed), and two fixed-response floor responders on raw
//! io_uring and raw epoll (this binary, run as `floor-uring` / `floor-epoll`), loads each with wrk
//! at several connection counts, and writes a Markdown report, SVG charts and the raw figures to
//! `benches/results/`. Rounds alternate the servers so machine noise hits all of them alike; the
//! figures reported are medians across rounds. Syscalls per request and the syscall mix come from
//! a separate, shorter strace pass. `benches/README.md` explains how to run and read it.
//!
//! This file owns the schedule and the fixtures; [`options`] reads the command line, [`servers`]
//! starts and stops the servers, [`floor_uring`] and [`floor_epoll`] are the floors, [`wrk`]
//! drives the load, [`measure`] reads /proc and strace, [`report`] and [`chart`] turn the samples
//! into files.
//!
//! cargo passes `--bench` to bench targets; without it (e.g. `cargo test --benches`) the binary
//! only runs its parser self-tests and exits, so a test run never starts a 20-minute lab. The
//! same tests run under `cargo test` through `tests/lab.rs`.

mod chart;
mod floor_core;
mod floor_epoll;
mod floor_proto;
mod floor_serve;
mod floor_uring;
mod measure;
mod options;
mod report;
mod servers;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::time::{Duration, Instant};

use options::{Command, Options};
use report::{Fixture, Lab, Measured, Sample, Setup, SyscallPass, Traced};
use servers::{Contender, Env, Running};

/// Connections used for the strace pass.
const STRACE_CONNECTIONS: usize = 50;

fn self_test() -> Result<(), String> {
    wrk::self_test()?;
    measure::self_test()?;
    servers::self_test()?;
    report::self_test()?;
    options::self_test()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match options::parse(&args) {
        Ok(Command::Lab(o)) => o,
        Ok(Command::Help) => {
            print!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Floor { uring, port, file }) => {
            let r = if uring {
                floor_uring::run(port, &file)
            } else {
                floor_epoll::run(port, &file)
            };
            if let Err(e) = r {
                eprintln!("lab floor: {e}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("lab: {e}\n{}", options::USAGE);
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
        Process::new("git")
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

/// The version a server prints for `flag` (on stdout or stderr), after `prefix` when present.
fn version(program: &Path, flag: &str, prefix: &str) -> Option<String> {
    let out = Process::new(program).arg(flag).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next()?.trim();
    let v = first
        .find(prefix)
        .map_or(first, |i| &first[i + prefix.len()..]);
    Some(v.split_whitespace().next().unwrap_or(v).to_string())
}

/// A server's binary: `default` when it exists, else `name` on PATH.
fn find(default: &str, name: &str) -> Option<PathBuf> {
    if Path::new(default).is_file() {
        return Some(PathBuf::from(default));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Pins to CPUs 1 (server) and 0 (wrk) when both exist and taskset works.
fn pinning(cores: usize) -> (Option<usize>, Option<usize>) {
    let works = |cpu: &str| {
        Process::new("taskset")
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
    // Now, right after the build: edits made to src/ while the lab runs are not in its binaries.
    let revision = revision();
    let (server_cpu, wrk_cpu) = if have("taskset") {
        pinning(machine.cores)
    } else {
        (None, None)
    };
    let nginx = find(servers::NGINX, "nginx");
    let lighttpd = find(servers::LIGHTTPD, "lighttpd");
    let h2o = find(servers::H2O, "h2o");
    let mut contenders = Vec::new();
    let skip = |notes: &mut Vec<String>, name: &str, package: &str| {
        let line =
            format!("{name} skipped: it is not installed (Debian: apt-get install {package})");
        eprintln!("lab: {line}");
        notes.push(line);
    };
    for s in &opts.servers {
        match s.as_str() {
            "uring" => contenders.push(Contender::Uring),
            "epoll" => contenders.push(Contender::Epoll),
            "nginx" if nginx.is_some() => {
                contenders.extend([Contender::NginxSendfileOn, Contender::NginxSendfileOff])
            }
            "nginx" => skip(&mut notes, "nginx", "nginx-light"),
            "lighttpd" if lighttpd.is_some() => contenders.push(Contender::Lighttpd),
            "lighttpd" => skip(&mut notes, "lighttpd", "lighttpd"),
            "h2o" if h2o.is_some() => contenders.push(Contender::H2o),
            "h2o" => skip(&mut notes, "h2o", "h2o"),
            "floor-uring" => contenders.push(Contender::FloorUring),
            "floor-epoll" => contenders.push(Contender::FloorEpoll),
            other => return Err(format!("unknown server {other:?}")),
        }
    }
    contenders.dedup();
    if contenders.is_empty() {
        return Err("no server to measure".into());
    }
    let strace = opts.strace && have("strace");
    if opts.strace && !strace {
        notes.push("strace is not installed: no syscalls/req figures".into());
    }
    let perf = strace && have("perf");
    if strace && !perf {
        notes.push("perf is not installed: no untraced syscalls/req figures".into());
    }
    if contenders.iter().any(|c| c.is_floor()) && !contenders.contains(&Contender::FloorUring) {
        notes.push("floor-uring not run: no × uring floor figures".into());
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
    let fixtures: Vec<Fixture> = make_fixtures(&root)?
        .into_iter()
        .filter(|f| opts.files.contains(&f.name))
        .collect();
    let env = Env {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_uring-httpd")),
        lab: std::env::current_exe().map_err(|e| format!("the lab's own path: {e}"))?,
        nginx: nginx.clone(),
        lighttpd: lighttpd.clone(),
        h2o: h2o.clone(),
        root: root.canonicalize().map_err(|e| e.to_string())?,
        work,
        cpu: server_cpu,
        workers: 1,
    };

    let cases: Vec<(usize, usize)> = (0..fixtures.len())
        .flat_map(|f| opts.concurrencies.iter().map(move |&c| (f, c)))
        .collect();
    // The contenders of a file: the floors only serve small files.
    let serving = |f: usize| -> Vec<Contender> {
        contenders
            .iter()
            .copied()
            .filter(|c| c.serves(fixtures[f].bytes))
            .collect()
    };
    let runs = opts.rounds * cases.iter().map(|&(f, _)| serving(f).len()).sum::<usize>();
    let passes = if strace {
        (0..fixtures.len()).map(|f| serving(f).len()).sum()
    } else {
        0
    };
    let estimate = runs as u64 * (opts.duration_s + opts.warmup_s + 1)
        + passes as u64 * (2 * opts.strace_s + opts.warmup_s + 2);
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
            let these = serving(f);
            let n = these.len();
            for i in 0..n {
                let contender = these[(i + round + k) % n];
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
                        let num = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.2}"));
                        let pct =
                            |v: Option<f64>| v.map_or("?".into(), |v| format!("{:.0}%", 100.0 * v));
                        let mut s = format!(
                            "{} req/s, p99 {} ms, {} µs CPU/req (user {}, kernel {}); \
                             cores: server {}, wrk {}",
                            report::rate(m.wrk.req_per_s),
                            num(m.wrk.p99_ms),
                            num(m.cpu_us_per_req),
                            num(m.user_us_per_req),
                            num(m.sys_us_per_req),
                            pct(m.server_core),
                            pct(m.wrk.core_share()),
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
            for contender in serving(f) {
                progress.begin(&format!(
                    "strace {contender} {} c={STRACE_CONNECTIONS} {} s",
                    fx.name, opts.strace_s
                ));
                let outcome = syscall_pass(&env, contender, fx, opts, wrk_cpu, perf);
                progress.end(&match &outcome {
                    Ok(t) => format!(
                        "strace: {} syscalls / {} requests = {:.2}; perf: {}",
                        t.calls,
                        t.requests,
                        t.calls as f64 / t.requests.max(1) as f64,
                        match &t.perf {
                            Some(Ok((c, r))) =>
                                format!("{c} / {r} = {:.3}", *c as f64 / (*r).max(1) as f64),
                            Some(Err(e)) => format!("failed: {e}"),
                            None => "not run".into(),
                        }
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
            revision,
            nginx_version: nginx.as_deref().and_then(|p| version(p, "-v", "nginx/")),
            lighttpd_version: lighttpd
                .as_deref()
                .and_then(|p| version(p, "-v", "lighttpd/")),
            h2o_version: h2o
                .as_deref()
                .and_then(|p| version(p, "--version", "h2o version ")),
            quick: opts.quick,
            notes,
        },
        fixtures,
        samples,
        syscalls,
    };
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results"));
    write_outputs(&lab, &out)
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
    let cost_path = out.join(format!("{stem}-cost.svg"));
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    chart::write_svg(lab, &svg_path)?;
    chart::write_cost_svg(lab, &cost_path)?;
    let tsv_path = out.join(format!("{stem}.tsv"));
    std::fs::write(&tsv_path, lab.raw_tsv()).map_err(|e| format!("{}: {e}", tsv_path.display()))?;
    for (from, to) in [
        (&md_path, "latest.md"),
        (&svg_path, "latest.svg"),
        (&cost_path, "latest-cost.svg"),
        (&tsv_path, "latest.tsv"),
    ] {
        std::fs::copy(from, out.join(to))
            .map_err(|e| format!("{}: {e}", out.join(to).display()))?;
    }
    println!("{md}");
    eprintln!(
        "lab: wrote {}, {}, {} and {} (every run's figures); copies: latest.md, latest.svg, \
         latest-cost.svg, latest.tsv",
        md_path.display(),
        svg_path.display(),
        cost_path.display(),
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
    let mut server = Running::start(env, contender, &fx.name)?;
    servers::verify_fixture(server.addr, &format!("/{}", fx.name), fx.bytes)?;
    wrk::run(&load(&server, fx, connections, opts.warmup_s, wrk_cpu))
        .map_err(|e| format!("warm-up: {e}"))?;
    server.refresh_tree();
    let counters_before = server.counters();
    let before = server.usage()?;
    // A machine figure the run cannot read is left out, not the run.
    let machine_before = measure::machine_busy_ticks().ok();
    let started = Instant::now();
    let result = wrk::run(&load(&server, fx, connections, opts.duration_s, wrk_cpu))?;
    let wall = started.elapsed().as_secs_f64();
    let machine = measure::machine_busy_ticks()
        .ok()
        .zip(machine_before)
        .map(|(after, before)| after.saturating_sub(before));
    let used = server.usage()?.since(&before);
    let counters_after = server.counters();
    let peak_rss_kib = server.peak_rss_kib().ok();
    let server_non_2xx = match (counters_before, counters_after) {
        (Some(b), Some(a)) => Some(a.since(&b).non_2xx),
        _ => None,
    };
    server.stop();
    let tick_us = 1e6 / measure::clock_ticks() as f64;
    let cpu_us = (used.user_ticks + used.sys_ticks) as f64 * tick_us;
    let per_req = |v: f64| (result.requests > 0).then(|| v / result.requests as f64);
    Ok(Measured {
        cpu_us_per_req: per_req(cpu_us),
        user_us_per_req: per_req(used.user_ticks as f64 * tick_us),
        sys_us_per_req: per_req(used.sys_ticks as f64 * tick_us),
        machine_us_per_req: machine.and_then(|m| per_req(m as f64 * tick_us)),
        vcs_per_req: per_req(used.voluntary as f64),
        ivcs_per_req: per_req(used.involuntary as f64),
        server_core: (wall > 0.0).then(|| cpu_us / 1e6 / wall),
        wrk: result,
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
    perf: bool,
) -> Result<Traced, String> {
    let mut server = Running::start(env, contender, &fx.name)?;
    servers::verify_fixture(server.addr, &format!("/{}", fx.name), fx.bytes)?;
    wrk::run(&load(
        &server,
        fx,
        STRACE_CONNECTIONS,
        opts.warmup_s,
        wrk_cpu,
    ))
    .map_err(|e| format!("warm-up: {e}"))?;
    server.refresh_tree();
    // The same load for both passes: first the untraced count (perf), then strace, on the same
    // warm server.
    let counted_run = || {
        wrk::run(&load(
            &server,
            fx,
            STRACE_CONNECTIONS,
            opts.strace_s,
            wrk_cpu,
        ))
    };
    let perf = perf.then(|| {
        let out = env.work.join(format!("perf-{contender}-{}.txt", fx.name));
        let pass = measure::PerfPass::attach(&server.serving_pids(), &out, wrk_cpu)?;
        let result = counted_run();
        let calls = pass.finish()?;
        Ok((calls, result?.requests))
    });
    let summary = env.work.join(format!("strace-{contender}-{}.txt", fx.name));
    let pass = measure::StracePass::attach(&server.serving_pids(), &summary, wrk_cpu)?;
    let result = counted_run();
    let counted = pass.finish();
    drop(server);
    let result = result?;
    let (by_name, calls) = counted?;
    Ok(Traced {
        calls,
        requests: result.requests,
        by_name,
        perf,
    })
}
