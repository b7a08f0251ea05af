//! Configuration from the environment, for containers and orchestrators: the six `URING_HTTPD_*`
//! variables, and the layering of every source in one place, command line > environment > file >
//! built-in defaults.
//!
//! This module only reads variables and decides which value wins; the file's schema, defaults and
//! validation stay in [`crate::config`]. An empty variable counts as unset (orchestrators often
//! template `NAME=` for "not given"). Every error names the variable, and a value from the
//! environment that fails the file's validation (a root that does not exist, too many workers) is
//! reported under the variable's name, not under a file key the user never wrote.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::ValueEnum;

use super::{ConfigError, EngineChoice, Loaded, Overrides};

/// The config file to read instead of `./uring.toml` (a missing file is then an error).
pub const CONFIG: &str = "URING_HTTPD_CONFIG";
/// Overrides `server.host`.
pub const HOST: &str = "URING_HTTPD_HOST";
/// Overrides `server.port`.
pub const PORT: &str = "URING_HTTPD_PORT";
/// Overrides `files.root` (relative to the current directory, like `--root`).
pub const ROOT: &str = "URING_HTTPD_ROOT";
/// Overrides `server.workers`.
pub const WORKERS: &str = "URING_HTTPD_WORKERS";
/// Overrides `server.engine`.
pub const ENGINE: &str = "URING_HTTPD_ENGINE";

/// Each overriding variable with the config key it replaces.
const KEYS: [(&str, &str); 5] = [
    (HOST, "server.host"),
    (PORT, "server.port"),
    (ROOT, "files.root"),
    (WORKERS, "server.workers"),
    (ENGINE, "server.engine"),
];

/// What the environment sets.
#[derive(Debug, Clone, Default)]
pub struct FromEnv {
    /// `URING_HTTPD_CONFIG`.
    pub config: Option<PathBuf>,
    /// The values the variables set, as command-line-style overrides.
    pub overrides: Overrides,
}

fn env_error(var: &str, message: String) -> ConfigError {
    ConfigError {
        file: format!("environment variable {var}"),
        line: None,
        key: None,
        message,
    }
}

/// Reads the variables through `lookup` (the process environment in [`load_layered`]).
pub fn read(lookup: impl Fn(&str) -> Option<OsString>) -> Result<FromEnv, ConfigError> {
    // A set, non-empty value as text; paths are taken as they are, other values must be UTF-8.
    let raw = |var: &str| lookup(var).filter(|v| !v.is_empty());
    let text = |var: &str| -> Result<Option<String>, ConfigError> {
        match raw(var) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|v| env_error(var, format!("{v:?} is not valid UTF-8"))),
        }
    };
    let mut o = Overrides {
        // Checked (and a name resolved, once) by `load` as server.host is; `load_layered` reports
        // a bad value under the variable's name.
        host: text(HOST)?,
        ..Overrides::default()
    };
    if let Some(v) = text(PORT)? {
        o.port = Some(v.parse().map_err(|_| {
            env_error(
                PORT,
                format!("{v:?} is not a port number (0 to 65535, 0 picks a free one)"),
            )
        })?);
    }
    if let Some(v) = text(WORKERS)? {
        o.workers = Some(v.parse().map_err(|_| {
            env_error(
                WORKERS,
                format!("{v:?} is not a number of worker threads (0 = one per CPU)"),
            )
        })?);
    }
    if let Some(v) = text(ENGINE)? {
        o.engine = Some(EngineChoice::from_str(&v, true).map_err(|_| {
            env_error(
                ENGINE,
                format!("{v:?} is not an engine (uring, epoll or auto)"),
            )
        })?);
    }
    o.root = raw(ROOT).map(PathBuf::from);
    Ok(FromEnv {
        config: raw(CONFIG).map(PathBuf::from),
        overrides: o,
    })
}

/// Loads the configuration from every source: `cli_config` (`--config`) or `URING_HTTPD_CONFIG`
/// or `./uring.toml` (built-in defaults when that default is absent), then the environment's
/// values over the file's, then the command line's over both.
pub fn load_layered(cli_config: Option<PathBuf>, cli: &Overrides) -> Result<Loaded, ConfigError> {
    let env = read(|var| std::env::var_os(var))?;
    let (path, explicit) = match (cli_config, &env.config) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => {
            if let Err(e) = std::fs::metadata(p) {
                return Err(env_error(
                    CONFIG,
                    format!("cannot read the config file {}: {e}", p.display()),
                ));
            }
            (p.clone(), true)
        }
        (None, None) => (PathBuf::from("uring.toml"), false),
    };
    let e = &env.overrides;
    let merged = Overrides {
        host: cli.host.clone().or_else(|| e.host.clone()),
        port: cli.port.or(e.port),
        root: cli.root.clone().or_else(|| e.root.clone()),
        workers: cli.workers.or(e.workers),
        engine: cli.engine.or(e.engine),
    };
    // The variables whose value is in force (set, and not overridden on the command line).
    let in_force: Vec<&str> = [
        (HOST, e.host.is_some() && cli.host.is_none()),
        (PORT, e.port.is_some() && cli.port.is_none()),
        (ROOT, e.root.is_some() && cli.root.is_none()),
        (WORKERS, e.workers.is_some() && cli.workers.is_none()),
        (ENGINE, e.engine.is_some() && cli.engine.is_none()),
    ]
    .into_iter()
    .filter_map(|(var, used)| used.then_some(var))
    .collect();

    let mut loaded = super::load(&path, explicit, &merged).map_err(|err| {
        // A value that came from the environment is reported under the variable's name. `load`
        // names every host override `--host`, whether it came from there or from here.
        let key = match err.key.as_deref() {
            Some("--host") => Some("server.host"),
            key => key,
        };
        let var = KEYS
            .iter()
            .find(|(var, k)| key == Some(*k) && in_force.contains(var));
        match var {
            Some((var, _)) => env_error(var, err.message),
            None => err,
        }
    })?;
    if !in_force.is_empty() {
        loaded.source = format!("{} + environment ({})", loaded.source, in_force.join(", "));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read_from(vars: &[(&str, &str)]) -> Result<FromEnv, ConfigError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        read(|k| map.get(k).cloned())
    }

    fn is_empty(e: &FromEnv) -> bool {
        let o = &e.overrides;
        e.config.is_none()
            && o.host.is_none()
            && o.port.is_none()
            && o.root.is_none()
            && o.workers.is_none()
            && o.engine.is_none()
    }

    #[test]
    fn nothing_set_changes_nothing() {
        assert!(is_empty(&read_from(&[]).unwrap()));
    }

    #[test]
    fn every_variable_is_read() {
        let e = read_from(&[
            (CONFIG, "/etc/uring-httpd/uring.toml"),
            (HOST, "[::1]"),
            (PORT, " 9090 "),
            (ROOT, "/srv/www"),
            (WORKERS, "3"),
            (ENGINE, "Epoll"),
        ])
        .unwrap();
        assert_eq!(e.config, Some(PathBuf::from("/etc/uring-httpd/uring.toml")));
        let o = e.overrides;
        assert_eq!(o.host.as_deref(), Some("[::1]"));
        assert_eq!(o.port, Some(9090));
        assert_eq!(o.root, Some(PathBuf::from("/srv/www")));
        assert_eq!(o.workers, Some(3));
        assert_eq!(o.engine, Some(EngineChoice::Epoll));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let e = read_from(&[
            (CONFIG, ""),
            (HOST, ""),
            (PORT, ""),
            (ROOT, ""),
            (WORKERS, ""),
            (ENGINE, ""),
        ])
        .unwrap();
        assert!(is_empty(&e), "{e:?}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (
                PORT,
                "eighty",
                "environment variable URING_HTTPD_PORT: \"eighty\" is not a port number",
            ),
            (
                PORT,
                "70000",
                "environment variable URING_HTTPD_PORT: \"70000\" is not a port number",
            ),
            (
                WORKERS,
                "-1",
                "environment variable URING_HTTPD_WORKERS: \"-1\" is not a number",
            ),
            (
                ENGINE,
                "kqueue",
                "environment variable URING_HTTPD_ENGINE: \"kqueue\" is not an engine (uring, \
                 epoll or auto)",
            ),
        ];
        for (var, value, want) in cases {
            let e = read_from(&[(var, value)]).unwrap_err();
            assert!(e.to_string().starts_with(want), "{var}={value}: {e}");
        }
    }

    #[test]
    fn non_utf8_values_name_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'8', 0xff]);
        let e = read(|k| (k == PORT).then(|| bad.clone())).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable URING_HTTPD_PORT: "),
            "{e}"
        );
        assert!(e.message.contains("not valid UTF-8"), "{e}");
        // A path may be any bytes.
        let e = read(|k| (k == ROOT).then(|| bad.clone())).unwrap();
        assert_eq!(e.overrides.root, Some(PathBuf::from(bad)));
    }
}
