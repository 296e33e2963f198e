//! Test harness for Tern's integration tests: starts real `tern-nameserver` and `tern-broker`
//! processes on 127.0.0.1 with port 0 and temporary directories, learns their bound addresses
//! from the `listening on HOST:PORT` line they print, keeps each process's output in a log file
//! and kills the processes when the handles drop.
//!
//! The binaries are built once per test process with `cargo build --bins` (a no-op when they are
//! fresh), so `cargo nextest run --workspace` alone is enough to run every test.
//!
//! # Layout
//! - [`bin_path`]: locates (and builds on first use) a workspace binary.
//! - [`TernProcess`]: one running server process with its address and log.
//! - [`start_nameserver`], [`start_broker`]: the two roles with test-friendly defaults.
//! - [`Cluster`]: one NameServer and one broker in a fresh temporary directory.
//! - [`wait_for_cluster`], [`create_topic`]: a registered broker's cluster; a routable topic.
//! - [`read_topic`]: every message of a topic read back from offset 0.
//! - [`eventually`]: bounded polling.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tern_client::consumer::PullStatus;
use tern_client::{Admin, PullConsumer};

/// How long a process may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The path of workspace binary `name` (`tern-nameserver`, `tern-broker`, `tern`), built with
/// `cargo build --bins` the first time any binary is asked for in this process.
///
/// # Panics
/// If the build fails: every integration test needs the binaries.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "tern-nameserver",
                "-p",
                "tern-broker",
            ])
            .args(["-p", "tern-cli"])
            .status()
            .expect("running cargo build for the integration-test binaries");
        assert!(status.success(), "cargo build of the Tern binaries failed");
    });
    target_dir().join("debug").join(name)
}

/// One running Tern server process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct TernProcess {
    /// Name for messages (`nameserver`, `broker`).
    pub role: String,
    /// The bound address, `127.0.0.1:PORT`, read from the process's `listening on` line.
    pub addr: String,
    /// Where stdout and stderr of the process are kept.
    pub log_path: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl TernProcess {
    /// Starts `program` with `args`, logging to `log_path`, and waits for its `listening on` line.
    ///
    /// # Errors
    /// If the process cannot start, exits early, or prints no address within a minute.
    pub fn spawn(
        role: &str,
        program: PathBuf,
        args: Vec<String>,
        log_path: PathBuf,
    ) -> Result<Self> {
        let mut process = TernProcess {
            role: role.to_string(),
            addr: String::new(),
            log_path,
            program,
            args,
            child: None,
        };
        process.start()?;
        Ok(process)
    }

    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone()?))
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        let mut log_out = log;
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_out, "{line}");
                if !sent {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => {
                // A restart keeps the port, as a real deployment would.
                for arg in &mut self.args {
                    if arg == "127.0.0.1:0" {
                        *arg = addr.clone();
                    }
                }
                self.addr = addr;
                Ok(())
            }
            Err(_) => {
                self.kill();
                bail!(
                    "{} printed no `listening on` line; log:\n{}",
                    self.role,
                    self.log_tail(40)
                )
            }
        }
    }

    /// Sends SIGKILL and waits for the process (a crash, as `kill -9`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to 20 s for a clean exit (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid we own; no memory is touched.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments and the same port (after
    /// [`kill`](Self::kill) or [`stop`](Self::stop)).
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.start()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The last `lines` lines of the process log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole process log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TernProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `tern-nameserver --listen 127.0.0.1:0` plus `extra_args`, logging into `dir`.
///
/// # Errors
/// As [`TernProcess::spawn`].
pub fn start_nameserver(dir: &Path, extra_args: &[&str]) -> Result<TernProcess> {
    let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    TernProcess::spawn(
        "nameserver",
        bin_path("tern-nameserver"),
        args,
        dir.join("nameserver.log"),
    )
}

/// Store settings every test broker gets unless its caller passes the flag itself: 64 MiB
/// CommitLog files (instead of 1 GiB), 1 MB ConsumeQueue files (instead of 6 MB per queue)
/// and a 4_200_040-byte IndexFile (instead of ~420 MB), all preallocated in full, so many
/// parallel brokers fit on a small disk (a fresh broker with one topic takes about 70 MB) and
/// crash recovery, which reads the last CommitLog file, stays fast in debug builds. The
/// broker's default `max_message_size` (4 MiB) stays below the smaller CommitLog file.
/// Space-based retention starts at 95 % disk use instead of 75 %: the machine's disk is shared
/// with builds, and a test broker must not delete its own CommitLog because of them.
pub const SMALL_STORE_ARGS: [(&str, &str); 5] = [
    ("--mapped-file-size-commit-log", "67108864"),
    ("--consume-queue-units-per-file", "50000"),
    ("--max-hash-slot-num", "50000"),
    ("--max-index-num", "200000"),
    ("--disk-max-used-space-ratio", "0.95"),
];

/// Starts `tern-broker --listen 127.0.0.1:0 -n <namesrv> --store-dir <store_dir>` plus
/// [`SMALL_STORE_ARGS`] (each unless `extra_args` sets that flag) plus `extra_args`, logging
/// into `store_dir/../<name>.log`.
///
/// # Errors
/// As [`TernProcess::spawn`].
pub fn start_broker(namesrv: &str, store_dir: &Path, extra_args: &[&str]) -> Result<TernProcess> {
    std::fs::create_dir_all(store_dir)?;
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "-n".to_string(),
        namesrv.to_string(),
        "--store-dir".to_string(),
        store_dir.display().to_string(),
    ];
    for (flag, value) in SMALL_STORE_ARGS {
        let given = extra_args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !given {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
    args.extend(extra_args.iter().map(|s| s.to_string()));
    let log = store_dir.with_extension("log");
    TernProcess::spawn("broker", bin_path("tern-broker"), args, log)
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
///
/// # Errors
/// When the time runs out, with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One NameServer and one broker (store in `broker-a` under the same fresh temporary
/// directory, removed when the value drops).
#[derive(Debug)]
pub struct Cluster {
    /// The temporary directory holding the NameServer's log and the broker's store.
    pub dir: tempfile::TempDir,
    /// The broker's store directory (`<dir>/broker-a`).
    pub store_dir: PathBuf,
    /// The NameServer.
    pub namesrv: TernProcess,
    /// The broker, registered with [`namesrv`](Self::namesrv).
    pub broker: TernProcess,
}

impl Cluster {
    /// Starts a NameServer, then a broker with `broker_args` registered with it.
    ///
    /// # Errors
    /// A process does not start or prints no address.
    pub fn start(broker_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let namesrv = start_nameserver(dir.path(), &[])?;
        let store_dir = dir.path().join("broker-a");
        let broker = start_broker(&namesrv.addr, &store_dir, broker_args)?;
        Ok(Cluster {
            dir,
            store_dir,
            namesrv,
            broker,
        })
    }

    /// The NameServer's `IP:PORT`.
    pub fn namesrv_addr(&self) -> String {
        self.namesrv.addr.clone()
    }
}

/// Waits (at most `within`) until a broker has registered with `admin`'s NameServers and
/// returns the name of its cluster.
///
/// # Errors
/// No broker registered in time.
pub async fn wait_for_cluster(admin: &Admin, within: Duration) -> Result<String> {
    eventually("broker registration", within, || {
        let admin = admin.clone();
        async move {
            let info = admin.cluster_info().await.ok()?;
            info.cluster_addr_table.keys().next().cloned()
        }
    })
    .await
}

/// Creates `topic` with `queues` read/write queues on the registered broker's cluster of the
/// NameServer `namesrv` (waiting up to 20 s for the registration) and waits up to 10 s for
/// the topic's route.
///
/// # Errors
/// No broker registered; the creation failed; no route in time.
pub async fn create_topic(namesrv: &str, topic: &str, queues: i32) -> Result<()> {
    let admin = Admin::builder().namesrv_addr(namesrv).build().await?;
    let cluster = wait_for_cluster(&admin, Duration::from_secs(20)).await?;
    admin.create_topic(&cluster, topic, queues).await?;
    eventually("topic route", Duration::from_secs(10), || {
        let admin = admin.clone();
        async move { admin.topic_route(topic).await.ok() }
    })
    .await?;
    admin.shutdown().await;
    Ok(())
}

/// Reads every queue of `topic` from offset 0 with a pull consumer of `group` and returns each
/// message's id ([`unique_id`](tern_common::message::MessageExt::unique_id)) with its number of
/// copies. Bounded: at most 100,000 pulls per queue, each of which advances the offset or
/// ends the queue.
///
/// # Errors
/// The consumer does not start; the topic has no route; a pull fails.
pub async fn read_topic(
    namesrv: &str,
    group: &str,
    topic: &str,
) -> Result<std::collections::HashMap<String, usize>> {
    let consumer = PullConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .build()?;
    consumer.start().await?;
    let result = async {
        let mut seen = std::collections::HashMap::new();
        for mq in consumer.fetch_queues(topic).await? {
            let mut offset = 0;
            for _ in 0..100_000 {
                let r = consumer.pull(&mq, offset, 32).await?;
                match r.status {
                    PullStatus::Found => {
                        for m in &r.messages {
                            *seen.entry(m.unique_id().to_string()).or_insert(0) += 1;
                        }
                    }
                    PullStatus::OffsetIllegal if r.next_begin_offset > offset => {}
                    _ => break,
                }
                if r.next_begin_offset <= offset {
                    break;
                }
                offset = r.next_begin_offset;
            }
        }
        Ok(seen)
    }
    .await;
    consumer.shutdown().await;
    result
}

/// Sends one request frame with a JSON header (serialize type 0, `language` JAVA, version
/// 401) carrying `ext_fields`, over a fresh blocking connection to `addr`, and returns the
/// response code. Written by hand, as a third-party client would, so that the compatibility
/// tests do not depend on Tern's own codec.
///
/// # Errors
/// Connection or I/O failures (3 s timeouts), a response frame outside 4 B..16 MiB, or a
/// response header that is not JSON with a numeric `code`.
pub fn raw_json_request_code(addr: &str, code: i32, ext_fields: &serde_json::Value) -> Result<i64> {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.set_write_timeout(Some(Duration::from_secs(3)))?;
    let header = serde_json::json!({
        "code": code, "language": "JAVA", "version": 401, "opaque": 1, "flag": 0,
        "extFields": ext_fields,
    })
    .to_string();
    let header_len = u32::try_from(header.len())?;
    let mut frame = Vec::with_capacity(8 + header.len());
    frame.extend_from_slice(&(4 + header_len).to_be_bytes());
    frame.extend_from_slice(&header_len.to_be_bytes());
    frame.extend_from_slice(header.as_bytes());
    stream.write_all(&frame)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let total = u32::from_be_bytes(len) as usize;
    if !(4..=16 * 1024 * 1024).contains(&total) {
        bail!("response frame length {total} out of range");
    }
    let mut rest = vec![0u8; total];
    stream.read_exact(&mut rest)?;
    let header_len =
        (u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) & 0x00FF_FFFF) as usize;
    let header = rest
        .get(4..4 + header_len)
        .context("response header length past the frame")?;
    let value: serde_json::Value =
        serde_json::from_slice(header).context("response header is not JSON")?;
    value
        .get("code")
        .and_then(|c| c.as_i64())
        .context("response header has no code")
}

/// Waits (blocking, polling every 100 ms for at most `within`) until
/// GET_ROUTEINFO_BY_TOPIC(TBW102) succeeds on the NameServer `namesrv`, i.e. a broker with
/// auto-creation has registered.
///
/// # Errors
/// When the time runs out, with the last answer or error.
pub fn wait_for_broker_registration_blocking(namesrv: &str, within: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let last =
            match raw_json_request_code(namesrv, 105, &serde_json::json!({ "topic": "TBW102" })) {
                Ok(0) => return Ok(()),
                Ok(code) => format!("response code {code}"),
                Err(e) => format!("{e:#}"),
            };
        if std::time::Instant::now() >= deadline {
            bail!("TBW102 route not on the NameServer after {within:?} (last: {last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A name unique to this test run, valid as a RocketMQ topic or group (`[A-Za-z0-9_-]`):
/// `<prefix>_<pid>_<nanoseconds mod 10^12>`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// What a third-party client program run by [`run_client_program`] did.
#[derive(Debug)]
pub struct ClientRun {
    /// Exit status 0 and a final JSON summary line with `"ok": true`.
    pub success: bool,
    /// The exit status, or `killed after …` when the timeout ended it.
    pub status: String,
    /// Everything the program printed on stdout.
    pub stdout: String,
    /// Everything the program printed on stderr.
    pub stderr: String,
    /// The last stdout line that parses as a JSON object, if any.
    pub summary: Option<serde_json::Value>,
}

/// Runs `command` (stdin closed, stdout and stderr captured), killing it after `timeout`, and
/// reads its last JSON line as the summary. The compatibility programs (ali-ons scripts, the
/// rocketmq-client-rust program) all report this way.
///
/// # Errors
/// When the program cannot be started or waited for.
pub fn run_client_program(mut command: Command, timeout: Duration) -> Result<ClientRun> {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let mut out = child.stdout.take().context("program stdout")?;
    let mut err = child.stderr.take().context("program stderr")?;
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let ok_flag = summary
        .as_ref()
        .and_then(|s| s.get("ok"))
        .and_then(|v| v.as_bool())
        == Some(true);
    let (success, status) = match status {
        Some(s) => (s.success() && ok_flag, s.to_string()),
        None => (false, format!("killed after {timeout:?}")),
    };
    Ok(ClientRun {
        success,
        status,
        stdout,
        stderr,
        summary,
    })
}

/// The last `lines` lines of `text`.
pub fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
