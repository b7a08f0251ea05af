//! What people expect from a static file server (issue 9, items 2–4): response headers by
//! pattern, custom error pages, the single-page-app fallback, a list of index names, directory
//! listings, redirects
//! that keep the query, and the policy switches (`*`, files without an extension, dot paths,
//! type overrides). Every test runs against both engines over real sockets.

mod common;

use common::{Engine, Opts, Server};

engine_tests!(
    nosniff_is_on_every_response_by_default,
    header_rules_set_cache_control_by_glob,
    an_always_rule_reaches_error_responses,
    custom_error_page_keeps_its_status,
    spa_fallback_serves_unknown_paths_without_extension,
    index_names_are_tried_in_order,
    redirect_keeps_the_query_string,
    star_allows_every_extension,
    files_without_extension_can_be_allowed,
    dot_paths_can_be_allowed_one_by_one,
    type_overrides_set_the_content_type,
    directory_listing_is_off_by_default_and_lists_what_would_be_served,
);

fn nosniff_is_on_every_response_by_default(e: Engine) {
    let s = Server::start(e);
    for path in ["/style.css", "/missing.html", "/photo.jpg", "/sub"] {
        let r = s.get(path);
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let r = s.request("GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
}

fn header_rules_set_cache_control_by_glob(e: Engine) {
    let s = Opts::new(e)
        .extra("[[headers]]\nmatch = \"*.css\"\nset = { \"Cache-Control\" = \"public, max-age=31536000, immutable\" }")
        .extra("[[headers]]\nmatch = \"/sub/*\"\nset = { \"Cache-Control\" = \"no-cache\", \"Referrer-Policy\" = \"no-referrer\" }")
        .start();
    let css = s.get("/style.css");
    assert_eq!(
        css.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = css.header("ETag").unwrap().to_string();
    // 304s carry the rule's headers too.
    let r = s.request(&format!(
        "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    let sub = s.get("/sub/page.html");
    assert_eq!(sub.header("Cache-Control"), Some("no-cache"));
    assert_eq!(sub.header("Referrer-Policy"), Some("no-referrer"));
    // `*` stays within a segment; no rule: no Cache-Control.
    assert_eq!(s.get("/index.html").header("Cache-Control"), None);
    // Rules apply to 2xx and 304 only, unless `always`.
    assert_eq!(s.get("/missing.css").header("Cache-Control"), None);
}

fn an_always_rule_reaches_error_responses(e: Engine) {
    let s = Opts::new(e)
        .extra("[[headers]]\nmatch = \"/**\"\nset = { \"Access-Control-Allow-Origin\" = \"*\" }\nalways = true")
        .start();
    for path in ["/style.css", "/missing.html", "/photo.jpg"] {
        let r = s.get(path);
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{path} {}",
            r.status
        );
    }
}

fn custom_error_page_keeps_its_status(e: Engine) {
    let s = Opts::new(e)
        .extra("[errors]\n404 = \"errors/404.html\"\n403 = \"errors/missing-page.html\"")
        .start();
    std::fs::create_dir_all(s.root.join("errors")).unwrap();
    std::fs::write(s.root.join("errors/404.html"), b"<h1>custom 404</h1>\n").unwrap();
    let r = s.get("/nope.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"<h1>custom 404</h1>\n");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    let head = s.request("HEAD /nope.html HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 404);
    assert_eq!(head.header("Content-Length"), Some("20"));
    // A configured page that is missing falls back to the built-in one, same status.
    let r = s.get("/photo.jpg");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    // Statuses without a page keep the built-in page.
    assert!(s.get("/../x").text().contains("400 Bad Request"));
}

fn spa_fallback_serves_unknown_paths_without_extension(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\nfallback = \"index.html\"")
        .start();
    let index = std::fs::read(s.root.join("index.html")).unwrap();
    let r = s.get("/app/settings/profile?tab=2");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // A missing asset stays a 404: a browser must not get HTML for a script.
    assert_eq!(s.get("/app/missing.js").status, 404);
    // Real files and directories are unaffected.
    assert_eq!(s.get("/style.css").body, b"body { color: #333; }\n");
    assert_eq!(s.get("/sub").status, 301);
}

fn index_names_are_tried_in_order(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\nindex = [\"index.htm\", \"index.html\"]")
        .start();
    std::fs::create_dir_all(s.root.join("both")).unwrap();
    std::fs::write(s.root.join("both/index.htm"), b"htm\n").unwrap();
    std::fs::write(s.root.join("both/index.html"), b"html\n").unwrap();
    assert_eq!(s.get("/both/").body, b"htm\n");
    assert_eq!(s.get("/sub/").body, b"<p>sub index</p>\n");
    assert_eq!(s.get("/empty/").status, 404);
}

fn redirect_keeps_the_query_string(e: Engine) {
    let s = Server::start(e);
    let r = s.get("/sub?x=1&y=a%20b");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/?x=1&y=a%20b"));
}

fn star_allows_every_extension(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\nallowed_extensions = [\"*\"]")
        .start();
    let r = s.get("/photo.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("image/jpeg"));
    // Dotfiles and files without an extension stay refused.
    assert_eq!(s.get("/.hidden.html").status, 404);
    assert_eq!(s.get("/README").status, 403);
}

fn files_without_extension_can_be_allowed(e: Engine) {
    let s = Server::start(e);
    assert_eq!(s.get("/README").status, 403);
    let s = Opts::new(e)
        .extra("[files]\nallow_no_extension = true")
        .start();
    let r = s.get("/README");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"no extension\n");
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
}

fn dot_paths_can_be_allowed_one_by_one(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\nallow_dot_paths = [\".well-known\"]")
        .start();
    std::fs::create_dir_all(s.root.join(".well-known")).unwrap();
    std::fs::write(s.root.join(".well-known/security.txt"), b"Contact: x\n").unwrap();
    let r = s.get("/.well-known/security.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Contact: x\n");
    assert_eq!(s.get("/.git/config.txt").status, 404);
    assert_eq!(s.get("/.hidden.html").status, 404);
}

fn type_overrides_set_the_content_type(e: Engine) {
    let s = Opts::new(e)
        .extra("[files]\nallowed_extensions = [\"txt\", \"wasm\"]")
        .extra("[files.types]\nwasm = \"application/wasm\"\ntxt = \"text/plain; charset=us-ascii\"")
        .start();
    std::fs::write(s.root.join("m.wasm"), b"\0asm").unwrap();
    assert_eq!(
        s.get("/m.wasm").header("Content-Type"),
        Some("application/wasm")
    );
    assert_eq!(
        s.get("/hello%20world.txt").header("Content-Type"),
        Some("text/plain; charset=us-ascii")
    );
}

fn directory_listing_is_off_by_default_and_lists_what_would_be_served(e: Engine) {
    let s = Server::start(e);
    // `empty/` has no index.html (only a dotfile).
    assert_eq!(s.get("/empty/").status, 404);
    let s = Opts::new(e).extra("[files]\nlisting = true").start();
    let d = s.root.join("empty");
    std::fs::write(d.join("b <&> \"q\".html"), b"12345").unwrap();
    std::fs::write(d.join("a.css"), b"x").unwrap();
    std::fs::write(d.join("secret.jpg"), b"refused type").unwrap();
    std::fs::create_dir(d.join("zdir")).unwrap();
    std::fs::create_dir(d.join(".git")).unwrap();
    std::os::unix::fs::symlink(s.dir.path().join("outside/secret.html"), d.join("out.html"))
        .unwrap();
    std::os::unix::fs::symlink("../index.html", d.join("in.html")).unwrap();
    let r = s.get("/empty/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    let links: Vec<&str> = html
        .split("<a href=\"")
        .skip(1)
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            "../",
            "zdir/",
            "a.css",
            "b%20%3C%26%3E%20%22q%22.html",
            "in.html"
        ],
        "{html}"
    );
    assert!(
        html.contains(">b &lt;&amp;&gt; &quot;q&quot;.html</a></td><td>5</td>"),
        "{html}"
    );
    assert!(html.contains("<title>Index of /empty/</title>"));
    // HEAD: the same length, no body.
    let h = s.request("HEAD /empty/ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(h.header("Content-Length"), Some(&*r.body.len().to_string()));
    // A directory with an index still serves it.
    assert!(s.get("/sub/").text().contains("sub index"));
}
