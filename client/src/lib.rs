//! Tern's Rust SDK.
