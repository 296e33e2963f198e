//! SQL92 subscriptions on the broker (PROTOCOL.md §7; RocketMQ `ConsumerFilterManager` and
//! `ExpressionMessageFilter`).
//!
//! A SQL92 expression is compiled when its subscription is registered (HEART_BEAT) or checked
//! (CHECK_CLIENT_CONFIG) and kept in a process-wide cache keyed by the expression text, so the
//! pull path, which finds the same text in the consumer registry or in its header, only looks
//! it up. Compiling is pure, so brokers sharing a process share the cache safely; every
//! (group, topic) subscription with the same text shares one compiled [`Expression`]. The
//! cache holds at most [`MAX_CACHED_EXPRESSIONS`] entries and is emptied when full (entries are
//! rebuilt on the next heartbeat or pull).
//!
//! A record matches when the expression is TRUE over its properties (user properties plus
//! `TAGS`, `KEYS` and the other system properties of its property string); unknown, an
//! evaluation error or an undecodable record do not match. The tag-code pre-filter of the
//! ConsumeQueue does not apply to SQL92 subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tern_common::filter::{is_sql92, Expression, FilterError};
use tern_common::message::record::decode_record;
use tern_common::protocol::body::SubscriptionData;

/// Most compiled expressions kept in the cache.
pub const MAX_CACHED_EXPRESSIONS: usize = 4096;

fn cache() -> &'static Mutex<HashMap<String, Arc<Expression>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Expression>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles `expression`, or returns the cached compilation of the same text.
///
/// # Errors
/// [`FilterError`] when the text does not compile (answered SUBSCRIPTION_PARSE_FAILED).
pub fn compile(expression: &str) -> Result<Arc<Expression>, FilterError> {
    if let Some(found) = cache().lock().get(expression) {
        return Ok(Arc::clone(found));
    }
    // Compile outside the lock: parsing is bounded but not free.
    let compiled = Arc::new(Expression::parse(expression)?);
    let mut map = cache().lock();
    if map.len() >= MAX_CACHED_EXPRESSIONS {
        map.clear();
    }
    map.insert(expression.to_string(), Arc::clone(&compiled));
    Ok(compiled)
}

/// Whether a registered subscription is SQL92.
pub fn is_sql92_subscription(sub: &SubscriptionData) -> bool {
    is_sql92(&sub.expression_type)
}

/// Whether the stored record `record` (CommitLog bytes of one message) is selected by
/// `expression`. A record that does not decode does not match.
pub fn record_matches(expression: &Expression, record: &[u8]) -> bool {
    match decode_record(record, false) {
        Ok(r) => expression.matches(|name| r.property(name)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_caches_by_text_and_refuses_bad_expressions() {
        let a = compile("cache_test_a > 5").expect("compiles");
        let b = compile("cache_test_a > 5").expect("compiles");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(compile("cache_test_a >").is_err());
    }

    #[test]
    fn garbage_records_do_not_match() {
        let e = compile("TRUE").expect("compiles");
        assert!(!record_matches(&e, &[1, 2, 3]));
    }
}
