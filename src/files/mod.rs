//! Files: turning a decoded request path into a safe path relative to the root, the extension
//! policy with its Content-Type table, and the file metadata the responder decides on.
//!
//! The string checks here are the first line of defence (no `..` above the root, no dotfiles, no
//! NUL); the engines open files with `openat2(RESOLVE_BENEATH)` on a root directory descriptor, so
//! the kernel enforces the root as well, symlinks included. No I/O happens in this module.

pub mod cache;
pub mod listing;
pub mod sys;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::coding::Coding;

/// Why a path cannot be served, before any file system access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `..` would climb above the root.
    Escapes,
    /// A segment starts with `.`: dotfiles and dot-directories are never served.
    Hidden,
}

/// A request path made safe: relative to the root, normalised, NUL-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Relative path for `openat2`/`statx` against the root descriptor (`.` for the root itself).
    pub rel: CString,
    /// The request path ended in `/` (a directory is wanted).
    pub trailing_slash: bool,
}

/// Normalises a decoded request path (`/a/./b/../c`) into a relative path under the root.
pub fn resolve(path: &[u8], policy: &Policy) -> Result<Target, PathError> {
    let mut key = Vec::with_capacity(path.len() + 1);
    normalize_into(path, policy, &mut key)?;
    Ok(Target {
        rel: rel_of_key(&key),
        trailing_slash: path.ends_with(b"/"),
    })
}

/// The relative path a normalised key (see [`normalize_into`]) names: the key without the `/`
/// that marks a directory request.
pub fn rel_of_key(key: &[u8]) -> CString {
    let rel = key.strip_suffix(b"/").unwrap_or(key);
    // normalize_into refuses NUL, so this cannot fail; an empty path would only fail to open.
    CString::new(rel).unwrap_or_default()
}

/// Writes the normalised form of `path` into `out` (cleared first): the relative path (`.` for the
/// root), plus `/` when the request path ended in one. This is also the file cache's key, so a
/// cache hit needs no allocation: `/a.css`, `//a.css` and `/x/../a.css` all become `a.css`.
pub fn normalize_into(path: &[u8], policy: &Policy, out: &mut Vec<u8>) -> Result<(), PathError> {
    out.clear();
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(PathError::Escapes);
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            s if s[0] == b'.' && !policy.dot_allowed(s) => return Err(PathError::Hidden),
            s => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(s);
            }
        }
    }
    // The parser already refused control bytes, NUL included; stay safe if called otherwise.
    if out.contains(&0) {
        return Err(PathError::Escapes);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    if path.ends_with(b"/") {
        out.push(b'/');
    }
    Ok(())
}

/// Appends a file name to a relative directory path (`.` + `index.html` is `index.html`).
pub fn join(dir: &CString, name: &str) -> CString {
    let mut v = if dir.as_bytes() == b"." {
        Vec::new()
    } else {
        let mut v = dir.as_bytes().to_vec();
        v.push(b'/');
        v
    };
    v.extend_from_slice(name.as_bytes());
    CString::new(v).unwrap_or_else(|_| dir.clone())
}

/// The sidecar of `rel` holding `coding` (`app.js` → `app.js.br`). It is opened in `rel`'s
/// stead, so it inherits `rel`'s policy and type; asked for by name, it has its own.
pub fn sidecar(rel: &CString, coding: Coding) -> CString {
    let mut v = rel.as_bytes().to_vec();
    v.extend_from_slice(coding.suffix().as_bytes());
    CString::new(v).unwrap_or_else(|_| rel.clone())
}

/// What a probe found beside a file, by [`Coding::index`]: each sidecar's metadata, `None` when
/// there is no regular file of that name.
pub type Sidecars = [Option<Meta>; 3];

/// Which files may be served, and the Content-Type of each.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allowed extensions (lowercase) and their Content-Type, rendered once at start.
    types: HashMap<String, String>,
    /// `allowed_extensions = ["*"]`: every extension is allowed.
    any_extension: bool,
    /// `[files.types]`: Content-Type overrides, also used for extensions allowed by `*`.
    overrides: HashMap<String, String>,
    /// The Content-Type of files without an extension, when they may be served.
    no_extension: Option<String>,
    /// Dot-named segments that may be served (`.well-known`).
    dot_paths: Vec<Vec<u8>>,
}

/// The Content-Type of an extension: a `[files.types]` override, else the maintained table
/// (`mime_guess`), with `charset=utf-8` on textual types; `application/octet-stream` when unknown.
fn type_of(ext: &str, overrides: &HashMap<String, String>) -> String {
    if let Some(t) = overrides.get(ext) {
        return t.clone();
    }
    let mime = mime_guess::from_ext(ext).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
        || mime.suffix().is_some_and(|s| s == "xml" || s == "json");
    if textual && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    }
}

impl Policy {
    /// Builds the tables once at start from allowed extensions (matched case-insensitively;
    /// `"*"` allows all), no other rule.
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Policy {
        Policy::build(allowed, &Default::default(), false, &[])
    }

    /// The policy the `[files]` settings describe.
    pub fn for_config(files: &crate::config::Files) -> Policy {
        Policy::build(
            &files.allowed_extensions,
            &files.types,
            files.allow_no_extension,
            &files.allow_dot_paths,
        )
    }

    fn build<S: AsRef<str>>(
        allowed: &[S],
        types: &std::collections::BTreeMap<String, String>,
        allow_no_extension: bool,
        dot_paths: &[String],
    ) -> Policy {
        let overrides: HashMap<String, String> = types
            .iter()
            .map(|(e, t)| (e.to_ascii_lowercase(), t.clone()))
            .collect();
        let any_extension = allowed.iter().any(|e| e.as_ref() == "*");
        let types = allowed
            .iter()
            .filter(|e| e.as_ref() != "*")
            .map(|ext| {
                let ext = ext.as_ref().to_ascii_lowercase();
                let ct = type_of(&ext, &overrides);
                (ext, ct)
            })
            .collect();
        let no_extension = allow_no_extension.then(|| {
            overrides
                .get("")
                .cloned()
                .unwrap_or_else(|| "application/octet-stream".into())
        });
        Policy {
            types,
            any_extension,
            overrides,
            no_extension,
            dot_paths: dot_paths.iter().map(|s| s.as_bytes().to_vec()).collect(),
        }
    }

    /// The Content-Type for a file name, or `None` when it may not be served (403).
    pub fn content_type(&self, rel: &[u8]) -> Option<Cow<'_, str>> {
        let name = rel.rsplit(|&b| b == b'/').next()?;
        let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
            return self.no_extension.as_deref().map(Cow::Borrowed);
        };
        let ext = std::str::from_utf8(&name[dot + 1..]).ok()?;
        if ext.is_empty() || ext.len() > 16 {
            return None;
        }
        let mut lower = [0u8; 16];
        let lower = &mut lower[..ext.len()];
        lower.copy_from_slice(ext.as_bytes());
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        match self.types.get(lower) {
            Some(t) => Some(Cow::Borrowed(t)),
            None if self.any_extension => Some(Cow::Owned(type_of(lower, &self.overrides))),
            None => None,
        }
    }

    /// Whether a dot-named path segment is served anyway (`allow_dot_paths`).
    pub fn dot_allowed(&self, segment: &[u8]) -> bool {
        self.dot_paths.iter().any(|d| d == segment)
    }
}

/// What kind of file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// FIFOs, sockets, devices: never opened.
    Other,
}

/// The metadata the responder needs, filled from `statx` by either engine. Two readings that
/// compare equal are the same version of the same file: besides size and mtime, the inode and
/// the change time catch an edit of the same size within the same second, a `cp -p` or a
/// replaced file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// What kind of file this is.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Inode number.
    pub ino: u64,
    /// Status change time, whole seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds part of the status change time.
    pub ctime_nsec: u32,
}

impl Meta {
    /// The modification time in whole seconds, as HTTP dates show it (a time before the epoch
    /// shows as the epoch).
    pub fn modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.mtime.max(0) as u64)
    }

    /// Reads the fields of [`STATX_MASK`] out of a `statx` result.
    pub fn from_statx(st: &libc::statx) -> Meta {
        let kind = match u32::from(st.stx_mode) & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            _ => Kind::Other,
        };
        Meta {
            kind,
            size: st.stx_size,
            mtime: st.stx_mtime.tv_sec,
            mtime_nsec: st.stx_mtime.tv_nsec,
            ino: st.stx_ino,
            ctime: st.stx_ctime.tv_sec,
            ctime_nsec: st.stx_ctime.tv_nsec,
        }
    }
}

/// What a response needs to know about a regular file, computed once per file (and kept with it
/// in the file cache): metadata, type and the rendered validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The version of the file these facts describe.
    pub meta: Meta,
    /// The `Content-Type` value.
    pub content_type: String,
    /// The strong validator, quoted.
    pub etag: String,
    /// The `Last-Modified` value (IMF-fixdate).
    pub last_modified: String,
}

impl FileInfo {
    /// Renders the validators of `meta` once.
    pub fn new(meta: Meta, content_type: &str) -> FileInfo {
        let mut info = FileInfo {
            meta,
            content_type: content_type.to_string(),
            etag: format!("\"{:x}.{:x}-{:x}\"", meta.mtime, meta.mtime_nsec, meta.size),
            last_modified: String::new(),
        };
        info.last_modified = httpdate::fmt_http_date(info.meta.modified());
        info
    }

    /// The facts of a precompressed sidecar (metadata `meta`) standing for a file of type
    /// `content_type`: the file's type, the sidecar's validators, its ETag marked with the coding
    /// so that it never equals the plain file's (RFC 9110 §8.8.3).
    pub fn variant(meta: Meta, content_type: &str, coding: Coding) -> FileInfo {
        let mut info = FileInfo::new(meta, content_type);
        info.etag
            .insert_str(info.etag.len() - 1, &format!("-{}", coding.token()));
        info
    }
}

/// The error for a file that turned out shorter than the length its response promised (it
/// shrank while being sent): the connection is cut, never padded.
pub fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while sending",
    )
}

/// Fields requested from statx.
pub const STATX_MASK: u32 =
    libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME | libc::STATX_INO | libc::STATX_CTIME;

/// Flags for `openat2`: read-only, nonblocking (a FIFO cannot block the open; reads of regular
/// files ignore it, as nginx relies on too), no controlling tty, close-on-exec.
pub const OPEN_FLAGS: u64 =
    (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
/// Resolution rules for `openat2`: never leave the root, no /proc magic links.
pub const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> Result<String, PathError> {
        resolve(p.as_bytes(), &Policy::new::<&str>(&[])).map(|t| t.rel.into_string().unwrap())
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(rel("/"), Ok(".".into()));
        assert_eq!(rel("/index.html"), Ok("index.html".into()));
        assert_eq!(rel("/a//b/./c.css"), Ok("a/b/c.css".into()));
        assert_eq!(rel("/a/../b.css"), Ok("b.css".into()));
        assert_eq!(rel("/a/b/../../c"), Ok("c".into()));
        let none = Policy::new::<&str>(&[]);
        assert!(resolve(b"/sub/", &none).unwrap().trailing_slash);
        assert!(!resolve(b"/sub", &none).unwrap().trailing_slash);
    }

    #[test]
    fn refuses_escapes_and_dotfiles() {
        assert_eq!(rel("/.."), Err(PathError::Escapes));
        assert_eq!(rel("/../etc/passwd"), Err(PathError::Escapes));
        assert_eq!(rel("/a/../../etc/passwd"), Err(PathError::Escapes));
        assert_eq!(rel("/.git/config"), Err(PathError::Hidden));
        assert_eq!(rel("/a/.env"), Err(PathError::Hidden));
        assert_eq!(rel("/a/...."), Err(PathError::Hidden));
    }

    #[test]
    fn joins_index() {
        assert_eq!(
            join(&CString::new(".").unwrap(), "index.html").as_bytes(),
            b"index.html"
        );
        assert_eq!(
            join(&CString::new("sub").unwrap(), "index.html").as_bytes(),
            b"sub/index.html"
        );
    }

    #[test]
    fn policy_types() {
        let p = Policy::new(&["html", "PNG", "js", "json", "svg", "woff2", "txt"]);
        assert_eq!(
            p.content_type(b"index.html").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(p.content_type(b"a/b/IMG.Png").as_deref(), Some("image/png"));
        assert_eq!(
            p.content_type(b"app.js").as_deref(),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            p.content_type(b"d.json").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            p.content_type(b"i.svg").as_deref(),
            Some("image/svg+xml; charset=utf-8")
        );
        assert_eq!(p.content_type(b"f.woff2").as_deref(), Some("font/woff2"));
        assert_eq!(p.content_type(b"photo.jpg").as_deref(), None);
        assert_eq!(p.content_type(b"Makefile").as_deref(), None);
        assert_eq!(p.content_type(b"dir.html/file").as_deref(), None);
        assert_eq!(p.content_type(b"trailing.").as_deref(), None);
    }

    #[test]
    fn star_no_extension_overrides_and_dot_paths() {
        let mut types = std::collections::BTreeMap::new();
        types.insert("wasm".to_string(), "application/wasm".to_string());
        let p = Policy::build(&["*"], &types, true, &[".well-known".to_string()]);
        assert_eq!(p.content_type(b"a.jpg").as_deref(), Some("image/jpeg"));
        assert_eq!(
            p.content_type(b"m.wasm").as_deref(),
            Some("application/wasm")
        );
        assert_eq!(
            p.content_type(b"x.unknownext").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            p.content_type(b"README").as_deref(),
            Some("application/octet-stream")
        );
        let strict = Policy::new(&["html"]);
        assert_eq!(strict.content_type(b"README"), None);
        let rel = |path: &[u8], pol: &Policy| resolve(path, pol).map(|t| t.rel.into_bytes());
        assert_eq!(
            rel(b"/.well-known/security.txt", &p),
            Ok(b".well-known/security.txt".to_vec())
        );
        assert_eq!(
            rel(b"/.well-known/security.txt", &strict),
            Err(PathError::Hidden)
        );
        assert_eq!(rel(b"/.git/config", &p), Err(PathError::Hidden));
    }
}
