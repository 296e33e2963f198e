//! Cluster, topic, consumer-group and broker commands.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use tern_common::route::{perm, TopicConfig, TopicFilterType, TopicRouteData};

use crate::admin::{describe_client_error, AdminClient};
use crate::output::{format_ms, print_json, Table};
use crate::time_arg::{now_ms, parse_time_ms};

/// `tern cluster ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCmd {
    /// Every cluster, its brokers and their addresses.
    List,
}

/// `tern topic ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCmd {
    /// Create a topic (UPDATE_AND_CREATE_TOPIC on each chosen broker).
    Create(TopicWriteArgs),
    /// Change an existing topic's queue counts or permissions (unset values are kept).
    Update(TopicWriteArgs),
    /// Delete a topic from its brokers and from the NameServers.
    Delete {
        /// Topic name.
        topic: String,
        /// Only from this cluster's brokers (default: every broker of the topic's route).
        #[arg(short = 'c', long)]
        cluster: Option<String>,
    },
    /// Every topic the NameServer knows.
    List {
        /// Also list system topics (TBW102, %RETRY%..., RMQ_SYS_..., broker and cluster names).
        #[arg(long)]
        all: bool,
    },
    /// The route of a topic: brokers, addresses, queue counts and permissions.
    Route {
        /// Topic name.
        topic: String,
    },
    /// Per-queue min/max offsets and last update time of a topic.
    Stats {
        /// Topic name.
        topic: String,
    },
}

/// Arguments of `topic create` and `topic update`.
#[derive(Debug, Args)]
pub(crate) struct TopicWriteArgs {
    /// Topic name.
    topic: String,
    /// Create on every master broker of this cluster.
    #[arg(short = 'c', long, conflicts_with = "broker")]
    cluster: Option<String>,
    /// Create on this broker only (`HOST:PORT`).
    #[arg(short = 'b', long)]
    broker: Option<String>,
    /// Read queues (default 8 on create).
    #[arg(short = 'r', long)]
    read_queues: Option<i32>,
    /// Write queues (default 8 on create).
    #[arg(short = 'w', long)]
    write_queues: Option<i32>,
    /// Permission bits: 2 write, 4 read, 6 read+write (default 6 on create).
    #[arg(short = 'p', long)]
    perm: Option<i32>,
    /// Mark the topic as ordered.
    #[arg(long)]
    order: bool,
}

/// `tern consumer ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConsumerCmd {
    /// Every consumer group the brokers know.
    List {
        /// Also list system groups.
        #[arg(long)]
        all: bool,
    },
    /// A group's progress: per queue the broker offset, the committed offset and the lag.
    Progress {
        /// Consumer group.
        group: String,
        /// Only this topic.
        #[arg(short = 't', long)]
        topic: Option<String>,
    },
    /// A group's live consumers and their subscriptions.
    Connections {
        /// Consumer group.
        group: String,
    },
    /// Move a group's offsets of a topic to the first message stored at or after a time.
    ResetOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Target time: now, -10m, epoch ms, 2024-01-01, 2024-01-01T12:00:00Z (UTC).
        #[arg(long, value_name = "TIME")]
        to: String,
        /// Also move offsets forward past unconsumed messages (default: only backwards... as
        /// RocketMQ's `isForce`).
        #[arg(long)]
        force: bool,
    },
}

/// `tern broker ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BrokerCmd {
    /// Runtime counters of each broker (GET_BROKER_RUNTIME_INFO).
    Info {
        /// Only this broker (`HOST:PORT`); default every master in the cluster info.
        #[arg(short = 'b', long)]
        broker: Option<String>,
    },
}

/// One broker row of `cluster list`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerRow {
    cluster: String,
    broker_name: String,
    broker_id: i64,
    addr: String,
}

/// Runs a `cluster` command.
pub(crate) async fn cluster(admin: &AdminClient, cmd: ClusterCmd, json: bool) -> Result<()> {
    match cmd {
        ClusterCmd::List => {
            let info = admin.sdk().cluster_info().await?;
            let mut rows = Vec::new();
            for (cluster, names) in &info.cluster_addr_table {
                for name in names {
                    let Some(data) = info.broker_addr_table.get(name) else {
                        continue;
                    };
                    for (id, addr) in &data.broker_addrs {
                        rows.push(BrokerRow {
                            cluster: cluster.clone(),
                            broker_name: name.clone(),
                            broker_id: *id,
                            addr: addr.clone(),
                        });
                    }
                }
            }
            if json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("no broker is registered with {}", admin.namesrv().join(";"));
                return Ok(());
            }
            let mut t = Table::new(&["CLUSTER", "BROKER", "ID", "ADDRESS"]);
            for r in rows {
                t.row(vec![
                    r.cluster,
                    r.broker_name,
                    r.broker_id.to_string(),
                    r.addr,
                ]);
            }
            t.print();
            Ok(())
        }
    }
}

/// Whether `topic` is one of RocketMQ's system topics (or a retry/DLQ topic).
pub(crate) fn is_system_topic(topic: &str) -> bool {
    topic.starts_with("%RETRY%")
        || topic.starts_with("%DLQ%")
        || topic.starts_with("RMQ_SYS_")
        || topic.starts_with("rmq_sys_")
        || matches!(
            topic,
            "TBW102"
                | "SCHEDULE_TOPIC_XXXX"
                | "BenchmarkTest"
                | "OFFSET_MOVED_EVENT"
                | "SELF_TEST_TOPIC"
                | "TRANS_CHECK_MAX_TIME_TOPIC"
        )
}

/// Runs a `topic` command.
pub(crate) async fn topic(admin: &AdminClient, cmd: TopicCmd, json: bool) -> Result<()> {
    match cmd {
        TopicCmd::Create(args) => write_topic(admin, args, false, json).await,
        TopicCmd::Update(args) => write_topic(admin, args, true, json).await,
        TopicCmd::Delete { topic, cluster } => {
            let route = admin.require_route(&topic).await?;
            let targets: Vec<String> = match &cluster {
                Some(c) => admin
                    .master_brokers(Some(c))
                    .await?
                    .into_iter()
                    .map(|(_, _, addr)| addr)
                    .collect(),
                None => route
                    .broker_datas
                    .iter()
                    .flat_map(|b| b.broker_addrs.values().cloned())
                    .collect(),
            };
            for addr in &targets {
                admin.sdk().delete_topic_on(addr, &topic).await?;
            }
            admin.sdk().delete_topic_in_namesrv(&topic, None).await?;
            if json {
                return print_json(&serde_json::json!({"deleted": topic, "brokers": targets}));
            }
            println!(
                "deleted topic {topic} from {} broker(s) and the NameServer(s)",
                targets.len()
            );
            Ok(())
        }
        TopicCmd::List { all } => {
            let list = admin.sdk().topic_list().await?;
            let topics: Vec<&String> = list.iter().filter(|t| all || !is_system_topic(t)).collect();
            if json {
                return print_json(&topics);
            }
            for t in topics {
                println!("{t}");
            }
            Ok(())
        }
        TopicCmd::Route { topic } => {
            let route = admin.require_route(&topic).await?;
            if json {
                return print_json(&route);
            }
            print_route(&route);
            Ok(())
        }
        TopicCmd::Stats { topic } => {
            let route = admin.require_route(&topic).await?;
            let mut rows = Vec::new();
            for broker in &route.broker_datas {
                let Some(addr) = broker.master_addr() else {
                    continue;
                };
                let stats = admin.sdk().topic_stats_on(addr, &topic).await?;
                for (mq, off) in stats.offset_table.iter() {
                    rows.push(QueueStatsRow {
                        broker_name: mq.broker_name.clone(),
                        queue_id: mq.queue_id,
                        min_offset: off.min_offset,
                        max_offset: off.max_offset,
                        last_update_timestamp: off.last_update_timestamp,
                    });
                }
            }
            rows.sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
            if json {
                return print_json(&rows);
            }
            let mut t = Table::new(&["BROKER", "QUEUE", "MIN OFFSET", "MAX OFFSET", "LAST UPDATE"]);
            let mut total = 0i64;
            for r in &rows {
                total += r.max_offset - r.min_offset;
                t.row(vec![
                    r.broker_name.clone(),
                    r.queue_id.to_string(),
                    r.min_offset.to_string(),
                    r.max_offset.to_string(),
                    format_ms(r.last_update_timestamp),
                ]);
            }
            t.print();
            println!("{} queue(s), {total} message(s) stored", rows.len());
            Ok(())
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueStatsRow {
    broker_name: String,
    queue_id: i32,
    min_offset: i64,
    max_offset: i64,
    last_update_timestamp: i64,
}

fn print_route(route: &TopicRouteData) {
    let mut t = Table::new(&["BROKER", "CLUSTER", "ID", "ADDRESS"]);
    for b in &route.broker_datas {
        for (id, addr) in &b.broker_addrs {
            t.row(vec![
                b.broker_name.clone(),
                b.cluster.clone(),
                id.to_string(),
                addr.clone(),
            ]);
        }
    }
    t.print();
    println!();
    let mut q = Table::new(&["BROKER", "READ QUEUES", "WRITE QUEUES", "PERM"]);
    for d in &route.queue_datas {
        q.row(vec![
            d.broker_name.clone(),
            d.read_queue_nums.to_string(),
            d.write_queue_nums.to_string(),
            format!("{} ({})", perm::to_perm_string(d.perm), d.perm),
        ]);
    }
    q.print();
    if let Some(conf) = &route.order_topic_conf {
        println!("\norderTopicConf: {conf}");
    }
}

async fn write_topic(
    admin: &AdminClient,
    args: TopicWriteArgs,
    update: bool,
    json: bool,
) -> Result<()> {
    let existing = admin.topic_route(&args.topic).await?;
    if update && existing.is_none() {
        bail!(
            "topic `{}` does not exist; create it with `tern topic create`",
            args.topic
        );
    }
    // Brokers to write to: the one given, the cluster's masters, the topic's current
    // brokers (update), or every master (create).
    let targets: Vec<(String, String)> = if let Some(addr) = &args.broker {
        vec![(addr.clone(), addr.clone())]
    } else if let Some(c) = &args.cluster {
        admin
            .master_brokers(Some(c))
            .await?
            .into_iter()
            .map(|(_, name, addr)| (name, addr))
            .collect()
    } else if let (true, Some(route)) = (update, &existing) {
        route
            .broker_datas
            .iter()
            .filter_map(|b| {
                b.master_addr()
                    .map(|a| (b.broker_name.clone(), a.to_string()))
            })
            .collect()
    } else {
        admin
            .master_brokers(None)
            .await?
            .into_iter()
            .map(|(_, name, addr)| (name, addr))
            .collect()
    };
    if targets.is_empty() {
        bail!("no broker to create the topic on: is a broker registered (`tern cluster list`)?");
    }
    let mut written = Vec::new();
    for (name, addr) in targets {
        let current = existing
            .as_ref()
            .and_then(|r| r.queue_datas.iter().find(|q| q.broker_name == name));
        let mut config = TopicConfig::new(args.topic.clone(), 8);
        config.read_queue_nums = args
            .read_queues
            .or(current.map(|q| q.read_queue_nums))
            .unwrap_or(8);
        config.write_queue_nums = args
            .write_queues
            .or(current.map(|q| q.write_queue_nums))
            .unwrap_or(8);
        config.perm = args
            .perm
            .or(current.map(|q| q.perm))
            .unwrap_or(perm::PERM_READ | perm::PERM_WRITE);
        config.order = args.order;
        config.topic_filter_type = TopicFilterType::SingleTag;
        if !(1..=1024).contains(&config.read_queue_nums)
            || !(1..=1024).contains(&config.write_queue_nums)
        {
            bail!("queue counts must be between 1 and 1024");
        }
        admin.sdk().create_topic_on(&addr, &config).await?;
        written.push(serde_json::json!({
            "broker": addr,
            "readQueueNums": config.read_queue_nums,
            "writeQueueNums": config.write_queue_nums,
            "perm": config.perm,
        }));
        if !json {
            println!(
                "{} topic {} on {addr}: read {} write {} perm {}",
                if update { "updated" } else { "created" },
                args.topic,
                config.read_queue_nums,
                config.write_queue_nums,
                perm::to_perm_string(config.perm)
            );
        }
    }
    if json {
        print_json(&serde_json::json!({"topic": args.topic, "brokers": written}))?;
    }
    Ok(())
}

/// One queue of `consumer progress`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressRow {
    topic: String,
    broker_name: String,
    queue_id: i32,
    broker_offset: i64,
    consumer_offset: i64,
    lag: i64,
    last_timestamp: i64,
}

/// Runs a `consumer` command.
pub(crate) async fn consumer(admin: &AdminClient, cmd: ConsumerCmd, json: bool) -> Result<()> {
    match cmd {
        ConsumerCmd::List { all } => {
            let mut groups = std::collections::BTreeSet::new();
            for (_, _, addr) in admin.master_brokers(None).await? {
                groups.extend(admin.sdk().subscription_groups_on(&addr).await?);
            }
            let groups: Vec<String> = groups
                .into_iter()
                .filter(|g| all || !is_system_group(g))
                .collect();
            if json {
                return print_json(&groups);
            }
            for g in groups {
                println!("{g}");
            }
            Ok(())
        }
        ConsumerCmd::Progress { group, topic } => {
            let mut rows = Vec::new();
            let mut tps = 0.0;
            let mut answered = 0;
            let mut errors = Vec::new();
            for (_, name, addr) in admin.master_brokers(None).await? {
                match admin
                    .sdk()
                    .consume_stats_on(&addr, &group, topic.as_deref())
                    .await
                {
                    Ok(stats) => {
                        answered += 1;
                        tps += stats.consume_tps;
                        for (mq, o) in stats.offset_table.iter() {
                            rows.push(ProgressRow {
                                topic: mq.topic.clone(),
                                broker_name: mq.broker_name.clone(),
                                queue_id: mq.queue_id,
                                broker_offset: o.broker_offset,
                                consumer_offset: o.consumer_offset,
                                lag: (o.broker_offset - o.consumer_offset.max(0)).max(0),
                                last_timestamp: o.last_timestamp,
                            });
                        }
                    }
                    Err(err) => errors.push(format!("{name}: {}", describe_client_error(&err))),
                }
            }
            if answered == 0 {
                bail!(
                    "no broker has progress for group `{group}`: {}",
                    errors.join("; ")
                );
            }
            rows.sort_by(|a, b| {
                (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
            });
            let total_lag: i64 = rows.iter().map(|r| r.lag).sum();
            if json {
                return print_json(&serde_json::json!({
                    "group": group,
                    "consumeTps": tps,
                    "totalLag": total_lag,
                    "queues": rows,
                }));
            }
            let mut t = Table::new(&[
                "TOPIC",
                "BROKER",
                "QUEUE",
                "BROKER OFFSET",
                "CONSUMER OFFSET",
                "LAG",
                "LAST CONSUMED",
            ]);
            for r in &rows {
                t.row(vec![
                    r.topic.clone(),
                    r.broker_name.clone(),
                    r.queue_id.to_string(),
                    r.broker_offset.to_string(),
                    r.consumer_offset.to_string(),
                    r.lag.to_string(),
                    format_ms(r.last_timestamp),
                ]);
            }
            t.print();
            println!("group {group}: total lag {total_lag}, consume tps {tps:.1}");
            Ok(())
        }
        ConsumerCmd::Connections { group } => {
            let mut by_client: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            let mut subscriptions = BTreeMap::new();
            let mut model = String::new();
            for (_, _, addr) in admin.master_brokers(None).await? {
                let Ok(conn) = admin.sdk().consumer_connection_on(&addr, &group).await else {
                    continue;
                };
                model = conn.message_model.as_str().to_string();
                for c in conn.connection_set {
                    by_client.insert(
                        c.client_id.clone(),
                        serde_json::json!({
                            "clientId": c.client_id,
                            "clientAddr": c.client_addr,
                            "language": c.language,
                            "version": c.version,
                        }),
                    );
                }
                for (topic, sub) in conn.subscription_table {
                    subscriptions.insert(topic, sub.sub_string);
                }
            }
            if by_client.is_empty() {
                bail!("group `{group}` has no live consumer");
            }
            if json {
                return print_json(&serde_json::json!({
                    "group": group,
                    "messageModel": model,
                    "connections": by_client.values().collect::<Vec<_>>(),
                    "subscriptions": subscriptions,
                }));
            }
            let mut t = Table::new(&["CLIENT ID", "ADDRESS", "LANGUAGE", "VERSION"]);
            for c in by_client.values() {
                let s = |k: &str| {
                    c.get(k)
                        .map(|v| v.to_string().trim_matches('"').to_string())
                };
                t.row(vec![
                    s("clientId").unwrap_or_default(),
                    s("clientAddr").unwrap_or_default(),
                    s("language").unwrap_or_default(),
                    s("version").unwrap_or_default(),
                ]);
            }
            t.print();
            println!("model {model}");
            for (topic, expr) in subscriptions {
                println!("subscribed: {topic} [{expr}]");
            }
            Ok(())
        }
        ConsumerCmd::ResetOffset {
            group,
            topic,
            to,
            force,
        } => {
            let ts = parse_time_ms(&to, now_ms())?;
            let route = admin.require_route(&topic).await?;
            let mut rows = Vec::new();
            for b in &route.broker_datas {
                let Some(addr) = b.master_addr() else {
                    continue;
                };
                let offsets = admin
                    .sdk()
                    .reset_offset_by_time_on(addr, &group, &topic, ts, force)
                    .await?;
                for (mq, off) in offsets {
                    rows.push((mq.broker_name, mq.queue_id, off));
                }
            }
            rows.sort();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(
                        |(b, q, o)| serde_json::json!({"brokerName": b, "queueId": q, "offset": o}),
                    )
                    .collect();
                return print_json(&serde_json::json!({
                    "group": group, "topic": topic, "timestamp": ts, "queues": v
                }));
            }
            let mut t = Table::new(&["BROKER", "QUEUE", "NEW OFFSET"]);
            for (b, q, o) in &rows {
                t.row(vec![b.clone(), q.to_string(), o.to_string()]);
            }
            t.print();
            println!("reset {group} on {topic} to {}", format_ms(ts));
            Ok(())
        }
    }
}

/// Whether `group` is one of the broker's built-in groups.
fn is_system_group(group: &str) -> bool {
    matches!(
        group,
        "TOOLS_CONSUMER"
            | "FILTERSRV_CONSUMER"
            | "__MONITOR_CONSUMER"
            | "CLIENT_INNER_PRODUCER"
            | "SELF_TEST_P_GROUP"
            | "SELF_TEST_C_GROUP"
            | "CID_ONS-HTTP-PROXY"
            | "CID_ONSAPI_PERMISSION"
            | "CID_ONSAPI_OWNER"
            | "CID_ONSAPI_PULL"
            | "CID_RMQ_SYS_TRANS"
    ) || group.starts_with("CID_RMQ_SYS_")
}

/// Runs a `broker` command.
pub(crate) async fn broker(admin: &AdminClient, cmd: BrokerCmd, json: bool) -> Result<()> {
    match cmd {
        BrokerCmd::Info { broker } => {
            let targets: Vec<(String, String)> = match broker {
                Some(addr) => vec![(addr.clone(), addr)],
                None => admin
                    .master_brokers(None)
                    .await?
                    .into_iter()
                    .map(|(_, n, a)| (n, a))
                    .collect(),
            };
            if targets.is_empty() {
                bail!("no broker is registered with the NameServer");
            }
            let mut all = BTreeMap::new();
            for (name, addr) in targets {
                let table = admin.sdk().broker_runtime_info(&addr).await?;
                all.insert(format!("{name} ({addr})"), table);
            }
            if json {
                return print_json(&all);
            }
            for (who, table) in all {
                println!("{who}");
                let mut t = Table::new(&["KEY", "VALUE"]);
                for (k, v) in table {
                    t.row(vec![k, v]);
                }
                t.print();
                println!();
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topics_and_groups_are_recognised() {
        assert!(is_system_topic("TBW102"));
        assert!(is_system_topic("%RETRY%g"));
        assert!(is_system_topic("RMQ_SYS_TRANS_HALF_TOPIC"));
        assert!(!is_system_topic("Orders"));
        assert!(is_system_group("TOOLS_CONSUMER"));
        assert!(!is_system_group("orders-cg"));
    }
}
