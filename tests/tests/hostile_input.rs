//! Hostile-input sweep of the real `tern-nameserver` and `tern-broker` processes: whatever a
//! peer sends, a server answers with a defined response code (or closes only that
//! connection), never panics, never leaves a connection stuck, and keeps serving everyone else.
//!
//! Method: every test starts its own NameServer and broker on 127.0.0.1:0 with temporary
//! directories and talks to them over plain `tokio::net::TcpStream`s, framing commands by hand
//! (PROTOCOL.md §1.1) so that it can also send frames no well-behaved client would.
//!
//! - [`every_request_code_is_answered_in_every_serialize_type`]: every `RequestCode::ALL` code
//!   plus unknown numbers, in JSON, ROCKETMQ binary and MessagePack, to both servers, with
//!   (a) no ext fields and no body, (b) garbage values and a garbage body, (c) parsable but
//!   extreme values on a real topic, (d)/(e) the same on queue 0 with `i64::MAX` / negative
//!   offsets; then the same codes oneway. Each request must be answered
//!   within [`ANSWER_TIMEOUT`] with a defined response code; oneway requests must get no
//!   answer and leave the connection usable. Afterwards both processes run, their logs hold no
//!   panic, and a fresh connection can send and pull a message.
//! - [`raw_tcp_abuse_closes_only_the_offending_connection`]: malformed frames (2 GiB and
//!   negative lengths, header length past the frame, unknown serialize type, truncated frame,
//!   10 MB of random bytes, 200 half-open connections) each close only their own connection;
//!   a bystander connection keeps working and the broker's RSS stays bounded.
//! - [`send_limits_answer_message_illegal_and_bad_topics_are_refused`]: oversized body and
//!   property string → MESSAGE_ILLEGAL (13), invalid topic names → INVALID_PARAMETER (29),
//!   forbidden system topics → NO_PERMISSION (16), TBW102 accepted; the connection keeps
//!   working throughout.
//!
//! Codes above 32767 (the POP family, 99999) cannot travel in the ROCKETMQ binary header
//! (`code` is an `i16` there, PROTOCOL.md §1.4), so the binary sweep leaves them out.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use tern_common::protocol::codec::{decode_header, encode_header};
use tern_common::protocol::command::FLAG_ONEWAY;
use tern_common::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_tests::{start_broker, start_nameserver, TernProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest wait for the answer to one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame this test accepts from a server (Java's default frame limit).
const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Request codes Tern names nowhere; answered REQUEST_CODE_NOT_SUPPORTED (3).
const UNKNOWN_CODES: [i32; 4] = [9999, -1, 99_999, 0];
/// The topic of the final send-and-pull check; no hostile request names it.
const CHECK_TOPIC: &str = "HostileSweepCheck";
/// The topic hostile requests of variant (c) aim at.
const HOSTILE_TOPIC: &str = "HostileTopic";

// ---------------------------------------------------------------------------------------
// Hand-framed connection
// ---------------------------------------------------------------------------------------

/// Encodes `cmd` as one frame (PROTOCOL.md §1.1).
fn frame(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    let header = encode_header(cmd)?;
    let length = i32::try_from(4 + header.len() + cmd.body.len()).context("frame too long")?;
    let header_len = u32::try_from(header.len()).context("header too long")?;
    let mut out = Vec::with_capacity(8 + header.len() + cmd.body.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(
        &((u32::from(cmd.serialize_type.code()) << 24) | header_len).to_be_bytes(),
    );
    out.extend_from_slice(&header);
    out.extend_from_slice(&cmd.body);
    Ok(out)
}

/// One TCP connection that sends and reads frames by hand.
#[derive(Debug)]
struct RawConn {
    stream: TcpStream,
    next_opaque: i32,
}

impl RawConn {
    async fn connect(addr: &str) -> Result<Self> {
        let stream = timeout(ANSWER_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            next_opaque: 1,
        })
    }

    /// Sends `cmd` with a fresh opaque; returns that opaque.
    async fn send(&mut self, mut cmd: RemotingCommand) -> Result<i32> {
        cmd.opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        let bytes = frame(&cmd)?;
        self.stream.write_all(&bytes).await?;
        Ok(cmd.opaque)
    }

    /// Reads one frame; `Ok(None)` on a clean close before the first byte.
    async fn read_frame(&mut self) -> Result<Option<RemotingCommand>> {
        let mut len_buf = [0u8; 4];
        match self.stream.read_exact(&mut len_buf).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let length = i32::from_be_bytes(len_buf);
        let length = usize::try_from(length).context("negative frame length from server")?;
        ensure!(
            (4..MAX_FRAME_LEN).contains(&length),
            "server sent frame length {length}"
        );
        let mut rest = vec![0u8; length];
        self.stream.read_exact(&mut rest).await?;
        let word = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let serialize_type = SerializeType::from_code((word >> 24) as u8)
            .with_context(|| format!("server sent serialize type {}", word >> 24))?;
        let header_len = (word & 0x00FF_FFFF) as usize;
        ensure!(
            header_len <= length - 4,
            "server header length {header_len} past frame"
        );
        let mut cmd = decode_header(serialize_type, &rest[4..4 + header_len])?;
        cmd.body = Bytes::copy_from_slice(&rest[4 + header_len..]);
        Ok(Some(cmd))
    }

    /// Reads frames until the response with `opaque`, skipping server→client requests and
    /// collecting the opaques of other responses into `strays`.
    async fn response_to(
        &mut self,
        opaque: i32,
        wait: Duration,
        strays: &mut Vec<i32>,
    ) -> Result<RemotingCommand> {
        let deadline = tokio::time::Instant::now() + wait;
        // Bounded: every iteration consumes one frame and the deadline caps the total wait.
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(read) = timeout(left, self.read_frame()).await else {
                bail!("no response to opaque {opaque} within {wait:?}");
            };
            let Some(cmd) = read? else {
                bail!("connection closed before the response to opaque {opaque}");
            };
            if !cmd.is_response() {
                continue;
            }
            if cmd.opaque == opaque {
                return Ok(cmd);
            }
            strays.push(cmd.opaque);
        }
    }

    /// Sends `cmd` and waits for its response.
    async fn call(&mut self, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let opaque = self.send(cmd).await?;
        let mut strays = Vec::new();
        let response = self
            .response_to(opaque, ANSWER_TIMEOUT, &mut strays)
            .await?;
        ensure!(
            strays.is_empty(),
            "unexpected responses with opaques {strays:?}"
        );
        Ok(response)
    }

    /// True if the server closed (or reset) this connection within `wait`, reading and
    /// discarding whatever arrives meanwhile.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded by the deadline.
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match timeout(left, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

fn request(code: i32, ser: SerializeType, fields: &[(&str, &str)], body: &[u8]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request_empty(code)
        .with_serialize_type(ser)
        .with_body(Bytes::copy_from_slice(body));
    cmd.ext_fields = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect::<ExtFields>();
    cmd
}

/// Garbage values for the keys typical headers use (variant b): unparsable numbers, empty
/// names, out-of-range values. `sysFlag` stays free of the SUSPEND bit (0x2) so that no pull
/// is parked.
const GARBAGE_FIELDS: &[(&str, &str)] = &[
    ("topic", ""),
    ("queueId", "x"),
    ("queueOffset", "-5"),
    ("maxMsgNums", "999999999"),
    ("commitLogOffset", "9223372036854775807"),
    ("offset", "-1"),
    ("consumerGroup", ""),
    ("producerGroup", ""),
    ("group", "\u{0}"),
    ("clientID", ""),
    ("sysFlag", "-3"),
    ("commitOffset", "NaN"),
    ("suspendTimeoutMillis", "-1"),
    ("subVersion", "abc"),
    ("subscription", "(("),
    ("expressionType", "SQL92"),
    ("timestamp", "-9"),
    ("msgId", "zz"),
    ("key", ""),
    ("value", ""),
    ("namespace", ""),
    ("brokerName", ""),
    ("brokerAddr", ":::"),
    ("clusterName", ""),
    ("brokerId", "1e9"),
    ("haServerAddr", ""),
    ("bodyCrc32", "12"),
    ("compressed", "maybe"),
    ("defaultTopic", ""),
    ("defaultTopicQueueNums", "-7"),
    ("bornTimestamp", "yesterday"),
    ("flag", "0x10"),
    ("properties", "\u{1}\u{2}\u{1}\u{2}"),
    ("batch", "true"),
    ("tranStateTableOffset", "-1"),
    ("commitOrRollback", "x"),
    ("transactionId", ""),
    ("fromTransactionCheck", "yes"),
    ("delayLevel", "-99"),
    ("originMsgId", ""),
    ("originTopic", ""),
    ("maxReconsumeTimes", "2147483648"),
    ("reconsumeTimes", "-2147483649"),
    ("beginTimestamp", "9223372036854775808"),
    ("endTimestamp", "-"),
    ("maxNum", "0"),
    ("uniqKey", ""),
    ("readQueueNums", "-1"),
    ("writeQueueNums", "99999999"),
    ("perm", "255"),
    ("topicFilterType", "BOGUS"),
    ("topicSysFlag", "z"),
    ("order", "perhaps"),
    ("isForce", "?"),
    ("a", ""),
    ("b", ""),
    ("c", ""),
    ("d", "-1"),
    ("e", "x"),
    ("f", "-3"),
    ("g", ""),
    ("h", ""),
    ("i", "\u{2}"),
    ("m", "true"),
];

/// Parsable but extreme values on a real topic (variant c), so that processors get past
/// header decoding into their arithmetic. Again no SUSPEND bit (sysFlag 1 = commit offset).
const EXTREME_FIELDS: &[(&str, &str)] = &[
    ("topic", HOSTILE_TOPIC),
    ("queueId", "2147483647"),
    ("queueOffset", "9223372036854775807"),
    ("maxMsgNums", "2147483647"),
    ("commitLogOffset", "9223372036854775807"),
    ("offset", "-9223372036854775808"),
    ("consumerGroup", "HostileGroup"),
    ("producerGroup", "HostileProducer"),
    ("group", "HostileGroup"),
    ("clientID", "127.0.0.1@hostile"),
    ("sysFlag", "1"),
    ("commitOffset", "-9223372036854775808"),
    ("suspendTimeoutMillis", "9223372036854775807"),
    ("subVersion", "-1"),
    ("subscription", "*"),
    ("expressionType", "TAG"),
    ("timestamp", "9223372036854775807"),
    ("msgId", "7F00000100002A9F00000000FFFFFFFF"),
    ("key", "k"),
    ("value", "v"),
    ("namespace", "ns"),
    ("brokerName", "hostile-broker"),
    ("brokerAddr", "127.0.0.1:1"),
    ("clusterName", "HostileCluster"),
    ("brokerId", "-9223372036854775808"),
    ("haServerAddr", "127.0.0.1:2"),
    ("bodyCrc32", "0"),
    ("compressed", "false"),
    ("defaultTopic", "TBW102"),
    ("defaultTopicQueueNums", "2147483647"),
    ("bornTimestamp", "-9223372036854775808"),
    ("flag", "-2147483648"),
    ("properties", ""),
    ("tranStateTableOffset", "9223372036854775807"),
    ("commitOrRollback", "2147483647"),
    ("transactionId", "tx"),
    ("delayLevel", "2147483647"),
    ("originMsgId", "7F00000100002A9F00000000FFFFFFFF"),
    ("originTopic", HOSTILE_TOPIC),
    ("maxReconsumeTimes", "-2147483648"),
    ("reconsumeTimes", "2147483647"),
    ("beginTimestamp", "9223372036854775807"),
    ("endTimestamp", "-9223372036854775808"),
    ("maxNum", "2147483647"),
    ("uniqKey", "u"),
    ("readQueueNums", "2147483647"),
    ("writeQueueNums", "-2147483648"),
    ("perm", "-1"),
    ("topicFilterType", "SINGLE_TAG"),
    ("order", "false"),
    ("isForce", "true"),
];

/// Variants (d) and (e): the extreme values of (c) on queue 0, so that pulls, offset
/// lookups and transaction ends get past the queue check into offset arithmetic: (d) with
/// `i64::MAX` offsets and a commit, (e) with negative offsets and a rollback.
fn extreme_fields(variant: char) -> Vec<(&'static str, &'static str)> {
    let overrides: &[(&str, &str)] = match variant {
        'd' => &[
            ("queueId", "0"),
            ("e", "0"),
            ("queueOffset", "9223372036854775807"),
            ("maxMsgNums", "999999999"),
            ("sysFlag", "5"),
            ("commitOffset", "9223372036854775807"),
            ("offset", "9223372036854775807"),
            ("commitOrRollback", "8"),
            ("tranStateTableOffset", "9223372036854775807"),
            ("timestamp", "-9223372036854775808"),
        ],
        'e' => &[
            ("queueId", "0"),
            ("e", "0"),
            ("queueOffset", "-5"),
            ("maxMsgNums", "-1"),
            ("sysFlag", "4"),
            ("commitOffset", "-1"),
            ("offset", "-1"),
            ("commitOrRollback", "12"),
            ("commitLogOffset", "-1"),
            ("tranStateTableOffset", "-1"),
            ("timestamp", "0"),
            ("maxNum", "-1"),
        ],
        _ => &[],
    };
    EXTREME_FIELDS
        .iter()
        .map(|&(k, v)| {
            let v = overrides
                .iter()
                .find(|(ok, _)| *ok == k)
                .map_or(v, |(_, ov)| *ov);
            (k, v)
        })
        .chain(
            overrides
                .iter()
                .filter(|(k, _)| !EXTREME_FIELDS.iter().any(|(ek, _)| ek == k))
                .copied(),
        )
        .collect()
}

/// A deterministic xorshift generator for "random" bytes.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_be_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The garbage bodies of variant (b), cycled through by code.
fn garbage_body(index: usize) -> Vec<u8> {
    match index % 4 {
        0 => XorShift(0x9E37_79B9_7F4A_7C15 ^ index as u64).bytes(777),
        1 => b"{\"clientID\":".to_vec(),
        2 => b"[1,2,{\"a\":".repeat(50),
        _ => b"{\"topicConfigTable\":{\"x\":{\"topicName\":\"\",\"readQueueNums\":-1}},\"dataVersion\":7}"
            .to_vec(),
    }
}

/// Every code of the sweep that can travel in `ser`.
fn sweep_codes(ser: SerializeType) -> Vec<i32> {
    RequestCode::ALL
        .iter()
        .map(|c| c.code())
        .chain(UNKNOWN_CODES)
        .filter(|c| ser != SerializeType::RocketMq || i16::try_from(*c).is_ok())
        .collect()
}

fn code_name(code: i32) -> String {
    RequestCode::try_from(code)
        .map_or_else(|_| format!("unknown {code}"), |c| format!("{c} ({code})"))
}

// ---------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------

struct Cluster {
    _dir: tempfile::TempDir,
    store_dir: std::path::PathBuf,
    namesrv: TernProcess,
    broker: TernProcess,
}

impl Cluster {
    fn start(broker_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let namesrv = start_nameserver(dir.path(), &[])?;
        let store_dir = dir.path().join("broker-a");
        let broker = start_broker(&namesrv.addr, &store_dir, broker_args)?;
        Ok(Cluster {
            _dir: dir,
            store_dir,
            namesrv,
            broker,
        })
    }

    /// Both processes run and neither log shows a panic.
    fn assert_healthy(&mut self) -> Result<()> {
        for process in [&mut self.namesrv, &mut self.broker] {
            ensure!(
                process.is_running(),
                "{} died; log tail:\n{}",
                process.role,
                process.log_tail(60)
            );
            let log = process.log();
            if let Some(at) = log.find("panicked") {
                let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let excerpt: String = log[from..].lines().take(12).collect::<Vec<_>>().join("\n");
                bail!("{} log shows a panic:\n{excerpt}", process.role);
            }
        }
        Ok(())
    }
}

fn send_request(ser: SerializeType, topic: &str, queue_id: i32, body: &[u8]) -> RemotingCommand {
    let born = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    let queue = queue_id.to_string();
    request(
        RequestCode::SendMessage.code(),
        ser,
        &[
            ("producerGroup", "HostilePG"),
            ("topic", topic),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", &queue),
            ("sysFlag", "0"),
            ("bornTimestamp", &born),
            ("flag", "0"),
            ("properties", "KEYS\u{1}hostile\u{2}"),
        ],
        body,
    )
}

fn pull_request(ser: SerializeType, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    let queue = queue_id.to_string();
    let offset = offset.to_string();
    request(
        RequestCode::PullMessage.code(),
        ser,
        &[
            ("consumerGroup", "HostileCG"),
            ("topic", topic),
            ("queueId", &queue),
            ("queueOffset", &offset),
            ("maxMsgNums", "32"),
            // SUBSCRIPTION (0x4): the expression travels in the header, no heartbeat needed.
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subscription", "*"),
            ("expressionType", "TAG"),
            ("subVersion", "0"),
        ],
        &[],
    )
}

/// A fresh connection sends `payload` to [`CHECK_TOPIC`] queue 0 and pulls it back.
async fn send_and_pull(broker: &str, ser: SerializeType, payload: &[u8]) -> Result<()> {
    let mut conn = RawConn::connect(broker).await?;
    let sent = conn
        .call(send_request(ser, CHECK_TOPIC, 0, payload))
        .await?;
    ensure!(
        sent.code == ResponseCode::Success,
        "send answered {} {:?}",
        sent.code,
        sent.remark
    );
    let offset: i64 = sent
        .ext("queueOffset")
        .context("send response without queueOffset")?
        .parse()?;
    // Dispatch into the consume queue is asynchronous: poll for up to 10 s (200 × 50 ms).
    let mut last = None;
    let mut body = None;
    for _ in 0..200 {
        let pulled = conn.call(pull_request(ser, CHECK_TOPIC, 0, offset)).await?;
        if pulled.code == ResponseCode::Success {
            body = Some(pulled.body);
            break;
        }
        last = Some((pulled.code, pulled.remark));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = body.with_context(|| format!("{ser:?}: message never pullable; last {last:?}"))?;
    ensure!(
        body.windows(payload.len()).any(|w| w == payload),
        "pulled records do not contain the payload"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Every request code
// ---------------------------------------------------------------------------------------

/// What one server answered to one request of the sweep.
#[derive(Debug)]
struct Answer {
    server: &'static str,
    ser: SerializeType,
    variant: char,
    code: i32,
    response: i32,
    remark: String,
}

/// Sends variants (a), (b), (c) of every code to `addr` on one connection per variant and
/// records the answers; problems (no answer, undefined code, unknown code not refused) go to
/// `problems`.
async fn sweep_server(
    server: &'static str,
    addr: &str,
    ser: SerializeType,
    answers: &mut Vec<Answer>,
    problems: &mut Vec<String>,
    silent: &mut Vec<String>,
) -> Result<()> {
    let codes = sweep_codes(ser);
    for variant in ['a', 'b', 'c', 'd', 'e'] {
        let mut conn = RawConn::connect(addr).await?;
        for (index, &code) in codes.iter().enumerate() {
            let cmd = match variant {
                'a' => request(code, ser, &[], &[]),
                'b' => request(code, ser, GARBAGE_FIELDS, &garbage_body(index)),
                _ => request(
                    code,
                    ser,
                    &extreme_fields(variant),
                    &garbage_body(index + variant as usize),
                ),
            };
            // RocketMQ's EndTransactionProcessor answers nothing when commitOrRollback is
            // neither COMMIT (8) nor ROLLBACK (12), even to a synchronous request (clients
            // always send END_TRANSACTION oneway); Tern does the same. Variant (c) carries
            // 2147483647: expect silence for a short while, then a usable connection.
            let silent_by_design = code == RequestCode::EndTransaction.code() && variant == 'c';
            let wait = if silent_by_design {
                Duration::from_millis(500)
            } else {
                ANSWER_TIMEOUT
            };
            let what = format!("{server} {ser:?} ({variant}) {}", code_name(code));
            let opaque = conn
                .send(cmd)
                .await
                .with_context(|| format!("sending {what}"))?;
            let mut strays = Vec::new();
            match conn.response_to(opaque, wait, &mut strays).await {
                Ok(response) => {
                    if !strays.is_empty() {
                        problems.push(format!("{what}: stray responses {strays:?}"));
                    }
                    if ResponseCode::try_from(response.code).is_err() {
                        problems.push(format!(
                            "{what}: undefined response code {} ({:?})",
                            response.code, response.remark
                        ));
                    }
                    if response.serialize_type != ser {
                        problems.push(format!("{what}: answered in {:?}", response.serialize_type));
                    }
                    if RequestCode::try_from(code).is_err()
                        && response.code != ResponseCode::RequestCodeNotSupported
                    {
                        problems.push(format!(
                            "{what}: unknown code answered {} instead of 3",
                            response.code
                        ));
                    }
                    answers.push(Answer {
                        server,
                        ser,
                        variant,
                        code,
                        response: response.code,
                        remark: response.remark.unwrap_or_default(),
                    });
                }
                Err(_) if silent_by_design => {
                    silent.push(what);
                    let probe = request(9999, ser, &[], &[]);
                    let answer = conn.call(probe).await.with_context(|| {
                        format!("{server} {ser:?}: connection after a silent END_TRANSACTION")
                    })?;
                    ensure!(answer.code == ResponseCode::RequestCodeNotSupported);
                }
                Err(err) => {
                    problems.push(format!("{what}: {err:#}"));
                    // The connection may be stuck or closed; carry on with a fresh one.
                    conn = RawConn::connect(addr).await?;
                }
            }
        }
    }
    Ok(())
}

/// Sends every code oneway (variant b) on one connection, then a probe request; nothing but
/// the probe's answer may come back and the probe must be answered.
async fn sweep_oneway(
    server: &'static str,
    addr: &str,
    ser: SerializeType,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut conn = RawConn::connect(addr).await?;
    for (index, code) in sweep_codes(ser).into_iter().enumerate() {
        let mut cmd = request(code, ser, GARBAGE_FIELDS, &garbage_body(index));
        cmd.flag |= FLAG_ONEWAY;
        conn.send(cmd).await?;
    }
    let probe = conn
        .send(request(
            RequestCode::GetBrokerClusterInfo.code(),
            ser,
            &[],
            &[],
        ))
        .await?;
    let mut strays = Vec::new();
    if let Err(err) = conn.response_to(probe, ANSWER_TIMEOUT, &mut strays).await {
        problems.push(format!(
            "{server} {ser:?} oneway sweep: probe failed: {err:#}"
        ));
        return Ok(());
    }
    // Late answers to oneway requests would show up shortly after the probe's.
    let second = conn
        .send(request(
            RequestCode::GetBrokerClusterInfo.code(),
            ser,
            &[],
            &[],
        ))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(err) = conn.response_to(second, ANSWER_TIMEOUT, &mut strays).await {
        problems.push(format!(
            "{server} {ser:?} oneway sweep: second probe failed: {err:#}"
        ));
    }
    if !strays.is_empty() {
        problems.push(format!(
            "{server} {ser:?} oneway sweep: {} oneway requests were answered (opaques {strays:?})",
            strays.len()
        ));
    }
    Ok(())
}

/// Codes that cannot be served without header fields: an empty request (variant a) must not
/// be answered SUCCESS (PROTOCOL.md §2.2–2.5 "R" columns).
const NEEDS_HEADER: &[RequestCode] = &[
    RequestCode::SendMessage,
    RequestCode::SendMessageV2,
    RequestCode::SendBatchMessage,
    RequestCode::PullMessage,
    RequestCode::LitePullMessage,
    RequestCode::QueryConsumerOffset,
    RequestCode::UpdateConsumerOffset,
    RequestCode::GetMaxOffset,
    RequestCode::GetMinOffset,
    RequestCode::SearchOffsetByTimestamp,
    RequestCode::GetEarliestMsgStoretime,
    RequestCode::QueryMessage,
    RequestCode::ViewMessageById,
    RequestCode::UpdateAndCreateTopic,
    RequestCode::ConsumerSendMsgBack,
    RequestCode::PutKvConfig,
    RequestCode::GetKvConfig,
    RequestCode::RegisterBroker,
    RequestCode::GetRouteinfoByTopic,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_code_is_answered_in_every_serialize_type() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let broker = cluster.broker.addr.clone();
    let namesrv = cluster.namesrv.addr.clone();
    // A real topic with data, so that variant (c) reaches past the lookups.
    let mut setup = RawConn::connect(&broker).await?;
    for queue in 0..2 {
        let sent = setup
            .call(send_request(
                SerializeType::Json,
                HOSTILE_TOPIC,
                queue,
                b"seed",
            ))
            .await?;
        ensure!(
            sent.code == ResponseCode::Success,
            "seed send answered {}",
            sent.code
        );
    }

    let mut answers = Vec::new();
    let mut problems = Vec::new();
    let mut silent = Vec::new();
    for ser in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        sweep_server(
            "broker",
            &broker,
            ser,
            &mut answers,
            &mut problems,
            &mut silent,
        )
        .await?;
        sweep_server(
            "nameserver",
            &namesrv,
            ser,
            &mut answers,
            &mut problems,
            &mut silent,
        )
        .await?;
        sweep_oneway("broker", &broker, ser, &mut problems).await?;
        sweep_oneway("nameserver", &namesrv, ser, &mut problems).await?;
    }

    for answer in &answers {
        let known = RequestCode::try_from(answer.code).ok();
        if answer.variant == 'a'
            && answer.response == ResponseCode::Success
            && known.is_some_and(|c| NEEDS_HEADER.contains(&c))
        {
            problems.push(format!(
                "{} {:?} (a) {}: empty request answered SUCCESS",
                answer.server,
                answer.ser,
                code_name(answer.code)
            ));
        }
        if answer.variant == 'b'
            && answer.response == ResponseCode::Success
            && matches!(
                known,
                Some(
                    RequestCode::SendMessage
                        | RequestCode::SendMessageV2
                        | RequestCode::PullMessage
                        | RequestCode::LitePullMessage
                        | RequestCode::RegisterBroker
                )
            )
        {
            problems.push(format!(
                "{} {:?} (b) {}: garbage request answered SUCCESS",
                answer.server,
                answer.ser,
                code_name(answer.code)
            ));
        }
    }
    // A summary for the report: how each (server, code) was answered, variant by variant.
    let mut table: HashMap<(&str, i32), Vec<String>> = HashMap::new();
    for a in &answers {
        table
            .entry((a.server, a.code))
            .or_default()
            .push(format!("{:?}/{}={}", a.ser, a.variant, a.response));
    }
    let mut rows: Vec<_> = table.into_iter().collect();
    rows.sort();
    for ((server, code), cells) in &rows {
        println!("{server:10} {:45} {}", code_name(*code), cells.join(" "));
    }
    for a in answers
        .iter()
        .filter(|a| a.response == ResponseCode::SystemError)
    {
        println!(
            "SYSTEM_ERROR {} {:?} ({}) {}: {}",
            a.server,
            a.ser,
            a.variant,
            code_name(a.code),
            a.remark
        );
    }

    cluster.assert_healthy()?;
    for ser in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        send_and_pull(&broker, ser, format!("after the sweep {ser:?}").as_bytes()).await?;
    }
    let mut ns = RawConn::connect(&namesrv).await?;
    let info = ns
        .call(request(
            RequestCode::GetBrokerClusterInfo.code(),
            SerializeType::Json,
            &[],
            &[],
        ))
        .await?;
    ensure!(
        info.code == ResponseCode::Success,
        "cluster info answered {}",
        info.code
    );
    cluster.assert_healthy()?;
    ensure!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Raw TCP abuse
// ---------------------------------------------------------------------------------------

/// The pid of the process whose command line contains `needle` (an argument unique to it).
fn pid_with_arg(needle: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// The pid of the process listening on `addr` (`127.0.0.1:PORT`): the LISTEN socket's inode
/// from `/proc/net/tcp`, then the process holding a descriptor `socket:[inode]`.
fn pid_listening_on(addr: &str) -> Option<u32> {
    let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
    let port_hex = format!("{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode.
    let inode = table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local_port = cols.get(1)?.rsplit(':').next()?;
        if local_port == port_hex && *cols.get(3)? == "0A" {
            cols.get(9).map(|s| s.to_string())
        } else {
            None
        }
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Opens a connection, writes `bytes` (write errors are fine: the server may close first) and
/// checks the server closes the connection.
async fn abuse_is_closed(addr: &str, what: &str, bytes: &[u8], close_write: bool) -> Result<()> {
    let mut conn = RawConn::connect(addr).await?;
    let _ = timeout(ANSWER_TIMEOUT, conn.stream.write_all(bytes)).await;
    if close_write {
        let _ = conn.stream.shutdown().await;
    }
    ensure!(
        conn.closed_within(ANSWER_TIMEOUT).await,
        "{addr}: {what}: the server did not close the connection"
    );
    Ok(())
}

/// The bystander connection still answers.
async fn still_serves(conn: &mut RawConn, what: &str) -> Result<()> {
    let response = conn
        .call(request(9999, SerializeType::Json, &[], &[]))
        .await
        .with_context(|| format!("bystander after {what}"))?;
    ensure!(
        response.code == ResponseCode::RequestCodeNotSupported,
        "bystander after {what}: answered {}",
        response.code
    );
    Ok(())
}

fn raw_frame(length: i32, word: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + rest.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tcp_abuse_closes_only_the_offending_connection() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let broker_pid = pid_with_arg(&cluster.store_dir.display().to_string());
    let namesrv_pid = pid_listening_on(&cluster.namesrv.addr);
    let mut rss_before: HashMap<&str, (u32, u64)> = HashMap::new();
    for (server, pid) in [("broker", broker_pid), ("nameserver", namesrv_pid)] {
        if let Some(pid) = pid {
            if let Some(rss) = rss_kib(pid) {
                rss_before.insert(server, (pid, rss));
            }
        }
    }
    println!("pids and VmRSS (KiB) before: {rss_before:?}");
    ensure!(
        rss_before.len() == 2,
        "could not find both server pids in /proc: {rss_before:?}"
    );

    let valid = frame(&request(9999, SerializeType::Json, &[], &[]))?;
    let json_header = encode_header(&request(9999, SerializeType::Json, &[], &[]))?;
    let header_len = u32::try_from(json_header.len())?;
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let mut ten_mb = rng.bytes(10 * 1024 * 1024);
    // A first word that is a huge positive length, so the server must not wait for it.
    ten_mb[..4].copy_from_slice(&0x7FFF_0000_i32.to_be_bytes());

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "2 GiB length prefix",
            raw_frame(i32::MAX, header_len, &json_header),
            false,
        ),
        ("length 0x80000000", raw_frame(i32::MIN, 0, &[]), false),
        ("negative length -1", raw_frame(-1, 0, &[]), false),
        ("length below the header word", raw_frame(2, 0, &[]), false),
        (
            "16 MiB + 1 frame",
            raw_frame(16 * 1024 * 1024 - 3, header_len, &json_header),
            false,
        ),
        (
            "header length past the frame",
            raw_frame(4 + 10, 0x00FF_FFFF, &[b'{'; 10]),
            false,
        ),
        (
            "unknown serialize type 7",
            raw_frame(
                4 + json_header.len() as i32,
                (7 << 24) | header_len,
                &json_header,
            ),
            false,
        ),
        (
            "serialize type 0xFF",
            raw_frame(
                4 + json_header.len() as i32,
                0xFF00_0000 | header_len,
                &json_header,
            ),
            false,
        ),
        (
            "JSON header that is not JSON",
            raw_frame(4 + 5, 5, b"{{{{{"),
            false,
        ),
        (
            "JSON header that is an array",
            raw_frame(4 + 2, 2, b"[]"),
            false,
        ),
        (
            "binary header cut short",
            raw_frame(4 + 3, (1 << 24) | 3, &[0, 10, 0]),
            false,
        ),
        (
            "binary header with a huge remark length",
            raw_frame(
                4 + 17,
                (1 << 24) | 17,
                &[
                    0, 10, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF,
                ],
            ),
            false,
        ),
        (
            "MessagePack header of random bytes",
            raw_frame(4 + 64, (2 << 24) | 64, &rng.bytes(64)),
            false,
        ),
        (
            "frame cut in the middle, then closed",
            valid[..valid.len() / 2].to_vec(),
            true,
        ),
        ("10 MB of random bytes", ten_mb, false),
    ];

    for (server, addr) in [
        ("broker", cluster.broker.addr.clone()),
        ("nameserver", cluster.namesrv.addr.clone()),
    ] {
        let mut bystander = RawConn::connect(&addr).await?;
        still_serves(&mut bystander, "connecting").await?;
        for (what, bytes, close_write) in &cases {
            abuse_is_closed(&addr, what, bytes, *close_write)
                .await
                .with_context(|| format!("{server}: {what}"))?;
            still_serves(&mut bystander, what).await?;
        }

        // 200 half-open connections: some silent, some with a partial length prefix, some
        // declaring a 16 MiB frame and sending only a little of it; all dropped at once.
        let mut held = Vec::new();
        for i in 0..200u32 {
            let mut stream = TcpStream::connect(&addr).await?;
            match i % 3 {
                0 => {}
                1 => stream.write_all(&[0, 0]).await?,
                _ => {
                    let partial = raw_frame(16 * 1024 * 1024 - 8, header_len, &json_header);
                    stream.write_all(&partial).await?;
                }
            }
            held.push(stream);
        }
        still_serves(&mut bystander, "200 half-open connections").await?;
        if let Some(&(pid, before)) = rss_before.get(server) {
            let during = rss_kib(pid).context("VmRSS")?;
            println!("{server} VmRSS with 200 half-open connections: {during} KiB");
            ensure!(
                during < before + 256 * 1024,
                "{server} RSS grew from {before} KiB to {during} KiB with 200 half-open connections"
            );
        }
        drop(held);
        let mut fresh = RawConn::connect(&addr).await?;
        still_serves(&mut fresh, "dropping 200 half-open connections").await?;
        still_serves(&mut bystander, "dropping 200 half-open connections").await?;
    }

    for (server, &(pid, before)) in &rss_before {
        let after = rss_kib(pid).context("VmRSS")?;
        println!("{server} VmRSS after the abuse: {after} KiB (before {before} KiB)");
        ensure!(
            after < before + 128 * 1024,
            "{server} RSS grew from {before} KiB to {after} KiB"
        );
    }
    cluster.assert_healthy()?;
    send_and_pull(
        &cluster.broker.addr,
        SerializeType::Json,
        b"after the raw abuse",
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Send limits and topic names
// ---------------------------------------------------------------------------------------

/// A valid send on `conn` still succeeds after `what`.
async fn check_send(conn: &mut RawConn, ser: SerializeType, what: String) -> Result<()> {
    let ok = conn
        .call(send_request(ser, CHECK_TOPIC, 0, b"still fine"))
        .await
        .with_context(|| format!("{ser:?} send after {what}"))?;
    ensure!(
        ok.code == ResponseCode::Success,
        "{ser:?} send after {what}: answered {} {:?}",
        ok.code,
        ok.remark
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_limits_answer_message_illegal_and_bad_topics_are_refused() -> Result<()> {
    let mut cluster = Cluster::start(&["--max-message-size", "65536"])?;
    let broker = cluster.broker.addr.clone();
    for ser in [
        SerializeType::Json,
        SerializeType::RocketMq,
        SerializeType::MsgPack,
    ] {
        let mut conn = RawConn::connect(&broker).await?;
        // Body just over the limit, and exactly at it.
        let big = vec![b'x'; 70_000];
        let r = conn.call(send_request(ser, CHECK_TOPIC, 0, &big)).await?;
        ensure!(
            r.code == ResponseCode::MessageIllegal,
            "{ser:?} 70000-byte body answered {} {:?}",
            r.code,
            r.remark
        );
        check_send(&mut conn, ser, "the oversized body".into()).await?;
        // The limit counts the whole stored record in RocketMQ (`msgLen > maxMessageSize` in
        // the CommitLog append), so a body of exactly 65536 bytes is refused as well; one
        // well below it must pass.
        let below = vec![b'y'; 60_000];
        let r = conn.call(send_request(ser, CHECK_TOPIC, 0, &below)).await?;
        ensure!(
            r.code == ResponseCode::Success,
            "{ser:?} 60000-byte body answered {} {:?}",
            r.code,
            r.remark
        );

        // Property string over 32767 bytes.
        let mut cmd = send_request(ser, CHECK_TOPIC, 0, b"props");
        let long_value = "p".repeat(33_000);
        cmd.ext_fields
            .insert("properties".into(), format!("KEYS\u{1}{long_value}\u{2}"));
        let r = conn.call(cmd).await?;
        ensure!(
            r.code == ResponseCode::MessageIllegal,
            "{ser:?} 33 KB property string answered {} {:?}",
            r.code,
            r.remark
        );
        check_send(&mut conn, ser, "the long property string".into()).await?;

        // Topic names.
        let long_topic = "t".repeat(300);
        let topics: [(&str, ResponseCode); 8] = [
            ("", ResponseCode::InvalidParameter),
            ("   ", ResponseCode::InvalidParameter),
            ("a b", ResponseCode::InvalidParameter),
            ("a/b", ResponseCode::InvalidParameter),
            (&long_topic, ResponseCode::InvalidParameter),
            ("SCHEDULE_TOPIC_XXXX", ResponseCode::NoPermission),
            ("RMQ_SYS_TRANS_HALF_TOPIC", ResponseCode::NoPermission),
            ("TBW102", ResponseCode::Success),
        ];
        for (topic, expected) in topics {
            let r = conn
                .call(send_request(ser, topic, -1, b"topic check"))
                .await?;
            let shown: String = topic.chars().take(24).collect();
            // An empty value does not survive the binary header (Java decodes it as null),
            // so the header itself is incomplete there: any refusal is right.
            let binary_empty = ser == SerializeType::RocketMq && topic.is_empty();
            if binary_empty {
                ensure!(
                    r.code != ResponseCode::Success,
                    "{ser:?} empty topic accepted"
                );
            } else {
                ensure!(
                    r.code == expected,
                    "{ser:?} topic {shown:?} (len {}) answered {} {:?}, expected {expected}",
                    topic.len(),
                    r.code,
                    r.remark
                );
            }
            check_send(&mut conn, ser, format!("topic {shown:?}")).await?;
        }
        // A queue id beyond the topic's queues.
        let r = conn
            .call(send_request(ser, CHECK_TOPIC, 4096, b"queue"))
            .await?;
        ensure!(
            r.code == ResponseCode::InvalidParameter,
            "{ser:?} queueId 4096 answered {} {:?}",
            r.code,
            r.remark
        );
        check_send(&mut conn, ser, "queueId 4096".into()).await?;
    }
    cluster.assert_healthy()?;
    send_and_pull(&broker, SerializeType::Json, b"after the limits").await?;
    Ok(())
}
