//! End-to-end tests of transactional messages: the SDK's `TransactionProducer` against real
//! `tern-nameserver` and `tern-broker` processes (PROTOCOL.md §5).
//!
//! Method: each test starts its own NameServer and broker with a check-back pass every 300 ms,
//! a 1 s transaction timeout and at most 3 checks, drives a transaction through the SDK, then
//! reads the real topic from offset 0 with a pull consumer and counts the copies of each
//! message id. Invariant checked everywhere: a committed transaction appears on the real topic
//! exactly once, a rolled-back or discarded one never. Waits are bounded by `eventually`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tern_client::transaction::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
use tern_client::Admin;
use tern_common::message::{decode_offset_msg_id, Message, MessageExt};
use tern_common::protocol::header::EndTransactionRequestHeader;
use tern_common::protocol::{RemotingCommand, RequestCode, SerializeType};
use tern_common::remoting::client::{ClientConfig as RemotingConfig, RemotingClient};
use tern_tests::{create_topic, eventually, read_topic, Cluster};

const BROKER_ARGS: [&str; 6] = [
    "--transaction-check-interval-ms",
    "300",
    "--transaction-timeout-ms",
    "1000",
    "--transaction-check-max",
    "3",
];

/// A listener with fixed answers that counts its calls.
#[derive(Default)]
struct Scripted {
    execute: Mutex<Option<LocalTransactionState>>,
    check: Mutex<Option<LocalTransactionState>>,
    executes: AtomicUsize,
    checks: AtomicUsize,
}

impl Scripted {
    fn new(execute: LocalTransactionState, check: LocalTransactionState) -> Arc<Self> {
        Arc::new(Scripted {
            execute: Mutex::new(Some(execute)),
            check: Mutex::new(Some(check)),
            ..Default::default()
        })
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

impl TransactionListener for Scripted {
    fn execute_local_transaction(
        &self,
        _msg: &Message,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        self.executes.fetch_add(1, Ordering::SeqCst);
        self.execute
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(LocalTransactionState::Unknown)
    }

    fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(LocalTransactionState::Unknown)
    }
}

async fn tx_producer(
    ns: &str,
    group: &str,
    listener: Arc<Scripted>,
    topic: &str,
) -> Result<TransactionProducer> {
    Ok(TransactionProducer::builder()
        .namesrv_addr(ns)
        .group(group)
        .send_timeout(Duration::from_secs(5))
        .listener_arc(listener)
        .warm_up_topics([topic])
        .build()
        .await?)
}

async fn copies_of(ns: &str, topic: &str, id: &str) -> Result<usize> {
    Ok(read_topic(ns, "tx-reader", topic)
        .await?
        .get(id)
        .copied()
        .unwrap_or(0))
}

/// Waits until `id` shows up on `topic`, then a little longer, and returns its copy count.
async fn settle_copies(ns: &str, topic: &str, id: &str) -> Result<usize> {
    eventually(
        "committed message visible",
        Duration::from_secs(20),
        || async move { copies_of(ns, topic, id).await.ok().filter(|n| *n > 0) },
    )
    .await?;
    // More check-back passes run meanwhile; a second copy would appear here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    copies_of(ns, topic, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_is_consumed_exactly_once() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxCommit";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(
        LocalTransactionState::Commit,
        LocalTransactionState::Rollback,
    );
    let producer = tx_producer(&ns, "pg-tx-commit", listener.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-1"), None)
        .await?;
    ensure!(r.local_state == LocalTransactionState::Commit);
    ensure!(
        r.send_result.transaction_id.is_some(),
        "half message without transaction id"
    );
    let n = settle_copies(&ns, topic, &r.send_result.msg_id).await?;
    ensure!(n == 1, "{n} copies of a committed message");
    ensure!(
        listener.checks() == 0,
        "a committed transaction was checked back"
    );
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_never_delivered() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxRollback";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(
        LocalTransactionState::Rollback,
        LocalTransactionState::Commit,
    );
    let producer = tx_producer(&ns, "pg-tx-rollback", listener.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-2"), None)
        .await?;
    ensure!(r.local_state == LocalTransactionState::Rollback);
    // Past the timeout plus several passes: a wrongly unresolved half would be checked and,
    // with this listener, committed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ensure!(
        copies_of(&ns, topic, &r.send_result.msg_id).await? == 0,
        "rolled back message delivered"
    );
    ensure!(
        listener.checks() == 0,
        "a rolled back transaction was checked back"
    );
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_then_check_back_commits() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxCheckCommit";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Commit,
    );
    let producer = tx_producer(&ns, "pg-tx-check-commit", listener.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-3"), None)
        .await?;
    ensure!(r.local_state == LocalTransactionState::Unknown);
    let n = settle_copies(&ns, topic, &r.send_result.msg_id).await?;
    ensure!(n == 1, "{n} copies after a check-back commit");
    ensure!(listener.checks() >= 1, "committed without a check-back");
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_then_check_back_rolls_back() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxCheckRollback";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Rollback,
    );
    let producer = tx_producer(&ns, "pg-tx-check-rollback", listener.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-4"), None)
        .await?;
    let l = listener.clone();
    eventually("check-back", Duration::from_secs(15), || {
        let l = l.clone();
        async move { (l.checks() >= 1).then_some(()) }
    })
    .await?;
    // Once rolled back it is never checked again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let checks = listener.checks();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        listener.checks() == checks,
        "checked again after a rollback"
    );
    ensure!(
        copies_of(&ns, topic, &r.send_result.msg_id).await? == 0,
        "rolled back message delivered"
    );
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_of_the_group_answers_the_check() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxOtherInstance";
    let group = "pg-tx-other";
    create_topic(&ns, topic, 2).await?;
    let first = Scripted::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Rollback,
    );
    let producer = tx_producer(&ns, group, first.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-5"), None)
        .await?;
    // The sender goes away before any check-back.
    producer.shutdown().await;
    drop(producer);
    let second = Scripted::new(
        LocalTransactionState::Rollback,
        LocalTransactionState::Commit,
    );
    let other = tx_producer(&ns, group, second.clone(), topic).await?;
    let n = settle_copies(&ns, topic, &r.send_result.msg_id).await?;
    ensure!(n == 1, "{n} copies");
    ensure!(second.checks() >= 1, "the second instance was never asked");
    ensure!(first.checks() == 0, "the stopped instance answered");
    other.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_between_half_and_end_commits_once_after_restart() -> Result<()> {
    let mut cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxCrash";
    let group = "pg-tx-crash";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(LocalTransactionState::Commit, LocalTransactionState::Commit);
    // The local transaction blocks until the test killed the broker, so END_TRANSACTION
    // cannot reach it.
    let (stored_tx, stored_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    struct Gate {
        inner: Arc<Scripted>,
        stored: Mutex<std::sync::mpsc::Sender<()>>,
        go: Mutex<std::sync::mpsc::Receiver<()>>,
    }
    impl TransactionListener for Gate {
        fn execute_local_transaction(
            &self,
            msg: &Message,
            arg: Option<&(dyn std::any::Any + Send + Sync)>,
        ) -> LocalTransactionState {
            let _ = self
                .stored
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(());
            let _ = self
                .go
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(Duration::from_secs(30));
            self.inner.execute_local_transaction(msg, arg)
        }
        fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
            self.inner.check_local_transaction(msg)
        }
    }
    let gate = Gate {
        inner: listener.clone(),
        stored: Mutex::new(stored_tx),
        go: Mutex::new(go_rx),
    };
    let producer = TransactionProducer::builder()
        .namesrv_addr(&ns)
        .group(group)
        .listener(gate)
        .warm_up_topics([topic])
        .build()
        .await?;
    let p = producer.clone();
    let send = tokio::spawn(async move {
        p.send_in_transaction(Message::new(topic, "order-6"), None)
            .await
    });
    tokio::task::spawn_blocking(move || stored_rx.recv_timeout(Duration::from_secs(20))).await??;
    cluster.broker.kill();
    go_tx.send(())?;
    let r: TransactionSendResult = send.await??;
    producer.shutdown().await;
    cluster.broker.restart()?;
    let new_addr = cluster.broker.addr.clone();
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    eventually(
        "route to the restarted broker",
        Duration::from_secs(20),
        || {
            let admin = admin.clone();
            let new_addr = new_addr.clone();
            async move {
                let route = admin.topic_route(topic).await.ok()?;
                route
                    .broker_datas
                    .iter()
                    .any(|b| b.broker_addrs.get(&0) == Some(&new_addr))
                    .then_some(())
            }
        },
    )
    .await?;
    admin.shutdown().await;
    // A fresh instance of the group (the old connections are gone) answers the check-back.
    let after = Scripted::new(
        LocalTransactionState::Rollback,
        LocalTransactionState::Commit,
    );
    let answer = eventually("producer after restart", Duration::from_secs(20), || {
        let after = after.clone();
        let ns = ns.clone();
        async move { tx_producer(&ns, group, after, topic).await.ok() }
    })
    .await?;
    let n = settle_copies(&ns, topic, &r.send_result.msg_id).await?;
    ensure!(n == 1, "{n} copies after the crash");
    ensure!(after.checks() >= 1, "no check-back after the restart");
    answer.shutdown().await;
    drop(cluster.dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_past_max_checks_moves_to_trans_check_max_topic() -> Result<()> {
    let mut cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxNeverDecided";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Unknown,
    );
    let producer = tx_producer(&ns, "pg-tx-max", listener.clone(), topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-7"), None)
        .await?;
    let l = listener.clone();
    eventually("three check-backs", Duration::from_secs(20), || {
        let l = l.clone();
        async move { (l.checks() >= 3).then_some(()) }
    })
    .await?;
    // After the third check the next pass discards it: no further checks.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let checks = listener.checks();
    ensure!(checks == 3, "{checks} check-backs with a maximum of 3");
    ensure!(
        copies_of(&ns, topic, &r.send_result.msg_id).await? == 0,
        "undecided message delivered"
    );
    producer.shutdown().await;
    // The discarded half message sits in TRANS_CHECK_MAX_TIME_TOPIC queue 0.
    cluster.broker.stop();
    let units = consume_queue_units(
        &cluster.dir.path().join("broker-a"),
        "TRANS_CHECK_MAX_TIME_TOPIC",
    )?;
    ensure!(units == 1, "{units} entries in TRANS_CHECK_MAX_TIME_TOPIC");
    Ok(())
}

/// Non-empty 20-byte units in the ConsumeQueue files of `topic` queue 0.
fn consume_queue_units(store: &std::path::Path, topic: &str) -> Result<usize> {
    let dir = store.join("consumequeue").join(topic).join("0");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let bytes = std::fs::read(entry?.path())?;
        n += bytes
            .chunks_exact(20)
            .filter(|u| u.iter().any(|b| *b != 0))
            .count();
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_end_transaction_commit_yields_one_copy() -> Result<()> {
    let cluster = Cluster::start(&BROKER_ARGS)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxDuplicateEnd";
    let group = "pg-tx-dup";
    create_topic(&ns, topic, 2).await?;
    let listener = Scripted::new(LocalTransactionState::Commit, LocalTransactionState::Commit);
    let producer = tx_producer(&ns, group, listener, topic).await?;
    let r = producer
        .send_in_transaction(Message::new(topic, "order-8"), None)
        .await?;
    // A retrying producer: the same commit again, oneway and then twice at once with a reply.
    let (_, commit_log_offset) = decode_offset_msg_id(&r.send_result.offset_msg_id)?;
    let header = EndTransactionRequestHeader {
        producer_group: group.to_string(),
        tran_state_table_offset: r.send_result.queue_offset,
        commit_log_offset,
        commit_or_rollback: 8,
        from_transaction_check: Some(false),
        msg_id: r.send_result.msg_id.clone(),
        transaction_id: r.send_result.transaction_id.clone(),
        topic: Some(topic.to_string()),
        broker_name: None,
    };
    let client = RemotingClient::new(RemotingConfig {
        serialize_type: SerializeType::Json,
        ..Default::default()
    });
    let addr = cluster.broker.addr.clone();
    client
        .invoke_oneway(
            &addr,
            RemotingCommand::request(RequestCode::EndTransaction, &header).oneway(),
        )
        .await?;
    let (a, b) = tokio::join!(
        client.invoke(
            &addr,
            RemotingCommand::request(RequestCode::EndTransaction, &header),
            Duration::from_secs(5)
        ),
        client.invoke(
            &addr,
            RemotingCommand::request(RequestCode::EndTransaction, &header),
            Duration::from_secs(5)
        ),
    );
    ensure!(
        a?.code == 0 && b?.code == 0,
        "duplicate commits must be acknowledged"
    );
    let n = settle_copies(&ns, topic, &r.send_result.msg_id).await?;
    ensure!(n == 1, "{n} copies after duplicated END_TRANSACTION");
    // A commit naming a different producer group is refused.
    let mut wrong = header.clone();
    wrong.producer_group = "someone-else".into();
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(RequestCode::EndTransaction, &wrong),
            Duration::from_secs(5),
        )
        .await?;
    ensure!(resp.code == 1, "wrong group answered {}", resp.code);
    client.shutdown();
    producer.shutdown().await;
    Ok(())
}

/// A committed transactional message that carries a delay level is scheduled like a send
/// (PROTOCOL.md §6.2 applies to COMMIT records). Java's SDK strips `DELAY` from half messages,
/// so this drives the raw protocol as other clients may: a half message with `DELAY=2`, then
/// END_TRANSACTION commit; the message must not reach the real topic before level 2 (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_message_with_delay_level_is_scheduled() -> Result<()> {
    use tern_common::message::{encode_properties, new_uniq_id, property_key};
    use tern_common::protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};

    let mut args = BROKER_ARGS.to_vec();
    args.extend(["--message-delay-level", "1s 2s 3s"]);
    let cluster = Cluster::start(&args)?;
    let ns = cluster.namesrv_addr();
    let topic = "TxDelayed";
    let group = "pg-tx-delay";
    create_topic(&ns, topic, 1).await?;

    let uniq = new_uniq_id();
    let mut props = std::collections::BTreeMap::new();
    props.insert(property_key::TRAN_MSG.to_string(), "true".to_string());
    props.insert(property_key::PGROUP.to_string(), group.to_string());
    props.insert(property_key::DELAY.to_string(), "2".to_string());
    props.insert(property_key::UNIQ_KEY.to_string(), uniq.clone());
    let send = SendMessageRequestHeader {
        producer_group: group.to_string(),
        topic: topic.to_string(),
        default_topic: "TBW102".to_string(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0x4,
        born_timestamp: 0,
        flag: 0,
        properties: Some(encode_properties(&props)),
        reconsume_times: None,
        unit_mode: None,
        max_reconsume_times: None,
        batch: None,
        broker_name: None,
    };
    let client = RemotingClient::new(RemotingConfig {
        serialize_type: SerializeType::Json,
        ..Default::default()
    });
    let addr = cluster.broker.addr.clone();
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(RequestCode::SendMessage, &send).with_body("delayed-order"),
            Duration::from_secs(5),
        )
        .await?;
    ensure!(resp.code == 0, "half message refused: {:?}", resp.remark);
    let sent: SendMessageResponseHeader = resp.decode_header()?;
    let (_, commit_log_offset) = decode_offset_msg_id(&sent.msg_id)?;
    let end = EndTransactionRequestHeader {
        producer_group: group.to_string(),
        tran_state_table_offset: sent.queue_offset,
        commit_log_offset,
        commit_or_rollback: 8,
        from_transaction_check: Some(false),
        msg_id: uniq.clone(),
        transaction_id: sent.transaction_id.clone(),
        topic: Some(topic.to_string()),
        broker_name: None,
    };
    let committed_at = std::time::Instant::now();
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(RequestCode::EndTransaction, &end),
            Duration::from_secs(5),
        )
        .await?;
    ensure!(resp.code == 0, "commit refused: {:?}", resp.remark);
    tokio::time::sleep(Duration::from_millis(700)).await;
    ensure!(
        copies_of(&ns, topic, &uniq).await? == 0,
        "a delayed commit was delivered at once"
    );
    let n = settle_copies(&ns, topic, &uniq).await?;
    ensure!(
        committed_at.elapsed() >= Duration::from_secs(2),
        "delivered before its delay level"
    );
    ensure!(n == 1, "{n} copies of a delayed committed message");
    client.shutdown();
    Ok(())
}
