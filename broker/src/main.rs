//! `tern-broker`: starts a Tern broker.
//!
//! Configuration: the embedded default (`deploy/broker.toml`), then `--config FILE`, then the
//! flags below. Prints exactly `listening on HOST:PORT` to stdout once the listener is bound
//! (tests read it), and stops cleanly on SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tern_broker::config::{BrokerConfig, RawBrokerConfig, EMBEDDED_DEFAULT_TOML};
use tern_common::runtime;
use tracing::info;

/// mimalloc instead of glibc's malloc: every request allocates and frees many small buffers,
/// and glibc's `malloc`/`free` were 15–25 % of the CPU of a publish run (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A RocketMQ-compatible message broker.
#[derive(Debug, Parser)]
#[command(name = "tern-broker", version, about)]
struct Args {
    /// TOML configuration file (keys of deploy/broker.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT (port 0 = any free port).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// NameServer addresses, `;`-separated.
    #[arg(short = 'n', long = "namesrv", value_name = "ADDR[;ADDR]")]
    namesrv: Option<String>,
    /// Store root directory.
    #[arg(long, value_name = "DIR")]
    store_dir: Option<String>,
    /// Broker name.
    #[arg(long, value_name = "NAME")]
    broker_name: Option<String>,
    /// Advertised IP (STOREHOST, message ids, registration).
    #[arg(long, value_name = "IP")]
    broker_ip: Option<String>,
    /// Cluster name.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// ASYNC_FLUSH or SYNC_FLUSH.
    #[arg(long, value_name = "TYPE")]
    flush_disk_type: Option<String>,
    /// Create unknown topics on send through TBW102.
    #[arg(long, value_name = "BOOL")]
    auto_create_topic: Option<bool>,
    /// CommitLog file size in bytes.
    #[arg(long, value_name = "BYTES")]
    mapped_file_size_commit_log: Option<u64>,
    /// Largest message body in bytes.
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<u64>,
    /// 20-byte units per ConsumeQueue file.
    #[arg(long, value_name = "N")]
    consume_queue_units_per_file: Option<u64>,
    /// Hash slots per IndexFile (4 bytes each).
    #[arg(long, value_name = "N")]
    max_hash_slot_num: Option<u64>,
    /// Entries per IndexFile (20 bytes each).
    #[arg(long, value_name = "N")]
    max_index_num: Option<u64>,
    /// Used fraction of the store's file system above which the oldest CommitLog files are
    /// deleted at once (0.1 to 0.95).
    #[arg(long, value_name = "RATIO")]
    disk_max_used_space_ratio: Option<f64>,
    /// Delay-level table, e.g. "1s 2s 3s".
    #[arg(long, value_name = "LEVELS")]
    message_delay_level: Option<String>,
    /// Age below which a half message is not checked back, ms.
    #[arg(long, value_name = "MS")]
    transaction_timeout_ms: Option<u64>,
    /// Interval between transaction check-back passes, ms.
    #[arg(long, value_name = "MS")]
    transaction_check_interval_ms: Option<u64>,
    /// Check-backs after which a half message is discarded.
    #[arg(long, value_name = "N")]
    transaction_check_max: Option<i32>,
    /// Consumer offset snapshot interval, ms.
    #[arg(long, value_name = "MS")]
    offset_persist_interval_ms: Option<u64>,
    /// Client channel expiry, ms.
    #[arg(long, value_name = "MS")]
    channel_expired_timeout_ms: Option<u64>,
    /// Long polling on/off.
    #[arg(long, value_name = "BOOL")]
    long_polling: Option<bool>,
    /// Most held pulls per topic@queue.
    #[arg(long, value_name = "N")]
    max_suspended_pulls_per_queue: Option<usize>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off unless set).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Also listen on listen port - 2 (RocketMQ's VIP port); default on for a fixed port.
    #[arg(long, value_name = "BOOL")]
    fast_listen_port_enable: Option<bool>,
    /// Async runtime worker threads (0: one less than the CPUs, at least 1).
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
}

impl Args {
    fn apply(self, raw: &mut RawBrokerConfig) {
        macro_rules! set {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $(if let Some(v) = self.$flag { raw.$field = v; })*
            };
        }
        set! {
            listen => listen, namesrv => namesrv_addr, store_dir => store_path_root_dir,
            broker_name => broker_name, cluster => broker_cluster_name,
            flush_disk_type => flush_disk_type, auto_create_topic => auto_create_topic_enable,
            mapped_file_size_commit_log => mapped_file_size_commit_log,
            max_message_size => max_message_size, message_delay_level => message_delay_level,
            consume_queue_units_per_file => consume_queue_units_per_file,
            max_hash_slot_num => max_hash_slot_num, max_index_num => max_index_num,
            disk_max_used_space_ratio => disk_max_used_space_ratio,
            transaction_timeout_ms => transaction_timeout_ms,
            transaction_check_interval_ms => transaction_check_interval_ms,
            transaction_check_max => transaction_check_max,
            offset_persist_interval_ms => offset_persist_interval_ms,
            channel_expired_timeout_ms => channel_expired_timeout_ms,
            long_polling => long_polling_enable,
            max_suspended_pulls_per_queue => max_suspended_pulls_per_queue,
            worker_threads => worker_threads,
        }
        if self.broker_ip.is_some() {
            raw.broker_ip = self.broker_ip;
        }
        if self.metrics_listen.is_some() {
            raw.metrics_listen = self.metrics_listen;
        }
        if self.fast_listen_port_enable.is_some() {
            raw.fast_listen_port_enable = self.fast_listen_port_enable;
        }
    }
}

fn main() -> Result<()> {
    runtime::init_logging("info");
    let args = Args::parse();
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?,
        None => EMBEDDED_DEFAULT_TOML.to_string(),
    };
    let mut raw = RawBrokerConfig::from_toml(&text).context("parsing the configuration")?;
    args.apply(&mut raw);
    let config = BrokerConfig::try_from(raw).context("validating the configuration")?;
    // Built here rather than by `#[tokio::main]` because its size is configured.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(config))
}

async fn serve(config: BrokerConfig) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let shutdown = runtime::shutdown_signal().context("installing the signal handlers")?;
    info!(
        worker_threads = config.worker_threads,
        "listening on {local}"
    );
    runtime::announce_listening(local).context("writing to stdout")?;
    tern_broker::run(config, listener, shutdown)
        .await
        .context("running the broker")?;
    Ok(())
}
