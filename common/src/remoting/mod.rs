//! The async remoting layer: a TCP server that serves [`RemotingCommand`]s to a handler, and a
//! client that keeps one connection per address (PROTOCOL.md §1.1, §1.7).
//!
//! # Remoting server and client
//!
//! Both sides use the same connection machinery ([`Connection`]):
//!
//! - **One reader, one writer.** A connection has one reader (a `FramedRead` with
//!   [`RemotingCodec`] over the read half) and one writer task that owns the write half and is
//!   fed by a bounded queue of encoded frames (`writer_queue_len`). Commands are encoded by the
//!   task that sends them, so an encoding error is returned to that caller and never breaks
//!   the connection. Responses may leave in any order; the peer matches them by `opaque`.
//! - **Requests.** The reader polls each incoming request's handler once itself: a handler
//!   that completes without waiting (a send under ASYNC_FLUSH, an offset query) is answered
//!   inline, and the answers of one burst of readable requests are handed to the writer as one
//!   chunk (one write for the burst). A handler that waits (a group commit, a parked pull that
//!   is slow to return `None`) moves to a task of its own, so it never holds up the connection.
//!   At most `max_in_flight_per_connection` handlers run at once per connection; when all
//!   permits are taken the reader stops reading (TCP backpressure) until one finishes. A handler that
//!   returns `Some(response)` has it written with the request's `opaque` and the response flag
//!   (RocketMQ's `NettyRemotingAbstract` does the same); `None` means "answer later through
//!   [`Connection::send_response`]" (long polling) or "no answer". Responses to oneway requests
//!   are dropped. A handler that panics answers `SYSTEM_ERROR` (1), as a Java processor that
//!   throws does.
//! - **Responses.** A frame with the response flag completes the pending invoke with the same
//!   `opaque`; an unknown `opaque` (for example one that already timed out) is logged at
//!   `debug` and dropped. An invoke that times out removes its pending entry, so the table
//!   never grows with abandoned calls.
//! - **Errors close one connection.** A decode error (frame above `max_frame_len`, unknown
//!   serialize type, bad header) closes that connection with a `warn!` naming the cause; other
//!   connections are unaffected. When a connection closes, every pending invoke on it fails
//!   with [`RemotingError::ConnectionClosed`] at once.
//! - **Idle connections.** The server closes a connection on which nothing was received for
//!   `idle_timeout` (RocketMQ's `serverChannelMaxIdleTimeSeconds`, 120 s).
//! - **Opaque.** Every connection has its own `opaque` counter for the requests it sends, so
//!   server→client requests (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED, …) use the
//!   server's counter, as in RocketMQ.
//!
//! Server: [`server::run`] accepts until its shutdown future resolves (connection count bounded
//! by a semaphore, accept errors back off), then stops accepting, stops every connection from
//! reading, lets in-flight handlers finish for a bounded time, flushes what they answered and
//! waits for every connection task. [`RequestHandler::on_connection_closed`] is called exactly
//! once per connection, after its reader stopped.
//!
//! Client: [`RemotingClient`] dials an address on first use, replaces the connection after it
//! fails, assigns `opaque`s and serves requests the server sends on that connection through a
//! [`ClientRequestHandler`] (or answers `REQUEST_CODE_NOT_SUPPORTED` without one, as the Java
//! client does for codes it has no processor for).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
//! use tern_common::remoting::{self, ClientConfig, Connection, RemotingClient, RequestHandler, ServerConfig};
//!
//! struct Echo;
//!
//! impl RequestHandler for Echo {
//!     async fn handle(&self, _conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
//!         Some(RemotingCommand::response_to(&request, ResponseCode::Success).with_body(request.body))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(remoting::run(listener, Arc::new(Echo), ServerConfig::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let client = RemotingClient::new(ClientConfig::default());
//! let request = RemotingCommand::request_empty(RequestCode::HeartBeat).with_body("hi");
//! let response = client.invoke(&addr, request, Duration::from_secs(3)).await?;
//! assert_eq!(&response.body[..], b"hi");
//!
//! client.shutdown();
//! let _ = stop.send(());
//! server.await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`connection`]: [`Connection`], the handle to one live connection, and its reader/writer tasks.
//! - [`server`]: [`ServerConfig`], [`RequestHandler`] and [`server::run`].
//! - [`client`]: [`ClientConfig`], [`ClientRequestHandler`] and [`RemotingClient`].
//!
//! [`RemotingCommand`]: crate::protocol::RemotingCommand
//! [`RemotingCodec`]: crate::protocol::RemotingCodec

pub mod client;
pub mod connection;
pub mod server;

pub use client::{ClientConfig, ClientRequestHandler, RemotingClient};
pub use connection::Connection;
pub use server::{run, RequestHandler, ServerConfig};

use crate::protocol::CodecError;

/// Why a remoting call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemotingError {
    /// Dialing `addr` failed or did not finish within the connect timeout.
    #[error("connecting to {addr} failed")]
    Connect {
        /// The address dialed, as given (`host:port`).
        addr: String,
        /// The socket error (`TimedOut` when the connect timeout elapsed).
        #[source]
        source: std::io::Error,
    },
    /// No response arrived within the caller's timeout (RocketMQ `RemotingTimeoutException`).
    #[error("no response from {addr} within {timeout_ms} ms")]
    Timeout {
        /// The peer's address.
        addr: String,
        /// The timeout that elapsed, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection closed before the command was sent or its response arrived.
    #[error("connection closed")]
    ConnectionClosed,
    /// The connection's writer queue was full, so the command was not queued
    /// (RocketMQ `RemotingTooMuchRequestException` / `RPC_SEND_TO_CHANNEL_FAILED`).
    #[error("writer queue full, command not sent")]
    SendFailed,
    /// The command could not be encoded (for example it exceeds the maximum frame length).
    #[error("encoding the command failed")]
    Codec(#[from] CodecError),
    /// A socket error outside dialing.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
}
