//! Transaction benchmarks against real processes (ignored by default; run with
//! `cargo test -p tern-tests --test transaction_bench -- --ignored --nocapture`).
//!
//! Method: one NameServer and one broker (debug binaries from the harness, check pass every
//! 300 ms, timeout 1 s). (1) `TX_BENCH_SENDS` transactional sends that commit at once, 256 in
//! flight, report sends/s and latency percentiles of `send_in_transaction`; every committed
//! message must then be on the topic exactly once. (2) A backlog of `TX_BENCH_BACKLOG` half
//! messages answered "unknown", then the time until the broker checked every one back and
//! committed it, reported as check-backs/s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use tern_client::transaction::{LocalTransactionState, TransactionListener, TransactionProducer};
use tern_client::Admin;
use tern_common::message::{Message, MessageExt};
use tern_tests::{eventually, read_topic, start_broker, start_nameserver, wait_for_cluster};

struct Fixed {
    execute: LocalTransactionState,
    checks: AtomicUsize,
}

impl TransactionListener for Fixed {
    fn execute_local_transaction(
        &self,
        _msg: &Message,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        self.execute
    }

    fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::Relaxed);
        LocalTransactionState::Commit
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn transaction_throughput_and_check_back_rate() -> Result<()> {
    let sends = env_usize("TX_BENCH_SENDS", 5000);
    let backlog = env_usize("TX_BENCH_BACKLOG", 2000);
    let in_flight = 256;
    let dir = tempfile::tempdir()?;
    let namesrv = start_nameserver(dir.path(), &[])?;
    let args = [
        "--transaction-check-interval-ms",
        "300",
        "--transaction-timeout-ms",
        "1000",
    ];
    let _broker = start_broker(&namesrv.addr, &dir.path().join("broker-a"), &args)?;
    let ns = namesrv.addr.clone();
    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    let cluster = wait_for_cluster(&admin, Duration::from_secs(20)).await?;
    for topic in ["TxBenchCommit", "TxBenchBacklog"] {
        admin.create_topic(&cluster, topic, 4).await?;
    }
    admin.shutdown().await;

    // (1) Commit throughput with 256 in flight.
    let committing = Arc::new(Fixed {
        execute: LocalTransactionState::Commit,
        checks: AtomicUsize::new(0),
    });
    let producer = TransactionProducer::builder()
        .namesrv_addr(&ns)
        .group("pg-tx-bench")
        .listener_arc(committing.clone())
        .warm_up_topics(["TxBenchCommit"])
        .build()
        .await?;
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(sends);
    for i in 0..sends {
        let permit = gate.clone().acquire_owned().await?;
        let p = producer.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = p
                .send_in_transaction(Message::new("TxBenchCommit", format!("tx-{i}")), None)
                .await;
            drop(permit);
            r.map(|r| (r.send_result.msg_id, t.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(sends);
    let mut ids = Vec::with_capacity(sends);
    for h in handles {
        let (id, lat) = h.await??;
        ids.push(id);
        latencies.push(lat);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "commit: {sends} transactions, {in_flight} in flight, {:.0} tx/s, p50 {:?} p90 {:?} p99 {:?} p999 {:?}",
        sends as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    let seen = eventually("all commits visible", Duration::from_secs(60), || {
        let ns = ns.clone();
        async move {
            read_topic(&ns, "tx-bench-reader", "TxBenchCommit")
                .await
                .ok()
                .filter(|m| m.len() >= sends)
        }
    })
    .await?;
    ensure!(
        ids.iter().all(|id| seen.get(id) == Some(&1)),
        "a commit is missing or duplicated"
    );
    producer.shutdown().await;

    // (2) Check-back rate for a backlog of undecided half messages.
    let undecided = Arc::new(Fixed {
        execute: LocalTransactionState::Unknown,
        checks: AtomicUsize::new(0),
    });
    let producer = TransactionProducer::builder()
        .namesrv_addr(&ns)
        .group("pg-tx-backlog")
        .listener_arc(undecided.clone())
        .check_concurrency(8)
        .warm_up_topics(["TxBenchBacklog"])
        .build()
        .await?;
    let mut handles = Vec::with_capacity(backlog);
    for i in 0..backlog {
        let permit = gate.clone().acquire_owned().await?;
        let p = producer.clone();
        handles.push(tokio::spawn(async move {
            let r = p
                .send_in_transaction(Message::new("TxBenchBacklog", format!("b-{i}")), None)
                .await;
            drop(permit);
            r
        }));
    }
    for h in handles {
        h.await??;
    }
    let backlog_done = Instant::now();
    let u = undecided.clone();
    eventually("every half checked back", Duration::from_secs(120), || {
        let u = u.clone();
        async move { (u.checks.load(Ordering::Relaxed) >= backlog).then_some(()) }
    })
    .await?;
    let check_time = backlog_done.elapsed();
    let seen = eventually("backlog committed", Duration::from_secs(60), || {
        let ns = ns.clone();
        async move {
            read_topic(&ns, "tx-bench-reader", "TxBenchBacklog")
                .await
                .ok()
                .filter(|m| m.len() >= backlog)
        }
    })
    .await?;
    let committed_time = backlog_done.elapsed();
    ensure!(
        seen.values().all(|n| *n == 1),
        "a backlog message was committed twice"
    );
    println!(
        "check-back: backlog {backlog}, all checked {:?} after the last send (includes the 1 s timeout), \
         {:.0} checks/s; all committed and visible after {:?}",
        check_time,
        backlog as f64 / check_time.as_secs_f64(),
        committed_time,
    );
    producer.shutdown().await;
    Ok(())
}
