//! End-to-end tests of consumer retries and dead-letter queues through the SDK (PROTOCOL.md
//! §6.3): a failing concurrent consumer gets its message back through `%RETRY%<group>` with a
//! growing delay; after `max_reconsume_times` the message lands in `%DLQ%<group>`, readable with
//! a pull; an orderly consumer retries locally without breaking the queue's order.
//!
//! Method: one NameServer and one broker (harness `tern_tests`) with the delay table
//! `1s 1s 1s 2s 3s`, so the broker-chosen retry levels 3, 4, 5 (3 + reconsume times) mean 1 s,
//! 2 s, 3 s. Handlers record each attempt with its wall-clock time and reconsume times. Every
//! wait is bounded by `eventually`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use tern_client::consumer::PullConsumer;
use tern_client::{
    ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, ConsumeOrderlyStatus, Producer,
    PushConsumer,
};
use tern_common::message::{Message, MessageExt};
use tern_common::route::MessageQueue;
use tern_tests::{create_topic, eventually, Cluster};

/// The broker's delay table: retry levels 3, 4, 5 are 1 s, 2 s, 3 s.
const DELAY_LEVELS: [&str; 2] = ["--message-delay-level", "1s 1s 1s 2s 3s"];

async fn producer(namesrv: &str, group: &str) -> Result<Producer> {
    Ok(Producer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .send_timeout(Duration::from_secs(5))
        .build()
        .await?)
}

/// One consumption attempt: (when, reconsume times, topic seen by the handler, body).
type Attempt = (Instant, i32, String, String);
type Attempts = Arc<Mutex<Vec<Attempt>>>;

fn record(attempts: &Attempts, msgs: &[MessageExt]) {
    let now = Instant::now();
    let mut v = attempts.lock().unwrap_or_else(|e| e.into_inner());
    for m in msgs {
        v.push((
            now,
            m.reconsume_times,
            m.message.topic.clone(),
            String::from_utf8_lossy(&m.message.body).into_owned(),
        ));
    }
}

async fn wait_attempts(attempts: &Attempts, n: usize, secs: u64) -> Result<Vec<Attempt>> {
    eventually("consumption attempts", Duration::from_secs(secs), || {
        let got = attempts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        async move { (got.len() >= n).then_some(got) }
    })
    .await
}

/// A concurrent consumer that answers ReconsumeLater while the reconsume times is below
/// `fail_below`.
fn failing_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    fail_below: i32,
    max_reconsume_times: i32,
) -> Result<(PushConsumer, Attempts)> {
    let attempts: Attempts = Arc::default();
    let a = Arc::clone(&attempts);
    let consumer = PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .suspend_timeout(Duration::from_secs(5))
        .consume_batch_size(1)
        .max_reconsume_times(max_reconsume_times)
        .subscribe(topic, "*")
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let a = Arc::clone(&a);
            async move {
                record(&a, &msgs);
                if msgs.iter().any(|m| m.reconsume_times < fail_below) {
                    Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
                } else {
                    Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
                }
            }
        })
        .build()?;
    Ok((consumer, attempts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_is_retried_with_growing_delays() -> Result<()> {
    let cluster = Cluster::start(&DELAY_LEVELS)?;
    let ns = cluster.namesrv_addr();
    let topic = "RetryGrow";
    create_topic(&ns, topic, 1).await?;
    let (consumer, attempts) = failing_consumer(&ns, "cg-grow", topic, 3, 16)?;
    consumer.start().await?;
    let producer = producer(&ns, "pg-grow").await?;
    producer.send(Message::new(topic, "fragile")).await?;

    let got = wait_attempts(&attempts, 4, 40).await?;
    let times: Vec<i32> = got.iter().map(|a| a.1).collect();
    ensure!(times[..4] == [0, 1, 2, 3], "reconsume times {times:?}");
    // Retries are presented under the original topic (RETRY_TOPIC), not %RETRY%<group>.
    ensure!(
        got.iter().all(|a| a.2 == topic),
        "topics {:?}",
        got.iter().map(|a| &a.2).collect::<Vec<_>>()
    );
    ensure!(got.iter().all(|a| a.3 == "fragile"));
    let gaps: Vec<Duration> = got.windows(2).take(3).map(|w| w[1].0 - w[0].0).collect();
    for (gap, min_secs) in gaps.iter().zip([1u64, 2, 3]) {
        ensure!(
            *gap >= Duration::from_secs(min_secs),
            "retry came back early: {gap:?} < {min_secs} s (gaps {gaps:?})"
        );
        ensure!(
            *gap <= Duration::from_secs(min_secs + 3),
            "retry came back late: {gap:?} (gaps {gaps:?})"
        );
    }
    ensure!(gaps[2] > gaps[0], "delays do not grow: {gaps:?}");
    // Success on the fourth attempt: no fifth one.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ensure!(attempts.lock().unwrap_or_else(|e| e.into_inner()).len() == 4);
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_land_in_the_dlq_readable_with_a_pull() -> Result<()> {
    let cluster = Cluster::start(&DELAY_LEVELS)?;
    let ns = cluster.namesrv_addr();
    let topic = "RetryDlq";
    let group = "cg-dlq";
    create_topic(&ns, topic, 1).await?;
    // Always fails; at most 2 reconsumptions.
    let (consumer, attempts) = failing_consumer(&ns, group, topic, i32::MAX, 2)?;
    consumer.start().await?;
    let producer = producer(&ns, "pg-dlq").await?;
    producer.send(Message::new(topic, "doomed")).await?;

    // Attempts with reconsume times 0, 1, 2; the third failure goes to the DLQ.
    let got = wait_attempts(&attempts, 3, 30).await?;
    ensure!(got.iter().map(|a| a.1).collect::<Vec<_>>()[..3] == [0, 1, 2]);

    let dlq = format!("%DLQ%{group}");
    let puller = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-dlq-reader")
        .build()?;
    puller.start().await?;
    let queues: Vec<MessageQueue> = eventually("DLQ route", Duration::from_secs(20), || {
        let p = &puller;
        let dlq = dlq.clone();
        async move { p.fetch_queues(&dlq).await.ok().filter(|q| !q.is_empty()) }
    })
    .await?;
    let mq = queues[0].clone();
    let dead: Vec<MessageExt> = eventually("DLQ message", Duration::from_secs(10), || {
        let p = &puller;
        let mq = mq.clone();
        async move {
            let r = p.pull(&mq, 0, 32).await.ok()?;
            (!r.messages.is_empty()).then_some(r.messages)
        }
    })
    .await?;
    ensure!(dead.len() == 1, "{} dead letters", dead.len());
    ensure!(dead[0].message.body.as_ref() == b"doomed");
    ensure!(
        dead[0].reconsume_times == 3,
        "reconsume times {}",
        dead[0].reconsume_times
    );
    // Nothing is redelivered after the dead letter.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    ensure!(attempts.lock().unwrap_or_else(|e| e.into_inner()).len() == 3);
    puller.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_consumer_retries_without_breaking_order() -> Result<()> {
    let cluster = Cluster::start(&DELAY_LEVELS)?;
    let ns = cluster.namesrv_addr();
    let topic = "RetryOrderly";
    create_topic(&ns, topic, 1).await?;
    let producer = producer(&ns, "pg-orderly").await?;
    const N: usize = 8;
    for i in 0..N {
        producer.send(Message::new(topic, format!("m{i}"))).await?;
    }
    let attempts: Attempts = Arc::default();
    let a = Arc::clone(&attempts);
    let failures_left = Arc::new(Mutex::new(2u32));
    let consumer = PushConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-orderly")
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .suspend_timeout(Duration::from_secs(5))
        .consume_batch_size(1)
        .orderly_suspend(Duration::from_millis(200))
        .subscribe(topic, "*")
        .register_orderly(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let a = Arc::clone(&a);
            let failures_left = Arc::clone(&failures_left);
            async move {
                record(&a, &msgs);
                let is_m3 = msgs.iter().any(|m| m.message.body.as_ref() == b"m3");
                let mut left = failures_left.lock().unwrap_or_else(|e| e.into_inner());
                if is_m3 && *left > 0 {
                    *left -= 1;
                    return Ok(ConsumeOrderlyStatus::SuspendCurrentQueueAMoment);
                }
                Ok(ConsumeOrderlyStatus::Success)
            }
        })
        .build()?;
    consumer.start().await?;
    let got = wait_attempts(&attempts, N + 2, 30).await?;
    let bodies: Vec<&str> = got.iter().map(|a| a.3.as_str()).collect();
    let expected = ["m0", "m1", "m2", "m3", "m3", "m3", "m4", "m5", "m6", "m7"];
    ensure!(bodies == expected, "order broken: {bodies:?}");
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
