//! `tern-nameserver`: command-line entry point. Loads the configuration (defaults, then
//! `--config FILE`, then flags), binds the listener, prints `listening on IP:PORT` to stdout
//! (and logs it once), and serves until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tern_common::runtime;
use tern_nameserver::{NameServerConfig, RawNameServerConfig};
use tokio::net::TcpListener;
use tracing::info;

/// mimalloc instead of glibc's malloc: every request allocates and frees many small buffers,
/// and glibc's `malloc`/`free` were 15–25 % of the CPU of a publish run (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tern NameServer: the route registry that brokers register with and clients query.
#[derive(Debug, Parser)]
#[command(name = "tern-nameserver", version, about)]
struct Args {
    /// TOML configuration file (see deploy/nameserver.toml); flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, IP:PORT (port 0 picks a free port). Default 0.0.0.0:9876.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Milliseconds without registration or heartbeat before a broker is removed.
    #[arg(long, value_name = "MS")]
    broker_expiry_ms: Option<u64>,
    /// Milliseconds between liveness scans.
    #[arg(long, value_name = "MS")]
    scan_interval_ms: Option<u64>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off unless set).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Persist the KV store to this file (Java's kvConfig.json format); memory only unless set.
    #[arg(long, value_name = "FILE")]
    kv_config_path: Option<String>,
}

fn load_config(args: &Args) -> Result<NameServerConfig> {
    let mut raw = match &args.config {
        Some(path) => RawNameServerConfig::load(path)
            .with_context(|| format!("loading {}", path.display()))?,
        None => RawNameServerConfig::default(),
    };
    if let Some(listen) = &args.listen {
        raw.listen.clone_from(listen);
    }
    if let Some(ms) = args.broker_expiry_ms {
        raw.broker_expiry_ms = ms;
    }
    if let Some(ms) = args.scan_interval_ms {
        raw.scan_interval_ms = ms;
    }
    if let Some(addr) = &args.metrics_listen {
        raw.metrics_listen = Some(addr.clone());
    }
    if let Some(path) = &args.kv_config_path {
        raw.kv_config_path = Some(path.clone());
    }
    NameServerConfig::try_from(raw).context("invalid configuration")
}

#[tokio::main]
async fn main() -> Result<()> {
    runtime::init_logging("info");
    let args = Args::parse();
    let config = load_config(&args)?;
    let state =
        tern_nameserver::NameServer::open(config.clone()).context("loading the kv config")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = runtime::shutdown_signal().context("installing the signal handlers")?;
    info!(
        broker_expiry_ms = config.broker_expiry.as_millis() as u64,
        scan_interval_ms = config.scan_interval.as_millis() as u64,
        "nameserver listening on {addr}"
    );
    runtime::announce_listening(addr).context("writing to stdout")?;
    tern_nameserver::run_with_state(std::sync::Arc::new(state), listener, shutdown).await;
    Ok(())
}
