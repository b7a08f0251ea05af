//! Directory listings (`files.listing = true`): reading a directory beneath the root, and
//! rendering it as an HTML page.
//!
//! [`read_dir`] is a blocking call; both engines run it on the small blocking pool
//! ([`crate::blocking`]), never on a worker thread, so a large or slow directory delays only the
//! request that asked for it. What is listed follows what would be served: dot names are hidden
//! (unless `allow_dot_paths` names them), and so are special files, symlinks that leave the root
//! and files whose extension the policy refuses. Directories come first, then files, each sorted
//! by name; names are HTML-escaped and percent-encoded in links.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use super::{Kind, Meta, Policy, sys};

/// At most this many entries are listed; a larger directory says it was cut short.
pub const MAX_ENTRIES: usize = 10_000;

/// One listed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name, as bytes.
    pub name: Vec<u8>,
    /// What it is (a symlink is listed as what it points to).
    pub meta: Meta,
}

/// A directory's entries, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries, in the order the file system gave them.
    pub entries: Vec<Entry>,
    /// More than [`MAX_ENTRIES`] were there.
    pub truncated: bool,
}

/// Reads the directory `rel` beneath `root` (blocking). Symlinks are resolved beneath the root;
/// one that leaves it, or dangles, is left out, as are entries that vanish while being read.
pub fn read_dir(root: RawFd, rel: &CStr) -> io::Result<Listing> {
    let flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    let dirfd = sys::openat2(root, rel, flags)?.into_raw_fd();
    // `Dir` owns the descriptor from here on and closes it (on failure too).
    let mut dir = nix::dir::Dir::from_fd(dirfd).map_err(io::Error::from)?;
    let mut listing = Listing::default();
    for entry in dir.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        if listing.entries.len() == MAX_ENTRIES {
            listing.truncated = true;
            break;
        }
        let meta = match sys::statx(dirfd, name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(m) if m.kind != Kind::Other => m,
            // A symlink (or something that is neither file nor directory): what it points to,
            // looked up beneath the root as a request for it would be.
            Ok(_) => match resolve_beneath(root, rel, name) {
                Some(m) => m,
                None => continue,
            },
            Err(_) => continue,
        };
        listing.entries.push(Entry {
            name: name.to_bytes().to_vec(),
            meta,
        });
    }
    Ok(listing)
}

fn resolve_beneath(root: RawFd, rel: &CStr, name: &CStr) -> Option<Meta> {
    let mut path = rel.to_bytes().to_vec();
    path.push(b'/');
    path.extend_from_slice(name.to_bytes());
    let path = CString::new(path).ok()?;
    let fd = sys::openat2(root, &path, (libc::O_PATH | libc::O_CLOEXEC) as u64).ok()?;
    sys::statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).ok()
}

fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn escape_href(name: &[u8], out: &mut String) {
    out.extend(crate::http::percent_encoded(name, b"-._~!$()*+,;=:@").map(char::from));
}

/// Renders the listing of the directory the request path `path` names (it ends in `/`), with
/// what `policy` would serve.
pub fn render(path: &[u8], listing: &Listing, policy: &Policy) -> Vec<u8> {
    let mut shown: Vec<&Entry> = listing
        .entries
        .iter()
        .filter(|e| {
            let dot = e.name.first() == Some(&b'.');
            match e.meta.kind {
                _ if dot && !policy.dot_allowed(&e.name) => false,
                Kind::Dir => true,
                Kind::File => policy.content_type(&e.name).is_some(),
                Kind::Other => false,
            }
        })
        .collect();
    shown.sort_by(|a, b| {
        let dir = |e: &Entry| e.meta.kind != Kind::Dir;
        (dir(a), &a.name).cmp(&(dir(b), &b.name))
    });
    let title = String::from_utf8_lossy(path);
    let mut html = String::with_capacity(512 + 160 * shown.len());
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    escape_html(&title, &mut html);
    html.push_str("</title></head>\n<body><h1>Index of ");
    escape_html(&title, &mut html);
    html.push_str("</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n");
    if path != b"/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    for e in shown {
        let slash = if e.meta.kind == Kind::Dir { "/" } else { "" };
        html.push_str("<tr><td><a href=\"");
        escape_href(&e.name, &mut html);
        html.push_str(slash);
        html.push_str("\">");
        escape_html(&String::from_utf8_lossy(&e.name), &mut html);
        html.push_str(slash);
        html.push_str("</a></td><td>");
        match e.meta.kind {
            Kind::Dir => html.push('-'),
            _ => html.push_str(&e.meta.size.to_string()),
        }
        html.push_str("</td><td>");
        html.push_str(&httpdate::fmt_http_date(e.meta.modified()));
        html.push_str("</td></tr>\n");
    }
    html.push_str("</table>\n");
    if listing.truncated {
        html.push_str(&format!(
            "<p>Only the first {MAX_ENTRIES} entries are listed.</p>\n"
        ));
    }
    html.push_str("</body></html>\n");
    html.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: Kind, size: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            meta: Meta {
                kind,
                size,
                mtime: 1_700_000_000,
                ..Meta::default()
            },
        }
    }

    #[test]
    fn directories_first_sorted_escaped_and_filtered_by_policy() {
        let listing = Listing {
            entries: vec![
                entry("b.html", Kind::File, 12),
                entry("z-dir", Kind::Dir, 0),
                entry("a <x> & \"q\".html", Kind::File, 3),
                entry(".env", Kind::File, 1),
                entry(".well-known", Kind::Dir, 0),
                entry("photo.jpg", Kind::File, 9),
                entry("a-dir", Kind::Dir, 0),
                entry("fifo.html", Kind::Other, 0),
            ],
            truncated: false,
        };
        let mut types = std::collections::BTreeMap::new();
        types.insert("html".into(), "text/html".into());
        let policy = Policy::build(&["html"], &types, false, &[".well-known".to_string()]);
        let html = String::from_utf8(render(b"/sub/", &listing, &policy)).unwrap();
        let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<tr><td>")).collect();
        let date = "Tue, 14 Nov 2023 22:13:20 GMT";
        assert_eq!(
            rows,
            [
                "<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>".to_string(),
                format!(
                    "<tr><td><a href=\".well-known/\">.well-known/</a></td><td>-</td><td>{date}</td></tr>"
                ),
                format!("<tr><td><a href=\"a-dir/\">a-dir/</a></td><td>-</td><td>{date}</td></tr>"),
                format!("<tr><td><a href=\"z-dir/\">z-dir/</a></td><td>-</td><td>{date}</td></tr>"),
                format!(
                    "<tr><td><a href=\"a%20%3Cx%3E%20%26%20%22q%22.html\">a &lt;x&gt; &amp; &quot;q&quot;.html</a></td><td>3</td><td>{date}</td></tr>"
                ),
                format!(
                    "<tr><td><a href=\"b.html\">b.html</a></td><td>12</td><td>{date}</td></tr>"
                ),
            ]
        );
        assert!(html.contains("<title>Index of /sub/</title>"));
        // The root has no parent link.
        let root = String::from_utf8(render(b"/", &listing, &policy)).unwrap();
        assert!(!root.contains("href=\"../\""));
    }

    #[test]
    fn a_truncated_listing_says_so() {
        let listing = Listing {
            entries: vec![],
            truncated: true,
        };
        let html = String::from_utf8(render(b"/<x>/", &listing, &Policy::new(&["html"]))).unwrap();
        assert!(html.contains("Only the first 10000 entries are listed."));
        assert!(html.contains("Index of /&lt;x&gt;/"));
    }
}
