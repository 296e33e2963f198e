//! Topic names: validation (PROTOCOL.md §2.3 step 2), system topics and groups (§5.1, §6,
//! Java `TopicValidator` and `MixAll`).

/// Template topic for auto-creation (`MixAll.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
/// Delayed messages, one queue per delay level.
pub const SCHEDULE_TOPIC_XXXX: &str = "SCHEDULE_TOPIC_XXXX";
/// Transactional half messages.
pub const RMQ_SYS_TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Op messages recording commit/rollback of half messages.
pub const RMQ_SYS_TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Half messages that exceeded the check-back limit.
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// Self-test topic.
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
/// Offset-moved events.
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
/// 5.x timer messages parked in the time wheel.
pub const RMQ_SYS_WHEEL_TIMER: &str = "rmq_sys_wheel_timer";
/// Message trace topic.
pub const RMQ_SYS_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Benchmark topic (a Java system topic).
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
/// Prefix of Java's newer system topics.
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Prefix of a consumer group's retry topic.
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// System consumer group of the transaction check-back.
pub const CID_RMQ_SYS_TRANS: &str = "CID_RMQ_SYS_TRANS";
/// Prefix of system consumer groups.
pub const CID_RMQ_SYS_PREFIX: &str = "CID_RMQ_SYS_";
/// Producer group of clients' internal sends.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";
/// Default producer group.
pub const DEFAULT_PRODUCER_GROUP: &str = "DEFAULT_PRODUCER";
/// Default consumer group.
pub const DEFAULT_CONSUMER_GROUP: &str = "DEFAULT_CONSUMER";
/// Admin tools' consumer group.
pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// Schedule service's consumer group.
pub const SCHEDULE_CONSUMER_GROUP: &str = "SCHEDULE_CONSUMER";

/// Longest ordinary topic name, in characters.
pub const TOPIC_MAX_LEN: usize = 127;
/// Longest `%RETRY%` / `%DLQ%` topic name, in characters.
pub const RETRY_OR_DLQ_TOPIC_MAX_LEN: usize = 255;

/// Why a topic name is invalid (the broker answers INVALID_PARAMETER).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty or only whitespace.
    #[error("the specified topic is blank")]
    Blank,
    /// A character outside `[%|a-zA-Z0-9_-]`.
    #[error("the specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$")]
    IllegalCharacter,
    /// Longer than the limit.
    #[error("the specified topic is longer than {max} characters ({len})")]
    TooLong {
        /// The name's length.
        len: usize,
        /// The limit that applies to it.
        max: usize,
    },
}

/// Checks a topic name: non-blank, only `^[%|a-zA-Z0-9_-]+$`, at most 127 characters (255 for
/// `%RETRY%` / `%DLQ%` topics). Java `TopicValidator.validateTopic`.
///
/// # Errors
/// [`TopicError::Blank`], [`TopicError::IllegalCharacter`], [`TopicError::TooLong`].
pub fn validate_topic(name: &str) -> Result<(), TopicError> {
    if name.trim().is_empty() {
        return Err(TopicError::Blank);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err(TopicError::IllegalCharacter);
    }
    let max = if is_retry_topic(name) || is_dlq_topic(name) {
        RETRY_OR_DLQ_TOPIC_MAX_LEN
    } else {
        TOPIC_MAX_LEN
    };
    // Only ASCII is allowed, so bytes are characters.
    if name.len() > max {
        return Err(TopicError::TooLong {
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// The retry topic of a consumer group: `%RETRY%<group>`.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group: `%DLQ%<group>`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// Whether `topic` is a retry topic.
pub fn is_retry_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
}

/// Whether `topic` is a dead-letter topic.
pub fn is_dlq_topic(topic: &str) -> bool {
    topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

/// The consumer group of a retry or dead-letter topic.
pub fn group_of_retry_or_dlq_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
        .or_else(|| topic.strip_prefix(DLQ_GROUP_TOPIC_PREFIX))
}

/// Whether `topic` is one of the broker's system topics (Java `TopicValidator.isSystemTopic`,
/// without the per-cluster and per-broker names, which need configuration).
pub fn is_system_topic(topic: &str) -> bool {
    matches!(
        topic,
        AUTO_CREATE_TOPIC_KEY_TOPIC
            | SCHEDULE_TOPIC_XXXX
            | BENCHMARK_TOPIC
            | RMQ_SYS_TRANS_HALF_TOPIC
            | RMQ_SYS_TRACE_TOPIC
            | RMQ_SYS_TRANS_OP_HALF_TOPIC
            | TRANS_CHECK_MAX_TIME_TOPIC
            | SELF_TEST_TOPIC
            | OFFSET_MOVED_EVENT
    ) || topic.starts_with(SYSTEM_TOPIC_PREFIX)
}

/// Whether producers are forbidden to send to `topic` (the broker answers NO_PERMISSION;
/// PROTOCOL.md §2.3 step 2, Java `TopicValidator.isNotAllowedSendTopic`).
pub fn is_send_forbidden_topic(topic: &str) -> bool {
    matches!(
        topic,
        SCHEDULE_TOPIC_XXXX
            | RMQ_SYS_TRANS_HALF_TOPIC
            | RMQ_SYS_TRANS_OP_HALF_TOPIC
            | TRANS_CHECK_MAX_TIME_TOPIC
            | SELF_TEST_TOPIC
            | OFFSET_MOVED_EVENT
    )
}

/// Whether `group` is a system consumer group (`CID_RMQ_SYS_` prefix).
pub fn is_system_group(group: &str) -> bool {
    group.starts_with(CID_RMQ_SYS_PREFIX)
}
