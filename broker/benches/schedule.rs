//! Delivery lateness of delay levels and timer messages with a large backlog.
//!
//! Parks `N` messages (default 100,000; `SCHEDULE_BENCH_N` overrides) in `SCHEDULE_TOPIC_XXXX`
//! spread over three levels (1 s, 2 s, 3 s) and `N` timer messages in `rmq_sys_wheel_timer` due
//! over the next 1–3 s, then runs the same passes as the broker's `schedule-delay` and
//! `schedule-timer` tasks (sleeping until the next due time) against a real store in a temp
//! directory, and reports lateness = re-appended record's store time − due time
//! (p50/p90/p99/p999/max), the number delivered early (must be 0), and throughput.
//! Run: `cargo bench -p tern-broker --bench schedule`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_broker::schedule::delay::{deliver_due, wait_until, DelayOffsetTable};
use tern_broker::schedule::timer::{timer_pass, TimerProgress, TimerState};
use tern_broker::schedule::{now_ms, ScheduleStats};
use tern_broker::store::{MessageStore, StoreConfig};
use tern_common::message::record::{decode_record, RecordInput};
use tern_common::message::{
    encode_properties, property_key, RMQ_SYS_WHEEL_TIMER, SCHEDULE_TOPIC_XXXX,
};

fn input(topic: &str, queue_id: i32, props: &BTreeMap<String, String>, i: u32) -> RecordInput {
    RecordInput {
        topic: topic.into(),
        queue_id,
        flag: 0,
        body: Bytes::copy_from_slice(&i.to_be_bytes()),
        properties: encode_properties(props),
        sys_flag: 0,
        born_timestamp: now_ms(),
        born_host: "127.0.0.1:1".parse().expect("literal address"),
        store_host: "127.0.0.1:2".parse().expect("literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Reads every delivered record of `topic` queue 0 and returns lateness (ms) per message.
fn lateness(store: &MessageStore, topic: &str, due: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(due.len());
    let mut offset = 0;
    for _ in 0..1_000_000 {
        let r = store.get_message(topic, 0, offset, 1_024, 64 << 20, &|_| true);
        if r.messages.is_empty() {
            break;
        }
        for m in &r.messages {
            let rec = decode_record(m, false).expect("stored record decodes");
            let idx = u32::from_be_bytes(rec.body.try_into().expect("4-byte body")) as usize;
            out.push(rec.store_timestamp - due[idx]);
        }
        offset = r.next_begin_offset;
    }
    out
}

fn report(what: &str, mut late: Vec<i64>, n: usize, elapsed: Duration) {
    late.sort_unstable();
    let early = late.iter().filter(|l| **l < 0).count();
    println!(
        "{what}: delivered {}/{n} in {:.2?}; lateness ms p50 {} p90 {} p99 {} p999 {} max {}; early {early}",
        late.len(),
        elapsed,
        percentile(&late, 50.0),
        percentile(&late, 90.0),
        percentile(&late, 99.0),
        percentile(&late, 99.9),
        late.last().copied().unwrap_or(0),
    );
}

fn main() {
    let n: usize = std::env::var("SCHEDULE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let delays = vec![
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3),
    ];
    let mut cfg = StoreConfig::new(dir.path());
    cfg.mapped_file_size_commit_log = 256 << 20;
    cfg.delay_level_table = delays.clone();
    let store = MessageStore::open(cfg).expect("store opens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let host = "127.0.0.1:3".parse().expect("literal address");
    let stats = ScheduleStats::default();

    // Delay levels.
    let mut due = vec![0i64; n];
    let start = Instant::now();
    let mut last_end = 0;
    for (i, due_slot) in due.iter_mut().enumerate() {
        let level = (i % 3) as i32 + 1;
        let mut props = BTreeMap::new();
        props.insert(property_key::DELAY.to_string(), level.to_string());
        props.insert(
            property_key::REAL_TOPIC.to_string(),
            "BenchDelay".to_string(),
        );
        props.insert(property_key::REAL_QID.to_string(), "0".to_string());
        let r =
            rt.block_on(store.put_message(input(SCHEDULE_TOPIC_XXXX, level - 1, &props, i as u32)));
        let a = r.append.expect("parked message stored");
        *due_slot = a.store_timestamp + i64::from(level) * 1_000;
        last_end = a.phy_offset + a.wrote_bytes as i64;
    }
    println!("parked {n} delayed messages in {:.2?}", start.elapsed());
    assert!(store.wait_dispatched(last_end, Duration::from_secs(120)));
    let start = Instant::now();
    let mut table = DelayOffsetTable::default();
    let mut delivered = 0u64;
    for _ in 0..100_000 {
        let out = deliver_due(&store, &delays, &mut table, host, &stats, &now_ms);
        delivered += out.delivered;
        if delivered as usize >= n {
            break;
        }
        if !out.more {
            std::thread::sleep(wait_until(out.next_due_ms, now_ms()));
        }
    }
    let elapsed = start.elapsed();
    let max_phy = store.max_phy_offset();
    assert!(store.wait_dispatched(max_phy, Duration::from_secs(120)));
    report(
        "delay levels",
        lateness(&store, "BenchDelay", &due),
        n,
        elapsed,
    );

    // Timer messages, due over the next 1–3 s at 1 s precision.
    let base = now_ms();
    let mut due = vec![0i64; n];
    let start = Instant::now();
    for (i, due_slot) in due.iter_mut().enumerate() {
        let at = base + 1_000 + (i as i64 % 2_000);
        let at = at - at % 1_000;
        let mut props = BTreeMap::new();
        props.insert(property_key::TIMER_OUT_MS.to_string(), at.to_string());
        props.insert(
            property_key::REAL_TOPIC.to_string(),
            "BenchTimer".to_string(),
        );
        props.insert(property_key::REAL_QID.to_string(), "0".to_string());
        let r = rt.block_on(store.put_message(input(RMQ_SYS_WHEEL_TIMER, 0, &props, i as u32)));
        assert!(r.append.is_some(), "timer message stored");
        *due_slot = at;
    }
    println!("parked {n} timer messages in {:.2?}", start.elapsed());
    let start = Instant::now();
    let mut state = TimerState::from_snapshot(TimerProgress::default());
    let mut delivered = 0u64;
    for _ in 0..100_000 {
        let out = timer_pass(&store, &mut state, host, &stats, &now_ms);
        delivered += out.delivered;
        if delivered as usize >= n {
            break;
        }
        if !out.more {
            std::thread::sleep(
                wait_until(state.wheel.first_due(), now_ms()).min(Duration::from_millis(100)),
            );
        }
    }
    let elapsed = start.elapsed();
    let max_phy = store.max_phy_offset();
    assert!(store.wait_dispatched(max_phy, Duration::from_secs(120)));
    report("timer", lateness(&store, "BenchTimer", &due), n, elapsed);
    store.shutdown();
}
