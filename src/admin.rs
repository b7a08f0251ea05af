//! The admin listener (`[admin] listen`, off by default): monitoring over HTTP on its own
//! address, served by one small thread with a tokio current-thread runtime of its own, away from
//! the workers.
//!
//! It answers `GET /metrics` (see [`crate::metrics`]), `GET /healthz` (200 while the process is
//! alive) and `GET /readyz` (200 while every worker is serving, 503 while one starts or drains),
//! HEAD of each, 404 for any other path and 405 for any other method. It never serves a file, its
//! requests are not counted as served requests and not access-logged, and each connection gets
//! one answer and is closed. It runs until the workers have drained, so `/readyz` says 503 for the
//! whole of a graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

use crate::Shared;
use crate::http::{Head, Status};
use crate::metrics::{self, Metrics};

/// A request head larger than this is refused.
const MAX_HEAD: usize = 8192;
/// A connection that has not sent its request (or read its answer) by then is closed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;

/// The running admin listener; dropping it stops the thread.
pub struct AdminServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` now (so a bad address fails start-up) and starts serving on its own thread.
    pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<AdminServer> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("admin listener {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                let metrics = Arc::new(Metrics::new(shared.clone()));
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => run(l, shared, metrics, stopped).await,
                        Err(e) => tracing::error!("admin listener: {e}"),
                    }
                });
            })?;
        Ok(AdminServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    mut stopped: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("admin listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (shared, metrics) = (shared.clone(), metrics.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, serve(stream, &shared, &metrics)).await;
            drop(slot);
        });
    }
}

/// One answer, then close.
async fn serve(mut stream: TcpStream, shared: &Shared, metrics: &Metrics) {
    let mut buf = Vec::with_capacity(1024);
    let answer = loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("");
                let path = req.path.unwrap_or("");
                break route(method, path, shared, metrics).render(method == "HEAD");
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => break Answer::text(Status::BadRequest, "bad request\n").render(false),
        }
    };
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// A response, before it is rendered.
struct Answer {
    status: Status,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(status: Status, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// The bytes on the wire, a head like the server's own (`Server`, `Date`); a HEAD answer
    /// keeps the head that announces the body.
    fn render(&self, head_only: bool) -> Vec<u8> {
        let mut head = Head::new(Vec::new(), self.status);
        head.header("Content-Type", self.content_type.as_bytes())
            .header("Cache-Control", b"no-store");
        if self.status == Status::MethodNotAllowed {
            head.header("Allow", b"GET, HEAD");
        }
        let mut out = head.finish(self.body.len() as u64, false);
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The answer to `method target`.
fn route(method: &str, target: &str, shared: &Shared, metrics: &Metrics) -> Answer {
    if method != "GET" && method != "HEAD" {
        return Answer::text(Status::MethodNotAllowed, "method not allowed\n");
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match path {
        "/metrics" => Answer {
            status: Status::Ok,
            content_type: metrics::CONTENT_TYPE,
            body: metrics.render(),
        },
        "/healthz" => Answer::text(Status::Ok, "ok\n"),
        "/readyz" => readiness(shared),
        _ => Answer::text(Status::NotFound, "not found\n"),
    }
}

/// 200 while every worker serves; 503 with the phase of each one that does not.
fn readiness(shared: &Shared) -> Answer {
    if shared.stats.ready() {
        return Answer::text(Status::Ok, "ready\n");
    }
    let phases: Vec<String> = (shared.stats.workers.iter().enumerate())
        .map(|(i, w)| format!("worker {i} {:?}", w.phase()))
        .collect();
    Answer::text(
        Status::ServiceUnavailable,
        format!("not ready: {}\n", phases.join(", ")),
    )
}
