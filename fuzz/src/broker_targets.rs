//! The body of the `commit_log_recover` fuzz target, shared by the cargo-fuzz binary and the
//! corpus replay test (`broker/tests/fuzz_corpus.rs`, which includes this file with `#[path]`).
//!
//! Input layout: byte 0 is a mode, the rest is the content of the last (here: only) CommitLog
//! file of a store with 64 KiB files (`StoreConfig::with_small_files`).
//! - mode bit 0 set: the file is written exactly as given (any length, also the wrong one);
//!   clear: cut or zero-padded to the configured file size, as a preallocated file would be.
//! - mode bit 1 set: an abort file is present, so recovery is the abnormal (crash) path with
//!   CRC checks; clear: a clean-stop recovery.
//!
//! `MessageStore::open` must return `Ok` or `Err`, never panic; when it opens, every
//! ConsumeQueue built from the file must be readable and point at records that decode.

use std::path::Path;
use std::time::Duration;

use tern_broker::store::{GetMessageStatus, MessageStore, StoreConfig, ABORT_FILE_NAME};
use tern_common::message::record::decode_record;

/// Name of the first CommitLog file (its first physical offset, 20 digits).
pub const FIRST_COMMIT_LOG_FILE: &str = "00000000000000000000";

/// `commit_log_recover` on a fresh directory under `scratch`.
pub fn commit_log_recover(data: &[u8], scratch: &Path) {
    let Some((&mode, content)) = data.split_first() else {
        return;
    };
    let config = StoreConfig::new(scratch).with_small_files();
    let file_bytes = config.mapped_file_size_commit_log;
    let commit_log_dir = scratch.join("commitlog");
    std::fs::create_dir_all(&commit_log_dir).expect("creating the scratch commitlog dir");
    let mut file = content.to_vec();
    if mode & 1 == 0 {
        file.resize(file_bytes, 0);
    }
    std::fs::write(commit_log_dir.join(FIRST_COMMIT_LOG_FILE), &file)
        .expect("writing the fuzzed commitlog file");
    if mode & 2 != 0 {
        std::fs::write(scratch.join(ABORT_FILE_NAME), b"").expect("writing the abort file");
    }
    let Ok(store) = MessageStore::open(config) else {
        return;
    };
    let max = store.max_phy_offset();
    assert!(max >= 0 && max <= i64::try_from(file.len()).unwrap_or(i64::MAX));
    assert!(
        store.read_record(max).is_none(),
        "a record past the recovered end"
    );
    // The reput thread dispatches what recovery kept; give it a bounded moment.
    let _ = store.wait_dispatched(max, Duration::from_secs(5));
    for (topic, queue_id) in store.topics_and_queues() {
        let min_offset = store.min_offset_in_queue(&topic, queue_id);
        let max_offset = store.max_offset_in_queue(&topic, queue_id);
        assert!(min_offset <= max_offset);
        let r = store.get_message(&topic, queue_id, min_offset, 32, 1 << 20, &|_| true);
        if r.status == GetMessageStatus::Found {
            for record in &r.messages {
                let rec = decode_record(record, false).expect("a dispatched record decodes");
                assert_eq!(rec.topic, topic, "a unit points at another topic's record");
                assert_eq!(
                    rec.queue_id, queue_id,
                    "a unit points at another queue's record"
                );
            }
        }
    }
    store.shutdown();
}
