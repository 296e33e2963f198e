//! The bodies of the `tern-common` fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/`) and the corpus replay test (`common/tests/fuzz_corpus.rs`, which
//! includes this file with `#[path]`), so a checked-in input runs through exactly the code the
//! fuzzer ran. Each function must return normally for every input: decoders answer malformed
//! bytes with an error value, never a panic, and never allocate more than the input justifies.

use bytes::{Bytes, BytesMut};
use tern_common::message::batch::decode_batch;
use tern_common::message::record::{decode_record, MIN_RECORD_SIZE};
use tern_common::message::{decode_messages, MessageExt};
use tern_common::protocol::codec::decode_header;
use tern_common::protocol::{RemotingCodec, SerializeType};
use tokio_util::codec::Decoder;

/// Frame limit of the `frame_decode` target: small, so the length check is exercised.
pub const FUZZ_MAX_FRAME_BYTES: usize = 64 * 1024;

/// `frame_decode`: feeds `data` to a [`RemotingCodec`] in one piece and then byte by byte,
/// decoding frames until it needs more bytes or fails; both feeds must agree.
pub fn frame_decode(data: &[u8]) {
    let whole = decode_frames(&[data]);
    let pieces: Vec<&[u8]> = data.chunks(1).collect();
    let split = decode_frames(&pieces);
    assert_eq!(
        whole, split,
        "frame decoding depends on how the bytes arrive"
    );
}

/// Decodes frames from `pieces` fed one after another; returns the (code, opaque, body
/// length) of each frame and whether decoding stopped on an error.
fn decode_frames(pieces: &[&[u8]]) -> (Vec<(i32, i32, usize)>, bool) {
    let mut codec = RemotingCodec::new(FUZZ_MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        // Each successful decode consumes at least the 8-byte frame prefix.
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    assert!(cmd.body.len() < FUZZ_MAX_FRAME_BYTES);
                    frames.push((cmd.code, cmd.opaque, cmd.body.len()));
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// `record_decode`: a CommitLog record (with and without CRC check), a `MessageExt` and a
/// PULL body of back-to-back records.
pub fn record_decode(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(r) = decode_record(data, true) {
        assert!(r.len() <= data.len(), "record longer than its input");
        assert!(
            decode_record(data, false).is_ok(),
            "CRC-checked record fails unchecked"
        );
    }
    if let Ok(r) = decode_record(data, false) {
        assert!(r.len() <= data.len(), "record longer than its input");
        assert!(r.body.len() <= data.len());
    }
    if let Ok((m, used)) = MessageExt::decode(&bytes) {
        assert!(used <= data.len());
        assert!(m.message.body.len() <= data.len());
        let _ = m.uncompressed_body();
    }
    if let Ok(messages) = decode_messages(&bytes) {
        assert!(messages.len() <= data.len() / MIN_RECORD_SIZE);
    }
}

/// `batch_decode`: a SEND_BATCH_MESSAGE body.
pub fn batch_decode(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(entries) = decode_batch(&bytes) {
        let body_bytes: usize = entries.iter().map(|e| e.body.len()).sum();
        assert!(
            body_bytes <= data.len(),
            "batch bodies longer than the input"
        );
    }
}

/// `header_json`: a remoting header in every serialize type (JSON first: it is what Apache
/// RocketMQ clients send).
pub fn header_json(data: &[u8]) {
    for serialize_type in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        if let Ok(cmd) = decode_header(serialize_type, data) {
            assert!(cmd.body.is_empty(), "a header decode produced a body");
        }
    }
}
