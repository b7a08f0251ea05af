//! Fuzz target: the exchange's decisions. Bytes choose the configuration switches, script a fake
//! file system (what each stat or open finds), and carry the request; the exchange is driven to
//! its plan twice (cold cache, then warm or stale) and `uring_httpd::fuzzing::check_exchange`
//! checks the steps and the rendered head.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    uring_httpd::fuzzing::check_exchange(data);
});
