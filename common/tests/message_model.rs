//! `Message` / `MessageExt` tests.
//!
//! Goal: the producer-side builder sets the properties Java clients and brokers expect, and
//! stored records decode into `MessageExt` (ids, properties, compressed bodies) and back.
//! Method: build records with the record codec, decode them singly and back to back, and check
//! the decompression limits with small caps.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tern_common::message::model::{zlib_compress, zlib_decompress, BodyError};
use tern_common::message::record::{encode_record, sys_flag, RecordError, RecordInput};
use tern_common::message::{decode_messages, property_key, Message, MessageExt};

fn input(topic: &str, body: Bytes, properties: String, flag: i32) -> RecordInput {
    RecordInput {
        topic: topic.to_owned(),
        queue_id: 1,
        flag: 9,
        body,
        properties,
        sys_flag: flag,
        born_timestamp: 1_000,
        born_host: "10.0.0.9:50000".parse().unwrap(),
        store_host: "10.0.0.5:10911".parse().unwrap(),
        reconsume_times: 2,
        prepared_transaction_offset: 0,
    }
}

#[test]
fn builder_sets_standard_properties() {
    let m = Message::new("TopicTest", "hello")
        .with_tags("TagA")
        .with_keys(["k1", "", "k2"])
        .with_delay_level(3)
        .with_wait_store_msg_ok(false)
        .with_property("user", "v");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(m.property(property_key::KEYS), Some("k1 k2"));
    assert_eq!(m.delay_level(), Some(3));
    assert!(!m.wait_store_msg_ok());
    assert_eq!(
        m.encode_properties(),
        "DELAY\u{1}3\u{2}KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}false\u{2}user\u{1}v\u{2}"
    );
    let m = m.with_delay_level(0).with_property("user", "");
    assert_eq!(m.delay_level(), None);
    assert_eq!(m.property("user"), None);
    assert!(
        Message::new("T", "").wait_store_msg_ok(),
        "absent WAIT means true"
    );
}

#[test]
fn builder_sets_timer_properties() {
    let m = Message::new("T", "b")
        .with_deliver_time_ms(1_700_000_000_000)
        .with_delay_ms(1500)
        .with_delay_secs(7);
    assert_eq!(m.deliver_time_ms(), Some(1_700_000_000_000));
    assert_eq!(
        m.property(property_key::TIMER_DELIVER_MS),
        Some("1700000000000")
    );
    assert_eq!(m.delay_ms(), Some(1500));
    assert_eq!(m.delay_secs(), Some(7));
    let neg = Message::new("T", "b").with_property(property_key::DELAY, "-1");
    assert_eq!(neg.delay_level(), None);
}

#[test]
fn ensure_uniq_key_keeps_an_existing_key() {
    let mut m = Message::new("T", "b").with_uniq_key("ABC");
    assert_eq!(m.ensure_uniq_key(), "ABC");
    let mut fresh = Message::new("T", "b");
    let id = fresh.ensure_uniq_key().to_owned();
    assert!(id.len() == 32 || id.len() == 56);
    assert_eq!(fresh.uniq_key(), Some(id.as_str()));
}

#[test]
fn message_ext_decodes_every_field() {
    let props = Message::new("T", "")
        .with_tags("TagA")
        .with_keys(["k1"])
        .with_uniq_key("U1")
        .encode_properties();
    let mut buf = BytesMut::new();
    encode_record(
        &input("TopicTest", Bytes::from_static(b"body"), props, 0),
        5,
        100,
        2_000,
        &mut buf,
    )
    .unwrap();
    let buf = buf.freeze();
    let (m, used) = MessageExt::decode(&buf).unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(m.topic(), "TopicTest");
    assert_eq!(m.message.flag, 9);
    assert_eq!(&m.message.body[..], b"body");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k1"]);
    assert_eq!(m.queue_id, 1);
    assert_eq!(m.queue_offset, 5);
    assert_eq!(m.phy_offset, 100);
    assert_eq!(m.store_timestamp, 2_000);
    assert_eq!(m.born_timestamp, 1_000);
    assert_eq!(m.reconsume_times, 2);
    assert_eq!(m.store_size as usize, buf.len());
    assert_eq!(m.born_host, "10.0.0.9:50000".parse::<SocketAddr>().unwrap());
    assert_eq!(m.msg_id, "0A00000500002A9F0000000000000064");
    assert_eq!(m.unique_id(), "U1");
    assert_eq!(m.transaction_type(), sys_flag::TRANSACTION_NOT_TYPE);
    // Re-encoding gives the same bytes (properties were already in key order).
    let mut again = BytesMut::new();
    m.encode(&mut again).unwrap();
    assert_eq!(&again[..], &buf[..]);
}

#[test]
fn unique_id_falls_back_to_offset_id() {
    let mut buf = BytesMut::new();
    encode_record(
        &input("T", Bytes::new(), String::new(), 0),
        0,
        7,
        0,
        &mut buf,
    )
    .unwrap();
    let (m, _) = MessageExt::decode(&buf.freeze()).unwrap();
    assert_eq!(m.unique_id(), "0A00000500002A9F0000000000000007");
}

#[test]
fn decode_messages_reads_back_to_back_records() {
    let mut buf = BytesMut::new();
    for i in 0..3 {
        let body = Bytes::from(vec![b'x'; i * 10]);
        let offset = buf.len() as i64;
        encode_record(
            &input("T", body, String::new(), 0),
            i as i64,
            offset,
            0,
            &mut buf,
        )
        .unwrap();
    }
    let body = buf.freeze();
    let msgs = decode_messages(&body).unwrap();
    assert_eq!(msgs.len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(m.message.body.len(), i * 10);
    }
    assert_eq!(msgs[1].phy_offset, i64::from(msgs[0].store_size));
    assert!(decode_messages(&Bytes::new()).unwrap().is_empty());
    let cut = body.slice(..body.len() - 1);
    assert!(matches!(
        decode_messages(&cut),
        Err(RecordError::Truncated { .. })
    ));
}

#[test]
fn compressed_body_is_inflated() {
    let plain = Bytes::from(b"abc".repeat(2000));
    let compressed = zlib_compress(&plain, 5);
    assert!(compressed.len() < plain.len());
    for flag in [
        sys_flag::COMPRESSED_FLAG,
        sys_flag::COMPRESSED_FLAG | sys_flag::COMPRESSION_ZLIB_TYPE,
    ] {
        let mut buf = BytesMut::new();
        encode_record(
            &input("T", compressed.clone(), String::new(), flag),
            0,
            0,
            0,
            &mut buf,
        )
        .unwrap();
        let (m, _) = MessageExt::decode_with(&buf.freeze(), true).unwrap();
        assert_eq!(m.message.body, compressed, "stored body stays compressed");
        assert_eq!(m.uncompressed_body().unwrap(), plain);
    }
    let mut buf = BytesMut::new();
    encode_record(
        &input(
            "T",
            compressed.clone(),
            String::new(),
            sys_flag::COMPRESSED_FLAG | sys_flag::COMPRESSION_LZ4_TYPE,
        ),
        0,
        0,
        0,
        &mut buf,
    )
    .unwrap();
    let (m, _) = MessageExt::decode(&buf.freeze()).unwrap();
    assert!(matches!(
        m.uncompressed_body(),
        Err(BodyError::UnsupportedCompression(0x100))
    ));
}

#[test]
fn decompression_is_bounded_and_rejects_garbage() {
    let plain = vec![0u8; 100_000];
    let compressed = zlib_compress(&plain, 9);
    assert_eq!(
        zlib_decompress(&compressed, 100_000).unwrap().len(),
        100_000
    );
    assert!(matches!(
        zlib_decompress(&compressed, 99_999),
        Err(BodyError::TooLarge {
            limit_bytes: 99_999
        })
    ));
    assert!(matches!(
        zlib_decompress(b"not zlib at all", 1000),
        Err(BodyError::Corrupt(_))
    ));
}
