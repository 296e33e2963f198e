//! `tern-broker`: the message store and request processors.

pub mod store;
