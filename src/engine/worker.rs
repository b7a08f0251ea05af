//! A worker's life, shared by both engines: its runtime, its accept loop, its shutdown sequence.
//!
//! Each worker owns one listener and one single-threaded runtime. It caps its open connections
//! with a semaphore, spawns one local task per connection, and on shutdown stops accepting, lets
//! in-flight responses finish (closing idle connections at once), and after
//! `shutdown_timeout_secs` aborts whatever is left. An engine plugs in through [`Driver`]: how to
//! run a runtime on this thread, and how to accept on it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::Shared;
use crate::clock::Clock;
use crate::conn::{self, Ctx, Phase, Transport};
use crate::stats::WorkerPhase;

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
    fn acceptor(listener: std::net::TcpListener) -> io::Result<Self::Acceptor>;
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
        let acceptor = match D::acceptor(listener) {
            Ok(a) => a,
            Err(error) => {
                let _ = ready.send(Err(WorkerError { index, error }));
                return;
            }
        };
        // Serving from here on (its listener accepts), before start-up reports the server as
        // listening, so readiness never lags the listening line.
        shared.stats.workers[index].set_phase(WorkerPhase::Serving);
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
    // Fixed for the process's life: a reload reports a change of it as needing a restart.
    let max = shared.current().config.limits.max_connections_per_worker;
    let slots = Arc::new(Semaphore::new(max));
    let ctx = Rc::new(Ctx::new(shared.clone(), worker, Clock::System));
    let sweeper = tokio::task::spawn_local({
        let deadlines = ctx.deadlines.clone();
        async move { deadlines.run().await }
    });
    let stats = ctx.stats();

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
                let settings = ctx.settings_for_new_connection();
                tokio::task::spawn_local(async move {
                    // Counted closed even if serving panics and the task unwinds.
                    let _open = OpenConnection {
                        ctx: &ctx,
                        _slot: permit,
                    };
                    conn::serve(conn, peer.ip().to_canonical(), &ctx, settings).await;
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
    // The drain's limit is the one in force when it starts (a reload may have changed it).
    let shutdown_after = Duration::from_secs(shared.current().config.limits.shutdown_timeout_secs);
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
    stats.set_phase(WorkerPhase::Stopped);
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
        self.ctx.stats().connection_closed();
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
