//! Fault injection for tests, in debug builds only: `URING_HTTPD_FAULT=<name>` in the environment
//! makes the server fail in the named way, so tests can prove how the process reacts. Release
//! builds compile every check to `false`.
//!
//! Faults: `worker-exit` (worker 0 returns right after it reported ready); `worker-panic`
//! (worker 0 panics there instead); `conn-panic` (a request for `/__panic` panics inside its
//! connection's task); `no-recv-ring` (the io_uring engine does without its receive ring, as on
//! kernels before 6.0).

/// Whether the fault `name` is switched on. Read at start-up points only, never per request.
pub fn injected(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var("URING_HTTPD_FAULT").is_ok_and(|v| v == name)
}
