//! Start-up and shutdown of the whole server: shared state, listeners, engine choice, worker
//! threads, the log writer, and the signals that stop them.
//!
//! Order matters and is kept here in one place: everything that can fail (config, root, log file,
//! engine, bind) fails before the first worker starts, with a message that says what to fix.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::Shared;
use crate::config::Loaded;
use crate::engine::{self, Engine};
use crate::files::Policy;
use crate::log;
use crate::stats::{Snapshot, Stats};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// io_uring was demanded and is unavailable; the text explains how to enable it.
    Engine(String),
    /// A file, socket or thread could not be set up.
    Io(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Engine(s) => write!(f, "engine = \"uring\" cannot run here: {s}"),
            StartError::Io(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for StartError {}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub engine: Engine,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    writer: log::Writer,
}

/// Starts workers on `loaded`; returns once every worker is accepting.
pub fn start(loaded: Loaded) -> Result<Running, StartError> {
    let (engine, fallback) =
        engine::choose(loaded.config.server.engine).map_err(|e| StartError::Engine(e.0))?;
    if let Some(why) = fallback {
        tracing::warn!("io_uring is unavailable, serving with the epoll engine: {why}");
    }
    raise_fd_limit();
    let root_fd: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&loaded.root)
        .map_err(|e| StartError::Io(format!("root {}: {e}", loaded.root.display())))?
        .into();
    let (access, writer) = log::start(&loaded.access).map_err(|e| StartError::Io(e.to_string()))?;
    let addr = SocketAddr::new(loaded.config.server.host, loaded.config.server.port);
    let listeners = engine::listener::bind_all(addr, loaded.workers)
        .map_err(|e| StartError::Io(e.to_string()))?;
    let addr = listeners[0]
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;

    let shared = Arc::new(Shared {
        policy: Policy::new(&loaded.config.files.allowed_extensions),
        stats: Stats::new(engine.name(), loaded.workers),
        log: access,
        root_fd,
        config: loaded.config,
    });

    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut workers = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let (shared, stop_rx, ready) = (shared.clone(), stop_rx.clone(), ready_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || match engine {
                Engine::Uring => engine::uring::run_worker(shared, index, listener, stop_rx, ready),
                Engine::Epoll => engine::epoll::run_worker(shared, index, listener, stop_rx, ready),
            });
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                // Workers already running must not outlive the failed start.
                let _ = stop.send(true);
                workers.into_iter().for_each(|w| drop(w.join()));
                return Err(StartError::Io(format!("cannot start worker {index}: {e}")));
            }
        }
    }
    drop(ready_tx);
    let mut running = Running {
        addr,
        engine,
        shared,
        stop,
        workers,
        writer,
    };
    for _ in 0..running.workers.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                running.stop_workers();
                return Err(StartError::Io(e));
            }
            Err(_) => {
                running.stop_workers();
                return Err(StartError::Io("a worker died while starting".into()));
            }
        }
    }
    Ok(running)
}

impl Running {
    fn stop_workers(&mut self) {
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("a worker panicked");
            }
        }
    }

    /// Stops accepting, lets in-flight responses finish, flushes the access log.
    /// Returns the final counters and the number of log lines written.
    pub fn shutdown(mut self) -> io::Result<(Snapshot, u64)> {
        self.stop_workers();
        let snapshot = self.shared.stats.snapshot();
        // The workers are gone; dropping the last handle on the shared state closes the log
        // channel, and the writer drains it and returns.
        let Running { shared, writer, .. } = self;
        drop(shared);
        let lines = writer.finish()?;
        Ok((snapshot, lines))
    }
}

/// Raises the soft descriptor limit to the hard one: each connection and each file being sent
/// holds a descriptor, and the default soft limit of 1024 is far below what a busy server needs.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
