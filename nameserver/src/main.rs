//! `tern-nameserver`: command-line entry point. Loads the configuration (defaults, then
//! `--config FILE`, then flags), binds the listener, prints `listening on IP:PORT` to stdout
//! (and logs it once), and serves until SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tern_nameserver::{NameServerConfig, RawNameServerConfig};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

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
    NameServerConfig::try_from(raw).context("invalid configuration")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("received SIGINT, shutting down"),
        _ = term => info!("received SIGTERM, shutting down"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = load_config(&args)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    info!(
        broker_expiry_ms = config.broker_expiry.as_millis() as u64,
        scan_interval_ms = config.scan_interval.as_millis() as u64,
        "nameserver listening on {addr}"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tern_nameserver::run(config, listener, shutdown_signal()).await;
    Ok(())
}
