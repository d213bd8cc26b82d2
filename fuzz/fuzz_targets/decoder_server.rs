//! Fuzz target `decoder_server`: the frame decoder in the server role, input fed in fuzzer-chosen chunks.
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_decoder(
    wsrelay::proto::Role::Server,
    data
));
