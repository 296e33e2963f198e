//! Typed custom headers and their mapping to `extFields` (PROTOCOL.md §1.5, §2).
//!
//! Every header is a plain struct whose fields carry RocketMQ's Java field names on the wire.
//! Values travel as strings; numbers parse like Java's `Integer.parseInt`/`Long.parseLong`,
//! booleans like `Boolean.parseBoolean` (anything but `"true"`, case-insensitive, is false).

use thiserror::Error;

use super::command::ExtFields;

/// Error decoding a typed header from `extFields`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required field is absent.
    #[error("missing required header field `{field}`")]
    Missing {
        /// The wire name of the field.
        field: &'static str,
    },
    /// A field is present but its value does not parse as the field's type.
    #[error("header field `{field}` has invalid value `{value}`")]
    Invalid {
        /// The wire name of the field.
        field: &'static str,
        /// The offending value (truncated to 64 characters).
        value: String,
    },
}

/// A typed custom header that converts to and from `extFields`.
pub trait CommandHeader: Sized {
    /// Writes every non-null field into `ext` under its wire name.
    fn encode_ext(&self, ext: &mut ExtFields);

    /// Reads the header from `ext`.
    ///
    /// # Errors
    /// [`HeaderError::Missing`] for an absent required field, [`HeaderError::Invalid`] for a
    /// value that does not parse.
    fn decode_ext(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// The empty header, for requests and responses without custom fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyHeader;

impl CommandHeader for EmptyHeader {
    fn encode_ext(&self, _ext: &mut ExtFields) {}

    fn decode_ext(_ext: &ExtFields) -> Result<Self, HeaderError> {
        Ok(EmptyHeader)
    }
}
