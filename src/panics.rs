//! Keeping a panic inside the connection it happened in.
//!
//! A bug that panics while one connection is served must cost that connection, not its worker
//! (and every connection on it) or the process. Both engines run connections as local tasks, and
//! tokio already catches a panicking task so the worker thread lives on; but the panic would be
//! printed by the default hook without saying which client caused it, the socket would be left to
//! whatever the unwinding happened to drop, and nothing would say the worker went on. So each
//! connection future is polled through [`contain`], which catches the unwind itself, and a panic
//! hook ([`install_hook`]) keeps quiet about panics that [`contain`] will report: the worker then
//! logs exactly one line naming the peer, and shuts the socket down.
//!
//! Catching is sound here because a connection shares little with its worker, and nothing that
//! a half-finished operation could leave broken: counters are atomics, the file cache and the
//! deadline table are `RefCell`s whose borrows unwind with the panic and whose contents are
//! consistent between their operations, and the socket is shut down afterwards.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Set while [`contain`] polls its future: a panic now is reported by `contain`'s caller.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last contained panic (message and location).
    static SEEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic caught by [`contain`]: its message and, when the hook is installed, where it
/// happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic(pub String);

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Installs (once per process) a panic hook that stays silent about panics inside [`contain`]
/// and hands their message and location to it; every other panic goes to the hook that was there
/// before (the default one prints it).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.get() {
                let message = payload_text(info.payload());
                let text = match info.location() {
                    Some(at) => format!("{message} at {}:{}", at.file(), at.line()),
                    None => message.to_string(),
                };
                SEEN.set(Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// The text of a panic's payload (`panic!` with a literal or a format string).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a non-text panic)")
}

/// Runs `fut` to completion, turning a panic while it is polled into `Err` instead of unwinding
/// further. The future is dropped where it stood (its locals unwound with the panic).
///
/// A plain future wrapping `fut` in place, not an `async fn`: an async fn's state would hold the
/// argument and its pinned copy side by side, doubling what every idle connection's task holds
/// (about 660 bytes per connection, measured).
pub fn contain<F: Future>(fut: F) -> Contain<F> {
    Contain { fut }
}

/// The future of [`contain`].
pub struct Contain<F> {
    fut: F,
}

impl<F: Future> Future for Contain<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is pinned with `self`: it is never moved out, nor is `Contain` Unpin
        // unless `F` is.
        let mut fut = unsafe { self.map_unchecked_mut(|c| &mut c.fut) };
        CONTAINED.set(true);
        let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        CONTAINED.set(false);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => {
                let seen = SEEN.take();
                let text = seen.unwrap_or_else(|| payload_text(&*payload).to_string());
                Poll::Ready(Err(Panic(text)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(fut: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(fut)
    }

    #[test]
    fn a_panic_inside_is_returned_with_its_message_and_location() {
        install_hook();
        let got = block_on(contain(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
        }));
        let Err(Panic(text)) = got else {
            panic!("not caught: {got:?}")
        };
        assert!(text.starts_with("boom 7 at src/panics.rs:"), "{text}");
        // Outside `contain` the flag is down again, so other panics reach the usual hook.
        assert!(!CONTAINED.get());
    }

    #[test]
    fn a_future_that_completes_is_untouched() {
        assert_eq!(block_on(contain(async { 5 })), Ok(5));
    }
}
