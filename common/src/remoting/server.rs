//! The remoting server: accepts TCP connections and serves their requests through a
//! [`RequestHandler`] (mini-redis's `run(listener, shutdown)` shape; STYLE.md §1 "Transport").
//!
//! Contract: [`run`] returns only after the listener is closed and every connection task has
//! ended. A connection task ends when its peer closes, on a decode error, after
//! [`ServerConfig::idle_timeout`] of silence, or at shutdown; at shutdown in-flight handlers
//! get a bounded time (5 s) to finish and their responses are flushed (within 1 s) before the
//! socket closes. [`RequestHandler::on_connection_closed`] runs exactly once per accepted
//! connection, after its reader stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::connection::{self, Connection, Dispatch, LinkOptions};
use crate::protocol::RemotingCommand;

/// First pause after a failed `accept` (for example `EMFILE`); doubled on each further failure.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest pause between `accept` retries.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Limits of a remoting server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most connections served at once; further clients wait in the listen backlog until one
    /// closes. Default 10 000.
    pub max_connections: usize,
    /// Largest frame accepted or sent, in bytes, including the 4-byte length prefix
    /// (RocketMQ `com.rocketmq.remoting.frameMaxLength`). Default 16 MiB.
    pub max_frame_len: usize,
    /// Capacity of each connection's writer queue, in frames. Default 1024.
    pub writer_queue_len: usize,
    /// Most requests of one connection whose handler runs at once; the connection stops reading
    /// while all are taken. Default 1024.
    pub max_in_flight_per_connection: usize,
    /// Close a connection on which nothing was received for this long; `None` never does.
    /// Default 120 s (RocketMQ `serverChannelMaxIdleTimeSeconds`).
    pub idle_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            max_frame_len: 16 * 1024 * 1024,
            writer_queue_len: 1024,
            max_in_flight_per_connection: 1024,
            idle_timeout: Some(Duration::from_secs(120)),
        }
    }
}

/// What a server does with requests: the dispatcher of the NameServer or broker.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request. Return Some(response) to answer now (ignored for oneway requests),
    /// or None to answer later via [`Connection::send_response`] (long polling) or not at all
    /// (oneway).
    ///
    /// The connection's reader polls the returned future once; if it is not ready at once it
    /// continues in a task of its own, so a slow handler does not hold up the connection. A
    /// handler should therefore not block the thread (use `spawn_blocking` for that).
    /// The response is sent with the request's `opaque` and serialize type and the response
    /// flag, whatever the handler set. Unknown request codes are the handler's to answer
    /// (`REQUEST_CODE_NOT_SUPPORTED`); a handler that panics answers `SYSTEM_ERROR`.
    ///
    /// The request holds one of the connection's `max_in_flight_per_connection` permits until
    /// this future completes, so a request that waits for an event (a long-polled pull)
    /// should park `conn` somewhere and return `None` rather than wait here. Implementations
    /// may write `async fn handle(&self, conn: Connection, request: RemotingCommand) -> ...`.
    fn handle(
        &self,
        conn: Connection,
        request: RemotingCommand,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send;

    /// Called once when a connection closes (for registries keyed by connection).
    fn on_connection_closed(&self, _conn: &Connection) {}
}

/// Accepts connections until `shutdown` resolves, then stops accepting, tells every connection to
/// close and waits for their tasks. Accept errors back off (mini-redis style), connection count
/// bounded by a semaphore.
///
/// Never fails: accept errors are logged and retried after a pause that doubles from 10 ms up
/// to 1 s; a connection whose socket fails is dropped alone.
pub async fn run<H: RequestHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let dispatch: Dispatch = {
        let handler = Arc::clone(&handler);
        Arc::new(move |conn, request| {
            let handler = Arc::clone(&handler);
            Box::pin(async move { handler.handle(conn, request).await })
        })
    };
    let options = LinkOptions {
        max_frame_len: config.max_frame_len,
        writer_queue_len: config.writer_queue_len,
        max_in_flight: config.max_in_flight_per_connection,
        idle_timeout: config.idle_timeout,
    };
    match listener.local_addr() {
        Ok(addr) => info!(%addr, "remoting server accepting connections"),
        Err(cause) => warn!(cause = %cause, "remoting server address unknown"),
    }
    let accepting = Acceptor {
        listener: &listener,
        limit: Arc::new(Semaphore::new(config.max_connections.max(1))),
        handler,
        dispatch,
        options,
        stop: stop.clone(),
        connections: connections.clone(),
    };
    tokio::select! {
        () = accepting.run() => {}
        () = shutdown => {}
    }
    drop(listener);
    info!(
        connections = connections.len(),
        "remoting server stopped accepting, closing connections"
    );
    stop.cancel();
    connections.close();
    connections.wait().await;
    info!("remoting server stopped");
}

struct Acceptor<'a, H> {
    listener: &'a TcpListener,
    limit: Arc<Semaphore>,
    handler: Arc<H>,
    dispatch: Dispatch,
    options: LinkOptions,
    stop: CancellationToken,
    connections: TaskTracker,
}

impl<H: RequestHandler> Acceptor<'_, H> {
    /// Accepts forever; the caller stops it by dropping the future.
    async fn run(self) {
        loop {
            // Wait for a free slot before accepting, so excess clients queue in the backlog
            // instead of being accepted and starved.
            let Ok(permit) = Arc::clone(&self.limit).acquire_owned().await else {
                // The semaphore is never closed.
                return;
            };
            let stream = self.accept().await;
            let (conn, link) = match connection::open(stream, &self.options) {
                Ok(pair) => pair,
                Err(cause) => {
                    debug!(cause = %cause, "dropping connection that failed at once");
                    continue;
                }
            };
            let span = tracing::info_span!("connection", peer = %conn.peer_addr(), id = conn.id());
            let handler = Arc::clone(&self.handler);
            let dispatch = Arc::clone(&self.dispatch);
            let stop = self.stop.clone();
            self.connections.spawn(
                async move {
                    debug!("connection accepted");
                    link.run(dispatch, stop).await;
                    handler.on_connection_closed(&conn);
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    async fn accept(&self) -> TcpStream {
        let mut backoff = ACCEPT_BACKOFF_START;
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => return stream,
                Err(cause) => {
                    warn!(
                        cause = %cause,
                        backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        "accept failed, backing off"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}
