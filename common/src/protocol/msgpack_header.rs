//! A hand-written reader for the usual MessagePack header (ARCHITECTURE.md "Tern's MessagePack
//! header"), in front of the `rmp-serde` one.
//!
//! Going through serde costs about 500 ns for a SEND_MESSAGE_V2 header (a struct visitor that
//! matches field names, a generic value dispatch per element); this reader takes the header
//! as Tern writes it, a map of the seven named fields whose ext fields are strings, in one
//! pass. Anything else (an unknown or repeated field, a non-string ext key, a float, bytes,
//! invalid UTF-8, trailing bytes, …) returns `None` and the caller decodes with `rmp-serde`,
//! so what is accepted, what is rejected and every error message stay exactly those of the
//! serde path: this reader only ever gives the same answer sooner.

use bytes::Bytes;

use super::command::{LanguageCode, RemotingCommand, SerializeType};
use super::ext_fields::ExtFields;

/// A cursor over the header bytes; every read is bounds-checked and `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
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
    // The count comes from the input: reserve for at most 32 entries up front.
    let mut fields = ExtFields::with_capacity(len.min(32));
    for _ in 0..len {
        let Scalar::Str(key) = r.scalar()? else {
            return None;
        };
        match r.scalar()? {
            Scalar::Nil => {}
            Scalar::Str(value) => fields.push(key, value),
            Scalar::Bool(b) => fields.push(key, if b { "true" } else { "false" }),
            Scalar::Int(v) => fields.push(key, &v.to_string()),
        }
    }
    fields.dedup_keep_last();
    Some(fields)
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
        let Scalar::Str(name) = r.scalar()? else {
            return None;
        };
        let bit = match name {
            "code" => {
                cmd.code = int32(r.scalar()?)?;
                1
            }
            "language" => {
                cmd.language = opt_str(r.scalar()?)?.map_or(LanguageCode::default(), |name| {
                    LanguageCode::from_name(name)
                });
                2
            }
            "version" => {
                cmd.version = int32(r.scalar()?)?;
                4
            }
            "opaque" => {
                cmd.opaque = int32(r.scalar()?)?;
                8
            }
            "flag" => {
                cmd.flag = int32(r.scalar()?)?;
                16
            }
            "remark" => {
                cmd.remark = opt_str(r.scalar()?)?.map(str::to_owned);
                32
            }
            "extFields" => {
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
    use crate::protocol::codec::{decode_serde_msgpack, encode_header};

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
    }

    proptest! {
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
