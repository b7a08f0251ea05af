//! One generation of the configuration: the validated [`Config`], the root directory's
//! descriptor, and what is compiled from them once (the extension policy, the header rules and
//! error pages).
//!
//! A generation never changes after it is built. A reload (SIGHUP, see [`crate::reload`]) builds
//! a new one beside it and swaps it into [`crate::Shared::settings`] whole; each worker loads the
//! current one once per accepted connection, and the connection keeps its `Arc` until it closes,
//! so a request never sees half of one configuration and half of another, and the old root
//! descriptor stays open until its last connection is gone. Nothing here is touched on the
//! request path except through that `Arc`.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::files::Policy;
use crate::site::SiteRules;

/// The settings a connection is served with.
#[derive(Debug)]
pub struct Settings {
    /// 1 at start, one more at each successful reload. The per-worker file cache belongs to one
    /// generation and serves no other.
    pub generation: u64,
    /// The validated configuration.
    pub config: Config,
    /// The root opened `O_PATH | O_DIRECTORY`: every stat and open is relative to it.
    pub root_fd: OwnedFd,
    /// Which extensions are served, with their types.
    pub policy: Policy,
    /// Header rules and error pages, compiled once.
    pub site: SiteRules,
}

/// Why a generation could not be built from a validated config.
#[derive(Debug)]
pub enum SettingsError {
    /// The root directory cannot be opened.
    Root(PathBuf, io::Error),
    /// A header rule could not be compiled.
    Rules(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Root(path, e) => write!(f, "root {}: {e}", path.display()),
            SettingsError::Rules(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Opens `root` and compiles the rules of `config` into generation `generation`.
    pub fn open(config: Config, root: &Path, generation: u64) -> Result<Settings, SettingsError> {
        let root_fd: OwnedFd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(root)
            .map_err(|e| SettingsError::Root(root.to_path_buf(), e))?
            .into();
        Settings::with_root(config, root_fd, generation)
    }

    /// Builds a generation on an already open root descriptor.
    pub fn with_root(
        config: Config,
        root_fd: OwnedFd,
        generation: u64,
    ) -> Result<Settings, SettingsError> {
        Ok(Settings {
            generation,
            site: SiteRules::new(&config).map_err(SettingsError::Rules)?,
            policy: Policy::for_config(&config.files),
            root_fd,
            config,
        })
    }

    /// Settings for unit tests: `/` as a root nobody opens through.
    #[cfg(test)]
    pub(crate) fn for_tests(config: Config) -> Settings {
        let root = std::fs::File::open("/").expect("open /");
        Settings::with_root(config, root.into(), 1).expect("valid rules")
    }
}
