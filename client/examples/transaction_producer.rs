//! Sends transactional messages: even orders commit at once, odd ones answer "unknown" and
//! are committed when the broker checks back; order 9 rolls back.
//!
//! ```text
//! cargo run -p tern-client --example transaction_producer -- 127.0.0.1:9876 TxOrders
//! ```

use std::any::Any;
use std::time::Duration;

use tern_client::transaction::{LocalTransactionState, TransactionListener, TransactionProducer};
use tern_common::message::{Message, MessageExt};

/// The application's local transactions: here, a decision from the order number.
struct Orders;

impl TransactionListener for Orders {
    fn execute_local_transaction(
        &self,
        msg: &Message,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let order = arg
            .and_then(|a| a.downcast_ref::<u32>())
            .copied()
            .unwrap_or(0);
        println!(
            "local transaction for order {order} ({} bytes)",
            msg.body.len()
        );
        match order {
            9 => LocalTransactionState::Rollback,
            n if n % 2 == 0 => LocalTransactionState::Commit,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        println!("broker checks back on {}", msg.unique_id());
        LocalTransactionState::Commit
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".to_string());
    let topic = args.next().unwrap_or_else(|| "TxOrders".to_string());
    let producer = TransactionProducer::builder()
        .namesrv_addr(&namesrv)
        .group("example-tx-producer")
        .listener(Orders)
        .build()
        .await?;
    for order in 0u32..10 {
        let msg = Message::new(topic.as_str(), format!("order {order}"))
            .with_keys([format!("order-{order}")]);
        let result = producer.send_in_transaction(msg, Some(&order)).await?;
        println!(
            "order {order}: id {} half offset {} -> {:?}",
            result.send_result.msg_id, result.send_result.queue_offset, result.local_state
        );
    }
    // Stay up long enough to answer the broker's check-backs (default timeout 6 s, pass 30 s).
    tokio::time::sleep(Duration::from_secs(45)).await;
    producer.shutdown().await;
    Ok(())
}
