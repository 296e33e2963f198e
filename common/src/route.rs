//! Routing types.
