//! The message model: what a message is in memory, on the wire and in the CommitLog.
//!
//! # Layout
//! - [`record`]: byte-exact CommitLog record encode/decode/patch, sysFlag bits, blank marker.
//! - [`property`]: the property string codec and the standard property keys.

pub mod property;
pub mod record;

pub use property::{decode_properties, encode_properties, property_key};
pub use record::{
    blank_marker, decode_record, encode_record, encoded_len, patch_record, sys_flag, RecordError,
    RecordInput, RecordRef, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
};
