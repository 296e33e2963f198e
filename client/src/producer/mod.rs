//! [`Producer`]: sends messages to a topic's queues (Java's `DefaultMQProducer`).
//!
//! Contract (PROTOCOL.md §10.1, §2.3):
//! - The topic's route comes from the NameServer; when the NameServer has none, the route of
//!   `TBW102` is used with each broker's queues clamped to `default_topic_queue_nums` and the
//!   send names `TBW102` as `defaultTopic`, so the broker auto-creates the topic.
//! - Queues are chosen round-robin over the writable queues of the masters, skipping the broker
//!   that failed the previous attempt and brokers that failed within `fault_isolation`.
//! - A synchronous send is retried up to `retry_times` more times, on another broker when one
//!   exists, after network errors, timeouts and the retryable response codes
//!   {1, 2, 14, 16, 17, 204, 205, 1500}; other codes fail at once.
//! - Every message gets a `UNIQ_KEY` (the `msg_id` of [`SendResult`]) and `WAIT=true` unless it
//!   has them; bodies of at least `compress_threshold` bytes are zlib-compressed.
//! - Sends use SEND_MESSAGE_V2 (310) with the single-letter header keys, batches
//!   SEND_BATCH_MESSAGE (320).

pub mod selector;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tern_common::message::{property_key, Message};
use tern_common::protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use tern_common::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::route::{MessageQueue, TopicRouteData};
use tracing::{debug, warn};

pub use selector::{MessageQueueSelector, SelectByHash, SelectRandom};

use crate::config::{now_ms, ClientConfig};
use crate::error::{ClientError, Result};
use crate::instance::{broker_error, ClientInstance};

/// The template topic for auto-creation (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// Outcome of a stored message (PROTOCOL.md §1.8: codes 0, 10, 12, 11). Every status means
/// the broker stored the message; the last three say it is not yet flushed or replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStatus {
    /// Stored (and flushed/replicated as the broker is configured).
    SendOk,
    /// Stored, but the synchronous flush timed out.
    FlushDiskTimeout,
    /// Stored, but the synchronous replication timed out.
    FlushSlaveTimeout,
    /// Stored, but no slave was available for synchronous replication.
    SlaveNotAvailable,
}

/// The broker's answer to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendResult {
    /// Flush/replication outcome.
    pub status: SendStatus,
    /// The client message id (`UNIQ_KEY`); comma-joined for a batch.
    pub msg_id: String,
    /// The broker's offset message id(s) (store host + physical offset, PROTOCOL.md §3.6).
    pub offset_msg_id: String,
    /// The queue the message was stored in.
    pub message_queue: MessageQueue,
    /// Its logical offset in that queue (the first message's for a batch).
    pub queue_offset: i64,
    /// The transaction id the broker returned (half messages), if any.
    pub transaction_id: Option<String>,
}

/// Extra header values of one send, for the SDK's own senders (retry sends, transactions).
#[derive(Debug, Clone, Default)]
pub(crate) struct SendOptions {
    /// Bits ORed into the request's sysFlag (e.g. TRANSACTION_PREPARED 0x4).
    pub(crate) sys_flag: i32,
    /// Header `j` (reconsume times), for sends to `%RETRY%` topics.
    pub(crate) reconsume_times: Option<i32>,
    /// Header `l` (max reconsume times), for sends to `%RETRY%` topics.
    pub(crate) max_reconsume_times: Option<i32>,
}

/// Builder of a [`Producer`]; see [`Producer::builder`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    config: ClientConfig,
    group: Option<String>,
    send_timeout: Duration,
    retry_times: u32,
    default_topic_queue_nums: i32,
    compress_threshold: usize,
    max_message_size: usize,
    fault_isolation: Duration,
}

impl ProducerBuilder {
    /// NameServer addresses, `;`-separated (`"127.0.0.1:9876"`).
    pub fn namesrv_addr(mut self, addrs: &str) -> Self {
        self.config.set_namesrv_addr(addrs);
        self
    }

    /// The producer group (required).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Timeout of one send attempt. Default 3 s.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Extra attempts of a failed synchronous send. Default 2.
    pub fn retry_times(mut self, times: u32) -> Self {
        self.retry_times = times;
        self
    }

    /// Queue count of auto-created topics (header `defaultTopicQueueNums`). Default 4.
    pub fn default_topic_queue_nums(mut self, n: i32) -> Self {
        self.default_topic_queue_nums = n;
        self
    }

    /// Bodies at least this long (bytes) are zlib-compressed. Default 4096.
    pub fn compress_threshold(mut self, bytes: usize) -> Self {
        self.compress_threshold = bytes;
        self
    }

    /// Largest body accepted, in bytes. Default 4 MiB (the broker's default limit).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long a broker that failed a send is avoided. Default 30 s.
    pub fn fault_isolation(mut self, d: Duration) -> Self {
        self.fault_isolation = d;
        self
    }

    /// Header and body encoding; MessagePack by default, JSON for Apache RocketMQ.
    pub fn serialize_type(mut self, t: SerializeType) -> Self {
        self.config.serialize_type = t;
        self
    }

    /// Instance name (part of the client id).
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.config.instance_name = name.into();
        self
    }

    /// Replaces the whole shared client configuration.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the producer: validates the settings and starts the client instance (no
    /// network traffic until the first send).
    ///
    /// # Errors
    /// [`ClientError::Config`] for a missing group or NameServer list.
    pub async fn build(self) -> Result<Producer> {
        let group = self
            .group
            .ok_or_else(|| ClientError::Config("producer group not set".into()))?;
        if group.is_empty() {
            return Err(ClientError::Config("producer group is empty".into()));
        }
        let instance = ClientInstance::start(self.config)?;
        instance.register_producer(&group);
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                instance,
                group,
                send_timeout: self.send_timeout,
                retry_times: self.retry_times,
                default_topic_queue_nums: self.default_topic_queue_nums.max(1),
                compress_threshold: self.compress_threshold,
                max_message_size: self.max_message_size,
                fault_isolation: self.fault_isolation,
                next_queue: AtomicUsize::new(rand::random::<u16>() as usize),
                failed_brokers: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Sends messages; cheap to clone (all clones share one client instance).
///
/// ```no_run
/// # async fn demo() -> Result<(), tern_client::ClientError> {
/// use tern_client::Producer;
/// use tern_common::message::Message;
/// let producer = Producer::builder().namesrv_addr("127.0.0.1:9876").group("pg").build().await?;
/// let result = producer.send(Message::new("TopicA", "hello").with_tags("TagA")).await?;
/// println!("{} stored at {}", result.msg_id, result.queue_offset);
/// producer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

#[derive(Debug)]
pub(crate) struct ProducerInner {
    pub(crate) instance: Arc<ClientInstance>,
    pub(crate) group: String,
    send_timeout: Duration,
    retry_times: u32,
    default_topic_queue_nums: i32,
    compress_threshold: usize,
    max_message_size: usize,
    fault_isolation: Duration,
    next_queue: AtomicUsize,
    failed_brokers: Mutex<HashMap<String, Instant>>,
}

impl Producer {
    /// A builder with the defaults (send timeout 3 s, 2 retries, MessagePack).
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder {
            config: ClientConfig::default(),
            group: None,
            send_timeout: Duration::from_secs(3),
            retry_times: 2,
            default_topic_queue_nums: 4,
            compress_threshold: 4096,
            max_message_size: 4 * 1024 * 1024,
            fault_isolation: Duration::from_secs(30),
        }
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The client id this producer reports to brokers.
    pub fn client_id(&self) -> &str {
        &self.inner.instance.client_id
    }

    /// The shared state, for the SDK's other senders (transaction producer).
    #[allow(dead_code)] // Used by the transaction producer.
    pub(crate) fn inner(&self) -> &Arc<ProducerInner> {
        &self.inner
    }

    /// Sends `msg` and waits for the broker's answer, retrying on another queue as the
    /// module doc describes.
    ///
    /// # Errors
    /// [`ClientError::InvalidMessage`] before sending; [`ClientError::SendFailed`] wrapping
    /// the last failure when every attempt failed; a non-retryable broker answer directly.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        self.inner
            .send_with_retries(&msg, &SendOptions::default())
            .await
    }

    /// Sends `msg` on a spawned task and returns at once; await the handle for the result
    /// (or drop it to send and forget the answer).
    pub fn send_async(&self, msg: Message) -> tokio::task::JoinHandle<Result<SendResult>> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.send_with_retries(&msg, &SendOptions::default()).await })
    }

    /// Sends `msg` oneway: the broker does not answer, so there is no result and no retry.
    ///
    /// # Errors
    /// Validation and routing errors, or a connection that could not be written.
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let inner = &self.inner;
        inner.validate(&msg)?;
        let queues = inner.publish_queues(&msg.topic).await?;
        let mq = inner.select_queue(&queues, None)?;
        let (addr, req, _) = inner.build_send(&msg, &mq, &SendOptions::default()).await?;
        inner.instance.invoke_oneway(&addr, req).await
    }

    /// Sends `msg` to the queue that `selector` picks from the topic's writable queues
    /// (one attempt, as Java does: ordered messages must not move to another queue).
    ///
    /// # Errors
    /// As [`send`](Self::send); [`ClientError::InvalidMessage`] if the selector returns None.
    pub async fn send_with_selector<A: ?Sized>(
        &self,
        msg: Message,
        selector: &impl MessageQueueSelector<A>,
        arg: &A,
    ) -> Result<SendResult> {
        let inner = &self.inner;
        inner.validate(&msg)?;
        let queues = inner.publish_queues(&msg.topic).await?;
        let mq = selector
            .select(&queues, &msg, arg)
            .ok_or_else(|| ClientError::InvalidMessage("selector chose no queue".into()))?;
        inner
            .send_to_queue(&msg, &mq, &SendOptions::default())
            .await
    }

    /// Sends `msg` to exactly `mq` (one attempt).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_to_queue(&self, msg: Message, mq: &MessageQueue) -> Result<SendResult> {
        self.inner.validate(&msg)?;
        self.inner
            .send_to_queue(&msg, mq, &SendOptions::default())
            .await
    }

    /// Sends messages of one topic as a single batch (SEND_BATCH_MESSAGE) to one queue; they
    /// get consecutive queue offsets. Retried like [`send`](Self::send).
    ///
    /// # Errors
    /// [`ClientError::InvalidMessage`] for an empty batch, mixed topics or WAIT values,
    /// delayed messages or `%RETRY%` topics; otherwise as [`send`](Self::send).
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult> {
        self.inner.send_batch(msgs).await
    }

    /// The writable queues of `topic` (after the TBW102 fallback), sorted.
    ///
    /// # Errors
    /// [`ClientError::NoRoute`] when neither the topic nor TBW102 has a route.
    pub async fn fetch_publish_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(self.inner.publish_queues(topic).await?.to_vec())
    }

    /// Unregisters the producer group from the brokers and stops the client instance.
    pub async fn shutdown(&self) {
        let instance = &self.inner.instance;
        if instance.is_shut_down() {
            return;
        }
        instance
            .unregister_client(Some(&self.inner.group), None)
            .await;
        instance.shutdown().await;
    }
}

impl ProducerInner {
    /// A producer sharing `instance`, for the SDK's own sends (consumer retries): default
    /// timeouts and retries, group `group`.
    pub(crate) fn internal(instance: Arc<ClientInstance>, group: &str) -> Self {
        ProducerInner {
            instance,
            group: group.to_string(),
            send_timeout: Duration::from_secs(3),
            retry_times: 2,
            default_topic_queue_nums: 4,
            compress_threshold: 4096,
            max_message_size: 4 * 1024 * 1024,
            fault_isolation: Duration::from_secs(30),
            next_queue: AtomicUsize::new(rand::random::<u16>() as usize),
            failed_brokers: Mutex::new(HashMap::new()),
        }
    }

    fn validate(&self, msg: &Message) -> Result<()> {
        if self.instance.is_shut_down() {
            return Err(ClientError::NotRunning);
        }
        if msg.topic.is_empty() {
            return Err(ClientError::InvalidMessage("empty topic".into()));
        }
        tern_common::message::validate_topic(&msg.topic)
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        if msg.body.is_empty() {
            return Err(ClientError::InvalidMessage("empty body".into()));
        }
        if msg.body.len() > self.max_message_size {
            return Err(ClientError::InvalidMessage(format!(
                "body of {} bytes exceeds the limit of {} bytes",
                msg.body.len(),
                self.max_message_size
            )));
        }
        Ok(())
    }

    /// The writable queues of `topic`, falling back to TBW102's route (clamped to
    /// `default_topic_queue_nums` per broker) when the topic has none. A cached route's
    /// queues are shared, not rebuilt, so the common case costs one map lookup.
    pub(crate) async fn publish_queues(&self, topic: &str) -> Result<Arc<[MessageQueue]>> {
        if let Some(queues) = self.instance.cached_publish_queues(topic) {
            if !queues.is_empty() {
                return Ok(queues);
            }
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
            });
        }
        let route = match self.instance.update_route(topic).await? {
            Some(route) => route,
            None => self.fallback_route(topic).await?,
        };
        // New brokers should learn this producer group soon (transaction check-backs need a
        // producer channel); do not delay the send for it.
        let instance = self.instance.clone();
        tokio::spawn(async move { instance.heartbeat_if_brokers_changed().await });
        let queues: Arc<[MessageQueue]> = route.publish_queues(topic).into();
        if queues.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
            });
        }
        Ok(queues)
    }

    async fn fallback_route(&self, topic: &str) -> Result<TopicRouteData> {
        let route = self
            .instance
            .fetch_route(AUTO_CREATE_TOPIC)
            .await?
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_string(),
            })?;
        let route = clamp_route(route, self.default_topic_queue_nums);
        // Remember the broker addresses, but not the route itself: the next send asks the
        // NameServer again and finds the auto-created topic once the broker registered it.
        self.instance.insert_route(AUTO_CREATE_TOPIC, route.clone());
        Ok(route)
    }

    /// Round-robin choice avoiding `last_failed` and recently failed brokers when possible.
    fn select_queue(
        &self,
        queues: &[MessageQueue],
        last_failed: Option<&str>,
    ) -> Result<MessageQueue> {
        if queues.is_empty() {
            return Err(ClientError::NoRoute {
                topic: String::new(),
            });
        }
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let isolated = {
            let mut failed = self.failed_brokers.lock();
            if failed.is_empty() {
                Vec::new()
            } else {
                failed.retain(|_, at| at.elapsed() < self.fault_isolation);
                failed.keys().cloned().collect::<Vec<_>>()
            }
        };
        choose_queue(queues, start, last_failed, &isolated).ok_or_else(|| ClientError::NoRoute {
            topic: String::new(),
        })
    }

    pub(crate) async fn send_with_retries(
        &self,
        msg: &Message,
        opts: &SendOptions,
    ) -> Result<SendResult> {
        self.validate(msg)?;
        let attempts = 1 + self.retry_times;
        let mut last_failed: Option<String> = None;
        let mut last_err = None;
        for attempt in 0..attempts {
            let queues = match self.publish_queues(&msg.topic).await {
                Ok(q) => q,
                Err(err) => {
                    last_err = Some(err);
                    continue;
                }
            };
            let mq = self.select_queue(&queues, last_failed.as_deref())?;
            match self.send_to_queue(msg, &mq, opts).await {
                Ok(result) => return Ok(result),
                Err(err) if err.is_retryable_send_error() => {
                    debug!(attempt, broker = %mq.broker_name, error = %err, "send failed; retrying");
                    self.failed_brokers
                        .lock()
                        .insert(mq.broker_name.clone(), Instant::now());
                    // A stale route may point at a dead or moved broker: refresh it.
                    let _ = self.instance.update_route(&msg.topic).await;
                    last_failed = Some(mq.broker_name);
                    last_err = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(ClientError::SendFailed {
            attempts,
            source: Box::new(last_err.unwrap_or(ClientError::NoRoute {
                topic: msg.topic.clone(),
            })),
        })
    }

    /// Sends `msg` to `mq` once; the reusable core of every send (also for the transaction
    /// producer and consumer retries).
    pub(crate) async fn send_to_queue(
        &self,
        msg: &Message,
        mq: &MessageQueue,
        opts: &SendOptions,
    ) -> Result<SendResult> {
        let (addr, req, uniq) = self.build_send(msg, mq, opts).await?;
        let response = self.instance.invoke(&addr, req, self.send_timeout).await?;
        parse_send_response(&addr, &response, mq, uniq)
    }

    /// The master address of `mq`, the SEND_MESSAGE_V2 request for `msg` and the message's
    /// `UNIQ_KEY` (its own, or the one generated here).
    async fn build_send(
        &self,
        msg: &Message,
        mq: &MessageQueue,
        opts: &SendOptions,
    ) -> Result<(String, RemotingCommand, String)> {
        let addr = self
            .instance
            .find_master_or_refresh(&mq.broker_name, &msg.topic)
            .await?;
        let (properties, uniq) = send_properties(msg);
        let mut sys_flag = opts.sys_flag;
        let mut body = msg.body.clone();
        if body.len() >= self.compress_threshold {
            if let Some(compressed) = zlib(&body) {
                body = compressed;
                sys_flag |= tern_common::message::sys_flag::COMPRESSED_FLAG;
            }
        }
        // Borrowed strings: the header is encoded at once and needs no copies of its own.
        let header = SendMessageRequestHeader::<&str> {
            producer_group: &self.group,
            topic: &msg.topic,
            default_topic: AUTO_CREATE_TOPIC,
            default_topic_queue_nums: self.default_topic_queue_nums,
            queue_id: mq.queue_id,
            sys_flag,
            born_timestamp: now_ms(),
            flag: msg.flag,
            properties: Some(&properties),
            reconsume_times: opts.reconsume_times,
            unit_mode: Some(false),
            max_reconsume_times: opts.max_reconsume_times,
            batch: Some(false),
            broker_name: Some(&mq.broker_name),
        };
        Ok((
            addr,
            send_request(RequestCode::SendMessageV2, &header, body),
            uniq,
        ))
    }

    async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult> {
        let first = msgs
            .first()
            .ok_or_else(|| ClientError::InvalidMessage("empty batch".into()))?;
        let topic = first.topic.clone();
        let wait = first.properties.get(property_key::WAIT).cloned();
        for m in &msgs {
            self.validate(m)?;
            if m.topic != topic {
                return Err(ClientError::InvalidMessage(
                    "a batch must have one topic".into(),
                ));
            }
            if m.properties.get(property_key::WAIT) != wait.as_ref() {
                return Err(ClientError::InvalidMessage(
                    "a batch must share WAIT".into(),
                ));
            }
            if m.properties.contains_key(property_key::DELAY) {
                return Err(ClientError::InvalidMessage(
                    "a batch cannot be delayed".into(),
                ));
            }
        }
        if topic.starts_with(tern_common::message::RETRY_GROUP_TOPIC_PREFIX) {
            return Err(ClientError::InvalidMessage(
                "a batch cannot go to a retry topic".into(),
            ));
        }
        let mut uniq_keys = Vec::with_capacity(msgs.len());
        let mut entries = Vec::with_capacity(msgs.len());
        for m in &msgs {
            let mut properties = m.properties.clone();
            let uniq = properties
                .entry(property_key::UNIQ_KEY.to_string())
                .or_insert_with(tern_common::message::new_uniq_id)
                .clone();
            properties
                .entry(property_key::WAIT.to_string())
                .or_insert_with(|| "true".to_string());
            uniq_keys.push(uniq);
            entries.push(tern_common::message::batch::BatchEntry {
                flag: m.flag,
                body: m.body.clone(),
                properties: tern_common::message::encode_properties(&properties),
            });
        }
        let body = tern_common::message::batch::encode_batch(&entries)
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        if body.len() > self.max_message_size {
            return Err(ClientError::InvalidMessage(
                "batch exceeds the size limit".into(),
            ));
        }
        let msg_id = uniq_keys.join(",");
        let attempts = 1 + self.retry_times;
        let mut last_failed: Option<String> = None;
        let mut last_err = None;
        for attempt in 0..attempts {
            let queues = self.publish_queues(&topic).await?;
            let mq = self.select_queue(&queues, last_failed.as_deref())?;
            let addr = match self
                .instance
                .find_master_or_refresh(&mq.broker_name, &topic)
                .await
            {
                Ok(addr) => addr,
                Err(err) => {
                    last_err = Some(err);
                    last_failed = Some(mq.broker_name);
                    continue;
                }
            };
            let header = SendMessageRequestHeader::<&str> {
                producer_group: &self.group,
                topic: &topic,
                default_topic: AUTO_CREATE_TOPIC,
                default_topic_queue_nums: self.default_topic_queue_nums,
                queue_id: mq.queue_id,
                sys_flag: 0,
                born_timestamp: now_ms(),
                flag: 0,
                properties: Some(""),
                reconsume_times: None,
                unit_mode: Some(false),
                max_reconsume_times: None,
                batch: Some(true),
                broker_name: Some(&mq.broker_name),
            };
            let req = send_request(RequestCode::SendBatchMessage, &header, body.clone());
            let outcome = match self.instance.invoke(&addr, req, self.send_timeout).await {
                Ok(response) => parse_send_response(&addr, &response, &mq, msg_id.clone()),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(result) => return Ok(result),
                Err(err) if err.is_retryable_send_error() => {
                    debug!(attempt, broker = %mq.broker_name, error = %err, "batch send failed");
                    self.failed_brokers
                        .lock()
                        .insert(mq.broker_name.clone(), Instant::now());
                    let _ = self.instance.update_route(&topic).await;
                    last_failed = Some(mq.broker_name);
                    last_err = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(ClientError::SendFailed {
            attempts,
            source: Box::new(last_err.unwrap_or(ClientError::NoRoute { topic })),
        })
    }
}

/// The TBW102 route as a template for an unknown topic: each broker's queue counts clamped
/// to `queue_nums` (Java's `DefaultMQProducerImpl` fallback, PROTOCOL.md §9.5).
fn clamp_route(mut route: TopicRouteData, queue_nums: i32) -> TopicRouteData {
    for qd in &mut route.queue_datas {
        qd.read_queue_nums = qd.read_queue_nums.min(queue_nums);
        qd.write_queue_nums = qd.write_queue_nums.min(queue_nums);
    }
    route
}

/// Round-robin from `start`: the first queue whose broker is neither `last_failed` nor in
/// `isolated`, else the first not on `last_failed`, else `queues[start % len]`; `None` only
/// for an empty list.
fn choose_queue(
    queues: &[MessageQueue],
    start: usize,
    last_failed: Option<&str>,
    isolated: &[String],
) -> Option<MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let ring = || (0..queues.len()).map(|i| &queues[(start + i) % queues.len()]);
    let not_last = |q: &&MessageQueue| Some(q.broker_name.as_str()) != last_failed;
    ring()
        .find(|q| not_last(q) && !isolated.contains(&q.broker_name))
        .or_else(|| ring().find(not_last))
        .or_else(|| queues.get(start % queues.len()))
        .cloned()
}

/// The property string of a single send and its `UNIQ_KEY`: `msg`'s properties plus a
/// generated `UNIQ_KEY` and `WAIT=true` when it has none (or an invalid one), all in key
/// order as [`encode_properties`](tern_common::message::encode_properties) writes them, built
/// without copying the message's property map.
fn send_properties(msg: &Message) -> (String, String) {
    use tern_common::message::property::{
        is_valid_property, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR,
    };
    let own_uniq = msg
        .properties
        .get(property_key::UNIQ_KEY)
        .filter(|u| is_valid_property(property_key::UNIQ_KEY, u));
    let uniq = own_uniq
        .cloned()
        .unwrap_or_else(tern_common::message::new_uniq_id);
    // Entries to add, in key order (UNIQ_KEY < WAIT).
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(2);
    if own_uniq.is_none() {
        extra.push((property_key::UNIQ_KEY, &uniq));
    }
    if !msg.properties.contains_key(property_key::WAIT) {
        extra.push((property_key::WAIT, "true"));
    }
    let len: usize = msg
        .properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .chain(extra.iter().map(|(k, v)| k.len() + v.len() + 2))
        .sum();
    let mut text = String::with_capacity(len);
    let push = |text: &mut String, name: &str, value: &str| {
        text.push_str(name);
        text.push(NAME_VALUE_SEPARATOR);
        text.push_str(value);
        text.push(PROPERTY_SEPARATOR);
    };
    let mut extra = extra.into_iter().peekable();
    for (name, value) in &msg.properties {
        while let Some((n, v)) = extra.next_if(|(n, _)| *n < name.as_str()) {
            push(&mut text, n, v);
        }
        if is_valid_property(name, value) {
            push(&mut text, name, value);
        }
    }
    for (n, v) in extra {
        push(&mut text, n, v);
    }
    (text, uniq)
}

/// Maps a SEND response to a [`SendResult`] (PROTOCOL.md §2.3 response, §1.8 reactions).
pub(crate) fn parse_send_response(
    addr: &str,
    response: &RemotingCommand,
    mq: &MessageQueue,
    msg_id: String,
) -> Result<SendResult> {
    let status = match ResponseCode::try_from(response.code) {
        Ok(ResponseCode::Success) => SendStatus::SendOk,
        Ok(ResponseCode::FlushDiskTimeout) => SendStatus::FlushDiskTimeout,
        Ok(ResponseCode::FlushSlaveTimeout) => SendStatus::FlushSlaveTimeout,
        Ok(ResponseCode::SlaveNotAvailable) => SendStatus::SlaveNotAvailable,
        _ => return Err(broker_error(addr, response)),
    };
    if status != SendStatus::SendOk {
        warn!(broker = %addr, ?status, "message stored without the requested durability");
    }
    let header: SendMessageResponseHeader = response.decode_header()?;
    Ok(SendResult {
        status,
        msg_id,
        offset_msg_id: header.msg_id,
        message_queue: MessageQueue {
            topic: mq.topic.clone(),
            broker_name: mq.broker_name.clone(),
            queue_id: header.queue_id,
        },
        queue_offset: header.queue_offset,
        transaction_id: header.transaction_id,
    })
}

/// A SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request: `header` written once, with the V2
/// single-letter keys, into ext fields sized for all fourteen of them, and `body`.
fn send_request(
    code: RequestCode,
    header: &SendMessageRequestHeader<&str>,
    body: Bytes,
) -> RemotingCommand {
    let mut command = RemotingCommand::request_empty(code);
    command.ext_fields = ExtFields::with_capacity(14);
    header.encode_v2(&mut command.ext_fields);
    command.with_body(body)
}

/// zlib (level 5, as Java 5.x) of `body`, or `None` if compression does not shrink it.
fn zlib(body: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < body.len()).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_response_maps_storing_codes_to_statuses() {
        let mq = MessageQueue::new("T", "broker-a", 0);
        let req = RemotingCommand::request_empty(RequestCode::SendMessageV2);
        for (code, status) in [
            (0, SendStatus::SendOk),
            (10, SendStatus::FlushDiskTimeout),
            (12, SendStatus::FlushSlaveTimeout),
            (11, SendStatus::SlaveNotAvailable),
        ] {
            let mut resp = RemotingCommand::response_to(&req, ResponseCode::Success);
            resp.code = code;
            resp.ext_fields.insert("msgId".into(), "AB".into());
            resp.ext_fields.insert("queueId".into(), "3".into());
            resp.ext_fields.insert("queueOffset".into(), "17".into());
            let r = parse_send_response("b", &resp, &mq, "U".into()).expect("stored");
            assert_eq!(r.status, status);
            assert_eq!(r.message_queue.queue_id, 3);
            assert_eq!(r.queue_offset, 17);
            assert_eq!(r.offset_msg_id, "AB");
            assert_eq!(r.msg_id, "U");
        }
        let resp = RemotingCommand::response_to(&req, ResponseCode::TopicNotExist);
        let err = parse_send_response("b", &resp, &mq, "U".into()).expect_err("error code");
        assert_eq!(err.response_code(), Some(17));
        // A success without the required header fields is an error, not a panic.
        let resp = RemotingCommand::response_to(&req, ResponseCode::Success);
        assert!(parse_send_response("b", &resp, &mq, "U".into()).is_err());
    }

    fn two_brokers() -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = ["broker-a", "broker-b"]
            .iter()
            .flat_map(|b| (0..2).map(move |i| MessageQueue::new("T", *b, i)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn queue_choice_is_round_robin() {
        let qs = two_brokers();
        let picked: Vec<MessageQueue> = (0..4)
            .filter_map(|i| choose_queue(&qs, i, None, &[]))
            .collect();
        assert_eq!(picked, qs);
        assert_eq!(choose_queue(&[], 0, None, &[]), None);
    }

    #[test]
    fn queue_choice_avoids_the_failed_and_isolated_brokers() {
        let qs = two_brokers();
        for start in 0..8 {
            let q = choose_queue(&qs, start, Some("broker-a"), &[]).expect("a queue");
            assert_eq!(q.broker_name, "broker-b");
            let q = choose_queue(&qs, start, None, &["broker-b".to_string()]).expect("a queue");
            assert_eq!(q.broker_name, "broker-a");
        }
        // Everything failed: still pick something rather than give up.
        let only_a: Vec<MessageQueue> = qs
            .iter()
            .filter(|q| q.broker_name == "broker-a")
            .cloned()
            .collect();
        let q =
            choose_queue(&only_a, 1, Some("broker-a"), &["broker-a".to_string()]).expect("a queue");
        assert_eq!(q, only_a[1]);
    }

    #[test]
    fn fallback_route_is_clamped_and_publishes_to_masters_only() {
        use tern_common::route::{BrokerData, QueueData};
        let mut a = BrokerData::new("c", "broker-a");
        a.broker_addrs.insert(0, "10.0.0.1:10911".into());
        a.broker_addrs.insert(1, "10.0.0.2:10911".into());
        let b = BrokerData::new("c", "broker-b"); // no master alive
        let qd = |name: &str| QueueData {
            broker_name: name.into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 7,
            topic_sys_flag: 0,
        };
        let route = TopicRouteData {
            broker_datas: vec![a, b],
            queue_datas: vec![qd("broker-b"), qd("broker-a")],
            ..Default::default()
        };
        let clamped = clamp_route(route, 4);
        let publish = clamped.publish_queues("NewTopic");
        let expected: Vec<MessageQueue> = (0..4)
            .map(|i| MessageQueue::new("NewTopic", "broker-a", i))
            .collect();
        assert_eq!(publish, expected);
        // Consumers read from every broker group with read permission.
        assert_eq!(clamped.subscribe_queues("NewTopic").len(), 8);
    }

    #[test]
    fn send_properties_add_uniq_key_and_wait_only_when_missing() {
        use tern_common::message::decode_properties;
        let plain = Message::new("T", "b").with_tags("TagA");
        let (text, uniq) = send_properties(&plain);
        let props = decode_properties(&text);
        assert_eq!(props.get(property_key::UNIQ_KEY), Some(&uniq));
        assert_eq!(uniq.len(), 32);
        assert_eq!(
            props.get(property_key::WAIT).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            props.get(property_key::TAGS).map(String::as_str),
            Some("TagA")
        );
        // Two sends of one message get different ids.
        assert_ne!(send_properties(&plain).1, uniq);
        // Key order, as the map encoder writes it, with custom names on either side.
        let mut custom = Message::new("T", "b").with_tags("TagA");
        custom.set_property("a_lower", "1");
        custom.set_property("ZED", "2");
        custom.set_property("EMPTY", "");
        let (text, uniq) = send_properties(&custom);
        let mut expected = custom.properties.clone();
        expected.insert(property_key::UNIQ_KEY.into(), uniq);
        expected.insert(property_key::WAIT.into(), "true".into());
        assert_eq!(text, tern_common::message::encode_properties(&expected));

        let mut own = Message::new("T", "b");
        own.set_property(property_key::UNIQ_KEY, "ABC");
        own.set_property(property_key::WAIT, "false");
        let (text, uniq) = send_properties(&own);
        assert_eq!(uniq, "ABC");
        let props = decode_properties(&text);
        assert_eq!(props.len(), 2);
        assert_eq!(
            text,
            tern_common::message::encode_properties(&own.properties)
        );
        assert_eq!(
            props.get(property_key::WAIT).map(String::as_str),
            Some("false")
        );
        assert_eq!(
            props.get(property_key::UNIQ_KEY).map(String::as_str),
            Some("ABC")
        );
    }

    #[test]
    fn zlib_only_when_it_helps() {
        assert!(zlib(&[7u8; 8192]).is_some());
        assert!(zlib(b"x").is_none());
    }
}
