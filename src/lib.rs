//! uring-httpd: a static-file HTTP/1.1 server for Linux on io_uring, with an epoll engine beside
//! it serving the same HTTP core.
//!
//! A request walks one way through the crate:
//! accept ([`engine`]) → read ([`engine`]) → parse ([`http`]) → resolve under root ([`files`])
//! → decide ([`respond`]) → send ([`engine`]) → access record ([`log`]) and counters ([`stats`]).
//! [`conn`] drives that walk for one connection, over whichever engine accepted it;
//! [`server`] starts and stops the whole.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod conn;
pub mod deadline;
pub mod engine;
pub mod files;
pub mod http;
pub mod log;
pub mod probe;
pub mod respond;
pub mod server;
pub mod stats;

use std::os::fd::OwnedFd;

/// Everything the workers share, read-only after start (the counters are atomics).
#[derive(Debug)]
pub struct Shared {
    pub config: config::Config,
    /// The root opened `O_PATH | O_DIRECTORY`: every stat and open is relative to it.
    pub root_fd: OwnedFd,
    pub policy: files::Policy,
    pub stats: stats::Stats,
    pub log: log::AccessLog,
}
