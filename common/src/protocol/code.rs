//! Request and response codes with RocketMQ's numbers (PROTOCOL.md §1.8, §2.1).

/// Placeholder until the full table lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCode {}
/// Placeholder until the full table lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {}
