//! [`PullConsumer`]: the application pulls (Java's `DefaultLitePullConsumer`, PROTOCOL.md
//! §10.4).
//!
//! Two modes:
//! - **Assign**: [`assign`](PullConsumer::assign) fixes the queues; no rebalance.
//! - **Subscribe**: [`PullConsumerBuilder::subscribe`] topics; the group's queues are
//!   rebalanced at start, every 20 s and on NOTIFY_CONSUMER_IDS_CHANGED, like the push
//!   consumer.
//!
//! [`poll`](PullConsumer::poll) pulls the owned queues round-robin without long polling and
//! returns the first non-empty batch; each queue then continues after it. With auto-commit
//! (the default) the offset after a returned batch counts as consumed and is committed every
//! `persist_interval` (5 s), when a queue is released and at shutdown (Java's lite pull
//! semantics); [`commit`](PullConsumer::commit) commits at once. [`pull`](PullConsumer::pull)
//! is the raw one-shot call and changes no position.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tern_common::message::{MessageExt, SubscriptionExpr};
use tern_common::protocol::body::{ConsumeType, ConsumerData, MqMap};
use tern_common::protocol::SerializeType;
use tern_common::route::MessageQueue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::allocate::{AllocateAveragely, AllocateStrategy};
use super::api::{self, PullArgs, PullResult, PullStatus};
use super::offset_store::OffsetStore;
use super::push::subscription_data;
use super::running::{self, ConsumeMessageDirectlyResult, ConsumerRunningInfo, ProcessQueueInfo};
use super::{rebalance, restore_retry_topic, ConsumeFrom, MessageModel};
use crate::config::{now_ms, ClientConfig};
use crate::error::{ClientError, Result};
use crate::instance::{ClientInstance, ConsumerHooks};

/// Builder of a [`PullConsumer`]; see [`PullConsumer::builder`].
#[derive(Debug, Clone)]
pub struct PullConsumerBuilder {
    config: ClientConfig,
    group: String,
    model: MessageModel,
    consume_from: ConsumeFrom,
    pull_batch_size: i32,
    auto_commit: bool,
    persist_interval: Duration,
    rebalance_interval: Duration,
    subscriptions: Vec<(String, String)>,
    sql_subscriptions: Vec<(String, String)>,
    strategy: Arc<dyn AllocateStrategy>,
    offset_store_dir: Option<std::path::PathBuf>,
}

impl PullConsumerBuilder {
    /// NameServer addresses, `;`-separated.
    pub fn namesrv_addr(mut self, addrs: &str) -> Self {
        self.config.set_namesrv_addr(addrs);
        self
    }

    /// The consumer group (required).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Subscribe mode: consume `topic` with a TAG expression, queues rebalanced in the group.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.push((topic.into(), expression.into()));
        self
    }

    /// Subscribe mode with a SQL92 expression over message properties (RocketMQ's
    /// `MessageSelector.bySql`), e.g. `a > 5 AND TAGS = 'T1'`. The broker filters (it needs
    /// `enable_property_filter`); the client does no tag re-check. [`PullConsumer::start`]
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
        self.model = model;
        self
    }

    /// Where a queue without a stored offset starts. Default [`ConsumeFrom::Last`].
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.consume_from = from;
        self
    }

    /// Messages per pull. Default 32.
    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.pull_batch_size = n.max(1);
        self
    }

    /// Commit polled offsets automatically. Default true.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }

    /// Period of automatic commits. Default 5 s.
    pub fn persist_interval(mut self, d: Duration) -> Self {
        self.persist_interval = d;
        self
    }

    /// Period of the rebalance (subscribe mode). Default 20 s.
    pub fn rebalance_interval(mut self, d: Duration) -> Self {
        self.rebalance_interval = d;
        self
    }

    /// The allocation strategy (subscribe mode). Default [`AllocateAveragely`].
    pub fn allocate_strategy(mut self, s: impl AllocateStrategy) -> Self {
        self.strategy = Arc::new(s);
        self
    }

    /// Directory of broadcasting offset files. Default `~/.tern_offsets`.
    pub fn offset_store_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.offset_store_dir = Some(dir.into());
        self
    }

    /// Header and body encoding; MessagePack by default.
    pub fn serialize_type(mut self, t: SerializeType) -> Self {
        self.config.serialize_type = t;
        self
    }

    /// Replaces the whole shared client configuration.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the settings and creates the consumer (not started).
    ///
    /// # Errors
    /// [`ClientError::Config`] for a missing group or NameServer list.
    pub fn build(self) -> Result<PullConsumer> {
        if self.group.is_empty() {
            return Err(ClientError::Config("consumer group not set".into()));
        }
        self.config.validate()?;
        let version = now_ms();
        let mut subscriptions: BTreeMap<String, (SubscriptionExpr, i64)> = self
            .subscriptions
            .iter()
            .map(|(t, e)| (t.clone(), (SubscriptionExpr::parse_tag(e), version)))
            .collect();
        let mut sql_topics = BTreeSet::new();
        for (topic, expr) in &self.sql_subscriptions {
            // No tags: the client keeps every message the broker selected.
            let expr = SubscriptionExpr::from_parts(expr.clone(), Vec::new(), Vec::new());
            sql_topics.insert(topic.clone());
            subscriptions.insert(topic.clone(), (expr, version));
        }
        let offset_store = match self.model {
            MessageModel::Clustering => OffsetStore::remote(),
            MessageModel::Broadcasting => {
                let dir = self.offset_store_dir.clone().unwrap_or_else(|| {
                    std::env::var_os("HOME")
                        .map_or_else(|| ".".into(), std::path::PathBuf::from)
                        .join(".tern_offsets")
                });
                OffsetStore::local(
                    dir.join(&self.config.instance_name)
                        .join(&self.group)
                        .join("offsets.json"),
                )?
            }
        };
        Ok(PullConsumer {
            inner: Arc::new(PullInner {
                config: self.config,
                group: self.group,
                model: self.model,
                consume_from: self.consume_from,
                pull_batch_size: self.pull_batch_size,
                auto_commit: self.auto_commit,
                persist_interval: self.persist_interval,
                rebalance_interval: self.rebalance_interval,
                subscriptions,
                sql_topics,
                strategy: self.strategy,
                offset_store,
                assigned: Mutex::new(BTreeMap::new()),
                started_ms: AtomicI64::new(0),
                cursor: Mutex::new(0),
                instance: Mutex::new(None),
                rebalance_now: Notify::new(),
                token: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// An application-driven consumer; cheap to clone.
#[derive(Debug, Clone)]
pub struct PullConsumer {
    inner: Arc<PullInner>,
}

/// One owned queue: its expression and next pull offset.
#[derive(Debug, Clone)]
struct QueueState {
    expr: SubscriptionExpr,
    next_offset: i64,
}

struct PullInner {
    config: ClientConfig,
    group: String,
    model: MessageModel,
    consume_from: ConsumeFrom,
    pull_batch_size: i32,
    auto_commit: bool,
    persist_interval: Duration,
    rebalance_interval: Duration,
    subscriptions: BTreeMap<String, (SubscriptionExpr, i64)>,
    /// Topics subscribed with SQL92 (the others use TAG).
    sql_topics: BTreeSet<String>,
    strategy: Arc<dyn AllocateStrategy>,
    offset_store: OffsetStore,
    assigned: Mutex<BTreeMap<MessageQueue, QueueState>>,
    /// When [`PullConsumer::start`] ran, ms since the epoch (0 before).
    started_ms: AtomicI64,
    cursor: Mutex<usize>,
    instance: Mutex<Option<Arc<ClientInstance>>>,
    rebalance_now: Notify,
    token: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PullInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullConsumer")
            .field("group", &self.group)
            .finish()
    }
}

struct Hooks(Weak<PullInner>);

impl ConsumerHooks for Hooks {
    fn consumer_data(&self) -> ConsumerData {
        let Some(inner) = self.0.upgrade() else {
            return ConsumerData::default();
        };
        ConsumerData {
            group_name: inner.group.clone(),
            consume_type: ConsumeType::Actively,
            message_model: inner.model.wire(),
            consume_from_where: inner.consume_from.wire(),
            subscription_data_set: inner
                .subscriptions
                .iter()
                .map(|(t, (e, v))| subscription_data(t, e, *v, inner.sql_topics.contains(t)))
                .collect(),
            unit_mode: false,
        }
    }

    fn topics(&self) -> Vec<String> {
        let Some(inner) = self.0.upgrade() else {
            return Vec::new();
        };
        let mut topics: BTreeSet<String> = inner.subscriptions.keys().cloned().collect();
        topics.extend(inner.assigned.lock().keys().map(|mq| mq.topic.clone()));
        topics.into_iter().collect()
    }

    fn trigger_rebalance(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.rebalance_now.notify_one();
        }
    }

    fn reset_offset(&self, _topic: &str, offsets: BTreeMap<MessageQueue, i64>) {
        if let Some(inner) = self.0.upgrade() {
            let mut assigned = inner.assigned.lock();
            for (mq, offset) in offsets {
                if let Some(state) = assigned.get_mut(&mq) {
                    state.next_offset = offset;
                    inner.offset_store.update(&mq, offset, false);
                }
            }
        }
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        let Some(inner) = self.0.upgrade() else {
            return ConsumerRunningInfo::default();
        };
        let mut properties = BTreeMap::new();
        properties.insert("consumerGroup".to_string(), inner.group.clone());
        properties.insert(
            "messageModel".to_string(),
            inner.model.wire().as_str().to_string(),
        );
        properties.insert(
            "consumeFromWhere".to_string(),
            inner.consume_from.wire().as_str().to_string(),
        );
        properties.insert(
            "pullBatchSize".to_string(),
            inner.pull_batch_size.to_string(),
        );
        properties.insert("autoCommit".to_string(), inner.auto_commit.to_string());
        properties.insert(
            running::PROP_CONSUME_TYPE.to_string(),
            ConsumeType::Actively.as_str().to_string(),
        );
        properties.insert(
            running::PROP_CONSUMER_START_TIMESTAMP.to_string(),
            inner.started_ms.load(Ordering::Relaxed).to_string(),
        );
        // The application holds no cache here: a queue's snapshot is its offsets only.
        let mq_table = inner
            .assigned
            .lock()
            .iter()
            .map(|(mq, state)| {
                let info = ProcessQueueInfo {
                    commit_offset: inner.offset_store.read(mq).unwrap_or(-1),
                    cached_msg_min_offset: state.next_offset,
                    cached_msg_max_offset: state.next_offset,
                    ..Default::default()
                };
                (mq.clone(), info)
            })
            .collect();
        ConsumerRunningInfo {
            properties,
            subscription_set: self.consumer_data().subscription_data_set,
            mq_table,
            ..Default::default()
        }
    }

    fn consume_directly(
        &self,
        _msg: MessageExt,
        _broker_name: String,
    ) -> Option<BoxFuture<'static, ConsumeMessageDirectlyResult>> {
        // The application consumes what it pulls: there is no handler to run.
        None
    }

    fn consume_status(&self, topic: &str) -> MqMap<i64> {
        self.0
            .upgrade()
            .map(|inner| inner.offset_store.topic_offsets(topic))
            .unwrap_or_default()
    }
}

impl PullConsumer {
    /// A builder with the defaults (clustering, from last offset, batch 32, auto-commit).
    pub fn builder() -> PullConsumerBuilder {
        PullConsumerBuilder {
            config: ClientConfig::default(),
            group: String::new(),
            model: MessageModel::Clustering,
            consume_from: ConsumeFrom::Last,
            pull_batch_size: 32,
            auto_commit: true,
            persist_interval: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
            subscriptions: Vec::new(),
            sql_subscriptions: Vec::new(),
            strategy: Arc::new(AllocateAveragely),
            offset_store_dir: None,
        }
    }

    /// Starts the client: heartbeats, the commit task and, in subscribe mode, the rebalance.
    ///
    /// # Errors
    /// [`ClientError::Config`] if already started.
    pub async fn start(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.instance.lock().is_some() || inner.token.is_cancelled() {
            return Err(ClientError::Config("consumer already started".into()));
        }
        let instance = ClientInstance::start(inner.config.clone())?;
        instance.register_consumer(&inner.group, Arc::new(Hooks(Arc::downgrade(inner))))?;
        *inner.instance.lock() = Some(instance.clone());
        inner.started_ms.store(now_ms(), Ordering::Relaxed);
        for topic in inner.subscriptions.keys() {
            let _ = instance.update_route(topic).await;
        }
        // CHECK_CLIENT_CONFIG for every SQL92 subscription (PROTOCOL.md §10.3 step 3).
        for (topic, (expr, version)) in &inner.subscriptions {
            if !inner.sql_topics.contains(topic) {
                continue;
            }
            let sub = subscription_data(topic, expr, *version, true);
            if let Err(err) = api::check_client_config(&instance, &inner.group, &sub).await {
                *inner.instance.lock() = None;
                instance.unregister_consumer(&inner.group);
                instance.shutdown().await;
                return Err(err);
            }
        }
        instance.send_heartbeat_to_all().await;
        let mut tasks = vec![tokio::spawn(inner.clone().persist_loop())];
        if !inner.subscriptions.is_empty() {
            tasks.push(tokio::spawn(inner.clone().rebalance_loop()));
        }
        inner.tasks.lock().extend(tasks);
        info!(group = %inner.group, "pull consumer started");
        Ok(())
    }

    fn instance(&self) -> Result<Arc<ClientInstance>> {
        self.inner
            .instance
            .lock()
            .clone()
            .ok_or(ClientError::NotRunning)
    }

    /// The readable queues of `topic`.
    ///
    /// # Errors
    /// [`ClientError::NoRoute`] and transport errors.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let instance = self.instance()?;
        let route = instance
            .update_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_string(),
            })?;
        let mut q = route.subscribe_queues(topic);
        q.sort();
        Ok(q)
    }

    /// Assign mode: consume exactly `queues` (all messages, expression `*`), each from its
    /// stored offset or per `consume_from`. Replaces any previous assignment.
    ///
    /// # Errors
    /// The start offset of a queue could not be determined.
    pub async fn assign(&self, queues: Vec<MessageQueue>) -> Result<()> {
        let instance = self.instance()?;
        let mut next = BTreeMap::new();
        for mq in queues {
            let existing = self.inner.assigned.lock().get(&mq).cloned();
            let state = match existing {
                Some(s) => s,
                None => {
                    let offset = rebalance::start_offset(
                        &instance,
                        &self.inner.group,
                        &mq,
                        &self.inner.offset_store,
                        self.inner.consume_from,
                    )
                    .await?;
                    QueueState {
                        expr: SubscriptionExpr::all(),
                        next_offset: offset,
                    }
                }
            };
            next.insert(mq, state);
        }
        *self.inner.assigned.lock() = next;
        Ok(())
    }

    /// The queues currently owned, sorted.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.inner.assigned.lock().keys().cloned().collect()
    }

    /// Moves the next [`poll`](Self::poll) of `mq` to `offset`.
    ///
    /// # Errors
    /// [`ClientError::Config`] if `mq` is not owned.
    pub fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        let mut assigned = self.inner.assigned.lock();
        let state = assigned
            .get_mut(mq)
            .ok_or_else(|| ClientError::Config(format!("queue {mq} is not assigned")))?;
        state.next_offset = offset;
        if self.inner.auto_commit {
            self.inner.offset_store.update(mq, offset, false);
        }
        Ok(())
    }

    /// The committed offset the client holds for `mq` (subject to the next commit).
    pub fn committed(&self, mq: &MessageQueue) -> Option<i64> {
        self.inner.offset_store.read(mq)
    }

    /// One raw pull of up to `max` messages of `mq` from `offset` (no long polling, no
    /// position change, no commit).
    ///
    /// # Errors
    /// Transport errors and error codes.
    pub async fn pull(&self, mq: &MessageQueue, offset: i64, max: i32) -> Result<PullResult> {
        let instance = self.instance()?;
        let expr = SubscriptionExpr::all();
        self.inner
            .pull_once(&instance, mq, &expr, false, offset, max)
            .await
    }

    /// Pulls the owned queues round-robin until one returns messages or `timeout` passes
    /// (then returns an empty vector). Messages from `%RETRY%` topics carry their original
    /// topic.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] before start or after shutdown.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        let instance = self.instance()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.token.is_cancelled() {
                return Err(ClientError::NotRunning);
            }
            let queues: Vec<(MessageQueue, QueueState)> = self
                .inner
                .assigned
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let start = {
                let mut c = self.inner.cursor.lock();
                *c = c.wrapping_add(1);
                *c
            };
            for i in 0..queues.len() {
                let (mq, state) = &queues[(start + i) % queues.len()];
                let result = match self
                    .inner
                    .pull_once(
                        &instance,
                        mq,
                        &state.expr,
                        self.inner.sql_topics.contains(&mq.topic),
                        state.next_offset,
                        self.inner.pull_batch_size,
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(err) => {
                        debug!(%mq, error = %err, "poll pull failed");
                        continue;
                    }
                };
                let mut assigned = self.inner.assigned.lock();
                let Some(current) = assigned.get_mut(mq) else {
                    continue;
                };
                if current.next_offset != state.next_offset {
                    continue; // Seeked meanwhile.
                }
                current.next_offset = result.next_begin_offset;
                if self.inner.auto_commit {
                    // A moved offset may go backwards; everything else only forwards.
                    let increase_only = result.status != PullStatus::OffsetIllegal;
                    self.inner
                        .offset_store
                        .update(mq, result.next_begin_offset, increase_only);
                }
                if !result.messages.is_empty() {
                    return Ok(result
                        .messages
                        .into_iter()
                        .map(|m| restore_retry_topic(m, &self.inner.group))
                        .collect());
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = self.inner.token.cancelled() => return Err(ClientError::NotRunning),
                _ = tokio::time::sleep((deadline - now).min(Duration::from_millis(100))) => {}
            }
        }
    }

    /// Commits the owned queues' offsets to the broker (or the local file) now.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] before start.
    pub async fn commit(&self) -> Result<()> {
        let instance = self.instance()?;
        self.inner.persist_all(&instance).await;
        Ok(())
    }

    /// Commits offsets, unregisters from the brokers and closes connections.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.token.is_cancelled() {
            return;
        }
        inner.token.cancel();
        super::join_tasks(&inner.tasks).await;
        let instance = inner.instance.lock().clone();
        if let Some(instance) = instance {
            inner.persist_all(&instance).await;
            instance.unregister_client(None, Some(&inner.group)).await;
            instance.unregister_consumer(&inner.group);
            instance.shutdown().await;
        }
    }
}

impl PullInner {
    async fn pull_once(
        &self,
        instance: &ClientInstance,
        mq: &MessageQueue,
        expr: &SubscriptionExpr,
        sql92: bool,
        offset: i64,
        max: i32,
    ) -> Result<PullResult> {
        let addr = instance
            .find_master_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let args = PullArgs {
            group: &self.group,
            mq,
            offset,
            max_msgs: max,
            sys_flag: api::PULL_FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout: Duration::ZERO,
            subscription: expr.sub_string(),
            sub_version: 0,
        };
        api::pull_typed(
            instance,
            &addr,
            &args,
            expr,
            api::expression_type(sql92),
            instance.config.rpc_timeout,
        )
        .await
    }

    async fn persist_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = tokio::time::sleep(self.persist_interval) => {}
            }
            let instance = self.instance.lock().clone();
            if let Some(instance) = instance {
                self.persist_all(&instance).await;
            }
        }
    }

    async fn persist_all(&self, instance: &ClientInstance) {
        if self.offset_store.is_local() {
            if let Err(err) = self.offset_store.persist_local() {
                debug!(error = %err, "cannot write the local offset file");
            }
            return;
        }
        let owned: Vec<MessageQueue> = self.assigned.lock().keys().cloned().collect();
        for mq in owned {
            self.persist_queue(instance, &mq).await;
        }
    }

    async fn persist_queue(&self, instance: &ClientInstance, mq: &MessageQueue) {
        let Some(offset) = self.offset_store.read(mq) else {
            return;
        };
        let Some(addr) = instance.find_master(&mq.broker_name) else {
            return;
        };
        if let Err(err) =
            api::update_consumer_offset(instance, &addr, &self.group, mq, offset, false).await
        {
            debug!(%mq, error = %err, "offset commit failed");
        }
    }

    async fn rebalance_loop(self: Arc<Self>) {
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = self.rebalance_now.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            let Some(instance) = self.instance.lock().clone() else {
                return;
            };
            let mut retry_soon = false;
            for (topic, (expr, _)) in &self.subscriptions {
                let assigned = match rebalance::assigned_queues(
                    &instance,
                    &self.group,
                    topic,
                    self.model,
                    self.strategy.as_ref(),
                )
                .await
                {
                    Ok(q) => q,
                    Err(err) => {
                        debug!(%topic, error = %err, "rebalance skipped");
                        retry_soon = true;
                        continue;
                    }
                };
                let assigned: BTreeSet<MessageQueue> = assigned.into_iter().collect();
                let removed: Vec<MessageQueue> = self
                    .assigned
                    .lock()
                    .keys()
                    .filter(|mq| mq.topic == *topic && !assigned.contains(*mq))
                    .cloned()
                    .collect();
                for mq in removed {
                    self.assigned.lock().remove(&mq);
                    if self.auto_commit {
                        self.persist_queue(&instance, &mq).await;
                    }
                    self.offset_store.remove(&mq);
                }
                for mq in assigned {
                    if self.assigned.lock().contains_key(&mq) {
                        continue;
                    }
                    match rebalance::start_offset(
                        &instance,
                        &self.group,
                        &mq,
                        &self.offset_store,
                        self.consume_from,
                    )
                    .await
                    {
                        Ok(offset) => {
                            self.assigned.lock().insert(
                                mq,
                                QueueState {
                                    expr: expr.clone(),
                                    next_offset: offset,
                                },
                            );
                        }
                        Err(err) => {
                            debug!(%mq, error = %err, "start offset unknown");
                            retry_soon = true;
                        }
                    }
                }
            }
            delay = if retry_soon {
                Duration::from_millis(500)
            } else {
                self.rebalance_interval
            };
        }
    }
}
