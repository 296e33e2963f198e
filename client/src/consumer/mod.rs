//! Consumers: [`PushConsumer`] (the SDK pulls and calls a handler) and [`PullConsumer`]
//! (the application pulls), plus the types they share.
//!
//! # Layout
//! - [`allocate`]: rebalance strategies ([`AllocateAveragely`]).
//! - `api`: consumer-side broker calls (pull, offsets, locks, send-back).
//! - `offset_store`: broker-side (clustering) and local-file (broadcasting) offsets.
//! - `process_queue`: the per-queue cache with in-order offset commit.
//! - `rebalance`: shared assignment and start-offset logic.
//! - [`push`]: the [`PushConsumer`].
//! - [`running`]: answers to broker→client admin requests (running info, consume directly,
//!   consumer status).
//! - [`pull`]: the [`PullConsumer`].

pub mod allocate;
pub(crate) mod api;
pub(crate) mod offset_store;
pub(crate) mod process_queue;
pub mod pull;
pub mod push;
pub(crate) mod rebalance;
pub mod running;

use std::future::Future;

use futures::future::BoxFuture;
use tern_common::message::MessageExt;
use tern_common::route::MessageQueue;

pub use allocate::{AllocateAveragely, AllocateStrategy};
pub use api::{PullResult, PullStatus};
pub use pull::{PullConsumer, PullConsumerBuilder};
pub use push::{PushConsumer, PushConsumerBuilder};
pub use running::{
    CmResult, ConsumeMessageDirectlyResult, ConsumerRunningInfo, GetConsumerStatusBody,
    ProcessQueueInfo,
};

/// How a group's consumers share messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// The group's consumers split the queues; each message goes to one of them; offsets
    /// live on the broker.
    #[default]
    Clustering,
    /// Every consumer gets every message; offsets live in a local file.
    Broadcasting,
}

impl MessageModel {
    pub(crate) fn wire(self) -> tern_common::protocol::body::MessageModel {
        match self {
            MessageModel::Clustering => tern_common::protocol::body::MessageModel::Clustering,
            MessageModel::Broadcasting => tern_common::protocol::body::MessageModel::Broadcasting,
        }
    }
}

/// Where a group with no stored offset for a queue starts (PROTOCOL.md §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    /// The queue's end: only messages sent from now on (the default). Note the broker
    /// answers offset 0 for a queue whose first message is still present, so a brand-new
    /// group consumes a young queue from its start.
    #[default]
    Last,
    /// The queue's start.
    First,
    /// The first message stored at or after this time (epoch milliseconds).
    Timestamp(i64),
}

impl ConsumeFrom {
    pub(crate) fn wire(self) -> tern_common::protocol::body::ConsumeFromWhere {
        use tern_common::protocol::body::ConsumeFromWhere as W;
        match self {
            ConsumeFrom::Last => W::LastOffset,
            ConsumeFrom::First => W::FirstOffset,
            ConsumeFrom::Timestamp(_) => W::Timestamp,
        }
    }
}

/// A concurrent handler's verdict on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeConcurrentlyStatus {
    /// Consumed; the offsets may be committed.
    ConsumeSuccess,
    /// Deliver the batch again later through `%RETRY%<group>` (clustering) — broadcasting
    /// consumers drop it, as Java does.
    ReconsumeLater,
}

/// An orderly handler's verdict on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOrderlyStatus {
    /// Consumed; the offsets may be committed.
    Success,
    /// Retry the same batch on this queue after a short pause (1 s), up to the maximum
    /// reconsume times; then it goes to the dead-letter queue.
    SuspendCurrentQueueAMoment,
}

/// What a handler learns about the batch besides the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeContext {
    /// The queue the messages came from (a `%RETRY%` queue for redeliveries).
    pub message_queue: MessageQueue,
}

/// The error type handlers may return; it counts as "consume later".
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A handler for concurrent consumption. Closures
/// `Fn(Vec<MessageExt>, ConsumeContext) -> impl Future<Output = Result<ConsumeConcurrentlyStatus, HandlerError>>`
/// implement it.
pub trait ConcurrentHandler: Send + Sync + 'static {
    /// Consumes a batch (at most `consume_batch_size` messages of one queue).
    fn consume(
        &self,
        msgs: Vec<MessageExt>,
        ctx: ConsumeContext,
    ) -> BoxFuture<'static, Result<ConsumeConcurrentlyStatus, HandlerError>>;
}

impl<F, Fut> ConcurrentHandler for F
where
    F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ConsumeConcurrentlyStatus, HandlerError>> + Send + 'static,
{
    fn consume(
        &self,
        msgs: Vec<MessageExt>,
        ctx: ConsumeContext,
    ) -> BoxFuture<'static, Result<ConsumeConcurrentlyStatus, HandlerError>> {
        Box::pin(self(msgs, ctx))
    }
}

/// A handler for orderly consumption: called for one queue at a time, in queue order.
/// Closures `Fn(Vec<MessageExt>, ConsumeContext) -> impl Future<Output = Result<ConsumeOrderlyStatus, HandlerError>>`
/// implement it.
pub trait OrderlyHandler: Send + Sync + 'static {
    /// Consumes a batch of consecutive messages of one queue.
    fn consume(
        &self,
        msgs: Vec<MessageExt>,
        ctx: ConsumeContext,
    ) -> BoxFuture<'static, Result<ConsumeOrderlyStatus, HandlerError>>;
}

impl<F, Fut> OrderlyHandler for F
where
    F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ConsumeOrderlyStatus, HandlerError>> + Send + 'static,
{
    fn consume(
        &self,
        msgs: Vec<MessageExt>,
        ctx: ConsumeContext,
    ) -> BoxFuture<'static, Result<ConsumeOrderlyStatus, HandlerError>> {
        Box::pin(self(msgs, ctx))
    }
}

/// What the application sees of a message pulled from `%RETRY%<group>`: its original topic
/// (property RETRY_TOPIC), as Java's `resetRetryAndNamespace` does.
pub(crate) fn restore_retry_topic(mut msg: MessageExt, group: &str) -> MessageExt {
    let retry = tern_common::message::retry_topic(group);
    if msg.message.topic == retry {
        if let Some(real) = msg
            .message
            .property(tern_common::message::property_key::RETRY_TOPIC)
        {
            msg.message.topic = real.to_string();
        }
    }
    msg
}

/// Takes every task handle out of `tasks` and waits for each to end (a panicked or cancelled
/// task counts as ended). The lock is not held while waiting.
pub(crate) async fn join_tasks(tasks: &parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>) {
    let handles = std::mem::take(&mut *tasks.lock());
    for handle in handles {
        let _ = handle.await;
    }
}
