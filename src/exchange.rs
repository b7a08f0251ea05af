//! One request's exchange, as a state machine with no I/O: every decision a client can observe is
//! made here.
//!
//! An [`Exchange`] takes a parsed request and the connection's state and yields [`Step`]s: stat a
//! path, open one, read a small file whole, or send a [`Plan`]. The connection driver
//! ([`crate::conn`]) performs each step with its engine's primitives and feeds the result back
//! with [`Exchange::resume`], until the step is `Send`. Inside: the size limit on bodies, the
//! status page, the method check, path resolution under the root, the per-worker file cache
//! (hit, stale → revalidate, miss → open → maybe cache), directories (index or redirect), the
//! extension policy, and keep-alive. A request that was refused before it parsed gets its plan
//! from [`refused`].
//!
//! Every refusal is a [`Refusal`], carrying its reason, and becomes a status in one place
//! (`From<&Refusal> for Status`). The plan keeps the refusal, so the driver can log the reason of
//! every 5xx.
//!
//! Adding a response feature means adding a state or a decision here (and its config), and it is
//! tested with plain data: see the tests below and `conn`'s scripted-transport tests.

use std::cell::RefCell;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::rc::Rc;

use bytes::Bytes;

use crate::clock::Instant;
use crate::files::cache::{self, FileCache, Hit, Lookup, Reservation, Variant};
use crate::files::listing::{self, Listing};
use crate::files::{self, FileInfo, Kind, Meta, PathError, Sidecars};
use crate::http::coding::{self, Coding};
use crate::http::{Head, Method, ParseError, Request, Status, response};
use crate::respond::{self, Body, Plan, Rep, Source};
use crate::settings::Settings;
use crate::stats::Stats;

/// Why a request gets an error status. `From<&Refusal> for Status` is the one mapping.
#[derive(Debug)]
pub enum Refusal {
    /// The head did not parse or outgrew `max_request_bytes` (400, 414, 431, 505).
    Malformed(ParseError),
    /// No complete head within `header_timeout_secs` (408).
    Timeout,
    /// A body longer than `max_request_bytes` was announced (413).
    BodyTooLarge(u64),
    /// A method other than GET and HEAD (405).
    Method,
    /// `..` would climb above the root (400).
    Escapes,
    /// A dotfile or dot-directory (404: its existence is not revealed).
    Hidden,
    /// Nothing servable there: a missing file, a file asked for as a directory, a directory
    /// without an index (404).
    NotFound,
    /// A FIFO, socket or device (403).
    SpecialFile,
    /// An extension the policy does not allow (403).
    Type,
    /// The file system refused (404, 403, 503 when out of descriptors or memory, 500 for
    /// anything unexpected).
    Io(io::Error),
    /// The engine could not secure what a body needs (a pipe, a descriptor) before the head
    /// went out (503: a client never gets a head whose body cannot follow).
    BodyUnavailable(io::Error),
}

impl From<&Refusal> for Status {
    fn from(r: &Refusal) -> Status {
        match r {
            Refusal::Malformed(e) => e.status,
            Refusal::Timeout => Status::RequestTimeout,
            Refusal::BodyTooLarge(_) => Status::PayloadTooLarge,
            Refusal::Method => Status::MethodNotAllowed,
            Refusal::Escapes => Status::BadRequest,
            Refusal::Hidden | Refusal::NotFound => Status::NotFound,
            Refusal::SpecialFile | Refusal::Type => Status::Forbidden,
            Refusal::Io(e) => respond::io_status(e),
            Refusal::BodyUnavailable(_) => Status::ServiceUnavailable,
        }
    }
}

impl Refusal {
    /// Whether the connection must close after this refusal: the input's framing can no longer
    /// be trusted, or the client is too slow or sends too much.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Refusal::Malformed(_)
                | Refusal::Timeout
                | Refusal::BodyTooLarge(_)
                | Refusal::Escapes
                | Refusal::BodyUnavailable(_)
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(e) => f.write_str(e.reason),
            Refusal::Timeout => f.write_str("request head not complete in time"),
            Refusal::BodyTooLarge(n) => write!(f, "request body of {n} bytes is too large"),
            Refusal::Method => f.write_str("method not allowed"),
            Refusal::Escapes => f.write_str("path climbs above the root"),
            Refusal::Hidden => f.write_str("dotfiles are not served"),
            Refusal::NotFound => f.write_str("not found"),
            Refusal::SpecialFile => f.write_str("not a regular file"),
            Refusal::Type => f.write_str("extension not allowed"),
            Refusal::Io(e) => write!(f, "file system: {e}"),
            Refusal::BodyUnavailable(e) => write!(f, "cannot send the body now: {e}"),
        }
    }
}

/// The next thing the driver must do for this exchange.
#[derive(Debug)]
pub enum Step<F> {
    /// Stat this path beneath the root, following symlinks, and resume with [`Done::Stat`].
    Stat(CString),
    /// Open this path beneath the root (read-only, nonblocking, `openat2(RESOLVE_BENEATH)`), stat
    /// the descriptor, and resume with [`Done::Open`]. Opening first means the kernel confines
    /// every lookup to the root, so nothing outside it is even stat'ed through a symlink.
    Open(CString),
    /// Read this directory beneath the root for a listing and resume with [`Done::List`].
    List(CString),
    /// Read the whole file (this many bytes) from its start, close it, and resume with
    /// [`Done::Read`].
    ReadWhole(F, u64),
    /// Send this; the exchange is over.
    Send(Plan<F>),
}

/// The result of a step, fed back with [`Exchange::resume`].
#[derive(Debug)]
pub enum Done<F> {
    /// The result of [`Step::Stat`].
    Stat(io::Result<Meta>),
    /// The result of [`Step::Open`].
    Open(io::Result<(F, Meta)>),
    /// The result of [`Step::ReadWhole`].
    Read(io::Result<Vec<u8>>),
    /// The result of [`Step::List`].
    List(io::Result<Listing>),
}

/// What the exchange needs to know about the connection it runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnState {
    /// The worker is shutting down: answer, then close.
    pub draining: bool,
    /// Responses already sent on this connection: with `max_requests_per_connection`, the last
    /// one allowed says `Connection: close`.
    pub served: u64,
}

/// A path being looked up, and why.
#[derive(Debug)]
struct Candidate {
    rel: CString,
    role: Role,
}

/// What a looked-up path stands for.
#[derive(Debug)]
enum Role {
    /// The path the request names.
    Target,
    /// The `i`-th name of `files.index` inside the directory `dir`.
    Index { dir: CString, i: usize },
    /// The single-page-app fallback for an unknown path.
    Fallback,
    /// The custom page for this refusal's status.
    ErrorPage(Box<Refusal>),
}

/// A servable file found by a lookup, open, on its way to a plan; `sidecars` says what the probe
/// found beside it so far.
struct Found<F> {
    lookup: Candidate,
    /// Set when the file may be cached.
    key: Option<Vec<u8>>,
    info: FileInfo,
    file: F,
    sidecars: Sidecars,
}

/// A small file and its variants being read into the cache.
#[derive(Debug)]
struct Loading {
    lookup: Candidate,
    key: Vec<u8>,
    info: FileInfo,
    body: Bytes,
    sidecars: Sidecars,
    variants: Vec<Variant>,
    /// The budget taken for the variants still to read.
    room: Reservation,
}

enum State<F> {
    /// Nothing asked yet.
    Start,
    /// Waiting for the stat of a stale cache entry's file (`next` 0), then of each sidecar
    /// (`next` = its index + 1) when sidecars are served; `key` names the request's own path.
    Revalidating {
        key: Vec<u8>,
        rel: CString,
        /// The cached version of the file.
        known: Meta,
        stat: Option<Meta>,
        sidecars: Sidecars,
        next: usize,
    },
    /// Waiting for an open; `key` is set when the file may be cached.
    Opening {
        lookup: Candidate,
        key: Option<Vec<u8>>,
    },
    /// Waiting for the stat of the sidecar of coding index `next`.
    Probing { found: Found<F>, next: usize },
    /// Waiting for a small file's bytes, to cache them; `room` was taken from the cache's budget
    /// for them and for its sidecars.
    Reading {
        lookup: Candidate,
        key: Vec<u8>,
        info: FileInfo,
        sidecars: Sidecars,
        room: Reservation,
    },
    /// Waiting for the open (`read` false) or the bytes (`read` true) of the variant of coding
    /// index `next`, to cache it with the file.
    LoadingVariant {
        loading: Loading,
        next: usize,
        read: bool,
    },
    /// Waiting for the open of the chosen variant of a file that is not cached.
    OpeningVariant { found: Found<F>, coding: Coding },
    /// Waiting for a directory's entries, to list them.
    Listing,
    /// The plan has been handed out.
    Finished,
}

impl<F> State<F> {
    /// The state's name, for the error of a driver that feeds the wrong result.
    fn name(&self) -> &'static str {
        match self {
            State::Start => "Start",
            State::Revalidating { .. } => "Revalidating",
            State::Opening { .. } => "Opening",
            State::Probing { .. } => "Probing",
            State::Reading { .. } => "Reading",
            State::LoadingVariant { .. } => "LoadingVariant",
            State::OpeningVariant { .. } => "OpeningVariant",
            State::Listing => "Listing",
            State::Finished => "Finished",
        }
    }
}

/// Whether a request was answered from the worker's file cache; `None` for a request that did not
/// consult it (refused before the lookup, the status page, or a cache of another generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Served from memory (fresh, or revalidated unchanged).
    Hit,
    /// Looked up and not found, or found changed: the file was opened.
    Miss,
}

/// One request's exchange. See the module documentation.
pub struct Exchange<'a, F> {
    settings: &'a Settings,
    stats: &'a Stats,
    cache: &'a RefCell<FileCache>,
    /// What the cache did for this request.
    cache_use: Option<CacheUse>,
    req: &'a Request<'a>,
    /// Whether this response may keep the connection open (the request's wish, the config and
    /// the worker's state together).
    keep_alive: bool,
    state: State<F>,
}

/// The headers a refusal's page carries besides the standard ones, by status: what is allowed
/// on a 405, when to try again on a 503.
fn refusal_headers(status: Status) -> &'static [(&'static str, &'static [u8])] {
    match status {
        Status::MethodNotAllowed => &[("Allow", respond::ALLOW)],
        Status::ServiceUnavailable => &[("Retry-After", b"1")],
        _ => &[],
    }
}

/// Every refused plan is made here: the built-in page of the refusal's status, or the
/// configured `page` (its info and open file), with the refusal's headers and the site's; the
/// connection closes when the refusal says so.
fn refusal_plan<F>(
    settings: &Settings,
    path: &[u8],
    refusal: Refusal,
    head_only: bool,
    keep_alive: bool,
    page: Option<(&FileInfo, F)>,
) -> Plan<F> {
    let status = Status::from(&refusal);
    let keep_alive = keep_alive && !refusal.closes();
    let extra = refusal_headers(status);
    let mut plan = match page {
        Some((info, file)) => {
            respond::custom_page(status, head_only, keep_alive, extra, info, file)
        }
        None => respond::page_plan(status, head_only, keep_alive, extra),
    };
    add_headers(settings, path, &mut plan);
    plan.cause = Some(refusal);
    plan
}

/// The plan when the engine could not secure a planned file body (see
/// [`Refusal::BodyUnavailable`]): a 503 with `Retry-After`, and the connection closes.
pub fn body_unavailable<F>(
    settings: &Settings,
    path: &[u8],
    head_only: bool,
    e: io::Error,
) -> Plan<F> {
    refusal_plan(
        settings,
        path,
        Refusal::BodyUnavailable(e),
        head_only,
        false,
        None,
    )
}

/// Whether an open failed because nothing is there.
fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// The plan for a request refused before it parsed (malformed, too large, too slow): an error
/// page, and the connection closes.
pub fn refused<F>(settings: &Settings, refusal: Refusal) -> Plan<F> {
    refusal_plan(settings, b"", refusal, false, false, None)
}

/// Adds the site's headers for this path and status just before the head's blank line.
fn add_headers<F>(settings: &Settings, path: &[u8], plan: &mut Plan<F>) {
    let head = &mut plan.head;
    if head.ends_with(b"\r\n\r\n") {
        head.truncate(head.len() - 2);
        settings.site.headers_into(path, plan.status, head);
        head.extend_from_slice(b"\r\n");
    }
}

impl<'a, F> Exchange<'a, F> {
    /// An exchange for `req` on a connection in state `conn`, deciding with the connection's
    /// `settings` and the worker's file cache (used only when it belongs to the same generation;
    /// `stats` feed the status page).
    pub fn new(
        settings: &'a Settings,
        stats: &'a Stats,
        cache: &'a RefCell<FileCache>,
        req: &'a Request<'a>,
        conn: ConnState,
    ) -> Exchange<'a, F> {
        let limits = &settings.config.limits;
        let last = limits.max_requests_per_connection > 0
            && conn.served.saturating_add(1) >= limits.max_requests_per_connection;
        let keep_alive =
            req.keep_alive && !conn.draining && !last && limits.keep_alive_timeout_secs > 0;
        Exchange {
            settings,
            stats,
            cache,
            cache_use: None,
            req,
            keep_alive,
            state: State::Start,
        }
    }

    /// What the worker's file cache did for this request, once the plan is out.
    pub fn cache_use(&self) -> Option<CacheUse> {
        self.cache_use
    }

    /// Whether the worker's cache was filled under this exchange's settings: a reload renews the
    /// cache, and connections still on the old settings then neither read nor fill it.
    fn cache_usable(&self) -> bool {
        self.cache.borrow().generation() == self.settings.generation
    }

    /// The first step.
    pub fn start(&mut self, now: Instant) -> Step<F> {
        let req = self.req;
        let config = &self.settings.config;
        if req.body_len > config.limits.max_request_bytes as u64 {
            return self.refuse(Refusal::BodyTooLarge(req.body_len));
        }
        if req.method == Method::Options {
            let plan = respond::options_plan(self.keep_alive);
            return self.send(plan);
        }
        let status_path = config.server.status_path.as_bytes();
        if !status_path.is_empty() && req.path == status_path {
            let plan = self.status_page();
            return self.send(plan);
        }
        if let Method::Other(_) = req.method {
            return self.refuse(Refusal::Method);
        }
        // The hot path: a cached file, found without allocating. Otherwise the key is kept, and
        // the path to open is derived from it: the request path is normalised once. A cache
        // filled under other settings (another root, other rules) is not even looked at.
        let usable = self.cache_usable();
        let found = cache::with_key(&req.path, &self.settings.policy, |key| {
            let found = match usable {
                true => self.cache.borrow_mut().lookup(key, now),
                false => Lookup::Miss,
            };
            match found {
                Lookup::Fresh(hit) => Ok(hit),
                other => Err((other, key.to_vec())),
            }
        });
        if usable && found.is_ok() && self.cache.borrow().enabled() {
            self.cache_use = Some(match found {
                Ok(Ok(_)) => CacheUse::Hit,
                _ => CacheUse::Miss,
            });
        }
        let (found, key) = match found {
            Ok(Ok(hit)) => {
                let plan = self.cached(hit);
                return self.send(plan);
            }
            Ok(Err(missed)) => missed,
            Err(PathError::Escapes) => return self.refuse(Refusal::Escapes),
            Err(PathError::Hidden) => return self.refuse(Refusal::Hidden),
        };
        match found {
            Lookup::Stale(rel, known) => {
                let step = Step::Stat(rel.clone());
                self.state = State::Revalidating {
                    key,
                    rel,
                    known,
                    stat: None,
                    sidecars: [None; 3],
                    next: 0,
                };
                step
            }
            _ => self.open(files::rel_of_key(&key), Role::Target, Some(key)),
        }
    }

    /// Continues with the result of the last step.
    pub fn resume(&mut self, done: Done<F>, now: Instant) -> Step<F> {
        match (std::mem::replace(&mut self.state, State::Finished), done) {
            (
                State::Revalidating {
                    key,
                    rel,
                    known,
                    mut stat,
                    mut sidecars,
                    next,
                },
                Done::Stat(got),
            ) => {
                let got = got.ok();
                match next {
                    0 => stat = got,
                    i => sidecars[i - 1] = got.filter(|m| m.kind == Kind::File),
                }
                // The sidecars matter only while the file itself is unchanged.
                if stat == Some(known) && self.settings.config.files.precompressed && next < 3 {
                    let step = Step::Stat(files::sidecar(&rel, Coding::ALL[next]));
                    self.state = State::Revalidating {
                        key,
                        rel,
                        known,
                        stat,
                        sidecars,
                        next: next + 1,
                    };
                    return step;
                }
                let hit = match self.cache_usable() {
                    true => self
                        .cache
                        .borrow_mut()
                        .revalidate(&key, stat, &sidecars, now),
                    false => None,
                };
                match hit {
                    Some(hit) => {
                        self.cache_use = Some(CacheUse::Hit);
                        let plan = self.cached(hit);
                        self.send(plan)
                    }
                    // Changed or gone: look it up afresh.
                    None => self.open(files::rel_of_key(&key), Role::Target, Some(key)),
                }
            }
            (State::Opening { lookup, key }, Done::Open(opened)) => {
                self.after_open(lookup, key, opened)
            }
            (State::Probing { mut found, next }, Done::Stat(got)) => {
                found.sidecars[next] = got.ok().filter(|m| m.kind == Kind::File);
                self.probe(found, next + 1)
            }
            (
                State::Reading {
                    lookup,
                    key,
                    info,
                    sidecars,
                    mut room,
                },
                Done::Read(read),
            ) => match read {
                Ok(bytes) => {
                    let loading = Loading {
                        lookup,
                        key,
                        info,
                        body: room.hold(bytes),
                        sidecars,
                        variants: Vec::new(),
                        room,
                    };
                    self.load_variant(loading, 0, now)
                }
                // The file changed while it was read: serve it as it is now, uncached, through the
                // same checks as any open.
                Err(_) => self.open(lookup.rel, lookup.role, None),
            },
            (
                State::LoadingVariant {
                    mut loading,
                    next,
                    read: false,
                },
                Done::Open(opened),
            ) => match opened {
                // Still the sidecar the probe saw: read it.
                Ok((file, meta)) if Some(meta) == loading.sidecars[next] => {
                    self.state = State::LoadingVariant {
                        loading,
                        next,
                        read: true,
                    };
                    Step::ReadWhole(file, meta.size)
                }
                // Changed or gone since the probe (or outside the root): not cached this time.
                _ => {
                    loading.key.clear();
                    self.load_variant(loading, next + 1, now)
                }
            },
            (
                State::LoadingVariant {
                    mut loading,
                    next,
                    read: true,
                },
                Done::Read(read),
            ) => {
                match (read, loading.sidecars[next]) {
                    (Ok(bytes), Some(meta)) => {
                        let coding = Coding::ALL[next];
                        let ct = &loading.info.content_type;
                        loading.variants.push(Variant {
                            coding,
                            info: FileInfo::variant(meta, ct, coding),
                            body: Rc::new(loading.room.hold(bytes)),
                        });
                    }
                    _ => loading.key.clear(),
                }
                self.load_variant(loading, next + 1, now)
            }
            (State::Listing, Done::List(listed)) => match listed {
                Ok(entries) => {
                    let html = listing::render(&self.req.path, &entries, &self.settings.policy);
                    let head_only = self.req.method == Method::Head;
                    let plan = respond::listing_plan(html, head_only, self.keep_alive);
                    self.send(plan)
                }
                Err(e) => self.refuse(Refusal::Io(e)),
            },
            (State::OpeningVariant { found, coding }, Done::Open(opened)) => match opened {
                Ok((file, meta)) if meta.kind == Kind::File => {
                    let info = FileInfo::variant(meta, &found.info.content_type, coding);
                    let rep = Rep {
                        coding: Some(coding),
                        vary: true,
                    };
                    let plan = self.file(&info, rep, Source::File(file));
                    self.send(plan)
                }
                // The sidecar went away (or is no longer a file): the file itself, as it is.
                _ => {
                    let rep = Rep {
                        coding: None,
                        vary: true,
                    };
                    let plan = self.file(&found.info, rep, Source::File(found.file));
                    self.send(plan)
                }
            },
            (state, done) => {
                // A driver bug, not a client's: say so and answer 500 rather than panic.
                let got = match done {
                    Done::Stat(_) => "a stat",
                    Done::Open(_) => "an open",
                    Done::Read(_) => "a read",
                    Done::List(_) => "a listing",
                };
                let e = io::Error::other(format!("exchange got {got} in state {}", state.name()));
                self.refuse(Refusal::Io(e))
            }
        }
    }

    /// Stats the sidecars beside a found file, from coding index `next` on, when they are
    /// served; then goes on with what was found.
    fn probe(&mut self, found: Found<F>, next: usize) -> Step<F> {
        if next < 3 && self.settings.config.files.precompressed {
            let step = Step::Stat(files::sidecar(&found.lookup.rel, Coding::ALL[next]));
            self.state = State::Probing { found, next };
            return step;
        }
        // A file to cache is read whole, if its bytes and its sidecars' fit the budget now.
        let room = match &found.key {
            Some(_) if self.cache_usable() => {
                let mut cache = self.cache.borrow_mut();
                let sizes = std::iter::once(found.info.meta.size)
                    .chain(found.sidecars.iter().flatten().map(|m| m.size));
                match sizes.clone().all(|s| cache.wants(s)) {
                    true => cache.reserve(sizes.sum()),
                    false => None,
                }
            }
            _ => None,
        };
        let Found {
            lookup,
            key,
            info,
            file,
            sidecars,
        } = found;
        if let (Some(key), Some(room)) = (key, room) {
            let size = info.meta.size;
            self.state = State::Reading {
                lookup,
                key,
                info,
                sidecars,
                room,
            };
            return Step::ReadWhole(file, size);
        }
        let available = sidecars.map(|s| s.is_some());
        let vary = available.contains(&true);
        match coding::choose(self.req.accept_encoding.as_deref(), available) {
            Some(coding) => {
                let step = Step::Open(files::sidecar(&lookup.rel, coding));
                let found = Found {
                    lookup,
                    key: None,
                    info,
                    file,
                    sidecars,
                };
                self.state = State::OpeningVariant { found, coding };
                step
            }
            None => {
                let rep = Rep { coding: None, vary };
                let plan = self.file(&info, rep, Source::File(file));
                self.send(plan)
            }
        }
    }

    /// Opens the next variant to cache with a file, from coding index `next` on; once all are
    /// read, caches the lot (unless something changed on the way: `key` emptied) and answers
    /// from memory.
    fn load_variant(&mut self, loading: Loading, next: usize, now: Instant) -> Step<F> {
        if let Some(i) = (next..3).find(|&i| loading.sidecars[i].is_some()) {
            let step = Step::Open(files::sidecar(&loading.lookup.rel, Coding::ALL[i]));
            self.state = State::LoadingVariant {
                loading,
                next: i,
                read: false,
            };
            return step;
        }
        let Loading {
            lookup,
            key,
            info,
            body,
            sidecars,
            variants,
            room,
        } = loading;
        // Everything reserved was read (or went back with a skipped variant).
        drop(room);
        let hit = Hit {
            info: Rc::new(info),
            body: Rc::new(body),
            variants: variants.into(),
        };
        let plan = self.cached(hit.clone());
        // The cache may have been renewed for a reload while the file was read.
        if !key.is_empty() && self.cache_usable() {
            self.cache
                .borrow_mut()
                .insert(key, lookup.rel, hit, sidecars, now);
        }
        self.send(plan)
    }

    fn open(&mut self, rel: CString, role: Role, key: Option<Vec<u8>>) -> Step<F> {
        let lookup = Candidate { rel, role };
        let step = Step::Open(lookup.rel.clone());
        self.state = State::Opening { lookup, key };
        step
    }

    /// Looks at what was opened: a directory walks to its index or redirects, a refused type or a
    /// special file gets its error page, a servable file is sent or read into the cache; a path
    /// that is not there may fall back to the next index name or the single-page-app fallback.
    fn after_open(
        &mut self,
        lookup: Candidate,
        key: Option<Vec<u8>>,
        opened: io::Result<(F, Meta)>,
    ) -> Step<F> {
        let files = &self.settings.config.files;
        let (opened, role) = match (opened, lookup.role) {
            (Ok(o), role) => (o, role),
            (Err(e), Role::Index { dir, i }) if is_missing(&e) && i + 1 < files.index.len() => {
                let next = files::join(&dir, &files.index[i + 1]);
                return self.open(next, Role::Index { dir, i: i + 1 }, key);
            }
            (Err(e), Role::Target) if is_missing(&e) && self.wants_fallback() => {
                let rel = CString::new(files.fallback.trim_start_matches('/')).unwrap_or_default();
                return self.open(rel, Role::Fallback, None);
            }
            // No index name is there: list the directory when that is on, else 404.
            (Err(e), Role::Index { dir, .. }) if is_missing(&e) && files.listing => {
                self.state = State::Listing;
                return Step::List(dir);
            }
            (Err(_), Role::ErrorPage(refusal)) => return self.builtin_refusal(*refusal),
            (Err(e), _) => return self.refuse(Refusal::Io(e)),
        };
        let (file, meta) = opened;
        let slash = self.req.path.ends_with(b"/");
        match (meta.kind, role) {
            (_, Role::ErrorPage(refusal)) if meta.kind != Kind::File => {
                self.builtin_refusal(*refusal)
            }
            (Kind::Dir, Role::Target) if !slash => {
                let head_only = self.req.method == Method::Head;
                let plan = respond::directory_redirect(
                    &lookup.rel,
                    self.req.query,
                    head_only,
                    self.keep_alive,
                );
                self.send(plan)
            }
            (Kind::Dir, Role::Target) => {
                let index = files::join(&lookup.rel, &files.index[0]);
                let role = Role::Index {
                    dir: lookup.rel,
                    i: 0,
                };
                self.open(index, role, key)
            }
            (Kind::Dir, _) => self.refuse(Refusal::NotFound),
            (Kind::Other, _) => self.refuse(Refusal::SpecialFile),
            // `/file.html/` names a directory that is a file: not found, as open(2) would say.
            (Kind::File, Role::Target) if slash => self.refuse(Refusal::NotFound),
            (Kind::File, role) => {
                let ct = self.settings.policy.content_type(lookup.rel.as_bytes());
                if let Role::ErrorPage(refusal) = role {
                    let ct = ct.unwrap_or(std::borrow::Cow::Borrowed(response::HTML));
                    return self.custom_error_page(*refusal, &FileInfo::new(meta, &ct), file);
                }
                let Some(ct) = ct else {
                    return self.refuse(Refusal::Type);
                };
                let found = Found {
                    info: FileInfo::new(meta, &ct),
                    lookup: Candidate {
                        rel: lookup.rel,
                        role,
                    },
                    key,
                    file,
                    sidecars: [None; 3],
                };
                self.probe(found, 0)
            }
        }
    }

    /// An unknown path gets the single-page-app fallback when one is configured and the path's
    /// last segment has no extension (a missing `app.js` stays a 404).
    fn wants_fallback(&self) -> bool {
        let name = self
            .req
            .path
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default();
        !self.settings.config.files.fallback.is_empty()
            && !name.contains(&b'.')
            && !self.req.path.ends_with(b"/")
    }

    /// Hands a plan out with the site's headers.
    fn send(&mut self, mut plan: Plan<F>) -> Step<F> {
        self.state = State::Finished;
        add_headers(self.settings, &self.req.path, &mut plan);
        Step::Send(plan)
    }

    fn file(&self, info: &FileInfo, rep: Rep, source: Source<F>) -> Plan<F> {
        respond::file_plan(self.req, self.keep_alive, info, rep, source)
    }

    /// A cached file, or the variant of it the client prefers.
    fn cached(&self, hit: Hit) -> Plan<F> {
        if hit.variants.is_empty() {
            return self.file(&hit.info, Rep::PLAIN, Source::Memory(hit.body));
        }
        let mut available = [false; 3];
        for v in hit.variants.iter() {
            available[v.coding.index()] = true;
        }
        let chosen = coding::choose(self.req.accept_encoding.as_deref(), available);
        match hit.variants.iter().find(|v| Some(v.coding) == chosen) {
            Some(v) => {
                let rep = Rep {
                    coding: chosen,
                    vary: true,
                };
                self.file(&v.info, rep, Source::Memory(v.body.clone()))
            }
            None => {
                let rep = Rep {
                    coding: None,
                    vary: true,
                };
                self.file(&hit.info, rep, Source::Memory(hit.body))
            }
        }
    }

    /// Refuses with the configured error page of the status when there is one (opened like
    /// any file, under the root), else with the built-in page.
    fn refuse(&mut self, refusal: Refusal) -> Step<F> {
        let status = Status::from(&refusal);
        match self.settings.site.error_page(status) {
            Some(rel) => {
                let rel = rel.clone();
                self.open(rel, Role::ErrorPage(Box::new(refusal)), None)
            }
            _ => self.builtin_refusal(refusal),
        }
    }

    fn builtin_refusal(&mut self, refusal: Refusal) -> Step<F> {
        self.refusal_step(refusal, None)
    }

    /// A configured error page: the file's bytes with the refusal's status.
    fn custom_error_page(&mut self, refusal: Refusal, info: &FileInfo, file: F) -> Step<F> {
        self.refusal_step(refusal, Some((info, file)))
    }

    fn refusal_step(&mut self, refusal: Refusal, page: Option<(&FileInfo, F)>) -> Step<F> {
        self.state = State::Finished;
        let head_only = self.req.method == Method::Head;
        let (settings, path) = (self.settings, &self.req.path);
        Step::Send(refusal_plan(
            settings,
            path,
            refusal,
            head_only,
            self.keep_alive,
            page,
        ))
    }

    /// The counters as `name: value` lines.
    fn status_page(&self) -> Plan<F> {
        let text = self.stats.render().into_bytes();
        let mut head = Head::new(response::buffer(), Status::Ok);
        head.header("Content-Type", b"text/plain; charset=utf-8");
        head.header("Cache-Control", b"no-store");
        let head = head.finish(text.len() as u64, self.keep_alive);
        let body = if self.req.method == Method::Head {
            Body::Empty
        } else {
            Body::Bytes(Bytes::from(text))
        };
        Plan {
            status: Status::Ok,
            head,
            body,
            keep_alive: self.keep_alive,
            cause: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::http::parse;

    /// What an exchange borrows from its worker, for one test.
    struct Sh {
        settings: Settings,
        stats: Stats,
    }

    fn shared(config: Config) -> Sh {
        Sh {
            settings: Settings::for_tests(config),
            stats: Stats::new("test", 1),
        }
    }

    fn cache(sh: &Sh) -> RefCell<FileCache> {
        let s = &sh.settings;
        RefCell::new(FileCache::for_config(&s.config.files, s.generation))
    }

    fn exchange<'a, F>(
        sh: &'a Sh,
        c: &'a RefCell<FileCache>,
        r: &'a Request<'a>,
        conn: ConnState,
    ) -> Exchange<'a, F> {
        Exchange::new(&sh.settings, &sh.stats, c, r, conn)
    }

    fn req(raw: &str) -> Request<'_> {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    const FILE: Meta = Meta {
        kind: Kind::File,
        size: 4,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        ino: 1,
        ctime: 1_700_000_000,
        ctime_nsec: 0,
    };
    const DIR: Meta = Meta {
        kind: Kind::Dir,
        ..FILE
    };

    fn head(plan: &Plan<()>) -> String {
        String::from_utf8(plan.head.clone()).unwrap()
    }

    fn sent(step: Step<()>) -> Plan<()> {
        match step {
            Step::Send(p) => p,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    /// Answers the sidecar probes (stats of `*.br`, `*.zst`, `*.gz`) with "not there".
    fn no_sidecars(ex: &mut Exchange<'_, ()>, mut step: Step<()>, now: Instant) -> Step<()> {
        while let Step::Stat(rel) = &step {
            assert!(
                [&b".br"[..], b".zst", b".gz"]
                    .iter()
                    .any(|s| rel.as_bytes().ends_with(s)),
                "{rel:?}"
            );
            step = ex.resume(
                Done::Stat(Err(io::Error::from_raw_os_error(libc::ENOENT))),
                now,
            );
        }
        step
    }

    fn opens(step: &Step<()>) -> &[u8] {
        match step {
            Step::Open(rel) => rel.as_bytes(),
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[test]
    fn a_cache_of_another_generation_is_neither_read_nor_filled() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let now = Instant::now();
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        // Cached under these settings: a hit.
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        assert_eq!(opens(&ex.start(now)), b"a.html");
        let step = ex.resume(Done::Open(Ok(((), FILE))), now);
        let step = no_sidecars(&mut ex, step, now);
        assert!(matches!(step, Step::ReadWhole(..)), "{step:?}");
        sent(ex.resume(Done::Read(Ok(b"old!".to_vec())), now));
        assert_eq!(ex.cache_use(), Some(CacheUse::Miss));
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        let plan = sent(ex.start(now));
        assert!(matches!(plan.body, Body::Cached(ref b, ref r) if &b[r.clone()] == b"old!"));
        assert_eq!(ex.cache_use(), Some(CacheUse::Hit));
        // A connection of the next generation (the worker has not renewed its cache yet) opens
        // the file under its own root and leaves the old cache alone.
        let mut next = shared(Config::default());
        next.settings.generation = 2;
        let mut ex = exchange::<()>(&next, &c, &r, ConnState::default());
        assert_eq!(opens(&ex.start(now)), b"a.html");
        let step = ex.resume(Done::Open(Ok(((), FILE))), now);
        let plan = sent(no_sidecars(&mut ex, step, now));
        assert!(matches!(plan.body, Body::File { .. }), "{:?}", plan.body);
        assert_eq!(ex.cache_use(), None);
        // And an old connection after the worker renewed its cache for generation 2: the same.
        let renewed = RefCell::new(FileCache::for_config(&next.settings.config.files, 2));
        let mut ex = exchange::<()>(&sh, &renewed, &r, ConnState::default());
        assert_eq!(opens(&ex.start(now)), b"a.html");
        let step = ex.resume(Done::Open(Ok(((), FILE))), now);
        sent(no_sidecars(&mut ex, step, now));
        assert_eq!(renewed.borrow().bytes(), 0);
    }

    #[test]
    fn misses_are_served_from_the_file_while_bodies_being_sent_fill_the_budget() {
        let mut config = Config::default();
        config.files.cache_bytes_per_worker = 1000;
        let sh = shared(config);
        let c = cache(&sh);
        let now = Instant::now();
        let size300 = Meta { size: 300, ..FILE };
        // Each file is read into memory, cached, and its response held (a slow reader), until the
        // bodies held leave no room for the next: 300 + 300 + 300 of 1,000 bytes (a cached entry
        // also counts its key and overhead, so each read evicts the one before).
        let mut held = Vec::new();
        let mut to_disk = None;
        for name in ["a", "b", "c", "d", "e"] {
            let raw = format!("GET /{name}.html HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = req(&raw);
            let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
            ex.start(now);
            let step = ex.resume(Done::Open(Ok(((), size300))), now);
            match no_sidecars(&mut ex, step, now) {
                Step::ReadWhole((), 300) => {
                    let plan = sent(ex.resume(Done::Read(Ok(vec![b'x'; 300])), now));
                    assert!(matches!(plan.body, Body::Cached(_, ref r) if r.len() == 300));
                    held.push(plan);
                }
                Step::Send(plan) => {
                    to_disk = Some(name);
                    assert!(matches!(plan.body, Body::File { len: 300, .. }));
                    break;
                }
                other => panic!("{other:?}"),
            }
            assert!(c.borrow().bytes() <= 1000, "{}", c.borrow().bytes());
        }
        assert_eq!((held.len(), to_disk), (3, Some("d")));
        assert_eq!(c.borrow().bytes(), 900);
        // Once those responses are out, the next miss is read into memory again.
        drop(held);
        let r = req("GET /d.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        ex.start(now);
        let step = ex.resume(Done::Open(Ok(((), size300))), now);
        let step = no_sidecars(&mut ex, step, now);
        assert!(matches!(step, Step::ReadWhole((), 300)), "{step:?}");
    }

    #[test]
    fn walks_a_directory_to_its_index_and_caches_it() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let now = Instant::now();
        let r = req("GET /sub/ HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange(&sh, &c, &r, ConnState::default());
        let step = ex.start(now);
        assert_eq!(opens(&step), b"sub");
        let step = ex.resume(Done::Open(Ok(((), DIR))), now);
        assert_eq!(opens(&step), b"sub/index.html");
        let step = ex.resume(Done::Open(Ok(((), FILE))), now);
        let step = no_sidecars(&mut ex, step, now);
        assert!(matches!(step, Step::ReadWhole((), 4)), "{step:?}");
        let plan = sent(ex.resume(Done::Read(Ok(b"abcd".to_vec())), now));
        assert_eq!(plan.status, Status::Ok);
        assert!(head(&plan).contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(matches!(plan.body, Body::Cached(ref b, ref r) if &b[r.clone()] == b"abcd"));

        // The same directory again: straight from the cache, no step at all.
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        let plan = sent(ex.start(now));
        assert!(matches!(plan.body, Body::Cached(ref b, ref r) if &b[r.clone()] == b"abcd"));
        // Stale after cache_revalidate_secs: a stat, then served if unchanged.
        let later = now + Duration::from_secs(2);
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        let Step::Stat(rel) = ex.start(later) else {
            panic!("expected a revalidating stat")
        };
        assert_eq!(rel.as_bytes(), b"sub/index.html");
        let step = ex.resume(Done::Stat(Ok(FILE)), later);
        let plan = sent(no_sidecars(&mut ex, step, later));
        assert!(matches!(plan.body, Body::Cached(ref b, ref r) if &b[r.clone()] == b"abcd"));
        // Changed: opened afresh.
        let much_later = later + Duration::from_secs(2);
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        assert!(matches!(ex.start(much_later), Step::Stat(_)));
        let changed = Meta { size: 5, ..FILE };
        // Changed: opened afresh at once, no sidecar stat first.
        let step = ex.resume(Done::Stat(Ok(changed)), much_later);
        assert_eq!(opens(&step), b"sub");
    }

    #[test]
    fn a_file_that_changes_while_read_is_served_uncached_through_the_same_checks() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let now = Instant::now();
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange(&sh, &c, &r, ConnState::default());
        ex.start(now);
        let step = ex.resume(Done::Open(Ok(((), FILE))), now);
        let step = no_sidecars(&mut ex, step, now);
        assert!(matches!(step, Step::ReadWhole(..)));
        let shrank = io::Error::new(io::ErrorKind::UnexpectedEof, "shrank");
        let step = ex.resume(Done::Read(Err(shrank)), now);
        assert_eq!(opens(&step), b"a.html");
        // Replaced by a FIFO meanwhile: 403, as on a first open.
        let fifo = Meta {
            kind: Kind::Other,
            ..FILE
        };
        let plan = sent(ex.resume(Done::Open(Ok(((), fifo))), now));
        assert_eq!(plan.status, Status::Forbidden);
        assert!(matches!(plan.cause, Some(Refusal::SpecialFile)));
    }

    #[test]
    fn directory_without_slash_redirects_to_the_normalised_path() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let r = req("GET //x//y HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange(&sh, &c, &r, ConnState::default());
        assert_eq!(opens(&ex.start(Instant::now())), b"x/y");
        let plan = sent(ex.resume(Done::Open(Ok(((), DIR))), Instant::now()));
        assert_eq!(plan.status, Status::MovedPermanently);
        assert!(head(&plan).contains("\r\nLocation: /x/y/\r\n"));
        assert!(plan.keep_alive);
    }

    #[test]
    fn decisions_table() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let gone = || Done::Open(Err(io::Error::from_raw_os_error(libc::ENOENT)));
        let emfile = || Done::Open(Err(io::Error::from_raw_os_error(libc::EMFILE)));
        let eio = || Done::Open(Err(io::Error::from_raw_os_error(libc::EIO)));
        let outside = || Done::Open(Err(io::Error::from_raw_os_error(libc::EXDEV)));
        // (request, what the open returns if one is asked for, status, keep-alive)
        type Opened = fn() -> Done<()>;
        let file: Opened = || Done::Open(Ok(((), FILE)));
        let table: &[(&str, Option<Opened>, u16, bool)] = &[
            ("GET /a.jpg", Some(file), 403, true),
            ("GET /a.html", Some(gone), 404, true),
            ("GET /a.html", Some(emfile), 503, true),
            ("GET /a.html", Some(eio), 500, true),
            ("GET /link.html", Some(outside), 403, true),
            ("GET /a.html/", Some(file), 404, true),
            ("GET /.env", None, 404, true),
            ("GET /../etc/passwd", None, 400, false),
            ("DELETE /a.html", None, 405, true),
        ];
        for (line, open, status, keep) in table {
            let raw = format!("{line} HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = req(&raw);
            let mut ex = exchange(&sh, &c, &r, ConnState::default());
            let mut step = ex.start(Instant::now());
            if let Some(open) = open {
                assert!(matches!(step, Step::Open(_)), "{line}: {step:?}");
                step = ex.resume(open(), Instant::now());
            }
            let plan = sent(step);
            assert_eq!(plan.status.code(), *status, "{line}");
            assert_eq!(plan.keep_alive, *keep, "{line}");
            assert!(plan.cause.is_some(), "{line}");
        }
    }

    #[test]
    fn a_configured_503_page_keeps_retry_after_like_the_built_in_one() {
        let mut config = Config::default();
        config.errors.insert("503".into(), "busy.html".into());
        let sh = shared(config);
        let c = cache(&sh);
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange(&sh, &c, &r, ConnState::default());
        ex.start(Instant::now());
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let step = ex.resume(Done::Open(Err(emfile)), Instant::now());
        assert_eq!(opens(&step), b"busy.html");
        let page = Meta { size: 9, ..FILE };
        let plan = sent(ex.resume(Done::Open(Ok(((), page))), Instant::now()));
        assert_eq!(plan.status, Status::ServiceUnavailable);
        assert!(
            head(&plan).contains("\r\nRetry-After: 1\r\n"),
            "{}",
            head(&plan)
        );
        assert!(head(&plan).contains("\r\nContent-Length: 9\r\n"));
        assert!(matches!(plan.body, Body::File { len: 9, .. }));
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let r = req("POST /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let plan = sent(exchange(&sh, &c, &r, ConnState::default()).start(Instant::now()));
        assert_eq!(plan.status, Status::MethodNotAllowed);
        assert!(head(&plan).contains("\r\nAllow: GET, HEAD, OPTIONS\r\n"));
    }

    #[test]
    fn options_is_204_with_allow_and_no_length() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        for target in ["*", "/a.html", "/no/such/file"] {
            let raw = format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let r = req(&raw);
            let plan = sent(exchange(&sh, &c, &r, ConnState::default()).start(Instant::now()));
            assert_eq!(plan.status, Status::NoContent, "{target}");
            let text = head(&plan);
            assert!(text.contains("\r\nAllow: GET, HEAD, OPTIONS\r\n"), "{text}");
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(plan.keep_alive && matches!(plan.body, Body::Empty));
        }
    }

    #[test]
    fn body_too_large_is_413_and_closes() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\nContent-Length: 9000\r\n\r\n");
        let plan = sent(exchange(&sh, &c, &r, ConnState::default()).start(Instant::now()));
        assert_eq!(plan.status, Status::PayloadTooLarge);
        assert!(!plan.keep_alive);
        assert!(head(&plan).contains("Connection: close\r\n"));
    }

    #[test]
    fn keep_alive_follows_request_config_and_drain() {
        let r = req("GET /.x HTTP/1.1\r\nHost: h\r\n\r\n");
        let r10 = req("GET /.x HTTP/1.0\r\n\r\n");
        let mut off = Config::default();
        off.limits.keep_alive_timeout_secs = 0;
        let (on, off) = (shared(Config::default()), shared(off));
        let (c_on, c_off) = (cache(&on), cache(&off));
        let draining = ConnState {
            draining: true,
            ..ConnState::default()
        };
        let ka = |sh, c, r, conn| sent(exchange(sh, c, r, conn).start(Instant::now())).keep_alive;
        assert!(ka(&on, &c_on, &r, ConnState::default()));
        assert!(!ka(&on, &c_on, &r10, ConnState::default()));
        assert!(!ka(&off, &c_off, &r, ConnState::default()));
        assert!(!ka(&on, &c_on, &r, draining));
    }

    #[test]
    fn the_last_request_allowed_on_a_connection_says_close() {
        let r = req("GET /.x HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut three = Config::default();
        three.limits.max_requests_per_connection = 3;
        let (limited, unlimited) = (shared(three), shared(Config::default()));
        let (c_l, c_u) = (cache(&limited), cache(&unlimited));
        let ka = |sh, c, served| {
            let conn = ConnState {
                served,
                ..ConnState::default()
            };
            sent(exchange(sh, c, &r, conn).start(Instant::now())).keep_alive
        };
        assert!(ka(&limited, &c_l, 0));
        assert!(ka(&limited, &c_l, 1));
        assert!(!ka(&limited, &c_l, 2), "the third response is the last");
        assert!(!ka(&limited, &c_l, 7));
        assert!(ka(&unlimited, &c_u, u64::MAX), "0 is unlimited");
    }

    #[test]
    fn refused_before_parsing_closes_with_its_reason() {
        let plan = refused::<()>(&shared(Config::default()).settings, Refusal::Timeout);
        assert_eq!(plan.status, Status::RequestTimeout);
        assert!(!plan.keep_alive);
        assert_eq!(
            plan.cause.map(|c| c.to_string()).as_deref(),
            Some("request head not complete in time")
        );
    }

    #[test]
    fn a_driver_that_feeds_the_wrong_result_gets_a_500_not_a_panic() {
        let sh = shared(Config::default());
        let c = cache(&sh);
        let r = req("GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut ex = exchange::<()>(&sh, &c, &r, ConnState::default());
        ex.start(Instant::now());
        let plan = sent(ex.resume(Done::Read(Ok(vec![])), Instant::now()));
        assert_eq!(plan.status, Status::InternalServerError);
    }
}
