//! [`PushConsumer`]: the SDK pulls with long polling and hands batches to a handler
//! (Java's `DefaultMQPushConsumer`, PROTOCOL.md §10.3).
//!
//! Contract:
//! - Clustering consumers subscribe `%RETRY%<group>` automatically; the group's queues are
//!   rebalanced at start, every `rebalance_interval` (20 s) and when a broker sends
//!   NOTIFY_CONSUMER_IDS_CHANGED.
//! - One pull task per owned queue: long-polling PULL_MESSAGE (suspend 15 s, the subscription
//!   in the request, the commit offset piggy-backed); it pauses while the queue's cache holds
//!   `max_cached_messages_per_queue` messages (flow control).
//! - Concurrent mode: batches of `consume_batch_size` run on at most `consume_thread_count`
//!   handlers at once; the committed offset is the smallest unacknowledged one (at-least-once
//!   delivery, no message skipped). A failed batch (ReconsumeLater or `Err`) goes back to the
//!   broker with CONSUMER_SEND_MSG_BACK; if that fails it is re-sent to `%RETRY%<group>`; if
//!   that fails too it is consumed again locally after 5 s.
//! - Orderly mode: a queue is consumed only while this client holds its broker lock
//!   (LOCK_BATCH_MQ, renewed every 20 s, stale after 30 s), by one handler call at a time, in
//!   offset order. `SuspendCurrentQueueAMoment` retries the batch after 1 s, up to
//!   `max_reconsume_times`; then the messages go to the dead-letter queue and consumption
//!   continues. A removed queue is unlocked.
//! - Offsets are committed every 5 s, when a queue is removed and at shutdown (clustering:
//!   UPDATE_CONSUMER_OFFSET; broadcasting: the local offset file).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use tern_common::message::{property_key, retry_topic, Message, MessageExt, SubscriptionExpr};
use tern_common::protocol::body::{ConsumeType, ConsumerData, MqMap, SubscriptionData};
use tern_common::protocol::{ResponseCode, SerializeType};
use tern_common::route::MessageQueue;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::allocate::{AllocateAveragely, AllocateStrategy};
use super::api::{self, PullArgs, PullStatus};
use super::offset_store::OffsetStore;
use super::process_queue::ProcessQueue;
use super::running::{self, CmResult, ConsumeMessageDirectlyResult, ConsumerRunningInfo};
use super::{
    rebalance, restore_retry_topic, ConcurrentHandler, ConsumeConcurrentlyStatus, ConsumeContext,
    ConsumeFrom, ConsumeOrderlyStatus, MessageModel, OrderlyHandler,
};
use crate::config::{now_ms, ClientConfig};
use crate::error::{ClientError, Result};
use crate::instance::{ClientInstance, ConsumerHooks};
use crate::producer::{ProducerInner, SendOptions};

/// A lock older than this is not trusted for orderly consumption (Java
/// `rocketmq.client.rebalance.lockMaxLiveTime`).
const LOCK_MAX_LIVE: Duration = Duration::from_secs(30);

/// Tunables of a push consumer; see the builder methods for meanings and defaults.
#[derive(Debug, Clone)]
struct Settings {
    group: String,
    model: MessageModel,
    consume_from: ConsumeFrom,
    consume_thread_count: usize,
    consume_batch_size: usize,
    pull_batch_size: i32,
    max_cached_messages_per_queue: usize,
    max_reconsume_times: i32,
    suspend_timeout: Duration,
    rebalance_interval: Duration,
    persist_interval: Duration,
    lock_interval: Duration,
    pull_retry_delay: Duration,
    local_retry_delay: Duration,
    orderly_suspend: Duration,
    offset_store_dir: Option<PathBuf>,
}

#[derive(Clone)]
enum Handler {
    Concurrent(Arc<dyn ConcurrentHandler>),
    Orderly(Arc<dyn OrderlyHandler>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Concurrent(_) => "Concurrent",
            Handler::Orderly(_) => "Orderly",
        })
    }
}

/// Builder of a [`PushConsumer`]; see [`PushConsumer::builder`].
#[derive(Debug, Clone)]
pub struct PushConsumerBuilder {
    config: ClientConfig,
    settings: Settings,
    subscriptions: Vec<(String, String)>,
    sql_subscriptions: Vec<(String, String)>,
    handler: Option<Handler>,
    strategy: Arc<dyn AllocateStrategy>,
}

impl PushConsumerBuilder {
    /// NameServer addresses, `;`-separated.
    pub fn namesrv_addr(mut self, addrs: &str) -> Self {
        self.config.set_namesrv_addr(addrs);
        self
    }

    /// The consumer group (required).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.settings.group = group.into();
        self
    }

    /// Subscribes `topic` with a TAG expression (`*`, `TagA || TagB`). May be called for
    /// several topics.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.push((topic.into(), expression.into()));
        self
    }

    /// Subscribes `topic` with a SQL92 expression over message properties (RocketMQ's
    /// `MessageSelector.bySql`), e.g. `a > 5 AND TAGS = 'T1'`. The broker filters (it needs
    /// `enable_property_filter`); the client does no tag re-check. [`PushConsumer::start`]
    /// asks a broker of the topic to compile it (CHECK_CLIENT_CONFIG) and fails with
    /// [`ClientError::Broker`] code 23 (SUBSCRIPTION_PARSE_FAILED) if it does not.
    /// A topic subscribed both ways keeps its SQL92 subscription.
    pub fn subscribe_sql(
        mut self,
        topic: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        self.sql_subscriptions
            .push((topic.into(), expression.into()));
        self
    }

    /// Clustering (default) or broadcasting.
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.settings.model = model;
        self
    }

    /// Where a queue without a stored offset starts. Default [`ConsumeFrom::Last`].
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.settings.consume_from = from;
        self
    }

    /// Maximum concurrent handler calls (concurrent mode). Default 20.
    pub fn consume_thread_count(mut self, n: usize) -> Self {
        self.settings.consume_thread_count = n.max(1);
        self
    }

    /// Messages per handler call. Default 1.
    pub fn consume_batch_size(mut self, n: usize) -> Self {
        self.settings.consume_batch_size = n.max(1);
        self
    }

    /// Messages per pull request. Default 32.
    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.settings.pull_batch_size = n.max(1);
        self
    }

    /// Cached messages per queue at which pulling pauses. Default 1000.
    pub fn max_cached_messages_per_queue(mut self, n: usize) -> Self {
        self.settings.max_cached_messages_per_queue = n.max(1);
        self
    }

    /// Redeliveries before a message goes to the dead-letter queue. Default 16.
    pub fn max_reconsume_times(mut self, n: i32) -> Self {
        self.settings.max_reconsume_times = n;
        self
    }

    /// Long-polling hold time asked of the broker. Default 15 s.
    pub fn suspend_timeout(mut self, d: Duration) -> Self {
        self.settings.suspend_timeout = d;
        self
    }

    /// Period of the rebalance. Default 20 s.
    pub fn rebalance_interval(mut self, d: Duration) -> Self {
        self.settings.rebalance_interval = d;
        self
    }

    /// Period of offset commits. Default 5 s.
    pub fn persist_interval(mut self, d: Duration) -> Self {
        self.settings.persist_interval = d;
        self
    }

    /// Directory of broadcasting offset files. Default `~/.tern_offsets`; the file is
    /// `<dir>/<instance name>/<group>/offsets.json`.
    pub fn offset_store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.offset_store_dir = Some(dir.into());
        self
    }

    /// Delay of a local retry when a failed batch could not be sent back. Default 5 s.
    pub fn local_retry_delay(mut self, d: Duration) -> Self {
        self.settings.local_retry_delay = d;
        self
    }

    /// Pause before an orderly batch is retried. Default 1 s.
    pub fn orderly_suspend(mut self, d: Duration) -> Self {
        self.settings.orderly_suspend = d;
        self
    }

    /// The queue allocation strategy. Default [`AllocateAveragely`].
    pub fn allocate_strategy(mut self, s: impl AllocateStrategy) -> Self {
        self.strategy = Arc::new(s);
        self
    }

    /// Header and body encoding; MessagePack by default, JSON for Apache RocketMQ.
    pub fn serialize_type(mut self, t: SerializeType) -> Self {
        self.config.serialize_type = t;
        self
    }

    /// Instance name (client id and offset-file path).
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.config.instance_name = name.into();
        self
    }

    /// Replaces the whole shared client configuration.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Consumes with `handler`, several batches at once.
    pub fn register_concurrent(mut self, handler: impl ConcurrentHandler) -> Self {
        self.handler = Some(Handler::Concurrent(Arc::new(handler)));
        self
    }

    /// Consumes with `handler`, one batch per queue at a time, in queue order.
    pub fn register_orderly(mut self, handler: impl OrderlyHandler) -> Self {
        self.handler = Some(Handler::Orderly(Arc::new(handler)));
        self
    }

    /// Validates the settings and creates the consumer (not started).
    ///
    /// # Errors
    /// [`ClientError::Config`] for a missing group, subscription or handler.
    pub fn build(self) -> Result<PushConsumer> {
        let s = self.settings;
        if s.group.is_empty() {
            return Err(ClientError::Config("consumer group not set".into()));
        }
        if self.subscriptions.is_empty() && self.sql_subscriptions.is_empty() {
            return Err(ClientError::Config("no subscription".into()));
        }
        let handler = self
            .handler
            .ok_or_else(|| ClientError::Config("no handler registered".into()))?;
        self.config.validate()?;
        let mut subscriptions = BTreeMap::new();
        let version = now_ms();
        let mut sql_topics = BTreeSet::new();
        for (topic, expr) in self.subscriptions {
            subscriptions.insert(topic, (SubscriptionExpr::parse_tag(&expr), version));
        }
        for (topic, expr) in self.sql_subscriptions {
            // No tags: the client keeps every message the broker selected.
            let expr = SubscriptionExpr::from_parts(expr, Vec::new(), Vec::new());
            sql_topics.insert(topic.clone());
            subscriptions.insert(topic, (expr, version));
        }
        if s.model == MessageModel::Clustering {
            subscriptions.insert(retry_topic(&s.group), (SubscriptionExpr::all(), version));
        }
        let offset_store = match s.model {
            MessageModel::Clustering => OffsetStore::remote(),
            MessageModel::Broadcasting => {
                let dir = s
                    .offset_store_dir
                    .clone()
                    .unwrap_or_else(default_offset_dir);
                OffsetStore::local(
                    dir.join(&self.config.instance_name)
                        .join(&s.group)
                        .join("offsets.json"),
                )?
            }
        };
        Ok(PushConsumer {
            inner: Arc::new(PushInner {
                config: self.config,
                permits: Arc::new(Semaphore::new(s.consume_thread_count)),
                settings: s,
                subscriptions,
                sql_topics,
                handler,
                strategy: self.strategy,
                offset_store,
                queues: Mutex::new(HashMap::new()),
                rebalance_now: Notify::new(),
                token: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                runtime: Mutex::new(None),
                started_ms: AtomicI64::new(0),
            }),
        })
    }
}

/// The home-relative default directory of broadcasting offset files.
fn default_offset_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(".tern_offsets")
}

/// A push consumer; cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), tern_client::ClientError> {
/// use tern_client::consumer::{ConsumeConcurrentlyStatus, PushConsumer};
/// let consumer = PushConsumer::builder()
///     .namesrv_addr("127.0.0.1:9876")
///     .group("cg")
///     .subscribe("TopicA", "TagA || TagB")
///     .register_concurrent(|msgs: Vec<tern_common::message::MessageExt>, _ctx| async move {
///         for m in &msgs {
///             println!("{}", String::from_utf8_lossy(&m.message.body));
///         }
///         Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
///     })
///     .build()?;
/// consumer.start().await?;
/// # consumer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PushConsumer {
    inner: Arc<PushInner>,
}

/// The running parts, created by `start`.
#[derive(Debug, Clone)]
struct Runtime {
    instance: Arc<ClientInstance>,
    retry_producer: Arc<ProducerInner>,
}

struct PushInner {
    config: ClientConfig,
    settings: Settings,
    /// Topic → (expression, subVersion), including `%RETRY%<group>` in clustering mode.
    subscriptions: BTreeMap<String, (SubscriptionExpr, i64)>,
    /// Topics subscribed with SQL92 (the others use TAG).
    sql_topics: BTreeSet<String>,
    handler: Handler,
    strategy: Arc<dyn AllocateStrategy>,
    offset_store: OffsetStore,
    queues: Mutex<HashMap<MessageQueue, Arc<QueueEntry>>>,
    permits: Arc<Semaphore>,
    rebalance_now: Notify,
    token: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    runtime: Mutex<Option<Runtime>>,
    /// When [`PushConsumer::start`] ran, ms since the epoch (0 before).
    started_ms: AtomicI64,
}

impl std::fmt::Debug for PushInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer")
            .field("group", &self.settings.group)
            .field("model", &self.settings.model)
            .field("handler", &self.handler)
            .finish()
    }
}

/// One owned queue: its cache and tasks.
struct QueueEntry {
    mq: MessageQueue,
    pq: Mutex<ProcessQueue<MessageExt>>,
    next_offset: AtomicI64,
    dropped: AtomicBool,
    cancel: CancellationToken,
    /// Wakes the orderly consume task when messages arrive.
    wake: Notify,
    /// Held while an orderly batch is being consumed (one handler call per queue).
    consume_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// When the last pull of this queue answered, ms since the epoch (0 = never).
    last_pull_ms: AtomicI64,
    /// When a handler last finished a batch of this queue, ms since the epoch (0 = never).
    last_consume_ms: AtomicI64,
}

impl QueueEntry {
    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}

/// Connects broker requests to the consumer without keeping it alive.
struct Hooks(Weak<PushInner>);

impl ConsumerHooks for Hooks {
    fn consumer_data(&self) -> ConsumerData {
        self.0
            .upgrade()
            .map(|i| i.consumer_data())
            .unwrap_or_default()
    }

    fn topics(&self) -> Vec<String> {
        self.0
            .upgrade()
            .map(|i| i.subscriptions.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn trigger_rebalance(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.rebalance_now.notify_one();
        }
    }

    fn reset_offset(&self, topic: &str, offsets: BTreeMap<MessageQueue, i64>) {
        if let Some(inner) = self.0.upgrade() {
            let topic = topic.to_string();
            tokio::spawn(async move { inner.reset_offset(&topic, offsets).await });
        }
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        self.0
            .upgrade()
            .map(|i| i.running_info())
            .unwrap_or_default()
    }

    fn consume_directly(
        &self,
        msg: MessageExt,
        broker_name: String,
    ) -> Option<BoxFuture<'static, ConsumeMessageDirectlyResult>> {
        let inner = self.0.upgrade()?;
        let handler = inner.handler.clone();
        let group = inner.settings.group.clone();
        Some(Box::pin(async move {
            consume_directly(handler, &group, msg, broker_name).await
        }))
    }

    fn consume_status(&self, topic: &str) -> MqMap<i64> {
        self.0
            .upgrade()
            .map(|i| i.offset_store.topic_offsets(topic))
            .unwrap_or_default()
    }
}

/// CONSUME_MESSAGE_DIRECTLY (Java `ConsumeMessageConcurrentlyService` / `...OrderlyService`
/// `consumeMessageDirectly`): runs one message through `handler` outside the queue machinery
/// (no offsets, no send-back), in the queue `(topic, broker_name, queue id)` of the message
/// with its retry topic restored, and reports what the handler did. A panic or an error of
/// the handler is `CR_THROW_EXCEPTION` with the reason in the remark.
async fn consume_directly(
    handler: Handler,
    group: &str,
    msg: MessageExt,
    broker_name: String,
) -> ConsumeMessageDirectlyResult {
    let mut msg = restore_retry_topic(msg, group);
    let order = matches!(handler, Handler::Orderly(_));
    let start = std::time::Instant::now();
    let result = |consume_result, remark: Option<String>| ConsumeMessageDirectlyResult {
        order,
        auto_commit: true,
        consume_result,
        remark,
        spent_time_mills: i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    if let Err(err) = api::decompress(&mut msg) {
        return result(CmResult::CrThrowException, Some(err.to_string()));
    }
    let ctx = ConsumeContext {
        message_queue: MessageQueue::new(msg.message.topic.clone(), broker_name, msg.queue_id),
    };
    let outcome = match handler {
        Handler::Concurrent(h) => std::panic::AssertUnwindSafe(h.consume(vec![msg], ctx))
            .catch_unwind()
            .await
            .map(|r| {
                r.map(|status| match status {
                    ConsumeConcurrentlyStatus::ConsumeSuccess => CmResult::CrSuccess,
                    ConsumeConcurrentlyStatus::ReconsumeLater => CmResult::CrLater,
                })
            }),
        Handler::Orderly(h) => std::panic::AssertUnwindSafe(h.consume(vec![msg], ctx))
            .catch_unwind()
            .await
            .map(|r| {
                r.map(|status| match status {
                    ConsumeOrderlyStatus::Success => CmResult::CrSuccess,
                    ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => CmResult::CrLater,
                })
            }),
    };
    match outcome {
        Ok(Ok(cr)) => result(cr, None),
        Ok(Err(err)) => result(CmResult::CrThrowException, Some(err.to_string())),
        Err(_) => result(
            CmResult::CrThrowException,
            Some("the handler panicked".to_string()),
        ),
    }
}

impl PushConsumer {
    /// A builder with Java's defaults (clustering, from last offset, 20 handlers, batch 1,
    /// pull 32, 1000 cached per queue, 16 reconsumes, MessagePack).
    pub fn builder() -> PushConsumerBuilder {
        PushConsumerBuilder {
            config: ClientConfig::default(),
            settings: Settings {
                group: String::new(),
                model: MessageModel::Clustering,
                consume_from: ConsumeFrom::Last,
                consume_thread_count: 20,
                consume_batch_size: 1,
                pull_batch_size: 32,
                max_cached_messages_per_queue: 1000,
                max_reconsume_times: 16,
                suspend_timeout: Duration::from_secs(15),
                rebalance_interval: Duration::from_secs(20),
                persist_interval: Duration::from_secs(5),
                lock_interval: Duration::from_secs(20),
                pull_retry_delay: Duration::from_secs(1),
                local_retry_delay: Duration::from_secs(5),
                orderly_suspend: Duration::from_secs(1),
                offset_store_dir: None,
            },
            subscriptions: Vec::new(),
            sql_subscriptions: Vec::new(),
            handler: None,
            strategy: Arc::new(AllocateAveragely),
        }
    }

    /// Starts consuming: routes, heartbeat, first rebalance, background tasks.
    ///
    /// # Errors
    /// [`ClientError::Config`] if already started or the group is registered twice.
    pub async fn start(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.runtime.lock().is_some() || inner.token.is_cancelled() {
            return Err(ClientError::Config("consumer already started".into()));
        }
        let instance = ClientInstance::start(inner.config.clone())?;
        instance.register_consumer(
            &inner.settings.group,
            Arc::new(Hooks(Arc::downgrade(inner))),
        )?;
        let retry_producer = Arc::new(ProducerInner::internal(
            instance.clone(),
            tern_common::message::CLIENT_INNER_PRODUCER_GROUP,
        ));
        *inner.runtime.lock() = Some(Runtime {
            instance: instance.clone(),
            retry_producer,
        });
        inner.started_ms.store(now_ms(), Ordering::Relaxed);
        for topic in inner.subscriptions.keys() {
            if let Err(err) = instance.update_route(topic).await {
                debug!(%topic, error = %err, "no route yet");
            }
        }
        if let Err(err) = inner.check_sql_subscriptions(&instance).await {
            *inner.runtime.lock() = None;
            instance.unregister_consumer(&inner.settings.group);
            instance.shutdown().await;
            return Err(err);
        }
        instance.heartbeat_if_brokers_changed().await;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(inner.clone().rebalance_loop()));
        tasks.push(tokio::spawn(inner.clone().persist_loop()));
        if matches!(inner.handler, Handler::Orderly(_))
            && inner.settings.model == MessageModel::Clustering
        {
            tasks.push(tokio::spawn(inner.clone().lock_loop()));
        }
        inner.tasks.lock().extend(tasks);
        info!(group = %inner.settings.group, client_id = %instance.client_id, "push consumer started");
        Ok(())
    }

    /// Stops pulling, waits (up to 10 s) for running handlers, commits offsets, unlocks
    /// orderly queues, unregisters from the brokers and closes connections.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.token.is_cancelled() {
            return;
        }
        inner.token.cancel();
        super::join_tasks(&inner.tasks).await;
        let entries: Vec<Arc<QueueEntry>> = inner.queues.lock().values().cloned().collect();
        for e in &entries {
            e.cancel.cancel();
            super::join_tasks(&e.tasks).await;
        }
        // Running handlers hold permits; taking every permit waits for them.
        let all = u32::try_from(inner.settings.consume_thread_count).unwrap_or(u32::MAX);
        let _ =
            tokio::time::timeout(Duration::from_secs(10), inner.permits.acquire_many(all)).await;
        let runtime = inner.runtime.lock().clone();
        if let Some(rt) = runtime {
            inner.persist_all(&rt.instance, false).await;
            if matches!(inner.handler, Handler::Orderly(_)) {
                let mqs: Vec<MessageQueue> = entries.iter().map(|e| e.mq.clone()).collect();
                inner.unlock(&rt.instance, mqs).await;
            }
            rt.instance
                .unregister_client(None, Some(&inner.settings.group))
                .await;
            rt.instance.unregister_consumer(&inner.settings.group);
            rt.instance.shutdown().await;
        }
        inner.queues.lock().clear();
        info!(group = %inner.settings.group, "push consumer stopped");
    }

    /// The queues this consumer currently owns, sorted.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self.inner.queues.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// The client id (after [`start`](Self::start)).
    pub fn client_id(&self) -> Option<String> {
        self.inner
            .runtime
            .lock()
            .as_ref()
            .map(|r| r.instance.client_id.clone())
    }

    /// Asks for a rebalance now (normally driven by timers and the broker).
    pub fn trigger_rebalance(&self) {
        self.inner.rebalance_now.notify_one();
    }
}

impl PushInner {
    fn runtime(&self) -> Option<Runtime> {
        self.runtime.lock().clone()
    }

    /// CHECK_CLIENT_CONFIG for every SQL92 subscription (PROTOCOL.md §10.3 step 3).
    async fn check_sql_subscriptions(&self, instance: &ClientInstance) -> Result<()> {
        for (topic, (expr, version)) in &self.subscriptions {
            if self.sql_topics.contains(topic) {
                let sub = subscription_data(topic, expr, *version, true);
                api::check_client_config(instance, &self.settings.group, &sub).await?;
            }
        }
        Ok(())
    }

    fn is_orderly(&self) -> bool {
        matches!(self.handler, Handler::Orderly(_))
    }

    /// This consumer's GET_CONSUMER_RUNNING_INFO answer (Java
    /// `DefaultMQPushConsumerImpl.consumerRunningInfo`): settings under Java's property
    /// names, the subscriptions and one snapshot per owned queue.
    fn running_info(&self) -> ConsumerRunningInfo {
        let s = &self.settings;
        let mut p = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        put("consumerGroup", s.group.clone());
        put("messageModel", s.model.wire().as_str().to_string());
        put(
            "consumeFromWhere",
            s.consume_from.wire().as_str().to_string(),
        );
        if let ConsumeFrom::Timestamp(ts) = s.consume_from {
            put("consumeTimestamp", ts.to_string());
        }
        put("consumeThreadMin", s.consume_thread_count.to_string());
        put("consumeThreadMax", s.consume_thread_count.to_string());
        put(
            "consumeMessageBatchMaxSize",
            s.consume_batch_size.to_string(),
        );
        put("pullBatchSize", s.pull_batch_size.to_string());
        put(
            "pullThresholdForQueue",
            s.max_cached_messages_per_queue.to_string(),
        );
        put("maxReconsumeTimes", s.max_reconsume_times.to_string());
        put(
            "suspendCurrentQueueTimeMillis",
            s.orderly_suspend.as_millis().to_string(),
        );
        put(
            running::PROP_CONSUME_TYPE,
            ConsumeType::Passively.as_str().to_string(),
        );
        put(running::PROP_CONSUME_ORDERLY, self.is_orderly().to_string());
        put(
            running::PROP_THREADPOOL_CORE_SIZE,
            s.consume_thread_count.to_string(),
        );
        put(
            running::PROP_CONSUMER_START_TIMESTAMP,
            self.started_ms.load(Ordering::Relaxed).to_string(),
        );
        let entries: Vec<Arc<QueueEntry>> = self.queues.lock().values().cloned().collect();
        let mq_table = entries
            .iter()
            .map(|e| {
                let mut info = e.pq.lock().info(|m| m.message.body.len());
                info.commit_offset = self.offset_store.read(&e.mq).unwrap_or(-1);
                info.last_pull_timestamp = e.last_pull_ms.load(Ordering::Relaxed);
                info.last_consume_timestamp = e.last_consume_ms.load(Ordering::Relaxed);
                (e.mq.clone(), info)
            })
            .collect();
        ConsumerRunningInfo {
            properties: p,
            subscription_set: self.consumer_data().subscription_data_set,
            mq_table,
            ..Default::default()
        }
    }

    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            group_name: self.settings.group.clone(),
            consume_type: ConsumeType::Passively,
            message_model: self.settings.model.wire(),
            consume_from_where: self.settings.consume_from.wire(),
            subscription_data_set: self
                .subscriptions
                .iter()
                .map(|(topic, (expr, version))| {
                    subscription_data(topic, expr, *version, self.sql_topics.contains(topic))
                })
                .collect(),
            unit_mode: false,
        }
    }

    // ----- rebalance ---------------------------------------------------------------

    async fn rebalance_loop(self: Arc<Self>) {
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = self.rebalance_now.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            let retry_soon = self.rebalance().await;
            delay = if retry_soon {
                Duration::from_millis(500).min(self.settings.rebalance_interval)
            } else {
                self.settings.rebalance_interval
            };
        }
    }

    /// One rebalance of every subscription; true if part of it should be retried soon.
    async fn rebalance(self: &Arc<Self>) -> bool {
        let Some(rt) = self.runtime() else {
            return false;
        };
        let mut retry_soon = false;
        for topic in self.subscriptions.keys() {
            if self.token.is_cancelled() {
                return false;
            }
            let assigned = match rebalance::assigned_queues(
                &rt.instance,
                &self.settings.group,
                topic,
                self.settings.model,
                self.strategy.as_ref(),
            )
            .await
            {
                Ok(q) => q,
                Err(err) => {
                    debug!(%topic, error = %err, "rebalance of topic skipped");
                    retry_soon = true;
                    continue;
                }
            };
            retry_soon |= self.update_queues(&rt, topic, assigned).await;
        }
        retry_soon
    }

    /// Drops queues of `topic` no longer assigned and starts the new ones; true if a new
    /// queue could not start yet (lock held elsewhere, offset unknown).
    async fn update_queues(
        self: &Arc<Self>,
        rt: &Runtime,
        topic: &str,
        assigned: Vec<MessageQueue>,
    ) -> bool {
        let assigned: BTreeSet<MessageQueue> = assigned.into_iter().collect();
        let removed: Vec<Arc<QueueEntry>> = {
            let queues = self.queues.lock();
            queues
                .values()
                .filter(|e| e.mq.topic == topic && !assigned.contains(&e.mq))
                .cloned()
                .collect()
        };
        for entry in removed {
            self.remove_queue(rt, &entry).await;
        }
        let mut new: BTreeSet<MessageQueue> = {
            let queues = self.queues.lock();
            assigned
                .iter()
                .filter(|mq| !queues.contains_key(*mq))
                .cloned()
                .collect()
        };
        if new.is_empty() {
            return false;
        }
        let mut retry_soon = false;
        if self.is_orderly() && self.settings.model == MessageModel::Clustering {
            let locked = self.lock(&rt.instance, new.iter().cloned().collect()).await;
            if locked.len() < new.len() {
                retry_soon = true;
            }
            new.retain(|mq| locked.contains(mq));
        }
        for mq in new {
            let offset = match rebalance::start_offset(
                &rt.instance,
                &self.settings.group,
                &mq,
                &self.offset_store,
                self.settings.consume_from,
            )
            .await
            {
                Ok(o) => o,
                Err(err) => {
                    debug!(%mq, error = %err, "start offset unknown; retrying later");
                    retry_soon = true;
                    continue;
                }
            };
            self.offset_store.update(&mq, offset, false);
            let mut pq = ProcessQueue::default();
            if self.is_orderly() {
                pq.locked = true;
                pq.last_lock = Some(std::time::Instant::now());
            }
            let entry = Arc::new(QueueEntry {
                mq: mq.clone(),
                pq: Mutex::new(pq),
                next_offset: AtomicI64::new(offset),
                dropped: AtomicBool::new(false),
                cancel: self.token.child_token(),
                wake: Notify::new(),
                consume_lock: tokio::sync::Mutex::new(()),
                tasks: Mutex::new(Vec::new()),
                last_pull_ms: AtomicI64::new(0),
                last_consume_ms: AtomicI64::new(0),
            });
            let mut tasks = vec![tokio::spawn(self.clone().pull_loop(entry.clone()))];
            if self.is_orderly() {
                tasks.push(tokio::spawn(self.clone().orderly_loop(entry.clone())));
            }
            entry.tasks.lock().extend(tasks);
            info!(%mq, offset, "queue assigned");
            self.queues.lock().insert(mq, entry);
        }
        retry_soon
    }

    /// Stops consuming `entry`'s queue: commits its offset, unlocks it (orderly).
    async fn remove_queue(&self, rt: &Runtime, entry: &Arc<QueueEntry>) {
        entry.dropped.store(true, Ordering::Release);
        entry.cancel.cancel();
        self.queues.lock().remove(&entry.mq);
        // Let a running orderly batch finish before giving the lock away.
        let guard = tokio::time::timeout(Duration::from_secs(1), entry.consume_lock.lock()).await;
        self.persist_queue(&rt.instance, &entry.mq, false).await;
        self.offset_store.remove(&entry.mq);
        if self.is_orderly() && self.settings.model == MessageModel::Clustering {
            self.unlock(&rt.instance, vec![entry.mq.clone()]).await;
        }
        drop(guard);
        info!(mq = %entry.mq, "queue released");
    }

    async fn reset_offset(self: &Arc<Self>, topic: &str, offsets: BTreeMap<MessageQueue, i64>) {
        let Some(rt) = self.runtime() else { return };
        info!(%topic, queues = offsets.len(), "offset reset requested by broker");
        for (mq, offset) in offsets {
            if mq.topic != topic {
                continue;
            }
            let entry = self.queues.lock().get(&mq).cloned();
            if let Some(entry) = entry {
                entry.dropped.store(true, Ordering::Release);
                entry.cancel.cancel();
                self.queues.lock().remove(&mq);
            }
            self.offset_store.update(&mq, offset, false);
            self.persist_queue(&rt.instance, &mq, false).await;
            self.offset_store.remove(&mq);
        }
        self.rebalance_now.notify_one();
    }

    // ----- locks (orderly) ------------------------------------------------------------

    /// Locks `mqs` on their brokers; returns those now locked by this client.
    async fn lock(
        &self,
        instance: &ClientInstance,
        mqs: Vec<MessageQueue>,
    ) -> BTreeSet<MessageQueue> {
        let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        for mq in mqs {
            by_broker
                .entry(mq.broker_name.clone())
                .or_default()
                .insert(mq);
        }
        let mut locked = BTreeSet::new();
        for (broker, set) in by_broker {
            let Some(addr) = instance.find_master(&broker) else {
                continue;
            };
            match api::lock_batch(instance, &addr, &self.settings.group, set).await {
                Ok(ok) => locked.extend(ok),
                Err(err) => debug!(%broker, error = %err, "lock failed"),
            }
        }
        locked
    }

    async fn unlock(&self, instance: &ClientInstance, mqs: Vec<MessageQueue>) {
        let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        for mq in mqs {
            by_broker
                .entry(mq.broker_name.clone())
                .or_default()
                .insert(mq);
        }
        for (broker, set) in by_broker {
            let Some(addr) = instance.find_master(&broker) else {
                continue;
            };
            if let Err(err) = api::unlock_batch(instance, &addr, &self.settings.group, set).await {
                debug!(%broker, error = %err, "unlock failed");
            }
        }
    }

    async fn lock_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = tokio::time::sleep(self.settings.lock_interval) => {}
            }
            let Some(rt) = self.runtime() else { return };
            let entries: Vec<Arc<QueueEntry>> = self.queues.lock().values().cloned().collect();
            let locked = self
                .lock(&rt.instance, entries.iter().map(|e| e.mq.clone()).collect())
                .await;
            let now = std::time::Instant::now();
            for e in entries {
                let mut pq = e.pq.lock();
                if locked.contains(&e.mq) {
                    pq.locked = true;
                    pq.last_lock = Some(now);
                } else {
                    pq.locked = false;
                }
                drop(pq);
                e.wake.notify_one();
            }
        }
    }

    // ----- offsets ---------------------------------------------------------------------

    async fn persist_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = tokio::time::sleep(self.settings.persist_interval) => {}
            }
            if let Some(rt) = self.runtime() {
                self.persist_all(&rt.instance, true).await;
            }
        }
    }

    async fn persist_all(&self, instance: &ClientInstance, oneway: bool) {
        if self.offset_store.is_local() {
            if let Err(err) = self.offset_store.persist_local() {
                warn!(error = %err, "cannot write the local offset file");
            }
            return;
        }
        let owned: Vec<MessageQueue> = self.queues.lock().keys().cloned().collect();
        for mq in owned {
            self.persist_queue(instance, &mq, oneway).await;
        }
    }

    async fn persist_queue(&self, instance: &ClientInstance, mq: &MessageQueue, oneway: bool) {
        if self.offset_store.is_local() {
            if let Err(err) = self.offset_store.persist_local() {
                warn!(error = %err, "cannot write the local offset file");
            }
            return;
        }
        let Some(offset) = self.offset_store.read(mq) else {
            return;
        };
        let Some(addr) = instance.find_master(&mq.broker_name) else {
            return;
        };
        if let Err(err) =
            api::update_consumer_offset(instance, &addr, &self.settings.group, mq, offset, oneway)
                .await
        {
            debug!(%mq, error = %err, "offset commit failed");
        }
    }

    // ----- pulling -----------------------------------------------------------------------

    async fn pull_loop(self: Arc<Self>, entry: Arc<QueueEntry>) {
        let Some(rt) = self.runtime() else { return };
        let Some((expr, sub_version)) = self.subscriptions.get(&entry.mq.topic).cloned() else {
            return;
        };
        let clustering = self.settings.model == MessageModel::Clustering;
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                tokio::select! {
                    _ = entry.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = Duration::ZERO;
            }
            if entry.cancel.is_cancelled() || entry.is_dropped() {
                return;
            }
            if entry.pq.lock().len() >= self.settings.max_cached_messages_per_queue {
                // Flow control: the handler is behind; let it catch up.
                backoff = Duration::from_millis(50);
                continue;
            }
            let addr = match rt
                .instance
                .find_master_or_refresh(&entry.mq.broker_name, &entry.mq.topic)
                .await
            {
                Ok(a) => a,
                Err(_) => {
                    backoff = self.settings.pull_retry_delay;
                    continue;
                }
            };
            let commit_offset = if clustering {
                self.offset_store.read(&entry.mq).unwrap_or(0)
            } else {
                0
            };
            let mut sys_flag = api::PULL_FLAG_SUSPEND | api::PULL_FLAG_SUBSCRIPTION;
            if commit_offset > 0 {
                sys_flag |= api::PULL_FLAG_COMMIT_OFFSET;
            }
            let offset = entry.next_offset.load(Ordering::Acquire);
            let args = PullArgs {
                group: &self.settings.group,
                mq: &entry.mq,
                offset,
                max_msgs: self.settings.pull_batch_size,
                sys_flag,
                commit_offset,
                suspend_timeout: self.settings.suspend_timeout,
                subscription: expr.sub_string(),
                sub_version,
            };
            let timeout = self.settings.suspend_timeout + Duration::from_secs(15);
            let expression_type = api::expression_type(self.sql_topics.contains(&entry.mq.topic));
            let result = tokio::select! {
                _ = entry.cancel.cancelled() => return,
                r = api::pull_typed(&rt.instance, &addr, &args, &expr, expression_type, timeout) => r,
            };
            let result = match result {
                Ok(r) => r,
                Err(err) => {
                    debug!(mq = %entry.mq, error = %err, "pull failed");
                    if matches!(err, ClientError::Remoting { .. }) {
                        // The broker may be restarting: the next rebalance makes sure the new
                        // process knows this client (heartbeat) as soon as it answers.
                        self.rebalance_now.notify_one();
                    }
                    backoff = if err.response_code() == Some(i32::from(ResponseCode::FlowControl)) {
                        Duration::from_millis(20)
                    } else {
                        self.settings.pull_retry_delay
                    };
                    continue;
                }
            };
            entry.last_pull_ms.store(now_ms(), Ordering::Relaxed);
            if entry.is_dropped() {
                return;
            }
            match result.status {
                PullStatus::Found | PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                    entry
                        .next_offset
                        .store(result.next_begin_offset, Ordering::Release);
                    if result.messages.is_empty() {
                        // Nothing to consume up to next_begin_offset: the committed offset
                        // may move there once the cache is empty (Java's correctTagsOffset).
                        if entry.pq.lock().len() == 0 {
                            self.offset_store
                                .update(&entry.mq, result.next_begin_offset, true);
                        }
                        continue;
                    }
                    self.dispatch(&entry, result.messages);
                }
                PullStatus::OffsetIllegal => {
                    warn!(mq = %entry.mq, offset, next = result.next_begin_offset, "pull offset moved");
                    entry.dropped.store(true, Ordering::Release);
                    self.offset_store
                        .update(&entry.mq, result.next_begin_offset, false);
                    self.persist_queue(&rt.instance, &entry.mq, false).await;
                    self.offset_store.remove(&entry.mq);
                    self.queues.lock().remove(&entry.mq);
                    self.rebalance_now.notify_one();
                    return;
                }
            }
        }
    }

    /// Caches pulled messages and starts their consumption.
    fn dispatch(self: &Arc<Self>, entry: &Arc<QueueEntry>, msgs: Vec<MessageExt>) {
        entry
            .pq
            .lock()
            .put(msgs.iter().map(|m| (m.queue_offset, m.clone())));
        match &self.handler {
            Handler::Orderly(_) => entry.wake.notify_one(),
            Handler::Concurrent(_) => {
                for chunk in msgs.chunks(self.settings.consume_batch_size) {
                    tokio::spawn(self.clone().consume_boxed(entry.clone(), chunk.to_vec()));
                }
            }
        }
    }

    // ----- concurrent consumption -------------------------------------------------------

    /// [`consume_concurrently`](Self::consume_concurrently) as a boxed `Send` future: the local
    /// retry spawns it from inside itself, and the box breaks the recursive future type.
    fn consume_boxed(
        self: Arc<Self>,
        entry: Arc<QueueEntry>,
        msgs: Vec<MessageExt>,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.consume_concurrently(entry, msgs))
    }

    async fn consume_concurrently(self: Arc<Self>, entry: Arc<QueueEntry>, msgs: Vec<MessageExt>) {
        let Handler::Concurrent(handler) = &self.handler else {
            return;
        };
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        if entry.is_dropped() {
            return;
        }
        let view: Vec<MessageExt> = msgs
            .iter()
            .cloned()
            .map(|m| restore_retry_topic(m, &self.settings.group))
            .collect();
        let ctx = ConsumeContext {
            message_queue: entry.mq.clone(),
        };
        let outcome = std::panic::AssertUnwindSafe(handler.consume(view, ctx))
            .catch_unwind()
            .await;
        entry.last_consume_ms.store(now_ms(), Ordering::Relaxed);
        let success = matches!(outcome, Ok(Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)));
        if !success {
            match &outcome {
                Ok(Err(err)) => debug!(mq = %entry.mq, error = %err, "handler failed"),
                Err(_) => warn!(mq = %entry.mq, "handler panicked"),
                _ => {}
            }
        }
        if entry.is_dropped() {
            // The queue moved to another consumer; it will redeliver what was not committed.
            return;
        }
        let mut acked: Vec<i64> = Vec::with_capacity(msgs.len());
        let mut retry_locally = Vec::new();
        if success || self.settings.model == MessageModel::Broadcasting {
            acked.extend(msgs.iter().map(|m| m.queue_offset));
        } else if let Some(rt) = self.runtime() {
            for msg in msgs {
                if self.send_back(&rt, &entry.mq, &msg, 0).await {
                    acked.push(msg.queue_offset);
                } else {
                    retry_locally.push(msg);
                }
            }
        }
        self.ack(&entry, acked);
        if !retry_locally.is_empty() {
            let inner = self.clone();
            let entry = entry.clone();
            let delay = self.settings.local_retry_delay;
            tokio::spawn(async move {
                tokio::select! {
                    _ = entry.cancel.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {
                        let retried: Vec<MessageExt> = retry_locally
                            .into_iter()
                            .map(|mut m| {
                                m.reconsume_times += 1;
                                m
                            })
                            .collect();
                        inner.consume_boxed(entry, retried).await;
                    }
                }
            });
        }
    }

    fn ack(&self, entry: &QueueEntry, offsets: Vec<i64>) {
        if offsets.is_empty() {
            return;
        }
        let commit = entry.pq.lock().remove(offsets);
        if let Some(offset) = commit {
            if !entry.is_dropped() {
                self.offset_store.update(&entry.mq, offset, true);
            }
        }
    }

    /// Returns a failed message to the broker for later redelivery (or to the dead-letter
    /// queue with `delay_level` -1): CONSUMER_SEND_MSG_BACK, else a normal send to
    /// `%RETRY%<group>` (PROTOCOL.md §6.3). False if both failed.
    async fn send_back(
        &self,
        rt: &Runtime,
        mq: &MessageQueue,
        msg: &MessageExt,
        delay_level: i32,
    ) -> bool {
        let group = &self.settings.group;
        let max = self.settings.max_reconsume_times;
        let addr = rt
            .instance
            .find_master(&mq.broker_name)
            .unwrap_or_else(|| msg.store_host.to_string());
        match api::send_back(&rt.instance, &addr, group, msg, delay_level, max).await {
            Ok(()) => return true,
            Err(err) => debug!(msg_id = %msg.msg_id, error = %err, "send-back failed; re-sending"),
        }
        let mut retry = Message::new(retry_topic(group), msg.message.body.clone());
        retry.flag = msg.message.flag;
        retry.properties = msg.message.properties.clone();
        let original_topic = msg
            .message
            .property(property_key::RETRY_TOPIC)
            .map_or_else(|| msg.message.topic.clone(), str::to_string);
        retry.set_property(property_key::RETRY_TOPIC, original_topic);
        let origin = msg
            .message
            .property(property_key::ORIGIN_MESSAGE_ID)
            .map_or_else(|| msg.msg_id.clone(), str::to_string);
        retry.set_property(property_key::ORIGIN_MESSAGE_ID, origin);
        let reconsume = if delay_level < 0 {
            max + 1
        } else {
            msg.reconsume_times + 1
        };
        retry.set_property(property_key::RECONSUME_TIME, reconsume.to_string());
        retry.set_property(property_key::MAX_RECONSUME_TIMES, max.to_string());
        retry.set_property(
            property_key::DELAY,
            (3 + msg.reconsume_times).max(1).to_string(),
        );
        let opts = SendOptions {
            reconsume_times: Some(reconsume),
            max_reconsume_times: Some(max),
            ..Default::default()
        };
        match rt.retry_producer.send_with_retries(&retry, &opts).await {
            Ok(_) => true,
            Err(err) => {
                warn!(msg_id = %msg.msg_id, error = %err, "re-send to the retry topic failed");
                false
            }
        }
    }

    // ----- orderly consumption ------------------------------------------------------------

    async fn orderly_loop(self: Arc<Self>, entry: Arc<QueueEntry>) {
        let Handler::Orderly(handler) = self.handler.clone() else {
            return;
        };
        let clustering = self.settings.model == MessageModel::Clustering;
        // Local redeliveries per queue offset.
        let mut attempts: HashMap<i64, i32> = HashMap::new();
        loop {
            tokio::select! {
                _ = entry.cancel.cancelled() => return,
                _ = entry.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // Drain what is cached, one batch at a time (bounded by the cache size).
            for _ in 0..=self.settings.max_cached_messages_per_queue {
                if entry.cancel.is_cancelled() || entry.is_dropped() {
                    return;
                }
                if clustering && !entry.pq.lock().lock_valid(LOCK_MAX_LIVE) {
                    break;
                }
                let guard = entry.consume_lock.lock().await;
                if entry.is_dropped() {
                    return;
                }
                let batch = entry.pq.lock().take(self.settings.consume_batch_size);
                if batch.is_empty() {
                    break;
                }
                let view: Vec<MessageExt> = batch
                    .iter()
                    .map(|(offset, m)| {
                        let mut m = restore_retry_topic(m.clone(), &self.settings.group);
                        m.reconsume_times += attempts.get(offset).copied().unwrap_or(0);
                        m
                    })
                    .collect();
                let ctx = ConsumeContext {
                    message_queue: entry.mq.clone(),
                };
                let outcome = std::panic::AssertUnwindSafe(handler.consume(view, ctx))
                    .catch_unwind()
                    .await;
                entry.last_consume_ms.store(now_ms(), Ordering::Relaxed);
                let success = matches!(outcome, Ok(Ok(ConsumeOrderlyStatus::Success)));
                if success {
                    self.commit_orderly(&entry, &batch, &mut attempts);
                    drop(guard);
                    continue;
                }
                let exhausted = batch.iter().any(|(offset, m)| {
                    m.reconsume_times + attempts.get(offset).copied().unwrap_or(0)
                        >= self.settings.max_reconsume_times
                });
                if exhausted {
                    if let Some(rt) = self.runtime() {
                        let mut all_sent = true;
                        for (_, m) in &batch {
                            all_sent &= self.send_back(&rt, &entry.mq, m, -1).await;
                        }
                        if all_sent {
                            warn!(mq = %entry.mq, count = batch.len(), "orderly batch sent to the dead-letter queue");
                            self.commit_orderly(&entry, &batch, &mut attempts);
                            drop(guard);
                            continue;
                        }
                    }
                }
                for (offset, _) in &batch {
                    *attempts.entry(*offset).or_insert(0) += 1;
                }
                entry.pq.lock().rollback();
                drop(guard);
                tokio::select! {
                    _ = entry.cancel.cancelled() => return,
                    _ = tokio::time::sleep(self.settings.orderly_suspend) => {}
                }
            }
        }
    }

    fn commit_orderly(
        &self,
        entry: &QueueEntry,
        batch: &[(i64, MessageExt)],
        attempts: &mut HashMap<i64, i32>,
    ) {
        for (offset, _) in batch {
            attempts.remove(offset);
        }
        let commit = entry.pq.lock().commit();
        if let Some(offset) = commit {
            if !entry.is_dropped() {
                self.offset_store.update(&entry.mq, offset, true);
            }
        }
    }
}

/// The heartbeat/pull form of one subscription.
pub(crate) fn subscription_data(
    topic: &str,
    expr: &SubscriptionExpr,
    version: i64,
    sql92: bool,
) -> SubscriptionData {
    SubscriptionData {
        class_filter_mode: false,
        topic: topic.to_string(),
        sub_string: expr.sub_string().to_string(),
        tags_set: expr.tags_set().iter().cloned().collect(),
        code_set: expr.code_set().iter().copied().collect(),
        sub_version: version,
        expression_type: api::expression_type(sql92).to_string(),
    }
}
