//! [`ProcessorError`]: why a request processor could not produce its normal response.
//!
//! Expected outcomes that RocketMQ answers with a specific response code (unknown topic, no
//! permission, bad parameter, …) are [`ProcessorError::Rejected`] so a processor can return
//! early with `?`; everything else maps to `SYSTEM_ERROR`. The one mapping to the wire lives
//! in `dispatch.rs`.

use tern_common::protocol::body::BodyError;
use tern_common::protocol::{HeaderError, ResponseCode};
use thiserror::Error;

/// The error type of every request processor.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A required header field is missing or does not parse (`SYSTEM_ERROR`, as Java's
    /// `RemotingCommandException` is answered).
    #[error("invalid request header: {0}")]
    Header(#[from] HeaderError),
    /// A structured body does not decode (`SYSTEM_ERROR`).
    #[error("invalid request body: {0}")]
    Body(#[from] BodyError),
    /// The request is refused with a specific response code and remark.
    #[error("{remark}")]
    Rejected {
        /// The response code to answer with.
        code: ResponseCode,
        /// The remark shown to the client.
        remark: String,
    },
    /// A metadata snapshot could not be written (`SYSTEM_ERROR`).
    #[error("persisting broker metadata failed: {0}")]
    Persist(#[from] std::io::Error),
}

impl ProcessorError {
    /// A [`ProcessorError::Rejected`] with `code` and `remark`.
    pub fn rejected(code: ResponseCode, remark: impl Into<String>) -> Self {
        ProcessorError::Rejected {
            code,
            remark: remark.into(),
        }
    }
}

impl From<&ProcessorError> for ResponseCode {
    fn from(err: &ProcessorError) -> Self {
        match err {
            ProcessorError::Rejected { code, .. } => *code,
            ProcessorError::Header(_) | ProcessorError::Body(_) | ProcessorError::Persist(_) => {
                ResponseCode::SystemError
            }
        }
    }
}
