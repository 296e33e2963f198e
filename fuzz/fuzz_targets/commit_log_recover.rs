//! Fuzz target `commit_log_recover`; the body is `tern_fuzz::broker_targets::commit_log_recover`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().expect("creating a scratch directory");
    tern_fuzz::broker_targets::commit_log_recover(data, scratch.path());
});
