//! Goal: the remoting server and client keep RocketMQ's request/response contract over real
//! sockets: responses matched by `opaque` even out of order, oneway requests unanswered,
//! server→client requests, deferred responses, timeouts that leave no pending entry, decode
//! errors that close one connection only, the connection limit, graceful shutdown, the
//! close callback, and reconnection after a server restart.
//!
//! Method: each test starts `remoting::run` on 127.0.0.1 port 0 with a scripted handler whose
//! behaviour is chosen by the request code, then drives it with `RemotingClient` or with a raw
//! `TcpStream` speaking frames through `RemotingCodec`. Timeouts are short real timeouts
//! (200–300 ms); every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use futures::StreamExt;
use parking_lot::Mutex;
use tern_common::protocol::{RemotingCodec, RemotingCommand, ResponseCode, SerializeType};
use tern_common::remoting::{
    self, ClientConfig, ClientRequestHandler, Connection, RemotingClient, RemotingError,
    RequestHandler, ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{Encoder, FramedRead};

/// Echo: answers SUCCESS with the request's body and its ext field `k` as remark.
const ECHO: i32 = 1;
/// Deferred: returns None and hands the request to the test, which answers later.
const DEFERRED: i32 = 2;
/// Never answers.
const NEVER: i32 = 3;
/// Counts the request and returns Some (which must be dropped for oneway requests).
const COUNT: i32 = 4;
/// Calls the client back with `CALLBACK` and answers with the callback response's code/body.
const CALL_CLIENT: i32 = 5;
/// Sleeps 300 ms, then echoes.
const SLOW: i32 = 6;
/// Panics.
const PANIC: i32 = 7;
/// Answers with a body of `n` (ext field) zero bytes.
const BIG: i32 = 8;
/// The server→client request code of `CALL_CLIENT`.
const CALLBACK: i32 = 100;

const LONG: Duration = Duration::from_secs(5);

struct TestHandler {
    deferred: mpsc::UnboundedSender<(Connection, RemotingCommand)>,
    started: mpsc::UnboundedSender<i32>,
    counted: AtomicUsize,
    closed: Mutex<Vec<u64>>,
}

impl RequestHandler for TestHandler {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        let _ = self.started.send(request.code);
        match request.code {
            ECHO => Some(echo(&request)),
            DEFERRED => {
                let _ = self.deferred.send((conn, request));
                None
            }
            NEVER => None,
            COUNT => {
                self.counted.fetch_add(1, Ordering::SeqCst);
                Some(RemotingCommand::response_to(
                    &request,
                    ResponseCode::Success,
                ))
            }
            CALL_CLIENT => {
                let callback = RemotingCommand::request_empty(CALLBACK).with_body("ping");
                let answer = match conn.invoke(callback, LONG).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        return Some(
                            RemotingCommand::response_to(&request, ResponseCode::SystemError)
                                .with_remark(e.to_string()),
                        )
                    }
                };
                Some(
                    RemotingCommand::response_to(&request, answer.code)
                        .with_body(answer.body)
                        .with_remark(format!("{:?}", conn.last_serialize_type())),
                )
            }
            SLOW => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some(echo(&request))
            }
            PANIC => panic!("scripted handler panic"),
            BIG => {
                let n = request.ext("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                Some(
                    RemotingCommand::response_to(&request, ResponseCode::Success)
                        .with_body(vec![0u8; n]),
                )
            }
            _ => Some(RemotingCommand::response_to(
                &request,
                ResponseCode::RequestCodeNotSupported,
            )),
        }
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.closed.lock().push(conn.id());
    }
}

fn echo(request: &RemotingCommand) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, ResponseCode::Success)
        .with_body(request.body.clone());
    response.remark = request.ext("k").map(str::to_owned);
    response
}

struct TestServer {
    addr: SocketAddr,
    handler: Arc<TestHandler>,
    deferred: mpsc::UnboundedReceiver<(Connection, RemotingCommand)>,
    started: mpsc::UnboundedReceiver<i32>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        TestServer::start_on(listener, config)
    }

    fn start_on(listener: TcpListener, config: ServerConfig) -> TestServer {
        let addr = listener.local_addr().expect("local addr");
        let (deferred_tx, deferred) = mpsc::unbounded_channel();
        let (started_tx, started) = mpsc::unbounded_channel();
        let handler = Arc::new(TestHandler {
            deferred: deferred_tx,
            started: started_tx,
            counted: AtomicUsize::new(0),
            closed: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(remoting::run(
            listener,
            Arc::clone(&handler),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            handler,
            deferred,
            started,
            stop: Some(stop),
            task,
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Triggers shutdown and waits (bounded) for `run` to return.
    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops within 10 s")
            .expect("server task does not panic");
    }
}

fn new_client(serialize_type: SerializeType) -> RemotingClient {
    RemotingClient::new(ClientConfig {
        serialize_type,
        ..ClientConfig::default()
    })
}

/// Polls `condition` every 10 ms for at most 5 s.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

fn encode_frame(command: RemotingCommand) -> BytesMut {
    let mut buf = BytesMut::new();
    RemotingCodec::default()
        .encode(command, &mut buf)
        .expect("encode");
    buf
}

/// Reads until the peer closes the socket; true if it did within 5 s.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let waited = tokio::time::timeout(LONG, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    waited.is_ok()
}

#[tokio::test]
async fn request_response_round_trip_in_every_serialize_type() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    for serialize_type in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        let client = new_client(serialize_type);
        let mut request = RemotingCommand::request_empty(ECHO).with_body("hello");
        request.ext_fields.insert("k".into(), "v".into());
        let response = client
            .invoke(&server.addr(), request, LONG)
            .await
            .expect("echo answered");
        assert!(response.is_response());
        assert_eq!(response.code, 0);
        assert_eq!(response.serialize_type, serialize_type);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(response.remark.as_deref(), Some("v"));
        assert_eq!(client.pending_count(), 0);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_invokes_match_out_of_order_deferred_responses() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    let mut calls = Vec::new();
    for i in 0..1000u32 {
        let client = client.clone();
        let addr = addr.clone();
        calls.push(tokio::spawn(async move {
            let request = RemotingCommand::request_empty(DEFERRED)
                .with_body(Bytes::copy_from_slice(&i.to_be_bytes()));
            let response = client.invoke(&addr, request, LONG).await?;
            Ok::<_, RemotingError>((i, response))
        }));
    }
    let mut held = Vec::new();
    for _ in 0..1000 {
        let received = tokio::time::timeout(LONG, server.deferred.recv())
            .await
            .expect("all requests reach the handler");
        held.push(received.expect("handler alive"));
    }
    // Answer in an order unrelated to the sending order: reversed, odd positions first.
    held.reverse();
    let (odd, even): (Vec<_>, Vec<_>) = held.into_iter().enumerate().partition(|(n, _)| n % 2 == 1);
    for (_, (conn, request)) in odd.into_iter().chain(even) {
        let response =
            RemotingCommand::response_to(&request, ResponseCode::Success).with_body(request.body);
        conn.send_response(response).expect("queued");
    }
    for call in calls {
        let (i, response) = call.await.expect("task").expect("answered");
        assert_eq!(
            &response.body[..],
            &i.to_be_bytes()[..],
            "response of call {i}"
        );
    }
    assert_eq!(client.pending_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn deferred_response_sent_after_handler_returned_none() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::MsgPack);
    let addr = server.addr();
    let call = tokio::spawn(async move {
        client
            .invoke(
                &addr,
                RemotingCommand::request_empty(DEFERRED).with_body("later"),
                LONG,
            )
            .await
    });
    let (conn, request) = tokio::time::timeout(LONG, server.deferred.recv())
        .await
        .expect("request handled")
        .expect("handler alive");
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send_response(
        RemotingCommand::response_to(&request, ResponseCode::Success).with_body("answer"),
    )
    .expect("queued");
    let response = call.await.expect("task").expect("answered");
    assert_eq!(&response.body[..], b"answer");
    assert_eq!(response.serialize_type, SerializeType::MsgPack);
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_request_gets_no_response() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut oneway = RemotingCommand::request_empty(COUNT).oneway();
    oneway.opaque = 7;
    let mut echo_request = RemotingCommand::request_empty(ECHO);
    echo_request.opaque = 8;
    stream
        .write_all(&encode_frame(oneway))
        .await
        .expect("write");
    assert!(eventually(|| server.handler.counted.load(Ordering::SeqCst) == 1).await);
    stream
        .write_all(&encode_frame(echo_request))
        .await
        .expect("write");
    let mut frames = FramedRead::new(stream, RemotingCodec::default());
    let first = tokio::time::timeout(LONG, frames.next())
        .await
        .expect("a frame arrives")
        .expect("not closed")
        .expect("decodes");
    assert_eq!(
        first.opaque, 8,
        "the first frame answers the echo, not the oneway"
    );

    // The client API: oneway returns once queued and the server counts it.
    let client = new_client(SerializeType::Json);
    client
        .invoke_oneway(&server.addr(), RemotingCommand::request_empty(COUNT))
        .await
        .expect("sent");
    assert!(eventually(|| server.handler.counted.load(Ordering::SeqCst) == 2).await);
    assert_eq!(client.pending_count(), 0);
    server.shutdown().await;
}

struct Pong;

impl ClientRequestHandler for Pong {
    fn handle(
        &self,
        _addr: &str,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        async move {
            assert_eq!(request.code, CALLBACK);
            assert_eq!(request.serialize_type, SerializeType::MsgPack);
            let mut body = request.body.to_vec();
            body.extend_from_slice(b"-pong");
            Some(RemotingCommand::response_to(&request, ResponseCode::Success).with_body(body))
        }
        .boxed()
    }
}

#[tokio::test]
async fn server_to_client_invoke_is_answered_by_client_handler() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::MsgPack);
    client.set_request_handler(Arc::new(Pong));
    let response = client
        .invoke(
            &server.addr(),
            RemotingCommand::request_empty(CALL_CLIENT),
            LONG,
        )
        .await
        .expect("answered");
    assert_eq!(response.code, 0);
    assert_eq!(&response.body[..], b"ping-pong");
    assert_eq!(response.remark.as_deref(), Some("MsgPack"));

    // Without a handler the client answers REQUEST_CODE_NOT_SUPPORTED.
    let bare = new_client(SerializeType::Json);
    let response = bare
        .invoke(
            &server.addr(),
            RemotingCommand::request_empty(CALL_CLIENT),
            LONG,
        )
        .await
        .expect("answered");
    assert_eq!(
        response.code,
        i32::from(ResponseCode::RequestCodeNotSupported)
    );
    server.shutdown().await;
}

/// A task invoking a request the server never answers, with `timeout`.
fn spawn_never_answered(
    client: &RemotingClient,
    addr: &str,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<RemotingCommand, RemotingError>> {
    let client = client.clone();
    let addr = addr.to_owned();
    tokio::spawn(async move {
        client
            .invoke(&addr, RemotingCommand::request_empty(NEVER), timeout)
            .await
    })
}

#[tokio::test]
async fn invoke_timeout_leaves_no_pending_entry() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    let calls: Vec<_> = (0..5)
        .map(|_| spawn_never_answered(&client, &addr, Duration::from_millis(200)))
        .collect();
    for call in calls {
        match call.await.expect("task") {
            Err(RemotingError::Timeout {
                addr: a,
                timeout_ms,
            }) => {
                assert_eq!(a, addr);
                assert_eq!(timeout_ms, 200);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(client.pending_count(), 0);
    // The connection still works after the timeouts.
    let response = client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("answered");
    assert_eq!(response.code, 0);
    server.shutdown().await;
}

/// Deadlines are swept by one task per connection: a short deadline registered behind a long
/// one still fires on time, and the long call is left waiting.
#[tokio::test]
async fn a_shorter_deadline_behind_a_longer_one_still_fires() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::MsgPack);
    let addr = server.addr();
    let long_call = spawn_never_answered(&client, &addr, Duration::from_secs(60));
    // Let the long call register first.
    for _ in 0..200 {
        if client.pending_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.pending_count(), 1);
    let started = std::time::Instant::now();
    let short = tokio::time::timeout(
        LONG,
        client.invoke(
            &addr,
            RemotingCommand::request_empty(NEVER),
            Duration::from_millis(150),
        ),
    )
    .await
    .expect("the short deadline fired before the test's bound");
    assert!(
        matches!(
            short,
            Err(RemotingError::Timeout {
                timeout_ms: 150,
                ..
            })
        ),
        "{short:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(!long_call.is_finished());
    assert_eq!(client.pending_count(), 1);
    long_call.abort();
    let _ = long_call.await;
    assert_eq!(client.pending_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn pending_invoke_fails_when_connection_closes() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    let call = tokio::spawn(async move {
        client
            .invoke(&addr, RemotingCommand::request_empty(DEFERRED), LONG)
            .await
    });
    let (conn, _request) = tokio::time::timeout(LONG, server.deferred.recv())
        .await
        .expect("request handled")
        .expect("handler alive");
    conn.close();
    let outcome = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .expect("fails well before its own timeout")
        .expect("task");
    assert!(
        matches!(outcome, Err(RemotingError::ConnectionClosed)),
        "{outcome:?}"
    );
    assert!(conn.is_closed());
    assert!(matches!(
        conn.send_response(RemotingCommand::default()),
        Err(RemotingError::ConnectionClosed)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let mut server = TestServer::start(ServerConfig {
        max_frame_len: 4096,
        ..ServerConfig::default()
    })
    .await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("answered before");

    let mut bad = TcpStream::connect(server.addr).await.expect("connect");
    let mut frame = BytesMut::new();
    frame.put_i32(1 << 20);
    frame.put_u32(16);
    bad.write_all(&frame).await.expect("write");
    assert!(
        closed_by_peer(&mut bad).await,
        "server closes the bad connection"
    );

    let response = client
        .invoke(
            &addr,
            RemotingCommand::request_empty(ECHO).with_body("still"),
            LONG,
        )
        .await
        .expect("answered after");
    assert_eq!(&response.body[..], b"still");

    // A response too large for the server's limit is replaced by SYSTEM_ERROR, not dropped.
    let mut big = RemotingCommand::request_empty(BIG);
    big.ext_fields.insert("n".into(), "8000".into());
    let response = client.invoke(&addr, big, LONG).await.expect("answered");
    assert_eq!(response.code, i32::from(ResponseCode::SystemError));
    assert!(response.body.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_request_is_refused_by_the_client_codec() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = RemotingClient::new(ClientConfig {
        max_frame_len: 1024,
        ..ClientConfig::default()
    });
    let outcome = client
        .invoke(
            &server.addr(),
            RemotingCommand::request_empty(ECHO).with_body(vec![0u8; 2048]),
            LONG,
        )
        .await;
    assert!(
        matches!(outcome, Err(RemotingError::Codec(_))),
        "{outcome:?}"
    );
    assert_eq!(client.pending_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_close_the_connection_without_panic() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let mut bad = TcpStream::connect(server.addr).await.expect("connect");
    let mut frame = BytesMut::new();
    frame.put_i32(4 + 3);
    frame.put_u32((9 << 24) | 3);
    frame.put_slice(b"abc");
    bad.write_all(&frame).await.expect("write");
    assert!(
        closed_by_peer(&mut bad).await,
        "server closes the connection"
    );

    let mut worse = TcpStream::connect(server.addr).await.expect("connect");
    worse.write_all(&[0xff; 64]).await.expect("write");
    assert!(
        closed_by_peer(&mut worse).await,
        "negative length closes too"
    );

    let client = new_client(SerializeType::Json);
    client
        .invoke(&server.addr(), RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("server still serves");
    server.shutdown().await;
    assert_eq!(server.handler.closed.lock().len(), 3);
}

#[tokio::test]
async fn handler_panic_answers_system_error() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let response = client
        .invoke(&server.addr(), RemotingCommand::request_empty(PANIC), LONG)
        .await
        .expect("answered");
    assert_eq!(response.code, i32::from(ResponseCode::SystemError));
    client
        .invoke(&server.addr(), RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("connection survives");
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_holds_further_clients_until_a_slot_frees() {
    let mut server = TestServer::start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr();
    let first = new_client(SerializeType::Json);
    first
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("first client served");
    let second = new_client(SerializeType::Json);
    let outcome = second
        .invoke(
            &addr,
            RemotingCommand::request_empty(ECHO),
            Duration::from_millis(300),
        )
        .await;
    assert!(
        matches!(outcome, Err(RemotingError::Timeout { .. })),
        "second client waits: {outcome:?}"
    );
    first.shutdown();
    let response = second
        .invoke(
            &addr,
            RemotingCommand::request_empty(ECHO).with_body("in"),
            LONG,
        )
        .await
        .expect("second client served once the first left");
    assert_eq!(&response.body[..], b"in");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_in_flight_requests_then_stops() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("connected");
    let slow = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            client
                .invoke(
                    &addr,
                    RemotingCommand::request_empty(SLOW).with_body("slow"),
                    LONG,
                )
                .await
        })
    };
    loop {
        let code = tokio::time::timeout(LONG, server.started.recv())
            .await
            .expect("slow request starts")
            .expect("handler alive");
        if code == SLOW {
            break;
        }
    }
    server.shutdown().await;
    let response = slow
        .await
        .expect("task")
        .expect("in-flight request answered");
    assert_eq!(&response.body[..], b"slow");
    assert_eq!(
        server.handler.closed.lock().len(),
        1,
        "one connection, one callback"
    );

    let outcome = client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await;
    assert!(
        outcome.is_err(),
        "nothing listens after shutdown: {outcome:?}"
    );
}

#[tokio::test]
async fn on_connection_closed_is_called_once_per_connection() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    let addr = server.addr();
    client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("answered");
    client.close_connection(&addr);
    assert!(eventually(|| server.handler.closed.lock().len() == 1).await);
    client
        .invoke(&addr, RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("reconnects");
    server.shutdown().await;
    let mut closed = server.handler.closed.lock().clone();
    assert_eq!(closed.len(), 2);
    closed.dedup();
    assert_eq!(closed.len(), 2, "distinct connections, one call each");
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let mut server = TestServer::start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..ServerConfig::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    assert!(closed_by_peer(&mut silent).await, "idle connection closed");
    assert!(eventually(|| server.handler.closed.lock().len() == 1).await);
    server.shutdown().await;
}

#[tokio::test]
async fn client_reconnects_after_server_restart() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let addr = server.addr;
    let client = new_client(SerializeType::Json);
    client
        .invoke(
            &addr.to_string(),
            RemotingCommand::request_empty(ECHO),
            LONG,
        )
        .await
        .expect("answered");
    server.shutdown().await;

    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("rebind the same port");
    let listener = socket.listen(128).expect("listen");
    let mut restarted = TestServer::start_on(listener, ServerConfig::default());

    let mut answered = None;
    for _ in 0..50 {
        match client
            .invoke(
                &addr.to_string(),
                RemotingCommand::request_empty(ECHO).with_body("back"),
                LONG,
            )
            .await
        {
            Ok(response) => {
                answered = Some(response);
                break;
            }
            // The old connection may not have noticed the close yet.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let response = answered.expect("client reconnects to the restarted server");
    assert_eq!(&response.body[..], b"back");
    restarted.shutdown().await;
}

#[tokio::test]
async fn invoke_after_client_shutdown_fails() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let client = new_client(SerializeType::Json);
    client
        .invoke(&server.addr(), RemotingCommand::request_empty(ECHO), LONG)
        .await
        .expect("answered");
    client.shutdown();
    let outcome = client
        .invoke(&server.addr(), RemotingCommand::request_empty(ECHO), LONG)
        .await;
    assert!(
        matches!(outcome, Err(RemotingError::ConnectionClosed)),
        "{outcome:?}"
    );
    let refused = RemotingClient::new(ClientConfig::default())
        .invoke("127.0.0.1:1", RemotingCommand::request_empty(ECHO), LONG)
        .await;
    assert!(
        matches!(refused, Err(RemotingError::Connect { .. })),
        "{refused:?}"
    );
    server.shutdown().await;
}
