//! The per-worker cache of small files: their bytes and their [`FileInfo`], keyed by the
//! normalised target ([`key`]), so a hit costs no file-system call at all.
//!
//! Each worker owns its cache (no lock, no sharing). An entry is trusted for `revalidate` after it
//! was last checked; after that the next request re-stats the file, and a changed size or mtime
//! (or a vanished file) drops the entry. This is nginx's `open_file_cache_valid`, applied to
//! content. Only files that were served as 200 through the full checks (policy, dotfiles,
//! `openat2` beneath the root) are ever inserted. Memory is bounded per worker.
//!
//! An entry holds a file's precompressed variants too (its `.br`, `.zst`, `.gz` sidecars), with
//! what the probe found beside it ([`Sidecars`]); revalidation compares the sidecars as well, so
//! a sidecar added, changed or removed is noticed like a change to the file itself.

use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;
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
    /// The sidecar's whole content.
    pub body: Bytes,
}

/// A cached file, as a lookup hands it out: cheap to clone.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The file's metadata and rendered headers.
    pub info: Rc<FileInfo>,
    /// The file's whole content.
    pub body: Bytes,
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

fn cost(key: &[u8], hit: &Hit) -> usize {
    let variants: usize = hit
        .variants
        .iter()
        .map(|v| v.body.len() + ENTRY_OVERHEAD)
        .sum();
    hit.body.len() + key.len() + ENTRY_OVERHEAD + variants
}

/// One worker's cache of small files, bounded in bytes.
#[derive(Debug)]
pub struct FileCache {
    map: HashMap<Vec<u8>, Entry>,
    bytes: usize,
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
            map: HashMap::new(),
            bytes: 0,
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

    /// The settings generation this cache serves (see [`crate::settings::Settings`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether it keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.max_file > 0
    }

    /// Memory counted against the budget now: bodies, keys and the fixed overhead per entry.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a file of this size would be kept.
    pub fn wants(&self, size: u64) -> bool {
        size <= self.max_file && size as usize <= self.max_bytes
    }

    /// Finds the entry for a cache [`key`], telling whether it may be served without a re-stat.
    pub fn lookup(&self, path: &[u8], now: Instant) -> Lookup {
        match self.map.get(path) {
            None => Lookup::Miss,
            Some(e) if now.duration_since(e.checked) < self.revalidate => {
                Lookup::Fresh(e.hit.clone())
            }
            Some(e) => Lookup::Stale(e.rel.clone(), e.hit.info.meta),
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
    /// ignored.
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
        // Make room by dropping arbitrary entries (HashMap order); a full cache of small files
        // loses little by forgetting a few at random, and this needs no bookkeeping per hit.
        while self.bytes + cost > self.max_bytes {
            let Some(victim) = self.map.keys().next().cloned() else {
                break;
            };
            self.remove(&victim);
        }
        self.bytes += cost;
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
    pub fn remove(&mut self, path: &[u8]) {
        if let Some(e) = self.map.remove(path) {
            self.bytes -= cost(path, &e.hit);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
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
            body,
            variants: Rc::new([]),
        }
    }

    const NONE: Sidecars = [None; 3];

    #[test]
    fn fresh_then_stale_then_revalidated_or_dropped() {
        let t0 = Instant::now();
        let mut c = FileCache::new(1 << 20, 1024, Duration::from_secs(1));
        let rel = CString::new("a.html").unwrap();
        let abc = Bytes::from_static(b"abc");
        c.insert(b"/a.html".to_vec(), rel.clone(), hit(3, 7, abc), NONE, t0);
        assert!(matches!(c.lookup(b"/a.html", t0), Lookup::Fresh(h) if &h.body[..] == b"abc"));
        let later = t0 + Duration::from_secs(2);
        assert!(
            matches!(c.lookup(b"/a.html", later), Lookup::Stale(r, m) if r == rel && m == meta(3, 7))
        );
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
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn memory_stays_bounded() {
        let now = Instant::now();
        // Room for exactly three 30-byte files under 2-byte keys (each costs 30 + 2 + overhead).
        let entry = 30 + 2 + ENTRY_OVERHEAD;
        let mut c = FileCache::new(3 * entry + entry / 2, 40, Duration::from_secs(1));
        for i in 0..50u8 {
            let body = Bytes::from(vec![i; 30]);
            let x = CString::new("x").unwrap();
            c.insert(vec![b'/', i], x, hit(30, 1, body), NONE, now);
            assert!(c.bytes <= 3 * entry + entry / 2, "{}", c.bytes);
        }
        assert_eq!(c.len(), 3, "full, and no fuller");
        assert_eq!(c.bytes, 3 * entry);
        let x = || CString::new("x").unwrap();
        let mut c = FileCache::new(1 << 20, 40, Duration::from_secs(1));
        // Larger than the largest file kept: not kept; at the limit: kept.
        c.insert(
            b"/big".to_vec(),
            x(),
            hit(41, 1, Bytes::from(vec![0; 41])),
            NONE,
            now,
        );
        assert!(matches!(c.lookup(b"/big", now), Lookup::Miss));
        c.insert(
            b"/fits".to_vec(),
            x(),
            hit(40, 1, Bytes::from(vec![0; 40])),
            NONE,
            now,
        );
        assert!(matches!(c.lookup(b"/fits", now), Lookup::Fresh(_)));
        // A variant too big to keep keeps its whole entry out; one at the limit does not.
        let with_variant = |len: usize| {
            let mut h = hit(10, 1, Bytes::from(vec![0; 10]));
            h.variants = Rc::new([Variant {
                coding: Coding::Gzip,
                info: FileInfo::new(meta(len as u64, 1), "text/html"),
                body: Bytes::from(vec![0; len]),
            }]);
            (h, [None, None, Some(meta(len as u64, 1))])
        };
        let (h, gz) = with_variant(41);
        c.insert(b"/v".to_vec(), x(), h, gz, now);
        assert!(matches!(c.lookup(b"/v", now), Lookup::Miss));
        let (h, gz) = with_variant(40);
        c.insert(b"/w".to_vec(), x(), h, gz, now);
        assert!(matches!(c.lookup(b"/w", now), Lookup::Fresh(_)));
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
            let abc = Bytes::from_static(b"abc");
            c.insert(b"a.js".to_vec(), rel.clone(), hit(3, 7, abc), gz, t0);
            let kept = c.revalidate(b"a.js", Some(meta(3, 7)), &now, later);
            assert_eq!(kept.is_some(), expect_kept, "{now:?}");
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
        assert!(!c.wants(1));
    }
}
