//! uring-httpd: a static-file HTTP/1.1 server for Linux on io_uring, with an epoll engine beside
//! it serving the same HTTP core.
//!
//! A request walks one way through the crate:
//! accept ([`engine`]) → read ([`engine`]) → parse ([`http`]) → [`exchange`]: resolve under root
//! ([`files`]), cache, policy, every status decision, plan rendering ([`respond`]) → send
//! ([`engine`]) → access record ([`log`]) and counters ([`stats`]).
//! [`conn`] drives that walk for one connection, over whichever engine accepted it: it reads,
//! parses, performs the exchange's steps with the engine's primitives, sends, logs and counts.
//! [`server`] starts and stops the whole.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]

pub mod clock;
pub mod config;
pub mod conn;
pub mod deadline;
pub mod engine;
pub mod exchange;
pub mod fault;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod log;
pub mod panics;
pub mod probe;
pub mod respond;
pub mod server;
pub mod site;
pub mod stats;
pub mod tally;

use std::os::fd::OwnedFd;

/// Everything the workers share, read-only after start (the counters are atomics).
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: config::Config,
    /// The root opened `O_PATH | O_DIRECTORY`: every stat and open is relative to it.
    pub root_fd: OwnedFd,
    /// Which extensions are served, with their types.
    pub policy: files::Policy,
    /// The counters.
    pub stats: stats::Stats,
    /// The workers' end of the access log.
    pub log: log::AccessLog,
    /// Header rules and error pages, compiled once.
    pub site: site::SiteRules,
}

impl Shared {
    /// Shared state for `workers` workers of `engine`.
    pub fn new(
        config: config::Config,
        root_fd: OwnedFd,
        log: log::AccessLog,
        engine: &'static str,
        workers: usize,
    ) -> Result<Shared, String> {
        Ok(Shared {
            site: site::SiteRules::new(&config)?,
            policy: files::Policy::for_config(&config.files),
            stats: stats::Stats::new(engine, workers),
            log,
            root_fd,
            config,
        })
    }

    /// Shared state for unit tests: one worker, no log, `/` as a root nobody opens through.
    #[cfg(test)]
    pub(crate) fn for_tests(config: config::Config) -> Shared {
        let root = std::fs::File::open("/").expect("open /");
        Shared::new(config, root.into(), log::AccessLog::off(), "test", 1).expect("valid rules")
    }
}
