//! A hand-written reader for the usual MessagePack header (ARCHITECTURE.md "Tern's MessagePack
//! header"), in front of the `rmp-serde` one, and a hand-written writer in place of it.
//!
//! [`encode`] writes exactly the bytes `rmp_serde::encode::write_named` writes for the header
//! struct (the tests hold the two to byte parity), straight into the frame buffer: through
//! serde it was about 8 % of a client's CPU per send, plus a copy out of a scratch `Vec`.
//!
//! Going through serde costs about 500 ns for a SEND_MESSAGE_V2 header (a struct visitor that
//! matches field names, a generic value dispatch per element); this reader takes the header
//! as Tern writes it, a map of the seven named fields whose ext fields are strings, in one
//! pass. Anything else (an unknown or repeated field, a non-string ext key, a float, bytes,
//! invalid UTF-8, trailing bytes, …) returns `None` and the caller decodes with `rmp-serde`,
//! so what is accepted, what is rejected and every error message stay exactly those of the
//! serde path: this reader only ever gives the same answer sooner.

use bytes::{Bytes, BytesMut};

use super::codec::{CodecError, MAX_HEADER_LEN};
use super::command::{LanguageCode, RemotingCommand, SerializeType};
use super::ext_fields::{ExtFields, RawFields};

/// Where [`encode`] writes: a frame buffer or a `Vec`. Each write is an inlined
/// `extend_from_slice`, so a marker or a fixed-width number is a store or two; through
/// `BufMut`'s `put_u8` and `put_slice` every one was an out-of-line call plus a `memcpy` call,
/// 8 % of a publishing client's instructions.
pub(crate) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes a MessagePack length prefix in its shortest form, as `rmp::encode` does: `fix | len`
/// below `fix_limit`, then the one-byte-length marker `m8` (strings have one, maps do not),
/// `m16` and `m32`.
///
/// # Errors
/// [`CodecError::HeaderTooLarge`] for a length beyond any header's 24 bits.
fn put_len<B: Sink>(
    out: &mut B,
    len: usize,
    (fix, fix_limit): (u8, usize),
    m8: Option<u8>,
    m16: u8,
    m32: u8,
) -> Result<(), CodecError> {
    if len < fix_limit {
        out.put(&[fix | len as u8]);
    } else if let Some(m8) = m8.filter(|_| len < 256) {
        out.put(&[m8, len as u8]);
    } else if len < 65_536 {
        let [hi, lo] = (len as u16).to_be_bytes();
        out.put(&[m16, hi, lo]);
    } else if len <= MAX_HEADER_LEN {
        let [a, b, c, d] = (len as u32).to_be_bytes();
        out.put(&[m32, a, b, c, d]);
    } else {
        return Err(CodecError::HeaderTooLarge { len });
    }
    Ok(())
}

/// Writes a string with the shortest MessagePack prefix (fixstr, str8, str16 or str32), as
/// `rmp::encode::write_str` does.
///
/// # Errors
/// [`CodecError::HeaderTooLarge`] for a string longer than a header may be at all.
fn put_str<B: Sink>(out: &mut B, s: &str) -> Result<(), CodecError> {
    put_len(out, s.len(), (0xa0, 32), Some(0xd9), 0xda, 0xdb)?;
    out.put(s.as_bytes());
    Ok(())
}

/// Writes an integer in the shortest form, as `rmp::encode::write_sint` does (non-negative
/// values as unsigned).
fn put_int<B: Sink>(out: &mut B, v: i32) {
    match v {
        // Positive and negative fixint: the value is its own byte.
        -32..=127 => out.put(&[v as u8]),
        -128..=-33 => out.put(&[0xd0, v as u8]),
        -32_768..=-129 => {
            let [hi, lo] = (v as i16).to_be_bytes();
            out.put(&[0xd1, hi, lo]);
        }
        i32::MIN..=-32_769 => {
            let [a, b, c, d] = v.to_be_bytes();
            out.put(&[0xd2, a, b, c, d]);
        }
        128..=255 => out.put(&[0xcc, v as u8]),
        256..=65_535 => {
            let [hi, lo] = (v as u16).to_be_bytes();
            out.put(&[0xcd, hi, lo]);
        }
        _ => {
            let [a, b, c, d] = (v as u32).to_be_bytes();
            out.put(&[0xce, a, b, c, d]);
        }
    }
}

/// Writes a map header with the shortest prefix, as `rmp::encode::write_map_len` does.
fn put_map_len<B: Sink>(out: &mut B, len: usize) -> Result<(), CodecError> {
    put_len(out, len, (0x80, 16), None, 0xde, 0xdf)
}

/// Writes `cmd`'s header (everything but the body) as Tern's MessagePack header: a map of
/// `code`, `language`, `version`, `opaque`, `flag`, `remark` (only when set) and `extFields`
/// (a map of strings in insertion order).
///
/// # Errors
/// [`CodecError::HeaderTooLarge`] if a string or the ext-field count is beyond any header's
/// 24-bit length; `out` then holds a partial header for the caller to drop.
pub(crate) fn encode<B: Sink>(cmd: &RemotingCommand, out: &mut B) -> Result<(), CodecError> {
    out.put(&[if cmd.remark.is_some() { 0x87 } else { 0x86 }]);
    put_str(out, "code")?;
    put_int(out, cmd.code);
    put_str(out, "language")?;
    put_str(out, cmd.language.name())?;
    put_str(out, "version")?;
    put_int(out, cmd.version);
    put_str(out, "opaque")?;
    put_int(out, cmd.opaque);
    put_str(out, "flag")?;
    put_int(out, cmd.flag);
    if let Some(remark) = &cmd.remark {
        put_str(out, "remark")?;
        put_str(out, remark)?;
    }
    put_str(out, "extFields")?;
    put_map_len(out, cmd.ext_fields.len())?;
    for (key, value) in &cmd.ext_fields {
        put_str(out, key)?;
        put_str(out, value)?;
    }
    Ok(())
}

/// A cursor over the header bytes; every read is bounds-checked and `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

/// One MessagePack scalar as the ext fields use them, a string's bytes unchecked.
enum Raw<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(&'a [u8]),
}

/// One MessagePack scalar as the header uses them.
enum Scalar<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn str_of_len(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    /// Like [`Reader::scalar`] with a string's bytes not yet checked as UTF-8.
    fn raw(&mut self) -> Option<Raw<'a>> {
        if !matches!(self.peek()?, 0xa0..=0xbf | 0xd9..=0xdb) {
            return Some(match self.scalar()? {
                Scalar::Nil => Raw::Nil,
                Scalar::Bool(b) => Raw::Bool(b),
                Scalar::Int(v) => Raw::Int(v),
                Scalar::Str(_) => return None,
            });
        }
        let marker = self.u8()?;
        let len = match marker {
            0xd9 => usize::from(self.u8()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => usize::from(marker & 0x1f),
        };
        Some(Raw::Str(self.bytes(len)?))
    }

    /// A nil, boolean, integer or string; `None` for any other type (or a short buffer).
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        let marker = self.u8()?;
        Some(match marker {
            0x00..=0x7f => Scalar::Int(i64::from(marker)),
            0xe0..=0xff => Scalar::Int(i64::from(marker as i8)),
            0xa0..=0xbf => Scalar::Str(self.str_of_len(usize::from(marker & 0x1f))?),
            0xc0 => Scalar::Nil,
            0xc2 => Scalar::Bool(false),
            0xc3 => Scalar::Bool(true),
            0xcc => Scalar::Int(i64::from(self.u8()?)),
            0xcd => Scalar::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Scalar::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Scalar::Int(i64::try_from(u64::from_be_bytes(self.be()?)).ok()?),
            0xd0 => Scalar::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Scalar::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Scalar::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Scalar::Int(i64::from_be_bytes(self.be()?)),
            0xd9 => {
                let n = self.u8()?;
                Scalar::Str(self.str_of_len(usize::from(n))?)
            }
            0xda => {
                let n = u16::from_be_bytes(self.be()?);
                Scalar::Str(self.str_of_len(usize::from(n))?)
            }
            0xdb => {
                let n = u32::from_be_bytes(self.be()?);
                Scalar::Str(self.str_of_len(usize::try_from(n).ok()?)?)
            }
            _ => return None,
        })
    }

    /// A map header's entry count; `None` if the next value is not a map.
    fn map_len(&mut self) -> Option<usize> {
        let marker = self.u8()?;
        match marker {
            0x80..=0x8f => Some(usize::from(marker & 0x0f)),
            0xde => Some(usize::from(u16::from_be_bytes(self.be()?))),
            0xdf => usize::try_from(u32::from_be_bytes(self.be()?)).ok(),
            _ => None,
        }
    }

    /// The next byte without consuming it.
    fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }
}

fn int32(value: Scalar<'_>) -> Option<i32> {
    match value {
        Scalar::Int(v) => i32::try_from(v).ok(),
        _ => None,
    }
}

fn opt_str(value: Scalar<'_>) -> Option<Option<&str>> {
    match value {
        Scalar::Nil => Some(None),
        Scalar::Str(s) => Some(Some(s)),
        _ => None,
    }
}

/// Reads the ext-fields map (or nil) with string keys and nil, boolean, integer or string
/// values, rendered as the serde path renders them.
fn ext_fields(r: &mut Reader<'_>) -> Option<ExtFields> {
    if r.peek()? == 0xc0 {
        r.u8()?;
        return Some(ExtFields::new());
    }
    let len = r.map_len()?;
    // The count comes from the input: reserve for at most 32 entries up front, and no more
    // text than the header has left.
    let mut fields = RawFields::with_capacity(len.min(32), r.buf.len());
    for _ in 0..len {
        let Raw::Str(key) = r.raw()? else {
            return None;
        };
        fields.key(key);
        match r.raw()? {
            Raw::Nil => fields.drop_key(),
            Raw::Str(value) => fields.value(value),
            Raw::Bool(b) => fields.value(if b { b"true" } else { b"false" }),
            Raw::Int(v) => fields.value_display(v),
        }
    }
    fields.finish()
}

/// Decodes the header if it has the usual shape (see the module doc); `None` otherwise.
pub(crate) fn decode_fast(bytes: &[u8]) -> Option<RemotingCommand> {
    let mut r = Reader { buf: bytes };
    let len = r.map_len()?;
    let mut cmd = RemotingCommand {
        serialize_type: SerializeType::MsgPack,
        body: Bytes::new(),
        ..RemotingCommand::default()
    };
    let mut seen = 0u8;
    for _ in 0..len {
        let Raw::Str(name) = r.raw()? else {
            return None;
        };
        let bit = match name {
            b"code" => {
                cmd.code = int32(r.scalar()?)?;
                1
            }
            b"language" => {
                cmd.language = opt_str(r.scalar()?)?.map_or(LanguageCode::default(), |name| {
                    LanguageCode::from_name(name)
                });
                2
            }
            b"version" => {
                cmd.version = int32(r.scalar()?)?;
                4
            }
            b"opaque" => {
                cmd.opaque = int32(r.scalar()?)?;
                8
            }
            b"flag" => {
                cmd.flag = int32(r.scalar()?)?;
                16
            }
            b"remark" => {
                cmd.remark = opt_str(r.scalar()?)?.map(str::to_owned);
                32
            }
            b"extFields" => {
                cmd.ext_fields = ext_fields(&mut r)?;
                64
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
    }
    r.buf.is_empty().then_some(cmd)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::codec::{decode_serde_msgpack, encode_header, encode_serde_msgpack};

    /// The fast reader either declines or agrees with the serde path.
    fn check_parity(bytes: &[u8]) -> Option<RemotingCommand> {
        let fast = decode_fast(bytes);
        if let Some(cmd) = &fast {
            let slow =
                decode_serde_msgpack(bytes).expect("serde path accepts what the fast one does");
            assert_eq!(cmd, &slow);
        }
        fast
    }

    fn sample() -> RemotingCommand {
        let mut cmd = RemotingCommand::request_empty(310)
            .with_remark("hé")
            .with_serialize_type(SerializeType::MsgPack);
        cmd.opaque = -7;
        cmd.flag = 3;
        for (k, v) in [
            ("a", "pg"),
            ("b", "Topic"),
            ("g", "1763800000000"),
            ("i", ""),
        ] {
            cmd.ext_fields.put(k, v);
        }
        cmd.ext_fields.put("long", &"x".repeat(70_000));
        cmd
    }

    #[test]
    fn takes_what_tern_writes() {
        let cmd = sample();
        let decoded = check_parity(&encode_header(&cmd).unwrap()).expect("fast path");
        assert_eq!(decoded, cmd);
        let empty =
            RemotingCommand::response_to(&cmd, 0).with_serialize_type(SerializeType::MsgPack);
        assert_eq!(check_parity(&encode_header(&empty).unwrap()), Some(empty));
    }

    /// Hand-written MessagePack values for the unusual shapes Tern never writes.
    #[derive(Clone)]
    enum V {
        Nil,
        Bool(bool),
        Int(i64),
        Uint(u64),
        Float(f64),
        Str(&'static str),
        /// A string whose bytes need not be UTF-8.
        RawStr(&'static [u8]),
        Bin(&'static [u8]),
        Map(Vec<(V, V)>),
    }

    fn write(v: &V, out: &mut Vec<u8>) {
        match v {
            V::Nil => out.push(0xc0),
            V::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            V::Int(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            V::Uint(u) => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
            V::Float(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            V::Str(s) => {
                out.push(0xd9);
                out.push(u8::try_from(s.len()).unwrap());
                out.extend_from_slice(s.as_bytes());
            }
            V::RawStr(b) => {
                out.push(0xd9);
                out.push(u8::try_from(b.len()).unwrap());
                out.extend_from_slice(b);
            }
            V::Bin(b) => {
                out.push(0xc4);
                out.push(u8::try_from(b.len()).unwrap());
                out.extend_from_slice(b);
            }
            V::Map(entries) => {
                out.push(0xde);
                out.extend_from_slice(&u16::try_from(entries.len()).unwrap().to_be_bytes());
                for (k, v) in entries {
                    write(k, out);
                    write(v, out);
                }
            }
        }
    }

    fn header(fields: &[(&'static str, V)]) -> Vec<u8> {
        let mut out = vec![];
        let map = V::Map(fields.iter().map(|(k, v)| (V::Str(k), v.clone())).collect());
        write(&map, &mut out);
        out
    }

    #[test]
    fn declines_or_agrees_on_unusual_headers() {
        // Lenient scalars in ext fields are rendered like the serde path renders them.
        let cmd = check_parity(&header(&[
            ("code", V::Int(10)),
            ("language", V::Nil),
            (
                "extFields",
                V::Map(vec![
                    (V::Str("n"), V::Int(-3)),
                    (V::Str("b"), V::Bool(true)),
                    (V::Str("z"), V::Nil),
                    (V::Str("n"), V::Int(4)),
                ]),
            ),
        ]))
        .expect("fast path");
        assert_eq!(cmd.code, 10);
        assert_eq!(cmd.ext_fields, ExtFields::from([("n", "4"), ("b", "true")]));
        // Unknown and repeated fields, out-of-range and float numbers, binary values,
        // non-string keys, trailing bytes: declined, whatever the serde path then says.
        for bytes in [
            header(&[("code", V::Int(1)), ("unknown", V::Int(1))]),
            header(&[("code", V::Int(1)), ("code", V::Int(2))]),
            header(&[("code", V::Float(1.5))]),
            header(&[("code", V::Int(i64::from(i32::MAX) + 1))]),
            header(&[("extFields", V::Map(vec![(V::Str("n"), V::Uint(u64::MAX))]))]),
            header(&[("extFields", V::Map(vec![(V::Int(1), V::Str("v"))]))]),
            header(&[("extFields", V::Map(vec![(V::Str("k"), V::Bin(b"v"))]))]),
            header(&[("remark", V::Int(3))]),
            [encode_header(&sample()).unwrap(), vec![0xc0]].concat(),
            vec![],
            vec![0x91, 0x01],
        ] {
            assert!(check_parity(&bytes).is_none(), "{bytes:?}");
        }
        // A character split across a key and its value, or invalid bytes anywhere, is not
        // UTF-8 even though the joined text may be: declined, and left to the serde path
        // (which takes such strings as bytes, lossily).
        for fields in [
            vec![(V::RawStr(b"k\xc3"), V::RawStr(b"\xa9v"))],
            vec![(V::RawStr(b"\xc3"), V::RawStr(b"\xa9"))],
            vec![(V::Str("a"), V::RawStr(b"\xff"))],
            vec![
                (V::Str("a"), V::RawStr(b"x\xc3")),
                (V::RawStr(b"\xa9"), V::Str("b")),
            ],
        ] {
            let bytes = header(&[("code", V::Int(1)), ("extFields", V::Map(fields))]);
            assert!(check_parity(&bytes).is_none(), "{bytes:?}");
        }
        // Ext fields followed by another field: a nil entry is dropped, the last of a
        // repeated key wins.
        let cmd = check_parity(&header(&[
            (
                "extFields",
                V::Map(vec![
                    (V::Str("a"), V::Str("1")),
                    (V::Str("b"), V::Nil),
                    (V::Str("a"), V::Str("11")),
                    (V::Str("c"), V::Str("")),
                ]),
            ),
            ("flag", V::Int(2)),
        ]))
        .expect("fast path");
        assert_eq!(cmd.flag, 2);
        assert_eq!(cmd.ext_fields, ExtFields::from([("a", "11"), ("c", "")]));
        assert_eq!(cmd.ext_fields.text_len(), 4);
        // Multi-byte text within each key and value is taken.
        let cmd = check_parity(&header(&[(
            "extFields",
            V::Map(vec![(V::Str("clé"), V::Str("été")), (V::Str("k"), V::Nil)]),
        )]))
        .expect("fast path");
        assert_eq!(cmd.ext_fields, ExtFields::from([("clé", "été")]));
    }

    #[test]
    fn writes_what_rmp_serde_writes() {
        let mut cmd = sample();
        assert_eq!(encode_header(&cmd).unwrap(), encode_serde_msgpack(&cmd));
        cmd.remark = None;
        cmd.ext_fields = (0..20)
            .map(|i| (format!("k{i}"), "v".repeat(i * 40)))
            .collect();
        assert_eq!(encode_header(&cmd).unwrap(), encode_serde_msgpack(&cmd));
        cmd.ext_fields = (0..70_000)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert_eq!(encode_header(&cmd).unwrap(), encode_serde_msgpack(&cmd));
    }

    proptest! {
        /// Every integer width and string length class, byte for byte as `rmp-serde`.
        #[test]
        fn encoding_matches_rmp_serde(
            code in any::<i32>(),
            version in prop_oneof![any::<i32>(), -300i32..300],
            opaque in prop_oneof![any::<i32>(), -70_000i32..70_000],
            flag in 0i32..4,
            remark in proptest::option::of(0usize..300),
            fields in proptest::collection::vec((0usize..40, 0usize..70_000), 0..20),
        ) {
            let mut cmd = RemotingCommand::request_empty(code)
                .with_serialize_type(SerializeType::MsgPack);
            cmd.version = version;
            cmd.opaque = opaque;
            cmd.flag = flag;
            cmd.remark = remark.map(|n| "r".repeat(n));
            for (k, v) in fields {
                cmd.ext_fields.put(&"k".repeat(k), &"é".repeat(v / 2));
            }
            let bytes = encode_header(&cmd).unwrap();
            prop_assert_eq!(&bytes, &encode_serde_msgpack(&cmd));
            prop_assert_eq!(check_parity(&bytes), Some(cmd));
        }

        #[test]
        fn arbitrary_bytes_never_disagree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            check_parity(&bytes);
        }

        #[test]
        fn damaged_headers_never_disagree(cut in 0usize..64, flip in 0usize..200, bit in 0u8..8) {
            let mut cmd = sample();
            cmd.ext_fields.remove("long");
            let mut bytes = encode_header(&cmd).unwrap();
            bytes.truncate(bytes.len() - cut.min(bytes.len() - 1));
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            check_parity(&bytes);
        }
    }
}
