//! Sends the steps of several orders so that each order's steps land in one queue, in order
//! (consume them with an orderly push consumer to see them in sequence).
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p tern-client --example ordered_producer`.

use tern_client::producer::SelectByHash;
use tern_client::Producer;
use tern_common::message::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .namesrv_addr(&namesrv)
        .group("example-ordered")
        .build()
        .await?;
    for step in ["created", "paid", "shipped", "delivered"] {
        for order_id in 0u64..5 {
            let msg = Message::new("ExampleOrderTopic", format!("order {order_id} {step}"))
                .with_keys([format!("order-{order_id}")]);
            let r = producer
                .send_with_selector(msg, &SelectByHash, &order_id)
                .await?;
            println!("order {order_id} {step} -> {}", r.message_queue);
        }
    }
    producer.shutdown().await;
    Ok(())
}
