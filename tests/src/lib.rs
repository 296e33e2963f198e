//! Test harness for real Tern processes.
