//! Configuration: the TOML schema with its defaults, validation, and the command-line overrides.
//!
//! Everything here runs once, before any socket is opened. Every error names the file, the line
//! (when the key is in the file) and the dotted key, so a user can go straight to the mistake.
//! Nothing in this module is touched on the request path: the validated [`Config`] is shared
//! read-only behind an `Arc` by the workers.

use std::fmt;
use std::net::IpAddr;
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub files: Files,
    pub limits: Limits,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub host: IpAddr,
    pub port: u16,
    /// Worker threads; 0 means one per online CPU.
    pub workers: usize,
    pub engine: EngineChoice,
    /// Exact request path answering with the counters as text; empty disables it.
    pub status_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Files {
    pub root: PathBuf,
    pub index: String,
    pub allowed_extensions: Vec<String>,
    /// Files up to this size are kept in memory by each worker; 0 disables the cache.
    pub cache_max_file_bytes: u64,
    /// Memory each worker may spend on cached files.
    pub cache_bytes_per_worker: usize,
    /// How long a cached file is served before it is re-stat'ed (size or mtime changed: reloaded).
    pub cache_revalidate_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_request_bytes: usize,
    /// Idle time allowed between requests on a connection; 0 disables keep-alive.
    pub keep_alive_timeout_secs: u64,
    /// Time allowed for a whole request head to arrive, from its first byte.
    pub header_timeout_secs: u64,
    /// A response write that makes no progress for this long closes the connection.
    pub send_timeout_secs: u64,
    /// Open connections allowed per worker; further accepts wait for a free slot.
    pub max_connections_per_worker: usize,
    /// How long a graceful shutdown waits for in-flight responses before closing them.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "-" for stdout, "off" for none, anything else is a file path (relative to the config file).
    pub access: String,
    /// Level of the server's own diagnostics on stderr (error, warn, info, debug, trace).
    pub level: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            host: IpAddr::from([0, 0, 0, 0]),
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
            index: "index.html".into(),
            allowed_extensions: [
                "html", "htm", "css", "js", "mjs", "json", "txt", "png", "gif", "ico", "svg",
                "webp", "woff2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            cache_max_file_bytes: 64 * 1024,
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
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            access: "access.log".into(),
            level: "info".into(),
        }
    }
}

/// Where the access log goes, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// A configuration error, rendered as `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
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
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub root: Option<PathBuf>,
    pub workers: Option<usize>,
    pub engine: Option<EngineChoice>,
}

/// A configuration ready to serve with: parsed, overridden, validated, paths made absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `files.root`, canonical.
    pub root: PathBuf,
    pub access: AccessTarget,
    /// Worker count with 0 resolved to the number of online CPUs.
    pub workers: usize,
    /// Where the settings came from, for the start-up line.
    pub source: String,
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
    if let Some(h) = ov.host {
        config.server.host = h;
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

    let s = &config.server;
    if s.workers > 1024 {
        return Err(err(
            "server",
            "workers",
            format!("{} is more than 1024", s.workers),
        ));
    }
    if !s.status_path.is_empty() && !s.status_path.starts_with('/') {
        return Err(err(
            "server",
            "status_path",
            "must be empty (off) or start with '/'".into(),
        ));
    }
    let f = &mut config.files;
    if f.index.is_empty() || f.index.contains('/') || f.index.starts_with('.') {
        return Err(err(
            "files",
            "index",
            format!("{:?} must be a plain file name", f.index),
        ));
    }
    for ext in f.allowed_extensions.iter_mut() {
        let trimmed = ext.trim_start_matches('.');
        if trimmed.is_empty() || trimmed.contains(['/', '.']) {
            return Err(err(
                "files",
                "allowed_extensions",
                format!("{ext:?} is not an extension (write \"png\", not \"*.png\")"),
            ));
        }
        *ext = trimmed.to_ascii_lowercase();
    }
    let l = &config.limits;
    if !(256..=1 << 20).contains(&l.max_request_bytes) {
        return Err(err(
            "limits",
            "max_request_bytes",
            format!("{} is outside 256..=1048576", l.max_request_bytes),
        ));
    }
    if l.header_timeout_secs == 0 {
        return Err(err(
            "limits",
            "header_timeout_secs",
            "must be at least 1".into(),
        ));
    }
    if l.send_timeout_secs == 0 {
        return Err(err(
            "limits",
            "send_timeout_secs",
            "must be at least 1".into(),
        ));
    }
    if l.max_connections_per_worker == 0 {
        return Err(err(
            "limits",
            "max_connections_per_worker",
            "must be at least 1".into(),
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        return Err(err(
            "log",
            "level",
            format!(
                "{:?} is not a level (error, warn, info, debug, trace)",
                config.log.level
            ),
        ));
    }
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
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Ok(Loaded {
        config,
        root,
        access,
        workers,
        source,
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
}
