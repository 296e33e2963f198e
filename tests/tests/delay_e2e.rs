//! End-to-end tests of delayed delivery through the SDK: delay levels and timer messages sent
//! with `Producer` reach a `PushConsumer` on time, also across a broker SIGKILL.
//!
//! Method: one NameServer and one broker started by the `tern_tests` harness with a short delay
//! table (`--message-delay-level "1s 2s 3s"`); the consumer records the wall-clock time at which
//! each message (identified by its body) arrives. A message must never arrive before its due
//! time (measured from just before its send) and at most ~2 s after it (delivery lateness plus
//! the consumer's pull round trip). Every wait is bounded by `eventually`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use tern_client::{
    Admin, ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, Producer, PushConsumer,
};
use tern_common::message::{Message, MessageExt};
use tern_tests::{create_topic, eventually, Cluster};

/// The broker's delay table: levels 1, 2, 3 are 1 s, 2 s, 3 s.
const DELAY_LEVELS: [&str; 2] = ["--message-delay-level", "1s 2s 3s"];

/// Largest accepted lateness, including the push consumer's pull round trip.
const LATE_MAX_MS: i64 = 2_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

/// A push consumer recording the arrival time (epoch ms) of each message body.
async fn arrival_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
) -> Result<(PushConsumer, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let a = Arc::clone(&arrivals);
    let consumer = PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .suspend_timeout(Duration::from_secs(5))
        .subscribe(topic, "*")
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let a = Arc::clone(&a);
            async move {
                let now = now_ms();
                let mut map = a.lock().unwrap_or_else(|e| e.into_inner());
                for m in msgs {
                    let body = String::from_utf8_lossy(&m.message.body).into_owned();
                    map.entry(body).or_insert(now);
                }
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        })
        .build()?;
    consumer.start().await?;
    Ok((consumer, arrivals))
}

async fn wait_arrivals(arrivals: &Arrivals, n: usize, secs: u64) -> Result<HashMap<String, i64>> {
    eventually("arrivals", Duration::from_secs(secs), || {
        let got = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
        async move { (got.len() >= n).then_some(got) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_levels_and_timers_reach_a_push_consumer_on_time() -> Result<()> {
    let cluster = Cluster::start(&DELAY_LEVELS)?;
    let ns = cluster.namesrv_addr();
    let topic = "DelayE2e";
    create_topic(&ns, topic, 1).await?;
    let (consumer, arrivals) = arrival_consumer(&ns, "cg-delay", topic).await?;
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-delay")
        .send_timeout(Duration::from_secs(5))
        .build()
        .await?;
    // A plain message first: once it arrives the consumer is known to be pulling.
    producer.send(Message::new(topic, "plain")).await?;
    wait_arrivals(&arrivals, 1, 20).await?;

    // body → (earliest allowed arrival, latest allowed arrival), epoch ms.
    let mut due: HashMap<String, (i64, i64)> = HashMap::new();
    for level in 1..=3u32 {
        let body = format!("level-{level}");
        let sent = now_ms();
        producer
            .send(Message::new(topic, body.clone()).with_delay_level(level))
            .await?;
        let delay = i64::from(level) * 1_000;
        due.insert(body, (sent + delay, now_ms() + delay + LATE_MAX_MS));
    }
    let at = now_ms() + 2_500;
    producer
        .send(Message::new(topic, "timer-abs").with_deliver_time_ms(at))
        .await?;
    due.insert("timer-abs".into(), (at - at % 1_000, at + LATE_MAX_MS));
    let sent = now_ms();
    producer
        .send(Message::new(topic, "timer-rel").with_delay_ms(2_000))
        .await?;
    let rel_at = sent + 2_000;
    due.insert(
        "timer-rel".into(),
        (rel_at - rel_at % 1_000, now_ms() + 2_000 + LATE_MAX_MS),
    );

    let got = wait_arrivals(&arrivals, 1 + due.len(), 20).await?;
    for (body, (earliest, latest)) in &due {
        let arrived = got[body];
        ensure!(arrived >= *earliest, "{body} early: {arrived} < {earliest}");
        ensure!(arrived <= *latest, "{body} late: {arrived} > {latest}");
    }
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

/// Whether the NameServer `admin` talks to serves a route for `topic` now.
async fn has_route(admin: &Admin, topic: &str) -> bool {
    admin.topic_route(topic).await.is_ok()
}

/// A level-3 (3 s) message sent 1 s before a SIGKILL is delivered after the restart, never
/// early and at most [`LATE_MAX_MS`] after the later of its due time and the consumer's start.
///
/// The consumer starts only once the restarted broker's registration is visible: the
/// NameServer drops the broker's routes when its connection closes, and an SDK consumer that
/// starts while the topic has no route never heartbeats the broker until its periodic
/// heartbeat (30 s), so its rebalance fails with "no consumer for this group" until then
/// (reported against `tern_client`'s `PushConsumer` rebalance). Waiting for the route to
/// disappear after the kill, then to come back, makes sure the route seen is the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_survives_a_broker_sigkill() -> Result<()> {
    let mut cluster = Cluster::start(&DELAY_LEVELS)?;
    let ns = cluster.namesrv_addr();
    let topic = "DelayCrash";
    create_topic(&ns, topic, 1).await?;
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-crash")
        .send_timeout(Duration::from_secs(5))
        .build()
        .await?;
    let sent = now_ms();
    producer
        .send(Message::new(topic, "survivor").with_delay_level(3))
        .await?;
    let due = sent + 3_000;
    producer.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cluster.broker.kill();
    eventually(
        "route dropped after the kill",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            async move { (!has_route(&admin, topic).await).then_some(()) }
        },
    )
    .await?;
    cluster.broker.restart()?;
    eventually(
        "route of the restarted broker",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            async move { has_route(&admin, topic).await.then_some(()) }
        },
    )
    .await?;
    admin.shutdown().await;
    let started = now_ms();
    let (consumer, arrivals) = arrival_consumer(&ns, "cg-crash", topic).await?;
    let got = wait_arrivals(&arrivals, 1, 10).await;
    consumer.shutdown().await;
    let got = got.map_err(|e| e.context(cluster.broker.log_tail(40)))?;
    let arrived = got["survivor"];
    ensure!(
        arrived >= due,
        "delivered early after a crash: {arrived} < {due}"
    );
    let latest = due.max(started) + LATE_MAX_MS;
    ensure!(
        arrived <= latest,
        "delivered late after a crash: {arrived} > {latest}"
    );
    Ok(())
}
