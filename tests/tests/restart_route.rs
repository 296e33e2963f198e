//! Broker restarts and stops as the NameServer and clients see them: the route of a topic
//! comes back quickly after the only broker is SIGKILLed and restarted on the same port, and a
//! clean stop (SIGTERM) with clients connected is fast and complete.
//!
//! Method: one NameServer and one broker started by the `tern_tests` harness. Routes are read
//! with raw GET_ROUTEINFO_BY_TOPIC requests (no client-side route cache), so the test sees
//! exactly what the NameServer answers. The restart cycle runs three times with a producer
//! writing (SYNC_FLUSH, so recovery has work to do) and staying connected; each time both the
//! created topic and `TBW102` must be routable within [`ROUTE_BACK_WITHIN`] of the restarted
//! process printing its `listening on` line. The clean stop runs with a push consumer whose
//! long-polling pulls are parked on the broker.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tern_client::{
    Admin, ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, Producer, PushConsumer,
};
use tern_common::message::{Message, MessageExt};
use tern_common::protocol::header::GetRouteInfoRequestHeader;
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_tests::{eventually, start_broker, start_nameserver, wait_for_cluster};

/// How soon after a restart the route must be back.
const ROUTE_BACK_WITHIN: Duration = Duration::from_secs(2);
/// How long a clean stop may take with idle clients connected.
const CLEAN_STOP_WITHIN: Duration = Duration::from_secs(2);

/// The response code of GET_ROUTEINFO_BY_TOPIC for `topic`, or `None` on a transport error.
async fn route_code(admin: &Admin, namesrv: &str, topic: &str) -> Option<i32> {
    let header = GetRouteInfoRequestHeader {
        topic: topic.to_string(),
        accept_standard_json_only: None,
    };
    let request = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, &header);
    admin
        .invoke_raw(namesrv, request)
        .await
        .ok()
        .map(|r| r.code)
}

/// Waits until every one of `topics` is routable; returns how long it took.
async fn wait_routes(
    admin: &Admin,
    namesrv: &str,
    topics: &[&str],
    within: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    eventually("routes of every topic", within, || async {
        for topic in topics {
            if route_code(admin, namesrv, topic).await != Some(i32::from(ResponseCode::Success)) {
                return None;
            }
        }
        Some(())
    })
    .await?;
    Ok(start.elapsed())
}

/// Waits for the broker's registration and creates `topic`; returns the admin client.
async fn admin_with_topic(namesrv: &str, topic: &str) -> Result<Admin> {
    let admin = Admin::builder().namesrv_addr(namesrv).build().await?;
    let cluster = wait_for_cluster(&admin, Duration::from_secs(15)).await?;
    admin.create_topic(&cluster, topic, 4).await?;
    wait_routes(&admin, namesrv, &[topic, "TBW102"], Duration::from_secs(10)).await?;
    Ok(admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_is_back_soon_after_each_broker_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let namesrv = start_nameserver(dir.path(), &[])?;
    let mut broker = start_broker(
        &namesrv.addr,
        &dir.path().join("broker-a"),
        &["--flush-disk-type", "SYNC_FLUSH"],
    )?;
    let ns = namesrv.addr.clone();
    let topic = "RestartRoute";
    let admin = admin_with_topic(&ns, topic).await?;
    // A producer stays connected across the restarts, as an application's would.
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-restart-route")
        .send_timeout(Duration::from_secs(3))
        .build()
        .await?;

    for round in 0..3 {
        for i in 0..20 {
            producer
                .send(Message::new(topic, format!("r{round}-{i}")))
                .await
                .with_context(|| format!("round {round}: send {i}"))?;
        }
        broker.kill();
        broker
            .restart()
            .with_context(|| format!("restarting the broker, round {round}"))?;
        let took = wait_routes(&admin, &ns, &[topic, "TBW102"], ROUTE_BACK_WITHIN)
            .await
            .with_context(|| {
                format!(
                    "round {round}: route not back; broker log:\n{}\nnameserver log:\n{}",
                    broker.log_tail(30),
                    namesrv.log_tail(30)
                )
            })?;
        ensure!(
            took <= ROUTE_BACK_WITHIN,
            "round {round}: route back after {took:?}"
        );
    }
    producer.shutdown().await;
    admin.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_is_fast_and_complete() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("broker-a");
    let namesrv = start_nameserver(dir.path(), &[])?;
    let mut broker = start_broker(&namesrv.addr, &store, &[])?;
    let ns = namesrv.addr.clone();
    let topic = "CleanStop";
    let admin = admin_with_topic(&ns, topic).await?;
    // An idle push consumer: its pulls are parked on the broker (long polling) while it stops.
    let consumer = PushConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-clean-stop")
        .subscribe(topic, "*")
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(1))
        .register_concurrent(|_msgs: Vec<MessageExt>, _ctx: ConsumeContext| async move {
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        })
        .build()?;
    consumer.start().await?;
    eventually("queues assigned", Duration::from_secs(10), || {
        let n = consumer.assigned_queues().len();
        async move { (n >= 4).then_some(()) }
    })
    .await?;
    // Give the consumer time to park its first pulls.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    broker.stop();
    let took = start.elapsed();
    ensure!(
        took < CLEAN_STOP_WITHIN,
        "clean stop took {took:?}; broker log:\n{}",
        broker.log_tail(30)
    );
    let log = broker.log();
    ensure!(
        log.contains("broker stopped"),
        "no clean stop in the log:\n{log}"
    );
    // The consumer's parked pulls were answered before the connections closed.
    let parked = log
        .lines()
        .find(|l| l.contains("answering parked pulls"))
        .and_then(|l| l.split("parked=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    ensure!(
        parked.is_some_and(|n| n > 0),
        "parked pulls not answered at shutdown ({parked:?}); log:\n{}",
        broker.log_tail(30)
    );
    ensure!(
        !store.join("abort").exists(),
        "the abort file is left after a clean stop"
    );
    let topics = std::fs::read(store.join("config").join("topics"))
        .context("reading the persisted topic table")?;
    ensure!(
        topics.windows(topic.len()).any(|w| w == topic.as_bytes()),
        "topic table not persisted"
    );
    // The broker unregistered: the NameServer logged the request and no longer routes its
    // topics.
    let code = route_code(&admin, &ns, topic).await;
    ensure!(
        code == Some(i32::from(ResponseCode::TopicNotExist)),
        "route after the stop answered {code:?}"
    );
    ensure!(
        namesrv.log().contains("broker unregistered"),
        "no UNREGISTER_BROKER reached the nameserver:\n{}",
        namesrv.log_tail(20)
    );
    consumer.shutdown().await;
    admin.shutdown().await;
    Ok(())
}
