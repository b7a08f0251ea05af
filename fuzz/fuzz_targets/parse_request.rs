//! Fuzz target: arbitrary bytes into the request parser (`http::request::parse`), with the
//! properties of `uring_httpd::fuzzing::check_parse` (no panic, a head never reaches past its
//! input and ends at its blank line, every split of it needs more bytes).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    uring_httpd::fuzzing::check_parse(data);
});
