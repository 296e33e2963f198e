//! Fuzz target `batch_decode`; the body is `tern_fuzz::common_targets::batch_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::common_targets::batch_decode(data));
