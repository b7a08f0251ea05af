//! SIGHUP: the configuration read again from the same sources as at start (the same file, the
//! same command-line values, the same `URING_HTTPD_*` variables), and applied without dropping a
//! connection.
//!
//! What can change live does so for connections accepted from then on: the root and everything
//! under `[files]` (policy, extensions, types, index, fallback, cache limits), `[errors]`,
//! `[[headers]]`, the timeouts and size limits of `[limits]`, `server.status_path`, the access
//! log's destination and format, and `log.level`. A connection opened before keeps the settings it was
//! accepted with until it closes. What is fixed at start (the listening address and port, the
//! workers, the engine, the connection limit per worker, the access log's queue size, the admin
//! listener, and turning the access log on or off) keeps its old value and is reported as
//! needing a restart.
//!
//! A reload is all or nothing: a file that does not parse or validate, a root that cannot be
//! opened or a log file that cannot be created leaves everything as it was, and the error says
//! why (with the file, line and key when the config is at fault). This module decides and builds;
//! the swap itself is one store into [`crate::Shared::settings`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, AccessTarget, ConfigError, Loaded, Overrides};
use crate::server::Running;
use crate::settings::{Settings, SettingsError};

/// A setting changed in the configuration that only takes effect at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsRestart {
    /// The dotted key, e.g. `server.port`.
    pub key: &'static str,
    /// The value in force, which stays.
    pub old: String,
    /// The value the configuration now asks for.
    pub new: String,
}

impl fmt::Display for NeedsRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} → {})", self.key, self.old, self.new)
    }
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum ReloadError {
    /// The configuration does not load (parse, validation, or an override from the environment).
    Config(ConfigError),
    /// The new root cannot be opened, or a header rule cannot be compiled.
    Settings(SettingsError),
    /// The new access log cannot be opened.
    Log(io::Error),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Config(e) => write!(f, "{e}"),
            ReloadError::Settings(e) => write!(f, "{e}"),
            ReloadError::Log(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Sets the diagnostics level (`log.level`) of the running process.
pub type SetLevel = Box<dyn FnMut(&str)>;

/// Reloads on demand; owns the sources to read and the configuration in force.
pub struct Reloader {
    cli_config: Option<PathBuf>,
    overrides: Overrides,
    current: Loaded,
    set_level: SetLevel,
}

impl Reloader {
    /// A reloader that reads what start-up read (`--config` and the command-line `overrides`; the
    /// environment is read again each time), starting from `current`.
    pub fn new(
        cli_config: Option<PathBuf>,
        overrides: Overrides,
        current: Loaded,
        set_level: SetLevel,
    ) -> Reloader {
        Reloader {
            cli_config,
            overrides,
            current,
            set_level,
        }
    }

    /// Where the configuration in force came from, as the start-up line says it.
    pub fn source(&self) -> &str {
        &self.current.source
    }

    /// Loads the configuration again and applies it to `running`. Returns the settings that
    /// changed but need a restart (they keep their old values); on error nothing changed.
    pub fn reload(&mut self, running: &mut Running) -> Result<Vec<NeedsRestart>, ReloadError> {
        let mut next = config::env::load_layered(self.cli_config.clone(), &self.overrides)
            .map_err(ReloadError::Config)?;
        let restart = keep_fixed(&self.current, &mut next);
        let generation = running.shared.current().generation + 1;
        let settings = Settings::open(next.config.clone(), &next.root, generation)
            .map_err(ReloadError::Settings)?;
        // The last step that can fail; once the writer has the new file, the rest cannot. The
        // writer itself does nothing when neither the destination nor the format changed.
        running
            .retarget_log(&next.access, next.config.log.format)
            .map_err(ReloadError::Log)?;
        running.shared.settings.store(Arc::new(settings));
        if next.config.log.level != self.current.config.log.level {
            (self.set_level)(&next.config.log.level);
        }
        self.current = next;
        Ok(restart)
    }
}

/// Compares the settings fixed at start, puts their values in force back into `new`, and
/// returns those that differ.
fn keep_fixed(old: &Loaded, new: &mut Loaded) -> Vec<NeedsRestart> {
    let mut changed = Vec::new();
    let c = &mut changed;
    let (o, n) = (&old.config, &mut new.config);
    keep(c, "server.host", &o.server.host, &mut n.server.host, |v| {
        v.clone()
    });
    keep(
        c,
        "server.port",
        &o.server.port,
        &mut n.server.port,
        ToString::to_string,
    );
    keep(
        c,
        "server.workers",
        &o.server.workers,
        &mut n.server.workers,
        ToString::to_string,
    );
    keep(
        c,
        "server.engine",
        &o.server.engine,
        &mut n.server.engine,
        ToString::to_string,
    );
    keep(
        c,
        "log.buffer_lines",
        &o.log.buffer_lines,
        &mut n.log.buffer_lines,
        ToString::to_string,
    );
    let (old_max, new_max) = (
        &o.limits.max_connections_per_worker,
        &mut n.limits.max_connections_per_worker,
    );
    keep(
        c,
        "limits.max_connections_per_worker",
        old_max,
        new_max,
        ToString::to_string,
    );
    keep(
        c,
        "admin.listen",
        &o.admin.listen,
        &mut n.admin.listen,
        |v| format!("{v:?}"),
    );
    // A log that was off has no writer thread, and one that is on has workers formatting
    // records: switching between the two is a restart. Another file (or stdout) is live.
    let off = |t: &AccessTarget| *t == AccessTarget::Off;
    if off(&old.access) != off(&new.access) {
        keep(c, "log.access", &o.log.access, &mut n.log.access, |v| {
            format!("{v:?}")
        });
        new.access = old.access.clone();
    }
    // What start-up resolved from the kept settings stays as it was too.
    new.admin = old.admin;
    new.host = old.host;
    new.host_note = old.host_note.clone();
    new.workers = old.workers;
    changed
}

/// One setting fixed at start: when `new` differs it is noted in `changed`, shown with `show`,
/// and set back to `old`.
fn keep<T: PartialEq + Clone>(
    changed: &mut Vec<NeedsRestart>,
    key: &'static str,
    old: &T,
    new: &mut T,
    show: fn(&T) -> String,
) {
    if old != new {
        changed.push(NeedsRestart {
            key,
            old: show(old),
            new: show(new),
        });
        *new = old.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn load(dir: &std::path::Path, text: &str) -> Loaded {
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let ov = Overrides {
            root: Some(dir.to_path_buf()),
            ..Overrides::default()
        };
        config::load(&cfg, true, &ov).unwrap()
    }

    #[test]
    fn fixed_settings_keep_their_values_and_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let old = load(
            dir.path(),
            "[server]\nport = 8080\nworkers = 2\n[log]\naccess = \"off\"\n",
        );
        let mut new = load(
            dir.path(),
            "[server]\nport = 8081\nworkers = 2\nengine = \"epoll\"\n\
             [limits]\nkeep_alive_timeout_secs = 9\n[log]\naccess = \"a.log\"\n",
        );
        let changed: Vec<String> = keep_fixed(&old, &mut new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changed,
            [
                "server.port (8080 → 8081)",
                "server.engine (auto → epoll)",
                "log.access (\"off\" → \"a.log\")",
            ]
        );
        assert_eq!(new.config.server.port, 8080);
        assert_eq!(new.config.server.engine, config::EngineChoice::Auto);
        assert_eq!(new.access, AccessTarget::Off);
        // What can change live is left as the file says.
        assert_eq!(new.config.limits.keep_alive_timeout_secs, 9);
    }

    #[test]
    fn another_log_file_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let old = load(dir.path(), "[log]\naccess = \"a.log\"\n");
        let mut new = load(dir.path(), "[log]\naccess = \"b.log\"\n");
        assert!(keep_fixed(&old, &mut new).is_empty());
        assert_eq!(new.access, AccessTarget::File(dir.path().join("b.log")));
    }
}
