//! `tern-nameserver`: the stateless route registry of a Tern cluster.
//!
//! Brokers register their topics with every NameServer (REGISTER_BROKER every 30 s and after
//! each topic change); producers and consumers ask any NameServer for a topic's route
//! (GET_ROUTEINFO_BY_TOPIC) and then talk to the brokers directly. NameServers do not talk to
//! each other and keep no routes on disk: after a restart the brokers' next registrations
//! rebuild the table. Only the KV store can be persisted (`kv_config_path`, Java's
//! `kvConfig.json`). A broker that stops registering, or whose connection closes, disappears from
//! every route. It speaks RocketMQ's remoting protocol on port 9876, so RocketMQ brokers,
//! clients and `mqadmin` can use it as well (PROTOCOL.md §2.2, §9).
//!
//! It is not a broker, stores no messages and has no replication of its own.
//!
//! # Layout
//! - [`config`]: two-stage configuration (raw TOML → validated [`NameServerConfig`]).
//! - [`route_table`]: cluster, broker, topic-queue and broker-live tables; registration, expiry, routes.
//! - [`kv_config`]: the namespace → key → value store (`ORDER_TOPIC_CONFIG` feeds `orderTopicConf`).
//! - [`metrics`]: Prometheus metrics over HTTP (`metrics_listen`), request instrumentation.
//! - [`processor`]: the request dispatcher ([`NameServer`], [`NameServerHandler`]) and [`ProcessorError`].
//! - [`validate`]: REGISTER_BROKER input checks (refused identities, dropped topic configs).
//!
//! [`run`] serves a bound listener until a shutdown future resolves; it also runs the
//! liveness scan, which removes silent brokers every `scan_interval`.

pub mod config;
pub mod kv_config;
pub mod metrics;
pub mod processor;
pub mod route_table;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_common::remoting::{server, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

pub use config::{ConfigError, NameServerConfig, RawNameServerConfig};
pub use kv_config::KvConfigError;
pub use processor::{NameServer, NameServerHandler, ProcessorError};

/// Serves NameServer requests on `listener` until `shutdown` resolves, then stops accepting,
/// closes every connection and stops the liveness scan before returning. The listener must
/// already be bound (so callers can bind port 0 and learn the port first); `config.listen` is
/// not used here.
///
/// # Errors
/// The KV file (`config.kv_config_path`) exists but cannot be loaded; nothing is served.
pub async fn run(
    config: NameServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KvConfigError> {
    let state = Arc::new(NameServer::open(config)?);
    run_with_state(state, listener, shutdown).await;
    Ok(())
}

/// As [`run`], over existing state (for tests that inspect the tables while serving).
pub async fn run_with_state(
    state: Arc<NameServer>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let config = state.config().clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let scan = tokio::spawn(liveness_scan(
        Arc::clone(&state),
        config.scan_interval,
        stop_rx,
    ));
    let server_config = ServerConfig {
        max_connections: config.max_connections,
        max_frame_len: config.max_frame_len,
        idle_timeout: config.idle_timeout,
        ..ServerConfig::default()
    };
    let metrics = Arc::new(metrics::NameServerMetrics::new());
    if let Some(addr) = config.metrics_listen {
        let mut stop = stop_tx.subscribe();
        let serve_state = Arc::clone(&state);
        tokio::spawn(metrics::serve(
            addr,
            Arc::clone(&metrics),
            serve_state,
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        ));
    }
    let handler = Arc::new(metrics::Instrumented::new(
        NameServerHandler::new(state),
        metrics,
    ));
    server::run(listener, handler, server_config, shutdown).await;
    // The receiver only disappears if the scan task already ended, which is fine.
    let _ = stop_tx.send(true);
    if let Err(err) = scan.await {
        debug!(cause = %err, "liveness scan task ended abnormally");
    }
    info!("nameserver stopped");
}

/// Every `interval`, removes brokers whose last update is older than their timeout, until
/// `stop` turns true.
async fn liveness_scan(
    state: Arc<NameServer>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let gone = state.routes().scan_expired(Instant::now());
                if !gone.is_empty() {
                    info!(removed = gone.len(), "liveness scan removed expired brokers");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
