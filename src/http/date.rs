//! The `Date` header value (IMF-fixdate), rendered at most once per second per thread.
//!
//! Every response needs it; formatting a date per request would be wasted work, so each worker
//! thread keeps the rendering for the current second and reuses it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

struct Cached {
    second: u64,
    text: String,
}

thread_local! {
    static CACHE: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: String::new() }) };
}

/// Calls `f` with the current time as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn with_now<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.second != second {
            c.second = second;
            c.text = httpdate::fmt_http_date(now);
        }
        f(&c.text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_imf_fixdate() {
        let s = super::with_now(|s| s.to_string());
        assert_eq!(s.len(), 29, "{s}");
        assert!(s.ends_with(" GMT"), "{s}");
        assert!(httpdate::parse_http_date(&s).is_ok());
    }
}
