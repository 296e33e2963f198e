//! [`TransactionProducer`]: transactional (half) messages with a [`TransactionListener`]
//! (Java's `TransactionMQProducer`, PROTOCOL.md §5.5 and §10.2).
//!
//! `send_in_transaction` sends the message as a half message (properties `TRAN_MSG=true`,
//! `PGROUP=<group>`, sysFlag `TRANSACTION_PREPARED` 0x4, no delay), runs the application's
//! local transaction, then sends END_TRANSACTION (37, oneway) with commit (8), rollback (12) or
//! unknown (0) to the master that stored the half message. A half message that stays
//! unresolved is later checked by the broker with CHECK_TRANSACTION_STATE (39): the broker
//! picks any live connection of the producer group, so every instance of the group answers
//! checks — [`TransactionListener::check_local_transaction`] runs and its answer goes back as
//! END_TRANSACTION with `fromTransactionCheck=true` on the connection the check came from.
//!
//! Checks are answered by at most `check_concurrency` listener calls at a time (on the
//! blocking thread pool, so a listener may block on I/O); at most [`MAX_QUEUED_CHECKS`] wait
//! behind them, further checks are dropped (the broker asks again on its next pass).

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tern_common::message::record::sys_flag;
use tern_common::message::{decode_offset_msg_id, property_key, Message, MessageExt};
use tern_common::protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, SerializeType};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::instance::{ClientInstance, TransactionCheckHook};
use crate::producer::{Producer, ProducerBuilder, SendOptions, SendResult, SendStatus};

/// Check-backs allowed to wait for a free listener slot before further ones are dropped.
pub const MAX_QUEUED_CHECKS: usize = 2000;

/// Outcome of a local transaction (Java `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Deliver the message (END_TRANSACTION commitOrRollback = 8).
    Commit,
    /// Drop the message (12).
    Rollback,
    /// Not decided yet; the broker checks back later (0).
    Unknown,
}

impl LocalTransactionState {
    /// The END_TRANSACTION `commitOrRollback` value (PROTOCOL.md §5.3).
    pub fn commit_or_rollback(self) -> i32 {
        match self {
            LocalTransactionState::Commit => sys_flag::TRANSACTION_COMMIT_TYPE,
            LocalTransactionState::Rollback => sys_flag::TRANSACTION_ROLLBACK_TYPE,
            LocalTransactionState::Unknown => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }
}

/// The application side of a transaction.
///
/// Both methods are synchronous: `execute_local_transaction` runs on the task that called
/// [`TransactionProducer::send_in_transaction`] (keep it short or use
/// `tokio::task::block_in_place`), `check_local_transaction` runs on the blocking thread pool.
pub trait TransactionListener: Send + Sync + 'static {
    /// Runs the local transaction for the stored half message `msg`; `arg` is what the caller
    /// passed to `send_in_transaction`.
    fn execute_local_transaction(
        &self,
        msg: &Message,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState;

    /// Answers a broker's check-back for a half message whose outcome the broker does not
    /// know (`Unknown` earlier, or the END_TRANSACTION was lost). `msg` is the half message
    /// with its real topic and queue; `msg.unique_id()` is the id `send_in_transaction`
    /// returned.
    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState;
}

/// The result of [`TransactionProducer::send_in_transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionSendResult {
    /// The half message's send result (`msg_id` = UNIQ_KEY, `queue_offset` = half queue offset).
    pub send_result: SendResult,
    /// What the local transaction decided (Rollback without running it if the broker stored
    /// the half message without the requested durability).
    pub local_state: LocalTransactionState,
}

/// Builder of a [`TransactionProducer`]; see [`TransactionProducer::builder`].
pub struct TransactionProducerBuilder {
    producer: ProducerBuilder,
    listener: Option<Arc<dyn TransactionListener>>,
    check_concurrency: usize,
    warm_up_topics: Vec<String>,
}

impl std::fmt::Debug for TransactionProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionProducerBuilder")
            .field("producer", &self.producer)
            .field("check_concurrency", &self.check_concurrency)
            .field("warm_up_topics", &self.warm_up_topics)
            .finish()
    }
}

impl TransactionProducerBuilder {
    /// NameServer addresses, `;`-separated.
    pub fn namesrv_addr(mut self, addrs: &str) -> Self {
        self.producer = self.producer.namesrv_addr(addrs);
        self
    }

    /// The producer group (required); check-backs reach any instance of it.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.producer = self.producer.group(group);
        self
    }

    /// Timeout of the half-message send (default 3 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.producer = self.producer.send_timeout(timeout);
        self
    }

    /// Retries of the half-message send on another queue (default 2).
    pub fn retry_times(mut self, times: u32) -> Self {
        self.producer = self.producer.retry_times(times);
        self
    }

    /// Header encoding (MessagePack by default; JSON for Apache RocketMQ brokers).
    pub fn serialize_type(mut self, t: SerializeType) -> Self {
        self.producer = self.producer.serialize_type(t);
        self
    }

    /// Instance name (part of the client id).
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.producer = self.producer.instance_name(name);
        self
    }

    /// Replaces every shared client setting at once.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.producer = self.producer.client_config(config);
        self
    }

    /// The application's listener (required).
    pub fn listener(mut self, listener: impl TransactionListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The application's listener, shared.
    pub fn listener_arc(mut self, listener: Arc<dyn TransactionListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Listener calls answering check-backs at the same time (default 4, at least 1).
    pub fn check_concurrency(mut self, n: usize) -> Self {
        self.check_concurrency = n.max(1);
        self
    }

    /// Topics whose brokers this producer heartbeats to right at start, so an instance that
    /// has not sent anything yet answers check-backs for half messages other instances of the
    /// group sent to those topics.
    pub fn warm_up_topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.warm_up_topics
            .extend(topics.into_iter().map(Into::into));
        self
    }

    /// Starts the producer, installs the check-back handler and warms up the routes.
    ///
    /// # Errors
    /// [`ClientError::Config`] for a missing group, NameServer list or listener; route
    /// lookups of warm-up topics that fail are errors too.
    pub async fn build(self) -> Result<TransactionProducer> {
        let listener = self
            .listener
            .ok_or_else(|| ClientError::Config("transaction listener not set".into()))?;
        let producer = self.producer.build().await?;
        let instance = producer.inner().instance.clone();
        let group = producer.group().to_string();
        let hook = Arc::new(CheckHandler {
            instance: Arc::downgrade(&instance),
            group: group.clone(),
            listener: listener.clone(),
            queued: Arc::new(Semaphore::new(MAX_QUEUED_CHECKS)),
            running: Arc::new(Semaphore::new(self.check_concurrency)),
        });
        instance.set_transaction_hook(hook);
        let tp = TransactionProducer {
            producer,
            listener,
            heartbeated: Arc::new(Mutex::new(HashSet::new())),
        };
        for topic in &self.warm_up_topics {
            instance.route(topic).await?;
        }
        if !self.warm_up_topics.is_empty() {
            instance.send_heartbeat_to_all().await;
            tp.heartbeated
                .lock()
                .extend(instance.all_broker_addrs(true));
        }
        Ok(tp)
    }
}

/// Sends transactional messages; cheap to clone.
///
/// ```no_run
/// use tern_client::transaction::{LocalTransactionState, TransactionListener, TransactionProducer};
/// use tern_common::message::{Message, MessageExt};
///
/// struct Orders;
/// impl TransactionListener for Orders {
///     fn execute_local_transaction(
///         &self,
///         _msg: &Message,
///         _arg: Option<&(dyn std::any::Any + Send + Sync)>,
///     ) -> LocalTransactionState {
///         LocalTransactionState::Commit
///     }
///     fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
///         LocalTransactionState::Commit
///     }
/// }
///
/// # async fn demo() -> Result<(), tern_client::ClientError> {
/// let producer = TransactionProducer::builder()
///     .namesrv_addr("127.0.0.1:9876")
///     .group("orders-tx")
///     .listener(Orders)
///     .build()
///     .await?;
/// let result = producer.send_in_transaction(Message::new("Orders", "paid"), None).await?;
/// println!("{} -> {:?}", result.send_result.msg_id, result.local_state);
/// producer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TransactionProducer {
    producer: Producer,
    listener: Arc<dyn TransactionListener>,
    /// Broker addresses this producer heartbeated to since it learned them.
    heartbeated: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for TransactionProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionProducer")
            .field("producer", &self.producer)
            .finish()
    }
}

impl TransactionProducer {
    /// A builder with the producer defaults, check concurrency 4 and no warm-up topics.
    pub fn builder() -> TransactionProducerBuilder {
        TransactionProducerBuilder {
            producer: Producer::builder(),
            listener: None,
            check_concurrency: 4,
            warm_up_topics: Vec::new(),
        }
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        self.producer.group()
    }

    /// The client id reported to brokers.
    pub fn client_id(&self) -> &str {
        self.producer.client_id()
    }

    /// Sends `msg` as a half message, runs the local transaction and reports its outcome to
    /// the broker (PROTOCOL.md §5.5). A failed END_TRANSACTION is logged, not returned: the
    /// broker's check-back resolves the transaction.
    ///
    /// # Errors
    /// The send's errors ([`ClientError::SendFailed`], [`ClientError::InvalidMessage`], …); the
    /// local transaction is not run then.
    pub async fn send_in_transaction(
        &self,
        mut msg: Message,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<TransactionSendResult> {
        let inner = self.producer.inner();
        for key in [
            property_key::DELAY,
            property_key::TIMER_DELIVER_MS,
            property_key::TIMER_DELAY_MS,
            property_key::TIMER_DELAY_SEC,
        ] {
            msg.remove_property(key);
        }
        msg.set_property(property_key::TRAN_MSG, "true");
        msg.set_property(property_key::PGROUP, inner.group.clone());
        msg.ensure_uniq_key();
        let opts = SendOptions {
            sys_flag: sys_flag::TRANSACTION_PREPARED_TYPE,
            ..SendOptions::default()
        };
        let send_result = inner.send_with_retries(&msg, &opts).await?;
        let addr = inner
            .instance
            .find_master(&send_result.message_queue.broker_name);
        if let Some(addr) = &addr {
            self.heartbeat_once(addr).await;
        }
        let local_state = if send_result.status == SendStatus::SendOk {
            if let Some(id) = &send_result.transaction_id {
                msg.set_property(property_key::TRANSACTION_ID, id.clone());
            }
            self.listener.execute_local_transaction(&msg, arg)
        } else {
            LocalTransactionState::Rollback
        };
        match addr {
            Some(addr) => {
                if let Err(err) = self.end_transaction(&addr, &send_result, local_state).await {
                    warn!(broker = %addr, error = %err, "end transaction failed; the broker will check back");
                }
            }
            None => warn!(
                broker = %send_result.message_queue.broker_name,
                "no master address for end transaction; the broker will check back"
            ),
        }
        Ok(TransactionSendResult {
            send_result,
            local_state,
        })
    }

    /// Sends the first heartbeat to a broker this producer just stored a half message on, so
    /// check-backs find it before the periodic heartbeat.
    async fn heartbeat_once(&self, addr: &str) {
        if self.heartbeated.lock().contains(addr) {
            return;
        }
        let instance = &self.producer.inner().instance;
        instance.send_heartbeat_to_all().await;
        self.heartbeated.lock().insert(addr.to_string());
    }

    async fn end_transaction(
        &self,
        addr: &str,
        send_result: &SendResult,
        state: LocalTransactionState,
    ) -> Result<()> {
        let (_, commit_log_offset) =
            decode_offset_msg_id(&send_result.offset_msg_id).map_err(|e| {
                ClientError::Header(tern_common::protocol::HeaderError::Invalid {
                    field: "msgId",
                    value: e.to_string(),
                })
            })?;
        let header = EndTransactionRequestHeader {
            producer_group: self.group().to_string(),
            tran_state_table_offset: send_result.queue_offset,
            commit_log_offset,
            commit_or_rollback: state.commit_or_rollback(),
            from_transaction_check: Some(false),
            msg_id: send_result.msg_id.clone(),
            transaction_id: Some(
                send_result
                    .transaction_id
                    .clone()
                    .unwrap_or_else(|| send_result.msg_id.clone()),
            ),
            topic: Some(send_result.message_queue.topic.clone()),
            broker_name: Some(send_result.message_queue.broker_name.clone()),
        };
        let request = RemotingCommand::request(RequestCode::EndTransaction, &header);
        self.producer
            .inner()
            .instance
            .invoke_oneway(addr, request)
            .await
    }

    /// Unregisters the group from the brokers and stops the client instance; check-backs are
    /// no longer answered by this instance.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}

/// Answers CHECK_TRANSACTION_STATE for one producer group.
struct CheckHandler {
    instance: std::sync::Weak<ClientInstance>,
    group: String,
    listener: Arc<dyn TransactionListener>,
    queued: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl TransactionCheckHook for CheckHandler {
    fn check_transaction_state(
        &self,
        broker_addr: String,
        request: RemotingCommand,
    ) -> BoxFuture<'static, ()> {
        let Ok(queued) = self.queued.clone().try_acquire_owned() else {
            warn!(broker = %broker_addr, "too many pending check-backs; dropping one");
            return Box::pin(async {});
        };
        let instance = self.instance.clone();
        let group = self.group.clone();
        let listener = self.listener.clone();
        let running = self.running.clone();
        Box::pin(async move {
            let _queued = queued;
            let Ok(_running) = running.acquire_owned().await else {
                return;
            };
            let Some(instance) = instance.upgrade() else {
                return;
            };
            if let Err(err) =
                answer_check(&instance, &group, listener, &broker_addr, &request).await
            {
                debug!(broker = %broker_addr, error = %err, "check-back not answered");
            }
        })
    }
}

/// Decodes a check-back, asks the listener and sends END_TRANSACTION (PROTOCOL.md §5.5).
async fn answer_check(
    instance: &ClientInstance,
    group: &str,
    listener: Arc<dyn TransactionListener>,
    broker_addr: &str,
    request: &RemotingCommand,
) -> Result<()> {
    let header: CheckTransactionStateRequestHeader = request.decode_header()?;
    let (msg, _) =
        MessageExt::decode(&request.body).map_err(|e| ClientError::Record(e.to_string()))?;
    let pgroup = msg.property(property_key::PGROUP).unwrap_or_default();
    if pgroup != group {
        return Err(ClientError::Config(format!(
            "check-back for producer group `{pgroup}` reached group `{group}`"
        )));
    }
    let uniq = msg.unique_id().to_string();
    let state = tokio::task::spawn_blocking(move || listener.check_local_transaction(&msg))
        .await
        .map_err(|e| ClientError::Config(format!("transaction listener failed: {e}")))?;
    if state == LocalTransactionState::Unknown {
        debug!(broker = %broker_addr, msg_id = %uniq, "check-back answered unknown");
        return Ok(());
    }
    let end = EndTransactionRequestHeader {
        producer_group: group.to_string(),
        tran_state_table_offset: header.tran_state_table_offset,
        commit_log_offset: header.commit_log_offset,
        commit_or_rollback: state.commit_or_rollback(),
        from_transaction_check: Some(true),
        msg_id: uniq.clone(),
        transaction_id: header.transaction_id.or(Some(uniq)),
        topic: None,
        broker_name: header.broker_name,
    };
    let request = RemotingCommand::request(RequestCode::EndTransaction, &end);
    instance.invoke_oneway(broker_addr, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_end_transaction_values() {
        assert_eq!(LocalTransactionState::Commit.commit_or_rollback(), 8);
        assert_eq!(LocalTransactionState::Rollback.commit_or_rollback(), 12);
        assert_eq!(LocalTransactionState::Unknown.commit_or_rollback(), 0);
    }

    #[tokio::test]
    async fn builder_requires_a_listener() {
        let err = TransactionProducer::builder()
            .namesrv_addr("127.0.0.1:9876")
            .group("g")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Config(_)));
    }
}
