//! Micro-benchmarks of the pure hot paths every request walks through, with no I/O:
//! parsing the request head (`http::parse`), making the path safe (`files::resolve`) and choosing
//! its Content-Type (`Policy::content_type`), and rendering response heads (`http::Head`,
//! `respond::error_response`), and one whole request answered from the file cache the way a
//! connection does it, minus the sockets (`cached request`): the user-space work the engines add
//! runtime and system calls to. Run with `cargo bench --bench hot_paths`; the engine lab
//! (`cargo bench --bench lab`) measures the whole server.

use std::cell::RefCell;
use std::hint::black_box;
use std::io;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uring_httpd::config::Config;
use uring_httpd::exchange::{ConnState, Done, Exchange, Step};
use uring_httpd::files::cache::FileCache;
use uring_httpd::files::{self, Kind, Meta, Policy};
use uring_httpd::http::{self, Head, Status, response};
use uring_httpd::respond::{self, Body};
use uring_httpd::settings::Settings;
use uring_httpd::stats::Stats;

/// What curl sends.
const CURL: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\n\
User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// What wrk sends (the lab's load).
const WRK: &[u8] = b"GET /100k.png HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A browser's revalidation of an image: many headers, a percent-encoded path, validators.
const BROWSER: &[u8] = b"GET /assets/img/hello%20world/logo.PNG?v=3 HTTP/1.1\r\n\
Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5\r\n\
Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.org/blog/2024/06/a-long-article-title.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f9a8c1e2b7d4a10b3c6e5f7a8d9c0b1; theme=dark; consent=yes\r\n\
Sec-Fetch-Dest: image\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\
If-None-Match: \"65f1c2a4-1a2b3\"\r\n\
If-Modified-Since: Wed, 13 Mar 2024 10:15:00 GMT\r\n\
Priority: u=5, i\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http::parse");
    for (name, req) in [("curl", CURL), ("wrk", WRK), ("browser", BROWSER)] {
        // Sanity: the inputs must parse, or the figures mean nothing.
        assert!(
            matches!(http::parse(req), Ok(Some(_))),
            "{name} does not parse"
        );
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| b.iter(|| http::parse(black_box(req))));
    }
    // A head still arriving: the parser must say "more" quickly.
    let partial = &BROWSER[..BROWSER.len() / 2];
    assert!(matches!(http::parse(partial), Ok(None)));
    g.throughput(Throughput::Bytes(partial.len() as u64));
    g.bench_function("browser, half received", |b| {
        b.iter(|| http::parse(black_box(partial)))
    });
    g.finish();
}

fn resolve(c: &mut Criterion) {
    let none = Policy::new::<&str>(&[]);
    let mut g = c.benchmark_group("files::resolve");
    for (name, path) in [
        ("root", &b"/"[..]),
        ("short", b"/100k.png"),
        ("deep", b"/assets/img/hello world/logo.PNG"),
        ("dot segments", b"/a/./b/../c//d/./../index.html"),
    ] {
        assert!(files::resolve(path, &none).is_ok(), "{name}");
        g.bench_function(name, |b| b.iter(|| files::resolve(black_box(path), &none)));
    }
    assert!(files::resolve(b"/../etc/passwd", &none).is_err());
    g.bench_function("escape refused", |b| {
        b.iter(|| files::resolve(black_box(b"/a/../../etc/passwd"), &none))
    });
    g.finish();

    let policy = Policy::new(&[
        "html", "htm", "css", "js", "mjs", "json", "txt", "png", "gif", "ico", "svg", "webp",
        "woff2",
    ]);
    let mut g = c.benchmark_group("Policy::content_type");
    for (name, rel, allowed) in [
        ("html", &b"index.html"[..], true),
        ("nested upper-case png", b"assets/img/logo.PNG", true),
        ("refused extension", b"backup/site.tar.gz", false),
        ("no extension", b"assets/README", false),
    ] {
        assert_eq!(policy.content_type(rel).is_some(), allowed, "{name}");
        g.bench_function(name, |b| b.iter(|| policy.content_type(black_box(rel))));
    }
    g.finish();
}

fn heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("response head");
    // What a 200 for a file carries, into a reused buffer as a connection does.
    let mut buf = Some(Vec::with_capacity(512));
    g.bench_function("Head 200 file (reused buffer)", |b| {
        b.iter(|| {
            let mut h = Head::new(buf.take().unwrap_or_default(), Status::Ok);
            h.header("Content-Type", b"image/png")
                .header("Last-Modified", b"Wed, 13 Mar 2024 10:15:00 GMT")
                .header("ETag", b"\"65f1c2a4-19000\"")
                .header("Accept-Ranges", b"bytes");
            let out = h.finish(black_box(102_400), true);
            let len = out.len();
            buf = Some(out);
            len
        })
    });
    g.bench_function("Head 304 (fresh buffer)", |b| {
        b.iter(|| {
            let mut h = Head::new(Vec::new(), Status::NotModified);
            h.header("ETag", b"\"65f1c2a4-19000\"");
            h.finish(0, black_box(true))
        })
    });
    g.bench_function("error_response 404", |b| {
        b.iter(|| {
            respond::error_response::<()>(black_box(Status::NotFound), false, true)
                .head
                .len()
        })
    });
    g.bench_function("error_response 400 HEAD close", |b| {
        b.iter(|| {
            respond::error_response::<()>(black_box(Status::BadRequest), true, false)
                .head
                .len()
        })
    });
    g.finish();
}

/// One keep-alive request for a 2,027-byte page already in the worker's file cache, as a
/// connection answers it: parse the head, run the exchange to its plan (a cache hit reads no
/// monotonic clock and makes no system call; the `Date` reads the coarse wall clock), copy the
/// body behind the head, give the buffer back.
fn cached_request(c: &mut Criterion) {
    const REQ: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
    const PAGE: usize = 2027;
    let dir = tempfile::tempdir().expect("temporary root");
    let settings = Settings::open(Config::default(), dir.path(), 1).expect("settings");
    let stats = Stats::new("bench", 1);
    let cache = RefCell::new(FileCache::for_config(&settings.config.files, 1));
    let now = Instant::now();
    let meta = Meta {
        kind: Kind::File,
        size: PAGE as u64,
        mtime: 1_700_000_000,
        ino: 1,
        ctime: 1_700_000_000,
        ..Meta::default()
    };
    // The first request misses: it opens the page, finds no compressed sidecars, reads it and
    // fills the cache.
    let req = http::parse(REQ).expect("parses").expect("complete");
    let mut ex = Exchange::<()>::new(&settings, &stats, &cache, &req, ConnState::default());
    let mut step = ex.start(now);
    loop {
        step = match step {
            Step::Open(_) => ex.resume(Done::Open(Ok(((), meta))), now),
            Step::Stat(_) => ex.resume(Done::Stat(Err(io::ErrorKind::NotFound.into())), now),
            Step::ReadWhole(..) => ex.resume(Done::Read(Ok(vec![b'x'; PAGE])), now),
            Step::Send(_) => break,
            other => panic!("unexpected step {other:?}"),
        };
    }
    let mut g = c.benchmark_group("cached request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("2 KiB hit, parse to wire bytes", |b| {
        b.iter(|| {
            let req = http::parse(black_box(REQ))
                .expect("parses")
                .expect("complete");
            let mut ex = Exchange::<()>::new(&settings, &stats, &cache, &req, ConnState::default());
            let Step::Send(plan) = ex.start(now) else {
                panic!("a cache hit answers at once");
            };
            let mut wire = plan.head;
            match plan.body {
                Body::Cached(b, range) => wire.extend_from_slice(&b[range]),
                other => panic!("expected the cached body, got {other:?}"),
            }
            let len = wire.len();
            response::recycle(wire);
            len
        })
    });
    g.finish();
}

criterion_group!(benches, parse, resolve, heads, cached_request);
criterion_main!(benches);
