//! CommitLog record codec tests.
//!
//! Goal: the record bytes are exactly RocketMQ's (PROTOCOL.md §3.1), round trips are lossless,
//! and decoding arbitrary bytes never panics or reads out of bounds.
//! Method: one hand-built golden record, patch tests, and proptest round trips plus random-byte
//! decoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tern_common::message::record::{
    blank_marker, decode_record, encode_record, encoded_len, patch_record, record_size, sys_flag,
    RecordError, RecordInput, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2,
    MIN_RECORD_SIZE,
};

fn golden_input() -> RecordInput {
    RecordInput {
        topic: "TopicTest".to_owned(),
        queue_id: 3,
        flag: 0,
        body: Bytes::from_static(b"Hello"),
        properties: "TAGS\u{1}TagA\u{2}".to_owned(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.0.0.9:54321".parse().unwrap(),
        store_host: "10.0.0.5:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// The golden record, field by field from the §3.1 table.
fn golden_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = Vec::new();
    v.extend([0x00, 0x00, 0x00, 0x73]); // TOTALSIZE = 91 + 5 + 9 + 10 = 115
    v.extend([0xDA, 0xA3, 0x20, 0xA7]); // MAGICCODE V1
    v.extend([0x77, 0xD1, 0x89, 0x82]); // BODYCRC = crc32("Hello") & 0x7FFFFFFF
    v.extend([0x00, 0x00, 0x00, 0x03]); // QUEUEID
    v.extend([0x00, 0x00, 0x00, 0x00]); // FLAG
    v.extend([0, 0, 0, 0, 0, 0, 0, 17]); // QUEUEOFFSET
    v.extend([0, 0, 0, 0, 0, 0, 0x10, 0x00]); // PHYSICALOFFSET = 4096
    v.extend([0x00, 0x00, 0x00, 0x00]); // SYSFLAG
    v.extend([0, 0, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00]); // BORNTIMESTAMP 1700000000000
    v.extend([10, 0, 0, 9, 0x00, 0x00, 0xD4, 0x31]); // BORNHOST 10.0.0.9:54321
    v.extend([0, 0, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]); // STORETIMESTAMP 1700000000123
    v.extend([10, 0, 0, 5, 0x00, 0x00, 0x2A, 0x9F]); // STOREHOST 10.0.0.5:10911
    v.extend([0x00, 0x00, 0x00, 0x00]); // RECONSUMETIMES
    v.extend([0, 0, 0, 0, 0, 0, 0, 0]); // PREPARED TRANSACTION OFFSET
    v.extend([0x00, 0x00, 0x00, 0x05]); // BODY length
    v.extend(b"Hello");
    v.push(9); // TOPIC length (V1: one byte)
    v.extend(b"TopicTest");
    v.extend([0x00, 0x0A]); // PROPERTIES length
    v.extend(b"TAGS\x01TagA\x02");
    v
}

#[test]
fn golden_record_encodes_byte_exact() {
    let input = golden_input();
    let expected = golden_bytes();
    assert_eq!(expected.len(), 115);
    assert_eq!(
        (crc32fast::hash(b"Hello") & 0x7FFF_FFFF).to_be_bytes(),
        [0x77, 0xD1, 0x89, 0x82]
    );
    assert_eq!(encoded_len(&input), 115);
    let mut out = BytesMut::new();
    encode_record(&input, 17, 4096, 1_700_000_000_123, &mut out).unwrap();
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn golden_record_decodes_to_expected_fields() {
    let bytes = golden_bytes();
    let r = decode_record(&bytes, true).unwrap();
    assert_eq!(r.total_size, 115);
    assert_eq!(r.magic, MESSAGE_MAGIC_CODE);
    assert_eq!(r.magic, -626_843_481);
    assert_eq!(r.body_crc, 0x77D1_8982);
    assert_eq!(r.queue_id, 3);
    assert_eq!(r.flag, 0);
    assert_eq!(r.queue_offset, 17);
    assert_eq!(r.phy_offset, 4096);
    assert_eq!(r.sys_flag, 0);
    assert_eq!(r.born_timestamp, 1_700_000_000_000);
    assert_eq!(r.born_host, "10.0.0.9:54321".parse::<SocketAddr>().unwrap());
    assert_eq!(r.store_timestamp, 1_700_000_000_123);
    assert_eq!(
        r.store_host,
        "10.0.0.5:10911".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(r.reconsume_times, 0);
    assert_eq!(r.prepared_transaction_offset, 0);
    assert_eq!(r.body, b"Hello");
    assert_eq!(r.topic, "TopicTest");
    assert_eq!(r.tags(), Some("TagA"));
    assert_eq!(r.keys().count(), 0);
    assert_eq!(r.uniq_key(), None);
    assert_eq!(r.transaction_type(), sys_flag::TRANSACTION_NOT_TYPE);
    assert_eq!(r.len(), 115);
    assert_eq!(record_size(&bytes), Ok(115));
    // And back again.
    let mut out = BytesMut::new();
    let input = RecordInput::from(&r);
    encode_record(
        &input,
        r.queue_offset,
        r.phy_offset,
        r.store_timestamp,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..], &bytes[..]);
}

#[test]
fn magic_constants_match_java() {
    assert_eq!(MESSAGE_MAGIC_CODE_V2, -626_843_477);
    assert_eq!(BLANK_MAGIC_CODE, -875_286_124);
    assert_eq!(MIN_RECORD_SIZE, 91);
}

#[test]
fn corrupted_body_fails_crc_only_when_verified() {
    let mut bytes = golden_bytes();
    bytes[88] = b'J'; // first body byte
    assert!(decode_record(&bytes, false).is_ok());
    assert_eq!(
        decode_record(&bytes, true),
        Err(RecordError::BadCrc {
            stored: 0x77D1_8982,
            computed: (crc32fast::hash(b"Jello") & 0x7FFF_FFFF) as i32
        })
    );
}

#[test]
fn patch_record_rewrites_offsets_and_store_time() {
    let mut bytes = golden_bytes();
    patch_record(&mut bytes, 99, 1 << 40, 42).unwrap();
    let r = decode_record(&bytes, true).unwrap();
    assert_eq!(r.queue_offset, 99);
    assert_eq!(r.phy_offset, 1 << 40);
    assert_eq!(r.store_timestamp, 42);
    assert_eq!(r.born_timestamp, 1_700_000_000_000);
    assert_eq!(r.body, b"Hello");
}

#[test]
fn patch_record_finds_store_time_after_ipv6_born_host() {
    let mut input = golden_input();
    input.born_host = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7);
    let mut out = BytesMut::new();
    encode_record(&input, 0, 0, 0, &mut out).unwrap();
    patch_record(&mut out, 5, 6, 7).unwrap();
    let r = decode_record(&out, true).unwrap();
    assert_eq!((r.queue_offset, r.phy_offset, r.store_timestamp), (5, 6, 7));
    assert_eq!(r.born_host, input.born_host);
    assert_eq!(r.sys_flag, sys_flag::BORNHOST_V6_FLAG);
}

#[test]
fn patch_record_rejects_short_and_foreign_buffers() {
    let mut short = golden_bytes();
    short.truncate(60);
    assert!(matches!(
        patch_record(&mut short, 1, 2, 3),
        Err(RecordError::Truncated { need: 64, have: 60 })
    ));
    // Nothing was written.
    assert_eq!(&short[..], &golden_bytes()[..60]);
    let mut blank = blank_marker(100).to_vec();
    blank.resize(100, 0);
    assert_eq!(
        patch_record(&mut blank, 1, 2, 3),
        Err(RecordError::Blank { total_size: 100 })
    );
    let mut zeros = vec![0u8; 100];
    assert_eq!(
        patch_record(&mut zeros, 1, 2, 3),
        Err(RecordError::BadMagic(0))
    );
}

#[test]
fn blank_marker_decodes_as_blank() {
    let marker = blank_marker(1234);
    assert_eq!(marker, [0, 0, 0x04, 0xD2, 0xCB, 0xD4, 0x31, 0x94]);
    assert_eq!(
        decode_record(&marker, true),
        Err(RecordError::Blank { total_size: 1234 })
    );
}

#[test]
fn truncated_record_reports_need_and_have() {
    let bytes = golden_bytes();
    assert_eq!(
        decode_record(&bytes[..100], true),
        Err(RecordError::Truncated {
            need: 115,
            have: 100
        })
    );
    assert_eq!(
        decode_record(&bytes[..5], true),
        Err(RecordError::Truncated { need: 8, have: 5 })
    );
}

#[test]
fn inconsistent_total_size_is_a_size_mismatch() {
    let mut bytes = golden_bytes();
    bytes.push(0);
    bytes[3] = 116; // TOTALSIZE one larger than the fields
    assert_eq!(
        decode_record(&bytes, true),
        Err(RecordError::SizeMismatch {
            total_size: 116,
            computed: 115
        })
    );
    let mut bytes = golden_bytes();
    bytes[3] = 114; // one smaller: the properties run past TOTALSIZE
    assert!(matches!(
        decode_record(&bytes, true),
        Err(RecordError::SizeMismatch {
            total_size: 114,
            ..
        })
    ));
    let mut bytes = golden_bytes();
    bytes[..4].copy_from_slice(&(-5i32).to_be_bytes());
    assert_eq!(decode_record(&bytes, true), Err(RecordError::InvalidLength));
}

#[test]
fn topic_longer_than_127_bytes_uses_v2() {
    let mut input = golden_input();
    input.topic = "%RETRY%".to_owned() + &"g".repeat(200);
    let mut out = BytesMut::new();
    encode_record(&input, 1, 2, 3, &mut out).unwrap();
    assert_eq!(out.len(), 91 + 1 + 5 + 207 + 10);
    let r = decode_record(&out, true).unwrap();
    assert_eq!(r.magic, MESSAGE_MAGIC_CODE_V2);
    assert_eq!(r.topic, input.topic);
    input.topic = "t".repeat(127);
    out.clear();
    encode_record(&input, 1, 2, 3, &mut out).unwrap();
    assert_eq!(decode_record(&out, true).unwrap().magic, MESSAGE_MAGIC_CODE);
}

#[test]
fn oversized_properties_and_topics_are_rejected() {
    let mut input = golden_input();
    input.properties = "a".repeat(32_768);
    let mut out = BytesMut::new();
    assert_eq!(
        encode_record(&input, 0, 0, 0, &mut out),
        Err(RecordError::PropertiesTooLong)
    );
    input.properties = "a".repeat(32_767);
    assert!(encode_record(&input, 0, 0, 0, &mut out).is_ok());
    out.clear();
    input.topic = "t".repeat(32_768);
    assert_eq!(
        encode_record(&input, 0, 0, 0, &mut out),
        Err(RecordError::TopicTooLong)
    );
    assert!(out.is_empty());
}

#[test]
fn keys_and_properties_follow_java_rules() {
    let mut input = golden_input();
    input.properties = "KEYS\u{1}k1  k2 \u{2}UNIQ_KEY\u{1}ABC\u{2}X\u{1}\u{2}".to_owned();
    let mut out = BytesMut::new();
    encode_record(&input, 0, 0, 0, &mut out).unwrap();
    let r = decode_record(&out, true).unwrap();
    assert_eq!(r.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
    assert_eq!(r.uniq_key(), Some("ABC"));
    assert_eq!(r.property("X"), None);
    assert_eq!(r.tags(), None);
}

#[test]
fn sys_flag_helpers() {
    let f = sys_flag::reset_transaction_value(
        sys_flag::COMPRESSED_FLAG | sys_flag::TRANSACTION_PREPARED_TYPE,
        sys_flag::TRANSACTION_COMMIT_TYPE,
    );
    assert_eq!(f, 0x9);
    assert_eq!(
        sys_flag::transaction_value(f),
        sys_flag::TRANSACTION_COMMIT_TYPE
    );
    assert!(sys_flag::is_compressed(f));
    assert_eq!(sys_flag::clear_compressed(f | 0x300), 0x8);
    assert!(sys_flag::is_dispatched(f));
    assert!(!sys_flag::is_dispatched(
        sys_flag::TRANSACTION_ROLLBACK_TYPE
    ));
    assert!(!sys_flag::is_dispatched(
        sys_flag::TRANSACTION_PREPARED_TYPE
    ));
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn arb_input() -> impl Strategy<Value = RecordInput> {
    (
        "[a-zA-Z0-9_%|-]{0,300}",
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..512),
        prop_oneof![Just(String::new()), "\\PC{0,200}"],
        any::<i32>(),
        any::<i64>(),
        (arb_addr(), arb_addr()),
        any::<i32>(),
        any::<i64>(),
    )
        .prop_map(
            |(topic, queue_id, flag, body, properties, sys, born, hosts, reconsume, prepared)| {
                RecordInput {
                    topic,
                    queue_id,
                    flag,
                    body: Bytes::from(body),
                    properties,
                    sys_flag: sys,
                    born_timestamp: born,
                    born_host: hosts.0,
                    store_host: hosts.1,
                    reconsume_times: reconsume,
                    prepared_transaction_offset: prepared,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn record_round_trips(input in arb_input(), qo in any::<i64>(), po in any::<i64>(),
                          st in any::<i64>(), trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut out = BytesMut::new();
        encode_record(&input, qo, po, st, &mut out).unwrap();
        prop_assert_eq!(out.len(), encoded_len(&input));
        out.extend_from_slice(&trailing);
        let r = decode_record(&out, true).unwrap();
        prop_assert_eq!(r.len(), encoded_len(&input));
        prop_assert_eq!(r.topic, input.topic.as_str());
        prop_assert_eq!(r.properties, input.properties.as_str());
        prop_assert_eq!(r.body, &input.body[..]);
        prop_assert_eq!(r.queue_offset, qo);
        prop_assert_eq!(r.phy_offset, po);
        prop_assert_eq!(r.store_timestamp, st);
        prop_assert_eq!(r.born_host, input.born_host);
        prop_assert_eq!(r.store_host, input.store_host);
        prop_assert_eq!(r.sys_flag, input.effective_sys_flag());
        prop_assert_eq!(r.magic == MESSAGE_MAGIC_CODE_V2, input.topic.len() > 127);
        let mut back = RecordInput::from(&r);
        back.sys_flag = input.sys_flag;
        prop_assert_eq!(&back, &input);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                          verify in any::<bool>()) {
        if let Ok(r) = decode_record(&bytes, verify) {
            prop_assert!(r.len() <= bytes.len());
        }
        let _ = record_size(&bytes);
        let mut copy = bytes.clone();
        let _ = patch_record(&mut copy, 1, 2, 3);
    }

    #[test]
    fn decoding_mutated_records_never_panics(input in arb_input(), pos in any::<usize>(),
                                             value in any::<u8>()) {
        let mut out = BytesMut::new();
        encode_record(&input, 1, 2, 3, &mut out).unwrap();
        let at = pos % out.len();
        out[at] = value;
        if let Ok(r) = decode_record(&out, false) {
            prop_assert!(r.len() <= out.len());
        }
    }
}
