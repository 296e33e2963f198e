//! Integration tests of the real `tern-nameserver` binary.
//!
//! Goal: check what a broker and a RocketMQ client see on the wire — registration, routes
//! (raw JSON text as Java/Go clients parse it), cluster info, expiry of a silent broker,
//! removal on connection close, error answers, a broken frame, MessagePack requests and a
//! clean stop on SIGTERM. Method: each test starts the binary on `127.0.0.1:0`, reads the
//! `listening on` line from its stdout (bounded wait), drives it with `RemotingClient`, and
//! kills the process when its guard drops. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tern_common::protocol::body::{decode_body, encode_body};
use tern_common::protocol::header::{
    GetRouteInfoRequestHeader, RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, RemotingClient};
use tern_common::route::{ClusterInfo, RegisterBrokerBody, TopicConfig, TopicList, TopicRouteData};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nameserver process, killed on drop.
struct NameServerProcess {
    child: Child,
    addr: String,
    _log_dir: tempfile::TempDir,
}

impl NameServerProcess {
    fn start(extra: &[&str]) -> Result<Self> {
        let log_dir = tempfile::tempdir()?;
        let log = std::fs::File::create(log_dir.path().join("nameserver.log"))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern-nameserver"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting tern-nameserver")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let mut process = NameServerProcess {
            child,
            addr: String::new(),
            _log_dir: log_dir,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => process.addr = addr,
            Err(_) => bail!("no `listening on` line within {STARTUP_TIMEOUT:?}"),
        }
        Ok(process)
    }
}

impl Drop for NameServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(ser: SerializeType) -> RemotingClient {
    RemotingClient::new(ClientConfig {
        serialize_type: ser,
        ..ClientConfig::default()
    })
}

fn register_request(
    name: &str,
    id: i64,
    addr: &str,
    topics: &[(&str, i32)],
    ser: SerializeType,
) -> RemotingCommand {
    let mut body = RegisterBrokerBody::default();
    body.topic_config_serialize_wrapper.data_version.counter = 1;
    body.topic_config_serialize_wrapper.data_version.timestamp = 1_700_000_000_000;
    for (topic, queues) in topics {
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert(topic.to_string(), TopicConfig::new(*topic, *queues));
    }
    let body = encode_body(&body, ser).expect("register body encodes");
    let crc = (crc32fast_hash(&body) & 0x7FFF_FFFF) as i32;
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: addr.replace(":10911", ":10912"),
        broker_id: id,
        body_crc32: Some(crc),
        compressed: Some(false),
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::RegisterBroker, &header).with_body(body)
}

/// CRC32 (IEEE), as brokers compute `bodyCrc32`; written out here so the test does not share
/// the server's implementation.
fn crc32fast_hash(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: Some(true),
        },
    )
}

async fn call(c: &RemotingClient, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
    Ok(c.invoke(addr, req, CALL_TIMEOUT).await?)
}

#[tokio::test]
async fn two_brokers_register_and_route_json_is_what_clients_expect() -> Result<()> {
    let ns = NameServerProcess::start(&[])?;
    let c = client(SerializeType::Json);
    let a = register_request(
        "broker-a",
        0,
        "10.0.0.5:10911",
        &[("T", 8), ("A", 4)],
        SerializeType::Json,
    );
    let r = call(&c, &ns.addr, a).await?;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let b = register_request(
        "broker-b",
        0,
        "10.0.0.6:10911",
        &[("T", 4)],
        SerializeType::Json,
    );
    assert_eq!(call(&c, &ns.addr, b).await?.code, 0);

    let r = call(&c, &ns.addr, route_request("T")).await?;
    assert_eq!(r.code, 0);
    assert_eq!(r.serialize_type, SerializeType::Json);
    let text = std::str::from_utf8(&r.body)?;
    assert!(!text.contains(char::is_whitespace), "compact JSON: {text}");
    for needle in [
        r#""brokerAddrs":{"0":"10.0.0.5:10911"}"#,
        r#""brokerAddrs":{"0":"10.0.0.6:10911"}"#,
        r#""filterServerTable":{}"#,
        r#""enableActingMaster":false"#,
        r#""cluster":"DefaultCluster""#,
        r#"{"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}"#,
        r#"{"brokerName":"broker-b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}"#,
    ] {
        assert!(text.contains(needle), "route JSON lacks {needle}: {text}");
    }
    assert!(!text.contains("orderTopicConf") && !text.contains("zoneName"));
    let route: TopicRouteData = serde_json::from_str(text)?;
    assert_eq!(route.publish_queues("T").len(), 12);

    let r = call(&c, &ns.addr, route_request("A")).await?;
    let route = TopicRouteData::from_json(&r.body)?;
    assert_eq!(route.broker_datas.len(), 1);

    let r = call(&c, &ns.addr, route_request("Missing")).await?;
    assert_eq!(r.code, i32::from(ResponseCode::TopicNotExist));
    assert!(r.body.is_empty());

    let r = call(
        &c,
        &ns.addr,
        RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo),
    )
    .await?;
    assert_eq!(r.code, 0);
    let info: ClusterInfo = decode_body(&r.body, SerializeType::Json)?;
    let names = &info.cluster_addr_table["DefaultCluster"];
    assert!(names.contains("broker-a") && names.contains("broker-b"));
    assert_eq!(
        info.broker_addr_table["broker-b"].master_addr(),
        Some("10.0.0.6:10911")
    );

    let r = call(
        &c,
        &ns.addr,
        RemotingCommand::request_empty(RequestCode::GetAllTopicListFromNameserver),
    )
    .await?;
    let list: TopicList = decode_body(&r.body, SerializeType::Json)?;
    assert_eq!(list.topic_list.iter().collect::<Vec<_>>(), ["A", "T"]);

    // A clean broker shutdown unregisters: broker-a's topic A disappears.
    let unregister = RemotingCommand::request(
        RequestCode::UnregisterBroker,
        &UnregisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: "10.0.0.5:10911".into(),
            cluster_name: "DefaultCluster".into(),
            broker_id: 0,
        },
    );
    assert_eq!(call(&c, &ns.addr, unregister).await?.code, 0);
    assert_eq!(call(&c, &ns.addr, route_request("A")).await?.code, 17);
    Ok(())
}

#[tokio::test]
async fn silent_broker_expires_while_the_re_registering_one_stays() -> Result<()> {
    let ns =
        NameServerProcess::start(&["--broker-expiry-ms", "1500", "--scan-interval-ms", "200"])?;
    let c = client(SerializeType::Json);
    let a = || {
        register_request(
            "broker-a",
            0,
            "10.0.0.5:10911",
            &[("T", 2)],
            SerializeType::Json,
        )
    };
    let b = || {
        register_request(
            "broker-b",
            0,
            "10.0.0.6:10911",
            &[("T", 2)],
            SerializeType::Json,
        )
    };
    assert_eq!(call(&c, &ns.addr, a()).await?.code, 0);
    assert_eq!(call(&c, &ns.addr, b()).await?.code, 0);
    let route = TopicRouteData::from_json(&call(&c, &ns.addr, route_request("T")).await?.body)?;
    assert_eq!(route.broker_datas.len(), 2);

    // broker-b re-registers every 300 ms; broker-a stays silent and must be gone after
    // 1.5 s + one scan. Give it at most 6 s.
    let deadline = Instant::now() + Duration::from_secs(6);
    let started = Instant::now();
    loop {
        assert_eq!(call(&c, &ns.addr, b()).await?.code, 0);
        let r = call(&c, &ns.addr, route_request("T")).await?;
        assert_eq!(r.code, 0, "broker-b must keep the topic alive");
        let route = TopicRouteData::from_json(&r.body)?;
        let names: Vec<&str> = route
            .broker_datas
            .iter()
            .map(|b| b.broker_name.as_str())
            .collect();
        if names == ["broker-b"] {
            assert!(
                started.elapsed() >= Duration::from_millis(1400),
                "expired too early"
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("broker-a never expired; route brokers: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = call(
        &c,
        &ns.addr,
        RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo),
    )
    .await?;
    let info: ClusterInfo = decode_body(&r.body, SerializeType::Json)?;
    assert!(!info.broker_addr_table.contains_key("broker-a"));
    Ok(())
}

#[tokio::test]
async fn closing_the_broker_connection_removes_it() -> Result<()> {
    let ns = NameServerProcess::start(&[])?;
    let broker = client(SerializeType::Json);
    let reader = client(SerializeType::Json);
    let reg = register_request(
        "broker-a",
        0,
        "10.0.0.5:10911",
        &[("T", 2)],
        SerializeType::Json,
    );
    assert_eq!(call(&broker, &ns.addr, reg).await?.code, 0);
    assert_eq!(call(&reader, &ns.addr, route_request("T")).await?.code, 0);
    broker.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if call(&reader, &ns.addr, route_request("T")).await?.code == 17 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("broker still routed after its connection closed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unknown_code_and_missing_field_get_error_responses() -> Result<()> {
    let ns = NameServerProcess::start(&[])?;
    let c = client(SerializeType::Json);
    let r = call(&c, &ns.addr, RemotingCommand::request_empty(4242)).await?;
    assert_eq!(r.code, 3);
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 4242 not supported")
    );

    let mut reg = register_request("broker-a", 0, "10.0.0.5:10911", &[], SerializeType::Json);
    reg.ext_fields.remove("clusterName");
    let r = call(&c, &ns.addr, reg).await?;
    assert_eq!(r.code, 1);
    assert!(r.remark.unwrap_or_default().contains("clusterName"));

    let r = call(
        &c,
        &ns.addr,
        RemotingCommand::request_empty(RequestCode::GetRouteinfoByTopic),
    )
    .await?;
    assert_eq!(r.code, 1);
    Ok(())
}

#[tokio::test]
async fn invalid_frame_closes_only_that_connection() -> Result<()> {
    let ns = NameServerProcess::start(&[])?;
    let addr = ns.addr.clone();
    let closed = tokio::task::spawn_blocking(move || -> Result<bool> {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        // length 16, header word with serialize type 9 (unknown), then junk.
        let mut frame = Vec::new();
        frame.extend_from_slice(&16i32.to_be_bytes());
        frame.extend_from_slice(&((9u32 << 24) | 4).to_be_bytes());
        frame.extend_from_slice(b"junkjunkjunk");
        s.write_all(&frame)?;
        let mut buf = [0u8; 64];
        // EOF or a reset means closed; a read timeout means the server kept it open.
        Ok(match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        })
    })
    .await??;
    assert!(
        closed,
        "server must close a connection that sent a broken frame"
    );

    let c = client(SerializeType::Json);
    let r = call(
        &c,
        &ns.addr,
        RemotingCommand::request_empty(RequestCode::GetBrokerClusterInfo),
    )
    .await?;
    assert_eq!(r.code, 0);
    Ok(())
}

#[tokio::test]
async fn messagepack_requests_get_messagepack_responses() -> Result<()> {
    let ns = NameServerProcess::start(&[])?;
    let c = client(SerializeType::MsgPack);
    let reg = register_request(
        "broker-a",
        0,
        "10.0.0.5:10911",
        &[("T", 3)],
        SerializeType::MsgPack,
    );
    let r = call(&c, &ns.addr, reg).await?;
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(r.serialize_type, SerializeType::MsgPack);
    let r = call(&c, &ns.addr, route_request("T")).await?;
    assert_eq!(r.code, 0);
    assert_eq!(r.serialize_type, SerializeType::MsgPack);
    let route: TopicRouteData = decode_body(&r.body, SerializeType::MsgPack)?;
    assert_eq!(route.queue_datas[0].read_queue_nums, 3);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&r.body).is_err(),
        "body is not JSON"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() -> Result<()> {
    let mut ns = NameServerProcess::start(&[])?;
    let status = Command::new("kill")
        .args(["-TERM", &ns.child.id().to_string()])
        .status()?;
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = ns.child.try_wait()? {
            assert!(status.success(), "exit status {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nameserver did not stop within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
