//! [`ClientError`]: everything an SDK call can fail with.

use tern_common::protocol::{CodecError, HeaderError};
use tern_common::remoting::RemotingError;

/// The error of every fallible SDK call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A builder or argument was invalid (missing group, empty NameServer list, …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A message cannot be sent as it is (empty topic, body too large, mixed batch, …).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The transport failed: connect error, timeout, closed connection.
    #[error("remoting error talking to {addr}: {source}")]
    Remoting {
        /// The peer address.
        addr: String,
        /// What went wrong.
        #[source]
        source: RemotingError,
    },
    /// The server answered with a response code that is an error for this call.
    #[error("{addr} answered code {code}: {remark}")]
    Broker {
        /// The peer address.
        addr: String,
        /// The response code (PROTOCOL.md §1.8).
        code: i32,
        /// The response remark (empty when none).
        remark: String,
    },
    /// No NameServer knows a route for the topic (and no fallback applied).
    #[error("no route info for topic `{topic}`")]
    NoRoute {
        /// The topic.
        topic: String,
    },
    /// A broker group has no reachable address in the known routes.
    #[error("no address known for broker `{broker_name}`")]
    BrokerNotFound {
        /// The broker name.
        broker_name: String,
    },
    /// A response header misses a field or has a malformed one.
    #[error("malformed response header: {0}")]
    Header(#[from] HeaderError),
    /// A structured body did not decode or encode.
    #[error("malformed body: {0}")]
    Body(String),
    /// Stored messages in a response did not decode.
    #[error("malformed message records: {0}")]
    Record(String),
    /// Every attempt of a send failed; `source` is the last failure.
    #[error("send failed after {attempts} attempts")]
    SendFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<ClientError>,
    },
    /// The client was shut down (or never started).
    #[error("client is not running")]
    NotRunning,
    /// Local file I/O (offset store).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A header could not be encoded (codec-level failure).
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
}

impl ClientError {
    /// True for failures after which Java's producer retries on another broker: network
    /// errors and timeouts, and the response codes {1, 2, 14, 16, 17, 204, 205, 1500}
    /// (`DefaultMQProducer.retryResponseCodes`, PROTOCOL.md §1.8).
    pub fn is_retryable_send_error(&self) -> bool {
        match self {
            ClientError::Remoting { .. } => true,
            ClientError::Broker { code, .. } => {
                matches!(code, 1 | 2 | 14 | 16 | 17 | 204 | 205 | 1500)
            }
            _ => false,
        }
    }

    /// The broker response code, if this error is one.
    pub fn response_code(&self) -> Option<i32> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::SendFailed { source, .. } => source.response_code(),
            _ => None,
        }
    }
}

/// Shorthand for SDK results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_match_java() {
        let err = |code| ClientError::Broker {
            addr: "b".into(),
            code,
            remark: String::new(),
        };
        for code in [1, 2, 14, 16, 17, 204, 205, 1500] {
            assert!(err(code).is_retryable_send_error(), "{code}");
        }
        for code in [0, 3, 13, 29, 26] {
            assert!(!err(code).is_retryable_send_error(), "{code}");
        }
        assert!(!ClientError::InvalidMessage("x".into()).is_retryable_send_error());
    }
}
