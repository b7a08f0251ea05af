//! A small pool of threads for the rare blocking calls a worker must not make itself (reading a
//! directory for a listing), shared by both engines.
//!
//! Workers are single-threaded event loops: a blocking call on one stalls every connection it
//! serves. [`run`] hands the call to one of [`THREADS`] pool threads, started on first use, and
//! awaits the answer on a oneshot channel, which wakes a tokio-uring worker and a tokio one
//! alike. The queue is unbounded, but only a configured feature (`files.listing`) sends work
//! here, one job per request that needs it.

use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads in the pool.
pub const THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

fn pool() -> io::Result<&'static Sender<Job>> {
    // A `Sender` may be shared between threads as it is: no lock on the way in.
    static POOL: OnceLock<Result<Sender<Job>, String>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("uring-httpd-blocking-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job loses its answer (the caller sees an error), not
                            // this thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start the blocking pool: {e}"))?;
        }
        Ok(tx)
    });
    pool.as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// Runs `f` on the pool and returns its result.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    pool()?
        .send(job)
        .map_err(|_| io::Error::other("blocking pool stopped"))?;
    rx.await
        .map_err(|_| io::Error::other("blocking job panicked"))
}
