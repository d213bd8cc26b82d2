//! Fuzz target `command_binary`: one binary publish through `decode_binary`.
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_command_binary(data));
