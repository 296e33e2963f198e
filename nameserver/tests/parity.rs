//! RocketMQ-parity checks of the NameServer's input validation and KV persistence.
//!
//! Goal: what a broker or admin tool sees on the wire when it sends bad REGISTER_BROKER or
//! PUT_KV_CONFIG input, and that the KV store survives a restart when `--kv-config-path` is
//! set. Method: validation tests serve an in-process NameServer (`run_with_state` on
//! `127.0.0.1:0`) and inspect its tables; persistence tests run the real binary twice over
//! the same file, killing the first one with SIGKILL (a SUCCESS answer means the file was
//! already written). Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tern_common::protocol::body::{decode_body, encode_body, KVTable};
use tern_common::protocol::header::{
    GetKVConfigRequestHeader, GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    PutKVConfigRequestHeader, RegisterBrokerRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, RemotingClient};
use tern_common::route::{RegisterBrokerBody, TopicConfig, TopicRouteData};
use tern_nameserver::{NameServer, NameServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// An in-process NameServer, stopped when dropped.
struct InProcess {
    addr: String,
    state: Arc<NameServer>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(NameServer::open(NameServerConfig::default())?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tern_nameserver::run_with_state(
            Arc::clone(&state),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(InProcess {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default())
}

fn topic(name: &str, read: i32, write: i32, perm: i32) -> TopicConfig {
    let mut config = TopicConfig::new(name, 4);
    config.read_queue_nums = read;
    config.write_queue_nums = write;
    config.perm = perm;
    config
}

fn register(
    name: &str,
    id: i64,
    cluster: &str,
    addr: &str,
    topics: &[TopicConfig],
) -> RemotingCommand {
    let mut body = RegisterBrokerBody::default();
    body.topic_config_serialize_wrapper.data_version.counter = 1;
    for t in topics {
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert(t.topic_name.clone(), t.clone());
    }
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: cluster.into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: id,
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::RegisterBroker, &header)
        .with_body(encode_body(&body, SerializeType::Json).expect("register body encodes"))
}

fn route(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    )
}

fn put_kv(namespace: &str, key: &str, value: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::PutKvConfig,
        &PutKVConfigRequestHeader {
            namespace: namespace.into(),
            key: key.into(),
            value: value.into(),
        },
    )
}

fn get_kv(namespace: &str, key: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GetKvConfig,
        &GetKVConfigRequestHeader {
            namespace: namespace.into(),
            key: key.into(),
        },
    )
}

#[tokio::test]
async fn register_with_a_bad_identity_is_refused_and_changes_nothing() -> Result<()> {
    let ns = InProcess::start().await?;
    let c = client();
    let good = [topic("T", 4, 4, 6)];
    for (req, needle) in [
        (
            register("", 0, "C", "127.0.0.1:10911", &good),
            "brokerName must not be empty",
        ),
        (
            register("b", 0, " ", "127.0.0.1:10911", &good),
            "clusterName must not be empty",
        ),
        (
            register("b", 0, "C", "", &good),
            "brokerAddr must not be empty",
        ),
        (
            register("b", -1, "C", "127.0.0.1:10911", &good),
            "brokerId must not be negative",
        ),
    ] {
        let r = c.invoke(&ns.addr, req, CALL_TIMEOUT).await?;
        assert_eq!(r.code, i32::from(ResponseCode::SystemError));
        let remark = r.remark.unwrap_or_default();
        assert!(remark.starts_with("register broker failed: "), "{remark}");
        assert!(remark.contains(needle), "{remark}");
    }
    let r = c.invoke(&ns.addr, route("T"), CALL_TIMEOUT).await?;
    assert_eq!(r.code, i32::from(ResponseCode::TopicNotExist));
    assert!(ns
        .state
        .routes()
        .cluster_info()
        .broker_addr_table
        .is_empty());
    ns.stop().await;
    Ok(())
}

#[tokio::test]
async fn register_drops_only_the_topics_with_absurd_queues_or_perm() -> Result<()> {
    let ns = InProcess::start().await?;
    let c = client();
    let topics = [
        topic("Good", 8, 8, 6),
        topic("Shrinking", 4, 0, 6),
        topic("NegativeRead", -1, 4, 6),
        topic("NegativeWrite", 4, -3, 6),
        topic("Huge", 65_537, 4, 6),
        topic("BadPerm", 4, 4, 16),
        topic("NegativePerm", 4, 4, -1),
    ];
    let r = c
        .invoke(
            &ns.addr,
            register("broker-a", 0, "C", "127.0.0.1:10911", &topics),
            CALL_TIMEOUT,
        )
        .await?;
    assert_eq!(r.code, i32::from(ResponseCode::Success), "{:?}", r.remark);
    let remark = r.remark.unwrap_or_default();
    for bad in [
        "NegativeRead",
        "NegativeWrite",
        "Huge",
        "BadPerm",
        "NegativePerm",
    ] {
        assert!(remark.contains(bad), "{bad} not named in {remark}");
        let r = c.invoke(&ns.addr, route(bad), CALL_TIMEOUT).await?;
        assert_eq!(
            r.code,
            i32::from(ResponseCode::TopicNotExist),
            "{bad} was registered"
        );
    }
    assert!(
        !remark.contains("Good") && !remark.contains("Shrinking"),
        "{remark}"
    );
    let r = c.invoke(&ns.addr, route("Good"), CALL_TIMEOUT).await?;
    assert_eq!(r.code, i32::from(ResponseCode::Success));
    let data = TopicRouteData::from_json(&r.body)?;
    assert_eq!(data.queue_datas[0].read_queue_nums, 8);
    let r = c.invoke(&ns.addr, route("Shrinking"), CALL_TIMEOUT).await?;
    let data = TopicRouteData::from_json(&r.body)?;
    assert_eq!(data.queue_datas[0].write_queue_nums, 0);

    // A clean registration carries no remark.
    let r = c
        .invoke(
            &ns.addr,
            register("broker-a", 0, "C", "127.0.0.1:10911", &topics[..1]),
            CALL_TIMEOUT,
        )
        .await?;
    assert_eq!(r.code, 0);
    assert_eq!(r.remark, None);
    ns.stop().await;
    Ok(())
}

#[tokio::test]
async fn put_kv_config_with_an_empty_namespace_or_key_is_an_error() -> Result<()> {
    let ns = InProcess::start().await?;
    let c = client();
    for (req, field) in [
        (put_kv("", "k", "v"), "namespace"),
        (put_kv("  ", "k", "v"), "namespace"),
        (put_kv("ns", "", "v"), "key"),
    ] {
        let r = c.invoke(&ns.addr, req, CALL_TIMEOUT).await?;
        assert_eq!(r.code, i32::from(ResponseCode::SystemError));
        assert_eq!(
            r.remark.as_deref(),
            Some(format!("kv config {field} must not be empty").as_str())
        );
    }
    assert!(ns.state.kv().list("").is_none());
    assert!(ns.state.kv().list("ns").is_none());
    let r = c
        .invoke(&ns.addr, put_kv("ns", "k", "v"), CALL_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0);
    ns.stop().await;
    Ok(())
}

/// A running `tern-nameserver` process, killed (SIGKILL) on drop.
struct Process {
    child: Child,
    addr: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(extra: &[&str]) -> Result<Process> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern-nameserver"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tern-nameserver")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let mut process = Process {
        child,
        addr: String::new(),
    };
    match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(addr) => process.addr = addr,
        Err(_) => bail!("no `listening on` line within {STARTUP_TIMEOUT:?}"),
    }
    Ok(process)
}

#[tokio::test]
async fn kv_config_survives_a_restart_with_kv_config_path() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("namesrv").join("kvConfig.json");
    let path_arg = path.to_str().context("utf-8 temp path")?.to_string();
    let c = client();

    let first = start_binary(&["--kv-config-path", &path_arg])?;
    for (ns, key, value) in [
        ("ORDER_TOPIC_CONFIG", "T", "broker-a:4"),
        ("ns", "k", "v1"),
        ("ns", "k", "v2"),
    ] {
        let r = c
            .invoke(&first.addr, put_kv(ns, key, value), CALL_TIMEOUT)
            .await?;
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    assert_eq!(json["configTable"]["ns"]["k"], "v2");
    drop(first);
    c.shutdown();

    let c = client();
    let second = start_binary(&["--kv-config-path", &path_arg])?;
    let r = c
        .invoke(&second.addr, get_kv("ns", "k"), CALL_TIMEOUT)
        .await?;
    assert_eq!(r.ext("value"), Some("v2"));
    let list = RemotingCommand::request(
        RequestCode::GetKvlistByNamespace,
        &GetKVListByNamespaceRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
        },
    );
    let r = c.invoke(&second.addr, list, CALL_TIMEOUT).await?;
    let table: KVTable = decode_body(&r.body, SerializeType::Json)?;
    assert_eq!(table.table["T"], "broker-a:4");
    Ok(())
}

#[tokio::test]
async fn without_kv_config_path_a_restart_forgets_the_kv_store() -> Result<()> {
    let c = client();
    let first = start_binary(&[])?;
    let r = c
        .invoke(&first.addr, put_kv("ns", "k", "v"), CALL_TIMEOUT)
        .await?;
    assert_eq!(r.code, 0);
    drop(first);
    c.shutdown();
    let c = client();
    let second = start_binary(&[])?;
    let r = c
        .invoke(&second.addr, get_kv("ns", "k"), CALL_TIMEOUT)
        .await?;
    assert_eq!(r.code, i32::from(ResponseCode::QueryNotFound));
    Ok(())
}

#[test]
fn a_malformed_kv_file_stops_the_binary_before_it_listens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kvConfig.json");
    std::fs::write(&path, "{\"configTable\": 7}")?;
    let status = Command::new(env!("CARGO_BIN_EXE_tern-nameserver"))
        .args(["--listen", "127.0.0.1:0", "--kv-config-path"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    assert!(!status.success());
    // The file is left as it was for the operator to inspect.
    assert_eq!(std::fs::read_to_string(&path)?, "{\"configTable\": 7}");
    Ok(())
}
