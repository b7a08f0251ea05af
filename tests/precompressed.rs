//! Precompressed sidecars (issue 9, item 1): `app.js.br`, `.zst` and `.gz` beside `app.js` are
//! served to clients that accept the coding, with `Content-Encoding`, `Vary`, the variant's own
//! length and ETag, ranges and conditionals applied to the variant; small files come from the
//! cache with their variants, big ones from the file. Both engines, over real sockets.

mod common;

use std::io::{BufReader, Write};

use common::{Engine, Opts, Server, binary_bytes, read_response};

engine_tests!(
    the_preferred_accepted_variant_is_served_with_vary,
    ranges_and_conditionals_apply_to_the_variant,
    a_big_file_variant_is_sent_byte_exact_from_the_file,
    a_sidecar_is_judged_by_its_own_extension_when_asked_for_by_name,
    a_sidecar_that_escapes_the_root_is_never_served,
    precompressed_can_be_switched_off,
);

fn get_ae(s: &Server, path: &str, ae: &str) -> common::Response {
    s.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {ae}\r\n\r\n"
    ))
}

/// Gives the fixture's `app.js` a brotli and a gzip variant (distinct bytes, not real
/// compression: the server never decodes them).
fn with_variants(s: &Server) -> (Vec<u8>, Vec<u8>) {
    let (br, gz) = (binary_bytes(300), binary_bytes(500));
    std::fs::write(s.root.join("app.js.br"), &br).unwrap();
    std::fs::write(s.root.join("app.js.gz"), &gz).unwrap();
    (br, gz)
}

fn the_preferred_accepted_variant_is_served_with_vary(e: Engine) {
    let s = Server::start(e);
    let (br, gz) = with_variants(&s);
    let plain = std::fs::read(s.root.join("app.js")).unwrap();
    // (Accept-Encoding, body, Content-Encoding); twice, so the second round comes from the cache.
    let table: &[(&str, &[u8], Option<&str>)] = &[
        ("gzip, deflate, br, zstd", &br, Some("br")),
        ("gzip", &gz, Some("gzip")),
        ("br;q=0.5, gzip", &gz, Some("gzip")),
        ("zstd", &plain, None),
        ("br;q=0, gzip;q=0", &plain, None),
        ("gzip;q=0.5, identity", &plain, None),
        ("*", &br, Some("br")),
    ];
    let mut etags = std::collections::HashSet::new();
    for round in 0..2 {
        for (ae, body, coding) in table {
            let r = get_ae(&s, "/app.js", ae);
            assert_eq!(r.status, 200, "{ae}");
            assert_eq!(&r.body, body, "{ae} round {round}");
            assert_eq!(r.header("Content-Encoding"), *coding, "{ae}");
            assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{ae}");
            assert_eq!(
                r.header("Content-Type"),
                Some("text/javascript; charset=utf-8"),
                "{ae}"
            );
            assert_eq!(r.header("Content-Length"), Some(&*body.len().to_string()));
            etags.insert(r.header("ETag").unwrap().to_string());
        }
    }
    assert_eq!(etags.len(), 3, "one ETag per representation: {etags:?}");
    // No Accept-Encoding at all: the file itself, still with Vary.
    let r = s.get("/app.js");
    assert_eq!(r.body, plain);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // A file without a variant does not vary.
    let r = get_ae(&s, "/style.css", "gzip, br");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Vary"), None);
    assert_eq!(r.header("Content-Encoding"), None);
}

fn ranges_and_conditionals_apply_to_the_variant(e: Engine) {
    let s = Server::start(e);
    let (br, _) = with_variants(&s);
    let r = s.request(
        "GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\nRange: bytes=10-19\r\n\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &br[10..20]);
    assert_eq!(r.header("Content-Range"), Some("bytes 10-19/300"));
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    let etag = r.header("ETag").unwrap().to_string();
    let cond = |ae: &str| {
        s.request(&format!(
            "GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {ae}\r\nIf-None-Match: {etag}\r\n\r\n"
        ))
    };
    let r = cond("br");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("ETag"), Some(&*etag));
    // The brotli ETag does not validate the gzip variant.
    assert_eq!(cond("gzip").status, 200);
    let r = s.request(
        "GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\nRange: bytes=300-\r\n\r\n",
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */300"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
}

fn a_big_file_variant_is_sent_byte_exact_from_the_file(e: Engine) {
    // image.png (70,000 bytes) is kept out of the cache: its variant is opened and sent from
    // the file on every request, on one keep-alive connection here.
    let s = common::from_file(e);
    let gz = binary_bytes(90_001);
    std::fs::write(s.root.join("image.png.gz"), &gz).unwrap();
    let plain = std::fs::read(s.root.join("image.png")).unwrap();
    let mut c = s.connect();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    for (ae, body, coding) in [
        ("gzip", &gz, Some("gzip")),
        ("identity", &plain, None),
        ("gzip", &gz, Some("gzip")),
    ] {
        write!(
            c,
            "GET /image.png HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {ae}\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut reader, false).expect("a response");
        assert_eq!(r.status, 200);
        assert!(r.body == *body, "{ae}: {} bytes", r.body.len());
        assert_eq!(r.header("Content-Encoding"), coding);
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("Content-Type"), Some("image/png"));
    }
}

fn a_sidecar_is_judged_by_its_own_extension_when_asked_for_by_name(e: Engine) {
    let s = Server::start(e);
    with_variants(&s);
    assert_eq!(s.get("/app.js.gz").status, 403);
    assert_eq!(s.get("/app.js.br").status, 403);
    let s = Opts::new(e)
        .extra("[files]\nallowed_extensions = [\"js\", \"gz\"]")
        .start();
    let (_, gz) = with_variants(&s);
    let r = get_ae(&s, "/app.js.gz", "gzip");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, gz);
    assert_eq!(r.header("Content-Type"), Some("application/gzip"));
    assert_eq!(r.header("Content-Encoding"), None);
}

fn a_sidecar_that_escapes_the_root_is_never_served(e: Engine) {
    let s = Server::start(e);
    // index.html's gzip "variant" is a symlink to a file outside the root.
    let outside = s.dir.path().join("outside/secret.html");
    std::os::unix::fs::symlink(&outside, s.root.join("index.html.gz")).unwrap();
    std::fs::write(s.root.join("style.css.gz"), b"fine").unwrap();
    for _ in 0..2 {
        let r = get_ae(&s, "/index.html", "gzip");
        assert_eq!(r.status, 200);
        assert!(!r.text().contains("OUTSIDE"), "{}", r.text());
        assert!(r.text().contains("home"));
        assert_eq!(r.header("Content-Encoding"), None);
    }
    assert_eq!(get_ae(&s, "/style.css", "gzip").body, b"fine");
}

fn precompressed_can_be_switched_off(e: Engine) {
    let s = Opts::new(e).extra("[files]\nprecompressed = false").start();
    with_variants(&s);
    let r = get_ae(&s, "/app.js", "gzip, br");
    assert_eq!(r.body, std::fs::read(s.root.join("app.js")).unwrap());
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), None);
}
