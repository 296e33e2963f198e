//! Replays the checked-in corpus of the `commit_log_recover` fuzz target as an ordinary test.
//!
//! Method: every file under `fuzz/corpus/commit_log_recover/` goes through the very function
//! the cargo-fuzz binary calls (`fuzz/src/broker_targets.rs`, included with `#[path]`), each in
//! a fresh temporary store: the bytes become the last CommitLog file and `MessageStore::open`
//! must recover or refuse without panicking. The seeds are valid logs with a clean or a crash
//! stop, a torn tail, a bad CRC, a blank marker and files of the wrong size.
//!
//! `write_seed_corpus` (ignored) regenerates the seeds from the real record encoder:
//! `cargo test -p tern-broker --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tern_common::message::record::{blank_marker, encode_record, RecordInput};

// The shared file's functions are `pub` for the fuzz crate; here they live in a private
// module, which `unreachable_pub` would flag.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/broker_targets.rs"]
mod targets;

const TARGET: &str = "commit_log_recover";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(TARGET)
}

#[test]
fn commit_log_recover_corpus_replays_without_panics() {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a corpus entry").path())
        // Only the checked-in `seed-*` files: a local fuzz run adds many more, each of which
        // opens a whole store (about half a second in a debug build).
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "too few seeds in {}", dir.display());
    for path in &paths {
        let data = std::fs::read(path).expect("reading a corpus file");
        let scratch = tempfile::tempdir().expect("creating a scratch store");
        let outcome =
            std::panic::catch_unwind(|| targets::commit_log_recover(&data, scratch.path()));
        assert!(outcome.is_ok(), "corpus file {} panicked", path.display());
    }
}

/// Three records of two topics at physical offsets 0.., as the broker would have appended.
fn valid_log() -> (Vec<u8>, Vec<usize>) {
    let mut out = BytesMut::new();
    let mut starts = Vec::new();
    for (i, (topic, queue_id)) in [("TopicA", 0), ("TopicA", 1), ("TopicB", 0)]
        .into_iter()
        .enumerate()
    {
        starts.push(out.len());
        let input = RecordInput {
            topic: topic.to_owned(),
            queue_id,
            flag: 0,
            body: Bytes::from(format!("body-{i}")),
            properties: "TAGS\u{1}TagA\u{2}".to_owned(),
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "10.0.0.9:54321".parse().expect("a literal address"),
            store_host: "10.0.0.5:10911".parse().expect("a literal address"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let phy_offset = out.len() as i64;
        let queue_offset = i64::from(i == 1);
        encode_record(
            &input,
            queue_offset,
            phy_offset,
            1_700_000_000_123,
            &mut out,
        )
        .expect("encoding a seed record");
    }
    (out.to_vec(), starts)
}

fn write(name: &str, mode: u8, content: &[u8]) {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("creating the corpus dir");
    let data = [&[mode][..], content].concat();
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("writing a seed");
}

#[test]
#[ignore = "regenerates fuzz/corpus seeds; run by hand after a format change"]
fn write_seed_corpus() {
    let (log, starts) = valid_log();
    write("clean-stop", 0, &log);
    write("crash-stop", 2, &log);
    write("torn-tail", 2, &log[..log.len() - 9]);
    let mut bad_crc = log.clone();
    bad_crc[starts[1] + 8] ^= 0x5A;
    write("bad-crc-middle", 2, &bad_crc);
    write(
        "blank-marker",
        2,
        &[log.clone(), blank_marker(1000).to_vec()].concat(),
    );
    write("short-file", 1, &log);
    write("short-file-crash", 3, &log[..40]);
    write("empty", 0, b"");
}
