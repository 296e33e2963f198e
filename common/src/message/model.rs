//! In-memory messages: [`Message`] (what a producer sends) and [`MessageExt`] (a stored message
//! as decoded from a PULL / QUERY / VIEW body or the CommitLog).
//!
//! `Message` keeps its properties in a [`BTreeMap`], so the property string it produces is
//! deterministic. `MessageExt` owns every field of the record; its body is a zero-copy slice of
//! the buffer it was decoded from and stays compressed until [`MessageExt::uncompressed_body`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::id::offset_msg_id;
use super::property::{self, property_key};
use super::record::{self, decode_record, sys_flag, RecordError, RecordInput};

/// Largest body [`MessageExt::uncompressed_body`] will produce, in bytes (64 MiB).
pub const MAX_UNCOMPRESSED_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A message as a producer builds it: topic, user flag, body and properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Target topic.
    pub topic: String,
    /// User flag (opaque to the broker).
    pub flag: i32,
    /// Body bytes.
    pub body: Bytes,
    /// Properties; see [`property_key`] for the standard names.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    /// A message for `topic` with `body`, flag 0 and no properties.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            flag: 0,
            body: body.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Sets the user flag.
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// Sets the `TAGS` property.
    pub fn with_tags(self, tags: impl Into<String>) -> Self {
        self.with_property(property_key::TAGS, tags)
    }

    /// Sets the `KEYS` property to the keys joined by a single space.
    pub fn with_keys<I, S>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = keys
            .into_iter()
            .map(|k| k.as_ref().to_owned())
            .filter(|k| !k.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        self.with_property(property_key::KEYS, joined)
    }

    /// Sets one property (an empty value removes it, since the property string cannot carry
    /// it).
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_property(name, value);
        self
    }

    /// Sets one property in place (an empty value removes it).
    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        if value.is_empty() {
            self.properties.remove(&name);
        } else {
            self.properties.insert(name, value);
        }
    }

    /// Removes a property, returning its value.
    pub fn remove_property(&mut self, name: &str) -> Option<String> {
        self.properties.remove(name)
    }

    /// One property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&str> {
        self.property(property_key::TAGS)
    }

    /// The space-separated `KEYS` tokens, empty tokens skipped.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(property_key::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// Sets the delay level (`DELAY`, 1-based; 0 removes it).
    pub fn with_delay_level(self, level: u32) -> Self {
        if level == 0 {
            let mut m = self;
            m.remove_property(property_key::DELAY);
            m
        } else {
            self.with_property(property_key::DELAY, level.to_string())
        }
    }

    /// The delay level, if `DELAY` holds a positive integer.
    pub fn delay_level(&self) -> Option<u32> {
        parse_positive(self.property(property_key::DELAY)?).and_then(|v| u32::try_from(v).ok())
    }

    /// Sets an absolute delivery time (`TIMER_DELIVER_MS`, epoch milliseconds; 5.x timer
    /// messages).
    pub fn with_deliver_time_ms(self, deliver_time_ms: i64) -> Self {
        self.with_property(property_key::TIMER_DELIVER_MS, deliver_time_ms.to_string())
    }

    /// The absolute delivery time (`TIMER_DELIVER_MS`), epoch milliseconds.
    pub fn deliver_time_ms(&self) -> Option<i64> {
        self.property(property_key::TIMER_DELIVER_MS)?.parse().ok()
    }

    /// Sets a relative delivery delay in milliseconds (`TIMER_DELAY_MS`).
    pub fn with_delay_ms(self, delay_ms: i64) -> Self {
        self.with_property(property_key::TIMER_DELAY_MS, delay_ms.to_string())
    }

    /// The relative delivery delay in milliseconds (`TIMER_DELAY_MS`).
    pub fn delay_ms(&self) -> Option<i64> {
        self.property(property_key::TIMER_DELAY_MS)?.parse().ok()
    }

    /// Sets a relative delivery delay in seconds (`TIMER_DELAY_SEC`).
    pub fn with_delay_secs(self, delay_secs: i64) -> Self {
        self.with_property(property_key::TIMER_DELAY_SEC, delay_secs.to_string())
    }

    /// The relative delivery delay in seconds (`TIMER_DELAY_SEC`).
    pub fn delay_secs(&self) -> Option<i64> {
        self.property(property_key::TIMER_DELAY_SEC)?.parse().ok()
    }

    /// Sets `WAIT` (whether the broker answers only after flush/replication).
    pub fn with_wait_store_msg_ok(self, wait: bool) -> Self {
        self.with_property(property_key::WAIT, wait.to_string())
    }

    /// `WAIT`; absent means true, anything but `false` means true (Java
    /// `Boolean.parseBoolean` on a value that defaults to "true" when missing).
    pub fn wait_store_msg_ok(&self) -> bool {
        self.property(property_key::WAIT) != Some("false")
    }

    /// The client unique id (`UNIQ_KEY`).
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(property_key::UNIQ_KEY)
    }

    /// Sets `UNIQ_KEY`.
    pub fn with_uniq_key(self, id: impl Into<String>) -> Self {
        self.with_property(property_key::UNIQ_KEY, id)
    }

    /// Sets `UNIQ_KEY` to a fresh id from the process-wide generator unless one is present,
    /// and returns it.
    pub fn ensure_uniq_key(&mut self) -> &str {
        self.properties
            .entry(property_key::UNIQ_KEY.to_owned())
            .or_insert_with(super::id::new_uniq_id)
    }

    /// Whether this is a transactional half message (`TRAN_MSG=true`).
    pub fn is_transaction_prepared(&self) -> bool {
        self.property(property_key::TRAN_MSG) == Some("true")
    }

    /// The property string of this message (PROTOCOL.md §3.5), in key order.
    pub fn encode_properties(&self) -> String {
        property::encode_properties(&self.properties)
    }
}

fn parse_positive(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|v| *v > 0)
}

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// LZ4 or ZSTD (sysFlag compression type), which Tern does not implement.
    #[error("unsupported compression type {0:#x}")]
    UnsupportedCompression(i32),
    /// The body is not a valid zlib stream.
    #[error("corrupt compressed body")]
    Corrupt(#[source] std::io::Error),
    /// The body would inflate beyond the limit.
    #[error("uncompressed body exceeds {limit_bytes} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit_bytes: usize,
    },
}

/// Compresses `data` as a zlib stream (what Java producers send with COMPRESSED_FLAG; Java 5.x
/// uses level 5). `level` is clamped to 0..=9.
pub fn zlib_compress(data: &[u8], level: u32) -> Bytes {
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 16),
        Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Inflates a zlib stream, refusing to produce more than `max_len_bytes`.
///
/// # Errors
/// [`BodyError::Corrupt`] for invalid input, [`BodyError::TooLarge`] past the limit.
pub fn zlib_decompress(data: &[u8], max_len_bytes: usize) -> Result<Bytes, BodyError> {
    let limit = u64::try_from(max_len_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(2).min(max_len_bytes));
    ZlibDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(BodyError::Corrupt)?;
    if out.len() > max_len_bytes {
        return Err(BodyError::TooLarge {
            limit_bytes: max_len_bytes,
        });
    }
    Ok(Bytes::from(out))
}

/// A stored message: every field of its CommitLog record, owned, plus its offset message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// Topic, flag, body (as stored: compressed if `sys_flag` says so) and properties.
    pub message: Message,
    /// The offset message id, from `store_host` and `phy_offset`.
    pub msg_id: String,
    /// TOTALSIZE: the record's size in bytes.
    pub store_size: i32,
    /// MAGICCODE.
    pub magic: i32,
    /// BODYCRC as stored.
    pub body_crc: i32,
    /// Queue id.
    pub queue_id: i32,
    /// Logical offset in the queue.
    pub queue_offset: i64,
    /// The record's CommitLog offset.
    pub phy_offset: i64,
    /// sysFlag.
    pub sys_flag: i32,
    /// Producer timestamp, epoch milliseconds.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker append time, epoch milliseconds.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Retry count.
    pub reconsume_times: i32,
    /// Half-message offset for committed/rolled-back transactions, else 0.
    pub prepared_transaction_offset: i64,
}

impl MessageExt {
    /// Decodes the record at the start of `buf` without checking the body CRC (as clients do);
    /// returns the message and the number of bytes it took.
    ///
    /// # Errors
    /// As [`decode_record`].
    pub fn decode(buf: &Bytes) -> Result<(MessageExt, usize), RecordError> {
        Self::decode_with(buf, false)
    }

    /// As [`MessageExt::decode`], optionally verifying the body CRC.
    ///
    /// # Errors
    /// As [`decode_record`].
    pub fn decode_with(buf: &Bytes, verify_crc: bool) -> Result<(MessageExt, usize), RecordError> {
        let r = decode_record(buf, verify_crc)?;
        let len = r.len();
        // Share `buf`'s allocation: the body sits at a fixed position given the host families.
        let body_start = record::body_pos(r.sys_flag);
        let body = buf.slice(body_start..body_start + r.body.len());
        let ext = MessageExt {
            message: Message {
                topic: r.topic.to_owned(),
                flag: r.flag,
                body,
                properties: property::decode_properties(r.properties),
            },
            msg_id: offset_msg_id(r.store_host, r.phy_offset),
            store_size: r.total_size,
            magic: r.magic,
            body_crc: r.body_crc,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            phy_offset: r.phy_offset,
            sys_flag: r.sys_flag,
            born_timestamp: r.born_timestamp,
            born_host: r.born_host,
            store_timestamp: r.store_timestamp,
            store_host: r.store_host,
            reconsume_times: r.reconsume_times,
            prepared_transaction_offset: r.prepared_transaction_offset,
        };
        Ok((ext, len))
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.message.topic
    }

    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&str> {
        self.message.tags()
    }

    /// The `KEYS` tokens.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.message.keys()
    }

    /// One property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.message.property(name)
    }

    /// The id applications see: `UNIQ_KEY` if present, else the offset message id.
    pub fn unique_id(&self) -> &str {
        self.message.uniq_key().unwrap_or(&self.msg_id)
    }

    /// The transaction type bits of `sys_flag`.
    pub fn transaction_type(&self) -> i32 {
        sys_flag::transaction_value(self.sys_flag)
    }

    /// The body, inflated when COMPRESSED_FLAG is set (zlib; at most
    /// [`MAX_UNCOMPRESSED_BODY_BYTES`]), else the stored body (no copy).
    ///
    /// # Errors
    /// [`BodyError::UnsupportedCompression`] for LZ4/ZSTD, [`BodyError::Corrupt`],
    /// [`BodyError::TooLarge`].
    pub fn uncompressed_body(&self) -> Result<Bytes, BodyError> {
        if !sys_flag::is_compressed(self.sys_flag) {
            return Ok(self.message.body.clone());
        }
        match sys_flag::compression_type(self.sys_flag) {
            0 | sys_flag::COMPRESSION_ZLIB_TYPE => {
                zlib_decompress(&self.message.body, MAX_UNCOMPRESSED_BODY_BYTES)
            }
            other => Err(BodyError::UnsupportedCompression(other)),
        }
    }

    /// The record content of this message, for re-encoding (re-puts, tests).
    pub fn to_record_input(&self) -> RecordInput {
        RecordInput {
            topic: self.message.topic.clone(),
            queue_id: self.queue_id,
            flag: self.message.flag,
            body: self.message.body.clone(),
            properties: self.message.encode_properties(),
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
        }
    }

    /// Appends this message as a CommitLog record (properties re-encoded in key order).
    ///
    /// # Errors
    /// As [`record::encode_record`].
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordError> {
        record::encode_record(
            &self.to_record_input(),
            self.queue_offset,
            self.phy_offset,
            self.store_timestamp,
            out,
        )
    }
}

/// Decodes a PULL / QUERY_MESSAGE body: records back to back, without CRC checks.
///
/// # Errors
/// The first record that fails, as [`decode_record`] (a trailing partial record is
/// [`RecordError::Truncated`]).
pub fn decode_messages(body: &Bytes) -> Result<Vec<MessageExt>, RecordError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    // Each record is at least MIN_RECORD_SIZE bytes, so this loop ends.
    while offset < body.len() {
        let (m, used) = MessageExt::decode(&body.slice(offset..))?;
        out.push(m);
        offset += used;
    }
    Ok(out)
}
