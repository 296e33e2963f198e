//! [`NamesrvRegistration`]: the broker's outer API towards the NameServers (RocketMQ
//! `BrokerOuterAPI`, PROTOCOL.md §2.2, §9.2–§9.3).
//!
//! REGISTER_BROKER goes to every configured NameServer at start, every
//! `register_name_server_period` (30 s) and right after a topic change
//! ([`NamesrvRegistration::trigger`]); UNREGISTER_BROKER on a clean stop. Bodies are JSON
//! (`RegisterBrokerBody`) so any NameServer, Tern's or Apache's, understands them. A failed
//! registration is logged and retried at the next period; it never stops the broker.

use std::time::Duration;

use tern_common::protocol::body::{encode_body, BodyError};
use tern_common::protocol::header::namesrv::{
    RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tern_common::route::RegisterBrokerBody;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::context::BrokerContext;

/// Timeout of one registration call.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);

/// Registration trigger shared through the context.
#[derive(Debug, Default)]
pub struct NamesrvRegistration {
    trigger: Notify,
}

impl NamesrvRegistration {
    /// A new trigger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the registration task to register with every NameServer now (after a topic
    /// was created, updated or deleted).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

/// Builds the REGISTER_BROKER request of this broker (header and JSON body).
///
/// # Errors
/// [`BodyError`] if the body cannot be encoded.
pub fn register_request(ctx: &BrokerContext) -> Result<RemotingCommand, BodyError> {
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: ctx.topics.wrapper(),
    };
    let bytes = encode_body(&body, SerializeType::Json)?;
    let crc = i32::try_from(crc32fast::hash(&bytes) & 0x7FFF_FFFF).unwrap_or(0);
    let addr = ctx.store_host.to_string();
    let ha_addr =
        std::net::SocketAddr::new(ctx.store_host.ip(), ctx.store_host.port().wrapping_add(1))
            .to_string();
    let header = RegisterBrokerRequestHeader {
        broker_name: ctx.config.broker_name.clone(),
        broker_addr: addr,
        cluster_name: ctx.config.broker_cluster_name.clone(),
        ha_server_addr: ha_addr,
        broker_id: ctx.config.broker_id,
        heartbeat_timeout_millis: Some(
            i64::try_from(ctx.config.broker_heartbeat_timeout.as_millis()).unwrap_or(120_000),
        ),
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: Some(crc),
        zone_name: None,
    };
    Ok(
        RemotingCommand::request(RequestCode::RegisterBroker, &header)
            .with_serialize_type(SerializeType::Json)
            .with_body(bytes),
    )
}

/// Registers with every NameServer once, concurrently; returns how many accepted.
pub async fn register_all(ctx: &BrokerContext) -> usize {
    let request = match register_request(ctx) {
        Ok(r) => r,
        Err(err) => {
            warn!(cause = %err, "cannot encode the registration body");
            return 0;
        }
    };
    let calls = ctx.config.namesrv_addrs.iter().map(|addr| {
        let request = request.clone();
        let client = ctx.remoting_client.clone();
        async move {
            match client.invoke(addr, request, REGISTER_TIMEOUT).await {
                Ok(resp) if resp.code == i32::from(ResponseCode::Success) => {
                    debug!(namesrv = %addr, "registered with nameserver");
                    true
                }
                Ok(resp) => {
                    warn!(namesrv = %addr, code = resp.code, remark = ?resp.remark, "nameserver refused registration");
                    false
                }
                Err(err) => {
                    warn!(namesrv = %addr, cause = %err, "registration failed");
                    false
                }
            }
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

/// Unregisters from every NameServer (clean stop); failures are logged.
pub async fn unregister_all(ctx: &BrokerContext) {
    let header = UnregisterBrokerRequestHeader {
        broker_name: ctx.config.broker_name.clone(),
        broker_addr: ctx.store_host.to_string(),
        cluster_name: ctx.config.broker_cluster_name.clone(),
        broker_id: ctx.config.broker_id,
    };
    let request = RemotingCommand::request(RequestCode::UnregisterBroker, &header)
        .with_serialize_type(SerializeType::Json);
    let calls = ctx.config.namesrv_addrs.iter().map(|addr| {
        let request = request.clone();
        let client = ctx.remoting_client.clone();
        async move {
            if let Err(err) = client.invoke(addr, request, REGISTER_TIMEOUT).await {
                warn!(namesrv = %addr, cause = %err, "unregistration failed");
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// The registration loop: registers at once, then every period or when triggered, until
/// `shutdown`.
pub async fn run_registration(ctx: BrokerContext, shutdown: CancellationToken) {
    if ctx.config.namesrv_addrs.is_empty() {
        info!("no nameserver configured; not registering");
        return;
    }
    let n = register_all(&ctx).await;
    info!(
        accepted = n,
        of = ctx.config.namesrv_addrs.len(),
        "registered with nameservers"
    );
    let period = ctx.config.register_name_server_period;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
            () = ctx.registration.trigger.notified() => {}
        }
        register_all(&ctx).await;
    }
}
