//! `uring-httpd probe [URL]`: the health check the container image and the Kubernetes manifests
//! run, so the image needs no curl. It sends one plain HTTP/1.1 GET over a blocking std
//! `TcpStream` and exits 0 on a 2xx or 3xx status, 1 with a one-line reason on anything else
//! (refused, no answer within the timeout, an error status, not HTTP), and 2 when the URL (or the
//! configuration it was derived from) is unusable.
//!
//! Without a URL it probes the server configured here: the same config file and `URING_HTTPD_*`
//! variables the server reads, with an unspecified host (0.0.0.0, ::) replaced by loopback, so a
//! port changed through the environment is followed. It owns nothing the server uses: no engine,
//! no runtime, and it resolves no names (an IP address or `localhost` only), so the whole
//! exchange is bounded by the one timeout.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Overrides, env};

/// Arguments of `uring-httpd probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// http:// URL with an IP address or localhost, e.g. http://127.0.0.1:8080/ [default: this
    /// server's own address, from the config file and URING_HTTPD_* variables, on loopback]
    pub url: Option<String>,
    /// Time allowed for the whole exchange (connect, request, status line), e.g. 500ms or 3s.
    #[arg(long, default_value = "3s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write e.g. 500ms or 3s)")),
    }
}

/// Where a probe connects and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Tried in order (`localhost` is 127.0.0.1, then ::1).
    pub addrs: Vec<SocketAddr>,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request target: path and query, never empty.
    pub path: String,
}

/// Parses an `http://` URL whose host is an IP address or `localhost`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err("https is not supported: probe the server's plain-HTTP address".into());
        }
        _ => return Err("only http:// URLs can be probed".into()),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let tail = tail.split('#').next().unwrap_or("");
    let path = match tail.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{tail}"),
        Some(_) => tail.to_string(),
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the path must be printable ASCII without spaces (percent-encode it)".into());
    }
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains('@') {
        return Err("user information (user@host) is not supported".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address must be closed with ']'")?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("{inner:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected ':port' after ']'")?),
        };
        (vec![IpAddr::V6(ip)], port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ips = if host.eq_ignore_ascii_case("localhost") {
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]
        } else {
            let ip: Ipv4Addr = host.parse().map_err(|_| {
                format!(
                    "{host:?} is not an IP address or localhost (the probe resolves no names, \
                     so that its timeout bounds the whole check)"
                )
            })?;
            vec![IpAddr::V4(ip)]
        };
        (ips, port)
    };
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
        },
    };
    Ok(Target {
        addrs: host
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        authority: authority.to_string(),
        path,
    })
}

/// The URL of the server configured here, for a probe without one.
pub fn own_url() -> Result<String, String> {
    let loaded = env::load_layered(None, &Overrides::default())
        .map_err(|e| format!("configuration error: {e}"))?;
    let s = &loaded.config.server;
    if s.port == 0 {
        return Err(
            "server.port is 0 (a free port is picked at start), so give the probe a URL".into(),
        );
    }
    let host = match loaded.host {
        IpAddr::V4(a) if a.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(a) if a.is_unspecified() => format!("[{}]", Ipv6Addr::LOCALHOST),
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    Ok(format!("http://{host}:{}/", s.port))
}

/// Upper bound on the response bytes read after the status line (drained so the server is not
/// reset mid-write; a bigger page is still a healthy answer).
const DRAIN_LIMIT: usize = 1 << 20;
/// Upper bound on a status line.
const LINE_LIMIT: usize = 8192;

/// Sends the GET and returns the status line's code and reason, e.g. `"200 OK"`, when it is a
/// 2xx or 3xx; otherwise the reason the probe fails.
pub fn check(t: &Target, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let late = || format!("no response within {}", humantime::format_duration(timeout));

    let mut last_err = String::from("no address to connect to");
    let mut stream = None;
    for addr in &t.addrs {
        if left().is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left()) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if is_timeout(&e) => last_err = late(),
            Err(e) => last_err = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut s = stream.ok_or(last_err)?;

    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: uring-httpd-probe\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    let io_err = |e: io::Error, doing: &str| {
        if is_timeout(&e) {
            late()
        } else {
            format!("{doing}: {e}")
        }
    };
    s.set_write_timeout(Some(left().max(Duration::from_millis(1))))
        .and_then(|()| s.write_all(request.as_bytes()))
        .map_err(|e| io_err(e, "cannot send the request"))?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let line_end = loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            break i;
        }
        if buf.len() > LINE_LIMIT {
            return Err(not_http(&buf));
        }
        let wait = left();
        if wait.is_zero() {
            return Err(late());
        }
        s.set_read_timeout(Some(wait))
            .map_err(|e| io_err(e, "cannot read the response"))?;
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => {
                return Err("the connection closed without a response".into());
            }
            Ok(0) => return Err(not_http(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e, "cannot read the response")),
        }
    };
    let status = parse_status_line(&buf[..line_end]).ok_or_else(|| not_http(&buf))?;

    // Read the rest of a (short) response until the server closes, within the same deadline.
    let mut drained = buf.len();
    while drained < DRAIN_LIMIT && !left().is_zero() {
        if s.set_read_timeout(Some(left())).is_err() {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }

    let (code, text) = status;
    if (200..400).contains(&code) {
        Ok(text)
    } else {
        Err(text)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// `HTTP/1.x NNN reason` → the code and `"NNN reason"`.
fn parse_status_line(line: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("HTTP/1.")?;
    let (minor, rest) = rest.split_once(' ')?;
    if minor.len() != 1 || !minor.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let code_text = rest.get(..3)?;
    if !code_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code_text.parse().ok()?;
    let reason = rest[3..].trim();
    if !(100..600).contains(&code) || !(rest.len() == 3 || rest[3..].starts_with(' ')) {
        return None;
    }
    Some((code, format!("{code} {reason}").trim_end().to_string()))
}

fn not_http(buf: &[u8]) -> String {
    let head: String = String::from_utf8_lossy(&buf[..buf.len().min(40)])
        .escape_debug()
        .collect();
    format!("not an HTTP response: \"{head}\"")
}

/// Runs the subcommand: prints one line, returns the exit code.
pub fn run(args: ProbeArgs) -> ExitCode {
    let url = match args.url {
        Some(u) => u,
        None => match own_url() {
            Ok(u) => u,
            Err(e) => {
                eprintln!("uring-httpd probe: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let target = match parse_url(&url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("uring-httpd probe: bad URL {url:?}: {e}");
            return ExitCode::from(2);
        }
    };
    match check(&target, args.timeout) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("uring-httpd probe: {url}: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(t: &Target) -> Vec<String> {
        t.addrs.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn urls_that_parse() {
        let t = parse_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(addrs(&t), ["127.0.0.1:8080"]);
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/")
        );

        let t = parse_url("HTTP://[::1]:9/a/b.html?x=1#frag").unwrap();
        assert_eq!(addrs(&t), ["[::1]:9"]);
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("[::1]:9", "/a/b.html?x=1")
        );

        let t = parse_url("http://localhost").unwrap();
        assert_eq!(addrs(&t), ["127.0.0.1:80", "[::1]:80"]);
        assert_eq!(t.path, "/");

        let t = parse_url("http://10.1.2.3?q").unwrap();
        assert_eq!(addrs(&t), ["10.1.2.3:80"]);
        assert_eq!(t.path, "/?q");

        assert_eq!(parse_url("http://[::]").unwrap().path, "/");
    }

    #[test]
    fn urls_that_do_not_parse_say_why() {
        let cases = [
            ("127.0.0.1:8080", "only http:// URLs"),
            ("ftp://127.0.0.1/", "only http:// URLs"),
            ("https://127.0.0.1/", "https is not supported"),
            ("http://", "no host"),
            ("http:///x", "no host"),
            (
                "http://example.com/",
                "\"example.com\" is not an IP address or localhost",
            ),
            ("http://127.0.0.1:0/", "\"0\" is not a port"),
            ("http://127.0.0.1:99999/", "\"99999\" is not a port"),
            ("http://127.0.0.1:/", "\"\" is not a port"),
            ("http://[::1/", "closed with ']'"),
            ("http://[::1]x/", "expected ':port'"),
            ("http://[nope]/", "\"nope\" is not an IPv6 address"),
            ("http://u@127.0.0.1/", "user information"),
            ("http://127.0.0.1/a b", "printable ASCII"),
            ("http://127.0.0.1/caf\u{e9}", "printable ASCII"),
        ];
        for (url, want) in cases {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn status_lines() {
        let ok = |l: &str| parse_status_line(l.as_bytes());
        assert_eq!(ok("HTTP/1.1 200 OK"), Some((200, "200 OK".into())));
        assert_eq!(
            ok("HTTP/1.0 404 Not Found"),
            Some((404, "404 Not Found".into()))
        );
        assert_eq!(ok("HTTP/1.1 204"), Some((204, "204".into())));
        for bad in [
            "SSH-2.0-OpenSSH",
            "HTTP/2 200 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 abc",
            "HTTP/1.1 099 x",
            "",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts_parse_and_zero_is_refused() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_timeout("0s").unwrap_err().contains("more than 0"));
        assert!(parse_timeout("soon").is_err());
    }
}
