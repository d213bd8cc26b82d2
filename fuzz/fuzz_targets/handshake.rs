//! Fuzz target `handshake`: request head parsing + upgrade validation (server role), response head parsing (client role).
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_handshake(data));
