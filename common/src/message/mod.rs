//! The message model: what a message is in memory, on the wire and in the CommitLog.
//!
//! Everything here is sans-IO and pure: codecs check every length against the input and never
//! panic or allocate beyond the input's size on malformed bytes.
//!
//! # Layout
//! - [`record`]: byte-exact CommitLog record encode/decode/patch ([`RecordInput`],
//!   [`RecordRef`]), the [`sys_flag`] bits and the end-of-file blank marker.
//! - [`property`]: the property string codec and the standard names in [`property_key`].
//! - [`model`]: [`Message`] (producer side) and [`MessageExt`] (a decoded stored message),
//!   [`decode_messages`] for PULL / QUERY bodies, zlib body (de)compression.
//! - [`id`]: offset message ids and the `UNIQ_KEY` generator.
//! - [`tag`]: Java `String.hashCode` tags codes, TAG subscription expressions, IndexFile key hash.
//! - [`batch`]: the SEND_BATCH_MESSAGE body.
//! - [`topic`]: topic name validation, system topics and groups, retry/DLQ names.

pub mod batch;
pub mod id;
pub mod model;
pub mod property;
pub mod record;
pub mod tag;
pub mod topic;

pub use batch::{decode_batch, encode_batch, encode_batch_messages, BatchEntry, BatchError};
pub use id::{decode_offset_msg_id, new_uniq_id, offset_msg_id, MessageIdError, UniqIdGenerator};
pub use model::{decode_messages, BodyError, Message, MessageExt};
pub use property::{decode_properties, encode_properties, property_key};
pub use record::{
    blank_marker, decode_record, encode_record, encoded_len, patch_record, sys_flag, RecordError,
    RecordInput, RecordRef, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
};
pub use tag::{key_hash, tags_hash, SubscriptionExpr};
pub use topic::*;
