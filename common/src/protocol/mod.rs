//! The sans-IO remoting protocol: frames, commands, codes and typed headers.
//!
//! # Layout
//! - [`command`]: [`RemotingCommand`], [`SerializeType`], [`LanguageCode`] and the flag bits.
//! - [`ext_fields`]: [`ExtFields`], the flat string map of a command's custom-header fields.
//! - [`codec`]: the length-prefixed frame codec (tokio-util `Decoder`/`Encoder`) and header encodings.
//! - [`code`]: [`RequestCode`] and [`ResponseCode`] with RocketMQ's numbers.
//! - [`header`]: the [`CommandHeader`] trait and typed headers for every request Tern serves.

pub mod body;
pub mod code;
pub mod codec;
pub mod command;
pub mod ext_fields;
pub mod header;
mod msgpack_header;

pub use code::{RequestCode, ResponseCode, UnknownRequestCode, UnknownResponseCode};
pub use codec::{CodecError, RemotingCodec, DEFAULT_MAX_FRAME_LEN};
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use header::{CommandHeader, HeaderError};
