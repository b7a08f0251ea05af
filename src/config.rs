//! Configuration: the TOML schema with its defaults, validation, and the command-line overrides.
//!
//! Everything here runs before any socket is opened, and again on the main thread at each reload
//! (SIGHUP, [`crate::reload`]). Every error names the file, the line
//! (when the key is in the file) and the dotted key, so a user can go straight to the mistake.
//! Nothing in this module is touched on the request path: the validated [`Config`] is shared
//! read-only by the workers, inside a [`crate::settings::Settings`] generation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod env;

/// Which I/O engine serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Probe io_uring at start; use it when available, else fall back to epoll.
    Auto,
    /// io_uring through tokio-uring; exit with an explanation when io_uring is unavailable.
    Uring,
    /// epoll through tokio's reactor.
    Epoll,
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Uring => "uring",
            EngineChoice::Epoll => "epoll",
        })
    }
}

/// The whole configuration file; every section and key is optional and has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Custom error pages by status (`[errors]`, e.g. `404 = "404.html"`), paths under the root.
    pub errors: BTreeMap<String, String>,
    /// Response header rules (`[[headers]]`), applied in order.
    pub headers: Vec<HeaderRule>,
    /// The `[server]` section.
    pub server: Server,
    /// The `[files]` section.
    pub files: Files,
    /// The `[limits]` section.
    pub limits: Limits,
    /// The `[log]` section.
    pub log: Log,
    /// The `[admin]` section.
    pub admin: Admin,
}

/// The `[admin]` section: the monitoring listener (metrics, health, readiness).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// `address:port` of the admin listener (e.g. `127.0.0.1:9090`; a port alone listens on
    /// 127.0.0.1); empty (the default) = no admin listener.
    pub listen: String,
}

/// The `[server]` section: where to listen and how many workers serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address or host name to listen on; default `0.0.0.0`. `::` listens on IPv6 and IPv4 (dual
    /// stack); a name is resolved once at start (see [`resolve_host`]).
    pub host: String,
    /// TCP port to listen on; default 8080.
    pub port: u16,
    /// Worker threads; 0 (the default) means one per online CPU, at most 1024.
    pub workers: usize,
    /// Which I/O engine serves connections; default `auto`.
    pub engine: EngineChoice,
    /// Exact request path answering with the counters as text; empty (the default) disables it.
    pub status_path: String,
}

/// The `[files]` section: what is served and how files are cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Files {
    /// Directory served, relative to the config file's directory; default `root`.
    pub root: PathBuf,
    /// File names tried, in order, for a directory; default `["index.html"]` (a single string is
    /// accepted too).
    #[serde(deserialize_with = "one_or_many")]
    pub index: Vec<String>,
    /// A file under the root served with 200 for unknown paths without an extension (a
    /// single-page app's `index.html`); empty (the default) = off.
    pub fallback: String,
    /// File extensions that may be served, matched case-insensitively; anything else is 403.
    /// `"*"` allows every extension.
    pub allowed_extensions: Vec<String>,
    /// Serve files whose name has no extension (as `application/octet-stream` unless typed);
    /// default false.
    pub allow_no_extension: bool,
    /// Dot-named path segments that are served despite the dotfile rule, e.g. `.well-known`;
    /// default none.
    pub allow_dot_paths: Vec<String>,
    /// Content-Type overrides by extension (`[files.types]`, e.g. `wasm = "application/wasm"`).
    pub types: BTreeMap<String, String>,
    /// Serve `name.br`, `name.zst` or `name.gz` beside `name` to clients that accept the coding;
    /// default true.
    pub precompressed: bool,
    /// An HTML listing for a directory without an index file; default false (404).
    pub listing: bool,
    /// Files up to this size, in bytes, are kept in memory by each worker; 0 disables the cache.
    /// Default 1 MiB: a 100 KiB file sent from memory costs the uring engine 0.7x the CPU of
    /// splicing it (`benches/README.md`). A body being sent counts against
    /// `cache_bytes_per_worker` until the response ends, even after its entry is evicted, so
    /// slow readers cannot make cached bodies outgrow the budget.
    pub cache_max_file_bytes: u64,
    /// Memory, in bytes, each worker may spend on cached files; default 32 MiB.
    pub cache_bytes_per_worker: usize,
    /// Seconds a cached file is served before it is re-stat'ed (size or mtime changed: reloaded);
    /// 0 re-stats on every request. Default 1.
    pub cache_revalidate_secs: u64,
}

/// One `[[headers]]` rule: response headers set on paths matching a glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// A glob on the decoded request path: `*` matches within a segment, `**` across segments,
    /// `?` one character; `*.css` (no `/`) matches the file name anywhere.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Headers to set, replacing a default of the same name.
    pub set: BTreeMap<String, String>,
    /// Apply to every status, not only to 2xx and 304; default false.
    #[serde(default)]
    pub always: bool,
}

/// Accepts `key = "a"` as well as `key = ["a", "b"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The `[limits]` section: sizes, timeouts and connection counts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head, in bytes (256 to 1 MiB); beyond it the answer is 431. Default 8192.
    pub max_request_bytes: usize,
    /// Idle seconds allowed between requests on a connection; 0 disables keep-alive. Default 5.
    pub keep_alive_timeout_secs: u64,
    /// Seconds allowed for a whole request (head and body) to arrive, from its first byte;
    /// default 10.
    pub header_timeout_secs: u64,
    /// A response write that makes no progress for this many seconds closes the connection;
    /// default 60.
    pub send_timeout_secs: u64,
    /// Open connections allowed per worker; further accepts wait for a free slot. Default 16384.
    pub max_connections_per_worker: usize,
    /// Seconds a graceful shutdown waits for in-flight responses before closing them; default 10.
    pub shutdown_timeout_secs: u64,
    /// Responses served on one connection before it closes (the last one says `Connection:
    /// close`); 0 (the default) = unlimited.
    pub max_requests_per_connection: u64,
}

/// The `[log]` section: the access log and the diagnostics level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "-" for stdout, "off" for none, anything else is a file path (relative to the config file).
    /// Default `access.log`.
    pub access: String,
    /// The access log's line format; default [`LogFormat::Default`].
    pub format: LogFormat,
    /// Records the access-log queue holds for the writer thread (1 to 1048576); beyond it a
    /// worker drops the record and counts it rather than wait (see [`crate::log`]). Default
    /// 65536.
    pub buffer_lines: usize,
    /// Level of the server's own diagnostics on stderr: one of [`LEVELS`], any case; default
    /// `info`.
    pub level: String,
}

/// The access log's line format (`log.format`); the names are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// This server's own line: `<time> <ip> <path> <status> <method> <bytes> <duration>`.
    #[default]
    Default,
    /// The NCSA Common Log Format: `%h %l %u %t "%r" %>s %b`.
    Common,
    /// The NCSA Combined Log Format: Common plus `"%{Referer}i" "%{User-agent}i"`.
    Combined,
    /// One JSON object per line.
    Json,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            host: "0.0.0.0".into(),
            port: 8080,
            workers: 0,
            engine: EngineChoice::Auto,
            status_path: String::new(),
        }
    }
}

impl Default for Files {
    fn default() -> Self {
        Files {
            root: PathBuf::from("root"),
            index: vec!["index.html".into()],
            fallback: String::new(),
            allow_no_extension: false,
            allow_dot_paths: Vec::new(),
            types: BTreeMap::new(),
            precompressed: true,
            listing: false,
            allowed_extensions: [
                "html", "htm", "css", "js", "mjs", "json", "txt", "png", "gif", "ico", "svg",
                "webp", "woff2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            cache_max_file_bytes: 1 << 20,
            cache_bytes_per_worker: 32 << 20,
            cache_revalidate_secs: 1,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 8192,
            keep_alive_timeout_secs: 5,
            header_timeout_secs: 10,
            send_timeout_secs: 60,
            max_connections_per_worker: 16384,
            shutdown_timeout_secs: 10,
            max_requests_per_connection: 0,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            access: "access.log".into(),
            format: LogFormat::Default,
            buffer_lines: 65_536,
            level: "info".into(),
        }
    }
}

/// Where the access log goes, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// No access log.
    Off,
    /// Records go to standard output.
    Stdout,
    /// Records are appended to this file.
    File(PathBuf),
}

/// A configuration error, rendered as `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file's path, or the name of the source.
    pub file: String,
    /// The 1-based line of the offending key, when it is in the file.
    pub line: Option<usize>,
    /// The dotted key (`section.key`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line; each one replaces the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `server.host`; checked and resolved the same way.
    pub host: Option<String>,
    /// Replaces `server.port`.
    pub port: Option<u16>,
    /// Replaces `files.root`; a relative path is relative to the current directory.
    pub root: Option<PathBuf>,
    /// Replaces `server.workers`.
    pub workers: Option<usize>,
    /// Replaces `server.engine`.
    pub engine: Option<EngineChoice>,
}

/// A configuration ready to serve with: parsed, overridden, validated, paths made absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings, with the overrides applied.
    pub config: Config,
    /// `files.root`, canonical.
    pub root: PathBuf,
    /// Where the access log goes.
    pub access: AccessTarget,
    /// Worker count with 0 resolved to the number of online CPUs.
    pub workers: usize,
    /// `server.host` as an address: the address itself, or what its name resolved to.
    pub host: IpAddr,
    /// When `server.host` is a name that resolved to several addresses, which one is used and
    /// why, for the start-up log.
    pub host_note: Option<String>,
    /// Where the settings came from, for the start-up line.
    pub source: String,
    /// `admin.listen` as an address, when the admin listener is on.
    pub admin: Option<SocketAddr>,
}

impl Config {
    /// Parses TOML text; `file` is only used to name the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (None, None),
            };
            ConfigError {
                file: file.into(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        })
    }
}

/// Loads the config file (or the defaults when `path` is the implicit default and absent), applies
/// the overrides and validates the result.
pub fn load(path: &Path, explicit: bool, ov: &Overrides) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    let (mut config, text, base, source) = match std::fs::read_to_string(path) {
        Ok(text) => {
            let config = Config::parse(&text, &file)?;
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (config, text, base, file.clone())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => (
            Config::default(),
            String::new(),
            PathBuf::from("."),
            "built-in defaults".to_string(),
        ),
        Err(e) => {
            return Err(ConfigError {
                file,
                line: None,
                key: None,
                message: format!("cannot read the config file: {e}"),
            });
        }
    };

    let err = |section: &str, key: &str, message: String| ConfigError {
        file: file.clone(),
        line: find_key_line(&text, section, key),
        key: Some(format!("{section}.{key}")),
        message,
    };

    // Command-line values replace the file's; a relative --root is relative to the cwd.
    let mut root = base.join(&config.files.root);
    if let Some(h) = &ov.host {
        config.server.host = h.clone();
    }
    if let Some(p) = ov.port {
        config.server.port = p;
    }
    if let Some(r) = &ov.root {
        config.files.root = r.clone();
        root = r.clone();
    }
    if let Some(w) = ov.workers {
        config.server.workers = w;
    }
    if let Some(e) = ov.engine {
        config.server.engine = e;
    }

    let root = match std::fs::canonicalize(&root) {
        Ok(r) if r.is_dir() => r,
        Ok(r) => {
            return Err(err(
                "files",
                "root",
                format!("{} is not a directory", r.display()),
            ));
        }
        Err(e) => {
            return Err(err(
                "files",
                "root",
                format!("root directory {} cannot be used: {e}", root.display()),
            ));
        }
    };

    // Every number has a range, so that no value can pass here and fail (or panic) later: a
    // timeout of 2^63 seconds overflows an Instant, 2^62 connections overflow a semaphore.
    const DAY: u64 = 86_400;
    let numbers: [(&str, &str, u64, RangeInclusive<u64>); 12] = [
        ("server", "workers", config.server.workers as u64, 0..=1024),
        (
            "files",
            "cache_max_file_bytes",
            config.files.cache_max_file_bytes,
            0..=1 << 30,
        ),
        (
            "files",
            "cache_bytes_per_worker",
            config.files.cache_bytes_per_worker as u64,
            0..=64 << 30,
        ),
        (
            "files",
            "cache_revalidate_secs",
            config.files.cache_revalidate_secs,
            0..=DAY,
        ),
        (
            "limits",
            "max_request_bytes",
            config.limits.max_request_bytes as u64,
            256..=1 << 20,
        ),
        (
            "limits",
            "keep_alive_timeout_secs",
            config.limits.keep_alive_timeout_secs,
            0..=DAY,
        ),
        (
            "limits",
            "header_timeout_secs",
            config.limits.header_timeout_secs,
            1..=DAY,
        ),
        (
            "limits",
            "send_timeout_secs",
            config.limits.send_timeout_secs,
            1..=DAY,
        ),
        (
            "limits",
            "max_connections_per_worker",
            config.limits.max_connections_per_worker as u64,
            1..=1 << 20,
        ),
        (
            "limits",
            "shutdown_timeout_secs",
            config.limits.shutdown_timeout_secs,
            0..=DAY,
        ),
        (
            "log",
            "buffer_lines",
            config.log.buffer_lines as u64,
            1..=1 << 20,
        ),
        (
            "limits",
            "max_requests_per_connection",
            config.limits.max_requests_per_connection,
            0..=1 << 32,
        ),
    ];
    for (section, key, value, range) in numbers {
        if !range.contains(&value) {
            return Err(err(
                section,
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ));
        }
    }
    if !config.server.status_path.is_empty() && !config.server.status_path.starts_with('/') {
        return Err(err(
            "server",
            "status_path",
            "must be empty (off) or start with '/'".into(),
        ));
    }
    let f = &mut config.files;
    validate_files(f).map_err(|(key, m)| err("files", key, m))?;
    validate_errors(&config.errors).map_err(|m| err("errors", &m.0, m.1))?;
    for (i, rule) in config.headers.iter().enumerate() {
        validate_rule(rule).map_err(|m| ConfigError {
            file: file.clone(),
            line: find_nth_table_line(&text, "[[headers]]", i),
            key: Some(format!("headers[{i}].{}", m.0)),
            message: m.1,
        })?;
    }
    // Checked against the list, not by EnvFilter, which takes any word for a target name:
    // "verbose" would be a filter that silences everything, the listening line included.
    let level = config.log.level.to_ascii_lowercase();
    if !LEVELS.contains(&level.as_str()) {
        return Err(err(
            "log",
            "level",
            format!(
                "{:?} is not a level (one of {})",
                config.log.level,
                LEVELS.join(", ")
            ),
        ));
    }
    config.log.level = level;
    let access = match config.log.access.as_str() {
        "off" => AccessTarget::Off,
        "-" => AccessTarget::Stdout,
        "" => {
            return Err(err(
                "log",
                "access",
                "must be \"-\", \"off\" or a path".into(),
            ));
        }
        p => AccessTarget::File(base.join(p)),
    };
    let (host, host_note) = resolve_host(&config.server.host).map_err(|message| match ov.host {
        Some(_) => ConfigError {
            file: "command line".into(),
            line: None,
            key: Some("--host".into()),
            message,
        },
        None => err("server", "host", message),
    })?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let admin =
        admin_address(&config.admin.listen).map_err(|message| err("admin", "listen", message))?;
    Ok(Loaded {
        config,
        root,
        access,
        workers,
        host,
        host_note,
        source,
        admin,
    })
}

/// `admin.listen` as an address: empty is off, a port alone is on 127.0.0.1 (the admin listener
/// should not be reachable from outside unless asked for by address). Port 0 picks a free one.
fn admin_address(listen: &str) -> Result<Option<SocketAddr>, String> {
    let listen = listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    if let Ok(port) = listen.parse::<u16>() {
        return Ok(Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)));
    }
    listen.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!(
            "{listen:?} is not an address and port like \"127.0.0.1:9090\" or \"[::1]:9090\" \
             (a port alone listens on 127.0.0.1; \"\" turns the admin listener off)"
        )
    })
}

/// A plain file name: not empty, no `/`, not a dotfile.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\0']) && !name.starts_with('.')
}

/// A path under the root: relative, no `..` or dot segments, no NUL.
fn path_under_root(path: &str) -> bool {
    let p = path.trim_start_matches('/');
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
}

/// Checks (and normalises) the `[files]` section; errors are `(key, message)`.
fn validate_files(f: &mut Files) -> Result<(), (&'static str, String)> {
    if f.index.is_empty() {
        return Err(("index", "must name at least one file".into()));
    }
    if let Some(bad) = f.index.iter().find(|n| !plain_name(n)) {
        return Err(("index", format!("{bad:?} must be a plain file name")));
    }
    if !f.fallback.is_empty() && !path_under_root(&f.fallback) {
        return Err((
            "fallback",
            format!(
                "{:?} must be a path under the root, without dot segments",
                f.fallback
            ),
        ));
    }
    for ext in f.allowed_extensions.iter_mut() {
        if ext == "*" {
            continue;
        }
        let trimmed = ext.trim_start_matches('.');
        if trimmed.is_empty() || trimmed.contains(['/', '.', '*']) {
            return Err((
                "allowed_extensions",
                format!(
                    "{ext:?} is not an extension (write \"png\", not \"*.png\"; \"*\" allows all)"
                ),
            ));
        }
        *ext = trimmed.to_ascii_lowercase();
    }
    for seg in &f.allow_dot_paths {
        let name = seg.trim_matches('/');
        if !name.starts_with('.') || name.contains('/') || name == "." || name == ".." {
            return Err((
                "allow_dot_paths",
                format!("{seg:?} must be one dot-named segment, like \".well-known\""),
            ));
        }
    }
    f.allow_dot_paths = f
        .allow_dot_paths
        .iter()
        .map(|s| s.trim_matches('/').to_string())
        .collect();
    let mut types = BTreeMap::new();
    for (ext, mime) in &f.types {
        let e = ext.trim_start_matches('.').to_ascii_lowercase();
        if e.is_empty() || e.contains(['/', '.']) {
            return Err(("types", format!("{ext:?} is not an extension")));
        }
        if mime.is_empty() || !mime.contains('/') || mime.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err((
                "types",
                format!("{mime:?} (for {ext:?}) is not a media type like \"application/wasm\""),
            ));
        }
        types.insert(e, mime.clone());
    }
    f.types = types;
    Ok(())
}

/// Checks `[errors]`: keys are 4xx/5xx statuses the server answers with, values paths under root.
fn validate_errors(errors: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (code, path) in errors {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(crate::http::Status::from_code);
        if status.is_none_or(|s| s.code() < 400) {
            return Err((
                code.clone(),
                format!("{code:?} is not an error status this server answers with"),
            ));
        }
        if !path_under_root(path) {
            return Err((
                code.clone(),
                format!("{path:?} must be a path under the root, without dot segments"),
            ));
        }
    }
    Ok(())
}

/// Headers a rule may not set: the server owns the framing and its identity.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "content-range",
    "content-encoding",
    "keep-alive",
    "upgrade",
];

/// Checks one `[[headers]]` rule; errors are `(key, message)`.
fn validate_rule(rule: &HeaderRule) -> Result<(), (String, String)> {
    if !rule.pattern.starts_with('/') && rule.pattern.contains('/') {
        return Err((
            "match".into(),
            format!(
                "{:?} must start with '/' (or be a file-name glob like \"*.css\")",
                rule.pattern
            ),
        ));
    }
    if rule.pattern.is_empty() {
        return Err(("match".into(), "must not be empty".into()));
    }
    if let Err(e) = globset::GlobBuilder::new(&rule.pattern)
        .literal_separator(true)
        .build()
    {
        return Err((
            "match".into(),
            format!("{:?} is not a glob: {}", rule.pattern, e.kind()),
        ));
    }
    for (name, value) in &rule.set {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(("set".into(), format!("{name:?} is not a header name")));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err((
                "set".into(),
                format!("{name:?} is set by the server itself"),
            ));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err((
                "set".into(),
                format!("the value of {name:?} has a control character"),
            ));
        }
    }
    Ok(())
}

/// The line of the `n`-th (0-based) occurrence of a table header such as `[[headers]]`.
fn find_nth_table_line(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(n)
        .map(|(i, _)| i + 1)
}

/// The values `log.level` accepts, in any case. `off` silences the diagnostics, the listening
/// line included (start-up errors are still printed).
pub const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Turns `server.host` into the address to listen on: an IPv4 or IPv6 address (brackets
/// allowed: `[::1]`), or a host name resolved now, once. A name that resolves to several
/// addresses listens on one of them, the first IPv4 one if there is one (see [`pick_address`]),
/// and the note says so. The error is a message for a [`ConfigError`].
pub fn resolve_host(host: &str) -> Result<(IpAddr, Option<String>), String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if !is_host_name(host) {
        return Err(format!(
            "{host:?} is not an IP address or a host name (e.g. \"0.0.0.0\", \"::\", \"localhost\")"
        ));
    }
    let resolved = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("host name {host:?} does not resolve: {e}"))?;
    let mut all: Vec<IpAddr> = Vec::new();
    for a in resolved {
        if !all.contains(&a.ip()) {
            all.push(a.ip());
        }
    }
    let Some(ip) = pick_address(&all) else {
        return Err(format!("host name {host:?} resolves to no address"));
    };
    let note = (all.len() > 1).then(|| {
        let list: Vec<String> = all.iter().map(IpAddr::to_string).collect();
        format!(
            "server.host {host:?} resolves to {}; listening on {ip} only (set host = \"::\" to \
             listen on every IPv6 and IPv4 address)",
            list.join(", ")
        )
    });
    Ok((ip, note))
}

/// The address a name with several addresses listens on: the first IPv4 one, else the first.
/// IPv4 because every client can reach it (`localhost` is ::1 first on many systems, and
/// clients that do not try both families would then fail over IPv4), and because it does not
/// depend on the resolver's order (`/etc/gai.conf`).
pub fn pick_address(all: &[IpAddr]) -> Option<IpAddr> {
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits and hyphens, 1 to 63
/// bytes each, not starting or ending with a hyphen, 253 bytes at most, an optional final dot.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Maps a byte offset in the TOML text to its 1-based line and the dotted key written there.
fn locate_span(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    // Walk up from the error's line to the `key =` it belongs to (values can span lines),
    // then further up to the `[section]` header.
    let mut key = None;
    let mut section = None;
    for l in lines.iter().take(line_no).rev() {
        let t = l.trim();
        if key.is_none() {
            if let Some(k) = key_of(t) {
                key = Some(k);
                continue;
            }
        }
        if t.starts_with('[') {
            section = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            break;
        }
    }
    let dotted = match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(s), None) => Some(s),
        (None, None) => None,
    };
    (Some(line_no), dotted)
}

/// The key of a `key = value` line, if it is one.
fn key_of(line: &str) -> Option<String> {
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    .then(|| k.to_string())
}

/// The line on which `key` is set inside `[section]`, if the file sets it.
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section && key_of(t).as_deref() == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_schema() {
        let c = Config::parse("", "x.toml").unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.server.workers, 0);
        assert_eq!(c.server.engine, EngineChoice::Auto);
        assert_eq!(c.files.root, PathBuf::from("root"));
        assert_eq!(c.limits.max_request_bytes, 8192);
        assert_eq!(c.log.access, "access.log");
        assert!(c.files.allowed_extensions.iter().any(|e| e == "woff2"));
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let text = "[server]\nhost = \"127.0.0.1\"\nport = \"eighty\"\n";
        let e = Config::parse(text, "u.toml").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("server.port"));
        assert!(
            e.to_string().starts_with("u.toml:3: key `server.port`: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = "[limits]\nmax_request_bytes = 100\nkeepalive = 3\n";
        let e = Config::parse(text, "u.toml").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("limits.keepalive"));
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn error_inside_a_multiline_array_names_its_key() {
        let text = "[files]\nallowed_extensions = [\n  \"html\",\n  5,\n]\n";
        let e = Config::parse(text, "u.toml").unwrap_err();
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("files.allowed_extensions"));
    }

    #[test]
    fn invalid_toml_gives_a_line() {
        let e = Config::parse("[server\nport = 1\n", "u.toml").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn bad_engine_value_is_named() {
        let e = Config::parse("[server]\nengine = \"kqueue\"\n", "u.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("server.engine"));
        assert!(e.message.contains("kqueue"), "{}", e.message);
    }

    #[test]
    fn the_shipped_uring_toml_holds_the_defaults() {
        let shipped = Config::parse(include_str!("../uring.toml"), "uring.toml").unwrap();
        assert_eq!(
            format!("{shipped:?}"),
            format!("{:?}", Config::default()),
            "uring.toml says its values are the defaults"
        );
    }

    #[test]
    fn log_formats_are_a_fixed_list() {
        for (name, want) in [
            ("default", LogFormat::Default),
            ("common", LogFormat::Common),
            ("combined", LogFormat::Combined),
            ("json", LogFormat::Json),
        ] {
            let c = Config::parse(&format!("[log]\nformat = \"{name}\"\n"), "u.toml").unwrap();
            assert_eq!(c.log.format, want);
        }
        assert_eq!(
            Config::parse("", "u.toml").unwrap().log.format,
            LogFormat::Default
        );
        for bad in ["xml", "Combined", ""] {
            let text = format!("[server]\nport = 1\n[log]\nformat = \"{bad}\"\n");
            let e = Config::parse(&text, "u.toml").unwrap_err();
            assert_eq!(e.line, Some(4), "{e}");
            assert_eq!(e.key.as_deref(), Some("log.format"), "{e}");
            assert!(
                e.to_string()
                    .contains("`default`, `common`, `combined`, `json`"),
                "{e}"
            );
        }
    }

    #[test]
    fn validation_errors_point_at_the_key_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "[files]\n\nroot = \"nope\"\n").unwrap();
        let e = load(&cfg, true, &Overrides::default()).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("files.root"));
        assert!(e.message.contains("nope"), "{}", e.message);
    }

    #[test]
    fn relative_root_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[files]\nroot = \"site\"\n[log]\naccess = \"a.log\"\n",
        )
        .unwrap();
        let l = load(&cfg, true, &Overrides::default()).unwrap();
        assert_eq!(l.root, dir.path().join("site").canonicalize().unwrap());
        assert_eq!(l.access, AccessTarget::File(dir.path().join("a.log")));
    }

    #[test]
    fn extensions_are_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[files]\nroot = \".\"\nallowed_extensions = [\".PNG\"]\n",
        )
        .unwrap();
        let l = load(&cfg, true, &Overrides::default()).unwrap();
        assert_eq!(l.config.files.allowed_extensions, vec!["png".to_string()]);
        std::fs::write(
            &cfg,
            "[files]\nroot = \".\"\nallowed_extensions = [\"*.png\"]\n",
        )
        .unwrap();
        let e = load(&cfg, true, &Overrides::default()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("files.allowed_extensions"));
    }

    /// Loads `text` as a config file serving `dir`.
    fn load_text(dir: &Path, text: &str, ov: &Overrides) -> Result<Loaded, ConfigError> {
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let ov = Overrides {
            root: Some(dir.to_path_buf()),
            ..ov.clone()
        };
        load(&cfg, true, &ov)
    }

    #[test]
    fn log_levels_are_a_fixed_list_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides::default();
        for (given, want) in [
            ("error", "error"),
            ("WARN", "warn"),
            ("Info", "info"),
            ("debug", "debug"),
            ("trace", "trace"),
            ("off", "off"),
        ] {
            let text = format!("[log]\nlevel = \"{given}\"\n");
            let l = load_text(dir.path(), &text, &ov).unwrap();
            assert_eq!(l.config.log.level, want);
        }
        for bad in [
            "verbose",
            "",
            "info,debug",
            "warning",
            "uring_httpd=debug",
            "5",
        ] {
            let text = format!("[server]\nport = 1\n[log]\n\nlevel = \"{bad}\"\n");
            let e = load_text(dir.path(), &text, &ov).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("log.level"), "{bad}");
            assert_eq!(e.line, Some(5), "{bad}");
            assert!(
                e.message.contains("error, warn, info, debug, trace, off"),
                "{e}"
            );
        }
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides::default();
        let table = [
            ("0.0.0.0", "0.0.0.0"),
            ("127.0.0.1", "127.0.0.1"),
            ("::", "::"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("localhost", "127.0.0.1"),
            ("LocalHost", "127.0.0.1"),
        ];
        for (host, want) in table {
            let text = format!("[server]\nhost = \"{host}\"\n");
            let l = load_text(dir.path(), &text, &ov).unwrap();
            assert_eq!(l.host.to_string(), want, "{host}");
        }
        // Not names, so never looked up: errors name the key and its line.
        for bad in [
            "",
            "not an ip",
            "host_name",
            "-x",
            "a..b",
            "x:80",
            "[::1",
            "1.2.3.4.5/8",
        ] {
            let text = format!("[server]\n\nhost = \"{bad}\"\n");
            let e = load_text(dir.path(), &text, &ov).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("server.host"), "{bad}");
            assert_eq!(e.line, Some(3), "{bad}");
            assert!(
                e.message.contains("is not an IP address or a host name"),
                "{e}"
            );
        }
        // The command line is checked the same way, and named.
        let ov = Overrides {
            host: Some("bad host".into()),
            ..Overrides::default()
        };
        let e = load_text(dir.path(), "", &ov).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: key `--host`: \"bad host\" is not an IP address or a host name \
             (e.g. \"0.0.0.0\", \"::\", \"localhost\")"
        );
        let ov = Overrides {
            host: Some("localhost".into()),
            ..Overrides::default()
        };
        let l = load_text(dir.path(), "[server]\nhost = \"::\"\n", &ov).unwrap();
        assert_eq!(l.host.to_string(), "127.0.0.1");
    }

    #[test]
    fn a_name_with_several_addresses_listens_on_the_first_ipv4_one() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            pick_address(&[ip("::1"), ip("127.0.0.1")]),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            pick_address(&[ip("10.0.0.2"), ip("::1"), ip("10.0.0.1")]),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(pick_address(&[ip("::1"), ip("fe80::1")]), Some(ip("::1")));
        assert_eq!(pick_address(&[]), None);
    }

    #[test]
    fn every_number_out_of_range_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        let table = [
            ("server", "workers", "1025"),
            ("files", "cache_max_file_bytes", "1073741825"),
            ("files", "cache_bytes_per_worker", "68719476737"),
            ("files", "cache_revalidate_secs", "86401"),
            ("limits", "max_request_bytes", "255"),
            ("limits", "keep_alive_timeout_secs", "9223372036854775807"),
            ("limits", "header_timeout_secs", "0"),
            ("limits", "send_timeout_secs", "0"),
            (
                "limits",
                "max_connections_per_worker",
                "4611686018427387904",
            ),
            ("limits", "shutdown_timeout_secs", "86401"),
            ("log", "buffer_lines", "0"),
            ("limits", "max_requests_per_connection", "4294967297"),
        ];
        for (section, key, value) in table {
            std::fs::write(&cfg, format!("[{section}]\n\n{key} = {value}\n")).unwrap();
            let ov = Overrides {
                root: Some(dir.path().to_path_buf()),
                ..Overrides::default()
            };
            let e = load(&cfg, true, &ov).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(&*format!("{section}.{key}")), "{e}");
            assert_eq!(e.line, Some(3), "{e}");
            assert!(e.message.contains("is outside"), "{e}");
        }
    }

    #[test]
    fn admin_listen_is_off_by_default_and_checked_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides::default();
        assert_eq!(load_text(dir.path(), "", &ov).unwrap().admin, None);
        for (given, want) in [
            ("127.0.0.1:9090", "127.0.0.1:9090"),
            ("9090", "127.0.0.1:9090"),
            ("[::1]:0", "[::1]:0"),
            ("0.0.0.0:9100", "0.0.0.0:9100"),
        ] {
            let text = format!("[admin]\nlisten = \"{given}\"\n");
            let l = load_text(dir.path(), &text, &ov).unwrap();
            assert_eq!(l.admin.map(|a| a.to_string()).as_deref(), Some(want));
        }
        for bad in ["nonsense", "127.0.0.1", "localhost:9090", ":9090", "70000"] {
            let text = format!("[server]\nport = 1\n\n[admin]\nlisten = \"{bad}\"\n");
            let e = load_text(dir.path(), &text, &ov).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("admin.listen"), "{bad}");
            assert_eq!(e.line, Some(5), "{bad}");
            assert!(e.message.contains("is not an address and port"), "{e}");
        }
    }

    #[test]
    fn header_rules_and_error_pages_are_checked_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        let ov = Overrides {
            root: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let table = [
            (
                "[[headers]]\nmatch = \"/a/[\"\nset = { X = \"1\" }\n",
                "headers[0].match",
                1,
            ),
            (
                "[[headers]]\nmatch = \"/a\"\nset = { X = \"1\" }\n\n[[headers]]\nmatch = \"/b\"\nset = { \"Content-Length\" = \"1\" }\n",
                "headers[1].set",
                5,
            ),
            (
                "[[headers]]\nmatch = \"/a\"\nset = { \"Bad Name\" = \"1\" }\n",
                "headers[0].set",
                1,
            ),
            ("[errors]\n404 = \"../x.html\"\n", "errors.404", 2),
            ("[errors]\n299 = \"x.html\"\n", "errors.299", 2),
            (
                "[files]\nallow_dot_paths = [\"well-known\"]\n",
                "files.allow_dot_paths",
                2,
            ),
            (
                "[files]\nfallback = \"../index.html\"\n",
                "files.fallback",
                2,
            ),
            ("[files]\nindex = []\n", "files.index", 2),
            ("[files.types]\nwasm = \"wasm\"\n", "files.types", 0),
        ];
        for (text, key, line) in table {
            std::fs::write(&cfg, text).unwrap();
            let e = load(&cfg, true, &ov).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            if line > 0 {
                assert_eq!(e.line, Some(line), "{text}: {e}");
            }
        }
        std::fs::write(&cfg, "[files]\nindex = \"home.html\"\n").unwrap();
        let l = load(&cfg, true, &ov).unwrap();
        assert_eq!(l.config.files.index, ["home.html"]);
    }
}
