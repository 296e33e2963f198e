//! Fuzz target `header_json`; the body is `tern_fuzz::common_targets::header_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::common_targets::header_json(data));
