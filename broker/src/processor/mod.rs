//! Request processors, one function per request code (STYLE.md §1 layer 4). Each decodes its
//! typed header, calls the domain services and the store, and builds the response; none
//! holds a lock across an `.await`. All share the signature
//! `async fn(&BrokerContext, &Connection, RemotingCommand) -> Result<Option<RemotingCommand>, ProcessorError>`.
//!
//! # Layout
//! - [`send`]: SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE.
//! - [`pull`]: PULL_MESSAGE, LITE_PULL_MESSAGE, and the long-polling re-execution.
//! - [`offset`]: consumer offsets and queue offset lookups.
//! - [`client`]: heartbeats, client registration, consumer lists, queue locks, client config.
//! - [`query`]: QUERY_MESSAGE, VIEW_MESSAGE_BY_ID.
//! - [`admin`]: topics, subscription groups, stats, connections, offset reset.

pub mod admin;
pub mod client;
pub mod offset;
pub mod pull;
pub mod query;
pub mod send;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tern_common::protocol::body::{decode_body, encode_body};
use tern_common::protocol::{RemotingCommand, ResponseCode};

use crate::error::ProcessorError;

/// The uniform result of a processor.
pub type ProcessorResult = Result<Option<RemotingCommand>, ProcessorError>;

/// A SUCCESS response to `request` with no header fields.
pub(crate) fn success(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::Success)
}

/// Encodes a structured body in the request's serialize type (JSON for 0/1, MessagePack
/// for 2).
pub(crate) fn encode<T: Serialize>(
    request: &RemotingCommand,
    value: &T,
) -> Result<bytes::Bytes, ProcessorError> {
    Ok(encode_body(value, request.serialize_type)?)
}

/// A SUCCESS response to `request` carrying `body` encoded in the request's serialize type.
///
/// # Errors
/// The body does not encode.
pub(crate) fn success_with<T: Serialize>(request: &RemotingCommand, body: &T) -> ProcessorResult {
    Ok(Some(success(request).with_body(encode(request, body)?)))
}

/// Decodes the request's structured body in its serialize type.
pub(crate) fn decode<T: DeserializeOwned>(request: &RemotingCommand) -> Result<T, ProcessorError> {
    Ok(decode_body(&request.body, request.serialize_type)?)
}

/// Shorthand for a [`ProcessorError::Rejected`].
pub(crate) fn reject(code: ResponseCode, remark: impl Into<String>) -> ProcessorError {
    ProcessorError::rejected(code, remark)
}
