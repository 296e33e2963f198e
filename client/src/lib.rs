//! `tern-client`: Tern's Rust SDK for RocketMQ-protocol clusters (Tern or Apache RocketMQ
//! 4.x/5.x brokers over the remoting protocol).
//!
//! It offers a [`Producer`] (sync, async, oneway, batch and ordered sends with retries), a
//! [`PushConsumer`] (long-polling pulls, rebalance, concurrent or orderly handlers, retries
//! through `%RETRY%<group>`), a [`PullConsumer`] (assign or subscribe mode) and an [`Admin`]
//! client. Each role owns one client instance: the remoting connections, routes from the
//! NameServer, heartbeats and the handler of requests brokers send to the client. Requests use
//! Tern's MessagePack headers by default; set [`SerializeType::Json`] to talk to Apache RocketMQ.
//!
//! It is not a broker library: the wire types come from `tern-common`.
//!
//! ```no_run
//! use tern_client::{ConsumeConcurrentlyStatus, Producer, PushConsumer};
//! use tern_common::message::{Message, MessageExt};
//!
//! # async fn demo() -> Result<(), tern_client::ClientError> {
//! let producer = Producer::builder().namesrv_addr("127.0.0.1:9876").group("pg").build().await?;
//! producer.send(Message::new("TopicA", "hello").with_tags("TagA")).await?;
//!
//! let consumer = PushConsumer::builder()
//!     .namesrv_addr("127.0.0.1:9876")
//!     .group("cg")
//!     .subscribe("TopicA", "TagA")
//!     .register_concurrent(|msgs: Vec<MessageExt>, _ctx| async move {
//!         println!("got {} messages", msgs.len());
//!         Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
//!     })
//!     .build()?;
//! consumer.start().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`ClientConfig`], settings every role shares (NameServers, encoding, intervals).
//! - [`error`]: the [`ClientError`] type.
//! - `instance`: the per-role client instance (routes, heartbeats, broker→client requests).
//! - [`producer`]: [`Producer`], [`SendResult`], queue selectors.
//! - [`consumer`]: [`PushConsumer`], [`PullConsumer`], handlers, allocation strategies.
//! - [`admin`]: [`Admin`], topic/cluster/offset/message administration.
//! - [`transaction`]: [`TransactionProducer`], [`TransactionListener`].

pub mod admin;
pub mod config;
pub mod consumer;
pub mod error;
pub(crate) mod instance;
pub mod producer;
pub mod transaction;

pub use admin::Admin;
pub use config::ClientConfig;
pub use consumer::{
    ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, ConsumeOrderlyStatus, MessageModel,
    PullConsumer, PushConsumer,
};
pub use error::ClientError;
pub use instance::TransactionCheckHook;
pub use producer::{Producer, SendResult, SendStatus};
pub use tern_common::protocol::SerializeType;
pub use transaction::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
