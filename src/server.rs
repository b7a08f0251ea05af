//! Start-up and shutdown of the whole server: shared state, listeners, engine choice, worker
//! threads, the log writer, and stopping them all.
//!
//! Order matters and is kept here in one place: everything that can fail (config, root, log file,
//! engine, bind) fails before the first worker starts, with a message that says what to fix.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::Shared;
use crate::admin::AdminServer;
use crate::config::{AccessTarget, Loaded, LogFormat};
use crate::engine::epoll::Epoll;
use crate::engine::uring::Uring;
use crate::engine::worker::{self, WorkerError};
use crate::engine::{self, Engine, Unavailable};
use crate::log;
use crate::settings::{Settings, SettingsError};
use crate::stats::{Snapshot, WorkerPhase};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// io_uring was demanded and is unavailable; the text explains how to enable it.
    Engine(Unavailable),
    /// The root cannot be opened or a header rule compiled.
    Settings(SettingsError),
    /// The access log cannot be opened, or its writer started.
    Log(io::Error),
    /// The address cannot be listened on.
    Listen(io::Error),
    /// A worker thread could not be created.
    Thread(usize, io::Error),
    /// A worker could not start its runtime or listener.
    Worker(WorkerError),
    /// A worker ended before it reported ready.
    WorkerLost,
    /// The admin listener cannot listen on its address.
    Admin(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Engine(why) => write!(f, "engine = \"uring\" cannot run here: {why}"),
            StartError::Settings(e) => write!(f, "{e}"),
            StartError::Log(e) | StartError::Listen(e) | StartError::Admin(e) => write!(f, "{e}"),
            StartError::Thread(i, e) => write!(f, "cannot start worker {i}: {e}"),
            StartError::Worker(w) => write!(f, "worker {}: {}", w.index, w.error),
            StartError::WorkerLost => f.write_str("a worker died while starting"),
        }
    }
}

impl std::error::Error for StartError {}

/// A started server.
pub struct Running {
    /// The address the listeners are bound to (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The engine serving.
    pub engine: Engine,
    /// What the workers share.
    pub shared: Arc<Shared>,
    /// The admin listener, when `[admin] listen` is set; stopped after the workers.
    admin: Option<AdminServer>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    writer: log::Writer,
    /// Set before the workers are told to stop, so a worker's exit is expected from then on.
    stopping: Arc<AtomicBool>,
    /// Set by a worker that ended while the server was meant to be running.
    died: Arc<AtomicBool>,
}

/// Starts workers on `loaded`; returns once every worker is accepting. Everything that can fail
/// fails here, before the caller reports the server as listening.
pub fn start(loaded: Loaded) -> Result<Running, StartError> {
    let (engine, fallback) =
        engine::choose(loaded.config.server.engine).map_err(StartError::Engine)?;
    if let Some(why) = fallback {
        tracing::warn!("io_uring is unavailable, serving with the epoll engine: {why}");
    }
    raise_fd_limit();
    crate::panics::install_hook();
    let log_config = &loaded.config.log;
    let (format, buffer_lines) = (log_config.format, log_config.buffer_lines);
    let settings = Settings::open(loaded.config, &loaded.root, 1).map_err(StartError::Settings)?;
    let (access, writer) =
        log::start(&loaded.access, format, buffer_lines).map_err(StartError::Log)?;
    let addr = SocketAddr::new(loaded.host, settings.config.server.port);
    let listeners = engine::listener::bind_all(addr, loaded.workers).map_err(StartError::Listen)?;
    let addr = listeners[0].local_addr().map_err(StartError::Listen)?;
    let shared = Arc::new(Shared::new(settings, access, engine.name(), loaded.workers));
    let admin = match loaded.admin {
        Some(addr) => Some(AdminServer::start(addr, shared.clone()).map_err(StartError::Admin)?),
        None => None,
    };

    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut running = Running {
        addr,
        engine,
        shared: shared.clone(),
        admin,
        stop,
        workers: Vec::with_capacity(listeners.len()),
        writer,
        stopping: Arc::new(AtomicBool::new(false)),
        died: Arc::new(AtomicBool::new(false)),
    };
    for (index, listener) in listeners.into_iter().enumerate() {
        let (shared, stop_rx, ready) = (shared.clone(), stop_rx.clone(), ready_tx.clone());
        let watch = WorkerExit {
            index,
            shared: shared.clone(),
            stopping: running.stopping.clone(),
            died: running.died.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let _watch = watch;
                match engine {
                    Engine::Uring => {
                        worker::run_worker::<Uring>(shared, index, listener, stop_rx, ready)
                    }
                    Engine::Epoll => {
                        worker::run_worker::<Epoll>(shared, index, listener, stop_rx, ready)
                    }
                }
            });
        match spawned {
            Ok(h) => running.workers.push(h),
            Err(e) => {
                // Workers already running must not outlive the failed start.
                running.stop_workers();
                return Err(StartError::Thread(index, e));
            }
        }
    }
    drop(ready_tx);
    for _ in 0..running.workers.len() {
        let failed = match ready_rx.recv() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => StartError::Worker(e),
            Err(_) => StartError::WorkerLost,
        };
        running.stop_workers();
        return Err(failed);
    }
    Ok(running)
}

/// Lives on a worker thread's stack: if the thread ends (returns or panics) while the server is
/// meant to run, the process must not go on half-served and silent. It records the death and
/// raises SIGTERM, which the main thread is waiting for; the main thread then shuts the rest down
/// and exits non-zero.
struct WorkerExit {
    index: usize,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    died: Arc<AtomicBool>,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        self.shared.stats.workers[self.index].set_phase(WorkerPhase::Stopped);
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.died.store(true, Ordering::SeqCst);
        let how = if std::thread::panicking() {
            "panicked"
        } else {
            "returned"
        };
        tracing::error!(
            "worker {} {how} while serving; stopping the server",
            self.index
        );
        // SAFETY: kill(2) on our own process; SIGTERM is blocked in every thread and waited for by
        // the main thread, so it only wakes that wait.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    }
}

impl Running {
    fn stop_workers(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("a worker panicked");
            }
        }
    }

    /// Asks the access-log writer to reopen its file (SIGUSR1, for log rotation).
    pub fn reopen_log(&self) {
        self.writer.reopen();
    }

    /// Sends access-log lines from now on to `target` in `format`, opened now (see
    /// [`log::Writer::retarget`]); `Ok(false)` when there was nothing to change or no writer.
    pub fn retarget_log(&mut self, target: &AccessTarget, format: LogFormat) -> io::Result<bool> {
        self.writer.retarget(target, format)
    }

    /// Where the admin listener listens, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// True when a worker ended on its own while the server was running.
    pub fn worker_died(&self) -> bool {
        self.died.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets in-flight responses finish, flushes the access log.
    /// Returns the final counters and the number of log lines written.
    pub fn shutdown(mut self) -> io::Result<(Snapshot, u64)> {
        self.stop_workers();
        // Answering (503 on /readyz) until the drain is over; it holds the shared state too.
        drop(self.admin.take());
        let snapshot = self.shared.stats.snapshot();
        // The workers are gone; dropping the last handle on the shared state closes the log
        // channel, and the writer drains it and returns.
        let Running { shared, writer, .. } = self;
        drop(shared);
        let lines = writer.finish()?;
        Ok((snapshot, lines))
    }
}

/// Raises the soft descriptor limit to the hard one, and says which limit is in force (one line):
/// each connection and each file being sent holds a descriptor, and the usual soft limit of 1024
/// is far below what a busy server needs.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!("open files limit raised to {hard} (was {soft})"),
            Err(e) => tracing::warn!(
                "open files limit stays at {soft}: raising it to the hard limit {hard} failed: {e}"
            ),
        },
        Ok((soft, _)) => tracing::info!("open files limit {soft} (already the hard limit)"),
        Err(e) => tracing::warn!("cannot read the open files limit: {e}"),
    }
}
