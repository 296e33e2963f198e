//! Fuzz target `frame_decode`; the body is `tern_fuzz::common_targets::frame_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::common_targets::frame_decode(data));
