//! The lab's command line: the options of a measuring run and the two floor subcommands
//! (`floor-uring PORT FILE`, `floor-epoll PORT FILE`, which the lab runs as its own child
//! processes). Pure parsing, tested under `cargo test` (`tests/lab.rs` includes this file).

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: cargo bench --bench lab [-- OPTIONS]

  --quick              1 round, 2 s runs, connections 1 and 256 only
  --rounds N           rounds of every (server, file, connections) run (default 3)
  --duration S         seconds per measured wrk run (default 5; --quick: 2)
  --warmup S           seconds of warm-up load before each measured run (default 1)
  --strace-secs S      seconds of each syscall-counting run per server and file: one untraced
                       under `perf stat`, one under `strace -f -c` (default 3; --quick: 2)
  --connections LIST   comma-separated connection counts (default 1,50,256,1024)
  --servers LIST       comma-separated, from uring, epoll, nginx, lighttpd, h2o, floor-uring,
                       floor-epoll; `floors` means both floors (default: all; a server whose
                       binary is not installed is skipped with a note)
  --files LIST         comma-separated, from 2k.html, 100k.png, 10m.txt (default: all three)
  --no-strace          skip the syscall passes (no syscalls/req, no syscall mix)
  --out DIR            where the report goes (default benches/results)

The floors run only on files of at most 64 KiB (they hold the response in memory).
The lab binary also serves as the floor responders (the lab starts them itself):
  cargo bench --bench lab -- floor-uring PORT FILE   raw io_uring fixed-response server
                                                     on 127.0.0.1:PORT (0: any free port)
  cargo bench --bench lab -- floor-epoll PORT FILE   raw edge-triggered epoll one
";

/// Every server the lab knows, in the order of its tables.
pub const SERVERS: &[&str] = &[
    "uring",
    "epoll",
    "nginx",
    "lighttpd",
    "h2o",
    "floor-uring",
    "floor-epoll",
];

/// The fixture files.
pub const FILES: &[&str] = &["2k.html", "100k.png", "10m.txt"];

#[derive(Debug, Clone)]
pub struct Options {
    pub bench: bool,
    pub quick: bool,
    pub rounds: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub strace_s: u64,
    pub strace: bool,
    pub concurrencies: Vec<usize>,
    pub servers: Vec<String>,
    pub files: Vec<String>,
    pub out: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// `-h` / `--help`.
    Help,
    Lab(Options),
    /// `floor-uring PORT FILE` (`uring` true) or `floor-epoll PORT FILE`.
    Floor {
        uring: bool,
        port: u16,
        file: PathBuf,
    },
}

fn list(flag: &str, v: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in v.split(',').map(|s| s.trim().to_lowercase()) {
        let names: Vec<String> = if s == "floors" && known == SERVERS {
            vec!["floor-uring".into(), "floor-epoll".into()]
        } else if known.contains(&s.as_str()) {
            vec![s]
        } else {
            return Err(format!(
                "{flag}: unknown {s:?} (one of {})",
                known.join(", ")
            ));
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    // Keep the canonical order whatever the order given.
    out.sort_by_key(|n| known.iter().position(|k| k == n));
    Ok(out)
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    if let Some(sub @ ("floor-uring" | "floor-epoll")) = args.first().map(String::as_str) {
        // `cargo bench --bench lab -- floor-uring PORT FILE` appends `--bench`.
        let rest: Vec<&String> = args[1..].iter().filter(|a| *a != "--bench").collect();
        let (Some(port), Some(file), None) = (rest.first(), rest.get(1), rest.get(2)) else {
            return Err(format!("usage: {sub} PORT FILE"));
        };
        let port = port
            .parse()
            .map_err(|_| format!("{sub}: bad port {port:?}"))?;
        return Ok(Command::Floor {
            uring: sub == "floor-uring",
            port,
            file: PathBuf::from(file),
        });
    }
    let mut bench = false;
    let mut quick = false;
    let mut strace = true;
    let (mut rounds, mut duration, mut warmup, mut strace_s, mut conns, mut servers, mut out) =
        (None, None, None, None, None, None, None);
    let mut files = None;
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
            "--no-strace" => strace = false,
            "--rounds" => rounds = Some(number(flag, value(flag)?)? as usize),
            "--duration" => duration = Some(number(flag, value(flag)?)?),
            "--warmup" => warmup = Some(number(flag, value(flag)?)?),
            "--strace-secs" => strace_s = Some(number(flag, value(flag)?)?),
            "--connections" => {
                let v = value(flag)?;
                let list = v
                    .split(',')
                    .map(|s| number(flag, s.trim().to_string()).map(|n| n as usize))
                    .collect::<Result<Vec<_>, _>>()?;
                conns = Some(list);
            }
            "--servers" => servers = Some(list(flag, &value(flag)?, SERVERS)?),
            "--files" => files = Some(list(flag, &value(flag)?, FILES)?),
            "--out" => out = Some(PathBuf::from(value(flag)?)),
            "-h" | "--help" => return Ok(Command::Help),
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
    let all = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Ok(Command::Lab(Options {
        bench,
        quick,
        rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
        duration_s: duration.unwrap_or(if quick { 2 } else { 5 }),
        warmup_s: warmup.unwrap_or(1),
        strace_s: strace_s.unwrap_or(if quick { 2 } else { 3 }),
        strace,
        concurrencies,
        servers: servers.unwrap_or_else(|| all(SERVERS)),
        files: files.unwrap_or_else(|| all(FILES)),
        out,
    }))
}

/// Checks the parser; the lab runs this before every measurement too.
pub fn self_test() -> Result<(), String> {
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let Command::Lab(o) = parse(&args(&[
        "--bench",
        "--quick",
        "--rounds=2",
        "--servers",
        "floors,epoll",
        "--files=100k.png,2k.html",
    ]))?
    else {
        return Err("args self-test: not a lab run".into());
    };
    if !(o.bench && o.quick && o.rounds == 2 && o.duration_s == 2 && o.strace)
        || o.concurrencies != [1, 256]
        || o.servers != ["epoll", "floor-uring", "floor-epoll"]
        || o.files != ["2k.html", "100k.png"]
    {
        return Err(format!("args self-test failed: {o:?}"));
    }
    let Command::Lab(o) = parse(&args(&[]))? else {
        return Err("args self-test: defaults".into());
    };
    if o.servers.len() != SERVERS.len() || o.files.len() != 3 || o.rounds != 3 {
        return Err(format!("args self-test failed (defaults): {o:?}"));
    }
    match parse(&args(&["floor-epoll", "0", "/x/2k.html", "--bench"]))? {
        Command::Floor {
            uring: false,
            port: 0,
            ..
        } => {}
        other => return Err(format!("args self-test failed (floor): {other:?}")),
    }
    for bad in [
        &["--rounds", "0"][..],
        &["--what"],
        &["--servers", "apache"],
        &["--files", "1g.bin"],
        &["floor-uring", "x", "f"],
        &["floor-uring", "1"],
    ] {
        if parse(&args(bad)).is_ok() {
            return Err(format!("args self-test failed: {bad:?} accepted"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line() {
        super::self_test().unwrap();
    }
}
