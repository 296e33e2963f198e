//! Assigns every queue of `ExampleTopic` to a pull consumer and polls for ten seconds.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p tern-client --example pull_consumer`.

use std::time::{Duration, Instant};

use tern_client::{ConsumeFrom, PullConsumer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let consumer = PullConsumer::builder()
        .namesrv_addr(&namesrv)
        .group("example-pull")
        .consume_from(ConsumeFrom::First)
        .build()?;
    consumer.start().await?;
    let queues = consumer.fetch_queues("ExampleTopic").await?;
    consumer.assign(queues).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for m in consumer.poll(Duration::from_secs(1)).await? {
            println!(
                "{} q{} offset {}",
                m.message.topic, m.queue_id, m.queue_offset
            );
        }
    }
    consumer.commit().await?;
    consumer.shutdown().await;
    Ok(())
}
