//! Goal: typed headers read and write `extFields` under RocketMQ's Java field names, with
//! Java's lenient parsing, and report absent required fields.
//!
//! Method: decode hand-written extFields maps as real clients send them (PROTOCOL.md §2),
//! round-trip headers through a full frame, and check the error cases.

use bytes::BytesMut;
use tern_common::protocol::header::{
    CreateTopicRequestHeader, EndTransactionRequestHeader, GetRouteInfoRequestHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    RegisterBrokerRequestHeader, ResetOffsetRequestHeader, SendMessageRequestHeader,
    SendMessageResponseHeader, UnregisterClientRequestHeader,
};
use tern_common::protocol::{
    CommandHeader, ExtFields, HeaderError, RemotingCodec, RemotingCommand, RequestCode,
    SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

fn ext(pairs: &[(&str, &str)]) -> ExtFields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What the Java 5.x client sends for SEND_MESSAGE_V2 (PROTOCOL.md §2.3), plus `bname`-style
/// noise that must be ignored.
fn java_send_v2() -> ExtFields {
    ext(&[
        ("a", "pg1"),
        ("b", "TopicA"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "3"),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", "KEYS\u{1}k1\u{2}WAIT\u{1}true\u{2}"),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
        ("lo", "false"),
        ("oway", "false"),
    ])
}

#[test]
fn send_v2_single_letter_keys_decode() {
    let h = SendMessageRequestHeader::decode_v2(&java_send_v2()).expect("decode");
    assert_eq!(h.producer_group, "pg1");
    assert_eq!(h.topic, "TopicA");
    assert_eq!(h.default_topic, "TBW102");
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.queue_id, 3);
    assert_eq!(h.born_timestamp, 1_700_000_000_000);
    assert_eq!(
        h.properties.as_deref(),
        Some("KEYS\u{1}k1\u{2}WAIT\u{1}true\u{2}")
    );
    assert_eq!(h.reconsume_times, Some(0));
    assert_eq!(h.unit_mode, Some(false));
    assert_eq!(h.max_reconsume_times, None);
    assert!(!h.is_batch());
    assert_eq!(h.broker_name.as_deref(), Some("broker-a"));

    let mut v2 = ExtFields::new();
    h.encode_v2(&mut v2);
    assert_eq!(SendMessageRequestHeader::decode_v2(&v2), Ok(h.clone()));
    let mut v1 = ExtFields::new();
    h.encode_ext(&mut v1);
    assert_eq!(v1.get("producerGroup"), Some("pg1"));
    assert_eq!(v1.get("bname"), Some("broker-a"));
    assert_eq!(SendMessageRequestHeader::decode_ext(&v1), Ok(h));
}

#[test]
fn send_decode_for_code_picks_and_falls_back_between_key_styles() {
    let v2 = java_send_v2();
    let by_v2 = SendMessageRequestHeader::decode_for_code(RequestCode::SendMessageV2.into(), &v2)
        .expect("v2");
    // The Go client sends code 320 with V2 keys, and a V1 code with V2 keys still decodes.
    let by_v1_code =
        SendMessageRequestHeader::decode_for_code(RequestCode::SendMessage.into(), &v2)
            .expect("fallback");
    assert_eq!(by_v2, by_v1_code);
    assert!(SendMessageRequestHeader::code_uses_v2(320));
    assert!(!SendMessageRequestHeader::code_uses_v2(10));

    let err = SendMessageRequestHeader::decode_for_code(310, &ext(&[("a", "pg")]));
    assert_eq!(err, Err(HeaderError::Missing { field: "b" }));
}

#[test]
fn missing_required_field_is_reported_by_wire_name() {
    let err = GetRouteInfoRequestHeader::decode_ext(&ext(&[("acceptStandardJsonOnly", "true")]));
    assert_eq!(err, Err(HeaderError::Missing { field: "topic" }));
    let err = QueryConsumerOffsetRequestHeader::decode_ext(&ext(&[
        ("consumerGroup", "g"),
        ("topic", "T"),
    ]));
    assert_eq!(err, Err(HeaderError::Missing { field: "queueId" }));
    let err = RegisterBrokerRequestHeader::decode_ext(&ext(&[
        ("brokerName", "b"),
        ("brokerAddr", "a"),
        ("clusterName", "c"),
        ("haServerAddr", "h"),
        ("brokerId", "zero"),
    ]));
    assert!(matches!(
        err,
        Err(HeaderError::Invalid {
            field: "brokerId",
            ..
        })
    ));
}

#[test]
fn parsing_is_lenient_like_java() {
    let h = PullMessageRequestHeader::decode_ext(&ext(&[
        ("consumerGroup", "cg"),
        ("topic", "T"),
        ("queueId", " 1"),
        ("queueOffset", "100 "),
        ("maxMsgNums", "32"),
        ("sysFlag", "2"),
        ("commitOffset", "0"),
        ("suspendTimeoutMillis", "15000"),
        ("subVersion", "1700000000123"),
        ("expressionType", "TAG"),
        ("bname", "broker-a"),
        ("lo", "true"),
        ("ns", "x"),
        ("nsd", "false"),
    ]))
    .expect("decode");
    assert_eq!((h.queue_id, h.queue_offset, h.max_msg_nums), (1, 100, 32));
    assert_eq!(h.subscription, None);
    assert_eq!(h.expression_type.as_deref(), Some("TAG"));

    let end = EndTransactionRequestHeader::decode_ext(&ext(&[
        ("producerGroup", "pg"),
        ("tranStateTableOffset", "5"),
        ("commitLogOffset", "4096"),
        ("commitOrRollback", "8"),
        ("fromTransactionCheck", "TRUE"),
        ("msgId", "AC"),
    ]))
    .expect("decode");
    assert_eq!(end.from_transaction_check, Some(true));
    assert_eq!(end.topic, None);

    let reset = ResetOffsetRequestHeader::decode_ext(&ext(&[
        ("group", "g"),
        ("topic", "T"),
        ("timestamp", "1"),
        ("isForce", "yes"),
    ]))
    .expect("decode");
    assert!(!reset.is_force, "anything but \"true\" is false");
    assert_eq!(reset.queue_id, None);
}

#[test]
fn send_response_header_carries_region_and_trace_like_java() {
    let h = SendMessageResponseHeader::new("0A0000050000", 2, 17);
    let mut out = ExtFields::new();
    h.encode_ext(&mut out);
    assert_eq!(
        out,
        ext(&[
            ("msgId", "0A0000050000"),
            ("queueId", "2"),
            ("queueOffset", "17"),
            ("MSG_REGION", "DefaultRegion"),
            ("TRACE_ON", "true"),
        ])
    );
}

#[test]
fn stored_send_response_is_written_like_the_typed_header() {
    for transaction_id in [None, Some("7F0000010001")] {
        let mut typed = SendMessageResponseHeader::new("0A0000050000", -3, i64::MAX);
        typed.transaction_id = transaction_id.map(str::to_owned);
        let mut want = ExtFields::new();
        typed.encode_ext(&mut want);
        let mut got = ExtFields::new();
        SendMessageResponseHeader::encode_stored(
            &mut got,
            "0A0000050000",
            -3,
            i64::MAX,
            transaction_id,
        );
        assert_eq!(got, want);
        assert_eq!(SendMessageResponseHeader::decode_ext(&got).unwrap(), typed);
    }
}

#[test]
fn pull_response_requires_all_four_offsets() {
    let full = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 8,
        min_offset: 0,
        max_offset: 8,
        ..Default::default()
    };
    let mut out = ExtFields::new();
    full.encode_ext(&mut out);
    assert_eq!(out.len(), 4);
    assert_eq!(PullMessageResponseHeader::decode_ext(&out), Ok(full));
    out.remove("minOffset");
    assert_eq!(
        PullMessageResponseHeader::decode_ext(&out),
        Err(HeaderError::Missing { field: "minOffset" })
    );
}

#[test]
fn headers_survive_a_frame_in_every_encoding() {
    let header = CreateTopicRequestHeader {
        topic: "TopicA".into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 8,
        write_queue_nums: 8,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        order: false,
        attributes: Some("+message.type=NORMAL".into()),
        ..Default::default()
    };
    let unregister = UnregisterClientRequestHeader {
        client_id: "10.0.0.9@1#2".into(),
        consumer_group: Some("cg".into()),
        ..Default::default()
    };
    for ser in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        let cmd = RemotingCommand::request(RequestCode::UpdateAndCreateTopic, &header)
            .with_header(&unregister)
            .with_serialize_type(ser);
        let mut buf = BytesMut::new();
        let mut codec = RemotingCodec::default();
        codec.encode(&cmd, &mut buf).expect("encode");
        let got = codec.decode(&mut buf).expect("decode").expect("frame");
        assert_eq!(
            got.decode_header::<CreateTopicRequestHeader>(),
            Ok(header.clone())
        );
        assert_eq!(
            got.decode_header::<UnregisterClientRequestHeader>(),
            Ok(unregister.clone())
        );
        assert_eq!(got.code, RequestCode::UpdateAndCreateTopic);
    }
}
