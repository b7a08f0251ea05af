//! Runs the engine lab's own tests under `cargo test`. The lab (`benches/lab/`) is a
//! `harness = false` bench, whose `#[test]` functions `cargo test` never runs; this file includes
//! its modules by path, so their `#[cfg(test)]` tests (the wrk, strace and /proc parsers, the
//! report's medians and formatting, the command line, the floors' head counting and response
//! accounting, the server configuration templates, the HTTP core of the floors' `core`
//! experiment, the connection loop of their `serve` experiment on both reactors) run here.
//! `main.rs` is left out: it only schedules runs. The two socket tests drive the floors' modes on
//! 127.0.0.1 with a few requests; nothing here starts another server or a load.

// The lab's modules are included whole; what only the lab binary calls is unused here.
#![allow(dead_code)]

#[path = "../benches/lab/chart.rs"]
mod chart;
#[path = "../benches/lab/floor_core.rs"]
mod floor_core;
#[path = "../benches/lab/floor_epoll.rs"]
mod floor_epoll;
#[path = "../benches/lab/floor_proto.rs"]
mod floor_proto;
#[path = "../benches/lab/floor_serve.rs"]
mod floor_serve;
#[path = "../benches/lab/floor_uring.rs"]
mod floor_uring;
#[path = "../benches/lab/measure.rs"]
mod measure;
#[path = "../benches/lab/options.rs"]
mod options;
#[path = "../benches/lab/report.rs"]
mod report;
#[path = "../benches/lab/servers.rs"]
mod servers;
#[path = "../benches/lab/wrk.rs"]
mod wrk;
