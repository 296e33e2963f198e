//! Input checks of REGISTER_BROKER before anything reaches the route table.
//!
//! Java's `RouteInfoManager` stores whatever a broker sends. Tern refuses input that would
//! put garbage into every client's route, in two grades:
//!
//! - **Identity** (header) problems refuse the whole registration with SYSTEM_ERROR, remark
//!   `register broker failed: <reason>`: an empty `brokerName`, `clusterName` or `brokerAddr`
//!   (a route entry no client could use, and a key that other brokers' entries could collide
//!   on) and a negative `brokerId` (0 is the master, slaves count up from 1). A real broker
//!   never sends these, so refusing costs nothing and the broker logs the remark.
//! - **Topic** problems drop only that topic's config and keep the rest of the registration:
//!   an empty topic name, `readQueueNums`/`writeQueueNums` outside `0..=`[`MAX_QUEUE_NUMS`]
//!   (0 is legal: RocketMQ scales a topic down by first setting its write queues to 0), and
//!   `perm` outside `0..=15` (the four `PermName` bits). A broker re-registers the same body
//!   every 30 s, so refusing the whole registration over one bad topic would take all of
//!   its good topics out of every route — worse than Java, which tolerates the bad one. The
//!   dropped topics are logged at `warn` and named in the SUCCESS response's remark (which
//!   Java brokers ignore).

use tern_common::route::{TopicConfig, TopicConfigSerializeWrapper};
use thiserror::Error;

/// Largest `readQueueNums`/`writeQueueNums` accepted from a broker (65 536). RocketMQ keeps
/// queue ids in ints and Java brokers cap topic creation far lower; anything above this is
/// a broken or hostile broker, and clients allocate per queue.
pub const MAX_QUEUE_NUMS: i32 = 65_536;

/// Largest `perm` value: the four `PermName` bits (priority 8, read 4, write 2, inherit 1).
pub const MAX_PERM: i32 = 15;

/// How many dropped topic names a response remark lists at most.
const MAX_NAMED_IN_REMARK: usize = 10;

/// Why a REGISTER_BROKER was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InvalidRegistration {
    /// A required identity field is empty or blank.
    #[error("{field} must not be empty")]
    EmptyField {
        /// `brokerName`, `clusterName` or `brokerAddr`.
        field: &'static str,
    },
    /// `brokerId` is negative.
    #[error("brokerId must not be negative, got {0}")]
    NegativeBrokerId(i64),
}

/// Checks the identity fields of a REGISTER_BROKER header.
///
/// # Errors
/// [`InvalidRegistration`] naming the first bad field.
pub fn check_broker_identity(
    broker_name: &str,
    cluster_name: &str,
    broker_addr: &str,
    broker_id: i64,
) -> Result<(), InvalidRegistration> {
    for (field, value) in [
        ("brokerName", broker_name),
        ("clusterName", cluster_name),
        ("brokerAddr", broker_addr),
    ] {
        if value.trim().is_empty() {
            return Err(InvalidRegistration::EmptyField { field });
        }
    }
    if broker_id < 0 {
        return Err(InvalidRegistration::NegativeBrokerId(broker_id));
    }
    Ok(())
}

/// What is wrong with one topic config registered under `name`, if anything.
pub fn topic_config_problem(name: &str, config: &TopicConfig) -> Option<String> {
    let queues = 0..=MAX_QUEUE_NUMS;
    if name.trim().is_empty() {
        Some("empty topic name".to_string())
    } else if !queues.contains(&config.read_queue_nums) {
        Some(format!(
            "readQueueNums {} outside 0..={MAX_QUEUE_NUMS}",
            config.read_queue_nums
        ))
    } else if !queues.contains(&config.write_queue_nums) {
        Some(format!(
            "writeQueueNums {} outside 0..={MAX_QUEUE_NUMS}",
            config.write_queue_nums
        ))
    } else if !(0..=MAX_PERM).contains(&config.perm) {
        Some(format!("perm {} outside 0..={MAX_PERM}", config.perm))
    } else {
        None
    }
}

/// Removes every topic config with a [`topic_config_problem`] from `wrapper`; returns the
/// removed topics with their problem, in name order.
pub fn drop_invalid_topics(wrapper: &mut TopicConfigSerializeWrapper) -> Vec<(String, String)> {
    let mut dropped = Vec::new();
    wrapper
        .topic_config_table
        .retain(|name, config| match topic_config_problem(name, config) {
            Some(problem) => {
                dropped.push((name.clone(), problem));
                false
            }
            None => true,
        });
    dropped
}

/// The SUCCESS remark naming dropped topics (at most ten, then a count).
pub fn dropped_topics_remark(dropped: &[(String, String)]) -> String {
    let mut remark = String::from("invalid topic configs ignored: ");
    let named: Vec<String> = dropped
        .iter()
        .take(MAX_NAMED_IN_REMARK)
        .map(|(name, problem)| format!("{name} ({problem})"))
        .collect();
    remark.push_str(&named.join(", "));
    if dropped.len() > MAX_NAMED_IN_REMARK {
        remark.push_str(&format!(
            " and {} more",
            dropped.len() - MAX_NAMED_IN_REMARK
        ));
    }
    remark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_fields_are_checked() {
        assert!(check_broker_identity("b", "c", "a:1", 0).is_ok());
        assert!(check_broker_identity("b", "c", "a:1", 3).is_ok());
        assert_eq!(
            check_broker_identity(" ", "c", "a:1", 0),
            Err(InvalidRegistration::EmptyField {
                field: "brokerName"
            })
        );
        assert_eq!(
            check_broker_identity("b", "", "a:1", 0),
            Err(InvalidRegistration::EmptyField {
                field: "clusterName"
            })
        );
        assert_eq!(
            check_broker_identity("b", "c", "", 0),
            Err(InvalidRegistration::EmptyField {
                field: "brokerAddr"
            })
        );
        assert_eq!(
            check_broker_identity("b", "c", "a:1", -1),
            Err(InvalidRegistration::NegativeBrokerId(-1))
        );
    }

    #[test]
    fn topic_limits_are_inclusive() {
        let ok = |r: i32, w: i32, p: i32| {
            let mut c = TopicConfig::new("T", 1);
            c.read_queue_nums = r;
            c.write_queue_nums = w;
            c.perm = p;
            topic_config_problem("T", &c).is_none()
        };
        assert!(ok(0, 0, 0));
        assert!(ok(MAX_QUEUE_NUMS, MAX_QUEUE_NUMS, MAX_PERM));
        assert!(!ok(-1, 4, 6));
        assert!(!ok(4, -1, 6));
        assert!(!ok(MAX_QUEUE_NUMS + 1, 4, 6));
        assert!(!ok(4, i32::MAX, 6));
        assert!(!ok(4, 4, 16));
        assert!(!ok(4, 4, -1));
        assert!(topic_config_problem("", &TopicConfig::new("", 4)).is_some());
    }

    #[test]
    fn only_bad_topics_are_dropped_and_named() {
        let mut wrapper = TopicConfigSerializeWrapper::default();
        for i in 0..12 {
            let mut c = TopicConfig::new(format!("Bad{i:02}"), 4);
            c.read_queue_nums = -1;
            wrapper.topic_config_table.insert(c.topic_name.clone(), c);
        }
        wrapper
            .topic_config_table
            .insert("Good".into(), TopicConfig::new("Good", 4));
        let dropped = drop_invalid_topics(&mut wrapper);
        assert_eq!(dropped.len(), 12);
        assert_eq!(
            wrapper.topic_config_table.keys().collect::<Vec<_>>(),
            ["Good"]
        );
        let remark = dropped_topics_remark(&dropped);
        assert!(
            remark.contains("Bad00 (readQueueNums -1 outside 0..=65536)"),
            "{remark}"
        );
        assert!(remark.ends_with(" and 2 more"), "{remark}");
    }
}
