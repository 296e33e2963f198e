//! RocketMQ-parity checks of the broker's server side: consumer offset validation, the VIP
//! channel on `listen port - 2`, and requests forwarded to a consumer's connection.
//!
//! Method: each test runs `tern_broker::run` in-process on a fresh temporary store (small
//! files, no NameServer) and drives it with raw `RemotingClient`s and typed headers. The
//! forwarding tests register a consumer with HEART_BEAT from a client whose
//! `ClientRequestHandler` answers the forwarded request, as a Java client's
//! `ClientRemotingProcessor` does. The VIP tests pick a fixed listen port whose port - 2 is
//! free by binding `127.0.0.1:0` first. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use futures::FutureExt;
use tern_broker::config::{BrokerConfig, RawBrokerConfig};
use tern_common::message::{encode_properties, property_key};
use tern_common::protocol::body::{encode_body, ConsumerData, HeartbeatData, SubscriptionData};
use tern_common::protocol::header::{
    CreateTopicRequestHeader, QueryConsumerOffsetRequestHeader, SendMessageRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, ClientRequestHandler, RemotingClient};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// An in-process broker; [`Broker::stop`] shuts it down and waits (bounded) for `run` to end.
struct Broker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tern_broker::BrokerError>>,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start_on(listener: TcpListener, fast_listen: Option<bool>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = listener.local_addr()?;
        let raw = RawBrokerConfig {
            listen: addr.to_string(),
            store_path_root_dir: dir.path().display().to_string(),
            mapped_file_size_commit_log: 4 * 1024 * 1024,
            max_message_size: 64 * 1024,
            consume_queue_units_per_file: 10_000,
            max_hash_slot_num: 1_000,
            max_index_num: 4_000,
            fast_listen_port_enable: fast_listen,
            ..RawBrokerConfig::default()
        };
        let config = BrokerConfig::try_from(raw)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tern_broker::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Ok(Broker {
            addr,
            stop: Some(stop),
            task,
            _dir: dir,
        })
    }

    async fn start() -> Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?, None).await
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .context("broker did not stop in time")???;
        Ok(())
    }
}

/// A listener on a free port P of 127.0.0.1 with P - 2 free as well (checked by binding it;
/// a few attempts, since another process may hold P - 2).
async fn listener_with_free_vip_port() -> Result<TcpListener> {
    for _ in 0..50 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        if port < 1026 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port - 2)).await.is_ok() {
            return Ok(listener);
        }
    }
    bail!("no port P with P - 2 free found")
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default())
}

async fn create_topic(c: &RemotingClient, addr: &str, topic: &str, queues: i32) -> Result<()> {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
        attributes: None,
        force: None,
    };
    let r = c
        .invoke(
            addr,
            RemotingCommand::request(RequestCode::UpdateAndCreateTopic, &header),
            RPC_TIMEOUT,
        )
        .await?;
    assert_eq!(r.code, 0, "create topic: {:?}", r.remark);
    Ok(())
}

fn update_offset(topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::UpdateConsumerOffset,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: topic.into(),
            queue_id,
            commit_offset: offset,
        },
    )
}

fn query_offset(topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::QueryConsumerOffset,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: topic.into(),
            queue_id,
            set_zero_if_not_found: Some(false),
        },
    )
}

#[tokio::test]
async fn consumer_offsets_are_refused_for_unknown_topics_bad_queues_and_negative_offsets(
) -> Result<()> {
    let broker = Broker::start().await?;
    let addr = broker.addr.to_string();
    let c = client();
    create_topic(&c, &addr, "Offsets", 4).await?;

    let cases = [
        (update_offset("Nope", 0, 5), ResponseCode::TopicNotExist),
        (query_offset("Nope", 0), ResponseCode::TopicNotExist),
        (
            update_offset("Offsets", 4, 5),
            ResponseCode::InvalidParameter,
        ),
        (
            update_offset("Offsets", -1, 5),
            ResponseCode::InvalidParameter,
        ),
        (
            update_offset("Offsets", 1_000_000, 5),
            ResponseCode::InvalidParameter,
        ),
        (query_offset("Offsets", 4), ResponseCode::InvalidParameter),
        (query_offset("Offsets", -1), ResponseCode::InvalidParameter),
        (
            update_offset("Offsets", 1, -1),
            ResponseCode::InvalidParameter,
        ),
        (
            update_offset("Offsets", 1, i64::MIN),
            ResponseCode::InvalidParameter,
        ),
    ];
    for (request, expected) in cases {
        let r = c.invoke(&addr, request, RPC_TIMEOUT).await?;
        assert_eq!(r.code, i32::from(expected), "{:?}", r.remark);
    }
    let r = c
        .invoke(&addr, query_offset("Offsets", 4), RPC_TIMEOUT)
        .await?;
    assert!(
        r.remark
            .as_deref()
            .is_some_and(|m| m.starts_with("queueId[4] is illegal, topic:[Offsets]")),
        "{:?}",
        r.remark
    );

    // Nothing of the refused commits was stored; a valid one is.
    let r = c
        .invoke(&addr, query_offset("Offsets", 1), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, i32::from(ResponseCode::QueryNotFound));
    let r = c
        .invoke(&addr, update_offset("Offsets", 3, 17), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let r = c
        .invoke(&addr, query_offset("Offsets", 3), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0);
    assert_eq!(r.ext("offset"), Some("17"));
    let r = c
        .invoke(&addr, update_offset("Offsets", 3, 0), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0, "offset 0 is a valid commit");

    c.shutdown();
    broker.stop().await
}

fn send_request(topic: &str) -> RemotingCommand {
    let mut props = std::collections::BTreeMap::new();
    props.insert(property_key::UNIQ_KEY.to_string(), "AB01".to_string());
    props.insert(property_key::TAGS.to_string(), "TagA".to_string());
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1_700_000_000_000,
        properties: Some(encode_properties(&props)),
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::SendMessage, &header).with_body(&b"vip body"[..])
}

#[tokio::test]
async fn the_vip_channel_on_listen_port_minus_two_serves_and_stops_with_the_broker() -> Result<()> {
    let listener = listener_with_free_vip_port().await?;
    let broker = Broker::start_on(listener, None).await?;
    let vip = SocketAddr::new(broker.addr.ip(), broker.addr.port() - 2);
    // `run` binds the VIP listener in its spawned task: wait (bounded) until it accepts.
    let mut bound = false;
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(vip).await.is_ok() {
            bound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bound, "the vip port {vip} never accepted");
    let c = client();
    let r = c
        .invoke(&vip.to_string(), send_request("VipTopic"), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0, "send through the vip port: {:?}", r.remark);
    // The message is the main port's too: the same broker behind both.
    create_topic(&c, &broker.addr.to_string(), "Other", 1).await?;
    let r = c
        .invoke(&vip.to_string(), query_offset("Other", 0), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, i32::from(ResponseCode::QueryNotFound));
    c.shutdown();

    let main = broker.addr;
    broker.stop().await?;
    for addr in [main, vip] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts after the broker stopped"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_taken_vip_port_is_not_fatal() -> Result<()> {
    let listener = listener_with_free_vip_port().await?;
    let port = listener.local_addr()?.port();
    let _squatter = TcpListener::bind(("127.0.0.1", port - 2)).await?;
    let broker = Broker::start_on(listener, None).await?;
    let c = client();
    create_topic(&c, &broker.addr.to_string(), "StillServing", 1).await?;
    c.shutdown();
    broker.stop().await
}

/// A consumer-side handler: answers every server→client request through `answer`, and
/// reports what it received on `seen`.
struct Consumer {
    seen: mpsc::UnboundedSender<RemotingCommand>,
    answer: fn(&RemotingCommand) -> Option<RemotingCommand>,
}

impl ClientRequestHandler for Consumer {
    fn handle(
        &self,
        _addr: &str,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        let answer = (self.answer)(&request);
        let _ = self.seen.send(request);
        match answer {
            Some(response) => async move { Some(response) }.boxed(),
            // Never answers (until the connection closes): the broker must time out.
            None => futures::future::pending().boxed(),
        }
    }
}

fn running_info_answer(request: &RemotingCommand) -> Option<RemotingCommand> {
    let mut response = RemotingCommand::response_to(request, ResponseCode::Success)
        .with_remark("from the consumer")
        .with_body(&br#"{"properties":{"consumerGroup":"cg"},"subscriptionSet":[]}"#[..]);
    response
        .ext_fields
        .insert("answeredBy".into(), "consumer".into());
    Some(response)
}

fn never_answer(_request: &RemotingCommand) -> Option<RemotingCommand> {
    None
}

/// The next request the consumer saw with `code`, skipping others (the broker also sends
/// NOTIFY_CONSUMER_IDS_CHANGED when the group's members change).
async fn next_with_code(
    seen: &mut mpsc::UnboundedReceiver<RemotingCommand>,
    code: RequestCode,
) -> Result<RemotingCommand> {
    for _ in 0..16 {
        let request = tokio::time::timeout(RPC_TIMEOUT, seen.recv())
            .await?
            .context("consumer saw no request")?;
        if request.code == i32::from(code) {
            return Ok(request);
        }
    }
    bail!("consumer never saw {code:?}")
}

/// Registers consumer `client_id` of group `cg` over a client whose handler uses `answer`.
async fn register_consumer(
    addr: &str,
    client_id: &str,
    answer: fn(&RemotingCommand) -> Option<RemotingCommand>,
) -> Result<(RemotingClient, mpsc::UnboundedReceiver<RemotingCommand>)> {
    let (seen, seen_rx) = mpsc::unbounded_channel();
    let consumer = client();
    consumer.set_request_handler(Arc::new(Consumer { seen, answer }));
    let heartbeat = HeartbeatData {
        client_id: client_id.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: "cg".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "Forward".into(),
                sub_string: "*".into(),
                expression_type: "TAG".into(),
                sub_version: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hb = RemotingCommand::request_empty(RequestCode::HeartBeat)
        .with_body(encode_body(&heartbeat, SerializeType::Json)?);
    let r = consumer.invoke(addr, hb, RPC_TIMEOUT).await?;
    assert_eq!(r.code, 0, "heartbeat: {:?}", r.remark);
    Ok((consumer, seen_rx))
}

fn running_info_request(client_id: &str) -> RemotingCommand {
    let mut request = RemotingCommand::request_empty(RequestCode::GetConsumerRunningInfo);
    request
        .ext_fields
        .insert("consumerGroup".into(), "cg".into());
    request
        .ext_fields
        .insert("clientId".into(), client_id.into());
    request
        .ext_fields
        .insert("jstackEnable".into(), "false".into());
    request
}

#[tokio::test]
async fn consumer_running_info_is_forwarded_to_the_client_and_answered_unchanged() -> Result<()> {
    let broker = Broker::start().await?;
    let addr = broker.addr.to_string();
    create_topic(&client(), &addr, "Forward", 2).await?;
    let (consumer, mut seen) =
        register_consumer(&addr, "10.0.0.9@1#1", running_info_answer).await?;
    let admin = client();

    let r = admin
        .invoke(&addr, running_info_request("10.0.0.9@1#1"), RPC_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(r.remark.as_deref(), Some("from the consumer"));
    assert_eq!(r.ext("answeredBy"), Some("consumer"));
    assert_eq!(
        &r.body[..],
        br#"{"properties":{"consumerGroup":"cg"},"subscriptionSet":[]}"#
    );
    let forwarded = next_with_code(&mut seen, RequestCode::GetConsumerRunningInfo).await?;
    assert!(!forwarded.is_response() && !forwarded.is_oneway());
    assert_eq!(forwarded.ext("consumerGroup"), Some("cg"));
    assert_eq!(forwarded.ext("clientId"), Some("10.0.0.9@1#1"));
    assert_eq!(forwarded.ext("jstackEnable"), Some("false"));

    // An unknown client id, or a group with no consumers, is "not online".
    for (group, client_id) in [("cg", "other@1#1"), ("nobody", "10.0.0.9@1#1")] {
        let mut request = running_info_request(client_id);
        request
            .ext_fields
            .insert("consumerGroup".into(), group.into());
        let r = admin.invoke(&addr, request, RPC_TIMEOUT).await?;
        assert_eq!(r.code, i32::from(ResponseCode::SystemError));
        assert_eq!(
            r.remark,
            Some(format!("The Consumer <{group}> <{client_id}> not online"))
        );
    }

    // Once the consumer's connection is gone it is not online either.
    consumer.shutdown();
    let mut offline = false;
    for _ in 0..100 {
        let r = admin
            .invoke(&addr, running_info_request("10.0.0.9@1#1"), RPC_TIMEOUT)
            .await?;
        if r.code == i32::from(ResponseCode::SystemError) {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        offline,
        "a closed consumer connection still counts as online"
    );
    admin.shutdown();
    broker.stop().await
}

#[tokio::test]
async fn consume_message_directly_carries_the_stored_message_to_the_client() -> Result<()> {
    let broker = Broker::start().await?;
    let addr = broker.addr.to_string();
    let admin = client();
    create_topic(&admin, &addr, "Forward", 2).await?;
    let sent = admin
        .invoke(&addr, send_request("Forward"), RPC_TIMEOUT)
        .await?;
    assert_eq!(sent.code, 0, "{:?}", sent.remark);
    let msg_id = sent
        .ext("msgId")
        .context("send answer has a msgId")?
        .to_string();
    let (consumer, mut seen) =
        register_consumer(&addr, "10.0.0.9@2#2", running_info_answer).await?;

    let mut request = RemotingCommand::request_empty(RequestCode::ConsumeMessageDirectly);
    for (k, v) in [
        ("consumerGroup", "cg"),
        ("clientId", "10.0.0.9@2#2"),
        ("msgId", msg_id.as_str()),
        ("topic", "Forward"),
    ] {
        request.ext_fields.insert(k.into(), v.into());
    }
    let r = admin.invoke(&addr, request.clone(), RPC_TIMEOUT).await?;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(r.ext("answeredBy"), Some("consumer"));
    let forwarded = next_with_code(&mut seen, RequestCode::ConsumeMessageDirectly).await?;
    assert_eq!(forwarded.ext("brokerName"), Some("broker-a"));
    assert_eq!(forwarded.ext("msgId"), Some(msg_id.as_str()));
    let messages = tern_common::message::decode_messages(&forwarded.body)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(&messages[0].message.body[..], b"vip body");

    // A msgId that names no stored message, with no body to forward, is refused.
    request
        .ext_fields
        .insert("msgId".into(), "7F00000100002A9F00000000FFFFFFFF".into());
    let r = admin.invoke(&addr, request, RPC_TIMEOUT).await?;
    assert_eq!(r.code, i32::from(ResponseCode::SystemError));
    assert!(r
        .remark
        .as_deref()
        .is_some_and(|m| m.starts_with("can not find message by the msgId")));
    consumer.shutdown();
    admin.shutdown();
    broker.stop().await
}

#[tokio::test]
async fn a_consumer_that_never_answers_gives_consume_msg_timeout_after_ten_seconds() -> Result<()> {
    let broker = Broker::start().await?;
    let addr = broker.addr.to_string();
    create_topic(&client(), &addr, "Forward", 2).await?;
    let (consumer, _seen) = register_consumer(&addr, "10.0.0.9@3#3", never_answer).await?;
    let admin = client();
    let started = std::time::Instant::now();
    let r = admin
        .invoke(
            &addr,
            running_info_request("10.0.0.9@3#3"),
            Duration::from_secs(15),
        )
        .await?;
    let waited = started.elapsed();
    assert_eq!(
        r.code,
        i32::from(ResponseCode::ConsumeMsgTimeout),
        "{:?}",
        r.remark
    );
    assert!(
        r.remark
            .as_deref()
            .is_some_and(|m| m.starts_with("consumer <cg> <10.0.0.9@3#3> Timeout")),
        "{:?}",
        r.remark
    );
    assert!(
        waited >= Duration::from_millis(9_900) && waited < Duration::from_secs(14),
        "answered after {waited:?}"
    );
    consumer.shutdown();
    admin.shutdown();
    broker.stop().await
}
