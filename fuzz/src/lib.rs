//! Tern's cargo-fuzz targets (a crate outside the workspace). The target bodies live in the
//! two modules below so that the corpus replay tests of `tern-common` and `tern-broker` can
//! include the same files; the binaries in `fuzz_targets/` only call them.
//!
//! # Layout
//! - [`common_targets`]: `frame_decode`, `record_decode`, `batch_decode`, `header_json`.
//! - [`broker_targets`]: `commit_log_recover`.

pub mod broker_targets;
pub mod common_targets;
