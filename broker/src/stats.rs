//! [`BrokerStats`]: lock-free counters reported by GET_BROKER_RUNTIME_INFO.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of one broker process (since start).
#[derive(Debug)]
pub struct BrokerStats {
    /// When the broker started.
    pub started_at: Instant,
    /// Start time, ms since the Unix epoch.
    pub started_at_ms: i64,
    msg_put_total: AtomicU64,
    msg_put_bytes: AtomicU64,
    msg_get_total: AtomicU64,
    send_failures: AtomicU64,
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            started_at: Instant::now(),
            started_at_ms: crate::topic_config::now_ms(),
            msg_put_total: AtomicU64::new(0),
            msg_put_bytes: AtomicU64::new(0),
            msg_get_total: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
        }
    }
}

impl BrokerStats {
    /// Counts `count` stored messages of `bytes` total size.
    pub fn record_put(&self, count: u64, bytes: u64) {
        self.msg_put_total.fetch_add(count, Ordering::Relaxed);
        self.msg_put_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a failed send.
    pub fn record_send_failure(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `count` messages returned by pulls.
    pub fn record_get(&self, count: u64) {
        self.msg_get_total.fetch_add(count, Ordering::Relaxed);
    }

    /// `(put messages, put bytes, pulled messages, failed sends)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.msg_put_total.load(Ordering::Relaxed),
            self.msg_put_bytes.load(Ordering::Relaxed),
            self.msg_get_total.load(Ordering::Relaxed),
            self.send_failures.load(Ordering::Relaxed),
        )
    }
}
