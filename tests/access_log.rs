//! The access-log formats (`common`, `combined`, `json`) line by line over real sockets, their
//! escaping, a combined log read by the standard combined regex and by GoAccess, drops counted
//! and reported when the writer is stuck, and SIGUSR1 reopening the file. Both engines.

mod common;

use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Engine, Opts, Response, Server, read_response};
use regex::Regex;

engine_tests!(
    common_lines_have_the_ncsa_layout,
    combined_lines_escape_and_parse_with_the_combined_regex,
    json_lines_have_exactly_the_documented_keys,
    goaccess_reads_the_combined_log,
    a_stuck_writer_drops_lines_counts_and_reports_them,
    sigusr1_reopens_the_access_log,
);

/// Sends each raw request in turn on one keep-alive connection and reads its response, so the
/// log lines come in the order of the requests (one connection is served by one worker, which
/// logs a response before it reads the next request).
fn in_order(s: &Server, requests: &[&str]) -> Vec<Response> {
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    requests
        .iter()
        .map(|raw| {
            w.write_all(raw.as_bytes()).unwrap();
            read_response(&mut r, raw.starts_with("HEAD ")).expect("a response")
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds since the epoch of an NCSA time, `10/Oct/2000:13:55:36 +0000`, counted day by day
/// (a different method from the server's, which divides the days into 400-year eras).
fn ncsa_secs(t: &str) -> u64 {
    let re =
        Regex::new(r"^(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) \+0000$").unwrap();
    let c = re
        .captures(t)
        .unwrap_or_else(|| panic!("not an NCSA time: {t:?}"));
    let n = |i: usize| c[i].parse::<u64>().unwrap();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &c[2]).expect("a month") as u64;
    let year = n(3);
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += lengths[..month as usize].iter().sum::<u64>() + n(1) - 1;
    days * 86_400 + n(4) * 3600 + n(5) * 60 + n(6)
}

/// Splits `127.0.0.1 - - [TIME] REST` lines, checking that each time lies in `[from, to]`.
fn split_times(lines: &[String], from: u64, to: u64) -> Vec<String> {
    let re = Regex::new(r"^127\.0\.0\.1 - - \[([^\]]+)\] (.*)$").unwrap();
    lines
        .iter()
        .map(|l| {
            let c = re.captures(l).unwrap_or_else(|| panic!("line shape: {l}"));
            let t = ncsa_secs(&c[1]);
            assert!(from <= t && t <= to, "{t} not in {from}..={to}: {l}");
            c[2].to_string()
        })
        .collect()
}

fn common_lines_have_the_ncsa_layout(e: Engine) {
    // One worker: the lines of the two connections below come in the order of the requests.
    let mut o = Opts::new(e).extra("[log]\nformat = \"common\"");
    o.workers = 1;
    let s = o.start();
    let from = now_secs();
    let got = in_order(
        &s,
        &[
            "GET /index.html?x=1&y=%22 HTTP/1.1\r\nHost: t\r\n\r\n",
            "HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /missing.html HTTP/1.1\r\nHost: t\r\n\r\n",
        ],
    );
    let etag = got[0].header("ETag").unwrap().to_string();
    let more = in_order(
        &s,
        &[
            &format!("GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
            "GET /style.css HTTP/1.0\r\n\r\n",
        ],
    );
    let to = now_secs();
    assert_eq!(
        [got[0].status, got[1].status, got[2].status, more[0].status],
        [200, 200, 404, 304]
    );
    let lines = s.log_lines(5);
    let rest = split_times(&lines, from, to);
    assert_eq!(
        rest,
        [
            format!(
                "\"GET /index.html?x=1&y=%22 HTTP/1.1\" 200 {}",
                got[0].body.len()
            ),
            "\"HEAD /index.html HTTP/1.1\" 200 -".to_string(),
            format!("\"GET /missing.html HTTP/1.1\" 404 {}", got[2].body.len()),
            "\"GET /index.html HTTP/1.1\" 304 -".to_string(),
            "\"GET /style.css HTTP/1.0\" 200 22".to_string(),
        ]
    );
}

/// The usual regex for the NCSA combined format, as log tools write it.
const COMBINED: &str = r#"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>[^ "]+) (?P<protocol>HTTP/\d\.\d)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$"#;

fn combined_lines_escape_and_parse_with_the_combined_regex(e: Engine) {
    let s = Opts::new(e).extra("[log]\nformat = \"combined\"").start();
    let from = now_secs();
    let got = in_order(
        &s,
        &[
            "GET /style.css?q=a\"b HTTP/1.1\r\nHost: t\r\nReferer: http://ex.test/a\"b\\c\r\n\
             User-Agent: agent \"quoted\" \\back\\ caf\u{e9}\r\n\r\n",
            "GET /data.json HTTP/1.1\r\nHost: t\r\n\r\n",
            "HEAD /sub/ HTTP/1.1\r\nHost: t\r\nUser-Agent: \r\n\r\n",
            // Refused before it parsed (no Host): logged with its request line, then closed.
            "GET /x HTTP/1.1\r\nUser-Agent: not kept\r\n\r\n",
        ],
    );
    let to = now_secs();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 400]
    );
    let lines = s.log_lines(4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let re = Regex::new(COMBINED).unwrap();
    let parsed: Vec<[String; 8]> = lines
        .iter()
        .map(|l| {
            let c = re
                .captures(l)
                .unwrap_or_else(|| panic!("not combined: {l}"));
            assert_eq!(
                (&c["host"], &c["ident"], &c["user"]),
                ("127.0.0.1", "-", "-")
            );
            let t = ncsa_secs(&c["time"]);
            assert!(from <= t && t <= to, "{l}");
            [
                "method", "target", "protocol", "status", "bytes", "referer", "agent", "time",
            ]
            .map(|k| c[k].to_string())
        })
        .collect();
    let want = [
        [
            "GET",
            "/style.css?q=a\\x22b",
            "HTTP/1.1",
            "200",
            "22",
            "http://ex.test/a\\x22b\\x5Cc",
            "agent \\x22quoted\\x22 \\x5Cback\\x5C caf\\xC3\\xA9",
        ],
        ["GET", "/data.json", "HTTP/1.1", "200", "9", "-", "-"],
        ["HEAD", "/sub/", "HTTP/1.1", "200", "-", "-", ""],
        [
            "GET",
            "/x",
            "HTTP/1.1",
            "400",
            &got[3].body.len().to_string(),
            "-",
            "-",
        ],
    ];
    for (p, w) in parsed.iter().zip(want) {
        assert_eq!(&p[..7], w, "{lines:?}");
    }
    // And the exact bytes of the first line after its time.
    assert!(
        lines[0].ends_with(
            "] \"GET /style.css?q=a\\x22b HTTP/1.1\" 200 22 \"http://ex.test/a\\x22b\\x5Cc\" \
             \"agent \\x22quoted\\x22 \\x5Cback\\x5C caf\\xC3\\xA9\""
        ),
        "{}",
        lines[0]
    );
}

fn json_lines_have_exactly_the_documented_keys(e: Engine) {
    let s = Opts::new(e).extra("[log]\nformat = \"json\"").start();
    let from = SystemTime::now();
    let got = in_order(
        &s,
        &[
            "GET /index.html?q=1 HTTP/1.1\r\nHost: t\r\nReferer: r\"\\\r\n\
             User-Agent: caf\u{e9} \"x\"\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
        ],
    );
    let to = SystemTime::now();
    let lines = s.log_lines(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut keys = vec![
        "time",
        "ip",
        "method",
        "path",
        "query",
        "protocol",
        "status",
        "bytes",
        "duration_us",
        "referer",
        "user_agent",
    ];
    for (line, r) in lines.iter().zip(&got) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let obj = v.as_object().unwrap();
        let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
        have.sort_unstable();
        keys.sort_unstable();
        assert_eq!(have, keys, "{line}");
        let t = humantime::parse_rfc3339(v["time"].as_str().unwrap()).unwrap();
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert!(ms(from) <= ms(t) && t <= to, "{line}");
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(v["duration_us"].is_u64(), "{line}");
        assert_eq!(v["bytes"], r.wire_len(), "{line}");
        assert_eq!(v["ip"], "127.0.0.1");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
    }
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&lines[0]).unwrap(),
        serde_json::from_str(&lines[1]).unwrap(),
    );
    assert_eq!(
        [
            &a["method"],
            &a["path"],
            &a["query"],
            &a["referer"],
            &a["user_agent"]
        ],
        ["GET", "/index.html", "q=1", "r\"\\", "caf\u{e9} \"x\""]
    );
    assert_eq!([&b["method"], &b["path"]], ["HEAD", "/"]);
    for key in ["query", "referer", "user_agent"] {
        assert!(b[key].is_null(), "{key}: {b}");
    }
}

fn goaccess_reads_the_combined_log(e: Engine) {
    if Command::new("goaccess")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return common::skip(
            "goaccess_reads_the_combined_log: goaccess is not installed (apt-get install goaccess)",
        );
    }
    let mut s = Opts::new(e).extra("[log]\nformat = \"combined\"").start();
    let requests = [
        "GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \"q\"\r\n\r\n",
        "GET /style.css?v=1 HTTP/1.1\r\nHost: t\r\nReferer: http://127.0.0.1/\r\n\r\n",
        "HEAD /app.js HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /missing.html HTTP/1.1\r\nHost: t\r\nUser-Agent: back\\slash\r\n\r\n",
        "GET /photo.jpg HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /caf%C3%A9.html HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\u{e9}\r\n\r\n",
        "GET /sub HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99\r\n\r\n",
        "GET /data.json HTTP/1.0\r\n\r\n",
    ];
    let got = in_order(&s, &requests);
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 404, 403, 204, 200, 301, 206, 200]
    );
    assert!(s.stop().success());
    let out = Command::new("goaccess")
        .arg(&s.log_path)
        .args(["-o", "json", "--log-format=COMBINED", "--no-global-config"])
        .stdin(Stdio::null())
        .output()
        .expect("run goaccess");
    assert!(
        out.status.success(),
        "goaccess: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("goaccess JSON");
    let general = &report["general"];
    assert_eq!(general["total_requests"], requests.len(), "{general}");
    assert_eq!(general["failed_requests"], 0, "{general}");
    assert_eq!(general["valid_requests"], requests.len(), "{general}");
}

/// A FIFO at `path` whose read end is open (so the server's open does not wait) and never read
/// until the test says so; its pipe buffer made as small as the kernel allows.
fn stuck_fifo(path: &Path) -> std::fs::File {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    // SAFETY: fcntl on a descriptor this function owns; F_SETPIPE_SZ takes an int.
    let set = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(set > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
    reader
}

/// Reads `reader` to its end (the server closing the write end) on a thread; returns its lines.
fn drain(reader: std::fs::File) -> std::thread::JoinHandle<Vec<String>> {
    // SAFETY: fcntl on a descriptor we own: clear O_NONBLOCK so reads wait for the writer.
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, 0) };
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut text).unwrap();
        text.lines().map(String::from).collect()
    })
}

fn a_stuck_writer_drops_lines_counts_and_reports_them(e: Engine) {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("access.fifo");
    let reader = stuck_fifo(&fifo);
    let mut s = Opts::new(e)
        .extra(&format!(
            "[log]\naccess = \"{}\"\nbuffer_lines = 8",
            fifo.display()
        ))
        .start();
    // Far more lines than the pipe, the writer's buffer and the queue hold together: a 4 KiB
    // pipe takes about 60 lines; the writer's 64 KiB buffer is flushed after each batch, and a
    // batch is at most what the queue held.
    const N: usize = 600;
    let get = "GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n";
    let got = in_order(&s, &[get; N]);
    // Every request was answered, while the writer was stuck.
    assert!(got.iter().all(|r| r.status == 200 && r.body.len() == 22));
    s.wait_stderr("access log: dropped ", 1);
    let report =
        Regex::new(r"access log: dropped (\d+) lines in the last \d+s: the writer is behind")
            .unwrap();
    let stderr = s.stderr();
    let first: usize = report.captures(&stderr).expect("interval report")[1]
        .parse()
        .unwrap();
    assert!(first >= 1, "{stderr}");
    // Unblock the writer, then stop: what was queued is written, and the total is summarised.
    let lines = drain(reader);
    assert!(s.stop().success(), "{}", s.stderr());
    let lines = lines.join().unwrap();
    let stderr = s.stderr();
    let summary = Regex::new(
        r"access log: dropped (\d+) lines since start because the writer was behind \((\d+) written\)",
    )
    .unwrap();
    let c = summary
        .captures(&stderr)
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let (dropped, written): (usize, usize) = (c[1].parse().unwrap(), c[2].parse().unwrap());
    assert!(dropped >= first, "{stderr}");
    assert!(written > 0, "the queue's lines were written: {stderr}");
    assert_eq!(written, lines.len(), "{stderr}");
    assert_eq!(dropped + written, N, "no line unaccounted for: {stderr}");
    assert!(lines.iter().all(|l| l.contains(" /style.css 200 GET ")));
    assert!(
        stderr.contains(&format!(" bytes sent, {written} log lines")),
        "{stderr}"
    );
}

fn sigusr1_reopens_the_access_log(e: Engine) {
    let mut s = Server::start(e);
    s.get("/style.css");
    s.get("/app.js");
    assert_eq!(s.log_lines(2).len(), 2);
    let rotated = s.log_path.with_file_name("access.log.1");
    std::fs::rename(&s.log_path, &rotated).unwrap();
    s.signal(libc::SIGUSR1);
    let reopened = format!("access log reopened: {}", s.log_path.display());
    s.wait_stderr(&reopened, 1);
    for path in ["/data.json", "/index.html", "/sub/page.html"] {
        assert_eq!(s.get(path).status, 200);
    }
    // A second rotation signal with nothing renamed just reopens the same file.
    s.signal(libc::SIGUSR1);
    s.wait_stderr(&reopened, 2);
    assert_eq!(s.get("/").status, 200);
    assert!(s.stop().success(), "{}", s.stderr());
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&s.log_path).unwrap();
    // Sorted: requests on separate connections may be served by different workers.
    let paths = |text: &str| -> Vec<String> {
        let mut p: Vec<String> = text
            .lines()
            .map(|l| l.split(' ').nth(2).unwrap().to_string())
            .collect();
        p.sort();
        p
    };
    assert_eq!(paths(&old), ["/app.js", "/style.css"]);
    assert_eq!(
        paths(&new),
        ["/", "/data.json", "/index.html", "/sub/page.html"]
    );
}
