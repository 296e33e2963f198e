//! End-to-end tests of the Rust SDK (`tern-client`) against real `tern-nameserver` and
//! `tern-broker` processes.
//!
//! Method: every test starts its own NameServer and broker(s) on 127.0.0.1 port 0 with fresh
//! temporary directories (see `tern_tests`), drives them only through the SDK's public API,
//! and checks what a user would observe: every acknowledged message is consumed, in order
//! where order is promised, filtered by tag, shared or broadcast across consumers, and
//! offsets survive restarts. Waits are bounded by `eventually` with explicit deadlines; the
//! broker and consumers run with short intervals so each test takes seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tern_client::consumer::{MessageModel, PushConsumerBuilder};
use tern_client::producer::SelectByHash;
use tern_client::{
    Admin, ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, ConsumeOrderlyStatus, Producer,
    PushConsumer, SendStatus,
};
use tern_common::message::{Message, MessageExt};
use tern_tests::{create_topic, eventually, Cluster};

/// Shared state updated by consumer handlers and read by the test.
#[derive(Debug, Default)]
struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Runs `f` on the value.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

async fn producer(namesrv: &str, group: &str) -> Result<Producer> {
    Ok(Producer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .send_timeout(Duration::from_secs(5))
        .build()
        .await?)
}

/// A push consumer builder with short intervals for tests.
fn consumer_builder(namesrv: &str, group: &str) -> PushConsumerBuilder {
    PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .consume_from(ConsumeFrom::First)
        .rebalance_interval(Duration::from_secs(2))
        .persist_interval(Duration::from_millis(500))
        .suspend_timeout(Duration::from_secs(5))
}

fn body_of(m: &MessageExt) -> String {
    String::from_utf8_lossy(&m.message.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sent_message_is_consumed_exactly_once() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkExactlyOnce";
    create_topic(&ns, topic, 4).await?;
    let producer = producer(&ns, "pg-once").await?;
    const N: usize = 60;
    let mut sent = BTreeSet::new();
    for i in 0..N {
        let r = producer.send(Message::new(topic, format!("m-{i}"))).await?;
        ensure!(r.status == SendStatus::SendOk, "status {:?}", r.status);
        sent.insert(r.msg_id);
    }
    let seen: Shared<HashMap<String, usize>> = Shared::default();
    let s = seen.clone();
    let consumer = consumer_builder(&ns, "cg-once")
        .subscribe(topic, "*")
        .consume_thread_count(4)
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx| {
            let s = s.clone();
            async move {
                s.with(|m| {
                    for msg in &msgs {
                        *m.entry(msg.unique_id().to_string()).or_default() += 1;
                    }
                });
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        })
        .build()?;
    consumer.start().await?;
    eventually("all messages consumed", Duration::from_secs(30), || {
        let n = seen.with(|m| m.len());
        async move { (n >= N).then_some(()) }
    })
    .await?;
    // Give late duplicates a chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = seen.with(|m| m.clone());
    ensure!(
        got.keys().cloned().collect::<BTreeSet<_>>() == sent,
        "consumed ids differ from sent ids"
    );
    ensure!(got.values().all(|&c| c == 1), "duplicates: {got:?}");
    consumer.shutdown().await;
    producer.shutdown().await;
    drop(cluster);
    Ok(())
}

/// Records every message a concurrent consumer receives.
fn collecting(builder: PushConsumerBuilder) -> Result<(PushConsumer, Shared<Vec<MessageExt>>)> {
    let seen: Shared<Vec<MessageExt>> = Shared::default();
    let s = seen.clone();
    let consumer = builder
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let s = s.clone();
            async move {
                s.with(|v| v.extend(msgs));
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            }
        })
        .build()?;
    Ok((consumer, seen))
}

async fn wait_count(what: &str, seen: &Shared<Vec<MessageExt>>, n: usize, secs: u64) -> Result<()> {
    eventually(what, Duration::from_secs(secs), || {
        let got = seen.with(|v| v.len());
        async move { (got >= n).then_some(()) }
    })
    .await
}

fn unique_ids(seen: &Shared<Vec<MessageExt>>) -> BTreeSet<String> {
    seen.with(|v| v.iter().map(|m| m.unique_id().to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_consumer_sees_each_queue_in_order() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkOrdered";
    create_topic(&ns, topic, 4).await?;
    let producer = producer(&ns, "pg-ordered").await?;
    const ORDERS: u64 = 8;
    const STEPS: u64 = 6;
    for step in 0..STEPS {
        for order in 0..ORDERS {
            let msg = Message::new(topic, format!("{order}:{step}"));
            producer
                .send_with_selector(msg, &SelectByHash, &order)
                .await?;
        }
    }
    let seen: Shared<Vec<(i32, i64, String)>> = Shared::default();
    // Queues whose handler call is running; a second concurrent call for one queue is a bug.
    let running: Shared<BTreeSet<i32>> = Shared::default();
    let overlap = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, r, o) = (seen.clone(), running.clone(), overlap.clone());
    let consumer = consumer_builder(&ns, "cg-ordered")
        .subscribe(topic, "*")
        .consume_batch_size(3)
        .register_orderly(move |msgs: Vec<MessageExt>, ctx: ConsumeContext| {
            let (s, r, o) = (s.clone(), r.clone(), o.clone());
            async move {
                let queue = ctx.message_queue.queue_id;
                if !r.with(|set| set.insert(queue)) {
                    o.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                s.with(|v| {
                    for m in &msgs {
                        v.push((queue, m.queue_offset, body_of(m)));
                    }
                });
                tokio::time::sleep(Duration::from_millis(2)).await;
                r.with(|set| set.remove(&queue));
                Ok(ConsumeOrderlyStatus::Success)
            }
        })
        .build()?;
    consumer.start().await?;
    let total = (ORDERS * STEPS) as usize;
    eventually("ordered messages", Duration::from_secs(30), || {
        let n = seen.with(|v| v.len());
        async move { (n >= total).then_some(()) }
    })
    .await?;
    let got = seen.with(|v| v.clone());
    ensure!(
        !overlap.load(std::sync::atomic::Ordering::SeqCst),
        "one queue ran two handlers at once"
    );
    // Per queue, offsets strictly increase; per order, steps come in sequence.
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut next_step: HashMap<u64, u64> = HashMap::new();
    for (queue, offset, body) in &got {
        let prev = last_offset.insert(*queue, *offset);
        ensure!(
            prev.is_none_or(|p| p < *offset),
            "queue {queue} went from {prev:?} to {offset}"
        );
        let (order, step) = body.split_once(':').context("body shape")?;
        let (order, step): (u64, u64) = (order.parse()?, step.parse()?);
        let expected = next_step.entry(order).or_insert(0);
        ensure!(
            step == *expected,
            "order {order}: step {step} came before step {expected}"
        );
        *expected += 1;
    }
    ensure!(
        got.len() == total,
        "got {} messages, expected {total}",
        got.len()
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_subscription_receives_only_its_tags() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkTags";
    create_topic(&ns, topic, 2).await?;
    let producer = producer(&ns, "pg-tags").await?;
    let mut wanted = BTreeSet::new();
    for i in 0..30 {
        let msg = Message::new(topic, format!("t-{i}"));
        let msg = match i % 3 {
            0 => msg.with_tags("TagA"),
            1 => msg.with_tags("TagB"),
            _ => msg,
        };
        let r = producer.send(msg).await?;
        if i % 3 == 0 {
            wanted.insert(r.msg_id);
        }
    }
    let (consumer, seen) = collecting(consumer_builder(&ns, "cg-tags").subscribe(topic, "TagA"))?;
    consumer.start().await?;
    wait_count("TagA messages", &seen, wanted.len(), 30).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        seen.with(|v| v.iter().all(|m| m.message.tags() == Some("TagA"))),
        "a non-TagA message arrived"
    );
    ensure!(unique_ids(&seen) == wanted);
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_queues_and_one_takes_over() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkSplit";
    create_topic(&ns, topic, 4).await?;
    let build = |name: &str| {
        collecting(
            consumer_builder(&ns, "cg-split")
                .instance_name(name)
                .subscribe(topic, "*"),
        )
    };
    let (a, seen_a) = build("a")?;
    let (b, seen_b) = build("b")?;
    a.start().await?;
    b.start().await?;
    let owned = |c: &PushConsumer| {
        c.assigned_queues()
            .into_iter()
            .filter(|q| q.topic == topic)
            .collect::<BTreeSet<_>>()
    };
    eventually("queues split 2/2", Duration::from_secs(20), || {
        let (qa, qb) = (owned(&a), owned(&b));
        async move { (qa.len() == 2 && qb.len() == 2 && qa.is_disjoint(&qb)).then_some(()) }
    })
    .await?;
    let producer = producer(&ns, "pg-split").await?;
    let mut sent = BTreeSet::new();
    for i in 0..40 {
        sent.insert(
            producer
                .send(Message::new(topic, format!("s-{i}")))
                .await?
                .msg_id,
        );
    }
    eventually("both consumed all", Duration::from_secs(20), || {
        let n = seen_a.with(|v| v.len()) + seen_b.with(|v| v.len());
        async move { (n >= 40).then_some(()) }
    })
    .await?;
    let mut all = unique_ids(&seen_a);
    all.extend(unique_ids(&seen_b));
    ensure!(all == sent);
    ensure!(
        !seen_a.with(|v| v.is_empty()) && !seen_b.with(|v| v.is_empty()),
        "one consumer got nothing"
    );
    b.shutdown().await;
    eventually("a owns all 4 queues", Duration::from_secs(20), || {
        let n = owned(&a).len();
        async move { (n == 4).then_some(()) }
    })
    .await?;
    let before = seen_a.with(|v| v.len());
    let mut more = BTreeSet::new();
    for i in 0..20 {
        more.insert(
            producer
                .send(Message::new(topic, format!("t-{i}")))
                .await?
                .msg_id,
        );
    }
    wait_count(
        "a consumes everything after takeover",
        &seen_a,
        before + 20,
        20,
    )
    .await?;
    ensure!(more.is_subset(&unique_ids(&seen_a)));
    a.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_delivers_every_message_to_each_consumer() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkBroadcast";
    create_topic(&ns, topic, 2).await?;
    let offsets = tempfile::tempdir()?;
    let build = |name: &str| {
        collecting(
            consumer_builder(&ns, "cg-broadcast")
                .instance_name(name)
                .message_model(MessageModel::Broadcasting)
                .offset_store_dir(offsets.path())
                .subscribe(topic, "*"),
        )
    };
    let (a, seen_a) = build("a")?;
    let (b, seen_b) = build("b")?;
    a.start().await?;
    b.start().await?;
    let producer = producer(&ns, "pg-broadcast").await?;
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        sent.insert(
            producer
                .send(Message::new(topic, format!("b-{i}")))
                .await?
                .msg_id,
        );
    }
    wait_count("consumer a", &seen_a, 20, 20).await?;
    wait_count("consumer b", &seen_b, 20, 20).await?;
    ensure!(unique_ids(&seen_a) == sent && unique_ids(&seen_b) == sent);
    a.shutdown().await;
    b.shutdown().await;
    // Each instance kept its own progress in its own local file.
    for name in ["a", "b"] {
        let file = offsets
            .path()
            .join(name)
            .join("cg-broadcast")
            .join("offsets.json");
        ensure!(file.exists(), "missing {}", file.display());
    }
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sent_during_a_held_pull_arrives_quickly() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkLongPoll";
    create_topic(&ns, topic, 1).await?;
    let (consumer, seen) = collecting(
        consumer_builder(&ns, "cg-longpoll")
            .suspend_timeout(Duration::from_secs(20))
            .subscribe(topic, "*"),
    )?;
    consumer.start().await?;
    eventually("queue assigned", Duration::from_secs(20), || {
        let n = consumer
            .assigned_queues()
            .iter()
            .filter(|q| q.topic == topic)
            .count();
        async move { (n == 1).then_some(()) }
    })
    .await?;
    // Let the first pull reach the broker and be held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let producer = producer(&ns, "pg-longpoll").await?;
    let sent_at = Instant::now();
    producer.send(Message::new(topic, "wake up")).await?;
    wait_count("the message", &seen, 1, 15).await?;
    let latency = sent_at.elapsed();
    ensure!(
        latency < Duration::from_secs(5),
        "delivered after {latency:?}, the hold is 20 s"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_restart() -> Result<()> {
    let mut cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkRestart";
    create_topic(&ns, topic, 2).await?;
    let producer = producer(&ns, "pg-restart").await?;
    for i in 0..20 {
        producer
            .send(Message::new(topic, format!("old-{i}")))
            .await?;
    }
    let (consumer, seen) = collecting(consumer_builder(&ns, "cg-restart").subscribe(topic, "*"))?;
    consumer.start().await?;
    wait_count("old messages", &seen, 20, 30).await?;
    // Shutdown commits the offsets synchronously.
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.broker.stop();
    cluster.broker.restart()?;
    let producer = self::producer(&ns, "pg-restart").await?;
    let mut fresh = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fresh.len() < 10 {
        ensure!(
            Instant::now() < deadline,
            "broker did not accept sends after restart"
        );
        match producer
            .send(Message::new(topic, format!("new-{}", fresh.len())))
            .await
        {
            Ok(r) => {
                fresh.insert(r.msg_id);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let (consumer, seen) = collecting(consumer_builder(&ns, "cg-restart").subscribe(topic, "*"))?;
    consumer.start().await?;
    wait_count("new messages", &seen, 10, 30).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = unique_ids(&seen);
    ensure!(
        ids == fresh,
        "after restart got {} messages, {} of them new",
        ids.len(),
        ids.intersection(&fresh).count()
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_a_broker_kill() -> Result<()> {
    let mut cluster = Cluster::start(&["--flush-disk-type", "SYNC_FLUSH"])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkKill";
    create_topic(&ns, topic, 2).await?;
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-kill")
        .send_timeout(Duration::from_millis(1500))
        .retry_times(1)
        .build()
        .await?;
    let mut acked = BTreeSet::new();
    let mut failures = 0;
    for i in 0..120 {
        if i == 40 {
            cluster.broker.kill();
        }
        if i == 48 {
            cluster.broker.restart()?;
        }
        match producer.send(Message::new(topic, format!("k-{i}"))).await {
            Ok(r) => {
                acked.insert(r.msg_id);
            }
            Err(_) => failures += 1,
        }
    }
    ensure!(failures > 0, "the kill should have failed some sends");
    // The restarted broker must take sends again (its route comes back to the NameServer).
    let after = eventually(
        "a send accepted after restart",
        Duration::from_secs(45),
        || {
            let producer = producer.clone();
            async move {
                producer
                    .send(Message::new(topic, "after-restart"))
                    .await
                    .ok()
            }
        },
    )
    .await?;
    acked.insert(after.msg_id);
    ensure!(acked.len() >= 40, "only {} sends acknowledged", acked.len());
    let (consumer, seen) = collecting(consumer_builder(&ns, "cg-kill").subscribe(topic, "*"))?;
    consumer.start().await?;
    let want = acked.len();
    let ok = eventually("acknowledged messages", Duration::from_secs(40), || {
        let ids = unique_ids(&seen);
        let missing = acked.difference(&ids).count();
        async move { (missing == 0).then_some(()) }
    })
    .await;
    let ids = unique_ids(&seen);
    ensure!(
        ok.is_ok(),
        "{} of {want} acknowledged messages missing",
        acked.difference(&ids).count()
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_async_and_oneway_sends_are_consumed() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkSendModes";
    create_topic(&ns, topic, 2).await?;
    let producer = producer(&ns, "pg-modes").await?;
    let batch: Vec<Message> = (0..10)
        .map(|i| Message::new(topic, format!("batch-{i}")))
        .collect();
    let r = producer.send_batch(batch).await?;
    ensure!(
        r.msg_id.split(',').count() == 10,
        "batch msg ids: {}",
        r.msg_id
    );
    let handles: Vec<_> = (0..10)
        .map(|i| producer.send_async(Message::new(topic, format!("async-{i}"))))
        .collect();
    for h in handles {
        h.await??;
    }
    for i in 0..10 {
        producer
            .send_oneway(Message::new(topic, format!("oneway-{i}")))
            .await?;
    }
    let (consumer, seen) = collecting(consumer_builder(&ns, "cg-modes").subscribe(topic, "*"))?;
    consumer.start().await?;
    wait_count("30 messages", &seen, 30, 30).await?;
    let bodies: BTreeSet<String> = seen.with(|v| v.iter().map(body_of).collect());
    for prefix in ["batch", "async", "oneway"] {
        let n = bodies.iter().filter(|b| b.starts_with(prefix)).count();
        ensure!(n == 10, "{n} {prefix} messages");
    }
    // A batch occupies consecutive offsets of one queue.
    let batch_offsets: BTreeMap<i64, i32> = seen.with(|v| {
        v.iter()
            .filter(|m| body_of(m).starts_with("batch"))
            .map(|m| (m.queue_offset, m.queue_id))
            .collect()
    });
    let first = *batch_offsets.keys().next().context("batch offsets")?;
    ensure!(
        batch_offsets.keys().copied().eq(first..first + 10),
        "batch offsets {batch_offsets:?}"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_routes_lag_and_finds_messages() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkAdmin";
    create_topic(&ns, topic, 2).await?;
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    let route = admin.topic_route(topic).await?;
    ensure!(
        route
            .queue_datas
            .iter()
            .map(|q| q.write_queue_nums)
            .sum::<i32>()
            == 2
    );
    ensure!(admin.topic_list().await?.iter().any(|t| t == topic));
    let producer = producer(&ns, "pg-admin").await?;
    let mut results = Vec::new();
    for i in 0..10 {
        let msg = Message::new(topic, format!("a-{i}")).with_keys([format!("key-{i}")]);
        results.push(producer.send(msg).await?);
    }
    // The consume queues are built asynchronously after the append; wait for all ten.
    eventually("topic stats", Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let stats = admin.topic_stats(topic).await.ok()?;
            (stats
                .offset_table
                .0
                .values()
                .map(|o| o.max_offset)
                .sum::<i64>()
                == 10)
                .then_some(())
        }
    })
    .await?;

    // Mark the first queue consumed through a pull consumer, commit, then check the lag.
    let puller = tern_client::PullConsumer::builder()
        .namesrv_addr(&ns)
        .group("cg-admin")
        .consume_from(ConsumeFrom::First)
        .build()?;
    puller.start().await?;
    let queues = puller.fetch_queues(topic).await?;
    puller.assign(queues.clone()).await?;
    let first_queue = queues.first().context("a queue")?.clone();
    let in_first = results
        .iter()
        .filter(|r| r.message_queue == first_queue)
        .count() as i64;
    puller.seek(&first_queue, in_first)?;
    puller.commit().await?;
    let progress = eventually("consumer progress", Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let p = admin.consumer_progress("cg-admin", topic).await.ok()?;
            p.iter().any(|q| q.consumer_offset > 0).then_some(p)
        }
    })
    .await?;
    let lag: i64 = progress.iter().map(|q| q.lag).sum();
    let consumed: i64 = progress.iter().map(|q| q.consumer_offset.max(0)).sum();
    ensure!(
        consumed + lag == 10,
        "consumed {consumed} + lag {lag} != 10: {progress:?}"
    );
    ensure!(
        lag == 10 - in_first,
        "lag {lag}, expected {}",
        10 - in_first
    );
    puller.shutdown().await;

    let now = Admin::now_ms();
    let by_key = eventually("message by key", Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let found = admin
                .query_message_by_key(topic, "key-3", 32, 0, now + 60_000)
                .await
                .ok()?;
            (!found.is_empty()).then_some(found)
        }
    })
    .await?;
    ensure!(by_key.len() == 1 && body_of(&by_key[0]) == "a-3");
    let by_offset_id = admin
        .query_message_by_id(topic, &results[4].offset_msg_id)
        .await?;
    ensure!(body_of(&by_offset_id) == "a-4");
    let by_uniq = admin.query_message_by_id(topic, &results[5].msg_id).await?;
    ensure!(body_of(&by_uniq) == "a-5");
    let r = &results[6];
    let viewed = admin.view_message(&r.message_queue, r.queue_offset).await?;
    ensure!(body_of(&viewed) == "a-6");
    ensure!(admin.max_offset(&r.message_queue).await? > r.queue_offset);
    ensure!(admin.min_offset(&r.message_queue).await? == 0);
    let info = admin.broker_runtime_info(&cluster.broker.addr).await?;
    ensure!(!info.is_empty(), "empty broker runtime info");
    // Rewind the group to the beginning of time: every queue's offset becomes its minimum.
    let reset = admin
        .reset_offset_by_time("cg-admin", topic, 0, true)
        .await?;
    ensure!(reset.values().all(|&o| o == 0), "reset offsets {reset:?}");
    let progress = admin.consumer_progress("cg-admin", topic).await?;
    ensure!(
        progress.iter().map(|q| q.lag).sum::<i64>() == 10,
        "after reset: {progress:?}"
    );
    admin.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconsume_later_redelivers_through_the_retry_topic() -> Result<()> {
    let cluster = Cluster::start(&["--message-delay-level", "1s 1s 1s 1s 1s 1s"])?;
    let ns = cluster.namesrv_addr();
    let topic = "SdkRetry";
    create_topic(&ns, topic, 1).await?;
    let deliveries: Shared<Vec<(String, i32)>> = Shared::default();
    let d = deliveries.clone();
    let consumer = consumer_builder(&ns, "cg-retry")
        .subscribe(topic, "*")
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let d = d.clone();
            async move {
                let mut retry = false;
                d.with(|v| {
                    for m in &msgs {
                        v.push((m.message.topic.clone(), m.reconsume_times));
                        retry |= m.reconsume_times == 0;
                    }
                });
                Ok(if retry {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                })
            }
        })
        .build()?;
    consumer.start().await?;
    let producer = producer(&ns, "pg-retry").await?;
    producer.send(Message::new(topic, "retry me")).await?;
    eventually("redelivery", Duration::from_secs(30), || {
        let n = deliveries.with(|v| v.len());
        async move { (n >= 2).then_some(()) }
    })
    .await?;
    let got = deliveries.with(|v| v.clone());
    ensure!(
        got[0] == (topic.to_string(), 0),
        "first delivery {:?}",
        got[0]
    );
    ensure!(
        got[1] == (topic.to_string(), 1),
        "redelivery keeps the topic and counts: {:?}",
        got[1]
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
