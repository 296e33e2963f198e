//! Flush services: the CommitLog flusher (ASYNC_FLUSH interval or SYNC_FLUSH group commit)
//! and the 1-second flusher of ConsumeQueues, index and checkpoint (PROTOCOL.md §11.1).
//!
//! Group commit: an appender that must wait registers a [`GroupCommitRequest`] (its end
//! offset and a oneshot sender). The flush thread takes every pending request, runs ONE flush
//! covering all of them, and completes each with `true` when its bytes are durable. A failed
//! flush completes them with `false`, marks the store read-only and is never retried as if it
//! were transient. The flush thread also preallocates the next CommitLog file, so appends
//! rarely create files themselves.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{FlushDiskType, Inner};

/// A producer waiting for its bytes to be flushed (Java's `GroupCommitRequest`).
#[derive(Debug)]
pub struct GroupCommitRequest {
    /// CommitLog offset just past the producer's last byte.
    pub end_phy_offset: i64,
    /// Completed with whether the flush covering it succeeded.
    pub done: oneshot::Sender<bool>,
}

/// Maximum pending group-commit requests; beyond it appenders get `OsPageCacheBusy`.
pub const MAX_PENDING_FLUSH_REQUESTS: usize = 64 * 1024;

impl Inner {
    /// Registers a flush request; `None` if the queue is full.
    pub(super) fn request_flush(&self, end_phy_offset: i64) -> Option<oneshot::Receiver<bool>> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.flush_requests.lock();
        if pending.len() >= MAX_PENDING_FLUSH_REQUESTS {
            return None;
        }
        pending.push(GroupCommitRequest {
            end_phy_offset,
            done: tx,
        });
        self.flush_cv.notify_one();
        Some(rx)
    }

    /// Flushes the CommitLog once; completes requests it covers. Returns false on failure.
    fn flush_commit_log_once(&self) -> bool {
        let requests = std::mem::take(&mut *self.flush_requests.lock());
        let store_timestamp = self.commit_log.last_store_timestamp();
        match self.commit_log.flush() {
            Ok(flushed) => {
                if store_timestamp > 0 {
                    self.checkpoint.set_physic_msg_timestamp(store_timestamp);
                }
                let mut left = Vec::new();
                for r in requests {
                    if r.end_phy_offset <= flushed {
                        let _ = r.done.send(true);
                    } else {
                        left.push(r);
                    }
                }
                if !left.is_empty() {
                    // Published after the flush started; the next round covers them.
                    self.flush_requests.lock().extend(left);
                }
                true
            }
            Err(e) => {
                tracing::error!(cause = %e, "commit log flush failed; store is read-only");
                self.flags.set_write_error();
                for r in requests {
                    let _ = r.done.send(false);
                }
                false
            }
        }
    }
}

/// Body of the CommitLog flush thread.
pub(super) fn run_commit_log(inner: Arc<Inner>) {
    let sync = inner.config.flush_disk_type == FlushDiskType::SyncFlush;
    let interval = if sync {
        Duration::from_millis(10)
    } else {
        inner.config.flush_interval_commit_log
    };
    let mut failed = false;
    while !inner.stop.load(Ordering::Acquire) {
        {
            let mut pending = inner.flush_requests.lock();
            if pending.is_empty() && !inner.stop.load(Ordering::Acquire) {
                inner.flush_cv.wait_for(&mut pending, interval);
            }
        }
        if failed {
            // Never retry a failed fsync as if it were transient: fail every waiter.
            for r in std::mem::take(&mut *inner.flush_requests.lock()) {
                let _ = r.done.send(false);
            }
            continue;
        }
        failed = !inner.flush_commit_log_once();
        if let Err(e) = inner.commit_log.files().preallocate_next() {
            tracing::warn!(cause = %e, "cannot preallocate the next commit log file");
        }
    }
    if !failed {
        inner.flush_commit_log_once();
    }
    for r in std::mem::take(&mut *inner.flush_requests.lock()) {
        let _ = r.done.send(false);
    }
}

/// Body of the ConsumeQueue/index/checkpoint flush thread (every `flush_interval_consume_queue`).
pub(super) fn run_logics(inner: Arc<Inner>) {
    let interval = inner.config.flush_interval_consume_queue;
    while !inner.stop.load(Ordering::Acquire) {
        {
            let mut guard = inner.stop_lock.lock();
            if !inner.stop.load(Ordering::Acquire) {
                inner.stop_cv.wait_for(&mut guard, interval);
            }
        }
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        inner.flush_logics();
    }
}

impl Inner {
    /// Flushes ConsumeQueues, index and checkpoint. Returns false on failure (store read-only).
    pub(super) fn flush_logics(&self) -> bool {
        let logics_timestamp = self.dispatched_store_timestamp.load(Ordering::Acquire);
        let mut ok = true;
        for cq in self.all_queues() {
            if let Err(e) = cq.flush() {
                tracing::error!(topic = cq.topic(), queue_id = cq.queue_id(), cause = %e, "consume queue flush failed");
                ok = false;
            }
        }
        if let Err(e) = self.index.flush() {
            tracing::error!(cause = %e, "index flush failed");
            ok = false;
        }
        if ok && logics_timestamp > 0 {
            self.checkpoint.set_logics_msg_timestamp(logics_timestamp);
            self.checkpoint.set_index_msg_timestamp(logics_timestamp);
        }
        if let Err(e) = self.checkpoint.flush() {
            tracing::error!(cause = %e, "checkpoint flush failed");
            ok = false;
        }
        if !ok {
            self.flags.set_write_error();
        }
        ok
    }
}
