//! The broker's NameServer registration against the real `tern-nameserver` binary: the
//! broker registers TBW102 at start, re-registers right after auto-creating a topic, and
//! unregisters on a clean stop (SIGTERM), after which its routes disappear. Both processes run
//! on 127.0.0.1:0 and are killed when the test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tern_common::message::{encode_properties, property_key};
use tern_common::protocol::header::{GetRouteInfoRequestHeader, SendMessageRequestHeader};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, RemotingClient};
use tern_common::route::TopicRouteData;

const RPC_TIMEOUT: Duration = Duration::from_secs(5);

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: PathBuf, args: &[String]) -> Result<Proc> {
    let mut child = Command::new(&program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Ok(Proc { child, addr }),
        Err(_) => {
            let _ = child.kill();
            bail!("{} printed no address", program.display())
        }
    }
}

/// The workspace's `tern-nameserver` binary, built if absent.
fn nameserver_bin() -> Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("debug").join("tern-nameserver");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "-p",
                "tern-nameserver",
                "--bin",
                "tern-nameserver",
            ])
            .status()?;
        if !status.success() {
            bail!("building tern-nameserver failed");
        }
    }
    Ok(bin)
}

async fn route(c: &RemotingClient, namesrv: &str, topic: &str) -> Result<Option<TopicRouteData>> {
    let request = RemotingCommand::request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    );
    let resp = c.invoke(namesrv, request, RPC_TIMEOUT).await?;
    if resp.code == i32::from(ResponseCode::TopicNotExist) {
        return Ok(None);
    }
    if resp.code != 0 {
        bail!("route query failed: {} {:?}", resp.code, resp.remark);
    }
    Ok(Some(TopicRouteData::from_json(&resp.body)?))
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn broker_registers_reregisters_on_new_topics_and_unregisters_on_stop() -> Result<()> {
    let namesrv = spawn(
        nameserver_bin()?,
        &["--listen".into(), "127.0.0.1:0".into()],
    )?;
    let dir = tempfile::tempdir()?;
    let broker = spawn(
        PathBuf::from(env!("CARGO_BIN_EXE_tern-broker")),
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "-n".into(),
            namesrv.addr.clone(),
            "--store-dir".into(),
            dir.path().display().to_string(),
            "--mapped-file-size-commit-log".into(),
            "16777216".into(),
        ],
    )?;
    let c = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        max_frame_len: 16 * 1024 * 1024,
        serialize_type: SerializeType::Json,
    });

    let tbw = wait_for("TBW102 route", || route(&c, &namesrv.addr, "TBW102")).await?;
    assert_eq!(tbw.queue_datas.len(), 1);
    assert_eq!(tbw.queue_datas[0].perm, 7);
    assert_eq!(tbw.broker_datas[0].broker_addrs.get(&0), Some(&broker.addr));

    // Auto-creating a topic re-registers at once (well before the 30 s period).
    let mut props = std::collections::BTreeMap::new();
    props.insert(property_key::UNIQ_KEY.to_string(), "CC01".to_string());
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "Registered".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        properties: Some(encode_properties(&props)),
        ..Default::default()
    };
    let send = RemotingCommand::request(RequestCode::SendMessage, &header).with_body(&b"x"[..]);
    assert_eq!(c.invoke(&broker.addr, send, RPC_TIMEOUT).await?.code, 0);
    let created = wait_for("route of the new topic", || {
        route(&c, &namesrv.addr, "Registered")
    })
    .await?;
    assert_eq!(created.queue_datas[0].write_queue_nums, 4);
    assert_eq!(created.queue_datas[0].perm, 6);

    // A clean stop unregisters: the routes go away.
    let status = Command::new("kill")
        .args(["-TERM", &broker.child.id().to_string()])
        .status()?;
    assert!(status.success());
    wait_for("route removal", || async {
        Ok(route(&c, &namesrv.addr, "Registered")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    drop(broker);
    Ok(())
}
