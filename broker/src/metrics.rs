//! Prometheus metrics of the broker, served over HTTP at `GET /metrics` in the OpenMetrics
//! text format (`prometheus-client`) when `metrics_listen` (flag `--metrics-listen
//! HOST:PORT`) is set. Off by default; `docs/metrics.md` lists every metric.
//!
//! Contract: [`Instrumented`] wraps the request dispatcher and records, for every request
//! answered through it, its code and handling time, and for successful sends and pulls the
//! messages and bytes per topic. Pulls answered later by long polling are re-executed outside
//! the dispatcher and count in the per-topic out counters through
//! [`BrokerMetrics::observe_pull_answer`] (the same recorder). Everything else (consumer
//! lag, held pulls, store usage, flush progress, check-backs) is read from the broker's
//! services at each scrape. Label values are bounded: unknown request codes count as
//! `UNKNOWN`, and at most [`MAX_TOPIC_LABELS`] distinct topics get their own series (the rest
//! count under `topic="_other"`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tern_common::metrics::{RequestMetrics, RequestObserver};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::context::BrokerContext;

/// Most distinct topics with their own per-topic series; further topics share `_other`.
pub const MAX_TOPIC_LABELS: usize = 10_000;
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// The four per-topic counters of one topic's series.
#[derive(Debug, Clone)]
struct TopicCounters {
    messages_in: Counter,
    bytes_in: Counter,
    messages_out: Counter,
    bytes_out: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    outcome: String,
}

/// Raises `counter` to `value` (counters read from another component's atomics).
fn sync_counter(counter: &Counter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

fn gauge_i64(g: &Gauge, v: impl TryInto<i64>) {
    g.set(v.try_into().unwrap_or(i64::MAX));
}

/// The broker's metric registry.
#[derive(Debug)]
pub struct BrokerMetrics {
    registry: Registry,
    requests: RequestMetrics,
    messages_in: Family<TopicLabels, Counter>,
    bytes_in: Family<TopicLabels, Counter>,
    messages_out: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    topics_seen: Mutex<std::collections::HashSet<String>>,
    /// The per-topic counters of every topic with its own series, looked up in the families
    /// once (a family lookup hashes a freshly built label and takes a lock).
    topic_counters: RwLock<HashMap<String, TopicCounters>>,
    messages_put_total: Counter,
    bytes_put_total: Counter,
    messages_get_total: Counter,
    send_failures_total: Counter,
    consumer_lag: Family<LagLabels, Gauge>,
    pull_holds: Gauge,
    commit_log_bytes: Gauge,
    commit_log_max_offset: Gauge,
    unflushed_bytes: Gauge,
    dispatch_behind_bytes: Gauge,
    consume_queues: Gauge,
    store_writable: Gauge,
    disk_used_ratio_permille: Gauge,
    flush_timeouts_total: Counter,
    flush_duration: Histogram,
    check_backs: Family<CheckLabels, Counter>,
    started: Instant,
    uptime: Gauge,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokerMetrics {
    /// A registry with every broker metric registered (all zero).
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("tern_broker");
        let requests = RequestMetrics::register(
            &mut r,
            "Time to handle a request by request code (SEND_MESSAGE_V2: send latency incl. any \
             SYNC_FLUSH wait; PULL_MESSAGE: pull latency, up to parking for long polling), seconds",
        );
        let messages_in = Family::<TopicLabels, Counter>::default();
        r.register(
            "topic_messages_in",
            "Messages stored by sends, per topic",
            messages_in.clone(),
        );
        let bytes_in = Family::<TopicLabels, Counter>::default();
        r.register(
            "topic_bytes_in",
            "Send request body bytes stored, per topic",
            bytes_in.clone(),
        );
        let messages_out = Family::<TopicLabels, Counter>::default();
        r.register(
            "topic_messages_out",
            "Messages returned by pulls (including long-polling answers), per topic",
            messages_out.clone(),
        );
        let bytes_out = Family::<TopicLabels, Counter>::default();
        r.register(
            "topic_bytes_out",
            "Record bytes returned by pulls (including long-polling answers), per topic",
            bytes_out.clone(),
        );
        let messages_put_total = Counter::default();
        r.register(
            "messages_in",
            "Messages stored, all topics",
            messages_put_total.clone(),
        );
        let bytes_put_total = Counter::default();
        r.register(
            "bytes_in",
            "Message bytes stored, all topics",
            bytes_put_total.clone(),
        );
        let messages_get_total = Counter::default();
        r.register(
            "messages_out",
            "Messages returned by pulls, all topics (including long-polling answers)",
            messages_get_total.clone(),
        );
        let send_failures_total = Counter::default();
        r.register(
            "send_failures",
            "Sends that were refused or failed",
            send_failures_total.clone(),
        );
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        r.register(
            "consumer_lag",
            "Messages between a group's committed offsets and the queues' ends, per group and topic",
            consumer_lag.clone(),
        );
        let pull_holds = Gauge::default();
        r.register(
            "pull_holds",
            "Pull requests held by long polling",
            pull_holds.clone(),
        );
        let commit_log_bytes = Gauge::default();
        r.register(
            "store_commit_log_bytes",
            "CommitLog bytes retained (max offset - min offset)",
            commit_log_bytes.clone(),
        );
        let commit_log_max_offset = Gauge::default();
        r.register(
            "store_commit_log_max_offset",
            "CommitLog max physical offset, bytes",
            commit_log_max_offset.clone(),
        );
        let unflushed_bytes = Gauge::default();
        r.register(
            "store_unflushed_bytes",
            "CommitLog bytes appended but not yet flushed to disk",
            unflushed_bytes.clone(),
        );
        let dispatch_behind_bytes = Gauge::default();
        r.register(
            "store_dispatch_behind_bytes",
            "CommitLog bytes not yet dispatched to ConsumeQueues (reput lag)",
            dispatch_behind_bytes.clone(),
        );
        let consume_queues = Gauge::default();
        r.register(
            "store_consume_queues",
            "ConsumeQueues in the store",
            consume_queues.clone(),
        );
        let store_writable = Gauge::default();
        r.register(
            "store_writable",
            "1 while the store accepts appends, 0 after a write or flush error",
            store_writable.clone(),
        );
        let disk_used_ratio_permille = Gauge::default();
        r.register(
            "store_disk_used_permille",
            "Used space of the store's file system, per mille",
            disk_used_ratio_permille.clone(),
        );
        let flush_timeouts_total = Counter::default();
        r.register(
            "store_flush_timeouts",
            "SYNC_FLUSH sends answered FLUSH_DISK_TIMEOUT",
            flush_timeouts_total.clone(),
        );
        // 20 doubling buckets from 50 µs (an msync of a few pages) to ~26 s (a stalled disk).
        let flush_duration = Histogram::new(exponential_buckets(0.000_05, 2.0, 20));
        r.register(
            "store_flush_duration_seconds",
            "Time of each CommitLog flush (msync/fdatasync; one per group commit under \
             SYNC_FLUSH), seconds",
            flush_duration.clone(),
        );
        let check_backs = Family::<CheckLabels, Counter>::default();
        r.register(
            "transaction_check_backs",
            "Transaction check-back outcomes (sent, no_producer, discarded, commit, rollback)",
            check_backs.clone(),
        );
        let uptime = Gauge::default();
        r.register(
            "uptime_seconds",
            "Seconds since the broker started",
            uptime.clone(),
        );
        BrokerMetrics {
            registry: r,
            requests,
            messages_in,
            bytes_in,
            messages_out,
            bytes_out,
            topics_seen: Mutex::new(std::collections::HashSet::new()),
            topic_counters: RwLock::new(HashMap::new()),
            messages_put_total,
            bytes_put_total,
            messages_get_total,
            send_failures_total,
            consumer_lag,
            pull_holds,
            commit_log_bytes,
            commit_log_max_offset,
            unflushed_bytes,
            dispatch_behind_bytes,
            consume_queues,
            store_writable,
            disk_used_ratio_permille,
            flush_timeouts_total,
            flush_duration,
            check_backs,
            started: Instant::now(),
            uptime,
        }
    }

    /// Records one CommitLog flush that took `elapsed` (the store's flush observer).
    pub fn observe_flush(&self, elapsed: Duration) {
        self.flush_duration.observe(elapsed.as_secs_f64());
    }

    /// The label for `topic`, or `_other` once [`MAX_TOPIC_LABELS`] topics have series.
    fn topic_labels(&self, topic: &str) -> TopicLabels {
        let mut seen = self.topics_seen.lock();
        if seen.contains(topic) || seen.len() < MAX_TOPIC_LABELS {
            if !seen.contains(topic) {
                seen.insert(topic.to_string());
            }
            TopicLabels {
                topic: topic.to_string(),
            }
        } else {
            TopicLabels {
                topic: "_other".to_string(),
            }
        }
    }

    /// Calls `record` with the counters of `topic`'s series (`_other` past
    /// [`MAX_TOPIC_LABELS`] topics).
    fn with_topic_counters(&self, topic: &str, record: impl FnOnce(&TopicCounters)) {
        if let Some(counters) = self.topic_counters.read().get(topic) {
            record(counters);
            return;
        }
        let labels = self.topic_labels(topic);
        let counters = TopicCounters {
            messages_in: self.messages_in.get_or_create(&labels).clone(),
            bytes_in: self.bytes_in.get_or_create(&labels).clone(),
            messages_out: self.messages_out.get_or_create(&labels).clone(),
            bytes_out: self.bytes_out.get_or_create(&labels).clone(),
        };
        record(&counters);
        // Only topics with their own series are kept, so the map is bounded like the labels.
        if labels.topic == topic {
            self.topic_counters.write().insert(labels.topic, counters);
        }
    }

    /// Records one request of `code` that took `elapsed`, and its response when answered.
    pub fn observe(
        &self,
        request: &RequestSummary,
        response: Option<&RemotingCommand>,
        elapsed: Duration,
    ) {
        self.requests.observe(request.code, elapsed);
        let (Some(response), Some(topic)) = (response, request.topic.as_deref()) else {
            return;
        };
        match RequestCode::try_from(request.code) {
            Ok(
                RequestCode::SendMessage
                | RequestCode::SendMessageV2
                | RequestCode::SendBatchMessage,
            ) => {
                let stored = matches!(
                    ResponseCode::try_from(response.code),
                    Ok(ResponseCode::Success
                        | ResponseCode::FlushDiskTimeout
                        | ResponseCode::FlushSlaveTimeout
                        | ResponseCode::SlaveNotAvailable)
                );
                if stored {
                    // A batch answers one offset msgId per message, comma-joined.
                    let count = response
                        .ext("msgId")
                        .map(|ids| ids.split(',').filter(|s| !s.is_empty()).count())
                        .filter(|n| *n > 0)
                        .unwrap_or(1);
                    self.with_topic_counters(topic, |c| {
                        c.messages_in.inc_by(count as u64);
                        c.bytes_in.inc_by(request.body_len as u64);
                    });
                }
            }
            Ok(RequestCode::PullMessage | RequestCode::LitePullMessage) => {
                self.observe_pull_answer(topic, response);
            }
            _ => {}
        }
    }

    /// Counts the messages and record bytes of a pull answer for `topic` when it is SUCCESS
    /// (FOUND). Called for pulls answered through [`Instrumented`] and for long-polling
    /// answers ([`crate::processor::pull::answer_now`]), which leave the dispatcher.
    pub fn observe_pull_answer(&self, topic: &str, response: &RemotingCommand) {
        if response.code != i32::from(ResponseCode::Success) {
            return;
        }
        let (count, bytes) = count_records(&response.body);
        self.with_topic_counters(topic, |c| {
            c.messages_out.inc_by(count);
            c.bytes_out.inc_by(bytes);
        });
    }

    /// Reads the scrape-time values from `ctx` and renders every metric as OpenMetrics text.
    pub fn render(&self, ctx: &BrokerContext) -> String {
        let (put, put_bytes, get, failures) = ctx.stats.snapshot();
        sync_counter(&self.messages_put_total, put);
        sync_counter(&self.bytes_put_total, put_bytes);
        sync_counter(&self.messages_get_total, get);
        sync_counter(&self.send_failures_total, failures);
        gauge_i64(&self.pull_holds, ctx.pull_hold.len());

        let s = ctx.store.runtime_stats();
        gauge_i64(
            &self.commit_log_bytes,
            (s.commit_log_max_offset - s.commit_log_min_offset).max(0),
        );
        gauge_i64(&self.commit_log_max_offset, s.commit_log_max_offset);
        gauge_i64(
            &self.unflushed_bytes,
            (s.commit_log_max_offset - s.commit_log_flushed_offset).max(0),
        );
        gauge_i64(&self.dispatch_behind_bytes, s.dispatch_behind_bytes);
        gauge_i64(&self.consume_queues, s.consume_queue_count);
        self.store_writable.set(i64::from(s.writable));
        sync_counter(&self.flush_timeouts_total, s.flush_timeout_count);
        if let Some(permille) = disk_used_permille(ctx.store.root()) {
            self.disk_used_ratio_permille.set(permille);
        }

        // Lag per (group, topic): sum over queues of max offset - committed offset.
        self.consumer_lag.clear();
        let groups = ctx.groups.wrapper().subscription_group_table;
        for group in groups.keys() {
            for topic in ctx.offsets.topics_of_group(group) {
                let mut lag = 0i64;
                let offsets: BTreeMap<i32, i64> = ctx.offsets.offsets_of(group, &topic);
                for (qid, committed) in offsets {
                    let max = ctx.store.max_offset_in_queue(&topic, qid);
                    lag += (max - committed.max(0)).max(0);
                }
                self.consumer_lag
                    .get_or_create(&LagLabels {
                        group: group.clone(),
                        topic,
                    })
                    .set(lag);
            }
        }

        if let Some(tx) = ctx.transaction.get() {
            use std::sync::atomic::Ordering::Relaxed;
            for (outcome, value) in [
                ("sent", tx.stats.checks_sent.load(Relaxed)),
                (
                    "no_producer",
                    tx.stats.checks_without_producer.load(Relaxed),
                ),
                ("discarded", tx.stats.discarded.load(Relaxed)),
                ("commit", tx.stats.commits.load(Relaxed)),
                ("rollback", tx.stats.rollbacks.load(Relaxed)),
            ] {
                let labels = CheckLabels {
                    outcome: outcome.to_string(),
                };
                sync_counter(&self.check_backs.get_or_create(&labels), value);
            }
        }
        gauge_i64(&self.uptime, self.started.elapsed().as_secs());
        tern_common::metrics::render(&self.registry)
    }
}

/// Used space of the file system holding `path`, per mille (`statvfs`); `None` if unknown.
fn disk_used_permille(path: &std::path::Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) writes into the zeroed struct we own; the path is NUL-terminated.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let total = u128::from(stat.f_blocks);
    let free = u128::from(stat.f_bfree);
    if total == 0 {
        return None;
    }
    i64::try_from((total - free.min(total)) * 1000 / total).ok()
}

/// Counts the CommitLog records laid back to back in a pull body: (records, bytes). Stops at
/// the first size that does not fit, so a malformed body never reads out of bounds.
fn count_records(body: &[u8]) -> (u64, u64) {
    let mut pos = 0usize;
    let mut count = 0u64;
    // Each step advances by a positive size, so the loop ends.
    while body.len() - pos >= 4 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&body[pos..pos + 4]);
        let size = i32::from_be_bytes(word);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if size < 4 || size > body.len() - pos {
            break;
        }
        pos += size;
        count += 1;
    }
    (count, pos as u64)
}

/// What [`Instrumented`] keeps of a request after handing it to the dispatcher.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    /// The request code.
    pub code: i32,
    /// The topic of a send (`topic`, or `b` in SEND_MESSAGE_V2) or pull request.
    pub topic: Option<String>,
    /// Body length in bytes.
    pub body_len: usize,
}

impl RequestSummary {
    /// The summary of `request`.
    pub fn of(request: &RemotingCommand) -> Self {
        RequestSummary {
            code: request.code,
            topic: request
                .ext("topic")
                .or_else(|| request.ext("b"))
                .map(str::to_string),
            body_len: request.body.len(),
        }
    }
}

impl RequestObserver for BrokerMetrics {
    type Summary = RequestSummary;

    fn summarize(&self, request: &RemotingCommand) -> RequestSummary {
        RequestSummary::of(request)
    }

    fn observe(
        &self,
        summary: RequestSummary,
        response: Option<&RemotingCommand>,
        elapsed: Duration,
    ) {
        BrokerMetrics::observe(self, &summary, response, elapsed);
    }
}

/// A [`RequestHandler`](tern_common::remoting::RequestHandler) that records every request
/// into [`BrokerMetrics`], then delegates.
pub type Instrumented<H> = tern_common::metrics::Instrumented<H, BrokerMetrics>;

/// Binds `addr` and serves `GET /metrics` for `ctx` until `shutdown` resolves. A bind
/// failure is logged at error level and the broker runs on without metrics.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<BrokerMetrics>,
    ctx: BrokerContext,
    shutdown: impl Future<Output = ()>,
) {
    let render = move || metrics.render(&ctx);
    tern_common::metrics::serve(addr, "tern-broker", Arc::new(render), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(m: &BrokerMetrics) -> String {
        tern_common::metrics::render(&m.registry)
    }

    fn record(size: usize) -> Vec<u8> {
        let mut r = vec![0u8; size];
        r[..4].copy_from_slice(&i32::try_from(size).unwrap().to_be_bytes());
        r
    }

    #[test]
    fn record_counting_walks_sizes_and_stops_at_garbage() {
        let mut body = record(100);
        body.extend(record(60));
        assert_eq!(count_records(&body), (2, 160));
        body.extend([0, 0, 0, 1]); // A size below 4 ends the walk.
        assert_eq!(count_records(&body), (2, 160));
        assert_eq!(count_records(&[0, 0, 1]), (0, 0));
        let mut huge = record(8);
        huge[..4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(count_records(&huge), (0, 0));
    }

    #[test]
    fn sends_and_pulls_count_per_topic() {
        let m = BrokerMetrics::new();
        let mut send =
            RemotingCommand::request_empty(RequestCode::SendMessageV2).with_body(vec![0u8; 1024]);
        send.ext_fields.insert("b".into(), "Orders".into());
        let summary = RequestSummary::of(&send);
        let mut ok = RemotingCommand::response_to(&send, ResponseCode::Success);
        ok.ext_fields.insert("msgId".into(), "A,B,C".into());
        m.observe(&summary, Some(&ok), Duration::from_micros(80));
        let refused = RemotingCommand::response_to(&send, ResponseCode::TopicNotExist);
        m.observe(&summary, Some(&refused), Duration::from_micros(80));

        let mut pull = RemotingCommand::request_empty(RequestCode::PullMessage);
        pull.ext_fields.insert("topic".into(), "Orders".into());
        let mut body = record(200);
        body.extend(record(300));
        let found = RemotingCommand::response_to(&pull, ResponseCode::Success).with_body(body);
        m.observe(
            &RequestSummary::of(&pull),
            Some(&found),
            Duration::from_micros(30),
        );
        m.observe(&RequestSummary::of(&pull), None, Duration::from_micros(30));

        let text = rendered(&m);
        for line in [
            "tern_broker_topic_messages_in_total{topic=\"Orders\"} 3",
            "tern_broker_topic_bytes_in_total{topic=\"Orders\"} 1024",
            "tern_broker_topic_messages_out_total{topic=\"Orders\"} 2",
            "tern_broker_topic_bytes_out_total{topic=\"Orders\"} 500",
            "tern_broker_requests_total{code=\"SEND_MESSAGE_V2\"} 2",
            "tern_broker_requests_total{code=\"PULL_MESSAGE\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn topic_labels_are_bounded() {
        let m = BrokerMetrics::new();
        for i in 0..MAX_TOPIC_LABELS {
            assert_eq!(m.topic_labels(&format!("t{i}")).topic, format!("t{i}"));
        }
        assert_eq!(m.topic_labels("one-too-many").topic, "_other");
        assert_eq!(m.topic_labels("t0").topic, "t0");
    }

    #[test]
    fn disk_use_of_the_temp_dir_is_a_ratio() {
        let permille = disk_used_permille(&std::env::temp_dir()).unwrap();
        assert!((0..=1000).contains(&permille), "{permille}");
    }
}
