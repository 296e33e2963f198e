//! The SEND_BATCH_MESSAGE request body (PROTOCOL.md §3.7).
//!
//! # Layout
//!
//! Entries back to back, all integers big-endian:
//!
//! ```text
//! TOTALSIZE i32 (= 20 + bodyLen + 2 + propLen) | MAGICCODE i32 (0) | BODYCRC i32 (0) | FLAG i32
//! | BODY i32 len + bytes | PROPERTIES i16 len + UTF-8 property string
//! ```
//!
//! Like Java's broker (`MessageExtEncoder.encode(MessageExtBatch)`), the decoder steps by the
//! body and property lengths and ignores TOTALSIZE, MAGICCODE and BODYCRC; every length is
//! bounds-checked against the body. Each entry becomes one CommitLog record whose other fields
//! come from the request header.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::model::Message;
use super::property::MAX_PROPERTIES_LEN_BYTES;

/// Size in bytes of an entry with an empty body and no properties.
pub const BATCH_ENTRY_MIN_SIZE: usize = 22;

/// One message of a batch body. `body` shares the request body's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// User flag.
    pub flag: i32,
    /// Message body (compression is not allowed in batches).
    pub body: Bytes,
    /// The message's own property string (PROTOCOL.md §3.5).
    pub properties: String,
}

/// Why a batch body could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The body ends inside the entry starting at `offset`.
    #[error("batch entry at byte {offset} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Byte offset of the entry in the batch body.
        offset: usize,
        /// Bytes needed from `offset`.
        need: usize,
        /// Bytes available from `offset`.
        have: usize,
    },
    /// A negative body or properties length in the entry at `offset`.
    #[error("batch entry at byte {offset} has a negative length")]
    InvalidLength {
        /// Byte offset of the entry in the batch body.
        offset: usize,
    },
    /// The property string of the entry at `offset` is not UTF-8.
    #[error("batch entry at byte {offset} has non-UTF-8 properties")]
    InvalidUtf8 {
        /// Byte offset of the entry in the batch body.
        offset: usize,
    },
    /// A property string longer than 32767 bytes (encoding).
    #[error("batch entry properties longer than {MAX_PROPERTIES_LEN_BYTES} bytes")]
    PropertiesTooLong,
    /// A body longer than `i32::MAX` bytes (encoding).
    #[error("batch entry body too long")]
    BodyTooLong,
    /// The batch has no entries.
    #[error("empty batch")]
    Empty,
}

/// Decodes a SEND_BATCH_MESSAGE body into its entries, in order.
///
/// # Errors
/// [`BatchError::Empty`] for an empty body, [`BatchError::Truncated`],
/// [`BatchError::InvalidLength`], [`BatchError::InvalidUtf8`].
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, BatchError> {
    if body.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut entries = Vec::new();
    let mut offset = 0usize;
    // Each iteration consumes at least BATCH_ENTRY_MIN_SIZE bytes, so this ends.
    while offset < body.len() {
        let (entry, size) = decode_entry(body, offset)?;
        entries.push(entry);
        offset += size;
    }
    Ok(entries)
}

fn decode_entry(body: &Bytes, offset: usize) -> Result<(BatchEntry, usize), BatchError> {
    let mut buf = &body[offset..];
    let have = buf.len();
    let truncated = |need: usize| BatchError::Truncated { offset, need, have };
    if have < 20 {
        return Err(truncated(BATCH_ENTRY_MIN_SIZE));
    }
    buf.advance(12); // TOTALSIZE, MAGICCODE, BODYCRC
    let flag = buf.get_i32();
    let body_len =
        usize::try_from(buf.get_i32()).map_err(|_| BatchError::InvalidLength { offset })?;
    let body_start = 20usize;
    let props_len_pos = body_start
        .checked_add(body_len)
        .ok_or(BatchError::InvalidLength { offset })?;
    if have < props_len_pos + 2 {
        return Err(truncated(props_len_pos + 2));
    }
    let mut len_bytes = [0u8; 2];
    len_bytes.copy_from_slice(&body[offset + props_len_pos..offset + props_len_pos + 2]);
    let props_len = usize::try_from(i16::from_be_bytes(len_bytes))
        .map_err(|_| BatchError::InvalidLength { offset })?;
    let end = props_len_pos + 2 + props_len;
    if have < end {
        return Err(truncated(end));
    }
    let properties = std::str::from_utf8(&body[offset + props_len_pos + 2..offset + end])
        .map_err(|_| BatchError::InvalidUtf8 { offset })?
        .to_owned();
    let entry = BatchEntry {
        flag,
        body: body.slice(offset + body_start..offset + props_len_pos),
        properties,
    };
    Ok((entry, end))
}

/// Appends one entry to a batch body (MAGICCODE and BODYCRC written as 0, like Java's client).
///
/// # Errors
/// [`BatchError::BodyTooLong`], [`BatchError::PropertiesTooLong`]; nothing is written on error.
pub fn encode_batch_entry(
    flag: i32,
    body: &[u8],
    properties: &str,
    out: &mut BytesMut,
) -> Result<(), BatchError> {
    if properties.len() > MAX_PROPERTIES_LEN_BYTES {
        return Err(BatchError::PropertiesTooLong);
    }
    let total = BATCH_ENTRY_MIN_SIZE + body.len() + properties.len();
    let total_i32 = i32::try_from(total).map_err(|_| BatchError::BodyTooLong)?;
    out.reserve(total);
    out.put_i32(total_i32);
    out.put_i32(0);
    out.put_i32(0);
    out.put_i32(flag);
    // total fits in i32, so body.len() does too.
    out.put_i32(body.len() as i32);
    out.put_slice(body);
    // Checked above: at most i16::MAX.
    out.put_i16(properties.len() as i16);
    out.put_slice(properties.as_bytes());
    Ok(())
}

/// Encodes `entries` as a batch body.
///
/// # Errors
/// [`BatchError::Empty`] without entries, else as [`encode_batch_entry`].
pub fn encode_batch<'a>(
    entries: impl IntoIterator<Item = &'a BatchEntry>,
) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::new();
    let mut count = 0usize;
    for e in entries {
        encode_batch_entry(e.flag, &e.body, &e.properties, &mut out)?;
        count += 1;
    }
    if count == 0 {
        return Err(BatchError::Empty);
    }
    Ok(out.freeze())
}

/// Encodes messages as a batch body, each with its own flag, body and encoded properties (the
/// messages' topics are not part of the body; the request header carries the topic).
///
/// # Errors
/// As [`encode_batch`].
pub fn encode_batch_messages(messages: &[Message]) -> Result<Bytes, BatchError> {
    if messages.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = BytesMut::new();
    for m in messages {
        encode_batch_entry(m.flag, &m.body, &m.encode_properties(), &mut out)?;
    }
    Ok(out.freeze())
}
