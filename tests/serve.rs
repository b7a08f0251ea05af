//! Serving files: targets, directories, headers, types, the extension policy, binary and large
//! files, concurrency. Every test runs against both engines.

mod common;

use std::io::{BufReader, Write};

use common::{Engine, Opts, Server, binary_bytes, read_response};

engine_tests!(
    root_serves_index_html,
    files_are_served_byte_exact_with_their_type,
    directory_without_slash_redirects,
    directory_with_slash_serves_its_index,
    directory_without_index_is_404,
    query_string_is_ignored,
    percent_encoding_is_decoded,
    absolute_form_target_is_accepted,
    head_sends_headers_without_body,
    every_response_carries_the_standard_headers,
    missing_file_is_404_and_connection_stays_usable,
    refused_extensions_get_403,
    dotfiles_are_404,
    symlink_inside_root_is_followed,
    symlinks_leaving_root_are_refused,
    binary_file_is_byte_exact,
    large_file_streams_in_bounded_memory,
    conditional_get_answers_304,
    single_range_answers_206,
    workers_serve_concurrent_connections,
    status_page_reports_engine_and_counters,
    cached_file_is_revalidated_after_a_change,
    cache_can_be_disabled,
    a_cached_900_kib_file_goes_whole_to_a_slow_reader,
);

fn root_serves_index_html(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(s.root.join("index.html")).unwrap());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
}

fn files_are_served_byte_exact_with_their_type(e: Engine) {
    let s = Server::start(e);
    for (path, ct) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/image.png", "image/png"),
        ("/sub/page.html", "text/html; charset=utf-8"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some(ct), "{path}");
        assert_eq!(
            r.body,
            std::fs::read(s.root.join(&path[1..])).unwrap(),
            "{path}"
        );
    }
}

fn directory_without_slash_redirects(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/sub");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/"));
    // The Location comes from the normalised path, never from a raw `//host` target.
    let r = s.get("//evil.example/..");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
}

fn directory_with_slash_serves_its_index(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/sub/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>sub index</p>\n");
}

fn directory_without_index_is_404(e: Engine) {
    let s = Server::start(e);
    assert_eq!(s.get("/empty/").status, 404);
    // A file asked for as a directory is not found either.
    assert_eq!(s.get("/style.css/").status, 404);
}

fn query_string_is_ignored(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/style.css?v=123&x=/../../etc/passwd");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body { color: #333; }\n");
}

fn percent_encoding_is_decoded(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/hello%20world.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"spaces\n");
    assert_eq!(s.get("/%73tyle.css").body, b"body { color: #333; }\n");
    assert_eq!(s.get("/caf%C3%A9.html").body, b"utf-8 name\n");
    // Raw UTF-8 in the target is not a valid request-target (RFC 9112 3.2): 400, never a panic,
    // with a multi-byte character across byte 7 too.
    assert_eq!(s.get("/caf\u{e9}.html").status, 400);
    assert_eq!(s.get("/abcde\u{e9}").status, 400);
    assert_eq!(s.get("/abcdef\u{e9}").status, 400);
}

fn absolute_form_target_is_accepted(e: Engine) {
    let s = Server::start(e);
    let r = s.request("GET http://example.test/style.css HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body { color: #333; }\n");
}

fn head_sends_headers_without_body(e: Engine) {
    let s = Server::start(e);
    let mut c = s.connect();
    // HEAD then GET on one connection: a stray body after HEAD would corrupt the second response.
    c.write_all(
        b"HEAD /image.png HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let head = read_response(&mut r, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("70000"));
    let get = read_response(&mut r, false).unwrap();
    assert_eq!(get.body, b"body { color: #333; }\n");
}

fn every_response_carries_the_standard_headers(e: Engine) {
    let s = Server::start(e);
    let cases = [
        ("GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200),
        ("GET /nope.html HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        ("GET /photo.jpg HTTP/1.1\r\nHost: t\r\n\r\n", 403),
        ("GET /sub HTTP/1.1\r\nHost: t\r\n\r\n", 301),
        ("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        ("GET / HTTP/1.1\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let r = s.request(raw);
        assert_eq!(r.status, status, "{raw:?}");
        let date = r.header("Date").expect("Date");
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(
            r.header("Server"),
            Some(concat!("uring-httpd/", env!("CARGO_PKG_VERSION")))
        );
        assert!(r.header("Content-Type").is_some(), "{raw:?}");
        assert_eq!(
            r.header("Content-Length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
        let conn = r.header("Connection").expect("Connection");
        assert!(conn == "keep-alive" || conn == "close", "{conn}");
        if status >= 400 {
            assert!(r.text().contains(&format!("<h1>{status} ")), "{}", r.text());
        }
    }
}

fn missing_file_is_404_and_connection_stays_usable(e: Engine) {
    let s = Server::start(e);
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(b"GET /missing.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let first = read_response(&mut r, false).unwrap();
    assert_eq!(first.status, 404);
    assert_eq!(first.header("Connection"), Some("keep-alive"));
    w.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
}

fn refused_extensions_get_403(e: Engine) {
    let s = Server::start(e);
    assert_eq!(s.get("/photo.jpg").status, 403);
    assert_eq!(s.get("/README").status, 403);
    // A missing file of a refused type is still just missing.
    assert_eq!(s.get("/nothing.jpg").status, 404);
}

fn dotfiles_are_404(e: Engine) {
    let s = Server::start(e);
    assert_eq!(s.get("/.hidden.html").status, 404);
    assert_eq!(s.get("/.git/config.txt").status, 404);
    assert_eq!(s.get("/sub/../.hidden.html").status, 404);
    assert_eq!(s.get("/%2ehidden.html").status, 404);
}

fn symlink_inside_root_is_followed(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/inside-link.html");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(s.root.join("index.html")).unwrap());
}

fn symlinks_leaving_root_are_refused(e: Engine) {
    let s = Server::start(e);
    // Through a symlinked directory, what exists outside and what does not look the same:
    // the kernel refuses the lookup before anything outside the root is even stat'ed.
    for path in [
        "/outside-link.html",
        "/relative-escape.html",
        "/outside-dir/secret.html",
        "/outside-dir/no-such-file.html",
        "/outside-dir",
        "/outside-dir/",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains("OUTSIDE"), "{path}");
    }
}

fn binary_file_is_byte_exact(e: Engine) {
    // Read into the cache, then from the cache (a writev of head and body); then from the file
    // (spliced by the io_uring engine), twice.
    for s in [Server::start(e), common::from_file(e)] {
        for _ in 0..2 {
            let r = s.get("/image.png");
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), 70_000);
            assert_eq!(r.body, binary_bytes(70_000));
        }
    }
}

fn large_file_streams_in_bounded_memory(e: Engine) {
    if common::built_with_asan() {
        return;
    }
    let s = Server::start(e);
    let big = binary_bytes(20 << 20);
    std::fs::write(s.root.join("big.png"), &big).unwrap();
    // Warm the server up (threads, first buffers), then take the baseline.
    assert_eq!(s.get("/image.png").status, 200);
    let before_kib = s.proc_status_kb("VmRSS");
    let downloads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /big.png HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            std::thread::spawn(move || read_response(&mut BufReader::new(c), false).unwrap())
        })
        .collect();
    for d in downloads {
        let r = d.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == big, "20 MiB body differs");
    }
    // Four 20 MiB bodies at once: a server that held even one of them whole would grow by 20 MiB.
    let grown_kib = s.proc_status_kb("VmHWM").saturating_sub(before_kib);
    eprintln!("RSS grew by {grown_kib} KiB");
    assert!(grown_kib < 8 * 1024, "RSS grew by {grown_kib} KiB");
}

fn conditional_get_answers_304(e: Engine) {
    let s = Server::start(e);
    let first = s.get("/style.css");
    let etag = first.header("ETag").unwrap();
    let lm = first.header("Last-Modified").unwrap();
    let r = s.request(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = s.request(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n"
    ));
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("Content-Length"),
        None,
        "a 304 must not claim a length"
    );
    assert_eq!(r.header("ETag"), Some(etag));
}

fn single_range_answers_206(e: Engine) {
    // Cut from the cached body, and from the file.
    for s in [Server::start(e), common::from_file(e)] {
        single_ranges(&s);
    }
}

fn single_ranges(s: &Server) {
    let r = s.request("GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 100-199/70000"));
    assert_eq!(r.body, binary_bytes(70_000)[100..200]);
    // A range long enough to be spliced from an offset.
    let r = s.request("GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-69999\r\n\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, binary_bytes(70_000)[1000..]);
    // If-Range with another version's validator: the whole file, not a piece of this one.
    let r = s.request(
        "GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\nIf-Range: \"old\"\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 70_000);
    let etag = r.header("ETag").unwrap().to_string();
    let r = s.request(&format!(
        "GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\nIf-Range: {etag}\r\n\r\n"
    ));
    assert_eq!(r.status, 206);
    let r = s.request("GET /image.png HTTP/1.1\r\nHost: t\r\nRange: bytes=70000-\r\n\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */70000"));
}

fn workers_serve_concurrent_connections(e: Engine) {
    let s = Server::start(e);
    // One thread per worker, named so.
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    assert!(names.contains(&"worker-0".to_string()), "{names:?}");
    assert!(names.contains(&"worker-1".to_string()), "{names:?}");
    // Many connections open at once, all answered.
    let mut conns: Vec<_> = (0..64).map(|_| s.connect()).collect();
    for c in conns.iter_mut() {
        c.write_all(b"GET /image.png HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for c in conns {
        let r = read_response(&mut BufReader::new(c), false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 70_000);
    }
}

fn status_page_reports_engine_and_counters(e: Engine) {
    let s = Opts::new(e)
        .extra("[server]\nstatus_path = \"/server-status\"")
        .start();
    assert_eq!(s.get("/style.css").status, 200);
    assert_eq!(s.get("/nope").status, 404);
    let r = s.get("/server-status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let text = r.text();
    assert!(text.contains(&format!("engine: {}\n", e.name())), "{text}");
    assert!(text.contains("workers: 2\n"), "{text}");
    assert!(text.contains("requests_2xx: 1\n"), "{text}");
    assert!(text.contains("requests_4xx: 1\n"), "{text}");
    assert!(
        s.stderr().contains(&format!("(engine {},", e.name())),
        "{}",
        s.stderr()
    );
}

fn cached_file_is_revalidated_after_a_change(e: Engine) {
    // Revalidate on every request, so the test needs no sleep.
    let s = Opts::new(e)
        .extra("[files]\ncache_revalidate_secs = 0")
        .extra("[server]\nworkers = 1")
        .start();
    assert_eq!(s.get("/style.css").body, b"body { color: #333; }\n");
    assert_eq!(s.get("/style.css").body, b"body { color: #333; }\n");
    // Same size, same second: the version still differs (mtime nanoseconds, ctime).
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(s.root.join("style.css"), b"body { color: #444; }\n").unwrap();
    assert_eq!(s.get("/style.css").body, b"body { color: #444; }\n");
    std::fs::write(s.root.join("style.css"), b"p { margin: 0 }\n").unwrap();
    let r = s.get("/style.css");
    assert_eq!(r.body, b"p { margin: 0 }\n");
    assert_eq!(r.header("Content-Length"), Some("16"));
    std::fs::remove_file(s.root.join("style.css")).unwrap();
    assert_eq!(s.get("/style.css").status, 404);
}

fn cache_can_be_disabled(e: Engine) {
    // Revalidation is an hour away, so a cached file would keep its old bytes: with the cache
    // off every request must see the file as it is now. The control proves the difference.
    let served_after_change = |cache_max: u64| {
        let s = Opts::new(e)
            .extra(&format!(
                "[files]\ncache_max_file_bytes = {cache_max}\ncache_revalidate_secs = 3600"
            ))
            .extra("[server]\nworkers = 1")
            .start();
        assert_eq!(s.get("/style.css").body, b"body { color: #333; }\n");
        std::fs::write(s.root.join("style.css"), b"body { color: #444; }\n").unwrap();
        s.get("/style.css").body
    };
    assert_eq!(served_after_change(0), b"body { color: #444; }\n");
    assert_eq!(served_after_change(65536), b"body { color: #333; }\n");
}

/// With the cache's limit raised to 1 MiB, a 900 KiB file is cached (a later change on disk is not
/// seen before revalidation), and its body goes out from memory byte-exact even to a client whose
/// small receive buffer makes the server write it in many pieces.
fn a_cached_900_kib_file_goes_whole_to_a_slow_reader(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\ncache_max_file_bytes = 1048576\ncache_revalidate_secs = 3600")
        .extra("[server]\nworkers = 1")
        .start();
    let body = common::binary_bytes(900 * 1024);
    std::fs::write(s.root.join("photo.png"), &body).unwrap();
    assert!(s.get("/photo.png").body == body, "first, uncached response");
    let mut c = BufReader::new(s.get_slowly("/photo.png", 32 * 1024));
    let r = read_response(&mut c, false).expect("a complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("921600"));
    assert!(
        r.body == body,
        "the cached body arrived whole and byte-exact"
    );
    // Same size, new bytes: served from the cache until revalidation, an hour away.
    let changed = common::binary_bytes(900 * 1024 + 1)[1..].to_vec();
    assert!(changed != body);
    std::fs::write(s.root.join("photo.png"), changed).unwrap();
    assert!(s.get("/photo.png").body == body, "served from the cache");
}
