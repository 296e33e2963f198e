//! `tern-common`: everything the Tern roles share on the wire.
//!
//! Tern speaks Apache RocketMQ's remoting protocol (see `docs/design/protocol.md` and the
//! team's `PROTOCOL.md`). This crate holds the sans-IO protocol layer (frames, commands,
//! codes, typed headers), the message model and its byte-exact CommitLog encoding, the
//! routing types served by the NameServer, and the async remoting server and client built
//! on tokio. It knows nothing about storage or about any one role's state.
//!
//! # Layout
//! - [`protocol`]: frame codec, [`protocol::RemotingCommand`], request/response codes, typed headers.
//! - [`filter`]: SQL92 message filter (selector parser and three-valued evaluator, sans-IO).
//! - [`message`]: `Message`, `MessageExt`, property string, CommitLog record codec, message ids, tag hash.
//! - [`route`]: `TopicRouteData`, `BrokerData`, `QueueData`, cluster info, topic config, perm bits.
//! - [`remoting`]: TCP remoting server (connection tasks, server→client requests) and client.
//! - `metrics` (feature `metrics`): the servers' shared Prometheus HTTP endpoint and request timing.
//! - `runtime` (feature `runtime`): the servers' logging, shutdown signals and `listening on` line.

pub mod filter;
pub mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod protocol;
pub mod remoting;
pub mod route;
#[cfg(feature = "runtime")]
pub mod runtime;
