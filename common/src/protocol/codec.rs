//! The remoting frame codec (PROTOCOL.md §1.1).

/// Placeholder until the codec lands.
#[derive(Debug)]
pub struct RemotingCodec;
/// Placeholder until the codec lands.
#[derive(Debug)]
pub enum CodecError {}
