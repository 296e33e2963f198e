//! The push consumer after broker outages: it must start consuming within a few seconds of
//! the broker (re)appearing, not after the 30 s periodic heartbeat.
//!
//! Method: one NameServer and one broker from the `tern_tests` harness; consumers keep the
//! default rebalance (20 s) and heartbeat (30 s) intervals, so only the SDK's reaction to
//! the outage can make the deadlines. The broker is SIGKILLed and restarted on the same
//! address. Before the fix a consumer started while the broker was down never heartbeated
//! the broker once it came back (its GET_CONSUMER_LIST_BY_GROUP kept failing), and a broker
//! restarted under a running consumer did not know the consumer until the next periodic
//! heartbeat.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tern_client::{
    Admin, ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, Producer, PushConsumer,
};
use tern_common::message::{Message, MessageExt};
use tern_common::protocol::body::{decode_body, ConsumerListBody};
use tern_common::protocol::header::GetConsumerListByGroupRequestHeader;
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_tests::{create_topic, eventually, Cluster};

/// How soon after the broker is back (a send succeeded) the consumer must have consumed.
const CONSUME_WITHIN: Duration = Duration::from_secs(8);

/// A push consumer of `group` on `topic` with default intervals that counts the messages
/// whose body is `want`.
fn counting_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    want: &'static str,
    seen: Arc<AtomicUsize>,
) -> Result<PushConsumer> {
    Ok(PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFrom::First)
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let seen = seen.clone();
            async move {
                let n = msgs.iter().filter(|m| m.message.body == want).count();
                seen.fetch_add(n, Ordering::SeqCst);
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        })
        .build()?)
}

/// How many queues of `topic` (not of the retry topic) `consumer` owns.
fn owned(consumer: &PushConsumer, topic: &str) -> usize {
    consumer
        .assigned_queues()
        .iter()
        .filter(|mq| mq.topic == topic)
        .count()
}

/// Sends `body` to `topic`, retrying for up to 20 s while the broker comes back; returns when
/// the send succeeded.
async fn send_when_back(producer: &Producer, topic: &str, body: &'static str) -> Result<Instant> {
    eventually(
        "a send after the restart",
        Duration::from_secs(20),
        || async { producer.send(Message::new(topic, body)).await.ok() },
    )
    .await?;
    Ok(Instant::now())
}

/// The client ids the broker at `broker` lists for `group` (empty on any error).
async fn group_members(admin: &Admin, broker: &str, group: &str) -> Vec<String> {
    let header = GetConsumerListByGroupRequestHeader {
        consumer_group: group.to_string(),
    };
    let request = RemotingCommand::request(RequestCode::GetConsumerListByGroup, &header);
    match admin.invoke_raw(broker, request).await {
        Ok(r) if r.code == i32::from(ResponseCode::Success) => {
            decode_body::<ConsumerListBody>(&r.body, r.serialize_type)
                .map(|b| b.consumer_id_list)
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_started_while_broker_down_consumes_soon_after_it_returns() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "RestartDownAtStart";
    create_topic(&ns, topic, 4).await?;
    cluster.broker.kill();

    let seen = Arc::new(AtomicUsize::new(0));
    let consumer = counting_consumer(&ns, "cg-down-at-start", topic, "after", seen.clone())?;
    consumer.start().await?;
    // Let the consumer's first rebalances fail against the missing broker.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    cluster.broker.restart()?;
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-down-at-start")
        .send_timeout(Duration::from_secs(3))
        .build()
        .await?;
    let sent_at = send_when_back(&producer, topic, "after").await?;
    eventually("the message consumed", CONSUME_WITHIN, || {
        let n = seen.load(Ordering::SeqCst);
        async move { (n >= 1).then_some(()) }
    })
    .await
    .with_context(|| {
        format!(
            "not consumed {:?} after the broker came back; queues {:?}; broker log:\n{}",
            sent_at.elapsed(),
            consumer.assigned_queues(),
            cluster.broker.log_tail(20)
        )
    })?;
    ensure!(
        owned(&consumer, topic) == 4,
        "not every queue owned: {:?}",
        consumer.assigned_queues()
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_consumer_is_known_to_a_restarted_broker_soon() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let broker_addr = cluster.broker.addr.clone();
    let topic = "RestartUnderConsumer";
    let group = "cg-restart-under";
    create_topic(&ns, topic, 4).await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let consumer = counting_consumer(&ns, group, topic, "after", seen.clone())?;
    consumer.start().await?;
    eventually("queues assigned", Duration::from_secs(10), || {
        let n = owned(&consumer, topic);
        async move { (n == 4).then_some(()) }
    })
    .await?;
    let client_id = consumer.client_id().context("no client id")?;
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    ensure!(group_members(&admin, &broker_addr, group).await == vec![client_id.clone()]);

    cluster.broker.kill();
    cluster.broker.restart()?;
    ensure!(
        cluster.broker.addr == broker_addr,
        "restarted on another address"
    );
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-restart-under")
        .send_timeout(Duration::from_secs(3))
        .build()
        .await?;
    let sent_at = send_when_back(&producer, topic, "after").await?;
    // The restarted process learns about the consumer from the SDK, not from the 30 s timer.
    eventually("the consumer registered again", CONSUME_WITHIN, || {
        let admin = admin.clone();
        let (addr, id) = (broker_addr.clone(), client_id.clone());
        async move {
            group_members(&admin, &addr, group)
                .await
                .contains(&id)
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("{:?} after the restart", sent_at.elapsed()))?;
    eventually("the message consumed", CONSUME_WITHIN, || {
        let n = seen.load(Ordering::SeqCst);
        async move { (n >= 1).then_some(()) }
    })
    .await?;
    consumer.shutdown().await;
    producer.shutdown().await;
    admin.shutdown().await;
    Ok(())
}
