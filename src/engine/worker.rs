//! A worker's life, shared by both engines: its runtime, its accept loop, its shutdown sequence.
//!
//! Each worker owns one listener and one single-threaded runtime. It caps its open connections
//! with a semaphore, spawns one local task per connection (a panic in one is contained to it:
//! see [`crate::panics`]), and on shutdown stops accepting, lets
//! in-flight responses finish (closing idle connections at once), and after
//! `shutdown_timeout_secs` aborts whatever is left. An engine plugs in through [`Driver`]: how to
//! run a runtime on this thread, and how to accept on it.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::Shared;
use crate::clock::Clock;
use crate::conn::{self, Ctx, Phase, Transport};
use crate::panics;

/// The engine-specific half of a listener.
#[allow(async_fn_in_trait)]
pub trait Acceptor {
    /// A connection, ready to be served.
    type Conn: Transport + 'static;
    /// Waits for the next connection.
    async fn accept(&self) -> io::Result<(Self::Conn, SocketAddr)>;
    /// Makes a pending accept fail, so the listener can be dropped without leaking a connection.
    fn stop(&self);
}

/// What an engine supplies to run a worker on the calling thread.
pub trait Driver {
    /// The engine's listener.
    type Acceptor: Acceptor;
    /// Starts this thread's runtime and runs `fut` on it to completion (inside a `LocalSet`).
    fn block_on(fut: impl Future<Output = ()>) -> io::Result<()>;
    /// Wraps a bound, listening socket; called inside the runtime.
    fn acceptor(listener: std::net::TcpListener, root: RawFd) -> io::Result<Self::Acceptor>;
}

/// Why a worker could not start.
#[derive(Debug)]
pub struct WorkerError {
    /// The worker's index.
    pub index: usize,
    /// What failed.
    pub error: io::Error,
}

/// Runs one worker on the calling thread until `stop`; reports start-up success through `ready`.
pub fn run_worker<D: Driver>(
    shared: Arc<Shared>,
    index: usize,
    listener: std::net::TcpListener,
    stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), WorkerError>>,
) {
    let report = ready.clone();
    let ran = D::block_on(async move {
        let acceptor = match D::acceptor(listener, shared.root_fd.as_raw_fd()) {
            Ok(a) => a,
            Err(error) => {
                let _ = ready.send(Err(WorkerError { index, error }));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        if index == 0 && crate::fault::injected("worker-exit") {
            return;
        }
        run(acceptor, shared, index, stop).await;
    });
    if let Err(error) = ran {
        let _ = report.send(Err(WorkerError { index, error }));
    }
}

/// Runs the accept loop until `stop` turns true, then drains. Must run inside a `LocalSet`.
async fn run<A: Acceptor>(
    acceptor: A,
    shared: Arc<Shared>,
    worker: usize,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.config.limits;
    let max = limits.max_connections_per_worker;
    let shutdown_after = Duration::from_secs(limits.shutdown_timeout_secs);
    let slots = Arc::new(Semaphore::new(max));
    let ctx = Rc::new(Ctx::new(shared.clone(), worker, Clock::System));
    let sweeper = tokio::task::spawn_local({
        let deadlines = ctx.deadlines.clone();
        async move { deadlines.run().await }
    });
    let stats = &shared.stats.workers[worker];

    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            r = acceptor.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                stats.connection_opened();
                let ctx = ctx.clone();
                tokio::task::spawn_local(async move {
                    let _open = OpenConnection {
                        ctx: &ctx,
                        _slot: permit,
                    };
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let socket = conn.handle();
                    let served = panics::contain(conn::serve(conn, peer.ip(), &ctx)).await;
                    if let Err(why) = served {
                        // A bug, confined to this connection: close it, say who it was, go on.
                        socket.shut(Shutdown::Both);
                        tracing::error!(
                            worker,
                            %peer,
                            "connection task failed with a panic: {why}; its connection was \
                             closed and the worker goes on"
                        );
                    }
                });
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little, go on.
                tracing::warn!(worker, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    acceptor.stop();
    ctx.set_phase(Phase::Draining);
    if tokio::time::timeout(shutdown_after, all_closed(&slots, max))
        .await
        .is_err()
    {
        tracing::warn!(
            worker,
            "connections still busy after {shutdown_after:?}; closing them"
        );
        ctx.set_phase(Phase::Aborting);
        let _ = tokio::time::timeout(Duration::from_secs(2), all_closed(&slots, max)).await;
    }
    sweeper.abort();
}

/// Resolves once every one of the `max` connection slots is free again.
async fn all_closed(slots: &Semaphore, max: usize) {
    let mut held = Vec::new();
    let mut left = max;
    while left > 0 {
        let n = u32::try_from(left).unwrap_or(u32::MAX);
        match slots.acquire_many(n).await {
            Ok(p) => held.push(p),
            Err(_) => return,
        }
        left -= n as usize;
    }
}

/// Held by a connection task: on drop the connection counts as closed and its slot (the permit)
/// frees up.
struct OpenConnection<'a> {
    ctx: &'a Ctx,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.ctx.shared.stats.workers[self.ctx.worker].connection_closed();
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
