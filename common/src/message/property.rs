//! The message property string (PROTOCOL.md §3.5) and the standard property keys.
//!
//! A property string is a sequence of entries `name U+0001 value U+0002`; every entry, including
//! the last, ends with U+0002. It travels UTF-8 encoded, in the SEND header (`properties` / `i`)
//! and in the PROPERTIES field of a CommitLog record.
//!
//! Decoding follows Java's `MessageDecoder.string2messageProperties`: the string is split on
//! U+0002 and a chunk is kept only if its first U+0001 is neither the chunk's first nor its last
//! character, so entries with an empty name or an empty value are dropped. The name is the text
//! before the first U+0001 and the value is everything after it. When a name repeats, the last
//! entry wins (Java puts every entry into a `HashMap`).
//!
//! Encoding writes a [`BTreeMap`] in key order so the output is deterministic (Java's order is a
//! `HashMap`'s, which no client relies on). Entries that decoding would drop or misread (empty
//! name or value, a separator inside the name, U+0002 inside the value) are skipped, so
//! `decode_properties(&encode_properties(m))` returns exactly the entries of `m` that
//! [`is_valid_property`] accepts.

use std::collections::BTreeMap;

/// Separates a name from its value (Java `MessageDecoder.NAME_VALUE_SEPARATOR`, U+0001).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends every entry (Java `MessageDecoder.PROPERTY_SEPARATOR`, U+0002).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Largest property string, in UTF-8 bytes, that a CommitLog record can hold (its length field is
/// a signed short; the broker answers MESSAGE_ILLEGAL above it).
pub const MAX_PROPERTIES_LEN_BYTES: usize = i16::MAX as usize;

/// The standard property names of Java's `MessageConst` (PROTOCOL.md §3.5).
pub mod property_key {
    /// Business keys, separated by a single space; each is indexed.
    pub const KEYS: &str = "KEYS";
    /// The message tag; its Java hashCode is the consume-queue tags code.
    pub const TAGS: &str = "TAGS";
    /// `true`/`false`: wait for flush/replication before answering (absent means true).
    pub const WAIT: &str = "WAIT";
    /// Delay level (1-based); the broker schedules the message through `SCHEDULE_TOPIC_XXXX`.
    pub const DELAY: &str = "DELAY";
    /// Original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Real topic while a message is parked in a schedule, half or timer topic.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Real queue id (decimal) while a message is parked.
    pub const REAL_QID: &str = "REAL_QID";
    /// `true` on transactional half messages.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group of a transactional message.
    pub const PGROUP: &str = "PGROUP";
    /// Added by the client from the pull response header.
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    /// Added by the client from the pull response header.
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    /// Legacy.
    pub const BUYER_ID: &str = "BUYER_ID";
    /// Message id of the first delivery, for retries and dead letters.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Legacy.
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    /// Legacy.
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    /// Legacy.
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    /// Retry count when the client re-sends to `%RETRY%` itself.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// Region id (`DefaultRegion`), added by the broker.
    pub const MSG_REGION: &str = "MSG_REGION";
    /// `true`/`false`, added by the broker.
    pub const TRACE_ON: &str = "TRACE_ON";
    /// Client unique message id (PROTOCOL.md §3.6); indexed.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Legacy.
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    /// Maximum retries, sent by the client with a self-made retry.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Consume start timestamp (client only).
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    /// Inner-batch message count (5.x).
    pub const INNER_NUM: &str = "INNER_NUM";
    /// Inner-batch base offset (5.x).
    pub const INNER_BASE: &str = "INNER_BASE";
    /// Duplication-mode bookkeeping.
    pub const DUP_INFO: &str = "DUP_INFO";
    /// Earliest transaction check-back, in seconds after storing.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// Transaction immunity bookkeeping.
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// Transaction id (the UNIQ_KEY) on half messages.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// Number of check-backs done for a half message.
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// Namespace instance id.
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    /// Request/reply correlation id.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Client id that waits for a reply.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request/reply time to live.
    pub const TTL: &str = "TTL";
    /// Request/reply arrival time.
    pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
    /// Time the broker pushed a reply.
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    /// Broker cluster name, added by the broker.
    pub const CLUSTER: &str = "CLUSTER";
    /// Message type (`reply` for replies).
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// Pop consumption check point (stripped from sends by the broker).
    pub const POP_CK: &str = "POP_CK";
    /// Pop consumption check point offset.
    pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
    /// First pop time.
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    /// Sharding key of an ordered message.
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// LMQ forward queue id.
    pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
    /// Redirect marker.
    pub const REDIRECT: &str = "REDIRECT";
    /// LMQ multi-dispatch topics.
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    /// LMQ multi-dispatch queue offsets.
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    /// Trace context.
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
    /// Absolute delivery time, epoch milliseconds (5.x timer messages).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Relative delivery delay in seconds (5.x timer messages).
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Relative delivery delay in milliseconds (5.x timer messages).
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// Computed delivery time, epoch milliseconds (broker timer bookkeeping).
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// Time the timer message entered the wheel (broker).
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    /// Time the timer message left the wheel (broker).
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    /// Number of times a long delay rolled over (broker).
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    /// Cancels a timer message by unique key.
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    /// Delay level carried through the timer wheel.
    pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
    /// Proxy bookkeeping: born host (5.x).
    pub const BORN_HOST: &str = "__BORNHOST";
    /// Proxy bookkeeping: born timestamp (5.x).
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    /// Optional property CRC (5.x `enabledAppendPropCRC`).
    pub const CRC32: &str = "__CRC32#";
    /// Original topic of a dead letter (5.x).
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    /// Original message id of a dead letter (5.x).
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    /// ONS legacy delivery time (not in `MessageConst`; the Java client only inspects it).
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
}

/// Whether an entry survives an encode/decode round trip: a non-empty name without separators
/// and a non-empty value without U+0002.
pub fn is_valid_property(name: &str, value: &str) -> bool {
    !name.is_empty()
        && !value.is_empty()
        && !name.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR])
        && !value.contains(PROPERTY_SEPARATOR)
}

/// Renders `props` as a property string in key order, skipping entries that
/// [`is_valid_property`] rejects (Java would write them, and every reader would then drop or
/// misread them).
pub fn encode_properties(props: &BTreeMap<String, String>) -> String {
    let len: usize = props.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for (name, value) in props {
        if is_valid_property(name, value) {
            out.push_str(name);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(value);
            out.push(PROPERTY_SEPARATOR);
        }
    }
    out
}

/// Parses a property string with Java's drop rules (see the module doc); the last of repeated
/// names wins.
pub fn decode_properties(s: &str) -> BTreeMap<String, String> {
    iter_properties(s)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Iterates over the `(name, value)` entries of a property string that Java would keep, in
/// string order (repeated names are yielded each time; Java keeps the last).
pub fn iter_properties(s: &str) -> PropertyIter<'_> {
    PropertyIter { rest: Some(s) }
}

/// Looks one property up in a property string without allocating; the last entry with that
/// name wins, as in Java.
pub fn find_property<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    iter_properties(s)
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .last()
}

/// Iterator returned by [`iter_properties`].
#[derive(Debug, Clone)]
pub struct PropertyIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            if rest.is_empty() {
                self.rest = None;
                return None;
            }
            let (chunk, tail) = match rest.split_once(PROPERTY_SEPARATOR) {
                Some((chunk, tail)) => (chunk, Some(tail)),
                None => (rest, None),
            };
            self.rest = tail;
            if let Some((name, value)) = chunk.split_once(NAME_VALUE_SEPARATOR) {
                if !name.is_empty() && !value.is_empty() {
                    return Some((name, value));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_sorted_and_terminated() {
        let mut m = BTreeMap::new();
        m.insert("TAGS".to_owned(), "a".to_owned());
        m.insert("KEYS".to_owned(), "k1 k2".to_owned());
        assert_eq!(encode_properties(&m), "KEYS\u{1}k1 k2\u{2}TAGS\u{1}a\u{2}");
    }

    proptest::proptest! {
        /// Every entry the iterator yields is one `is_valid_property` accepts, which the
        /// broker's send path relies on instead of checking again.
        #[test]
        fn iterated_entries_are_valid(text in "[ab\u{1}\u{2}]{0,40}") {
            for (name, value) in iter_properties(&text) {
                proptest::prop_assert!(is_valid_property(name, value), "{name:?} {value:?}");
            }
        }
    }

    #[test]
    fn find_property_takes_last_duplicate() {
        let s = "A\u{1}1\u{2}B\u{1}2\u{2}A\u{1}3\u{2}";
        assert_eq!(find_property(s, "A"), Some("3"));
        assert_eq!(find_property(s, "B"), Some("2"));
        assert_eq!(find_property(s, "C"), None);
    }
}
