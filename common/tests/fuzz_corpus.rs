//! Replays the checked-in fuzz corpus of the `tern-common` targets as ordinary tests.
//!
//! Method: every file under `fuzz/corpus/<target>/` (the curated seeds plus any input a fuzz
//! run found and someone checked in) goes through the very function the cargo-fuzz binary
//! calls: `fuzz/src/common_targets.rs` is included here with `#[path]`. A decoder that panics
//! or breaks a target's assertion on any of them fails the test with the file's name, so a
//! crash found once stays fixed without nightly or cargo-fuzz.
//!
//! `write_seed_corpus` (ignored) regenerates the seeds from the real encoders:
//! `cargo test -p tern-common --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use tern_common::message::record::{blank_marker, encode_record, RecordInput};
use tern_common::message::{encode_batch_messages, Message};
use tern_common::protocol::codec::encode_header;
use tern_common::protocol::{RemotingCodec, RemotingCommand, SerializeType};
use tokio_util::codec::Encoder;

// The shared file's functions are `pub` for the fuzz crate; here they live in a private
// module, which `unreachable_pub` would flag.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/common_targets.rs"]
mod targets;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Whether `path` is a checked-in seed (`seed-*`); a local fuzz run adds thousands of other
/// files to the same directory, which `fuzz/.gitignore` keeps out of git and this test skips.
fn is_seed(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seed-"))
}

/// Runs `run` on every seed file of the target's corpus; returns how many files ran.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a corpus entry").path())
        .filter(|p| p.is_file() && is_seed(p))
        .collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).expect("reading a corpus file");
        // A stack overflow aborts the process without a panic message; this names the input.
        eprintln!("{target}: {}", path.display());
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "{target}: corpus file {} panicked",
            path.display()
        );
    }
    paths.len()
}

/// Regression, found by `header_json` (input kept in
/// `fuzz/regressions/header_json-msgpack-nested-maps`): a MessagePack header whose unknown
/// field nests maps about a thousand deep. rmp-serde's default limit is 1024 levels, and
/// skipping the ignored value recursed once per level, which overflowed a 2 MiB thread stack
/// (a tokio worker's default) in debug builds and aborted the process. The decoder now stops
/// at `MSGPACK_MAX_DEPTH` (32) levels with an error.
#[test]
fn header_json_survives_deeply_nested_msgpack_on_a_2_mib_stack() {
    let data = include_bytes!("../../fuzz/regressions/header_json-msgpack-nested-maps");
    let run = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || targets::header_json(data))
        .expect("spawning the decoder thread");
    assert!(run.join().is_ok());
}

#[test]
fn frame_decode_corpus_replays_without_panics() {
    assert!(replay("frame_decode", targets::frame_decode) >= 5);
}

#[test]
fn record_decode_corpus_replays_without_panics() {
    assert!(replay("record_decode", targets::record_decode) >= 5);
}

#[test]
fn batch_decode_corpus_replays_without_panics() {
    assert!(replay("batch_decode", targets::batch_decode) >= 3);
}

#[test]
fn header_json_corpus_replays_without_panics() {
    assert!(replay("header_json", targets::header_json) >= 4);
}

fn sample_record_input(topic: &str, body: &'static [u8], v6: bool) -> RecordInput {
    let (born, store) = if v6 {
        ("[::1]:54321", "[fe80::1]:10911")
    } else {
        ("10.0.0.9:54321", "10.0.0.5:10911")
    };
    RecordInput {
        topic: topic.to_owned(),
        queue_id: 3,
        flag: 0,
        body: Bytes::from_static(body),
        properties: "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}".to_owned(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: born.parse().expect("a literal address"),
        store_host: store.parse().expect("a literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

fn record(input: &RecordInput, queue_offset: i64, phy_offset: i64) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_record(input, queue_offset, phy_offset, 1_700_000_000_123, &mut out)
        .expect("encoding a sample record");
    out.to_vec()
}

fn frame(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = BytesMut::new();
    RemotingCodec::default()
        .encode(cmd, &mut out)
        .expect("encoding a sample frame");
    out.to_vec()
}

fn sample_command(serialize_type: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request_empty(10)
        .with_serialize_type(serialize_type)
        .with_remark("seed")
        .with_body(Bytes::from_static(b"body"));
    cmd.opaque = 7;
    cmd.ext_fields.insert("topic".into(), "TopicTest".into());
    cmd.ext_fields.insert("queueId".into(), "1".into());
    cmd
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("writing a seed");
}

#[test]
#[ignore = "regenerates fuzz/corpus seeds; run by hand after a format change"]
fn write_seed_corpus() {
    // frame_decode: one frame per serialize type, two frames back to back, and broken prefixes.
    let json = frame(&sample_command(SerializeType::Json));
    write("frame_decode", "json", &json);
    write(
        "frame_decode",
        "rocketmq-binary",
        &frame(&sample_command(SerializeType::RocketMq)),
    );
    write(
        "frame_decode",
        "msgpack",
        &frame(&sample_command(SerializeType::MsgPack)),
    );
    write(
        "frame_decode",
        "two-frames",
        &[json.clone(), json.clone()].concat(),
    );
    write("frame_decode", "truncated", &json[..json.len() / 2]);
    write("frame_decode", "length-below-4", &[0, 0, 0, 2, 0, 0]);
    write(
        "frame_decode",
        "length-huge",
        &[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0],
    );
    write(
        "frame_decode",
        "length-negative",
        &[0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0],
    );
    write(
        "frame_decode",
        "header-past-frame",
        &[0, 0, 0, 8, 0, 0, 0x10, 0, b'{', b'}', 0, 0],
    );
    write(
        "frame_decode",
        "unknown-serialize-type",
        &[0, 0, 0, 6, 9, 0, 0, 2, b'{', b'}'],
    );

    // record_decode: valid records (IPv4 and IPv6 hosts), back to back, torn, bad CRC, blank.
    let v4 = record(&sample_record_input("TopicTest", b"Hello", false), 0, 0);
    let v6 = record(
        &sample_record_input("TopicTest", b"Hello v6", true),
        1,
        v4.len() as i64,
    );
    write("record_decode", "ipv4", &v4);
    write("record_decode", "ipv6", &v6);
    write("record_decode", "two-records", &[v4.clone(), v6].concat());
    write("record_decode", "torn", &v4[..v4.len() - 7]);
    let mut bad_crc = v4.clone();
    bad_crc[8] ^= 0x55;
    write("record_decode", "bad-crc", &bad_crc);
    let mut huge_size = v4.clone();
    huge_size[..4].copy_from_slice(&i32::MAX.to_be_bytes());
    write("record_decode", "total-size-huge", &huge_size);
    write("record_decode", "blank-marker", &blank_marker(4096));

    // batch_decode: a valid batch, an empty body, a truncated one.
    let batch = encode_batch_messages(&[
        Message::new("TopicTest", "one").with_tags("TagA"),
        Message::new("TopicTest", "two").with_keys(["k1", "k2"]),
    ])
    .expect("encoding a sample batch");
    write("batch_decode", "two-messages", &batch);
    write("batch_decode", "empty", b"");
    write("batch_decode", "truncated", &batch[..batch.len() - 3]);
    let mut body_len_huge = BytesMut::new();
    body_len_huge.put_i32(100);
    body_len_huge.put_i32(0);
    body_len_huge.put_i32(0);
    body_len_huge.put_i32(0);
    body_len_huge.put_i32(0x7FFF_FFF0);
    write("batch_decode", "body-len-huge", &body_len_huge);

    // header_json: real headers of each type, and malformed JSON.
    for (name, serialize_type) in [
        ("json", SerializeType::Json),
        ("rocketmq-binary", SerializeType::RocketMq),
        ("msgpack", SerializeType::MsgPack),
    ] {
        let header = encode_header(&sample_command(serialize_type)).expect("encoding a header");
        write("header_json", name, &header);
    }
    write("header_json", "empty-object", b"{}");
    write(
        "header_json",
        "unterminated",
        b"{\"code\":10,\"extFields\":{\"a\":",
    );
    write(
        "header_json",
        "wrong-types",
        b"{\"code\":\"x\",\"opaque\":[],\"extFields\":1}",
    );
    write("header_json", "deep-nesting", &[b'['; 4096]);
}
