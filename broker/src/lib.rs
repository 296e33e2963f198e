//! `tern-broker`: a RocketMQ-compatible broker — the message store plus the remoting request
//! processors that serve producers, consumers and admin tools.
//!
//! [`run`] opens the store (running recovery), loads the metadata tables from
//! `<store>/config/`, starts the background tasks, serves the remoting protocol until the
//! shutdown future resolves, then stops the tasks, persists the tables, unregisters from the
//! NameServers and shuts the store down cleanly. Layering (STYLE.md §1): transport
//! (`tern_common::remoting`) → [`dispatch`] → [`processor`] →
//! domain services → [`store`].
//!
//! # Listeners
//!
//! The main listener is the one passed to [`run`]. With `fast_listen_port_enable` (on by
//! default for a fixed listen port) a second listener on `listen port - 2` — RocketMQ's
//! "fast"/VIP port, where Java clients older than 4.5 send with `vipChannelEnabled` — serves
//! the same handler, pulls included (PROTOCOL.md §9.1). Failing to bind it is a warning, not
//! fatal. Both stop together: the shutdown future answers parked pulls, then stops the VIP
//! listener, while the main one stops.
//!
//! # Layout
//! - [`config`]: two-stage configuration (`RawBrokerConfig` from TOML → validated `BrokerConfig`).
//! - [`context`]: `BrokerContext`, the cheap-to-clone bundle of services.
//! - [`dispatch`]: the `RequestHandler`: request code → processor, errors → response codes.
//! - [`processor`]: one function per request code (send, pull, offsets, clients, query, admin).
//! - [`filter`]: SQL92 subscriptions: compiled-expression cache and record matching.
//! - [`long_polling`]: parked pulls woken by arrivals, a periodic check and their hold time.
//! - [`topic_config`]: the topic table (system topics, auto-creation, data version).
//! - [`subscription_group`]: consumer group configurations.
//! - [`consumer_offset`]: committed consumer offsets, snapshotted every 5 s.
//! - [`client_manager`]: producers and consumers known from heartbeats.
//! - [`lock_manager`]: orderly-consumption queue locks.
//! - [`metrics`]: Prometheus metrics over HTTP (`metrics_listen`), request instrumentation.
//! - [`namesrv_registration`]: REGISTER_BROKER / UNREGISTER_BROKER towards the NameServers.
//! - [`transaction`]: END_TRANSACTION and transaction check-back.
//! - [`schedule`]: delay levels, timer messages and CONSUMER_SEND_MSG_BACK.
//! - [`stats`]: runtime counters.
//! - [`store`]: the CommitLog, ConsumeQueues, IndexFiles, flushing, recovery and retention.

pub mod client_manager;
pub mod config;
pub mod consumer_offset;
pub mod context;
pub mod dispatch;
pub mod error;
pub mod filter;
pub mod lock_manager;
pub mod long_polling;
pub mod metrics;
pub mod namesrv_registration;
pub mod processor;
pub mod schedule;
mod snapshot;
pub mod stats;
pub mod store;
pub mod subscription_group;
pub mod topic_config;
pub mod transaction;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tern_common::protocol::SerializeType;
use tern_common::remoting::{ClientConfig, RemotingClient, ServerConfig};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client_manager::ClientRegistry;
use crate::config::BrokerConfig;
use crate::consumer_offset::ConsumerOffsetTable;
use crate::context::BrokerContext;
use crate::dispatch::BrokerHandler;
use crate::lock_manager::QueueLockTable;
use crate::long_polling::PullRequestHold;
use crate::namesrv_registration::NamesrvRegistration;
use crate::stats::BrokerStats;
use crate::store::MessageStore;
use crate::subscription_group::SubscriptionGroupTable;
use crate::topic_config::TopicConfigTable;

/// Why the broker could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The store could not be opened or recovered.
    #[error("opening the store failed: {0}")]
    Store(#[from] store::StoreError),
    /// A metadata table or the listener failed.
    #[error("broker I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Capacity of the arrival-event channel from the store's reput thread to long polling; when
/// full, events are dropped and the periodic check wakes the pulls instead.
const ARRIVAL_CHANNEL_CAPACITY: usize = 65_536;
/// How often held pulls are checked for their hold time.
const HOLD_TIMEOUT_CHECK: Duration = Duration::from_millis(200);
/// How often held pulls are checked against the queues' max offsets (long polling).
const HOLD_OFFSET_CHECK: Duration = Duration::from_secs(5);
/// Blocks until the store has dispatched everything appended before it opened. Gives up with a
/// warning once dispatch makes no progress for [`DISPATCH_STALL_LIMIT`] (a record it cannot
/// decode), so a damaged store still starts and serves what it can.
fn wait_for_dispatch(store: &MessageStore) {
    let target = store.max_phy_offset();
    let started = std::time::Instant::now();
    let mut last = store.dispatched_phy_offset();
    let mut last_progress = std::time::Instant::now();
    while !store.wait_dispatched(target, Duration::from_millis(500)) {
        let now = store.dispatched_phy_offset();
        if now > last {
            last = now;
            last_progress = std::time::Instant::now();
        } else if last_progress.elapsed() >= DISPATCH_STALL_LIMIT {
            warn!(
                dispatched = now,
                target, "dispatch stalled at startup; serving without waiting for it"
            );
            return;
        }
    }
    if started.elapsed() >= Duration::from_millis(100) {
        info!(
            target,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "dispatch caught up with the commit log"
        );
    }
}

/// How long startup waits for a dispatch that makes no progress.
const DISPATCH_STALL_LIMIT: Duration = Duration::from_secs(30);

/// How often client channels are checked for expiry.
const CLIENT_EXPIRY_SCAN: Duration = Duration::from_secs(10);
/// Bound of the UNREGISTER_BROKER calls on shutdown.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(3);

/// One arrival event as forwarded from the store.
type Arrival = (String, i32, i64, i64);

fn store_config(config: &BrokerConfig) -> store::StoreConfig {
    let mut cfg = store::StoreConfig::new(config.store_path_root_dir.clone());
    cfg.mapped_file_size_commit_log =
        usize::try_from(config.mapped_file_size_commit_log).unwrap_or(usize::MAX);
    cfg.consume_queue_units_per_file =
        usize::try_from(config.consume_queue_units_per_file).unwrap_or(usize::MAX);
    cfg.max_hash_slot_num = usize::try_from(config.max_hash_slot_num).unwrap_or(usize::MAX);
    cfg.max_index_num = usize::try_from(config.max_index_num).unwrap_or(usize::MAX);
    cfg.flush_disk_type = match config.flush_disk_type {
        config::FlushDiskType::AsyncFlush => store::FlushDiskType::AsyncFlush,
        config::FlushDiskType::SyncFlush => store::FlushDiskType::SyncFlush,
    };
    cfg.flush_interval_commit_log = config.flush_interval_commit_log;
    cfg.sync_flush_timeout = config.sync_flush_timeout;
    cfg.max_message_size = usize::try_from(config.max_message_size).unwrap_or(usize::MAX);
    cfg.file_reserved_hours = config.file_reserved_hours;
    cfg.delete_when = config.delete_when.clone();
    cfg.disk_max_used_space_ratio = config.disk_max_used_space_ratio;
    cfg.check_crc_on_recover = config.check_crc_on_recover;
    cfg.delay_level_table = config.message_delay_level.clone();
    cfg
}

/// Runs a broker on `listener` until `shutdown` resolves.
///
/// # Errors
/// [`BrokerError`] when the store or a metadata table cannot be opened; once serving, errors
/// are logged and the broker keeps running.
pub async fn run(
    config: BrokerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    let bound = listener.local_addr()?;
    let store_host = config.store_host(bound.port());
    // Bound before the store opens, like the main listener, so early clients wait in the
    // accept backlog instead of being refused.
    let vip_listener = match config.fast_listen_addr(bound) {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(vip) => {
                info!(addr = %addr, "vip channel listening (listen port - 2)");
                Some(vip)
            }
            Err(err) => {
                warn!(addr = %addr, cause = %err, "vip channel not started: binding listen port - 2 failed");
                None
            }
        },
        None => None,
    };
    let config = Arc::new(config);

    let store_cfg = store_config(&config);
    let store = tokio::task::spawn_blocking(move || MessageStore::open(store_cfg))
        .await
        .map_err(std::io::Error::other)??;
    // As RocketMQ's DefaultMessageStore.start does, let the reput finish dispatching what the
    // previous run appended before anything reads ConsumeQueues or the index: the transaction
    // service rebuilds its resolved set from the op queue and looks commits up by key, so a
    // stale view after a crash would commit a transaction twice.
    let catch_up = Arc::clone(&store);
    tokio::task::spawn_blocking(move || wait_for_dispatch(&catch_up))
        .await
        .map_err(std::io::Error::other)?;
    let topics = Arc::new(TopicConfigTable::load(&config)?);
    let groups = Arc::new(SubscriptionGroupTable::load(&config)?);
    let offsets = Arc::new(ConsumerOffsetTable::load(&config)?);
    let remoting_client = RemotingClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        max_frame_len: config.max_frame_len,
        serialize_type: SerializeType::Json,
    });
    let ctx = BrokerContext {
        config: Arc::clone(&config),
        store: Arc::clone(&store),
        topics,
        groups,
        offsets,
        clients: Arc::new(ClientRegistry::new()),
        locks: Arc::new(QueueLockTable::new(config.lock_max_live_time)),
        pull_hold: Arc::new(PullRequestHold::new(config.max_suspended_pulls_per_queue)),
        registration: Arc::new(NamesrvRegistration::new()),
        remoting_client: remoting_client.clone(),
        stats: Arc::new(BrokerStats::default()),
        metrics: Arc::new(metrics::BrokerMetrics::new()),
        store_host,
        transaction: Arc::new(OnceLock::new()),
        schedule: Arc::new(OnceLock::new()),
    };

    let token = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (arrival_tx, arrival_rx) = mpsc::channel::<Arrival>(ARRIVAL_CHANNEL_CAPACITY);
    let pull_hold = Arc::clone(&ctx.pull_hold);
    store.add_arrival_listener(Arc::new(move |ev: &store::ArrivalEvent<'_>| {
        // Most records arrive while no pull waits on any queue (a publish burst): skip them.
        if pull_hold.may_hold() {
            let _ = arrival_tx.try_send((
                ev.topic.to_owned(),
                ev.queue_id,
                ev.queue_offset,
                ev.tags_code,
            ));
        }
    }));
    let flush_metrics = Arc::clone(&ctx.metrics);
    store.set_flush_observer(Arc::new(move |elapsed| {
        flush_metrics.observe_flush(elapsed)
    }));
    tasks.spawn(arrival_task(ctx.clone(), arrival_rx, token.clone()));
    tasks.spawn(hold_check_task(ctx.clone(), token.clone()));
    tasks.spawn(offset_persist_task(ctx.clone(), token.clone()));
    tasks.spawn(client_expiry_task(ctx.clone(), token.clone()));
    tasks.spawn(namesrv_registration::run_registration(
        ctx.clone(),
        token.clone(),
    ));
    {
        let store = Arc::clone(&store);
        let token = token.clone();
        tasks.spawn(async move {
            if let Err(err) = store::run_retention(store, token.cancelled_owned()).await {
                warn!(cause = %err, "retention task failed");
            }
        });
    }
    transaction::start(&ctx, &mut tasks, token.clone());
    schedule::start(&ctx, &mut tasks, token.clone());

    info!(addr = %bound, store_host = %store_host, broker = %config.broker_name, "broker serving");
    let server_config = ServerConfig {
        max_connections: config.max_connections,
        max_frame_len: config.max_frame_len,
        ..Default::default()
    };
    let metrics = Arc::clone(&ctx.metrics);
    if let Some(addr) = config.metrics_listen {
        let stop = token.clone();
        let serve = metrics::serve(addr, Arc::clone(&metrics), ctx.clone(), async move {
            stop.cancelled().await;
        });
        tasks.spawn(serve);
    }
    let handler = Arc::new(metrics::Instrumented::new(
        BrokerHandler::new(ctx.clone()),
        metrics,
    ));
    let vip_stop = CancellationToken::new();
    // At shutdown, parked pulls are answered before the connections close (their answers
    // are flushed with the connection), so no consumer waits out its pull timeout. Then the
    // VIP listener is told to stop, together with the main one.
    let answer_ctx = ctx.clone();
    let stop_vip = vip_stop.clone();
    let shutdown = async move {
        shutdown.await;
        let parked = answer_ctx.pull_hold.drain();
        info!(
            parked = parked.len(),
            "answering parked pulls before closing connections"
        );
        for held in parked {
            processor::pull::answer_now(&answer_ctx, held);
        }
        stop_vip.cancel();
    };
    let vip_server = {
        let handler = Arc::clone(&handler);
        let server_config = server_config.clone();
        async move {
            if let Some(vip) = vip_listener {
                tern_common::remoting::run(vip, handler, server_config, vip_stop.cancelled_owned())
                    .await;
            }
        }
    };
    tokio::join!(
        tern_common::remoting::run(listener, handler, server_config, shutdown),
        vip_server
    );

    let stopping = Instant::now();
    info!("broker stopping");
    token.cancel();
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            warn!(cause = %err, "background task ended abnormally");
        }
    }
    // Pulls parked after the drain above found their connections closed; drop them.
    drop(ctx.pull_hold.drain());
    if let Err(err) = ctx.offsets.persist() {
        warn!(cause = %err, "persisting consumer offsets failed");
    }
    if let Err(err) = ctx.topics.persist() {
        warn!(cause = %err, "persisting topics failed");
    }
    if let Err(err) = ctx.groups.persist() {
        warn!(cause = %err, "persisting subscription groups failed");
    }
    if tokio::time::timeout(
        UNREGISTER_TIMEOUT,
        namesrv_registration::unregister_all(&ctx),
    )
    .await
    .is_err()
    {
        warn!("unregistering from the nameservers timed out");
    }
    remoting_client.shutdown();
    let store_for_stop = Arc::clone(&store);
    if let Err(err) = tokio::task::spawn_blocking(move || store_for_stop.shutdown()).await {
        warn!(cause = %err, "store shutdown task failed");
    }
    info!(
        stop_ms = u64::try_from(stopping.elapsed().as_millis()).unwrap_or(u64::MAX),
        "broker stopped"
    );
    Ok(())
}

/// Wakes held pulls on message arrival.
async fn arrival_task(
    ctx: BrokerContext,
    mut rx: mpsc::Receiver<Arrival>,
    token: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = token.cancelled() => return,
            event = rx.recv() => event,
        };
        let Some((topic, queue_id, new_max, tags_code)) = event else {
            return;
        };
        // Answered here rather than from a task of their own: one hand-off less between the
        // arrival and the answer (the read is from the page cache and does not block).
        for held in ctx
            .pull_hold
            .take_arrived(&topic, queue_id, new_max, tags_code)
        {
            processor::pull::answer_now(&ctx, held);
        }
    }
}

/// Releases held pulls whose hold time is over (every 200 ms) or whose queue grew (every 5 s,
/// or every short-polling period when long polling is off).
async fn hold_check_task(ctx: BrokerContext, token: CancellationToken) {
    let offset_period = if ctx.config.long_polling_enable {
        HOLD_OFFSET_CHECK
    } else {
        ctx.config.short_polling_time
    };
    let mut last_offset_check = Instant::now();
    let mut tick = tokio::time::interval(HOLD_TIMEOUT_CHECK);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let ready = if now.duration_since(last_offset_check) >= offset_period {
            last_offset_check = now;
            let store = Arc::clone(&ctx.store);
            let max = move |topic: &str, queue_id: i32| store.max_offset_in_queue(topic, queue_id);
            ctx.pull_hold.take_ready(now, Some(&max))
        } else {
            ctx.pull_hold.take_ready(now, None)
        };
        for held in ready {
            processor::pull::wake(&ctx, held);
        }
    }
}

/// Snapshots consumer offsets every `offset_persist_interval`.
async fn offset_persist_task(ctx: BrokerContext, token: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.offset_persist_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let offsets = Arc::clone(&ctx.offsets);
        match tokio::task::spawn_blocking(move || offsets.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(cause = %err, "persisting consumer offsets failed"),
            Err(err) => warn!(cause = %err, "offset persist task failed"),
        }
    }
}

/// Drops client channels silent for longer than `channel_expired_timeout`.
async fn client_expiry_task(ctx: BrokerContext, token: CancellationToken) {
    let mut tick = tokio::time::interval(CLIENT_EXPIRY_SCAN);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        for group in ctx
            .clients
            .scan_expired(Instant::now(), ctx.config.channel_expired_timeout)
        {
            warn!(group, "expired consumer channels removed");
            ctx.notify_consumer_ids_changed(&group);
        }
    }
}
