//! [`Reused`]: a future pinned on the heap, like `Box::pin`, whose memory goes back to a per-thread
//! free list when it is dropped, so the next future of the same layout takes it without `malloc`.
//!
//! A connection boxes the answer to each request (2.6 KiB at its deepest) so that idle
//! connections do not carry that space in their own future; with a plain `Box` that was one
//! `malloc` and one `free` per request, 0.8% of the engine's CPU at 50 connections. The list keeps
//! as many as a worker answers at once ([`KEEP`]).

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Freed allocations a thread keeps: an io_uring worker at 1,024 connections answers hundreds of
/// requests at once, each waiting for its send's completion; beyond this many they are freed as
/// they end (at most 1,024 × 2.6 KiB kept per worker, until [`release`]).
const KEEP: usize = 1024;

/// A thread's freed allocations, each with the layout it was made for.
struct FreeList(Vec<(Layout, NonNull<u8>)>);

impl Drop for FreeList {
    fn drop(&mut self) {
        for (layout, ptr) in self.0.drain(..) {
            // SAFETY: `ptr` was allocated with the global allocator for `layout` (in
            // `Reused::new`) and no `Reused` points to it any more.
            unsafe { alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static FREE: RefCell<FreeList> = const { RefCell::new(FreeList(Vec::new())) };
}

/// A pinned, heap-allocated future whose allocation is reused by the next one of its layout on
/// the same thread.
pub(super) struct Reused<F> {
    ptr: NonNull<F>,
    /// Owns an `F` (for drop checking).
    _owns: PhantomData<F>,
}

impl<F: Future> Reused<F> {
    /// Moves `future` to the heap, into a freed allocation of its layout when the thread has one.
    pub(super) fn new(future: F) -> Reused<F> {
        let layout = Layout::new::<F>();
        let ptr: NonNull<F> = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take(layout)
                .or_else(|| {
                    // SAFETY: `layout` has a non-zero size.
                    NonNull::new(unsafe { alloc::alloc(layout) })
                })
                .unwrap_or_else(|| alloc::handle_alloc_error(layout))
                .cast()
        };
        // SAFETY: `ptr` is valid for writes of an `F` and aligned for it (allocated for its
        // layout, or dangling and aligned for a zero-sized `F`), and holds no live value.
        unsafe { ptr.as_ptr().write(future) };
        Reused {
            ptr,
            _owns: PhantomData,
        }
    }
}

/// Frees every allocation this thread keeps (a worker giving memory back after a drain).
pub(super) fn release() {
    drop(FREE.replace(FreeList(Vec::new())));
}

/// A freed allocation for `layout`, if the last one freed on this thread has it.
fn take(layout: Layout) -> Option<NonNull<u8>> {
    FREE.try_with(|f| {
        let list = &mut f.borrow_mut().0;
        match list.last() {
            Some((l, _)) if *l == layout => list.pop().map(|(_, p)| p),
            _ => None,
        }
    })
    .ok()
    .flatten()
}

/// Keeps `ptr` (allocated for `layout`) for the next future of that layout, or frees it.
fn give_back(layout: Layout, ptr: NonNull<u8>) {
    let kept = FREE
        .try_with(|f| {
            let list = &mut f.borrow_mut().0;
            let keep = list.len() < KEEP;
            if keep {
                list.push((layout, ptr));
            }
            keep
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: allocated with the global allocator for `layout`, and no longer used.
        unsafe { alloc::dealloc(ptr.as_ptr(), layout) };
    }
}

// The future never moves out of its allocation until it is dropped there, as in a `Box`.
impl<F> Unpin for Reused<F> {}

impl<F: Future> Future for Reused<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `ptr` points to a live `F` owned by this `Reused` alone, which stays at that
        // address until `drop`: pinning it there is sound.
        let future = unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) };
        future.poll(cx)
    }
}

impl<F> Drop for Reused<F> {
    fn drop(&mut self) {
        /// Gives the memory back even when the future's drop panics, as `Box` frees it.
        struct GiveBack(Layout, NonNull<u8>);
        impl Drop for GiveBack {
            fn drop(&mut self) {
                if self.0.size() != 0 {
                    give_back(self.0, self.1);
                }
            }
        }
        let _memory = GiveBack(Layout::new::<F>(), self.ptr.cast());
        // SAFETY: `ptr` points to a live `F` that nothing else owns; it is not used again (the
        // guard above only hands the memory on, after this).
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Waker;

    /// Counts its drops.
    struct Counted(Rc<Cell<u32>>, #[allow(dead_code)] [u8; 100]);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn poll<F: Future>(f: &mut Reused<F>) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn runs_the_future_and_drops_what_it_holds_once() {
        let drops = Rc::new(Cell::new(0));
        let held = Counted(drops.clone(), [0; 100]);
        let mut f = Reused::new(async move {
            let held = held; // the whole value, not a copy of its array
            std::future::ready(()).await;
            held.1.len()
        });
        assert_eq!(poll(&mut f), Poll::Ready(100));
        drop(f);
        assert_eq!(drops.get(), 1, "what the future held is dropped once");
        // Dropped before it ran: its captures are dropped by `Reused`'s drop, once.
        let unrun = Reused::new(std::future::ready(Counted(drops.clone(), [0; 100])));
        drop(unrun);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn the_next_future_of_a_layout_takes_the_freed_allocation() {
        let a = Reused::new(std::future::ready([1u8; 300]));
        let first = a.ptr.cast::<u8>();
        drop(a);
        let mut b = Reused::new(std::future::ready([2u8; 300]));
        assert_eq!(b.ptr.cast::<u8>(), first, "same layout: same memory");
        assert_eq!(
            poll(&mut b),
            Poll::Ready([2u8; 300]),
            "and the new value in it"
        );
        // Another layout does not take it (it is still b's), nor would it fit.
        let c = Reused::new(std::future::ready([3u64; 100]));
        assert_ne!(c.ptr.cast::<u8>(), first);
    }

    #[test]
    fn keeps_at_most_keep_allocations() {
        let many: Vec<_> = (0..KEEP + 10)
            .map(|i| Reused::new(std::future::ready([i as u8; 64])))
            .collect();
        drop(many);
        let kept = FREE.with_borrow(|f| f.0.len());
        assert_eq!(kept, KEEP);
        release();
        assert!(
            FREE.with_borrow(|f| f.0.is_empty()),
            "released: nothing kept"
        );
        let again = Reused::new(std::future::ready([7u8; 64]));
        drop(again);
        assert_eq!(
            FREE.with_borrow(|f| f.0.len()),
            1,
            "and the list works on after it"
        );
    }

    #[test]
    fn a_future_whose_drop_panics_still_gives_its_memory_back() {
        struct Panics(#[allow(dead_code)] [u8; 40]);
        impl Drop for Panics {
            fn drop(&mut self) {
                panic!("injected");
            }
        }
        let f = Reused::new(std::future::ready(Panics([0; 40])));
        let memory = f.ptr.cast::<u8>();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(f)));
        assert!(unwound.is_err());
        assert_eq!(
            FREE.with_borrow(|f| f.0.last().map(|(_, p)| *p)),
            Some(memory)
        );
    }

    #[test]
    fn zero_sized_futures_allocate_nothing() {
        let mut f = Reused::new(std::future::pending::<()>());
        assert_eq!(size_of::<std::future::Pending<()>>(), 0);
        assert_eq!(poll(&mut f), Poll::Pending);
        drop(f);
        assert!(FREE.with_borrow(|f| f.0.is_empty()));
    }
}
