//! Broker-forwarded admin requests answered by the SDK's push consumer (PROTOCOL.md §2.6):
//! GET_CONSUMER_RUNNING_INFO (307) and CONSUME_MESSAGE_DIRECTLY (309), sent by an admin
//! client to the broker, which forwards them to the consumer's connection.
//!
//! Method: one NameServer and one broker from the `tern_tests` harness, a producer, and a
//! push consumer whose handler records every body it sees and answers ReconsumeLater for
//! bodies starting with `later`. The admin requests go through [`Admin::invoke_raw`] in
//! MessagePack and in JSON; answers are decoded with the SDK's public body types.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tern_client::consumer::running::PROP_CONSUME_TYPE;
use tern_client::consumer::{CmResult, ConsumeMessageDirectlyResult, ConsumerRunningInfo};
use tern_client::{
    Admin, ConsumeConcurrentlyStatus, ConsumeContext, ConsumeFrom, Producer, PushConsumer,
    SerializeType,
};
use tern_common::message::{Message, MessageExt};
use tern_common::protocol::body::decode_body;
use tern_common::protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
};
use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_tests::{create_topic, eventually, Cluster};

/// Bodies seen by the handler, in order, shared with the test.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    /// Records one body.
    fn push(&self, body: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(body);
        }
    }

    /// How many times `body` was seen.
    fn count(&self, body: &str) -> usize {
        self.0
            .lock()
            .map(|v| v.iter().filter(|b| *b == body).count())
            .unwrap_or(0)
    }
}

const TOPIC: &str = "ConsumerAdminTopic";
const GROUP: &str = "cg-consumer-admin";

/// A running-info request for the test's consumer.
fn running_info_request(client_id: &str, st: SerializeType) -> RemotingCommand {
    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: GROUP.to_string(),
        client_id: client_id.to_string(),
        jstack_enable: Some(false),
    };
    RemotingCommand::request(RequestCode::GetConsumerRunningInfo, &header).with_serialize_type(st)
}

/// A consume-directly request for the stored message `offset_msg_id`.
fn consume_directly_request(client_id: &str, offset_msg_id: &str) -> RemotingCommand {
    let header = ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: GROUP.to_string(),
        client_id: Some(client_id.to_string()),
        msg_id: Some(offset_msg_id.to_string()),
        broker_name: None,
        topic: Some(TOPIC.to_string()),
        topic_sys_flag: None,
        group_sys_flag: None,
    };
    RemotingCommand::request(RequestCode::ConsumeMessageDirectly, &header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_info_and_consume_directly_through_the_broker() -> Result<()> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let broker = cluster.broker.addr.clone();
    create_topic(&ns, TOPIC, 4).await?;

    let seen = Arc::new(Seen::default());
    let handler_seen = seen.clone();
    let consumer = PushConsumer::builder()
        .namesrv_addr(&ns)
        .group(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::First)
        .persist_interval(Duration::from_millis(200))
        .register_concurrent(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let seen = handler_seen.clone();
            async move {
                let mut later = false;
                for m in &msgs {
                    let body = String::from_utf8_lossy(&m.message.body).to_string();
                    later |= body.starts_with("later");
                    seen.push(body);
                }
                Ok(if later {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                })
            }
        })
        .build()?;
    consumer.start().await?;
    let client_id = consumer.client_id().context("no client id")?;
    let producer = Producer::builder()
        .namesrv_addr(&ns)
        .group("pg-consumer-admin")
        .build()
        .await?;
    let sent = producer.send(Message::new(TOPIC, "hello")).await?;
    eventually("hello consumed", Duration::from_secs(10), || {
        let n = seen.count("hello");
        async move { (n == 1).then_some(()) }
    })
    .await?;

    let admin = Admin::builder().namesrv_addr(&ns).build().await?;
    // 307 in both encodings: the consumer's settings, subscriptions and queue snapshots; the
    // committed offsets add up to the one consumed message.
    for st in [SerializeType::MsgPack, SerializeType::Json] {
        let info: ConsumerRunningInfo = eventually(
            "running info with the commit",
            Duration::from_secs(10),
            || {
                let (admin, broker, id) = (admin.clone(), broker.clone(), client_id.clone());
                async move {
                    let r = admin
                        .invoke_raw(&broker, running_info_request(&id, st))
                        .await
                        .ok()?;
                    if r.code != i32::from(ResponseCode::Success) {
                        return None;
                    }
                    let info: ConsumerRunningInfo = decode_body(&r.body, r.serialize_type).ok()?;
                    let committed: i64 = info
                        .mq_table
                        .iter()
                        .filter(|(mq, _)| mq.topic == TOPIC)
                        .map(|(_, q)| q.commit_offset.max(0))
                        .sum();
                    (committed == 1).then_some(info)
                }
            },
        )
        .await
        .with_context(|| format!("{st:?}"))?;
        ensure!(
            info.properties.get(PROP_CONSUME_TYPE).map(String::as_str) == Some("CONSUME_PASSIVELY"),
            "{:?}",
            info.properties
        );
        ensure!(
            info.properties.get("messageModel").map(String::as_str) == Some("CLUSTERING"),
            "{:?}",
            info.properties
        );
        ensure!(
            info.properties.get("consumerGroup").map(String::as_str) == Some(GROUP),
            "{:?}",
            info.properties
        );
        ensure!(
            info.subscription_set.iter().any(|s| s.topic == TOPIC),
            "subscriptions: {:?}",
            info.subscription_set
        );
        let queues = info.mq_table.keys().filter(|mq| mq.topic == TOPIC).count();
        ensure!(queues == 4, "queue snapshots: {:?}", info.mq_table);
        ensure!(
            info.mq_table
                .values()
                .all(|q| q.cached_msg_count == 0 && !q.droped),
            "{:?}",
            info.mq_table
        );
    }

    // 309: the stored message runs through the handler again, outside the queue machinery.
    let r = admin
        .invoke_raw(
            &broker,
            consume_directly_request(&client_id, &sent.offset_msg_id),
        )
        .await?;
    ensure!(
        r.code == i32::from(ResponseCode::Success),
        "consume directly answered {} {:?}",
        r.code,
        r.remark
    );
    let result: ConsumeMessageDirectlyResult = decode_body(&r.body, r.serialize_type)?;
    ensure!(result.consume_result == CmResult::CrSuccess, "{result:?}");
    ensure!(!result.order && result.auto_commit, "{result:?}");
    ensure!(seen.count("hello") == 2, "the handler did not run again");

    // A handler asking for a retry reports CR_LATER.
    let later = producer.send(Message::new(TOPIC, "later-1")).await?;
    let r = admin
        .invoke_raw(
            &broker,
            consume_directly_request(&client_id, &later.offset_msg_id),
        )
        .await?;
    let result: ConsumeMessageDirectlyResult = decode_body(&r.body, r.serialize_type)?;
    ensure!(result.consume_result == CmResult::CrLater, "{result:?}");

    // A client id the broker does not know: the broker's own SYSTEM_ERROR.
    let r = admin
        .invoke_raw(
            &broker,
            running_info_request("nobody@1", SerializeType::MsgPack),
        )
        .await?;
    ensure!(
        r.code == i32::from(ResponseCode::SystemError),
        "unknown client answered {}",
        r.code
    );

    consumer.shutdown().await;
    producer.shutdown().await;
    admin.shutdown().await;
    Ok(())
}
