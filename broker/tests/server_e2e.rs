//! End-to-end tests of the `tern-broker` binary: each test starts the real binary on
//! 127.0.0.1:0 with a fresh temporary store and no NameServer, learns its address from the
//! `listening on` line, and drives it with `RemotingClient` and the typed headers — sends
//! (V1, V2, batch) pulled back byte-exact, the §2.3 refusals, pull status codes, long
//! polling, offsets, heartbeats and unknown codes. The process is killed when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tern_common::message::{
    decode_messages, encode_properties, offset_msg_id, property_key, BatchEntry,
};
use tern_common::protocol::body::{
    encode_body, ConsumerData, ConsumerListBody, HeartbeatData, SubscriptionData,
};
use tern_common::protocol::header::{
    GetConsumerListByGroupRequestHeader, GetMaxOffsetRequestHeader, PullMessageRequestHeader,
    QueryConsumerOffsetRequestHeader, SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use tern_common::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, RemotingClient};

const RPC_TIMEOUT: Duration = Duration::from_secs(5);

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(extra: &[&str]) -> Result<Broker> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern-broker"))
        .args(["--listen", "127.0.0.1:0", "--store-dir"])
        .arg(dir.path())
        .args([
            "--mapped-file-size-commit-log",
            "4194304",
            "--max-message-size",
            "65536",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting tern-broker")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            bail!("broker printed no address");
        }
    };
    Ok(Broker {
        child,
        addr,
        _dir: dir,
    })
}

/// The text of `GET /metrics` at `addr` (HTTP/1.1, connection closed by the server).
async fn scrape_metrics(addr: std::net::SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await??;
    Ok(out)
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        max_frame_len: 16 * 1024 * 1024,
        serialize_type: SerializeType::Json,
    })
}

fn send_header(topic: &str, properties: &str) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 7,
        properties: Some(properties.into()),
        ..Default::default()
    }
}

fn props(uniq: &str, tag: &str) -> String {
    let mut map = std::collections::BTreeMap::new();
    map.insert(property_key::UNIQ_KEY.to_string(), uniq.to_string());
    map.insert(property_key::TAGS.to_string(), tag.to_string());
    encode_properties(&map)
}

async fn send_v1(
    c: &RemotingClient,
    addr: &str,
    topic: &str,
    body: &'static [u8],
) -> Result<RemotingCommand> {
    let header = send_header(topic, &props("AA01", "TagA"));
    let request = RemotingCommand::request(RequestCode::SendMessage, &header).with_body(body);
    Ok(c.invoke(addr, request, RPC_TIMEOUT).await?)
}

fn pull_request(topic: &str, offset: i64, sys_flag: i32, suspend_ms: i64) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::PullMessage, &header)
}

fn ext_i64(cmd: &RemotingCommand, key: &str) -> i64 {
    cmd.ext(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN)
}

#[tokio::test]
async fn sends_of_every_kind_are_pulled_back_byte_exact() -> Result<()> {
    let broker = start_broker(&[])?;
    let c = client();
    let addr = broker.addr.as_str();

    let r1 = send_v1(&c, addr, "TopicE2E", b"one").await?;
    assert_eq!(r1.code, 0, "{:?}", r1.remark);
    assert_eq!(r1.ext("queueOffset"), Some("0"));
    assert_eq!(r1.ext("MSG_REGION"), Some("DefaultRegion"));

    let mut ext = ExtFields::new();
    send_header("TopicE2E", &props("AA02", "TagB")).encode_v2(&mut ext);
    let mut v2 = RemotingCommand::request_empty(RequestCode::SendMessageV2).with_body(&b"two"[..]);
    v2.ext_fields = ext;
    let r2 = c.invoke(addr, v2, RPC_TIMEOUT).await?;
    assert_eq!(r2.code, 0, "{:?}", r2.remark);
    assert_eq!(r2.ext("queueOffset"), Some("1"));

    let entries = [
        BatchEntry {
            flag: 1,
            body: Bytes::from_static(b"b1"),
            properties: props("AA03", "TagA"),
        },
        BatchEntry {
            flag: 2,
            body: Bytes::from_static(b"b2"),
            properties: props("AA04", "TagA"),
        },
    ];
    let mut ext = ExtFields::new();
    let mut header = send_header("TopicE2E", "");
    header.batch = Some(true);
    header.encode_v2(&mut ext);
    let mut batch = RemotingCommand::request_empty(RequestCode::SendBatchMessage)
        .with_body(tern_common::message::encode_batch(entries.iter())?);
    batch.ext_fields = ext;
    let r3 = c.invoke(addr, batch, RPC_TIMEOUT).await?;
    assert_eq!(r3.code, 0, "{:?}", r3.remark);
    assert_eq!(r3.ext("queueOffset"), Some("2"));
    let batch_ids: Vec<&str> = r3.ext("msgId").unwrap_or_default().split(',').collect();
    assert_eq!(batch_ids.len(), 2);

    // Dispatch to the consume queue is asynchronous: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pulled = loop {
        let resp = c
            .invoke(addr, pull_request("TopicE2E", 0, 0x4, 0), RPC_TIMEOUT)
            .await?;
        if resp.code == 0 && decode_messages(&resp.body)?.len() == 4 {
            break resp;
        }
        assert!(
            Instant::now() < deadline,
            "messages not pullable: code {}",
            resp.code
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ext_i64(&pulled, "nextBeginOffset"), 4);
    assert_eq!(ext_i64(&pulled, "maxOffset"), 4);
    assert_eq!(ext_i64(&pulled, "minOffset"), 0);
    let messages = decode_messages(&pulled.body)?;
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.message.body.as_ref()).collect();
    assert_eq!(bodies, vec![&b"one"[..], b"two", b"b1", b"b2"]);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.queue_offset, i64::try_from(i)?);
        assert_eq!(m.message.topic, "TopicE2E");
        assert_eq!(m.store_host.to_string(), broker.addr);
        assert_eq!(m.msg_id, offset_msg_id(m.store_host, m.phy_offset));
    }
    assert_eq!(r1.ext("msgId"), Some(messages[0].msg_id.as_str()));
    assert_eq!(
        batch_ids,
        vec![messages[2].msg_id.as_str(), messages[3].msg_id.as_str()]
    );
    assert_eq!(messages[0].message.flag, 7);
    assert_eq!(messages[2].message.flag, 1);
    // The pulled bytes are the stored record: VIEW_MESSAGE_BY_ID returns the same bytes.
    let mut view = RemotingCommand::request_empty(RequestCode::ViewMessageById);
    view.ext_fields
        .insert("offset".into(), messages[1].phy_offset.to_string());
    let viewed = c.invoke(addr, view, RPC_TIMEOUT).await?;
    let first_len = usize::try_from(messages[0].store_size)?;
    let second_len = usize::try_from(messages[1].store_size)?;
    assert_eq!(
        &viewed.body[..],
        &pulled.body[first_len..first_len + second_len]
    );
    Ok(())
}

#[tokio::test]
async fn refusals_answer_their_codes_and_the_connection_keeps_working() -> Result<()> {
    let broker = start_broker(&["--auto-create-topic", "false"])?;
    let c = client();
    let addr = broker.addr.as_str();

    let unknown = send_v1(&c, addr, "NoSuchTopic", b"x").await?;
    assert_eq!(unknown.code, i32::from(ResponseCode::TopicNotExist));

    let invalid = send_v1(&c, addr, "bad topic!", b"x").await?;
    assert_eq!(invalid.code, i32::from(ResponseCode::InvalidParameter));

    let forbidden = send_v1(&c, addr, "SCHEDULE_TOPIC_XXXX", b"x").await?;
    assert_eq!(forbidden.code, i32::from(ResponseCode::NoPermission));

    // Create a topic through the admin code, then an oversize body.
    let mut create = RemotingCommand::request_empty(RequestCode::UpdateAndCreateTopic);
    for (k, v) in [
        ("topic", "Sized"),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", "2"),
        ("writeQueueNums", "2"),
        ("perm", "6"),
        ("topicFilterType", "SINGLE_TAG"),
        ("order", "false"),
    ] {
        create.ext_fields.insert(k.into(), v.into());
    }
    assert_eq!(c.invoke(addr, create, RPC_TIMEOUT).await?.code, 0);
    let header = send_header("Sized", &props("AB01", "T"));
    let big =
        RemotingCommand::request(RequestCode::SendMessage, &header).with_body(vec![0u8; 70_000]);
    assert_eq!(
        c.invoke(addr, big, RPC_TIMEOUT).await?.code,
        i32::from(ResponseCode::MessageIllegal)
    );

    let mut bad_queue = send_header("Sized", &props("AB02", "T"));
    bad_queue.queue_id = 5;
    let req = RemotingCommand::request(RequestCode::SendMessage, &bad_queue).with_body(&b"x"[..]);
    assert_eq!(
        c.invoke(addr, req, RPC_TIMEOUT).await?.code,
        i32::from(ResponseCode::InvalidParameter)
    );

    let mut missing = RemotingCommand::request_empty(RequestCode::SendMessage);
    missing.ext_fields.insert("topic".into(), "Sized".into());
    assert_eq!(
        c.invoke(addr, missing, RPC_TIMEOUT).await?.code,
        i32::from(ResponseCode::SystemError)
    );

    let unknown_code = RemotingCommand::request_empty(9999);
    let resp = c.invoke(addr, unknown_code, RPC_TIMEOUT).await?;
    assert_eq!(resp.code, i32::from(ResponseCode::RequestCodeNotSupported));
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 9999 not supported")
    );

    // Still serving on the same connection.
    let ok = send_v1(&c, addr, "Sized", b"fine").await?;
    assert_eq!(ok.code, 0, "{:?}", ok.remark);
    Ok(())
}

#[tokio::test]
async fn pull_status_codes_and_long_polling() -> Result<()> {
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let broker = start_broker(&["--metrics-listen", &metrics_addr.to_string()])?;
    let c = client();
    let addr = broker.addr.clone();
    assert_eq!(send_v1(&c, &addr, "Polled", b"m0").await?.code, 0);

    // Out of range → 21 with nextBeginOffset = max.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = c
            .invoke(&addr, pull_request("Polled", 10, 0x4, 0), RPC_TIMEOUT)
            .await?;
        if resp.code == i32::from(ResponseCode::PullOffsetMoved)
            && ext_i64(&resp, "nextBeginOffset") == 1
        {
            assert_eq!(ext_i64(&resp, "maxOffset"), 1);
            assert_eq!(ext_i64(&resp, "suggestWhichBrokerId"), 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no PULL_OFFSET_MOVED: {}",
            resp.code
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At the end without suspension → 19.
    let resp = c
        .invoke(&addr, pull_request("Polled", 1, 0x4, 0), RPC_TIMEOUT)
        .await?;
    assert_eq!(resp.code, i32::from(ResponseCode::PullNotFound));
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 1);

    // A suspended pull is answered as soon as a message arrives, well before its hold time.
    let c2 = c.clone();
    let addr2 = addr.clone();
    let started = Instant::now();
    let held = tokio::spawn(async move {
        c2.invoke(
            &addr2,
            pull_request("Polled", 1, 0x2 | 0x4, 20_000),
            Duration::from_secs(30),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the pull should be held");
    assert_eq!(send_v1(&c, &addr, "Polled", b"m1").await?.code, 0);
    let resp = tokio::time::timeout(Duration::from_secs(5), held).await???;
    assert_eq!(resp.code, 0, "{:?}", resp.remark);
    assert!(started.elapsed() < Duration::from_secs(5));
    let messages = decode_messages(&resp.body)?;
    assert_eq!(messages.len(), 1);
    assert_eq!(&messages[0].message.body[..], b"m1");
    // The long-polling answer counts in the per-topic out counters (nothing else returned
    // messages of the topic so far).
    let scraped = scrape_metrics(metrics_addr).await?;
    assert!(
        scraped.contains("tern_broker_topic_messages_out_total{topic=\"Polled\"} 1\n"),
        "{scraped}"
    );
    // The send was flushed by the ASYNC_FLUSH thread (every 500 ms by default), and each
    // CommitLog flush lands in the flush-duration histogram.
    let mut flushes = 0.0_f64;
    for _ in 0..40 {
        let scraped = scrape_metrics(metrics_addr).await?;
        flushes = scraped
            .lines()
            .find_map(|l| l.strip_prefix("tern_broker_store_flush_duration_seconds_count "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if flushes > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushes > 0.0, "no CommitLog flush was observed");

    // A suspended pull whose hold time passes answers 19.
    let resp = c
        .invoke(
            &addr,
            pull_request("Polled", 2, 0x2 | 0x4, 300),
            RPC_TIMEOUT,
        )
        .await?;
    assert_eq!(resp.code, i32::from(ResponseCode::PullNotFound));

    // A pull held on a connection that then closes does not disturb the broker.
    let doomed = client();
    let addr3 = addr.clone();
    let doomed2 = doomed.clone();
    let pending = tokio::spawn(async move {
        doomed2
            .invoke(
                &addr3,
                pull_request("Polled", 2, 0x2 | 0x4, 20_000),
                Duration::from_secs(30),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), pending).await;
    assert_eq!(send_v1(&c, &addr, "Polled", b"m2").await?.code, 0);
    let mut max = RemotingCommand::request(
        RequestCode::GetMaxOffset,
        &GetMaxOffsetRequestHeader {
            topic: "Polled".into(),
            queue_id: 0,
            committed: None,
        },
    );
    max.serialize_type = SerializeType::Json;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = c.invoke(&addr, max.clone(), RPC_TIMEOUT).await?;
        if ext_i64(&resp, "offset") == 3 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn offsets_heartbeats_and_consumer_lists() -> Result<()> {
    let broker = start_broker(&[])?;
    let c = client();
    let addr = broker.addr.as_str();
    assert_eq!(send_v1(&c, addr, "Offsets", b"x").await?.code, 0);

    let query = |set_zero: Option<bool>| {
        RemotingCommand::request(
            RequestCode::QueryConsumerOffset,
            &QueryConsumerOffsetRequestHeader {
                consumer_group: "og".into(),
                topic: "Offsets".into(),
                queue_id: 0,
                set_zero_if_not_found: set_zero,
            },
        )
    };
    let none = c.invoke(addr, query(Some(false)), RPC_TIMEOUT).await?;
    assert_eq!(none.code, i32::from(ResponseCode::QueryNotFound));
    let zero = c.invoke(addr, query(None), RPC_TIMEOUT).await?;
    assert_eq!((zero.code, ext_i64(&zero, "offset")), (0, 0));

    let update = RemotingCommand::request(
        RequestCode::UpdateConsumerOffset,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: "og".into(),
            topic: "Offsets".into(),
            queue_id: 0,
            commit_offset: 1,
        },
    );
    assert_eq!(c.invoke(addr, update, RPC_TIMEOUT).await?.code, 0);
    let stored = c.invoke(addr, query(Some(false)), RPC_TIMEOUT).await?;
    assert_eq!((stored.code, ext_i64(&stored, "offset")), (0, 1));

    let heartbeat = HeartbeatData {
        client_id: "127.0.0.1@test#1".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: "og".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "Offsets".into(),
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
    let resp = c.invoke(addr, hb, RPC_TIMEOUT).await?;
    assert_eq!(resp.code, 0);
    assert!(resp.version >= 401);
    assert_eq!(resp.ext("IS_SUPPORT_HEART_BEAT_V2"), Some("true"));

    let list = RemotingCommand::request(
        RequestCode::GetConsumerListByGroup,
        &GetConsumerListByGroupRequestHeader {
            consumer_group: "og".into(),
        },
    );
    let resp = c.invoke(addr, list, RPC_TIMEOUT).await?;
    assert_eq!(resp.code, 0);
    let body: ConsumerListBody =
        tern_common::protocol::body::decode_body(&resp.body, SerializeType::Json)?;
    assert_eq!(body.consumer_id_list, vec!["127.0.0.1@test#1".to_string()]);

    // The registry subscription lets a pull without the subscription bit through.
    let mut pull = pull_request("Offsets", 0, 0, 0);
    pull.ext_fields.insert("consumerGroup".into(), "og".into());
    let resp = c.invoke(addr, pull, RPC_TIMEOUT).await?;
    assert!(
        resp.code == 0 || resp.code == i32::from(ResponseCode::PullNotFound),
        "{}",
        resp.code
    );

    let other = RemotingCommand::request(
        RequestCode::GetConsumerListByGroup,
        &GetConsumerListByGroupRequestHeader {
            consumer_group: "nobody".into(),
        },
    );
    assert_eq!(
        c.invoke(addr, other, RPC_TIMEOUT).await?.code,
        i32::from(ResponseCode::SystemError)
    );
    Ok(())
}
