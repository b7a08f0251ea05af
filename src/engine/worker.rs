//! A worker's accept loop and shutdown sequence, shared by both engines.
//!
//! Each worker owns one listener and one single-threaded runtime. It caps its open connections
//! with a semaphore, spawns one local task per connection, and on shutdown stops accepting, lets
//! in-flight responses finish (closing idle connections at once), and after
//! `shutdown_timeout_secs` aborts whatever is left.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::Shared;
use crate::conn::{self, ABORTING, Ctx, DRAINING, RUNNING, Transport};
use crate::deadline::Deadlines;
use crate::files::cache::FileCache;

/// The engine-specific half of a listener.
#[allow(async_fn_in_trait)]
pub trait Acceptor {
    type Conn: Transport + 'static;
    async fn accept(&self) -> io::Result<(Self::Conn, SocketAddr)>;
    /// Makes a pending accept fail, so the listener can be dropped without leaking a connection.
    fn stop(&self);
}

/// Runs the accept loop until `stop` turns true, then drains. Must run inside a `LocalSet`.
pub async fn run<A: Acceptor>(
    acceptor: A,
    shared: Arc<Shared>,
    worker: usize,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.config.limits;
    let files = &shared.config.files;
    let max = limits.max_connections_per_worker;
    let shutdown_after = Duration::from_secs(limits.shutdown_timeout_secs);
    let slots = Arc::new(Semaphore::new(max));
    let (phase_tx, phase) = watch::channel(RUNNING);
    let deadlines = Rc::new(Deadlines::default());
    let sweeper = tokio::task::spawn_local({
        let deadlines = deadlines.clone();
        async move { deadlines.run().await }
    });
    let ctx = Rc::new(Ctx {
        shared: shared.clone(),
        worker,
        phase,
        deadlines,
        cache: RefCell::new(FileCache::new(
            files.cache_bytes_per_worker,
            files.cache_max_file_bytes,
            Duration::from_secs(files.cache_revalidate_secs),
        )),
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
                    // Counted closed even if serving panics and the task unwinds.
                    let _open = OpenConnection {
                        ctx: &ctx,
                        _slot: permit,
                    };
                    conn::serve(conn, peer.ip().to_canonical(), &ctx).await;
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
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = phase_tx.send(DRAINING);
    if tokio::time::timeout(shutdown_after, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            worker,
            "connections still busy after {shutdown_after:?}; closing them"
        );
        let _ = phase_tx.send(ABORTING);
        let _ = tokio::time::timeout(Duration::from_secs(2), slots.acquire_many(all)).await;
    }
    sweeper.abort();
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
