//! The per-worker cache of small files: their bytes and their [`FileInfo`], keyed by the
//! normalised target ([`key`]), so a hit costs no file-system call at all.
//!
//! Each worker owns its cache (no lock, no sharing). An entry is trusted for `revalidate` after it
//! was last checked; after that the next request re-stats the file, and a changed size or mtime
//! (or a vanished file) drops the entry. This is nginx's `open_file_cache_valid`, applied to
//! content. Only files that were served as 200 through the full checks (policy, dotfiles,
//! `openat2` beneath the root) are ever inserted.
//!
//! Memory is bounded per worker, and the bound covers every body the cache ever handed out, not
//! only those it still holds: a file's bytes are read under a [`Reservation`] taken from the
//! budget first, and go back to it only when the last holder of the body drops it. So a body
//! still being sent to a slow reader after its entry was evicted keeps counting, and a worker
//! whose budget is taken by such bodies serves further misses from the file instead of reading
//! them into memory.
//!
//! An entry holds a file's precompressed variants too (its `.br`, `.zst`, `.gz` sidecars), with
//! what the probe found beside it ([`Sidecars`]); revalidation compares the sidecars as well, so
//! a sidecar added, changed or removed is noticed like a change to the file itself.

use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Instant;
use crate::config;

use crate::files::{self, FileInfo, Meta, PathError, Sidecars};
use crate::http::coding::Coding;

thread_local! {
    /// Scratch space for [`with_key`]: one per worker thread, reused by every request.
    static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f` with the cache key of a decoded request path, built in a reused buffer (no
/// allocation once the buffer has grown to the longest path seen): the normalised relative path,
/// plus `/` when a directory was asked for ([`files::normalize_into`]). `/a.css`, `//a.css` and
/// `/x/../a.css` share one entry.
pub fn with_key<R>(
    path: &[u8],
    policy: &files::Policy,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, PathError> {
    KEY.with_borrow_mut(|k| {
        files::normalize_into(path, policy, k)?;
        Ok(f(k))
    })
}

/// A precompressed variant of a cached file.
#[derive(Debug)]
pub struct Variant {
    /// Its content coding.
    pub coding: Coding,
    /// The sidecar's facts (the file's type, the sidecar's validators).
    pub info: FileInfo,
    /// The sidecar's whole content (the `Rc` makes a request's share of it a plain count).
    pub body: Rc<Bytes>,
}

/// A cached file, as a lookup hands it out: cheap to clone.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The file's metadata and rendered headers.
    pub info: Rc<FileInfo>,
    /// The file's whole content (the `Rc` makes a request's share of it a plain count).
    pub body: Rc<Bytes>,
    /// Its precompressed variants, in no particular order; empty for most files.
    pub variants: Rc<[Variant]>,
}

/// A cached file.
#[derive(Debug, Clone)]
struct Entry {
    /// Path relative to the root, for revalidation.
    rel: CString,
    hit: Hit,
    /// What the last probe found beside the file (all `None` when none was made).
    sidecars: Sidecars,
    checked: Instant,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Not cached.
    Miss,
    /// Checked recently enough: serve it.
    Fresh(Hit),
    /// Stat `rel` (and its sidecars, when they are served and the file is unchanged, as `meta`
    /// says it was) and call [`FileCache::revalidate`] before serving.
    Stale(CString, Meta),
}

/// Memory an entry costs besides its body and key: the `FileInfo` strings, the relative path,
/// the map slot. Counting it keeps many tiny entries within the budget too.
const ENTRY_OVERHEAD: usize = 512;

/// What an entry costs besides its bodies, which count through their [`Reservation`] for as
/// long as anything holds them.
fn cost(key: &[u8], hit: &Hit) -> usize {
    key.len() + ENTRY_OVERHEAD * (1 + hit.variants.len())
}

/// The bytes of an entry's body and variants.
fn bodies(hit: &Hit) -> usize {
    hit.body.len() + hit.variants.iter().map(|v| v.body.len()).sum::<usize>()
}

/// Bytes taken from a cache's budget before a file is read into memory. What is not turned into
/// bodies ([`Reservation::hold`]) goes back when it is dropped (the read failed, a sidecar
/// changed, the connection went away).
#[derive(Debug)]
pub struct Reservation {
    bytes: usize,
    used: Arc<AtomicUsize>,
}

impl Reservation {
    /// Bytes read under this reservation, as a body that gives them back to the budget when its
    /// last clone is dropped, wherever that is (the cache, or a response still being sent).
    pub fn hold(&mut self, body: Vec<u8>) -> Bytes {
        let n = body.len();
        let taken = n.min(self.bytes);
        self.bytes -= taken;
        // A file that grew since its size was reserved: count what it brought.
        self.used.fetch_add(n - taken, Relaxed);
        let part = Reservation {
            bytes: n,
            used: self.used.clone(),
        };
        Bytes::from_owner(Held { body, _part: part })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Relaxed);
    }
}

/// A cached body and its share of the budget, released together.
struct Held {
    body: Vec<u8>,
    _part: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// One worker's cache of small files, bounded in bytes.
#[derive(Debug)]
pub struct FileCache {
    /// foldhash, not SipHash: a lookup per request, and the keys are paths of files that exist
    /// (a miss stores nothing), so a client cannot fill it with colliding keys.
    map: HashMap<Vec<u8>, Entry, foldhash::fast::RandomState>,
    /// Everything counted against the budget: the entries' keys and fixed overheads, bodies read
    /// under this cache's reservations and not yet dropped by their last holder, reservations
    /// outstanding. Shared with the worker's counters ([`FileCache::counted_in`]), which read it
    /// when scraped, and with the cache that replaces this one on a reload, so bodies of the old
    /// one still in flight keep counting.
    used: Arc<AtomicUsize>,
    /// The entries' keys and fixed overheads (part of `used`).
    overhead: usize,
    /// The bodies of the entries in the map (part of `used`).
    cached: usize,
    max_bytes: usize,
    max_file: u64,
    revalidate: Duration,
    /// The settings generation whose root and rules filled it.
    generation: u64,
}

impl FileCache {
    /// `max_file` 0 disables the cache.
    pub fn new(max_bytes: usize, max_file: u64, revalidate: Duration) -> FileCache {
        FileCache {
            map: HashMap::default(),
            used: Arc::new(AtomicUsize::new(0)),
            overhead: 0,
            cached: 0,
            max_bytes,
            max_file: if max_bytes == 0 { 0 } else { max_file },
            revalidate,
            generation: 0,
        }
    }

    /// The cache the `[files]` settings of settings generation `generation` describe.
    pub fn for_config(files: &config::Files, generation: u64) -> FileCache {
        let mut c = FileCache::new(
            files.cache_bytes_per_worker,
            files.cache_max_file_bytes,
            Duration::from_secs(files.cache_revalidate_secs),
        );
        c.generation = generation;
        c
    }

    /// The same cache, counting its memory in `used` (a worker's counter, read when scraped),
    /// which nothing else counts in. For a cache that holds nothing yet.
    pub fn counted_in(mut self, used: Arc<AtomicUsize>) -> FileCache {
        debug_assert_eq!(self.bytes(), 0);
        self.used = used;
        self
    }

    /// The cache that replaces this one for settings generation `generation`: empty, and
    /// counting this one's bodies still in flight against its budget.
    pub fn renewed(&self, files: &config::Files, generation: u64) -> FileCache {
        let mut c = FileCache::for_config(files, generation);
        c.used = self.used.clone();
        c
    }

    /// The settings generation this cache serves (see [`crate::settings::Settings`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether it keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.max_file > 0
    }

    /// Memory counted against the budget now: live bodies (cached or still being sent),
    /// reservations, keys and the fixed overhead per entry.
    pub fn bytes(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Takes `size` bytes from the budget for a file (and its sidecars) about to be read into
    /// memory, evicting entries to make room; `None` when bodies still held elsewhere leave too
    /// little, and the file should be served from disk.
    pub fn reserve(&mut self, size: u64) -> Option<Reservation> {
        let size = usize::try_from(size).ok()?;
        if !self.make_room(size) {
            return None;
        }
        self.used.fetch_add(size, Relaxed);
        Some(Reservation {
            bytes: size,
            used: self.used.clone(),
        })
    }

    /// Evicts entries until `extra` more bytes fit the budget. Evicts nothing, and says no, when
    /// they would not fit even with every entry gone: bodies held elsewhere (by slow readers of
    /// evicted entries) leave too little, and evicting the entries being served would only turn
    /// hits into misses.
    fn make_room(&mut self, extra: usize) -> bool {
        let held = self.bytes().saturating_sub(self.overhead + self.cached);
        if held.saturating_add(extra) > self.max_bytes {
            return false;
        }
        while self.bytes() + extra > self.max_bytes {
            if self.evict_one().is_none() {
                return false;
            }
        }
        true
    }

    /// Drops an arbitrary entry (HashMap order); a full cache of small files loses little by
    /// forgetting a few at random, and this needs no bookkeeping per hit. `None` when empty.
    fn evict_one(&mut self) -> Option<()> {
        let victim = self.map.keys().next()?.clone();
        self.remove(&victim);
        Some(())
    }

    /// Whether a file of this size would be kept.
    pub fn wants(&self, size: u64) -> bool {
        size <= self.max_file && size as usize <= self.max_bytes
    }

    /// Finds the entry for a cache [`key`], telling whether it may be served without a re-stat.
    /// A stale entry is re-stat'ed by the one request that finds it so: it counts as checked
    /// from then on, and the requests that come while that `statx` runs (on io_uring it goes
    /// to a kernel worker thread, ~100 µs) are served from it rather than each re-stat'ing it
    /// too. The result of the stat then keeps or drops it ([`FileCache::revalidate`]).
    pub fn lookup(&mut self, path: &[u8], now: Instant) -> Lookup {
        match self.map.get_mut(path) {
            None => Lookup::Miss,
            Some(e) if now.duration_since(e.checked) < self.revalidate => {
                Lookup::Fresh(e.hit.clone())
            }
            Some(e) => {
                e.checked = now;
                Lookup::Stale(e.rel.clone(), e.hit.info.meta)
            }
        }
    }

    /// After re-stat'ing a stale entry (the file, and what is beside it now): keeps it (and
    /// returns it) when nothing changed, drops it otherwise.
    pub fn revalidate(
        &mut self,
        path: &[u8],
        stat: Option<Meta>,
        sidecars: &Sidecars,
        now: Instant,
    ) -> Option<Hit> {
        let e = self.map.get_mut(path)?;
        if stat == Some(e.hit.info.meta) && *sidecars == e.sidecars {
            e.checked = now;
            return Some(e.hit.clone());
        }
        self.remove(path);
        None
    }

    /// Stores a file that was just served as 200, with its variants and what the probe found
    /// beside it, evicting entries to stay within the budget; files too large to keep are
    /// ignored. The bodies must come from a [`Reservation`] of this cache, which already counts
    /// them.
    pub fn insert(
        &mut self,
        path: Vec<u8>,
        rel: CString,
        hit: Hit,
        sidecars: Sidecars,
        now: Instant,
    ) {
        let cost = cost(&path, &hit);
        let too_big = std::iter::once(&hit.body)
            .chain(hit.variants.iter().map(|v| &v.body))
            .any(|b| !self.wants(b.len() as u64));
        if too_big || cost > self.max_bytes {
            return;
        }
        self.remove(&path);
        if !self.make_room(cost) {
            return;
        }
        self.used.fetch_add(cost, Relaxed);
        self.overhead += cost;
        self.cached += bodies(&hit);
        self.map.insert(
            path,
            Entry {
                rel,
                hit,
                sidecars,
                checked: now,
            },
        );
    }

    /// Drops the entry for a cache key, if any.
    fn remove(&mut self, path: &[u8]) {
        if let Some(e) = self.map.remove(path) {
            let cost = cost(path, &e.hit);
            self.used.fetch_sub(cost, Relaxed);
            self.overhead -= cost;
            self.cached -= bodies(&e.hit);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

impl Drop for FileCache {
    /// Its entries' overheads stop counting; their bodies stop as their last holders drop them.
    fn drop(&mut self) {
        self.used.fetch_sub(self.overhead, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Kind;

    fn meta(size: u64, mtime: i64) -> Meta {
        Meta {
            kind: Kind::File,
            size,
            mtime,
            ..Meta::default()
        }
    }

    fn hit(size: u64, mtime: i64, body: Bytes) -> Hit {
        Hit {
            info: Rc::new(FileInfo::new(meta(size, mtime), "text/html")),
            body: Rc::new(body),
            variants: Rc::new([]),
        }
    }

    const NONE: Sidecars = [None; 3];

    /// A body read into `c` the way the exchange reads one: under a reservation.
    fn read(c: &mut FileCache, data: &[u8]) -> Bytes {
        let mut r = c.reserve(data.len() as u64).expect("room to read it");
        r.hold(data.to_vec())
    }

    #[test]
    fn fresh_then_stale_then_revalidated_or_dropped() {
        let t0 = Instant::now();
        let mut c = FileCache::new(1 << 20, 1024, Duration::from_secs(1));
        let rel = CString::new("a.html").unwrap();
        let abc = read(&mut c, b"abc");
        c.insert(b"/a.html".to_vec(), rel.clone(), hit(3, 7, abc), NONE, t0);
        assert_eq!(c.bytes(), 3 + 7 + ENTRY_OVERHEAD);
        assert!(matches!(c.lookup(b"/a.html", t0), Lookup::Fresh(h) if &h.body[..] == b"abc"));
        let later = t0 + Duration::from_secs(2);
        assert!(
            matches!(c.lookup(b"/a.html", later), Lookup::Stale(r, m) if r == rel && m == meta(3, 7))
        );
        // Requests that come while that re-stat runs are served the entry, not sent to re-stat.
        assert!(matches!(c.lookup(b"/a.html", later), Lookup::Fresh(..)));
        let same = Some(meta(3, 7));
        assert!(c.revalidate(b"/a.html", same, &NONE, later).is_some());
        assert!(matches!(c.lookup(b"/a.html", later), Lookup::Fresh(..)));
        let changed = Some(meta(3, 8));
        let much_later = later + Duration::from_secs(2);
        assert!(
            c.revalidate(b"/a.html", changed, &NONE, much_later)
                .is_none()
        );
        assert!(matches!(c.lookup(b"/a.html", much_later), Lookup::Miss));
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn memory_stays_bounded() {
        let now = Instant::now();
        // Room for exactly three 30-byte files under 2-byte keys (each costs 30 + 2 + overhead).
        let entry = 30 + 2 + ENTRY_OVERHEAD;
        let mut c = FileCache::new(3 * entry + entry / 2, 40, Duration::from_secs(1));
        for i in 0..50u8 {
            let body = read(&mut c, &[i; 30]);
            let x = CString::new("x").unwrap();
            c.insert(vec![b'/', i], x, hit(30, 1, body), NONE, now);
            assert!(c.bytes() <= 3 * entry + entry / 2, "{}", c.bytes());
        }
        assert_eq!(c.len(), 3, "full, and no fuller");
        assert_eq!(c.bytes(), 3 * entry);
        let x = || CString::new("x").unwrap();
        let mut c = FileCache::new(1 << 20, 40, Duration::from_secs(1));
        // Larger than the largest file kept: not kept (and its bytes go back); at the limit: kept.
        let big = read(&mut c, &[0; 41]);
        c.insert(b"/big".to_vec(), x(), hit(41, 1, big), NONE, now);
        assert!(matches!(c.lookup(b"/big", now), Lookup::Miss));
        assert_eq!(c.bytes(), 0);
        let fits = read(&mut c, &[0; 40]);
        c.insert(b"/fits".to_vec(), x(), hit(40, 1, fits), NONE, now);
        assert!(matches!(c.lookup(b"/fits", now), Lookup::Fresh(_)));
        // A variant too big to keep keeps its whole entry out; one at the limit does not.
        let mut with_variant = |len: usize| {
            let mut h = hit(10, 1, read(&mut c, &[0; 10]));
            h.variants = Rc::new([Variant {
                coding: Coding::Gzip,
                info: FileInfo::new(meta(len as u64, 1), "text/html"),
                body: Rc::new(read(&mut c, &vec![0; len])),
            }]);
            (h, [None, None, Some(meta(len as u64, 1))])
        };
        let (h41, gz41) = with_variant(41);
        let (h40, gz40) = with_variant(40);
        c.insert(b"/v".to_vec(), x(), h41, gz41, now);
        assert!(matches!(c.lookup(b"/v", now), Lookup::Miss));
        c.insert(b"/w".to_vec(), x(), h40, gz40, now);
        assert!(matches!(c.lookup(b"/w", now), Lookup::Fresh(_)));
        let entries = 40 + 5 + ENTRY_OVERHEAD + (10 + 40 + 2 + 2 * ENTRY_OVERHEAD);
        assert_eq!(c.bytes(), entries, "the refused entry's bodies went back");
    }

    #[test]
    fn a_body_still_being_sent_counts_until_it_is_dropped() {
        let now = Instant::now();
        let x = || CString::new("x").unwrap();
        // Room for one 100-byte file under a 2-byte key, and a little more.
        let entry = 100 + 2 + ENTRY_OVERHEAD;
        let mut c = FileCache::new(entry + 10, 1000, Duration::from_secs(1));
        let a = read(&mut c, &[1; 100]);
        c.insert(b"/a".to_vec(), x(), hit(100, 1, a), NONE, now);
        // A slow reader is still being sent /a's body.
        let Lookup::Fresh(sending) = c.lookup(b"/a", now) else {
            panic!("/a cached")
        };
        // /b's bytes fit only once /a is evicted, and /a's body still counts after that: /b is
        // served, not kept.
        let b = read(&mut c, &[2; 100]);
        assert!(matches!(c.lookup(b"/a", now), Lookup::Miss), "evicted");
        assert_eq!(c.bytes(), 200, "the evicted body still counts");
        c.insert(b"/b".to_vec(), x(), hit(100, 1, b.clone()), NONE, now);
        assert!(
            matches!(c.lookup(b"/b", now), Lookup::Miss),
            "no room beside it"
        );
        // A third body finds no room at all while both are held.
        assert!(c.reserve(entry as u64 - 150).is_none());
        drop(b);
        assert_eq!(c.bytes(), 100);
        drop(sending);
        assert_eq!(c.bytes(), 0, "the last holder gave the bytes back");
        let b = read(&mut c, &[2; 100]);
        c.insert(b"/b".to_vec(), x(), hit(100, 1, b), NONE, now);
        assert!(matches!(c.lookup(b"/b", now), Lookup::Fresh(_)));
        // A renewed cache (a reload) counts the old one's bodies that are still held.
        let Lookup::Fresh(held) = c.lookup(b"/b", now) else {
            panic!("/b cached")
        };
        let files = config::Files {
            cache_bytes_per_worker: entry + 10,
            ..config::Files::default()
        };
        let renewed = c.renewed(&files, 2);
        drop(c);
        assert_eq!(renewed.bytes(), 100);
        drop(held);
        assert_eq!(renewed.bytes(), 0);
    }

    #[test]
    fn a_miss_that_cannot_fit_evicts_nothing() {
        let now = Instant::now();
        let x = || CString::new("x").unwrap();
        let mut c = FileCache::new(1000, 1000, Duration::from_secs(1));
        let hot = read(&mut c, &[1; 100]);
        c.insert(b"/hot".to_vec(), x(), hit(100, 1, hot), NONE, now);
        // 300 bytes of an evicted body still being sent to a slow reader.
        let sending = read(&mut c, &[2; 300]);
        assert_eq!(c.bytes(), 100 + 4 + ENTRY_OVERHEAD + 300);
        // 800 more cannot fit even with /hot gone: /hot stays.
        assert!(c.reserve(800).is_none());
        assert!(matches!(c.lookup(b"/hot", now), Lookup::Fresh(_)));
        // 200 more fit once /hot is evicted: it is.
        let r = c.reserve(200).expect("room after evicting /hot");
        assert!(matches!(c.lookup(b"/hot", now), Lookup::Miss));
        drop((r, sending));
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_reservation_not_used_goes_back() {
        let mut c = FileCache::new(1000, 1000, Duration::from_secs(1));
        let mut r = c.reserve(600).expect("room");
        assert!(c.reserve(600).is_none(), "600 of 1000 are taken");
        let body = r.hold(vec![0; 200]);
        drop(r);
        assert_eq!(c.bytes(), 200, "what was not read went back");
        assert!(c.reserve(2000).is_none(), "more than the budget: never");
        drop(body);
        assert_eq!(c.bytes(), 0);
        assert!(c.reserve(1000).is_some());
    }

    #[test]
    fn a_sidecar_that_appears_changes_or_goes_drops_the_entry() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(2);
        let mut c = FileCache::new(1 << 20, 1024, Duration::from_secs(1));
        let rel = CString::new("a.js").unwrap();
        let gz = [None, None, Some(meta(2, 7))];
        let appeared = [Some(meta(1, 9)), None, Some(meta(2, 7))];
        let changed = [None, None, Some(meta(2, 9))];
        for (now, expect_kept) in [
            (gz, true),
            (appeared, false),
            (changed, false),
            (NONE, false),
        ] {
            let abc = read(&mut c, b"abc");
            c.insert(b"a.js".to_vec(), rel.clone(), hit(3, 7, abc), gz, t0);
            let kept = c.revalidate(b"a.js", Some(meta(3, 7)), &now, later);
            assert_eq!(kept.is_some(), expect_kept, "{now:?}");
            let found = c.lookup(b"a.js", later);
            match expect_kept {
                true => assert!(matches!(found, Lookup::Fresh(_)), "{now:?}"),
                false => assert!(matches!(found, Lookup::Miss), "{now:?}: dropped"),
            }
        }
    }

    fn no_rules() -> files::Policy {
        files::Policy::new::<&str>(&[])
    }

    #[test]
    fn with_key_normalises_and_equivalent_paths_share_a_key() {
        let k = |p: &str| with_key(p.as_bytes(), &no_rules(), |k| k.to_vec()).unwrap();
        for (p, want) in [
            ("/", "./"),
            ("/a.css", "a.css"),
            ("//a.css", "a.css"),
            ("/x/../a.css", "a.css"),
            ("/sub/", "sub/"),
            ("/a/b/./c.js", "a/b/c.js"),
            ("/a/b/..", "a"),
        ] {
            assert_eq!(k(p), want.as_bytes(), "{p}");
        }
        assert_ne!(k("/sub"), k("/sub/"));
        assert_eq!(files::rel_of_key(&k("/sub/")).as_bytes(), b"sub");
        assert_eq!(files::rel_of_key(&k("/")).as_bytes(), b".");
        assert_eq!(
            with_key(b"/../x", &no_rules(), |_| ()),
            Err(PathError::Escapes)
        );
        assert_eq!(
            with_key(b"/a/.env", &no_rules(), |_| ()),
            Err(PathError::Hidden)
        );
    }

    #[test]
    fn zero_bytes_disables() {
        let c = FileCache::new(0, 1024, Duration::from_secs(1));
        assert!(
            !c.enabled(),
            "no budget: no cache, and no hit or miss counted"
        );
        assert!(!c.wants(1));
        assert!(FileCache::new(1024, 1024, Duration::from_secs(1)).enabled());
        assert!(!FileCache::new(1024, 0, Duration::from_secs(1)).enabled());
    }
}
