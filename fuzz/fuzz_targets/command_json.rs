//! Fuzz target `command_json`: one JSON command through `CommandDecoder::decode`.
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_command_json(data));
