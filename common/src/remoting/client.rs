//! The remoting client: one connection per address, request/response by `opaque`, and
//! server→client requests served by a [`ClientRequestHandler`] (RocketMQ
//! `NettyRemotingClient`).
//!
//! Contract: the first call to an address dials it (bounded by
//! [`ClientConfig::connect_timeout`]); concurrent first calls share one dial. A connection
//! that closed (peer gone, decode or write error) is replaced by the next call; calls already
//! waiting on it fail with [`RemotingError::ConnectionClosed`] and are not retried here
//! (retry policy belongs to the caller, as in RocketMQ). After [`RemotingClient::shutdown`]
//! every call fails with [`RemotingError::ConnectionClosed`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, BoxFuture, FutureExt};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use super::connection::{self, Connection, Dispatch, LinkOptions};
use super::RemotingError;
use crate::protocol::{RemotingCommand, ResponseCode, SerializeType};

/// Writer queue of a client connection, in frames.
const CLIENT_WRITER_QUEUE_LEN: usize = 1024;
/// Most server→client requests handled at once per connection.
const CLIENT_MAX_IN_FLIGHT: usize = 64;

/// Settings of a [`RemotingClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for a TCP connection to be established (RocketMQ
    /// `connectTimeoutMillis`, 3 s). Also bounds how long [`RemotingClient::invoke_oneway`]
    /// waits for room in a full writer queue.
    pub connect_timeout: Duration,
    /// Largest frame accepted or sent, in bytes, including the length prefix. Default 16 MiB.
    pub max_frame_len: usize,
    /// Header serialize type of every request this client sends. Default JSON, which any
    /// RocketMQ server understands; Tern's SDK sets [`SerializeType::MsgPack`] for Tern servers.
    pub serialize_type: SerializeType,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            max_frame_len: 16 * 1024 * 1024,
            serialize_type: SerializeType::Json,
        }
    }
}

/// Serves requests a server sends to this client.
pub trait ClientRequestHandler: Send + Sync + 'static {
    /// A request the server sent on connection to `addr` (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED…).
    ///
    /// Return `Some(response)` to answer (built with [`RemotingCommand::response_to`]); it is
    /// dropped for oneway requests. Unknown codes should answer `REQUEST_CODE_NOT_SUPPORTED`.
    fn handle(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>>;
}

type HandlerSlot = Arc<RwLock<Option<Arc<dyn ClientRequestHandler>>>>;

/// A remoting client: cheap to clone, all clones share the connections.
///
/// Dropping the last clone closes every connection, as [`RemotingClient::shutdown`] does.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: ClientConfig,
    connections: Mutex<HashMap<String, Slot>>,
    handler: HandlerSlot,
    shutdown: CancellationToken,
    /// Set just before `shutdown` is cancelled, for the per-call check (a token's
    /// `is_cancelled` takes a mutex).
    shut_down: AtomicBool,
}

/// One address: its live connection, and a lock held while dialing so that concurrent first
/// calls dial once.
struct Slot {
    conn: Option<Connection>,
    dialing: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            conn: None,
            dialing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn live(&self) -> Option<Connection> {
        self.conn.as_ref().filter(|c| !c.is_closed()).cloned()
    }
}

impl fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotingClient")
            .field("config", &self.inner.config)
            .field("addresses", &self.inner.connections.lock().len())
            .field("shut_down", &self.inner.shutdown.is_cancelled())
            .finish()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        for (_, slot) in self.connections.get_mut().drain() {
            if let Some(conn) = slot.conn {
                conn.close();
            }
        }
        self.shutdown.cancel();
    }
}

impl RemotingClient {
    /// A client with no connections yet. Connections are dialed on first use, which needs a
    /// tokio runtime.
    pub fn new(config: ClientConfig) -> Self {
        RemotingClient {
            inner: Arc::new(ClientInner {
                config,
                connections: Mutex::new(HashMap::new()),
                handler: Arc::new(RwLock::new(None)),
                shutdown: CancellationToken::new(),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Sets the handler of server→client requests, for current and future connections. Without
    /// one, requests are answered with `REQUEST_CODE_NOT_SUPPORTED` (oneway ones are dropped).
    pub fn set_request_handler(&self, handler: Arc<dyn ClientRequestHandler>) {
        *self.inner.handler.write() = Some(handler);
    }

    /// One connection per address ("host:port"), created on first use, replaced after it fails; assigns the opaque.
    ///
    /// Sends `request` (its opaque replaced, flags cleared to a plain request, serialize type
    /// from [`ClientConfig::serialize_type`]) and waits for the response. `timeout` covers
    /// dialing too.
    ///
    /// # Errors
    /// [`RemotingError::Connect`] if dialing failed, [`RemotingError::Timeout`] (with `addr`)
    /// if no response came within `timeout`, [`RemotingError::ConnectionClosed`] if the
    /// connection closed first or the client was shut down, [`RemotingError::Codec`] if the
    /// request cannot be encoded.
    pub async fn invoke(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let timed_out = || RemotingError::Timeout {
            addr: addr.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        // An open connection is taken without the dial path's timer and clock reads (three
        // clock reads a call, about 2 % of a publishing client's CPU).
        let (conn, remaining) = match self.live_connection(addr)? {
            Some(conn) => (conn, timeout),
            None => {
                let start = Instant::now();
                match tokio::time::timeout(timeout, self.connection(addr)).await {
                    Ok(conn) => (conn?, timeout.saturating_sub(start.elapsed())),
                    Err(_) => return Err(timed_out()),
                }
            }
        };
        request.serialize_type = self.inner.config.serialize_type;
        conn.invoke_as_is(request, remaining)
            .await
            .map_err(|e| match e {
                RemotingError::Timeout { .. } => timed_out(),
                other => other,
            })
    }

    /// Sends `request` as a oneway request (flag set, opaque assigned, configured serialize
    /// type) without waiting for anything but room in the writer queue.
    ///
    /// # Errors
    /// [`RemotingError::Connect`], [`RemotingError::ConnectionClosed`],
    /// [`RemotingError::SendFailed`] if the writer queue stayed full for
    /// [`ClientConfig::connect_timeout`], [`RemotingError::Codec`].
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
    ) -> Result<(), RemotingError> {
        let conn = self.connection(addr).await?;
        request.serialize_type = self.inner.config.serialize_type;
        conn.send_oneway_within(request, self.inner.config.connect_timeout)
            .await
    }

    /// Closes the connection to `addr`, if any; pending calls on it fail with
    /// [`RemotingError::ConnectionClosed`] and the next call dials again.
    pub fn close_connection(&self, addr: &str) {
        let slot = self.inner.connections.lock().remove(addr);
        if let Some(conn) = slot.and_then(|s| s.conn) {
            conn.close();
        }
    }

    /// Closes every connection and refuses further calls.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        self.inner.shutdown.cancel();
        let slots: Vec<Slot> = self
            .inner
            .connections
            .lock()
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for conn in slots.into_iter().filter_map(|s| s.conn) {
            conn.close();
        }
    }

    /// How many invokes are waiting for a response, over all connections (for leak tests).
    #[doc(hidden)]
    pub fn pending_count(&self) -> usize {
        self.inner
            .connections
            .lock()
            .values()
            .filter_map(|s| s.conn.as_ref())
            .map(Connection::pending_count)
            .sum()
    }

    /// The open connection to `addr`, if there is one; `Err` once the client is shut down.
    fn live_connection(&self, addr: &str) -> Result<Option<Connection>, RemotingError> {
        let connections = self.inner.connections.lock();
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(RemotingError::ConnectionClosed);
        }
        Ok(connections.get(addr).and_then(Slot::live))
    }

    /// The live connection to `addr`, dialing it if there is none.
    async fn connection(&self, addr: &str) -> Result<Connection, RemotingError> {
        if let Some(conn) = self.live_connection(addr)? {
            return Ok(conn);
        }
        let dialing = {
            let mut connections = self.inner.connections.lock();
            let slot = connections.entry(addr.to_owned()).or_insert_with(Slot::new);
            Arc::clone(&slot.dialing)
        };
        let _dialing = dialing.lock().await;
        // Another call may have dialed while this one waited for the lock.
        if let Some(conn) = self.live_connection(addr)? {
            return Ok(conn);
        }
        let conn = self.dial(addr).await?;
        let mut connections = self.inner.connections.lock();
        if self.inner.shut_down.load(Ordering::Acquire) {
            conn.close();
            return Err(RemotingError::ConnectionClosed);
        }
        connections
            .entry(addr.to_owned())
            .or_insert_with(Slot::new)
            .conn = Some(conn.clone());
        Ok(conn)
    }

    async fn dial(&self, addr: &str) -> Result<Connection, RemotingError> {
        let config = &self.inner.config;
        let connect_error = |source| RemotingError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream =
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => return Err(connect_error(source)),
                Err(_) => {
                    return Err(connect_error(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out",
                    )))
                }
            };
        let options = LinkOptions {
            max_frame_len: config.max_frame_len,
            writer_queue_len: CLIENT_WRITER_QUEUE_LEN,
            max_in_flight: CLIENT_MAX_IN_FLIGHT,
            idle_timeout: None,
        };
        let (conn, link) = connection::open(stream, &options).map_err(connect_error)?;
        let span = tracing::info_span!("connection", peer = %addr, id = conn.id());
        span.in_scope(|| debug!(local = %conn.local_addr(), "connected"));
        let dispatch = client_dispatch(Arc::from(addr), Arc::clone(&self.inner.handler));
        tokio::spawn(
            link.run(dispatch, self.inner.shutdown.child_token())
                .instrument(span),
        );
        Ok(conn)
    }
}

/// Routes server→client requests to the handler set at the time each request arrives.
fn client_dispatch(addr: Arc<str>, handler: HandlerSlot) -> Dispatch {
    Arc::new(move |_conn, request: RemotingCommand| {
        let current = handler.read().clone();
        match current {
            Some(handler) => handler.handle(&addr, request),
            None if request.is_oneway() => {
                debug!(code = request.code, "no handler for oneway request");
                future::ready(None).boxed()
            }
            None => {
                let response =
                    RemotingCommand::response_to(&request, ResponseCode::RequestCodeNotSupported)
                        .with_remark(format!(" request type {} not supported", request.code));
                future::ready(Some(response)).boxed()
            }
        }
    })
}
