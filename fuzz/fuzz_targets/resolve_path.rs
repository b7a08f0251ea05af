//! Fuzz target: path resolution, a request target to a safe path relative to the root. The bytes
//! are used twice: as a decoded path given to `files::resolve` directly, and as a raw target in a
//! request line, parsed and percent-decoded first. `uring_httpd::fuzzing::check_resolve` holds
//! the properties (agreement with a plain reference, no `..`/NUL/leading `/`, idempotence).
#![no_main]

use std::sync::OnceLock;

use uring_httpd::fuzzing::{Policy, check_resolve, parse};

fn policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let mut dots = uring_httpd::config::Files::default();
        dots.allow_dot_paths = vec![".well-known".into(), "..x".into()];
        [Policy::new(&["html"]), Policy::for_config(&dots)]
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [which, path @ ..] = data else { return };
    let policy = &policies()[usize::from(which & 1)];
    check_resolve(path, policy);
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(path);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    if let Ok(Some(req)) = parse(&raw) {
        check_resolve(&req.path, policy);
    }
});
