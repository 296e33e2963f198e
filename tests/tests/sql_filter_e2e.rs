//! End-to-end tests of SQL92 filtering (PROTOCOL.md §7): consumers subscribed with
//! `subscribe_sql` receive exactly the messages whose properties the expression selects, and
//! a bad expression fails the consumer's start with SUBSCRIPTION_PARSE_FAILED from
//! CHECK_CLIENT_CONFIG.
//!
//! Method: one NameServer and one broker (harness `tern_tests`, property filtering on by
//! default). A producer sends twenty messages: property `a` = 1..=10, each once with tag `T1`
//! and once with tag `T2`, bodies `T<tag>-<a>`. A push consumer and a subscribe-mode pull
//! consumer with `a > 5 AND TAGS = 'T1'` must see exactly `T1-6` .. `T1-10`, once each.
//! Every wait is bounded by `eventually` or a fixed number of polls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use tern_client::consumer::PullConsumer;
use tern_client::{ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, Producer, PushConsumer};
use tern_common::message::{Message, MessageExt};
use tern_tests::{create_topic, eventually, Cluster};

const EXPRESSION: &str = "a > 5 AND TAGS = 'T1'";
/// SUBSCRIPTION_PARSE_FAILED.
const SUBSCRIPTION_PARSE_FAILED: i32 = 23;

/// Sends `a` = 1..=10 with tags T1 and T2 to `topic`.
async fn produce(namesrv: &str, group: &str, topic: &str) -> Result<()> {
    let producer = Producer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .send_timeout(Duration::from_secs(5))
        .build()
        .await?;
    for tag in ["T1", "T2"] {
        for a in 1..=10 {
            let msg = Message::new(topic, format!("{tag}-{a}"))
                .with_tags(tag)
                .with_property("a", a.to_string());
            producer.send(msg).await?;
        }
    }
    producer.shutdown().await;
    Ok(())
}

fn expected() -> BTreeMap<String, usize> {
    (6..=10).map(|a| (format!("T1-{a}"), 1)).collect()
}

fn count(seen: &mut BTreeMap<String, usize>, msgs: &[MessageExt]) {
    for m in msgs {
        let body = String::from_utf8_lossy(&m.message.body).into_owned();
        *seen.entry(body).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_gets_exactly_the_selected_messages() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SqlPush";
    create_topic(&ns, topic, 2).await?;
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let s = Arc::clone(&seen);
    let consumer = PushConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-sql-push")
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .suspend_timeout(Duration::from_secs(2))
        .subscribe_sql(topic, EXPRESSION)
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let s = Arc::clone(&s);
            async move {
                count(&mut s.lock().unwrap_or_else(|e| e.into_inner()), &msgs);
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        })
        .build()?;
    consumer.start().await?;
    produce(&ns, "pg-sql-push", topic).await?;

    eventually("five selected messages", Duration::from_secs(30), || {
        let n: usize = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum();
        async move { (n >= 5).then_some(()) }
    })
    .await?;
    // Give stray deliveries (wrong tag or a <= 5) time to show up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let got = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ensure!(got == expected(), "consumed {got:?}");
    consumer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_consumer_gets_exactly_the_selected_messages() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SqlPull";
    create_topic(&ns, topic, 2).await?;
    produce(&ns, "pg-sql-pull", topic).await?;
    let consumer = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-sql-pull")
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .subscribe_sql(topic, EXPRESSION)
        .build()?;
    consumer.start().await?;
    let mut seen = BTreeMap::new();
    // Twenty messages in two queues: a bounded number of polls reads them all.
    for _ in 0..40 {
        let msgs = consumer.poll(Duration::from_millis(500)).await?;
        count(&mut seen, &msgs);
        if seen.values().sum::<usize>() >= 5 {
            // One more poll to catch anything extra.
            let more = consumer.poll(Duration::from_millis(500)).await?;
            count(&mut seen, &more);
            break;
        }
    }
    ensure!(seen == expected(), "pulled {seen:?}");
    consumer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_fails_the_consumer_start() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SqlBad";
    create_topic(&ns, topic, 1).await?;

    let push = PushConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-sql-bad-push")
        .subscribe_sql(topic, "a > 'five'")
        .register_concurrent(|_msgs: Vec<MessageExt>, _ctx: ConsumeContext| async move {
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        })
        .build()?;
    let err = match push.start().await {
        Ok(()) => anyhow::bail!("push consumer started with a bad expression"),
        Err(err) => err,
    };
    ensure!(
        err.response_code() == Some(SUBSCRIPTION_PARSE_FAILED),
        "push start error: {err}"
    );

    let pull = PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-sql-bad-pull")
        .subscribe_sql(topic, "a BETWEEN AND")
        .build()?;
    let err = match pull.start().await {
        Ok(()) => anyhow::bail!("pull consumer started with a bad expression"),
        Err(err) => err,
    };
    ensure!(
        err.response_code() == Some(SUBSCRIPTION_PARSE_FAILED),
        "pull start error: {err}"
    );
    Ok(())
}
