//! Fuzz target `proxy_header`: the PROXY protocol v1/v2 header parser.
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_proxy_header(data));
