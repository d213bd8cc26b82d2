//! Fuzz target `decoder_client`: the frame decoder in the client role, input fed in fuzzer-chosen chunks.
//! The properties checked are in `fuzz/checks.rs`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_decoder(
    wsrelay::proto::Role::Client,
    data
));
