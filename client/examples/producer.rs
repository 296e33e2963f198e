//! Sends ten messages synchronously, one asynchronously, one oneway and one batch.
//!
//! Run against a local cluster: `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p tern-client --example producer`.

use tern_client::Producer;
use tern_common::message::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .namesrv_addr(&namesrv)
        .group("example-producer")
        .build()
        .await?;
    for i in 0..10 {
        let msg = Message::new("ExampleTopic", format!("hello {i}"))
            .with_tags(if i % 2 == 0 { "TagA" } else { "TagB" })
            .with_keys([format!("order-{i}")]);
        let r = producer.send(msg).await?;
        println!(
            "sent {} -> {} offset {} ({:?})",
            r.msg_id, r.message_queue, r.queue_offset, r.status
        );
    }
    let handle = producer.send_async(Message::new("ExampleTopic", "async hello"));
    println!("async: {:?}", handle.await??.msg_id);
    producer
        .send_oneway(Message::new("ExampleTopic", "oneway hello"))
        .await?;
    let batch = (0..3)
        .map(|i| Message::new("ExampleTopic", format!("batch {i}")))
        .collect();
    println!("batch: {}", producer.send_batch(batch).await?.msg_id);
    producer.shutdown().await;
    Ok(())
}
