//! Fuzz target `session`: one server connection (`wsrelay::session::Session`) driven through its
//! whole life by fuzzer-chosen client bytes, deliveries, partial writes and clock advances.
//! The properties checked are in `fuzz/session_checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../session_checks.rs"]
mod session_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_checks::check_session(data));
