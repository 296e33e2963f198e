//! [`Connection`]: the handle to one live remoting connection, shared by the server and the
//! client, and the reader/writer tasks behind it.
//!
//! Contract: a `Connection` is a cheap clone of an `Arc`. Commands sent through it are encoded
//! by the calling task and queued on the connection's bounded writer queue; the writer task
//! writes them in queue order. Once the connection is closed (peer gone, decode or write
//! error, idle timeout, [`Connection::close`], shutdown) every send fails with
//! [`RemotingError::ConnectionClosed`] and every pending [`Connection::invoke`] fails at once
//! with the same error. Frames already queued when the connection closes are still written,
//! within a short bound, unless a write was interrupted half-way.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use super::RemotingError;
use crate::protocol::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use crate::protocol::{RemotingCodec, RemotingCommand, ResponseCode, SerializeType};

/// Process-wide connection ids, so that registries keyed by id never mix a server connection
/// with a client one.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// How long a shutting-down connection lets its in-flight request handlers run before it
/// aborts them.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection spends writing frames that were queued before it closed.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How many `opaque` values an invoke tries when the counter wrapped onto a still-pending call.
const MAX_OPAQUE_PROBES: usize = 16;

/// Stands for "no deadline" when an invoke's timeout overflows the clock (about 30 years).
const NO_DEADLINE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Write buffer of the writer task: small frames are batched into it, larger ones bypass it.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes a connection's reader asks the socket for at once: a burst of pipelined requests
/// (or responses) is taken in one `recv` instead of one per 8 KiB.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Size of the buffer that a connection's requests are encoded into and split off from.
const ENCODE_CHUNK_BYTES: usize = 64 * 1024;

/// Inline answers gathered by a connection's reader are handed to the writer once they
/// reach this many bytes, even if more requests are readable.
const INLINE_ANSWER_FLUSH_BYTES: usize = 64 * 1024;

/// A handle to one live remoting connection (server side: an accepted client; client side: the
/// connection to one address).
///
/// Cheap to clone; all clones refer to the same connection. Keep one in a registry (for
/// example the broker's producer/consumer tables) to send server→client requests later, or
/// in a suspended pull to answer it later with [`Connection::send_response`].
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    max_frame_len: usize,
    writer: mpsc::Sender<Bytes>,
    next_opaque: AtomicI32,
    pending: Mutex<PendingTable>,
    closed: CancellationToken,
    /// Set just before `closed` is cancelled: [`Connection::is_closed`] is on every request's
    /// path and a token's `is_cancelled` takes a mutex.
    is_closed: AtomicBool,
    last_serialize_type: AtomicU8,
    /// Requests are encoded here and split off as frames, so that a run of requests shares
    /// one allocation (of [`ENCODE_CHUNK_BYTES`]) instead of taking one each, freed by the
    /// writer on another thread.
    staging: Mutex<BytesMut>,
    /// Wakes the timeout sweeper ([`sweep_timeouts`]) when an invoke registers a deadline
    /// earlier than the one it sleeps until.
    sweep: Notify,
}

/// Invokes waiting for their response, by `opaque`. `closed` is set under the same lock that
/// inserts, so no invoke can register after the table was drained.
///
/// Deadlines are enforced by one sweeper task per connection rather than a timer per invoke,
/// as RocketMQ's `scanResponseTable` does: a tokio timer registered and cleared on every call
/// was 6 % of a publishing client's CPU.
struct PendingTable {
    closed: bool,
    calls: HashMap<i32, PendingCall, BuildHasherDefault<OpaqueHasher>>,
    /// When the sweeper next looks for expired calls: no later than the earliest deadline in
    /// `calls` (it may be earlier, once that call has completed). `None`: the sweeper waits
    /// for a registration.
    sweep_at: Option<Instant>,
}

/// Hashes the pending table's `opaque` keys with one multiply (Fibonacci hashing) instead of
/// SipHash: three hashes a call were 3 % of a publishing client's instructions. Keys are
/// inserted only from this side's own counter, so there is no flooding to defend against;
/// a peer's response can only look one up.
#[derive(Debug, Default)]
struct OpaqueHasher(u64);

impl std::hash::Hasher for OpaqueHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI_MULTIPLIER);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(FIBONACCI_MULTIPLIER);
    }
}

/// 2^64 divided by the golden ratio, odd: spreads consecutive keys over the high bits (and
/// keeps the low bits distinct).
const FIBONACCI_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// One invoke waiting for its response.
struct PendingCall {
    reply: oneshot::Sender<Reply>,
    deadline: Instant,
}

/// What a waiting invoke is woken with (a dropped sender means the connection closed).
enum Reply {
    Response(RemotingCommand),
    TimedOut,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("peer_addr", &self.inner.peer_addr)
            .field("local_addr", &self.inner.local_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// This connection's id, unique within the process (server and client connections alike).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues a response, typically a deferred one (a long-polled pull answered when a message
    /// arrives). The response flag is set here; `opaque` and serialize type must already be the
    /// request's (build it with [`RemotingCommand::response_to`]).
    ///
    /// Does not wait: a full writer queue is an error rather than a stall, so callers on a
    /// notification path are never blocked by one slow peer.
    ///
    /// # Errors
    /// [`RemotingError::ConnectionClosed`] if the connection is closed,
    /// [`RemotingError::SendFailed`] if its writer queue is full,
    /// [`RemotingError::Codec`] if the response cannot be encoded.
    pub fn send_response(&self, mut response: RemotingCommand) -> Result<(), RemotingError> {
        response.flag |= FLAG_RESPONSE;
        let frame = self.encode(response)?;
        self.try_enqueue(frame)
    }

    /// Sends a server→client request on this connection and waits for its response, matched by
    /// `opaque` (RocketMQ `invokeSync` on a channel). The `opaque` comes from this
    /// connection's own counter; the response and oneway flags are cleared; the serialize type
    /// is [`Connection::last_serialize_type`], the type the peer last used.
    ///
    /// Cancel-safe: dropping the future removes the pending entry.
    ///
    /// # Errors
    /// [`RemotingError::Timeout`] if no response arrived within `timeout` (the pending entry is
    /// removed), [`RemotingError::ConnectionClosed`] if the connection closed first,
    /// [`RemotingError::Codec`] if the request cannot be encoded.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        request.serialize_type = self.last_serialize_type();
        self.invoke_as_is(request, timeout).await
    }

    /// Queues a oneway server→client request (CHECK_TRANSACTION_STATE,
    /// NOTIFY_CONSUMER_IDS_CHANGED, …): sets the oneway flag, assigns an `opaque` and uses
    /// [`Connection::last_serialize_type`]. Does not wait.
    ///
    /// # Errors
    /// [`RemotingError::ConnectionClosed`], [`RemotingError::SendFailed`] (writer queue full),
    /// [`RemotingError::Codec`].
    pub fn send_oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        request.serialize_type = self.last_serialize_type();
        let frame = self.encode_oneway(request)?;
        self.try_enqueue(frame)
    }

    /// True once the connection is closed (by either side, an error, or shutdown).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed.load(Ordering::Acquire)
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// Closes the connection: reading stops, pending invokes fail with
    /// [`RemotingError::ConnectionClosed`], frames already queued are still written (bounded)
    /// and the socket is then closed. Idempotent.
    pub fn close(&self) {
        let drained = {
            let mut pending = self.inner.pending.lock();
            pending.closed = true;
            std::mem::take(&mut pending.calls)
        };
        // Dropping the senders wakes every waiting invoke with `ConnectionClosed`.
        drop(drained);
        self.inner.is_closed.store(true, Ordering::Release);
        self.inner.closed.cancel();
    }

    /// The serialize type of the last request received on this connection (JSON before the
    /// first one); server-initiated requests are sent in it (ARCHITECTURE.md, "Tern's
    /// MessagePack header").
    pub fn last_serialize_type(&self) -> SerializeType {
        SerializeType::from_code(self.inner.last_serialize_type.load(Ordering::Relaxed))
            .unwrap_or_default()
    }

    /// How many invokes on this connection are waiting for a response (for leak tests).
    #[doc(hidden)]
    pub fn pending_count(&self) -> usize {
        self.inner.pending.lock().calls.len()
    }

    /// Like [`Connection::invoke`] but keeps the request's serialize type (the client sends in
    /// its configured type).
    pub(crate) async fn invoke_as_is(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        request.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let timed_out = || RemotingError::Timeout {
            addr: self.inner.peer_addr.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now + NO_DEADLINE);
        let (opaque, response) = self.register(deadline)?;
        // Removes the pending entry on every exit path: timeout, error, or the caller dropping
        // this future.
        let _pending = PendingGuard {
            inner: &self.inner,
            opaque,
        };
        request.opaque = opaque;
        let frame = self.encode(request)?;
        // A full queue is waited on, within the call's deadline.
        if let Some(frame) = self.offer(frame)? {
            match tokio::time::timeout_at(deadline, self.enqueue(frame)).await {
                Ok(queued) => queued?,
                Err(_) => return Err(timed_out()),
            }
        }
        match response.await {
            Ok(Reply::Response(response)) => Ok(response),
            Ok(Reply::TimedOut) => Err(timed_out()),
            Err(_) => Err(RemotingError::ConnectionClosed),
        }
    }

    /// Queues a oneway request in its own serialize type, waiting at most `wait` for room in
    /// the writer queue.
    pub(crate) async fn send_oneway_within(
        &self,
        request: RemotingCommand,
        wait: Duration,
    ) -> Result<(), RemotingError> {
        let frame = self.encode_oneway(request)?;
        match tokio::time::timeout(wait, self.enqueue(frame)).await {
            Ok(result) => result,
            Err(_) => Err(RemotingError::SendFailed),
        }
    }

    fn encode_oneway(&self, mut request: RemotingCommand) -> Result<Bytes, RemotingError> {
        request.flag = (request.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        request.opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
        self.encode(request)
    }

    fn encode(&self, command: RemotingCommand) -> Result<Bytes, RemotingError> {
        let mut staging = self.inner.staging.lock();
        reserve_chunk(&mut staging);
        // On error the codec leaves `staging` as it was.
        RemotingCodec::new(self.inner.max_frame_len).encode(command, &mut staging)?;
        Ok(staging.split().freeze())
    }

    fn try_enqueue(&self, frame: Bytes) -> Result<(), RemotingError> {
        match self.offer(frame)? {
            None => Ok(()),
            Some(_) => Err(RemotingError::SendFailed),
        }
    }

    /// Queues `frame` if the writer queue has room; gives it back (`Some`) if the queue is
    /// full.
    ///
    /// # Errors
    /// [`RemotingError::ConnectionClosed`] if the connection is closed.
    fn offer(&self, frame: Bytes) -> Result<Option<Bytes>, RemotingError> {
        if self.is_closed() {
            return Err(RemotingError::ConnectionClosed);
        }
        match self.inner.writer.try_send(frame) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(frame)) => Ok(Some(frame)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RemotingError::ConnectionClosed),
        }
    }

    async fn enqueue(&self, frame: Bytes) -> Result<(), RemotingError> {
        tokio::select! {
            biased;
            () = self.inner.closed.cancelled() => Err(RemotingError::ConnectionClosed),
            sent = self.inner.writer.send(frame) => {
                sent.map_err(|_| RemotingError::ConnectionClosed)
            }
        }
    }

    /// Enters a call that must be answered by `deadline` in the pending table, waking the
    /// sweeper if that is earlier than it planned to look.
    fn register(
        &self,
        deadline: Instant,
    ) -> Result<(i32, oneshot::Receiver<Reply>), RemotingError> {
        let (reply, rx) = oneshot::channel();
        let mut pending = self.inner.pending.lock();
        if pending.closed {
            return Err(RemotingError::ConnectionClosed);
        }
        for _ in 0..MAX_OPAQUE_PROBES {
            let opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
            if let Entry::Vacant(slot) = pending.calls.entry(opaque) {
                slot.insert(PendingCall { reply, deadline });
                let sooner = pending.sweep_at.is_none_or(|at| deadline < at);
                if sooner {
                    pending.sweep_at = Some(deadline);
                }
                drop(pending);
                if sooner {
                    self.inner.sweep.notify_one();
                }
                return Ok((opaque, rx));
            }
        }
        Err(RemotingError::SendFailed)
    }

    /// Hands a response frame to the invoke waiting for its `opaque`.
    fn complete(&self, response: RemotingCommand) {
        let waiter = self.inner.pending.lock().calls.remove(&response.opaque);
        match waiter {
            // The invoke may have timed out in the meantime; then the response is dropped.
            Some(waiter) => drop(waiter.reply.send(Reply::Response(response))),
            None => debug!(
                opaque = response.opaque,
                code = response.code,
                "dropping response with unknown opaque"
            ),
        }
    }
}

struct PendingGuard<'a> {
    inner: &'a Inner,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().calls.remove(&self.opaque);
    }
}

/// The per-request entry point of a connection: the server's [`super::RequestHandler`] or the
/// client's [`super::ClientRequestHandler`], boxed.
pub(crate) type Dispatch = Arc<
    dyn Fn(Connection, RemotingCommand) -> BoxFuture<'static, Option<RemotingCommand>>
        + Send
        + Sync,
>;

/// Limits of one connection.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    pub(crate) max_frame_len: usize,
    pub(crate) writer_queue_len: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) idle_timeout: Option<Duration>,
}

/// The tasks of one connection, not yet started.
pub(crate) struct Link {
    conn: Connection,
    reader: FramedRead<OwnedReadHalf, RemotingCodec>,
    write_half: OwnedWriteHalf,
    queue: mpsc::Receiver<Bytes>,
    options: LinkOptions,
}

/// Why a connection's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    PeerClosed,
    DecodeError,
    Idle,
    Closed,
    Shutdown,
}

/// Wraps an established stream into a [`Connection`] and the [`Link`] that drives it.
///
/// # Errors
/// The socket's address lookups failing (the peer already reset the connection).
pub(crate) fn open(stream: TcpStream, options: &LinkOptions) -> io::Result<(Connection, Link)> {
    // Requests and responses are small and latency-bound; Nagle only delays them.
    if let Err(cause) = stream.set_nodelay(true) {
        debug!(cause = %cause, "cannot set TCP_NODELAY");
    }
    let peer_addr = stream.peer_addr()?;
    let local_addr = stream.local_addr()?;
    let (read_half, write_half) = stream.into_split();
    let (writer, queue) = mpsc::channel(options.writer_queue_len.max(1));
    let conn = Connection {
        inner: Arc::new(Inner {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer_addr,
            local_addr,
            max_frame_len: options.max_frame_len,
            writer,
            next_opaque: AtomicI32::new(0),
            pending: Mutex::new(PendingTable {
                closed: false,
                calls: HashMap::default(),
                sweep_at: None,
            }),
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
            last_serialize_type: AtomicU8::new(SerializeType::default().code()),
            staging: Mutex::new(BytesMut::new()),
            sweep: Notify::new(),
        }),
    };
    let link = Link {
        conn: conn.clone(),
        reader: FramedRead::with_capacity(
            read_half,
            RemotingCodec::new(options.max_frame_len),
            READ_BUFFER_BYTES,
        ),
        write_half,
        queue,
        options: options.clone(),
    };
    Ok((conn, link))
}

impl Link {
    /// Runs the connection until it closes or `shutdown` is cancelled, then closes it and
    /// returns once its writer finished. On shutdown, in-flight handlers get
    /// [`SHUTDOWN_DRAIN_TIMEOUT`] to finish (their responses are written) before they are
    /// aborted; on any other end they are left to finish on their own.
    pub(crate) async fn run(self, dispatch: Dispatch, shutdown: CancellationToken) {
        let Link {
            conn,
            mut reader,
            write_half,
            queue,
            options,
        } = self;
        let writer = tokio::spawn(write_loop(conn.clone(), write_half, queue).in_current_span());
        // Ends when the connection closes, which this function makes sure of below.
        tokio::spawn(sweep_timeouts(conn.clone()).in_current_span());
        let mut tasks = JoinSet::new();
        let mut answered = BytesMut::new();
        let end = read_loop(
            &conn,
            &mut reader,
            &dispatch,
            &shutdown,
            &options,
            &mut tasks,
            &mut answered,
        )
        .await;
        // Answers computed before reading stopped still go out (the writer writes what is
        // queued even after a close, within its bound).
        if !answered.is_empty() {
            let chunk = answered.split().freeze();
            let queued = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, conn.inner.writer.send(chunk));
            if !matches!(queued.await, Ok(Ok(()))) {
                debug!("answers computed before the close were not queued");
            }
        }
        match end {
            ReadEnd::Shutdown => {
                let drained = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, async {
                    while let Some(joined) = tasks.join_next().await {
                        report_join(joined);
                    }
                })
                .await;
                if drained.is_err() {
                    warn!(
                        count = tasks.len(),
                        "aborting request handlers still running at shutdown"
                    );
                    tasks.abort_all();
                }
            }
            ReadEnd::Idle => info!("closing idle connection"),
            ReadEnd::PeerClosed | ReadEnd::DecodeError | ReadEnd::Closed => {}
        }
        // Handlers still running keep their side effects; their responses find the connection
        // closed and are dropped.
        tasks.detach_all();
        conn.close();
        match writer.await {
            Err(cause) if cause.is_panic() => {
                error!(cause = %cause, "connection writer task failed");
            }
            // Cancelled: the runtime is shutting down (a CLI exiting), nothing to report.
            Err(cause) => debug!(cause = %cause, "connection writer task cancelled"),
            Ok(()) => {}
        }
        debug!(reason = ?end, "connection closed");
    }
}

async fn read_loop(
    conn: &Connection,
    reader: &mut FramedRead<OwnedReadHalf, RemotingCodec>,
    dispatch: &Dispatch,
    shutdown: &CancellationToken,
    options: &LinkOptions,
    tasks: &mut JoinSet<()>,
    answered: &mut BytesMut,
) -> ReadEnd {
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let idle = tokio::time::sleep(options.idle_timeout.unwrap_or(Duration::MAX));
    tokio::pin!(idle);
    // `answered` gathers the encoded responses of requests answered inline; they are handed
    // to the writer as one chunk when no further frame is readable without waiting (one
    // queue hand-off and one write per burst of requests instead of one per request).
    loop {
        // Frames already buffered (or readable without blocking) are taken at once; the full
        // wait below, which also watches close, shutdown, idleness and finished handlers,
        // only runs when the socket has nothing more for now.
        let ready = if answered.len() < INLINE_ANSWER_FLUSH_BYTES {
            reader.next().now_or_never()
        } else {
            None
        };
        let frame = match ready {
            Some(frame) => {
                if conn.is_closed() {
                    return ReadEnd::Closed;
                }
                if shutdown.is_cancelled() {
                    return ReadEnd::Shutdown;
                }
                frame
            }
            None => {
                if let Err(end) = hand_to_writer(conn, answered, shutdown).await {
                    return end;
                }
                tokio::select! {
                    biased;
                    () = conn.inner.closed.cancelled() => return ReadEnd::Closed,
                    () = shutdown.cancelled() => return ReadEnd::Shutdown,
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        report_join(joined);
                        continue;
                    }
                    () = &mut idle, if options.idle_timeout.is_some() => return ReadEnd::Idle,
                    frame = reader.next() => frame,
                }
            }
        };
        let command = match frame {
            None => return ReadEnd::PeerClosed,
            Some(Err(cause)) => {
                warn!(cause = %cause, "closing connection after decode error");
                return ReadEnd::DecodeError;
            }
            Some(Ok(command)) => command,
        };
        if let Some(idle_timeout) = options.idle_timeout {
            idle.as_mut().reset(Instant::now() + idle_timeout);
        }
        if command.is_response() {
            conn.complete(command);
            continue;
        }
        conn.inner
            .last_serialize_type
            .store(command.serialize_type.code(), Ordering::Relaxed);
        debug!(
            code = command.code,
            opaque = command.opaque,
            oneway = command.is_oneway(),
            "request"
        );
        // Waiting for a permit stops reading: TCP backpressure bounds this peer's in-flight
        // requests. Answers already computed go out first, so the peer can make progress.
        let permit = match Arc::clone(&in_flight).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Err(end) = hand_to_writer(conn, answered, shutdown).await {
                    return end;
                }
                tokio::select! {
                    biased;
                    () = conn.inner.closed.cancelled() => return ReadEnd::Closed,
                    () = shutdown.cancelled() => return ReadEnd::Shutdown,
                    permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed; treat it as the connection ending
                        // anyway.
                        Err(_) => return ReadEnd::Closed,
                    },
                }
            }
        };
        while let Some(joined) = tasks.try_join_next() {
            report_join(joined);
        }
        let span = tracing::debug_span!("request", code = command.code, opaque = command.opaque);
        let mut answer: BoxFuture<'static, Option<RemotingCommand>> =
            Box::pin(answer_request(conn.clone(), Arc::clone(dispatch), command).instrument(span));
        // A handler that completes without waiting (most requests: a send under ASYNC_FLUSH,
        // an offset query, a heartbeat) is answered right here, without a task of its own.
        // One that waits (a group commit, a slow lookup) moves to a task and keeps its
        // permit until it finishes; it is polled again there at once, so it registers that
        // task's waker before anything can be missed.
        match (&mut answer).now_or_never() {
            Some(response) => {
                drop(permit);
                if let Some(response) = response {
                    reserve_chunk(answered);
                    encode_response(conn, response, answered);
                }
            }
            None => {
                let conn = conn.clone();
                tasks.spawn(
                    async move {
                        let response = answer.await;
                        drop(permit);
                        let Some(response) = response else {
                            return;
                        };
                        let mut frame = BytesMut::new();
                        encode_response(&conn, response, &mut frame);
                        if frame.is_empty() {
                            return;
                        }
                        if let Err(cause) = conn.enqueue(frame.freeze()).await {
                            debug!(cause = %cause, "response not sent");
                        }
                    }
                    .in_current_span(),
                );
            }
        }
    }
}

/// Fails each pending invoke of `conn` whose deadline has passed with
/// [`RemotingError::Timeout`], sleeping in between until the table's `sweep_at`; returns once
/// the connection is closed.
async fn sweep_timeouts(conn: Connection) {
    let inner = &conn.inner;
    loop {
        let (expired, wake_at) = {
            let mut pending = inner.pending.lock();
            let now = Instant::now();
            let mut expired = Vec::new();
            if pending.sweep_at.is_some_and(|at| at <= now) {
                expired.extend(pending.calls.extract_if(|_, call| call.deadline <= now));
                pending.sweep_at = pending.calls.values().map(|call| call.deadline).min();
            }
            (expired, pending.sweep_at)
        };
        for (_, call) in expired {
            // The invoke may be gone already (dropped by its caller); nothing to tell then.
            drop(call.reply.send(Reply::TimedOut));
        }
        tokio::select! {
            biased;
            () = inner.closed.cancelled() => return,
            () = inner.sweep.notified() => {}
            () = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
        }
    }
}

/// Makes room for a few frames at the end of `buf`, which frames are split off from: below
/// 4 KiB of spare capacity it takes a fresh [`ENCODE_CHUNK_BYTES`] chunk (frames split off
/// earlier keep the old one alive until they are written; once they are, `reserve` reuses it in
/// place), so that consecutive frames share one allocation.
fn reserve_chunk(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < ENCODE_CHUNK_BYTES / 16 {
        buf.reserve(ENCODE_CHUNK_BYTES);
    }
}

/// Queues the inline answers gathered in `answered` (if any) as one chunk, waiting for room
/// in the writer queue. `Err` names why reading must stop.
async fn hand_to_writer(
    conn: &Connection,
    answered: &mut BytesMut,
    shutdown: &CancellationToken,
) -> Result<(), ReadEnd> {
    if answered.is_empty() {
        return Ok(());
    }
    let chunk = answered.split().freeze();
    tokio::select! {
        biased;
        sent = conn.enqueue(chunk) => match sent {
            Ok(()) => Ok(()),
            Err(_) => Err(ReadEnd::Closed),
        },
        () = shutdown.cancelled() => Err(ReadEnd::Shutdown),
    }
}

fn report_join(joined: Result<(), JoinError>) {
    if let Err(cause) = joined {
        if cause.is_panic() {
            error!("request task panicked");
        }
    }
}

/// Runs the handler for one request; returns the response to send, if any, with the
/// request's `opaque` and serialize type and the response flag set. A handler that panics
/// answers `SYSTEM_ERROR`; responses to oneway requests are dropped.
async fn answer_request(
    conn: Connection,
    dispatch: Dispatch,
    request: RemotingCommand,
) -> Option<RemotingCommand> {
    let oneway = request.is_oneway();
    let code = request.code;
    let opaque = request.opaque;
    let serialize_type = request.serialize_type;
    let outcome = AssertUnwindSafe(dispatch(conn, request))
        .catch_unwind()
        .await;
    let response = match outcome {
        Ok(response) => response,
        Err(_) => {
            error!(code, "request handler panicked");
            let head = RemotingCommand {
                opaque,
                serialize_type,
                ..RemotingCommand::default()
            };
            Some(
                RemotingCommand::response_to(&head, ResponseCode::SystemError)
                    .with_remark("request handler failed"),
            )
        }
    };
    let mut response = response?;
    if oneway {
        debug!(code, "dropping response to oneway request");
        return None;
    }
    // The response goes back with the request's opaque and serialize type whatever the
    // handler put there (RocketMQ sets the opaque and the response flag the same way).
    response.opaque = opaque;
    response.serialize_type = serialize_type;
    response.flag |= FLAG_RESPONSE;
    Some(response)
}

/// Appends the frame of `response` to `out`; a response that cannot be encoded is replaced by
/// a SYSTEM_ERROR answer (and by nothing if even that fails). `out` is unchanged on failure.
fn encode_response(conn: &Connection, response: RemotingCommand, out: &mut BytesMut) {
    let mut codec = RemotingCodec::new(conn.inner.max_frame_len);
    let code = response.code;
    let head = RemotingCommand {
        opaque: response.opaque,
        serialize_type: response.serialize_type,
        ..RemotingCommand::default()
    };
    if let Err(cause) = codec.encode(response, out) {
        warn!(cause = %cause, code, "response cannot be encoded, answering SYSTEM_ERROR");
        let fallback = RemotingCommand::response_to(&head, ResponseCode::SystemError)
            .with_remark("response could not be encoded");
        if let Err(cause) = codec.encode(fallback, out) {
            debug!(cause = %cause, "fallback response cannot be encoded either");
        }
    }
}

/// How the writer's main loop ended.
enum WriteEnd {
    /// Closed between two writes: the queue may still be flushed.
    Closed,
    /// A write did not finish in time after the close: the stream may hold a partial frame,
    /// so nothing more is written.
    Interrupted,
    Failed(io::Error),
}

async fn write_loop(
    conn: Connection,
    write_half: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    let batch_max = queue.max_capacity();
    let end = loop {
        let frame = tokio::select! {
            biased;
            () = conn.inner.closed.cancelled() => break WriteEnd::Closed,
            frame = queue.recv() => match frame {
                Some(frame) => frame,
                None => break WriteEnd::Closed,
            },
        };
        let write = write_batch(&mut out, frame, &mut queue, batch_max);
        tokio::pin!(write);
        let wrote = tokio::select! {
            biased;
            wrote = &mut write => wrote,
            // A close during a write lets the write finish (it may be the last response of a
            // graceful shutdown), but only for a bounded time.
            () = conn.inner.closed.cancelled() => {
                match tokio::time::timeout(FINAL_FLUSH_TIMEOUT, &mut write).await {
                    Ok(wrote) => wrote,
                    Err(_) => break WriteEnd::Interrupted,
                }
            }
        };
        if let Err(cause) = wrote {
            break WriteEnd::Failed(cause);
        }
    };
    match end {
        WriteEnd::Closed => {
            // Write what was queued before the close (responses of a graceful shutdown),
            // bounded in time because the peer may not be reading.
            queue.close();
            let flushed = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, async {
                while let Some(frame) = queue.recv().await {
                    out.write_all(&frame).await?;
                }
                out.shutdown().await
            })
            .await;
            match flushed {
                Ok(Ok(())) => {}
                Ok(Err(cause)) => debug!(cause = %cause, "final flush failed"),
                Err(_) => debug!("final flush timed out"),
            }
        }
        WriteEnd::Interrupted => {}
        WriteEnd::Failed(cause) => {
            debug!(cause = %cause, "write failed, closing connection");
            conn.close();
        }
    }
}

/// Writes `first` and whatever else is already queued (at most `batch_max` frames), then
/// flushes once.
async fn write_batch(
    out: &mut BufWriter<OwnedWriteHalf>,
    first: Bytes,
    queue: &mut mpsc::Receiver<Bytes>,
    batch_max: usize,
) -> io::Result<()> {
    out.write_all(&first).await?;
    if queue.is_empty() {
        // Let the tasks woken in this scheduler tick (the callers of a burst of responses
        // just read) queue their frames first, so that they share one write.
        tokio::task::yield_now().await;
    }
    for _ in 1..batch_max {
        match queue.try_recv() {
            Ok(frame) => out.write_all(&frame).await?,
            Err(_) => break,
        }
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    //! The reader's inline-or-spawn handling: requests that complete at once are answered by
    //! the reader, requests that wait move to a task without holding up the connection, and
    //! the in-flight bound still holds across both.

    use std::sync::atomic::AtomicUsize;

    use tokio::net::TcpListener;
    use tokio::sync::Notify;

    use super::*;
    use crate::protocol::RequestCode;
    use crate::remoting::{ClientConfig, RemotingClient, RequestHandler, ServerConfig};

    /// Code 1 waits for `release` before answering; any other code answers at once. Both echo
    /// the body.
    struct Gate {
        release: Notify,
        waiting: AtomicUsize,
    }

    const WAITING_CODE: i32 = 1;

    impl RequestHandler for Gate {
        async fn handle(
            &self,
            _conn: Connection,
            request: RemotingCommand,
        ) -> Option<RemotingCommand> {
            if request.code == WAITING_CODE {
                let released = self.release.notified();
                self.waiting.fetch_add(1, Ordering::SeqCst);
                released.await;
            }
            Some(
                RemotingCommand::response_to(&request, ResponseCode::Success)
                    .with_body(request.body),
            )
        }
    }

    async fn start(config: ServerConfig) -> (Arc<Gate>, String, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let gate = Arc::new(Gate {
            release: Notify::new(),
            waiting: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(crate::remoting::run(
            listener,
            Arc::clone(&gate),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        (gate, addr, stop)
    }

    fn request(code: i32, body: &'static str) -> RemotingCommand {
        let mut request = RemotingCommand::request_empty(RequestCode::HeartBeat).with_body(body);
        request.code = code;
        request
    }

    async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn waiting_handler_does_not_hold_up_requests_behind_it() {
        let (gate, addr, stop) = start(ServerConfig::default()).await;
        let client = RemotingClient::new(ClientConfig::default());
        let slow = {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move {
                client
                    .invoke(&addr, request(WAITING_CODE, "slow"), Duration::from_secs(5))
                    .await
            })
        };
        assert!(wait_until(|| gate.waiting.load(Ordering::SeqCst) == 1).await);
        // Many quick requests on the same connection are answered while the first waits.
        for _ in 0..50 {
            let fast = client
                .invoke(&addr, request(2, "fast"), Duration::from_secs(5))
                .await
                .expect("fast answer");
            assert_eq!(&fast.body[..], b"fast");
        }
        assert!(!slow.is_finished());
        gate.release.notify_waiters();
        let slow = slow.await.expect("task").expect("slow answer");
        assert_eq!(&slow.body[..], b"slow");
        client.shutdown();
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn in_flight_bound_holds_back_requests_while_a_waiting_handler_runs() {
        let config = ServerConfig {
            max_in_flight_per_connection: 1,
            ..ServerConfig::default()
        };
        let (gate, addr, stop) = start(config).await;
        let client = RemotingClient::new(ClientConfig::default());
        let slow = {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move {
                client
                    .invoke(&addr, request(WAITING_CODE, "slow"), Duration::from_secs(5))
                    .await
            })
        };
        assert!(wait_until(|| gate.waiting.load(Ordering::SeqCst) == 1).await);
        // The only permit is held by the waiting handler: a quick request is not read yet.
        let held = client
            .invoke(&addr, request(2, "fast"), Duration::from_millis(100))
            .await;
        assert!(
            matches!(held, Err(RemotingError::Timeout { .. })),
            "{held:?}"
        );
        gate.release.notify_waiters();
        slow.await.expect("task").expect("slow answer");
        let fast = client
            .invoke(&addr, request(2, "fast"), Duration::from_secs(5))
            .await
            .expect("answered once the permit is free");
        assert_eq!(&fast.body[..], b"fast");
        client.shutdown();
        let _ = stop.send(());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_inline_answers_reaches_every_caller() {
        let (_gate, addr, stop) = start(ServerConfig::default()).await;
        let client = RemotingClient::new(ClientConfig::default());
        let calls = (0..2_000u32).map(|i| {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move {
                let body = Bytes::from(i.to_be_bytes().to_vec());
                let mut req = request(2, "");
                req.body = body.clone();
                let response = client.invoke(&addr, req, Duration::from_secs(10)).await;
                (body, response)
            })
        });
        for call in futures::future::join_all(calls).await {
            let (body, response) = call.expect("task");
            assert_eq!(response.expect("answer").body, body);
        }
        assert_eq!(client.pending_count(), 0);
        client.shutdown();
        let _ = stop.send(());
    }
}
