//! uring-httpd: a static-file HTTP/1.1 server for Linux on io_uring, with an epoll engine beside
//! it serving the same HTTP core.
//!
//! A request walks one way through the crate:
//! accept ([`engine`]) → read ([`engine`]) → parse ([`http`]) → [`exchange`]: resolve under root
//! ([`files`]), cache, policy, every status decision, plan rendering ([`respond`]) → send
//! ([`engine`]) → access record ([`log`]) and counters ([`stats`]).
//! [`conn`] drives that walk for one connection, over whichever engine accepted it: it reads,
//! parses, performs the exchange's steps with the engine's primitives, sends, logs and counts.
//! [`server`] starts and stops the whole; [`reload`] swaps in a new [`settings`] generation on
//! SIGHUP ([`signals`]); [`admin`] serves the counters as [`metrics`], health and readiness.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod blocking;
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
pub mod metrics;
pub mod panics;
pub mod probe;
pub mod reload;
pub mod respond;
pub mod server;
pub mod settings;
pub mod signals;
pub mod site;
pub mod stats;
pub mod tally;

use std::sync::Arc;

use arc_swap::ArcSwap;

/// Everything the workers share for the life of the process. The settings are swapped whole by
/// a reload and read lock-free; the counters are atomics; the log is a channel.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force and what is derived from it. Load it once per connection
    /// ([`ArcSwap::load_full`]) and keep that `Arc` for the connection's life.
    pub settings: ArcSwap<settings::Settings>,
    /// The counters.
    pub stats: stats::Stats,
    /// The workers' end of the access log.
    pub log: log::AccessLog,
}

impl Shared {
    /// Shared state for `workers` workers of `engine`, starting with `settings`.
    pub fn new(
        settings: settings::Settings,
        log: log::AccessLog,
        engine: &'static str,
        workers: usize,
    ) -> Shared {
        Shared {
            settings: ArcSwap::from_pointee(settings),
            stats: stats::Stats::new(engine, workers),
            log,
        }
    }

    /// The settings in force now.
    pub fn current(&self) -> Arc<settings::Settings> {
        self.settings.load_full()
    }
}
