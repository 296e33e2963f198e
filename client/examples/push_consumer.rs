//! Consumes `ExampleTopic` (tags TagA or TagB) for 30 seconds with a concurrent handler.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p tern-client --example push_consumer`.

use std::time::Duration;

use tern_client::{ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, PushConsumer};
use tern_common::message::MessageExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let consumer = PushConsumer::builder()
        .namesrv_addr(&namesrv)
        .group("example-consumer")
        .subscribe("ExampleTopic", "TagA || TagB")
        .consume_from(ConsumeFrom::First)
        .consume_thread_count(4)
        .register_concurrent(|msgs: Vec<MessageExt>, ctx: ConsumeContext| async move {
            for m in &msgs {
                println!(
                    "{} offset {}: {}",
                    ctx.message_queue,
                    m.queue_offset,
                    String::from_utf8_lossy(&m.message.body)
                );
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        })
        .build()?;
    consumer.start().await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    consumer.shutdown().await;
    Ok(())
}
