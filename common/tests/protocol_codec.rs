//! Goal: the remoting frame codec reads and writes RocketMQ frames exactly, in all three
//! header encodings, and rejects malformed or oversized input without allocating.
//!
//! Method: proptest round-trips of random commands (several frames per buffer, fed in random
//! chunks), golden vectors taken from PROTOCOL.md §1.3/§1.4 and from ali-ons' JSON habits, and
//! hand-built bad frames.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use tern_common::protocol::codec::{decode_header, encode_header};
use tern_common::protocol::{
    CodecError, ExtFields, LanguageCode, RemotingCodec, RemotingCommand, SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

const LANGUAGES: [LanguageCode; 14] = [
    LanguageCode::Java,
    LanguageCode::Cpp,
    LanguageCode::Dotnet,
    LanguageCode::Python,
    LanguageCode::Delphi,
    LanguageCode::Erlang,
    LanguageCode::Ruby,
    LanguageCode::Other,
    LanguageCode::Http,
    LanguageCode::Go,
    LanguageCode::Php,
    LanguageCode::Oms,
    LanguageCode::Rust,
    LanguageCode::NodeJs,
];

/// A random command that the given encoding can carry losslessly: the binary header has
/// 16-bit code/version and cannot tell an empty string from null.
fn command(ser: SerializeType) -> impl Strategy<Value = RemotingCommand> {
    let binary = ser == SerializeType::RocketMq;
    let code = if binary {
        (i16::MIN as i32..=i16::MAX as i32).boxed()
    } else {
        any::<i32>().boxed()
    };
    let version = if binary {
        (i16::MIN as i32..=i16::MAX as i32).boxed()
    } else {
        any::<i32>().boxed()
    };
    let min_len = usize::from(binary);
    let remark = proptest::option::of(
        proptest::string::string_regex(&format!(".{{{min_len},40}}")).expect("valid regex"),
    );
    let ext = proptest::collection::hash_map(
        "[a-zA-Z_]{1,12}",
        proptest::string::string_regex(&format!(".{{{min_len},30}}")).expect("valid regex"),
        0..8,
    );
    let body = proptest::collection::vec(any::<u8>(), 0..200);
    (
        code,
        0..LANGUAGES.len(),
        version,
        any::<i32>(),
        any::<i32>(),
        remark,
        ext,
        body,
    )
        .prop_map(
            move |(code, lang, version, opaque, flag, remark, ext, body)| RemotingCommand {
                code,
                language: LANGUAGES[lang],
                version,
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect::<ExtFields>(),
                body: Bytes::from(body),
                serialize_type: ser,
            },
        )
}

fn any_command() -> impl Strategy<Value = RemotingCommand> {
    prop_oneof![
        command(SerializeType::Json),
        command(SerializeType::RocketMq),
        command(SerializeType::MsgPack),
    ]
}

fn encode_all(cmds: &[RemotingCommand]) -> BytesMut {
    let mut codec = RemotingCodec::default();
    let mut buf = BytesMut::new();
    for cmd in cmds {
        codec.encode(cmd, &mut buf).expect("encode");
    }
    buf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip_when_fed_in_random_chunks(
        cmds in proptest::collection::vec(any_command(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let wire = encode_all(&cmds).freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();

        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for pair in points.windows(2) {
            buf.extend_from_slice(&wire[pair[0]..pair[1]]);
            // At most one frame per byte fed, so this loop is bounded.
            for _ in 0..=wire.len() {
                match codec.decode(&mut buf).expect("decode") {
                    Some(cmd) => got.push(cmd),
                    None => break,
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, cmds);
    }

    #[test]
    fn header_encodings_round_trip_alone(cmd in any_command()) {
        let bytes = encode_header(&cmd).expect("encode");
        let got = decode_header(cmd.serialize_type, &bytes).expect("decode");
        let expected = RemotingCommand { body: Bytes::new(), ..cmd };
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn json_output_is_compact_with_string_ext_fields(cmd in command(SerializeType::Json)) {
        let bytes = encode_header(&cmd).expect("encode");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        let compact = serde_json::to_vec(&value).expect("re-encode");
        prop_assert_eq!(bytes.len(), compact.len());
        prop_assert_eq!(&value["serializeTypeCurrentRPC"], "JSON");
        let ext = value["extFields"].as_object().expect("extFields object");
        prop_assert!(ext.values().all(serde_json::Value::is_string));
    }
}

#[test]
fn protocol_md_json_example_decodes() {
    let header = br#"{"code":0,"extFields":{"msgId":"0A00000500002A9F0000000000000000","queueId":"3","queueOffset":"17"},"flag":1,"language":"JAVA","opaque":42,"remark":"ok","serializeTypeCurrentRPC":"JSON","version":479}"#;
    let cmd = decode_header(SerializeType::Json, header).expect("decode");
    assert_eq!(cmd.code, 0);
    assert_eq!(cmd.flag, 1);
    assert!(cmd.is_response());
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.opaque, 42);
    assert_eq!(cmd.version, 479);
    assert_eq!(cmd.remark.as_deref(), Some("ok"));
    assert_eq!(cmd.ext("queueId"), Some("3"));
    assert_eq!(cmd.ext("queueOffset"), Some("17"));
    assert_eq!(cmd.ext("msgId"), Some("0A00000500002A9F0000000000000000"));
    assert_eq!(cmd.ext_fields.len(), 3);
}

#[test]
fn ali_ons_json_with_raw_scalars_and_no_remark_decodes() {
    let header = br#"{"code":310,"language":"NODE_JS","opaque":"5","flag":0,"version":121,"extFields":{"a":"pg","b":"T","e":0,"g":1700000000000,"k":false,"m":true,"i":null,"d":-4}}"#;
    let cmd = decode_header(SerializeType::Json, header).expect("decode");
    assert_eq!(cmd.code, 310);
    assert_eq!(cmd.opaque, 5);
    assert_eq!(cmd.language, LanguageCode::NodeJs);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext("e"), Some("0"));
    assert_eq!(cmd.ext("g"), Some("1700000000000"));
    assert_eq!(cmd.ext("k"), Some("false"));
    assert_eq!(cmd.ext("m"), Some("true"));
    assert_eq!(cmd.ext("d"), Some("-4"));
    assert_eq!(cmd.ext("i"), None);
    assert_eq!(cmd.ext_fields.len(), 7);
}

#[test]
fn minimal_json_uses_defaults_and_ignores_unknown_keys() {
    let header =
        br#"{"code":34,"opaque":9,"language":"KLINGON","whatever":[1,2],"extFields":null}"#;
    let cmd = decode_header(SerializeType::Json, header).expect("decode");
    assert_eq!(cmd.code, 34);
    assert_eq!(cmd.language, LanguageCode::Other);
    assert_eq!((cmd.flag, cmd.version), (0, 0));
    assert!(cmd.ext_fields.is_empty());
}

#[test]
fn json_output_matches_what_java_emits() {
    let request = RemotingCommand {
        opaque: 42,
        ..RemotingCommand::request_empty(10)
    };
    let mut response = RemotingCommand::response_to(&request, 0);
    response.ext_fields.insert("queueId".into(), "3".into());
    response.ext_fields.insert("msgId".into(), "AB".into());
    let bytes = encode_header(&response).expect("encode");
    assert_eq!(
        std::str::from_utf8(&bytes).expect("utf-8"),
        r#"{"code":0,"extFields":{"msgId":"AB","queueId":"3"},"flag":1,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":479}"#
    );
    let empty =
        encode_header(&RemotingCommand::request_empty(34).with_remark("r")).expect("encode");
    let text = std::str::from_utf8(&empty).expect("utf-8");
    assert!(text.contains(r#""extFields":{}"#), "{text}");
    assert!(text.contains(r#""remark":"r""#), "{text}");
    assert!(text.contains(r#""language":"RUST""#), "{text}");
}

/// A binary header built byte by byte from the PROTOCOL.md §1.4 table.
fn hand_built_binary_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.put_i16(105); // code GET_ROUTEINFO_BY_TOPIC
    h.put_u8(9); // language GO
    h.put_i16(317); // version
    h.put_i32(77); // opaque
    h.put_i32(2); // flag: oneway
    h.put_i32(2);
    h.put_slice(b"hi");
    let mut ext = Vec::new();
    ext.put_i16(5);
    ext.put_slice(b"topic");
    ext.put_i32(6);
    ext.put_slice(b"TopicA");
    ext.put_i16(5); // an empty value decodes as null in Java and is dropped
    ext.put_slice(b"bname");
    ext.put_i32(0);
    h.put_i32(i32::try_from(ext.len()).expect("small"));
    h.put_slice(&ext);
    h
}

#[test]
fn hand_built_binary_header_decodes() {
    let cmd = decode_header(SerializeType::RocketMq, &hand_built_binary_header()).expect("decode");
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::Go);
    assert_eq!(cmd.version, 317);
    assert_eq!(cmd.opaque, 77);
    assert!(cmd.is_oneway());
    assert_eq!(cmd.remark.as_deref(), Some("hi"));
    assert_eq!(cmd.ext("topic"), Some("TopicA"));
    assert_eq!(cmd.ext_fields.len(), 1);
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
}

#[test]
fn binary_frame_with_body_decodes_through_the_codec() {
    let header = hand_built_binary_header();
    let mut buf = BytesMut::new();
    buf.put_i32(i32::try_from(4 + header.len() + 3).expect("small"));
    buf.put_u32((1 << 24) | u32::try_from(header.len()).expect("small"));
    buf.put_slice(&header);
    buf.put_slice(b"xyz");
    let cmd = RemotingCodec::default()
        .decode(&mut buf)
        .expect("decode")
        .expect("frame");
    assert_eq!(&cmd.body[..], b"xyz");
    assert_eq!(cmd.code, 105);
}

#[test]
fn binary_header_with_lengths_past_the_end_is_rejected() {
    let good = hand_built_binary_header();
    // Remark length larger than what follows.
    let mut bad = good.clone();
    bad[13..17].copy_from_slice(&1000i32.to_be_bytes());
    assert!(matches!(
        decode_header(SerializeType::RocketMq, &bad),
        Err(CodecError::InvalidBinaryHeader {
            field: "remark",
            ..
        })
    ));
    // Negative remark length.
    let mut bad = good.clone();
    bad[13..17].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(decode_header(SerializeType::RocketMq, &bad).is_err());
    // extFields total length past the end.
    let mut bad = good.clone();
    bad[19..23].copy_from_slice(&4096i32.to_be_bytes());
    assert!(matches!(
        decode_header(SerializeType::RocketMq, &bad),
        Err(CodecError::InvalidBinaryHeader {
            field: "extFields",
            ..
        })
    ));
    // A value length inside the block past the end of the block.
    let mut bad = good.clone();
    bad[30..34].copy_from_slice(&100i32.to_be_bytes());
    assert!(matches!(
        decode_header(SerializeType::RocketMq, &bad),
        Err(CodecError::InvalidBinaryHeader { .. })
    ));
    // Truncated in the fixed part.
    assert!(matches!(
        decode_header(SerializeType::RocketMq, &good[..7]),
        Err(CodecError::InvalidBinaryHeader {
            field: "opaque",
            need: 4,
            have: 2
        })
    ));
}

#[test]
fn truncated_frame_waits_for_more_bytes() {
    let cmd = RemotingCommand::request_empty(10).with_body(vec![1u8; 50]);
    let wire = encode_all(std::slice::from_ref(&cmd));
    let mut codec = RemotingCodec::default();
    for cut in [0, 3, 4, 8, wire.len() - 1] {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert!(
            codec.decode(&mut buf).expect("no error").is_none(),
            "cut {cut}"
        );
        assert_eq!(buf.len(), cut, "a partial frame is left in place");
    }
    let mut buf = wire.clone();
    assert_eq!(codec.decode(&mut buf).expect("decode"), Some(cmd));
}

#[test]
fn length_over_the_limit_fails_before_allocating() {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(0x7FFF_FFF0);
    buf.put_u32(10);
    let capacity = buf.capacity();
    let err = RemotingCodec::default()
        .decode(&mut buf)
        .expect_err("too large");
    assert!(matches!(
        err,
        CodecError::FrameTooLarge {
            len: 0x7FFF_FFF4,
            max: 16_777_216
        }
    ));
    assert_eq!(
        buf.capacity(),
        capacity,
        "no reservation for a rejected frame"
    );

    // The limit counts the 4-byte prefix: a frame of exactly max bytes passes.
    let cmd = RemotingCommand::request_empty(10);
    let wire = encode_all(&[cmd]);
    let mut exact = wire.clone();
    assert!(RemotingCodec::new(wire.len())
        .decode(&mut exact)
        .expect("fits")
        .is_some());
    let mut over = wire.clone();
    assert!(matches!(
        RemotingCodec::new(wire.len() - 1).decode(&mut over),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn header_length_beyond_frame_is_rejected() {
    let mut buf = BytesMut::new();
    buf.put_i32(4 + 2);
    buf.put_u32(3); // JSON, headerLen 3 > 2 bytes available
    buf.put_slice(b"{}");
    assert!(matches!(
        RemotingCodec::default().decode(&mut buf),
        Err(CodecError::HeaderLengthOutOfBounds {
            header_len: 3,
            available: 2
        })
    ));
    let mut tiny = BytesMut::new();
    tiny.put_i32(3);
    tiny.put_u32(0);
    assert!(matches!(
        RemotingCodec::default().decode(&mut tiny),
        Err(CodecError::InvalidLength { length: 3 })
    ));
}

#[test]
fn unknown_serialize_type_is_rejected() {
    let mut buf = BytesMut::new();
    buf.put_i32(4 + 2);
    buf.put_u32((3 << 24) | 2);
    buf.put_slice(b"{}");
    assert!(matches!(
        RemotingCodec::default().decode(&mut buf),
        Err(CodecError::UnknownSerializeType(3))
    ));
}

#[test]
fn invalid_json_is_rejected() {
    for bad in [
        &b"{\"code\":"[..],
        b"[1,2]",
        b"{\"code\":{}}",
        b"{\"opaque\":1.5}",
        b"\xff",
    ] {
        assert!(decode_header(SerializeType::Json, bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        decode_header(SerializeType::Json, b"{\"code\":"),
        Err(CodecError::InvalidJson(_))
    ));
}

#[test]
fn msgpack_header_is_a_named_map() {
    let mut cmd = RemotingCommand::request_empty(11).with_serialize_type(SerializeType::MsgPack);
    cmd.opaque = 3;
    cmd.ext_fields.insert("topic".into(), "T".into());
    let bytes = encode_header(&cmd).expect("encode");
    // fixmap with 6 entries (remark omitted), first key "code" (fixstr of length 4).
    assert_eq!(bytes[0], 0x86);
    assert_eq!(&bytes[1..6], b"\xa4code");
    assert_eq!(bytes[6], 11, "positive fixint code");
    assert_eq!(
        decode_header(SerializeType::MsgPack, &bytes).expect("decode"),
        cmd
    );
    assert!(matches!(
        decode_header(SerializeType::MsgPack, b"\x81\xa4code\xc1"),
        Err(CodecError::InvalidMsgPack(_))
    ));
}
