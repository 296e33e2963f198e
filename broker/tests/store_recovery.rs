//! Recovery tests on post-crash images built by hand (torn last record, bad CRC, zeroed tail,
//! stale checkpoint, ConsumeQueue ahead of and behind the CommitLog, abort file present), plus
//! a model-based property test: random appends (some forcing rolls), clean reopens and crash
//! truncations of the newest records, checked against an in-memory `Vec` of what should
//! survive. Method: write through the real store, drop it (a clean stop), edit the files the way
//! a crash would leave them, recreate the `abort` file where a crash is modelled, and reopen.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tern_broker::store::mapped_file::offset_to_file_name;
use tern_broker::store::{
    GetMessageStatus, MessageStore, PutMessageStatus, StoreConfig, ABORT_FILE_NAME,
};
use tern_common::message::record::{decode_record, RecordInput};

const WAIT: Duration = Duration::from_secs(5);

fn config(root: &Path, commit_log_file_size: usize) -> StoreConfig {
    let mut c = StoreConfig::new(root).with_small_files();
    c.mapped_file_size_commit_log = commit_log_file_size;
    c
}

fn input(queue_id: i32, body: &[u8]) -> RecordInput {
    RecordInput {
        topic: "T".to_string(),
        queue_id,
        flag: 0,
        body: Bytes::copy_from_slice(body),
        properties: "KEYS\u{1}k\u{2}".to_string(),
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:4000".parse().unwrap(),
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// (phy_offset, size) of each appended record.
fn append(store: &MessageStore, queue_id: i32, body: &[u8]) -> (i64, usize) {
    let (r, _) = store.append(std::slice::from_ref(&input(queue_id, body)));
    assert_eq!(r.status, PutMessageStatus::PutOk);
    let a = r.append.unwrap();
    (a.phy_offset, a.wrote_bytes)
}

fn write_at(root: &Path, file_size: usize, phy: i64, bytes: &[u8]) {
    let start = phy - phy % file_size as i64;
    let path = root.join("commitlog").join(offset_to_file_name(start));
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, (phy - start) as u64).unwrap();
    f.sync_all().unwrap();
}

fn zero(root: &Path, file_size: usize, phy: i64, len: usize) {
    write_at(root, file_size, phy, &vec![0u8; len]);
}

fn crash_marker(root: &Path) {
    std::fs::write(root.join(ABORT_FILE_NAME), b"").unwrap();
}

fn bodies(store: &MessageStore, queue_id: i32) -> Vec<Vec<u8>> {
    assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue("T", queue_id);
    // Bounded: each round reads at least one unit or stops.
    for _ in 0..10_000 {
        let r = store.get_message("T", queue_id, offset, 1000, usize::MAX, &|_| true);
        if r.status != GetMessageStatus::Found {
            break;
        }
        for (m, q) in r.messages.iter().zip(&r.message_queue_offsets) {
            let rec = decode_record(m, true).unwrap();
            assert_eq!(rec.queue_offset, *q);
            out.push(rec.body.to_vec());
        }
        offset = r.next_begin_offset;
    }
    out
}

/// Ten 300-byte messages into queue 0 of a store with 4 KiB CommitLog files; returns records.
fn ten_messages(root: &Path) -> Vec<(i64, usize)> {
    let store = MessageStore::open(config(root, 4096)).unwrap();
    let recs = (0..10u8).map(|i| append(&store, 0, &[i; 300])).collect();
    assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    recs
}

#[test]
fn recovery_truncates_torn_tail_record() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ten_messages(dir.path());
    let (phy, size) = recs[9];
    zero(dir.path(), 4096, phy + size as i64 / 2, size - size / 2);
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    let report = store.recovery_report().clone();
    assert!(report.abnormal);
    assert_eq!(report.commit_log_end, phy);
    assert_eq!(report.cq_units_dropped, 1);
    assert_eq!(store.max_phy_offset(), phy);
    assert_eq!(store.max_offset_in_queue("T", 0), 9);
    assert_eq!(bodies(&store, 0).len(), 9);
    let (new_phy, _) = append(&store, 0, b"again");
    assert_eq!(new_phy, phy);
    assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    assert_eq!(store.max_offset_in_queue("T", 0), 10);
}

#[test]
fn recovery_drops_records_from_a_bad_crc() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ten_messages(dir.path());
    let (phy, size) = recs[6];
    // Flip a byte inside the body (the last bytes are topic and properties; the body precedes).
    write_at(dir.path(), 4096, phy + size as i64 - 40, &[0xFF]);
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    assert_eq!(store.max_phy_offset(), phy);
    assert_eq!(store.max_offset_in_queue("T", 0), 6);
    assert_eq!(
        bodies(&store, 0),
        (0..6u8).map(|i| vec![i; 300]).collect::<Vec<_>>()
    );
    // The dropped records' bytes are gone, so a later crash cannot resurrect them.
    assert!(store.read_record(recs[7].0).is_none());
    // Index entries past the end are dropped too.
    for m in store.query_message("T", "k", 64, 0, i64::MAX).messages {
        assert!(decode_record(&m, false).unwrap().phy_offset < phy);
    }
}

#[test]
fn clean_stop_recovery_still_cuts_a_zeroed_tail_and_the_consume_queue_ahead_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ten_messages(dir.path());
    let (phy, _) = recs[7];
    let end = recs[9].0 + recs[9].1 as i64;
    zero(dir.path(), 4096, phy, (end - phy) as usize);
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    assert!(!store.recovery_report().abnormal);
    assert_eq!(store.max_phy_offset(), phy);
    assert_eq!(store.recovery_report().cq_units_dropped, 3);
    assert_eq!(store.max_offset_in_queue("T", 0), 7);
}

#[test]
fn stale_checkpoint_with_abort_file_rescans_from_the_first_file_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ten_messages(dir.path());
    std::fs::write(dir.path().join("checkpoint"), vec![0u8; 4096]).unwrap();
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    let report = store.recovery_report();
    assert!(report.abnormal);
    assert_eq!(report.validated_from, 0);
    assert_eq!(report.records_validated, 10);
    assert_eq!(report.cq_units_dropped, 0);
    assert_eq!(store.max_phy_offset(), recs[9].0 + recs[9].1 as i64);
    assert_eq!(bodies(&store, 0).len(), 10);
}

#[test]
fn consume_queue_behind_the_commit_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    ten_messages(dir.path());
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    assert_eq!(store.recovery_report().records_redispatched, 10);
    assert_eq!(store.max_offset_in_queue("T", 0), 10);
    assert_eq!(bodies(&store, 0).len(), 10);
    let (r, _) = store.append(&[input(0, b"next")]);
    assert_eq!(r.append.unwrap().queue_offset, 10);
    drop(store);

    // A ConsumeQueue whose last units were lost (zeroed) is completed from the CommitLog.
    let cq_file = dir
        .path()
        .join("consumequeue/T/0")
        .join(offset_to_file_name(0));
    let f = OpenOptions::new().write(true).open(&cq_file).unwrap();
    f.write_all_at(&[0u8; 60], 8 * 20).unwrap();
    drop(f);
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    assert_eq!(store.max_offset_in_queue("T", 0), 11);
    assert_eq!(bodies(&store, 0).len(), 11);
}

#[test]
fn abort_file_with_intact_data_keeps_everything_and_empty_last_file_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let recs = ten_messages(dir.path());
    let end = recs[9].0 + recs[9].1 as i64;
    let next_start = end - end % 4096 + 4096;
    // A preallocated (all-zero) next file, as a crash right after a roll would leave.
    std::fs::write(
        dir.path()
            .join("commitlog")
            .join(offset_to_file_name(next_start)),
        vec![0u8; 4096],
    )
    .unwrap();
    crash_marker(dir.path());
    let store = MessageStore::open(config(dir.path(), 4096)).unwrap();
    assert_eq!(store.max_phy_offset(), end);
    assert_eq!(store.recovery_report().commit_log_files_deleted, 1);
    assert_eq!(bodies(&store, 0).len(), 10);
    drop(store);
    assert!(
        !dir.path().join(ABORT_FILE_NAME).exists(),
        "a clean stop removes the abort file"
    );
}

/// A 256 MiB CommitLog file holding four records, the last one torn, plus garbage far past
/// the end (a page of a previous write that reached the disk out of order, and the file's last
/// page): recovery keeps the three whole records, zeroes the torn record and both garbage
/// ranges, rewrites only the chunks that held non-zero bytes, and the next append lands where
/// the torn record started. Method: the file is edited with `pwrite` after a clean stop, as in
/// the other crash images; the zeroing is checked by reading the file after the store closes.
#[test]
fn large_file_with_a_torn_tail_and_far_garbage_recovers_and_zeroes_only_dirty_chunks() {
    const FILE: usize = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<(i64, usize)> = {
        let store = MessageStore::open(config(dir.path(), FILE)).unwrap();
        let recs = (0..4u8).map(|i| append(&store, 0, &[i; 500])).collect();
        assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
        recs
    };
    let (torn_phy, torn_size) = recs[3];
    // Torn in the middle: its last bytes survive, as when pages reach the disk out of order.
    zero(dir.path(), FILE, torn_phy + 200, 100);
    let far = [
        (100 * 1024 * 1024 + 123, 3000usize),
        (FILE as i64 - 4096, 4096),
    ];
    for (phy, len) in far {
        write_at(dir.path(), FILE, phy, &vec![0xAB; len]);
    }
    crash_marker(dir.path());
    {
        let store = MessageStore::open(config(dir.path(), FILE)).unwrap();
        let report = store.recovery_report().clone();
        assert!(report.abnormal);
        assert_eq!(report.records_validated, 3);
        assert_eq!(report.commit_log_end, torn_phy);
        assert_eq!(report.cq_units_dropped, 1);
        // Three dirty ranges, each inside at most two 64 KiB chunks.
        assert!(report.tail_bytes_zeroed > 0);
        assert!(report.tail_bytes_zeroed <= 6 * 64 * 1024, "{report:?}");
        assert_eq!(store.max_offset_in_queue("T", 0), 3);
        assert_eq!(
            bodies(&store, 0),
            vec![vec![0u8; 500], vec![1; 500], vec![2; 500]]
        );
        let (phy, _) = append(&store, 0, b"again");
        assert_eq!(phy, torn_phy);
        assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    }
    let file =
        std::fs::File::open(dir.path().join("commitlog").join(offset_to_file_name(0))).unwrap();
    let mut rest = vec![0xFFu8; torn_size - 300];
    file.read_exact_at(&mut rest, torn_phy as u64 + 300)
        .unwrap();
    assert!(
        rest.iter().all(|b| *b == 0),
        "the torn record's surviving tail is zeroed"
    );
    for (phy, len) in far {
        let mut buf = vec![0xFFu8; len];
        file.read_exact_at(&mut buf, phy as u64).unwrap();
        assert!(buf.iter().all(|b| *b == 0), "garbage at {phy} is zeroed");
    }
    drop(file);
    let store = MessageStore::open(config(dir.path(), FILE)).unwrap();
    assert_eq!(store.recovery_report().tail_bytes_zeroed, 0);
    assert_eq!(bodies(&store, 0).len(), 4);
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        queue_id: i32,
        len: usize,
    },
    Batch {
        queue_id: i32,
        count: usize,
        len: usize,
    },
    Reopen,
    CrashTruncate {
        records: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3i32, 0..1500usize).prop_map(|(queue_id, len)| Op::Append { queue_id, len }),
        2 => (0..3i32, 1..3usize, 0..1200usize).prop_map(|(queue_id, count, len)| Op::Batch { queue_id, count, len }),
        1 => Just(Op::Reopen),
        1 => (1..4usize).prop_map(|records| Op::CrashTruncate { records }),
    ]
}

#[derive(Debug, Clone)]
struct Rec {
    queue_id: i32,
    body: Vec<u8>,
    phy: i64,
    size: usize,
}

fn check(store: &MessageStore, model: &[Rec]) {
    assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    for q in 0..3 {
        let expected: Vec<Vec<u8>> = model
            .iter()
            .filter(|r| r.queue_id == q)
            .map(|r| r.body.clone())
            .collect();
        assert_eq!(
            store.max_offset_in_queue("T", q),
            expected.len() as i64,
            "queue {q}"
        );
        assert_eq!(bodies(store, q), expected, "queue {q}");
    }
    let end = model.last().map_or(0, |r| r.phy + r.size as i64);
    assert!(store.max_phy_offset() >= end);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_across_appends_reopens_and_crashes(ops in proptest::collection::vec(op(), 1..30)) {
        const FILE: usize = 4096;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut store = Some(MessageStore::open(config(root, FILE)).unwrap());
        let mut model: Vec<Rec> = Vec::new();
        let mut counter = 0u32;
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Append { queue_id, len } => {
                    counter += 1;
                    let body: Vec<u8> = (0..len).map(|i| (i as u32 ^ counter) as u8).collect();
                    let (phy, size) = append(s, queue_id, &body);
                    model.push(Rec { queue_id, body, phy, size });
                }
                Op::Batch { queue_id, count, len } => {
                    let mut inputs = Vec::new();
                    let mut bodies_in = Vec::new();
                    for _ in 0..count {
                        counter += 1;
                        let body: Vec<u8> = (0..len).map(|i| (i as u32 ^ counter) as u8).collect();
                        inputs.push(input(queue_id, &body));
                        bodies_in.push(body);
                    }
                    let (r, _) = s.append(&inputs);
                    prop_assert_eq!(r.status, PutMessageStatus::PutOk);
                    let a = r.append.unwrap();
                    let mut phy = a.phy_offset;
                    for body in bodies_in {
                        let size = tern_common::message::record::encoded_len(&input(queue_id, &body));
                        model.push(Rec { queue_id, body, phy, size });
                        phy += size as i64;
                    }
                }
                Op::Reopen => {
                    drop(store.take());
                    let s = MessageStore::open(config(root, FILE)).unwrap();
                    check(&s, &model);
                    store = Some(s);
                }
                Op::CrashTruncate { records } => {
                    drop(store.take());
                    for _ in 0..records.min(model.len()) {
                        let r = model.pop().unwrap();
                        zero(root, FILE, r.phy, r.size);
                    }
                    crash_marker(root);
                    let s = MessageStore::open(config(root, FILE)).unwrap();
                    check(&s, &model);
                    store = Some(s);
                }
            }
        }
        let s = store.take().unwrap();
        check(&s, &model);
        drop(s);
        let s = MessageStore::open(config(root, FILE)).unwrap();
        check(&s, &model);
        let _keep: Arc<MessageStore> = s;
    }
}

/// Measures recovery of a 1 GiB CommitLog (one full file of 1 KiB messages) after a crash
/// (CRC checked from the first file) and after a clean stop. Run once by hand:
/// `cargo test --release -p tern-broker --test store_recovery -- --ignored --nocapture`.
#[test]
#[ignore = "writes 1 GiB; run by hand for docs/BENCHMARKS.md"]
fn recovery_time_of_a_1_gib_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.mapped_file_size_commit_log = 1024 * 1024 * 1024;
    let store = MessageStore::open(cfg.clone()).unwrap();
    let body = vec![b'x'; 1024];
    let mut count = 0u64;
    while store.max_phy_offset() < 1024 * 1024 * 1024 - 64 * 1024 {
        append(&store, (count % 8) as i32, &body);
        count += 1;
    }
    assert!(store.wait_dispatched(store.max_phy_offset(), Duration::from_secs(120)));
    drop(store);
    std::fs::write(dir.path().join("checkpoint"), vec![0u8; 4096]).unwrap();
    crash_marker(dir.path());
    let started = std::time::Instant::now();
    let store = MessageStore::open(cfg.clone()).unwrap();
    let crash = started.elapsed();
    assert_eq!(store.recovery_report().records_validated, count);
    drop(store);
    let started = std::time::Instant::now();
    let store = MessageStore::open(cfg).unwrap();
    let clean = started.elapsed();
    println!(
        "full: messages={count} crash_recovery_ms={} clean_recovery_ms={} report={:?}",
        crash.as_millis(),
        clean.as_millis(),
        store.recovery_report()
    );
}

/// Measures recovery of a nearly empty 1 GiB CommitLog (4 records, the case of a broker
/// restarted soon after its first messages) after a crash and after a clean stop. Run by hand
/// like [`recovery_time_of_a_1_gib_commit_log`].
#[test]
#[ignore = "creates a 1 GiB file; run by hand for docs/BENCHMARKS.md"]
fn recovery_time_of_a_nearly_empty_1_gib_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.mapped_file_size_commit_log = 1024 * 1024 * 1024;
    let store = MessageStore::open(cfg.clone()).unwrap();
    for i in 0..4u8 {
        append(&store, 0, &[i; 100]);
    }
    assert!(store.wait_dispatched(store.max_phy_offset(), WAIT));
    drop(store);
    crash_marker(dir.path());
    let started = std::time::Instant::now();
    let store = MessageStore::open(cfg.clone()).unwrap();
    let crash = started.elapsed();
    assert_eq!(store.recovery_report().records_validated, 4);
    drop(store);
    let started = std::time::Instant::now();
    let store = MessageStore::open(cfg).unwrap();
    let clean = started.elapsed();
    assert_eq!(store.max_offset_in_queue("T", 0), 4);
    println!(
        "nearly empty: crash_recovery_ms={} clean_recovery_ms={} report={:?}",
        crash.as_millis(),
        clean.as_millis(),
        store.recovery_report()
    );
}
