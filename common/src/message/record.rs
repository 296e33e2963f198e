//! The byte-exact CommitLog record (PROTOCOL.md §3.1), which is also one element of a PULL,
//! QUERY_MESSAGE or VIEW_MESSAGE_BY_ID response body.
//!
//! # Layout
//!
//! All integers big-endian. Offsets for IPv4 hosts; an IPv6 born host (sysFlag `0x10`) or store
//! host (sysFlag `0x20`) takes 20 bytes instead of 8 and shifts everything after it.
//!
//! ```text
//!  0 TOTALSIZE i32        4 MAGICCODE i32       8 BODYCRC i32        12 QUEUEID i32
//! 16 FLAG i32            20 QUEUEOFFSET i64    28 PHYSICALOFFSET i64 36 SYSFLAG i32
//! 40 BORNTIMESTAMP i64   48 BORNHOST 4|16 + port i32
//! 56 STORETIMESTAMP i64  64 STOREHOST 4|16 + port i32
//! 72 RECONSUMETIMES i32  76 PREPARED TRANSACTION OFFSET i64
//! 84 BODY i32 len + bytes
//!    TOPIC  V1: i8 len + bytes | V2: i16 len + bytes
//!    PROPERTIES i16 len + bytes
//! ```
//!
//! Fixed part for IPv4/IPv4/V1 is [`MIN_RECORD_SIZE`] = 91 bytes. V1 magic is written unless the
//! topic is longer than 127 bytes (Java's `autoMessageVersionOnTopicLen`), so topics that every
//! client can read keep the 1-byte length.
//!
//! The end of a CommitLog file is marked by an 8-byte blank marker (TOTALSIZE = bytes left in the
//! file, MAGICCODE = [`BLANK_MAGIC_CODE`]); [`decode_record`] reports it as
//! [`RecordError::Blank`] so that readers move to the next file.
//!
//! Decoding never reads outside the given slice and never allocates: every length is checked
//! against the slice and against TOTALSIZE before use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use super::property::{self, property_key, MAX_PROPERTIES_LEN_BYTES};

/// Magic of a V1 record (1-byte topic length), Java `MessageDecoder.MESSAGE_MAGIC_CODE`.
pub const MESSAGE_MAGIC_CODE: i32 = 0xDAA320A7_u32 as i32;
/// Magic of a V2 record (2-byte topic length), Java `MessageDecoder.MESSAGE_MAGIC_CODE_V2`.
pub const MESSAGE_MAGIC_CODE_V2: i32 = 0xDAA320AB_u32 as i32;
/// Magic of the end-of-file blank marker, Java `CommitLog.BLANK_MAGIC_CODE`.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD43194_u32 as i32;

/// Size in bytes of the smallest possible record: IPv4 hosts, V1, empty body, topic and
/// properties.
pub const MIN_RECORD_SIZE: usize = 91;
/// Size in bytes of the end-of-file blank marker.
pub const BLANK_MARKER_SIZE: usize = 8;
/// Longest topic, in UTF-8 bytes, that a V1 record can hold; longer topics are written as V2.
pub const MAX_TOPIC_LEN_V1_BYTES: usize = i8::MAX as usize;
/// Longest topic, in UTF-8 bytes, that a V2 record can hold (signed short length).
pub const MAX_TOPIC_LEN_V2_BYTES: usize = i16::MAX as usize;

/// Byte position of TOTALSIZE.
pub const TOTAL_SIZE_POS: usize = 0;
/// Byte position of MAGICCODE.
pub const MAGIC_CODE_POS: usize = 4;
/// Byte position of BODYCRC.
pub const BODY_CRC_POS: usize = 8;
/// Byte position of QUEUEID.
pub const QUEUE_ID_POS: usize = 12;
/// Byte position of FLAG.
pub const FLAG_POS: usize = 16;
/// Byte position of QUEUEOFFSET.
pub const QUEUE_OFFSET_POS: usize = 20;
/// Byte position of PHYSICALOFFSET.
pub const PHY_OFFSET_POS: usize = 28;
/// Byte position of SYSFLAG.
pub const SYS_FLAG_POS: usize = 36;
/// Byte position of BORNTIMESTAMP.
pub const BORN_TIMESTAMP_POS: usize = 40;
/// Byte position of BORNHOST.
pub const BORN_HOST_POS: usize = 48;

/// The message sysFlag bits (PROTOCOL.md §3.2, Java `MessageSysFlag`).
pub mod sys_flag {
    /// The body is compressed (zlib when the compression-type bits are 0).
    pub const COMPRESSED_FLAG: i32 = 0x1;
    /// The topic's filter type is MULTI_TAG (set by the broker).
    pub const MULTI_TAGS_FLAG: i32 = 0x2;
    /// Not a transactional message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    /// A transactional half message (not dispatched to a consume queue).
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    /// A committed transactional message.
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    /// A rolled-back transactional message (not dispatched, not indexed).
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// Mask of the transaction type bits.
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    /// The born host is 16 address bytes + port.
    pub const BORNHOST_V6_FLAG: i32 = 0x10;
    /// The store host is 16 address bytes + port.
    pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x20;
    /// (5.x) Inner-batch record that clients must unwrap.
    pub const NEED_UNWRAP_FLAG: i32 = 0x40;
    /// (5.x) Inner batch.
    pub const INNER_BATCH_FLAG: i32 = 0x80;
    /// Mask of the compression type bits (8–10).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// Compression type LZ4.
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x100;
    /// Compression type ZSTD.
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x200;
    /// Compression type ZLIB.
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x300;

    /// The transaction type bits of `flag` (one of the `TRANSACTION_*_TYPE` values).
    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_TYPE_MASK
    }

    /// `flag` with its transaction type replaced by `transaction_type`.
    pub fn reset_transaction_value(flag: i32, transaction_type: i32) -> i32 {
        (flag & !TRANSACTION_TYPE_MASK) | (transaction_type & TRANSACTION_TYPE_MASK)
    }

    /// Whether the body is compressed.
    pub fn is_compressed(flag: i32) -> bool {
        flag & COMPRESSED_FLAG != 0
    }

    /// `flag` with the compressed bit and compression type cleared.
    pub fn clear_compressed(flag: i32) -> i32 {
        flag & !(COMPRESSED_FLAG | COMPRESSION_TYPE_MASK)
    }

    /// The compression type bits of `flag` (0 for legacy zlib).
    pub fn compression_type(flag: i32) -> i32 {
        flag & COMPRESSION_TYPE_MASK
    }

    /// Whether the born host is IPv6.
    pub fn is_born_host_v6(flag: i32) -> bool {
        flag & BORNHOST_V6_FLAG != 0
    }

    /// Whether the store host is IPv6.
    pub fn is_store_host_v6(flag: i32) -> bool {
        flag & STOREHOSTADDRESS_V6_FLAG != 0
    }

    /// Whether a record with this flag goes to a consume queue (NOT_TYPE or COMMIT).
    pub fn is_dispatched(flag: i32) -> bool {
        matches!(
            transaction_value(flag),
            TRANSACTION_NOT_TYPE | TRANSACTION_COMMIT_TYPE
        )
    }
}

/// Why a record could not be encoded, decoded or patched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The slice ends before the record does.
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed from the start of the slice.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// MAGICCODE is neither V1, V2 nor blank.
    #[error("bad record magic code {0:#010x}")]
    BadMagic(i32),
    /// An end-of-file blank marker: the rest of this CommitLog file is empty.
    #[error("end-of-file blank marker ({total_size} bytes left in file)")]
    Blank {
        /// Bytes left in the file, including the marker.
        total_size: i32,
    },
    /// TOTALSIZE disagrees with the lengths of the fields.
    #[error("record size mismatch: TOTALSIZE {total_size}, fields need {computed}")]
    SizeMismatch {
        /// The TOTALSIZE field.
        total_size: i32,
        /// The size implied by the field lengths (at least this many bytes).
        computed: usize,
    },
    /// BODYCRC does not match the body.
    #[error("body crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// The BODYCRC field.
        stored: i32,
        /// CRC-32 of the body masked with `0x7FFFFFFF`.
        computed: i32,
    },
    /// The topic or the property string is not UTF-8.
    #[error("topic or properties are not valid UTF-8")]
    InvalidUtf8,
    /// The topic is longer than [`MAX_TOPIC_LEN_V2_BYTES`].
    #[error("topic longer than {MAX_TOPIC_LEN_V2_BYTES} bytes")]
    TopicTooLong,
    /// The property string is longer than [`MAX_PROPERTIES_LEN_BYTES`].
    #[error("property string longer than {MAX_PROPERTIES_LEN_BYTES} bytes")]
    PropertiesTooLong,
    /// A length field is negative or a length does not fit the format.
    #[error("invalid length field")]
    InvalidLength,
    /// A host port is outside `0..=65535`.
    #[error("invalid host port {0}")]
    InvalidPort(i32),
}

/// Everything a producer/broker supplies for one record; offsets and store time are filled at
/// append.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordInput {
    /// Topic the record is written to.
    pub topic: String,
    /// Queue id within the topic.
    pub queue_id: i32,
    /// User flag from the producer.
    pub flag: i32,
    /// Stored body bytes (already compressed if `sys_flag` says so).
    pub body: Bytes,
    /// Already-encoded property string (PROTOCOL.md §3.5).
    pub properties: String,
    /// sysFlag; the host-family bits are recomputed by [`encode_record`].
    pub sys_flag: i32,
    /// Producer timestamp, epoch milliseconds.
    pub born_timestamp: i64,
    /// Producer address as seen by the broker.
    pub born_host: SocketAddr,
    /// Broker's advertised address.
    pub store_host: SocketAddr,
    /// Retry count.
    pub reconsume_times: i32,
    /// CommitLog offset of the half message for a committed/rolled-back transaction, else 0.
    pub prepared_transaction_offset: i64,
}

impl RecordInput {
    /// The sysFlag actually written: `sys_flag` with BORNHOST_V6/STOREHOST_V6 set from the
    /// address families.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut flag =
            self.sys_flag & !(sys_flag::BORNHOST_V6_FLAG | sys_flag::STOREHOSTADDRESS_V6_FLAG);
        if self.born_host.is_ipv6() {
            flag |= sys_flag::BORNHOST_V6_FLAG;
        }
        if self.store_host.is_ipv6() {
            flag |= sys_flag::STOREHOSTADDRESS_V6_FLAG;
        }
        flag
    }
}

impl From<&RecordRef<'_>> for RecordInput {
    /// Copies the content of a stored record (for re-puts: schedule, transaction commit, retry).
    fn from(r: &RecordRef<'_>) -> Self {
        RecordInput {
            topic: r.topic.to_owned(),
            queue_id: r.queue_id,
            flag: r.flag,
            body: Bytes::copy_from_slice(r.body),
            properties: r.properties.to_owned(),
            sys_flag: r.sys_flag,
            born_timestamp: r.born_timestamp,
            born_host: r.born_host,
            store_host: r.store_host,
            reconsume_times: r.reconsume_times,
            prepared_transaction_offset: r.prepared_transaction_offset,
        }
    }
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// TOTALSIZE of the record [`encode_record`] would write for `input`, in bytes.
///
/// Does not validate lengths; [`encode_record`] does.
pub fn encoded_len(input: &RecordInput) -> usize {
    let topic_len_field = if input.topic.len() > MAX_TOPIC_LEN_V1_BYTES {
        2
    } else {
        1
    };
    MIN_RECORD_SIZE - 1 - 8 - 8
        + host_len(&input.born_host)
        + host_len(&input.store_host)
        + input.body.len()
        + topic_len_field
        + input.topic.len()
        + input.properties.len()
}

/// CRC-32 (IEEE) of `body` masked with `0x7FFFFFFF`, as Java's `UtilAll.crc32` computes BODYCRC.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Capacity of [`HeadWriter`]: the fixed fields before BODY with two IPv6 hosts (112 bytes),
/// and also TOPICLEN + a V1 topic + PROPERTIESLEN (1 + 127 + 2 bytes).
const HEAD_CAPACITY: usize = 1 + MAX_TOPIC_LEN_V1_BYTES + 2;

/// A small stack buffer that `encode_record` fills field by field before copying it into the
/// output in one `put_slice`. Callers never put more than [`HEAD_CAPACITY`] bytes.
struct HeadWriter {
    buf: [u8; HEAD_CAPACITY],
    len: usize,
}

impl HeadWriter {
    fn new() -> Self {
        Self {
            buf: [0; HEAD_CAPACITY],
            len: 0,
        }
    }

    /// Appends `bytes`; the callers' field sizes keep the total within `HEAD_CAPACITY` (a slice
    /// index panic here would be a bug in `encode_record`, not bad input).
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// BORNHOST / STOREHOST: the address bytes (4 or 16), then the port as an i32.
    fn put_host(&mut self, addr: &SocketAddr) {
        match addr {
            SocketAddr::V4(a) => self.put(&a.ip().octets()),
            SocketAddr::V6(a) => self.put(&a.ip().octets()),
        }
        self.put(&i32::from(addr.port()).to_be_bytes());
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Encodes the whole record (BODYCRC computed here, V1 magic unless topic > 127 bytes → V2),
/// with QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP as given. sys_flag's
/// BORNHOST_V6/STOREHOST_V6 bits are set from the address families automatically.
///
/// Appends exactly [`encoded_len`] bytes to `out`; on error nothing is written.
///
/// # Errors
/// [`RecordError::TopicTooLong`] above [`MAX_TOPIC_LEN_V2_BYTES`],
/// [`RecordError::PropertiesTooLong`] above [`MAX_PROPERTIES_LEN_BYTES`],
/// [`RecordError::InvalidLength`] if the body or the whole record exceeds `i32::MAX` bytes.
pub fn encode_record(
    input: &RecordInput,
    queue_offset: i64,
    phy_offset: i64,
    store_timestamp: i64,
    out: &mut BytesMut,
) -> Result<(), RecordError> {
    let topic = input.topic.as_bytes();
    if topic.len() > MAX_TOPIC_LEN_V2_BYTES {
        return Err(RecordError::TopicTooLong);
    }
    let properties = input.properties.as_bytes();
    if properties.len() > MAX_PROPERTIES_LEN_BYTES {
        return Err(RecordError::PropertiesTooLong);
    }
    let body_len = i32::try_from(input.body.len()).map_err(|_| RecordError::InvalidLength)?;
    let total_len = encoded_len(input);
    let total_size = i32::try_from(total_len).map_err(|_| RecordError::InvalidLength)?;
    let v2 = topic.len() > MAX_TOPIC_LEN_V1_BYTES;

    out.reserve(total_len);
    let start = out.len();
    // The fixed-size fields up to BODYLEN go into a stack array and then into `out` with one
    // copy: a `put_*` per field costs a capacity check and a length update each, which was
    // more than half of this function's instructions.
    let mut head = HeadWriter::new();
    head.put(&total_size.to_be_bytes());
    let magic = if v2 {
        MESSAGE_MAGIC_CODE_V2
    } else {
        MESSAGE_MAGIC_CODE
    };
    head.put(&magic.to_be_bytes());
    head.put(&body_crc(&input.body).to_be_bytes());
    head.put(&input.queue_id.to_be_bytes());
    head.put(&input.flag.to_be_bytes());
    head.put(&queue_offset.to_be_bytes());
    head.put(&phy_offset.to_be_bytes());
    head.put(&input.effective_sys_flag().to_be_bytes());
    head.put(&input.born_timestamp.to_be_bytes());
    head.put_host(&input.born_host);
    head.put(&store_timestamp.to_be_bytes());
    head.put_host(&input.store_host);
    head.put(&input.reconsume_times.to_be_bytes());
    head.put(&input.prepared_transaction_offset.to_be_bytes());
    head.put(&body_len.to_be_bytes());
    out.put_slice(head.bytes());
    out.put_slice(&input.body);
    // Checked above: the property length is at most i16::MAX.
    let properties_len = (properties.len() as i16).to_be_bytes();
    if v2 {
        // Checked above: the length is at most i16::MAX.
        out.put_slice(&(topic.len() as i16).to_be_bytes());
        out.put_slice(topic);
        out.put_slice(&properties_len);
    } else {
        // TOPICLEN, TOPIC and PROPERTIESLEN in one copy (a V1 topic is at most 127 bytes).
        let mut tail = HeadWriter::new();
        // Checked above: the length is at most i8::MAX.
        tail.put(&[topic.len() as u8]);
        tail.put(topic);
        tail.put(&properties_len);
        out.put_slice(tail.bytes());
    }
    out.put_slice(properties);
    debug_assert_eq!(
        out.len() - start,
        total_len,
        "encoded_len agrees with encode_record"
    );
    Ok(())
}

fn read_i32_at(buf: &[u8], pos: usize) -> Option<i32> {
    let bytes: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

fn write_i64_at(buf: &mut [u8], pos: usize, value: i64) -> Result<(), RecordError> {
    let have = buf.len();
    let slot = buf.get_mut(pos..pos + 8).ok_or(RecordError::Truncated {
        need: pos + 8,
        have,
    })?;
    slot.copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// Overwrites QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP inside an already encoded record
/// (the store encodes outside its lock, then patches these three under the lock).
///
/// BODYCRC does not cover these fields, so the record stays valid.
///
/// # Errors
/// [`RecordError::Truncated`] if `record` is too short to hold the fields,
/// [`RecordError::BadMagic`] / [`RecordError::Blank`] if it is not a message record.
pub fn patch_record(
    record: &mut [u8],
    queue_offset: i64,
    phy_offset: i64,
    store_timestamp: i64,
) -> Result<(), RecordError> {
    let have = record.len();
    let magic = read_i32_at(record, MAGIC_CODE_POS).ok_or(RecordError::Truncated {
        need: MAGIC_CODE_POS + 4,
        have,
    })?;
    check_magic(magic, read_i32_at(record, TOTAL_SIZE_POS).unwrap_or(0))?;
    let flag = read_i32_at(record, SYS_FLAG_POS).ok_or(RecordError::Truncated {
        need: SYS_FLAG_POS + 4,
        have,
    })?;
    let store_timestamp_pos = store_timestamp_pos(flag);
    // Check the furthest field first so that nothing is written on error.
    if have < store_timestamp_pos + 8 {
        return Err(RecordError::Truncated {
            need: store_timestamp_pos + 8,
            have,
        });
    }
    write_i64_at(record, QUEUE_OFFSET_POS, queue_offset)?;
    write_i64_at(record, PHY_OFFSET_POS, phy_offset)?;
    write_i64_at(record, store_timestamp_pos, store_timestamp)
}

fn check_magic(magic: i32, total_size: i32) -> Result<(), RecordError> {
    match magic {
        MESSAGE_MAGIC_CODE | MESSAGE_MAGIC_CODE_V2 => Ok(()),
        BLANK_MAGIC_CODE => Err(RecordError::Blank { total_size }),
        other => Err(RecordError::BadMagic(other)),
    }
}

/// The end-of-file blank marker: TOTALSIZE = `remaining` (bytes left in the file), MAGICCODE =
/// [`BLANK_MAGIC_CODE`].
pub fn blank_marker(remaining: i32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&remaining.to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
    out
}

/// Reads TOTALSIZE and MAGICCODE at the start of `buf` and returns the record's size in bytes,
/// without looking at the rest (cheap; for scanning). The size is only checked to be at least
/// [`MIN_RECORD_SIZE`]; it may exceed `buf`.
///
/// # Errors
/// [`RecordError::Truncated`] below 8 bytes, [`RecordError::Blank`] for the end-of-file marker,
/// [`RecordError::BadMagic`], [`RecordError::InvalidLength`] for an impossible TOTALSIZE.
pub fn record_size(buf: &[u8]) -> Result<usize, RecordError> {
    let have = buf.len();
    let (Some(total_size), Some(magic)) = (
        read_i32_at(buf, TOTAL_SIZE_POS),
        read_i32_at(buf, MAGIC_CODE_POS),
    ) else {
        return Err(RecordError::Truncated { need: 8, have });
    };
    check_magic(magic, total_size)?;
    let size = usize::try_from(total_size).map_err(|_| RecordError::InvalidLength)?;
    if size < MIN_RECORD_SIZE {
        return Err(RecordError::InvalidLength);
    }
    Ok(size)
}

/// Byte position of the body bytes (after the body length) in a record with this sysFlag.
pub fn body_pos(flag: i32) -> usize {
    let born = if sys_flag::is_born_host_v6(flag) {
        20
    } else {
        8
    };
    let store = if sys_flag::is_store_host_v6(flag) {
        20
    } else {
        8
    };
    BORN_HOST_POS + born + 8 + store + 4 + 8 + 4
}

/// Byte position of STORETIMESTAMP in a record with this sysFlag.
pub fn store_timestamp_pos(flag: i32) -> usize {
    BORN_HOST_POS
        + if sys_flag::is_born_host_v6(flag) {
            20
        } else {
            8
        }
}

/// A zero-copy view of one stored record, as returned by [`decode_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// TOTALSIZE: the record's length in bytes.
    pub total_size: i32,
    /// MAGICCODE ([`MESSAGE_MAGIC_CODE`] or [`MESSAGE_MAGIC_CODE_V2`]).
    pub magic: i32,
    /// BODYCRC as stored.
    pub body_crc: i32,
    /// Queue id.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// Logical offset in the queue.
    pub queue_offset: i64,
    /// The record's own CommitLog offset.
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
    /// Stored body bytes (compressed if sysFlag says so).
    pub body: &'a [u8],
    /// Topic.
    pub topic: &'a str,
    /// Property string.
    pub properties: &'a str,
}

impl<'a> RecordRef<'a> {
    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&'a str> {
        self.property(property_key::TAGS)
    }

    /// The space-separated `KEYS` tokens, empty tokens skipped.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.property(property_key::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// The `UNIQ_KEY` property (client unique id).
    pub fn uniq_key(&self) -> Option<&'a str> {
        self.property(property_key::UNIQ_KEY)
    }

    /// One property by name (Java's drop rules; the last duplicate wins).
    pub fn property(&self, name: &str) -> Option<&'a str> {
        property::find_property(self.properties, name)
    }

    /// The transaction type bits, `sys_flag & 0xC`.
    pub fn transaction_type(&self) -> i32 {
        sys_flag::transaction_value(self.sys_flag)
    }

    /// The record's size in bytes (TOTALSIZE as `usize`).
    pub fn len(&self) -> usize {
        // decode_record guarantees total_size >= MIN_RECORD_SIZE.
        self.total_size as usize
    }

    /// Always false: a record has at least [`MIN_RECORD_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Bounds-checked big-endian reader over one record's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    total_size: i32,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.saturating_add(n);
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(RecordError::SizeMismatch {
                total_size: self.total_size,
                computed: end,
            })?;
        self.pos = end;
        Ok(out)
    }

    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes([self.take(1)?[0]]))
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn host(&mut self, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip = if v6 {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(self.take(16)?);
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            let b = self.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let port = self.i32()?;
        let port = u16::try_from(port).map_err(|_| RecordError::InvalidPort(port))?;
        Ok(SocketAddr::new(ip, port))
    }

    fn len_prefixed(&mut self, len: i64) -> Result<&'a [u8], RecordError> {
        let len = usize::try_from(len).map_err(|_| RecordError::InvalidLength)?;
        self.take(len)
    }
}

/// A zero-copy view of one stored record at the start of `buf`; `verify_crc` recomputes the
/// body CRC. Bytes after the record are ignored (use [`RecordRef::len`] to step to the next).
///
/// # Errors
/// [`RecordError::Truncated`] if `buf` is shorter than 8 bytes or than TOTALSIZE,
/// [`RecordError::Blank`] for the end-of-file marker, [`RecordError::BadMagic`],
/// [`RecordError::InvalidLength`] for a negative length or TOTALSIZE below the fixed part,
/// [`RecordError::SizeMismatch`] if the fields do not add up to TOTALSIZE,
/// [`RecordError::InvalidPort`], [`RecordError::InvalidUtf8`], and [`RecordError::BadCrc`] when
/// `verify_crc` is set.
pub fn decode_record(buf: &[u8], verify_crc: bool) -> Result<RecordRef<'_>, RecordError> {
    let size = record_size(buf)?;
    if size > buf.len() {
        return Err(RecordError::Truncated {
            need: size,
            have: buf.len(),
        });
    }
    // record_size checked 0 <= size <= i32::MAX.
    let total_size = size as i32;
    let mut c = Cursor {
        buf: &buf[..size],
        pos: 0,
        total_size,
    };
    c.i32()?; // TOTALSIZE
    let magic = c.i32()?;
    let body_crc_stored = c.i32()?;
    let queue_id = c.i32()?;
    let flag = c.i32()?;
    let queue_offset = c.i64()?;
    let phy_offset = c.i64()?;
    let sys_flag_value = c.i32()?;
    let born_timestamp = c.i64()?;
    let born_host = c.host(sys_flag::is_born_host_v6(sys_flag_value))?;
    let store_timestamp = c.i64()?;
    let store_host = c.host(sys_flag::is_store_host_v6(sys_flag_value))?;
    let reconsume_times = c.i32()?;
    let prepared_transaction_offset = c.i64()?;
    let body_len = c.i32()?;
    let body = c.len_prefixed(i64::from(body_len))?;
    let topic_len = if magic == MESSAGE_MAGIC_CODE_V2 {
        i64::from(c.i16()?)
    } else {
        i64::from(c.i8()?)
    };
    let topic = c.len_prefixed(topic_len)?;
    let properties_len = c.i16()?;
    let properties = c.len_prefixed(i64::from(properties_len))?;
    if c.pos != size {
        return Err(RecordError::SizeMismatch {
            total_size,
            computed: c.pos,
        });
    }
    let topic = std::str::from_utf8(topic).map_err(|_| RecordError::InvalidUtf8)?;
    let properties = std::str::from_utf8(properties).map_err(|_| RecordError::InvalidUtf8)?;
    if verify_crc {
        let computed = body_crc(body);
        if computed != body_crc_stored {
            return Err(RecordError::BadCrc {
                stored: body_crc_stored,
                computed,
            });
        }
    }
    Ok(RecordRef {
        total_size,
        magic,
        body_crc: body_crc_stored,
        queue_id,
        flag,
        queue_offset,
        phy_offset,
        sys_flag: sys_flag_value,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}
