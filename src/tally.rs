//! Saying a repeated failure once, then counting it, and naming the failures that repeat when a
//! resource runs out ([`scarce`], [`describe`]). A [`Tally`] decides when a line about an
//! event that may repeat thousands of times a second (an accept failing for want of descriptors,
//! a 503 because a file cannot be opened) is due. The first occurrence is reported at once; later
//! ones are counted and reported at most once per interval, with their count. It only decides;
//! the caller words and writes the line. Time comes from the caller, so it is tested with plain
//! instants.

use std::io;
use std::time::Duration;

use crate::clock::Instant;

/// How often, at most, a repeated failure is reported after its first occurrence.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What to say about the event just recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The first occurrence: report it as it is.
    First,
    /// `count` occurrences (this one included) since the last report, `secs` ago.
    Since {
        /// Occurrences not reported yet.
        count: u64,
        /// Whole seconds since the last report.
        secs: u64,
    },
}

/// Counts one kind of repeated event; see the module documentation.
#[derive(Debug, Default)]
pub struct Tally {
    /// When the last report was made; `None` before the first occurrence.
    reported: Option<Instant>,
    /// Occurrences since then.
    unreported: u64,
}

impl Tally {
    /// Records an occurrence at `now`; returns what to report, if anything is due.
    pub fn event(&mut self, now: Instant) -> Option<Report> {
        if self.reported.is_none() {
            self.reported = Some(now);
            return Some(Report::First);
        }
        self.unreported += 1;
        self.due(now)
    }

    /// Reports the occurrences still counted, if the interval has passed (for a caller that
    /// learns the failure is over).
    pub fn due(&mut self, now: Instant) -> Option<Report> {
        let since = self.reported?;
        let elapsed = now.saturating_duration_since(since);
        if elapsed < INTERVAL || self.unreported == 0 {
            return None;
        }
        self.reported = Some(now);
        Some(Report::Since {
            count: std::mem::take(&mut self.unreported),
            secs: elapsed.as_secs(),
        })
    }

    /// Whether occurrences are counted and not reported yet.
    pub fn pending(&self) -> bool {
        self.unreported > 0
    }
}

/// Whether `e` says a resource ran out (descriptors, memory) rather than that one operation
/// failed.
pub fn scarce(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// An error as the operator needs it: with the descriptor limit when that is what ran out.
pub fn describe(e: &io::Error) -> String {
    use nix::sys::resource::{Resource, getrlimit};
    match e.raw_os_error() {
        Some(libc::EMFILE) => match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) => format!("{e} (limit {soft})"),
            Err(_) => e.to_string(),
        },
        Some(libc::ENFILE) => format!("{e} (the system-wide limit, fs.file-max)"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_a_count_per_interval() {
        let mut t = Tally::default();
        let t0 = Instant::now();
        assert_eq!(t.event(t0), Some(Report::First));
        for i in 1..2400 {
            assert_eq!(t.event(t0 + Duration::from_millis(i * 4)), None);
        }
        let at = t0 + INTERVAL;
        assert_eq!(
            t.event(at),
            Some(Report::Since {
                count: 2400,
                secs: 10
            })
        );
        assert_eq!(t.event(at + Duration::from_secs(1)), None);
        assert!(t.pending());
        assert_eq!(t.due(at + Duration::from_secs(5)), None);
        assert_eq!(
            t.due(at + Duration::from_secs(12)),
            Some(Report::Since { count: 1, secs: 12 })
        );
        assert!(!t.pending());
        assert_eq!(t.due(at + Duration::from_secs(60)), None, "nothing left");
    }
}
