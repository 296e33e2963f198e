//! Store API tests: appends, reads, statuses, filters, lookups, group commit, faults and
//! retention, each against a fresh store in a temp directory with tiny files (64 KiB CommitLog
//! files, 100-unit ConsumeQueue files) so rolls happen after a few dozen messages.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tern_broker::store::{
    ArrivalEvent, FileOps, FlushDiskType, GetMessageStatus, MessageStore, PutMessageStatus,
    StoreConfig, StoreError,
};
use tern_common::message::id::offset_msg_id;
use tern_common::message::property::encode_properties;
use tern_common::message::record::{decode_record, RecordInput};
use tern_common::message::tag::tags_hash;

const WAIT: Duration = Duration::from_secs(5);

fn config(root: &Path) -> StoreConfig {
    StoreConfig::new(root).with_small_files()
}

fn input(topic: &str, queue_id: i32, body: &[u8], props: &[(&str, &str)]) -> RecordInput {
    let map: BTreeMap<String, String> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RecordInput {
        topic: topic.to_string(),
        queue_id,
        flag: 0,
        body: Bytes::copy_from_slice(body),
        properties: encode_properties(&map),
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:4000".parse().unwrap(),
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

fn all(_: i64) -> bool {
    true
}

fn caught_up(store: &MessageStore) {
    assert!(
        store.wait_dispatched(store.max_phy_offset(), WAIT),
        "dispatch caught up"
    );
}

#[tokio::test]
async fn appends_roll_files_and_read_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let mut phys = Vec::new();
    for i in 0..200u32 {
        let body = vec![(i % 251) as u8; 700];
        let r = store.put_message(input("T", 0, &body, &[])).await;
        assert_eq!(r.status, PutMessageStatus::PutOk);
        let a = r.append.unwrap();
        assert_eq!(a.queue_offset, i64::from(i));
        assert_eq!(
            a.msg_ids(),
            vec![offset_msg_id(
                "127.0.0.1:10911".parse().unwrap(),
                a.phy_offset
            )]
        );
        phys.push(a.phy_offset);
    }
    // 200 × ~800 bytes spans at least three 64 KiB files, and no record crosses a boundary.
    assert!(store.max_phy_offset() > 2 * 64 * 1024);
    for (i, phy) in phys.iter().enumerate() {
        let rec = store.read_record(*phy).unwrap();
        assert_eq!(phy / 65536, (phy + rec.len() as i64 - 1) / 65536);
        let r = decode_record(&rec, true).unwrap();
        assert_eq!(r.queue_offset, i as i64);
        assert_eq!(r.body, &vec![(i % 251) as u8; 700][..]);
    }
    caught_up(&store);
    let got = store.get_message("T", 0, 0, 1000, usize::MAX, &all);
    assert_eq!(got.status, GetMessageStatus::Found);
    // One read stops at the end of a ConsumeQueue file (100 units here), as in RocketMQ.
    assert_eq!(got.messages.len(), 100);
    assert_eq!(got.messages[17], store.read_record(phys[17]).unwrap());
    assert_eq!(got.next_begin_offset, 100);
    let rest = store.get_message("T", 0, 100, 1000, usize::MAX, &all);
    assert_eq!((rest.messages.len(), rest.next_begin_offset), (100, 200));
    assert_eq!(store.topics_and_queues(), vec![("T".to_string(), 0)]);
}

#[tokio::test]
async fn batch_gets_consecutive_queue_offsets_and_mixed_batch_is_illegal() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    store.put_message(input("B", 1, b"x", &[])).await;
    let batch = (0..5)
        .map(|i| input("B", 1, format!("m{i}").as_bytes(), &[]))
        .collect();
    let r = store.put_messages(batch).await;
    assert_eq!(r.status, PutMessageStatus::PutOk);
    let a = r.append.unwrap();
    assert_eq!((a.queue_offset, a.msg_count), (1, 5));
    // Each record of the batch has its own offset id, formatted on request.
    let ids = a.msg_ids();
    assert_eq!(ids.len(), 5);
    let mut phy = a.phy_offset;
    for (i, id) in ids.iter().enumerate() {
        let rec = store.read_record(phy).unwrap();
        let r = decode_record(&rec, true).unwrap();
        assert_eq!((r.phy_offset, r.queue_offset), (phy, 1 + i as i64));
        assert_eq!(a.record_phy_offset(i), Some(phy));
        assert_eq!(id, &offset_msg_id(r.store_host, phy));
        phy += rec.len() as i64;
    }
    assert_eq!(phy, a.phy_offset + a.wrote_bytes as i64);
    assert_eq!((a.record_phy_offset(5), a.msg_id(5)), (None, None));
    let mixed = vec![input("B", 1, b"a", &[]), input("B", 2, b"b", &[])];
    assert_eq!(
        store.put_messages(mixed).await.status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(
        store.put_messages(vec![]).await.status,
        PutMessageStatus::MessageIllegal
    );
    caught_up(&store);
    assert_eq!(store.max_offset_in_queue("B", 1), 6);
    let got = store.get_message("B", 1, 3, 10, usize::MAX, &all);
    assert_eq!(got.message_queue_offsets, vec![3, 4, 5]);
    assert_eq!(decode_record(&got.messages[0], true).unwrap().body, b"m2");
}

#[tokio::test]
async fn oversized_bad_topic_and_huge_properties_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let big = vec![0u8; 20 * 1024];
    assert_eq!(
        store.put_message(input("T", 0, &big, &[])).await.status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(
        store.put_message(input("../x", 0, b"a", &[])).await.status,
        PutMessageStatus::MessageIllegal
    );
    let long = "v".repeat(40_000);
    let mut i = input("T", 0, b"a", &[]);
    i.properties = format!("K\u{1}{long}\u{2}");
    let status = store.put_message(i).await.status;
    assert!(matches!(
        status,
        PutMessageStatus::PropertiesSizeExceeded | PutMessageStatus::MessageIllegal
    ));
    assert!(store.is_writable());
}

#[tokio::test]
async fn get_message_statuses_follow_the_pull_table() {
    let dir = tempfile::tempdir().unwrap();
    // A queue directory without files: the queue exists but is empty.
    std::fs::create_dir_all(dir.path().join("consumequeue").join("E").join("0")).unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let r = store.get_message("nope", 0, 5, 32, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::NoMatchedLogicQueue, 0)
    );
    let r = store.get_message("E", 0, 3, 32, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::NoMessageInQueue, 0)
    );

    for i in 0..10 {
        let tag = if i % 3 == 0 { "A" } else { "B" };
        store
            .put_message(input("T", 0, b"body", &[("TAGS", tag)]))
            .await;
    }
    caught_up(&store);
    let r = store.get_message("T", 0, 10, 32, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset, r.max_offset),
        (GetMessageStatus::OffsetOverflowOne, 10, 10)
    );
    let r = store.get_message("T", 0, 15, 32, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetOverflowBadly, 10)
    );
    let r = store.get_message("T", 0, 2, 3, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset, r.messages.len()),
        (GetMessageStatus::Found, 5, 3)
    );
    // max_bytes stops the batch but always returns at least one message.
    let r = store.get_message("T", 0, 0, 32, 1, &all);
    assert_eq!((r.messages.len(), r.next_begin_offset), (1, 1));

    let a = tags_hash("A");
    let only_a = move |code: i64| code == a;
    let r = store.get_message("T", 0, 0, 32, usize::MAX, &only_a);
    assert_eq!(r.message_queue_offsets, vec![0, 3, 6, 9]);
    let r = store.get_message("T", 0, 7, 2, usize::MAX, &only_a);
    assert_eq!(
        (
            r.status,
            r.message_queue_offsets.clone(),
            r.next_begin_offset
        ),
        (GetMessageStatus::Found, vec![9], 10)
    );
    let none = |_: i64| false;
    let r = store.get_message("T", 0, 4, 32, usize::MAX, &none);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::NoMatchedMessage, 10)
    );
}

#[tokio::test]
async fn offset_by_time_and_store_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for _ in 0..3 {
        for _ in 0..4 {
            store.put_message(input("T", 0, b"x", &[])).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught_up(&store);
    let t4 = store.message_store_time("T", 0, 4).unwrap();
    let t3 = store.message_store_time("T", 0, 3).unwrap();
    assert!(t4 > t3);
    assert_eq!(store.offset_by_time("T", 0, t4, false), 4);
    assert_eq!(store.offset_by_time("T", 0, t3 + 1, false), 4);
    assert_eq!(store.offset_by_time("T", 0, t3 + 1, true), 3);
    assert_eq!(store.offset_by_time("T", 0, 0, false), 0);
    assert_eq!(store.offset_by_time("T", 0, i64::MAX, false), 12);
    assert_eq!(store.offset_by_time("T", 0, i64::MAX, true), 11);
    assert_eq!(
        store.earliest_message_time("T", 0),
        store.message_store_time("T", 0, 0)
    );
    assert_eq!(store.offset_by_time("missing", 0, t4, false), 0);
}

#[tokio::test]
async fn query_by_key_and_uniq_key_and_arrival_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let events = Arc::new(Mutex::new(Vec::<(String, i32, i64)>::new()));
    let sink = events.clone();
    store.add_arrival_listener(Arc::new(move |e: &ArrivalEvent<'_>| {
        sink.lock()
            .unwrap()
            .push((e.topic.to_owned(), e.queue_id, e.queue_offset))
    }));
    for i in 0..300 {
        let key = format!("order-{}", i % 7);
        let uniq = format!("UNIQ{i:04}");
        store
            .put_message(input(
                "Q",
                2,
                b"v",
                &[("KEYS", &format!("{key} common")), ("UNIQ_KEY", &uniq)],
            ))
            .await;
    }
    caught_up(&store);
    let r = store.query_message("Q", "order-3", 64, 0, i64::MAX);
    assert_eq!(r.messages.len(), 43);
    for m in &r.messages {
        let rec = decode_record(m, true).unwrap();
        assert!(rec.keys().any(|k| k == "order-3"));
    }
    // Newest first.
    let first = decode_record(&r.messages[0], false).unwrap().queue_offset;
    let last = decode_record(r.messages.last().unwrap(), false)
        .unwrap()
        .queue_offset;
    assert!(first > last);
    let r = store.query_message("Q", "UNIQ0123", 32, 0, i64::MAX);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(
        decode_record(&r.messages[0], true).unwrap().uniq_key(),
        Some("UNIQ0123")
    );
    assert!(r.index_last_update_phy_offset > 0);
    assert_eq!(
        store
            .query_message("Q", "common", 10, 0, i64::MAX)
            .messages
            .len(),
        10
    );
    assert!(store
        .query_message("Q", "absent", 10, 0, i64::MAX)
        .messages
        .is_empty());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 300);
    assert_eq!(events[0], ("Q".to_owned(), 2, 1));
    assert_eq!(events[299].2, 300);
}

#[tokio::test]
async fn schedule_topic_tags_code_is_delivery_time_and_prepared_is_not_dispatched() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let r = store
        .put_message(input("SCHEDULE_TOPIC_XXXX", 2, b"d", &[("DELAY", "3")]))
        .await;
    let stored = r.append.unwrap().store_timestamp;
    let mut half = input("H", 0, b"h", &[]);
    half.sys_flag = 0x4;
    assert_eq!(
        store.put_message(half).await.append.unwrap().queue_offset,
        0
    );
    caught_up(&store);
    let code = std::cell::Cell::new(None);
    let capture = |c: i64| {
        code.set(Some(c));
        true
    };
    let got = store.get_message("SCHEDULE_TOPIC_XXXX", 2, 0, 1, usize::MAX, &capture);
    assert_eq!(got.status, GetMessageStatus::Found);
    // Level 3 is 10 s in the default table.
    assert_eq!(code.get(), Some(stored + 10_000));
    assert_eq!(
        store.get_message("H", 0, 0, 1, usize::MAX, &all).status,
        GetMessageStatus::NoMatchedLogicQueue
    );
}

#[tokio::test]
async fn second_open_of_a_locked_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let err = MessageStore::open(config(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(store);
    MessageStore::open(config(dir.path())).unwrap();
}

#[tokio::test]
async fn delete_topic_removes_queues_and_resets_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for _ in 0..3 {
        store.put_message(input("D", 0, b"x", &[])).await;
    }
    caught_up(&store);
    store.delete_topic("D");
    assert!(!dir.path().join("consumequeue").join("D").exists());
    assert_eq!(store.max_offset_in_queue("D", 0), 0);
    let r = store.put_message(input("D", 0, b"y", &[])).await;
    assert_eq!(r.append.unwrap().queue_offset, 0);
}

#[derive(Debug, Default)]
struct Faults {
    fail_append: AtomicBool,
    fail_flush: AtomicBool,
    flushes: AtomicUsize,
}

impl FileOps for Faults {
    fn before_append(&self, _path: &Path, _len: usize) -> std::io::Result<()> {
        if self.fail_append.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected write failure"));
        }
        Ok(())
    }
    fn before_flush(&self, path: &Path) -> std::io::Result<()> {
        if path.parent().is_some_and(|p| p.ends_with("commitlog")) {
            self.flushes.fetch_add(1, Ordering::SeqCst);
        }
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn failed_write_makes_store_read_only_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let mut cfg = config(dir.path());
    cfg.file_ops = faults.clone();
    let store = MessageStore::open(cfg).unwrap();
    for _ in 0..3 {
        assert_eq!(
            store.put_message(input("F", 0, b"ok", &[])).await.status,
            PutMessageStatus::PutOk
        );
    }
    caught_up(&store);
    faults.fail_append.store(true, Ordering::SeqCst);
    assert_eq!(
        store.put_message(input("F", 0, b"no", &[])).await.status,
        PutMessageStatus::ServiceNotAvailable
    );
    assert!(!store.is_writable());
    faults.fail_append.store(false, Ordering::SeqCst);
    // Never retried as if transient: still refused.
    assert_eq!(
        store.put_message(input("F", 0, b"no", &[])).await.status,
        PutMessageStatus::ServiceNotAvailable
    );
    let got = store.get_message("F", 0, 0, 32, usize::MAX, &all);
    assert_eq!(
        (got.status, got.messages.len()),
        (GetMessageStatus::Found, 3)
    );
    assert!(store.runtime_stats().put_failure_count >= 2);
}

#[tokio::test]
async fn failed_fsync_under_sync_flush_times_out_and_goes_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let mut cfg = config(dir.path());
    cfg.file_ops = faults.clone();
    cfg.flush_disk_type = FlushDiskType::SyncFlush;
    let store = MessageStore::open(cfg).unwrap();
    assert_eq!(
        store.put_message(input("F", 0, b"ok", &[])).await.status,
        PutMessageStatus::PutOk
    );
    faults.fail_flush.store(true, Ordering::SeqCst);
    let r = store.put_message(input("F", 0, b"stored", &[])).await;
    assert_eq!(r.status, PutMessageStatus::FlushDiskTimeout);
    let phy = r.append.unwrap().phy_offset;
    assert!(store.read_record(phy).is_some(), "the message is stored");
    assert!(!store.is_writable());
    assert_eq!(
        store.put_message(input("F", 0, b"no", &[])).await.status,
        PutMessageStatus::ServiceNotAvailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_group_commit_covers_many_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let mut cfg = config(dir.path());
    cfg.file_ops = faults.clone();
    cfg.flush_disk_type = FlushDiskType::SyncFlush;
    let store = MessageStore::open(cfg).unwrap();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let r = store
                    .put_message(input("G", w % 4, format!("{w}-{i}").as_bytes(), &[]))
                    .await;
                assert_eq!(r.status, PutMessageStatus::PutOk);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = faults.flushes.load(Ordering::SeqCst);
    assert!(
        flushes < 1280,
        "group commit shares flushes: {flushes} flushes for 1280 puts"
    );
    assert!(store.runtime_stats().commit_log_flushed_offset >= store.max_phy_offset());
    caught_up(&store);
    let total: i64 = (0..4).map(|q| store.max_offset_in_queue("G", q)).sum();
    assert_eq!(total, 1280);
    // WAIT=false does not wait for the flush.
    let r = store
        .put_message(input("G", 0, b"nowait", &[("WAIT", "false")]))
        .await;
    assert_eq!(r.status, PutMessageStatus::PutOk);
}

#[tokio::test]
async fn retention_deletes_old_files_and_moves_min_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for _ in 0..400 {
        store
            .put_message(input("R", 0, &[1u8; 900], &[("KEYS", "k")]))
            .await;
    }
    caught_up(&store);
    // Wait (bounded) for the async flusher to cover the log.
    for _ in 0..200 {
        if store.runtime_stats().commit_log_flushed_offset >= store.max_phy_offset() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = tern_broker::store::commit_log::now_ms();
    assert_eq!(
        store.delete_expired_files(now, false),
        0,
        "nothing is 72 h old yet"
    );
    let later = now + 73 * 3_600_000;
    let deleted = store.delete_expired_files(later, false);
    assert!(deleted >= 3, "deleted {deleted}");
    assert!(store.min_phy_offset() > 0);
    let min = store.min_offset_in_queue("R", 0);
    assert!(min > 0);
    let r = store.get_message("R", 0, 0, 32, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetTooSmall, min)
    );
    let r = store.get_message("R", 0, min, 1, usize::MAX, &all);
    assert_eq!(r.status, GetMessageStatus::Found);
    assert_eq!(
        decode_record(&r.messages[0], true).unwrap().queue_offset,
        min
    );
    // The newest file always stays.
    assert!(store.max_phy_offset() > store.min_phy_offset());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_driver_starts_checks_disk_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tern_broker::store::run_retention(
        store.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    // The first disk check runs at once; let it happen, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(store.is_writable());

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.delete_when = "not a cron line".to_string();
    let store = MessageStore::open(cfg).unwrap();
    let err = tern_broker::store::run_retention(store, async {})
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Scheduler(_)), "{err}");
}
