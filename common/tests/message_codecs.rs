//! Message id, tag hash, property string, batch body and topic name tests.
//!
//! Goal: every small codec of the message model matches Java's behaviour on known values and
//! rejects malformed input with an error instead of a panic.
//! Method: golden values computed by hand (or with Java's published algorithm), Java's drop
//! rules case by case, and proptest round trips.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tern_common::message::batch::{
    decode_batch, encode_batch, encode_batch_entry, encode_batch_messages, BatchEntry, BatchError,
};
use tern_common::message::id::{
    decode_offset_msg_id, new_uniq_id, offset_msg_id, MessageIdError, UniqIdGenerator,
};
use tern_common::message::property::{
    decode_properties, encode_properties, find_property, is_valid_property, iter_properties,
    property_key,
};
use tern_common::message::tag::{java_hash_code, key_hash, tags_hash, SubscriptionExpr};
use tern_common::message::topic::{
    dlq_topic, group_of_retry_or_dlq_topic, is_send_forbidden_topic, is_system_topic, retry_topic,
    validate_topic, TopicError,
};
use tern_common::message::Message;

// ---------------------------------------------------------------- message ids

#[test]
fn offset_msg_id_golden_ipv4() {
    // 0A000005 = 10.0.0.5, 00002A9F = port 10911, 0000000000000064 = offset 100.
    let host: SocketAddr = "10.0.0.5:10911".parse().unwrap();
    assert_eq!(offset_msg_id(host, 100), "0A00000500002A9F0000000000000064");
    assert_eq!(
        decode_offset_msg_id("0A00000500002A9F0000000000000064"),
        Ok((host, 100))
    );
    // Lower-case hex is accepted too.
    assert_eq!(
        decode_offset_msg_id("0a00000500002a9f0000000000000064"),
        Ok((host, 100))
    );
}

#[test]
fn offset_msg_id_ipv6_is_56_chars() {
    let host: SocketAddr = "[fe80::1]:10911".parse().unwrap();
    let id = offset_msg_id(host, i64::MAX);
    assert_eq!(id.len(), 56);
    assert_eq!(
        id,
        "FE80000000000000000000000000000100002A9F7FFFFFFFFFFFFFFF"
    );
    assert_eq!(decode_offset_msg_id(&id), Ok((host, i64::MAX)));
}

#[test]
fn offset_msg_id_rejects_bad_input() {
    assert_eq!(
        decode_offset_msg_id("0A000005"),
        Err(MessageIdError::InvalidLength(8))
    );
    assert_eq!(
        decode_offset_msg_id("0A00000500002A9F000000000000006G"),
        Err(MessageIdError::InvalidHex)
    );
    // Multi-byte characters must not cause a panic at a char boundary.
    assert!(decode_offset_msg_id("éééééééééééééééé").is_err());
    assert_eq!(
        decode_offset_msg_id("0A000005FFFFFFFF0000000000000064"),
        Err(MessageIdError::InvalidPort(-1))
    );
}

#[test]
fn uniq_id_has_java_layout() {
    let g = UniqIdGenerator::with_parts("10.0.0.9".parse().unwrap(), 0x1234_5678, 0x0BAD_CAFE);
    // 2023-11-14T22:13:20Z is 1 203 200 000 ms after 2023-11-01T00:00:00Z = 0x47B7_6000.
    let a = g.next_id_at(1_700_000_000_000);
    let b = g.next_id_at(1_700_000_000_000);
    assert_eq!(a, "0A00000956780BADCAFE47B760000000");
    assert_eq!(b, "0A00000956780BADCAFE47B760000001");
    // A new month restarts the time part.
    let c = g.next_id_at(1_701_388_800_005); // 2023-12-01T00:00:00.005Z
    assert_eq!(&c[20..28], "00000005");
    assert_eq!(&c[28..], "0002");
    let v6 = UniqIdGenerator::with_parts("::1".parse().unwrap(), 1, 2);
    assert_eq!(v6.next_id_at(0).len(), 56);
}

#[test]
fn uniq_ids_are_unique_across_threads() {
    let g = Arc::new(UniqIdGenerator::new("127.0.0.1".parse().unwrap()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let g = Arc::clone(&g);
            std::thread::spawn(move || (0..1000).map(|_| g.next_id()).collect::<Vec<_>>())
        })
        .collect();
    let mut all = BTreeSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
            all.insert(id);
        }
    }
    assert_eq!(all.len(), 4000);
    let global = new_uniq_id();
    assert!(global.len() == 32 || global.len() == 56);
    assert_ne!(global, new_uniq_id());
}

// ---------------------------------------------------------------- tag hashes

#[test]
fn tags_hash_matches_java_string_hash_code() {
    assert_eq!(tags_hash("TagA"), 2_598_919);
    assert_eq!(tags_hash("TagB"), 2_598_920);
    assert_eq!(tags_hash(""), 0);
    assert_eq!(tags_hash("Hello"), 69_609_650);
    // U+6807 U+7B7E: 0x6807 * 31 + 0x7B7E.
    assert_eq!(tags_hash("标签"), 857_175);
    // U+1F600 is the surrogate pair D83D DE00: 0xD83D * 31 + 0xDE00.
    assert_eq!(tags_hash("😀"), 1_772_899);
    // Negative hashes are sign-extended.
    assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
    assert_eq!(tags_hash("polygenelubricants"), -2_147_483_648_i64);
}

#[test]
fn key_hash_is_abs_of_topic_hash_key() {
    assert_eq!(java_hash_code("TopicTest#key1"), -1_655_984_460);
    assert_eq!(key_hash("TopicTest", "key1"), 1_655_984_460);
    // "T#eqjgk\u{9F94}!" hashes to i32::MIN, whose abs overflows: Java uses 0.
    assert_eq!(java_hash_code("T#eqjgk\u{9F94}!"), i32::MIN);
    assert_eq!(key_hash("T", "eqjgk\u{9F94}!"), 0);
}

#[test]
fn subscription_all_matches_everything() {
    for expr in ["*", "", "  "] {
        let s = SubscriptionExpr::parse_tag(expr);
        assert!(s.is_all());
        assert_eq!(s.sub_string(), "*");
        assert!(s.tags_set().is_empty());
        assert!(s.matches_code(0));
        assert!(s.matches_code(12345));
        assert!(s.matches_tag(None));
        assert!(s.matches_tag(Some("x")));
    }
}

#[test]
fn subscription_tag_list_builds_tags_and_codes() {
    let s: SubscriptionExpr = " TagA ||TagB|| || TagA".parse().unwrap();
    assert!(!s.is_all());
    assert_eq!(s.tags_set(), ["TagA".to_owned(), "TagB".to_owned()]);
    assert_eq!(s.code_set(), [2_598_919, 2_598_920]);
    assert!(s.matches_code(2_598_919));
    assert!(s.matches_code(2_598_920));
    assert!(
        !s.matches_code(0),
        "untagged messages do not match a tag list"
    );
    assert!(s.matches_tag(Some("TagA")));
    assert!(!s.matches_tag(Some("TagC")));
    assert!(!s.matches_tag(None));
    let neg = SubscriptionExpr::parse_tag("polygenelubricants");
    assert!(neg.matches_code(i64::from(i32::MIN)));
}

// ---------------------------------------------------------------- property string

#[test]
fn property_decoding_drops_like_java() {
    let s = concat!(
        "A\u{1}1\u{2}",       // kept
        "\u{1}x\u{2}",        // empty name: dropped
        "B\u{1}\u{2}",        // empty value: dropped
        "noseparator\u{2}",   // no U+0001: dropped
        "\u{2}",              // empty chunk: dropped
        "C\u{1}x\u{1}y\u{2}", // value keeps the later U+0001
        "D\u{1}last"          // no trailing U+0002: still kept
    );
    let m = decode_properties(s);
    let expected: BTreeMap<String, String> = [("A", "1"), ("C", "x\u{1}y"), ("D", "last")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(m, expected);
    assert_eq!(iter_properties(s).count(), 3);
    assert_eq!(find_property(s, "B"), None);
    assert!(decode_properties("").is_empty());
}

#[test]
fn property_encoding_skips_entries_java_would_lose() {
    let mut m = BTreeMap::new();
    m.insert("KEYS".to_owned(), "a b".to_owned());
    m.insert("EMPTY".to_owned(), String::new());
    m.insert(String::new(), "v".to_owned());
    m.insert("BAD\u{2}NAME".to_owned(), "v".to_owned());
    m.insert("BADVALUE".to_owned(), "x\u{2}y".to_owned());
    assert_eq!(encode_properties(&m), "KEYS\u{1}a b\u{2}");
    assert!(!is_valid_property("", "v"));
    assert!(is_valid_property("A", "x\u{1}y"));
}

#[test]
fn property_keys_have_java_spelling() {
    assert_eq!(property_key::TRANSACTION_ID, "__transactionId__");
    assert_eq!(property_key::SHARDING_KEY, "__SHARDINGKEY");
    assert_eq!(
        property_key::CHECK_IMMUNITY_TIME_IN_SECONDS,
        "CHECK_IMMUNITY_TIME_IN_SECONDS"
    );
    assert_eq!(property_key::UNIQ_KEY, "UNIQ_KEY");
}

proptest! {
    #[test]
    fn property_round_trip(m in proptest::collection::btree_map("[^\u{1}\u{2}]{1,12}", "[^\u{2}]{1,20}", 0..8)) {
        prop_assert_eq!(decode_properties(&encode_properties(&m)), m);
    }

    #[test]
    fn property_decoding_never_panics(s in "[a\u{1}\u{2}é]{0,40}") {
        for (k, v) in iter_properties(&s) {
            prop_assert!(!k.is_empty() && !v.is_empty());
        }
    }
}

// ---------------------------------------------------------------- batch body

#[test]
fn batch_entry_has_java_layout() {
    let mut out = BytesMut::new();
    encode_batch_entry(7, b"hi", "A\u{1}1\u{2}", &mut out).unwrap();
    let expected: Vec<u8> = [
        &[0, 0, 0, 28][..], // TOTALSIZE = 20 + 2 + 2 + 4
        &[0, 0, 0, 0],      // MAGICCODE
        &[0, 0, 0, 0],      // BODYCRC
        &[0, 0, 0, 7],      // FLAG
        &[0, 0, 0, 2],      // body length
        b"hi",
        &[0, 4], // properties length
        b"A\x011\x02",
    ]
    .concat();
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn batch_round_trip_shares_body() {
    let entries = vec![
        BatchEntry {
            flag: 1,
            body: Bytes::from_static(b"first"),
            properties: "UNIQ_KEY\u{1}A\u{2}".to_owned(),
        },
        BatchEntry {
            flag: 2,
            body: Bytes::new(),
            properties: String::new(),
        },
    ];
    let body = encode_batch(&entries).unwrap();
    assert_eq!(decode_batch(&body).unwrap(), entries);
    let msgs = vec![
        Message::new("T", "x").with_tags("a"),
        Message::new("T", "yy").with_flag(3),
    ];
    let decoded = decode_batch(&encode_batch_messages(&msgs).unwrap()).unwrap();
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].properties, "TAGS\u{1}a\u{2}");
    assert_eq!(decoded[1].flag, 3);
    assert_eq!(&decoded[1].body[..], b"yy");
}

#[test]
fn batch_decode_rejects_truncated_and_negative_lengths() {
    let mut out = BytesMut::new();
    encode_batch_entry(0, b"body", "A\u{1}1\u{2}", &mut out).unwrap();
    encode_batch_entry(0, b"body2", "", &mut out).unwrap();
    let full = out.freeze();
    // Every proper prefix that cuts an entry is an error, never a panic.
    for cut in 1..full.len() {
        if cut == 30 {
            continue; // exactly one whole entry
        }
        let err = decode_batch(&full.slice(..cut)).unwrap_err();
        assert!(
            matches!(err, BatchError::Truncated { .. }),
            "cut {cut}: {err:?}"
        );
    }
    assert_eq!(decode_batch(&full.slice(..30)).unwrap().len(), 1);
    assert_eq!(
        decode_batch(&full.slice(..10)),
        Err(BatchError::Truncated {
            offset: 0,
            need: 22,
            have: 10
        })
    );
    assert_eq!(decode_batch(&Bytes::new()), Err(BatchError::Empty));
    let mut neg = full.to_vec();
    neg[16..20].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        decode_batch(&Bytes::from(neg)),
        Err(BatchError::InvalidLength { offset: 0 })
    );
    let mut bad_utf8 = full.to_vec();
    bad_utf8[26] = 0xFF;
    assert_eq!(
        decode_batch(&Bytes::from(bad_utf8)),
        Err(BatchError::InvalidUtf8 { offset: 0 })
    );
    assert_eq!(encode_batch(&[]), Err(BatchError::Empty));
}

proptest! {
    #[test]
    fn batch_decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let body = Bytes::from(bytes);
        if let Ok(entries) = decode_batch(&body) {
            let total: usize = entries.iter().map(|e| 22 + e.body.len() + e.properties.len()).sum();
            prop_assert_eq!(total, body.len());
        }
    }
}

// ---------------------------------------------------------------- topics

#[test]
fn topic_validation_follows_java_rules() {
    assert_eq!(validate_topic("TopicTest"), Ok(()));
    assert_eq!(validate_topic("a|b%c_d-e"), Ok(()));
    assert_eq!(validate_topic(""), Err(TopicError::Blank));
    assert_eq!(validate_topic("   "), Err(TopicError::Blank));
    assert_eq!(
        validate_topic("bad topic"),
        Err(TopicError::IllegalCharacter)
    );
    assert_eq!(
        validate_topic("bad.topic"),
        Err(TopicError::IllegalCharacter)
    );
    assert_eq!(validate_topic("主题"), Err(TopicError::IllegalCharacter));
    assert_eq!(validate_topic(&"t".repeat(127)), Ok(()));
    assert_eq!(
        validate_topic(&"t".repeat(128)),
        Err(TopicError::TooLong { len: 128, max: 127 })
    );
    let long_retry = retry_topic(&"g".repeat(248));
    assert_eq!(long_retry.len(), 255);
    assert_eq!(validate_topic(&long_retry), Ok(()));
    assert!(validate_topic(&dlq_topic(&"g".repeat(251))).is_err());
}

#[test]
fn system_topics_and_group_names() {
    assert_eq!(retry_topic("cg"), "%RETRY%cg");
    assert_eq!(dlq_topic("cg"), "%DLQ%cg");
    assert_eq!(group_of_retry_or_dlq_topic("%DLQ%cg"), Some("cg"));
    assert_eq!(group_of_retry_or_dlq_topic("cg"), None);
    assert!(is_system_topic("TBW102"));
    assert!(is_system_topic("rmq_sys_wheel_timer"));
    assert!(!is_system_topic("TopicTest"));
    assert!(is_send_forbidden_topic("SCHEDULE_TOPIC_XXXX"));
    assert!(is_send_forbidden_topic("RMQ_SYS_TRANS_HALF_TOPIC"));
    assert!(!is_send_forbidden_topic("TBW102"));
}
