//! End-to-end tests of delayed delivery in the real `tern-broker` binary: delay levels, timer
//! messages and CONSUMER_SEND_MSG_BACK (PROTOCOL.md §6).
//!
//! Method: start the binary on 127.0.0.1:0 with a fresh store and a short delay table
//! (`--message-delay-level "1s 2s 3s"`), drive it with `RemotingClient` and the typed headers,
//! and poll the real topic with short pulls (every 50 ms, bounded) to observe when a parked
//! message comes back. Timing assertions: a message is never visible before its due time
//! (measured from *before* the send, so the bound is conservative) and arrives at most ~1.5 s
//! late. Restart tests SIGKILL (or stop) the process in the middle of a delay and start it
//! again on the same store and port.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use tern_common::message::{decode_messages, encode_properties, property_key, MessageExt};
use tern_common::protocol::header::{
    ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::remoting::{ClientConfig, RemotingClient};

const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted lateness of a delivery.
const LATE_MAX: Duration = Duration::from_millis(1_500);

/// A broker process that can be killed and restarted on the same store and port.
struct Broker {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut broker = Broker {
            child: None,
            addr: "127.0.0.1:0".into(),
            dir,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern-broker"))
            .args(["--listen", &self.addr, "--store-dir"])
            .arg(self.dir.path())
            .args([
                "--mapped-file-size-commit-log",
                "4194304",
                "--max-message-size",
                "65536",
            ])
            .args(["--message-delay-level", "1s 2s 3s"])
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
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => {
                self.addr = addr;
                self.child = Some(child);
                Ok(())
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("broker printed no address")
            }
        }
    }

    /// SIGKILL, as `kill -9`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (clean stop), bounded; falls back to SIGKILL.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: plain libc call with a pid this test spawned and has not reaped.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        max_frame_len: 16 * 1024 * 1024,
        serialize_type: SerializeType::Json,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn send(
    c: &RemotingClient,
    addr: &str,
    topic: &str,
    props: &[(&str, String)],
) -> Result<RemotingCommand> {
    let mut map = BTreeMap::new();
    map.insert(property_key::UNIQ_KEY.to_string(), format!("U{}", now_ms()));
    for (k, v) in props {
        map.insert((*k).to_string(), v.clone());
    }
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: now_ms(),
        flag: 0,
        properties: Some(encode_properties(&map)),
        ..Default::default()
    };
    let request =
        RemotingCommand::request(RequestCode::SendMessage, &header).with_body(&b"payload"[..]);
    Ok(c.invoke(addr, request, RPC_TIMEOUT).await?)
}

async fn pull(c: &RemotingClient, addr: &str, topic: &str, offset: i64) -> Result<Vec<MessageExt>> {
    let header = PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        ..Default::default()
    };
    let resp = c
        .invoke(
            addr,
            RemotingCommand::request(RequestCode::PullMessage, &header),
            RPC_TIMEOUT,
        )
        .await?;
    if resp.code == i32::from(ResponseCode::Success) {
        Ok(decode_messages(&resp.body)?)
    } else {
        Ok(Vec::new())
    }
}

/// Polls `topic` queue 0 from `offset` every 50 ms until a message shows up or `within` passes;
/// returns the messages and the instant they were first seen.
async fn wait_for(
    c: &RemotingClient,
    addr: &str,
    topic: &str,
    offset: i64,
    within: Duration,
) -> Result<(Vec<MessageExt>, Instant)> {
    let deadline = Instant::now() + within;
    loop {
        // Connection errors are expected while a broker restarts; keep polling.
        if let Ok(found) = pull(c, addr, topic, offset).await {
            if !found.is_empty() {
                return Ok((found, Instant::now()));
            }
        }
        if Instant::now() > deadline {
            bail!("nothing arrived in {topic} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_on_time(sent: Instant, seen: Instant, delay: Duration) {
    let elapsed = seen.duration_since(sent);
    assert!(elapsed >= delay, "delivered early: {elapsed:?} < {delay:?}");
    assert!(
        elapsed <= delay + LATE_MAX,
        "delivered late: {elapsed:?} > {delay:?} + {LATE_MAX:?}"
    );
}

#[tokio::test]
async fn delay_levels_deliver_within_bounds_and_never_early() -> Result<()> {
    let broker = Broker::start()?;
    let c = client();
    let sent = Instant::now();
    let resp = send(
        &c,
        &broker.addr,
        "DelayT",
        &[(property_key::DELAY, "2".into())],
    )
    .await?;
    assert_eq!(resp.code, 0, "send: {:?}", resp.remark);
    // Level above the table is clamped to the last level (3 s).
    let sent_clamped = Instant::now();
    let resp = send(
        &c,
        &broker.addr,
        "DelayT2",
        &[(property_key::DELAY, "9".into())],
    )
    .await?;
    assert_eq!(resp.code, 0);

    let (msgs, seen) = wait_for(&c, &broker.addr, "DelayT", 0, Duration::from_secs(6)).await?;
    assert_on_time(sent, seen, Duration::from_secs(2));
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.message.body.as_ref(), b"payload");
    assert_eq!(m.message.property(property_key::DELAY), None);
    assert_eq!(m.message.property(property_key::REAL_TOPIC), None);
    assert!(m.store_timestamp - m.born_timestamp >= 2_000);

    let (_, seen) = wait_for(&c, &broker.addr, "DelayT2", 0, Duration::from_secs(7)).await?;
    assert_on_time(sent_clamped, seen, Duration::from_secs(3));
    // Delivered exactly once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pull(&c, &broker.addr, "DelayT", 1).await?.is_empty());
    Ok(())
}

async fn restart_mid_delay(clean: bool) -> Result<()> {
    let mut broker = Broker::start()?;
    let c = client();
    let sent = Instant::now();
    let resp = send(
        &c,
        &broker.addr,
        "RestartT",
        &[(property_key::DELAY, "3".into())],
    )
    .await?;
    assert_eq!(resp.code, 0);
    let timer_at = now_ms() + 3_500;
    let resp = send(
        &c,
        &broker.addr,
        "RestartTimer",
        &[(property_key::TIMER_DELIVER_MS, timer_at.to_string())],
    )
    .await?;
    assert_eq!(resp.code, 0);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    if clean {
        broker.stop();
    } else {
        broker.kill();
    }
    c.close_connection(&broker.addr);
    broker.spawn()?;
    let (msgs, seen) = wait_for(&c, &broker.addr, "RestartT", 0, Duration::from_secs(8)).await?;
    assert!(
        seen.duration_since(sent) >= Duration::from_secs(3),
        "early after restart"
    );
    assert_eq!(msgs.len(), 1);
    let (msgs, _) = wait_for(&c, &broker.addr, "RestartTimer", 0, Duration::from_secs(8)).await?;
    assert_eq!(msgs.len(), 1);
    let rounded = timer_at - timer_at % 1_000;
    assert!(
        msgs[0].store_timestamp >= rounded,
        "timer delivered early after restart"
    );
    Ok(())
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_delay_still_delivers_on_time() -> Result<()> {
    restart_mid_delay(false).await
}

#[tokio::test]
async fn clean_restart_in_the_middle_of_a_delay_still_delivers_on_time() -> Result<()> {
    restart_mid_delay(true).await
}

#[tokio::test]
async fn timer_messages_deliver_at_absolute_and_relative_times() -> Result<()> {
    let broker = Broker::start()?;
    let c = client();
    let at = now_ms() + 2_500;
    let resp = send(
        &c,
        &broker.addr,
        "TimerAbs",
        &[(property_key::TIMER_DELIVER_MS, at.to_string())],
    )
    .await?;
    assert_eq!(resp.code, 0, "send: {:?}", resp.remark);
    let sent_rel = now_ms();
    let resp = send(
        &c,
        &broker.addr,
        "TimerRel",
        &[(property_key::TIMER_DELAY_SEC, "2".into())],
    )
    .await?;
    assert_eq!(resp.code, 0);
    // Beyond the 3-day maximum → MESSAGE_ILLEGAL.
    let resp = send(
        &c,
        &broker.addr,
        "TimerFar",
        &[(property_key::TIMER_DELAY_SEC, "300000".into())],
    )
    .await?;
    assert_eq!(resp.code, i32::from(ResponseCode::MessageIllegal));
    // In the past → delivered at once.
    let resp = send(
        &c,
        &broker.addr,
        "TimerPast",
        &[(property_key::TIMER_DELIVER_MS, "1000".into())],
    )
    .await?;
    assert_eq!(resp.code, 0);
    let (past, _) = wait_for(&c, &broker.addr, "TimerPast", 0, Duration::from_secs(2)).await?;
    assert_eq!(past.len(), 1);

    let (msgs, _) = wait_for(&c, &broker.addr, "TimerAbs", 0, Duration::from_secs(6)).await?;
    let rounded = at - at % 1_000;
    let m = &msgs[0];
    assert!(m.store_timestamp >= rounded, "timer delivered early");
    assert!(m.store_timestamp <= at + 1_500, "timer delivered late");
    assert_eq!(
        m.message.property(property_key::TIMER_OUT_MS),
        Some(rounded.to_string().as_str())
    );
    assert_eq!(m.message.property(property_key::REAL_TOPIC), None);

    let (msgs, _) = wait_for(&c, &broker.addr, "TimerRel", 0, Duration::from_secs(6)).await?;
    let rel_at = sent_rel + 2_000;
    assert!(msgs[0].store_timestamp >= rel_at - rel_at % 1_000);
    assert!(msgs[0].store_timestamp <= rel_at + 1_500);
    Ok(())
}

async fn send_back(
    c: &RemotingClient,
    addr: &str,
    offset: i64,
    delay_level: i32,
    max_reconsume_times: i32,
) -> Result<RemotingCommand> {
    let header = ConsumerSendMsgBackRequestHeader {
        offset,
        group: "cg_retry".into(),
        delay_level,
        origin_msg_id: None,
        origin_topic: None,
        unit_mode: Some(false),
        max_reconsume_times: Some(max_reconsume_times),
    };
    let mut request = RemotingCommand::request(RequestCode::ConsumerSendMsgBack, &header);
    request.version = 401;
    Ok(c.invoke(addr, request, RPC_TIMEOUT).await?)
}

#[tokio::test]
async fn send_back_retries_with_delay_then_dead_letters() -> Result<()> {
    let broker = Broker::start()?;
    let c = client();
    let resp = send(
        &c,
        &broker.addr,
        "BackT",
        &[(property_key::TAGS, "tg".into())],
    )
    .await?;
    assert_eq!(resp.code, 0);
    let (msgs, _) = wait_for(&c, &broker.addr, "BackT", 0, Duration::from_secs(3)).await?;
    let original = &msgs[0];

    // First failure: delay level 0 → 3 + 0 = level 3 (3 s with this table).
    let sent = Instant::now();
    let resp = send_back(&c, &broker.addr, original.phy_offset, 0, 2).await?;
    assert_eq!(resp.code, 0, "send back: {:?}", resp.remark);
    let (retry, seen) = wait_for(
        &c,
        &broker.addr,
        "%RETRY%cg_retry",
        0,
        Duration::from_secs(6),
    )
    .await?;
    assert_on_time(sent, seen, Duration::from_secs(3));
    let r = &retry[0];
    assert_eq!(r.reconsume_times, 1);
    assert_eq!(r.message.property(property_key::RETRY_TOPIC), Some("BackT"));
    assert_eq!(r.message.property(property_key::TAGS), Some("tg"));
    assert_eq!(
        r.message.property(property_key::ORIGIN_MESSAGE_ID),
        Some(original.msg_id.as_str())
    );
    assert_eq!(r.message.body.as_ref(), b"payload");

    // Second failure with an explicit level 1.
    let sent = Instant::now();
    let resp = send_back(&c, &broker.addr, r.phy_offset, 1, 2).await?;
    assert_eq!(resp.code, 0);
    let (retry2, seen) = wait_for(
        &c,
        &broker.addr,
        "%RETRY%cg_retry",
        1,
        Duration::from_secs(4),
    )
    .await?;
    assert_on_time(sent, seen, Duration::from_secs(1));
    assert_eq!(retry2[0].reconsume_times, 2);

    // Reconsume times 2 ≥ max 2 → dead letter at once, readable with a pull.
    let resp = send_back(&c, &broker.addr, retry2[0].phy_offset, 0, 2).await?;
    assert_eq!(resp.code, 0);
    let (dlq, _) = wait_for(&c, &broker.addr, "%DLQ%cg_retry", 0, Duration::from_secs(2)).await?;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reconsume_times, 3);
    assert_eq!(dlq[0].message.property(property_key::DELAY), None);
    assert_eq!(
        dlq[0].message.property(property_key::ORIGIN_MESSAGE_ID),
        Some(original.msg_id.as_str())
    );
    // delayLevel −1 → dead letter now, whatever the count.
    let resp = send_back(&c, &broker.addr, original.phy_offset, -1, 16).await?;
    assert_eq!(resp.code, 0);
    let (dlq, _) = wait_for(&c, &broker.addr, "%DLQ%cg_retry", 1, Duration::from_secs(2)).await?;
    assert_eq!(dlq[0].reconsume_times, 1);

    // An offset that holds no message → SYSTEM_ERROR.
    let resp = send_back(&c, &broker.addr, 1 << 40, 0, 2).await?;
    assert_eq!(resp.code, i32::from(ResponseCode::SystemError));
    Ok(())
}
