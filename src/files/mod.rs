//! Files: turning a decoded request path into a safe path relative to the root, the extension
//! policy with its Content-Type table, and the file metadata the responder decides on.
//!
//! The string checks here are the first line of defence (no `..` above the root, no dotfiles, no
//! NUL); the engines open files with `openat2(RESOLVE_BENEATH)` on a root directory descriptor, so
//! the kernel enforces the root as well, symlinks included. No I/O happens in this module.

pub mod cache;

use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
pub fn resolve(path: &[u8]) -> Result<Target, PathError> {
    let mut rel = Vec::with_capacity(path.len() + 1);
    normalize_into(path, &mut rel)?;
    let trailing_slash = path.ends_with(b"/");
    if trailing_slash {
        rel.pop();
    }
    let rel = CString::new(rel).map_err(|_| PathError::Escapes)?;
    Ok(Target {
        rel,
        trailing_slash,
    })
}

/// Writes the normalised form of `path` into `out` (cleared first): the relative path (`.` for the
/// root), plus `/` when the request path ended in one. This is also the file cache's key, so a
/// cache hit needs no allocation: `/a.css`, `//a.css` and `/x/../a.css` all become `a.css`.
pub fn normalize_into(path: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
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
            s if s[0] == b'.' => return Err(PathError::Hidden),
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

/// Which files may be served, and the Content-Type of each allowed extension.
#[derive(Debug, Clone)]
pub struct Policy {
    types: HashMap<String, String>,
}

impl Policy {
    /// Builds the table once at start; extensions are matched case-insensitively.
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Policy {
        let types = allowed
            .iter()
            .map(|ext| {
                let ext = ext.as_ref().to_ascii_lowercase();
                let mime = mime_guess::from_ext(&ext).first_or_octet_stream();
                let textual = mime.type_() == mime_guess::mime::TEXT
                    || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
                    || mime.suffix().is_some_and(|s| s == "xml" || s == "json");
                let ct = if textual && mime.get_param("charset").is_none() {
                    format!("{}; charset=utf-8", mime.essence_str())
                } else {
                    mime.to_string()
                };
                (ext, ct)
            })
            .collect();
        Policy { types }
    }

    /// The Content-Type for a file name, or `None` when its extension is not allowed (403).
    pub fn content_type(&self, rel: &[u8]) -> Option<&str> {
        let name = rel.rsplit(|&b| b == b'/').next()?;
        let dot = name.iter().rposition(|&b| b == b'.')?;
        let ext = std::str::from_utf8(&name[dot + 1..]).ok()?;
        if ext.is_empty() || ext.len() > 16 {
            return None;
        }
        let mut lower = [0u8; 16];
        let lower = &mut lower[..ext.len()];
        lower.copy_from_slice(ext.as_bytes());
        lower.make_ascii_lowercase();
        self.types
            .get(std::str::from_utf8(lower).ok()?)
            .map(String::as_str)
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
        info.last_modified = httpdate::fmt_http_date(info.mtime());
        info
    }

    /// The modification time, whole seconds (what `Last-Modified` can say).
    pub fn mtime(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.meta.mtime.max(0) as u64)
    }
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
        resolve(p.as_bytes()).map(|t| t.rel.into_string().unwrap())
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(rel("/"), Ok(".".into()));
        assert_eq!(rel("/index.html"), Ok("index.html".into()));
        assert_eq!(rel("/a//b/./c.css"), Ok("a/b/c.css".into()));
        assert_eq!(rel("/a/../b.css"), Ok("b.css".into()));
        assert_eq!(rel("/a/b/../../c"), Ok("c".into()));
        assert!(resolve(b"/sub/").unwrap().trailing_slash);
        assert!(!resolve(b"/sub").unwrap().trailing_slash);
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
            p.content_type(b"index.html"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(p.content_type(b"a/b/IMG.Png"), Some("image/png"));
        assert_eq!(
            p.content_type(b"app.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            p.content_type(b"d.json"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            p.content_type(b"i.svg"),
            Some("image/svg+xml; charset=utf-8")
        );
        assert_eq!(p.content_type(b"f.woff2"), Some("font/woff2"));
        assert_eq!(p.content_type(b"photo.jpg"), None);
        assert_eq!(p.content_type(b"Makefile"), None);
        assert_eq!(p.content_type(b"dir.html/file"), None);
        assert_eq!(p.content_type(b"trailing."), None);
    }
}
