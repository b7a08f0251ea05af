//! The `Date` header value (IMF-fixdate), rendered at most once per second per thread.
//!
//! Every response needs it; formatting a date per request would be wasted work, so each worker
//! thread keeps the rendering for the current second and reuses it. The second comes from
//! `CLOCK_REALTIME_COARSE`, which the vDSO answers from the last timer tick without reading the
//! clock source: 2.5 ns against `SystemTime::now`'s 27 on a KVM guest, and never more than a tick
//! (1-4 ms) behind, which a header of whole seconds cannot show.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::time::{ClockId, clock_gettime};

struct Cached {
    /// `CLOCK_REALTIME_COARSE` was refused once (a sandbox's filter): use the precise clock.
    precise: bool,
    second: u64,
    text: String,
}

thread_local! {
    static CACHE: RefCell<Cached> = const { RefCell::new(Cached { precise: false, second: u64::MAX, text: String::new() }) };
}

/// Calls `f` with the current second since the epoch and the same time as an IMF-fixdate, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn with_now<R>(f: impl FnOnce(u64, &str) -> R) -> R {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Where the coarse clock is not offered, the precise one from then on; a time before
        // 1970 reads as 1970.
        let coarse = match c.precise {
            false => clock_gettime(ClockId::CLOCK_REALTIME_COARSE).ok(),
            true => None,
        };
        c.precise = coarse.is_none();
        let second = match coarse {
            Some(t) => u64::try_from(t.tv_sec()).unwrap_or(0),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if c.second != second {
            c.second = second;
            c.text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
        }
        f(c.second, &c.text)
    })
}

/// Calls `f` with the last second this thread rendered and its text, without reading the clock
/// (rendering the current one if it never has): for a header that must match the `Date` this
/// thread has just written.
pub fn with_last<R>(f: impl FnOnce(u64, &str) -> R) -> R {
    CACHE.with(|c| {
        let c = c.borrow();
        match c.second {
            u64::MAX => {
                drop(c);
                with_now(f)
            }
            second => f(second, &c.text),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_imf_fixdate() {
        let (second, s) = super::with_now(|second, s| (second, s.to_string()));
        assert_eq!(s.len(), 29, "{s}");
        assert!(s.ends_with(" GMT"), "{s}");
        let shown = httpdate::parse_http_date(&s).expect("parses back");
        assert_eq!(
            shown,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(second)
        );
        // The coarse clock is at most a tick behind the precise one, never ahead of it.
        let now = std::time::SystemTime::now();
        let behind = now.duration_since(shown).expect("not in the future");
        assert!(
            behind < std::time::Duration::from_secs(2),
            "{s} is {behind:?} old"
        );
        // The last rendering, without a clock read: the same second and text.
        let last = super::with_last(|second, s| (second, s.to_string()));
        assert_eq!(last, (second, s));
    }
}
