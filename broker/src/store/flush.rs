//! Flush services: the CommitLog flusher (ASYNC_FLUSH interval or SYNC_FLUSH group commit)
//! and the 1-second flusher of ConsumeQueues, index and checkpoint (PROTOCOL.md §11.1).
//!
//! Group commit: an appender that must wait registers a [`GroupCommitRequest`] (its end
//! offset and a oneshot sender) and wakes the flush thread at once. The flush thread runs ONE
//! flush of everything published when it starts (so it covers every waiter that appended
//! before), then takes every pending request — including those registered while the flush ran
//! — and completes in one batch each one whose end offset the flush covered; the others wait
//! for the next round, which starts immediately. A failed flush completes every waiter with
//! `false`, marks the store read-only and is never retried as if it were transient.
//!
//! The prefault thread keeps the CommitLog ahead of the writer: it preallocates the next file
//! and populates the page tables of the next [`PREFAULT_AHEAD_BYTES`] after the write position
//! (`MappedFileQueue::prefault_ahead`), so appends neither create files nor page-fault. It is
//! woken by appends that cross a [`prefault_step`] boundary. It is a thread of its own rather
//! than part of the flush thread so that neither a long ASYNC_FLUSH `msync` nor the page
//! population delays the other (a group-commit round must not wait for page faults).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        // While the flush thread gathers a round it only needs the request that completes the
        // round: waking it for each one cost a futex wake and a context switch per request.
        let gathering_for = self.flush_gather_target.load(Ordering::Relaxed);
        if gathering_for == 0 || pending.len() >= gathering_for {
            self.flush_cv.notify_one();
        }
        Some(rx)
    }

    /// Flushes the CommitLog once, then completes, in one batch, every pending request the
    /// flush covered (also those registered while it ran). Returns how many it completed, or
    /// `None` on failure, after failing every pending request.
    fn flush_commit_log_once(&self) -> Option<usize> {
        let store_timestamp = self.commit_log.last_store_timestamp();
        let started = std::time::Instant::now();
        match self.commit_log.flush() {
            Ok(flushed) => {
                if let Some(observe) = self.flush_observer.read().as_ref() {
                    observe(started.elapsed());
                }
                if store_timestamp > 0 {
                    self.checkpoint.set_physic_msg_timestamp(store_timestamp);
                }
                let covered: Vec<GroupCommitRequest> = {
                    let mut pending = self.flush_requests.lock();
                    if pending.iter().all(|r| r.end_phy_offset <= flushed) {
                        std::mem::take(&mut *pending)
                    } else {
                        // Published after the flush started: the next round covers them.
                        let (done, left) = std::mem::take(&mut *pending)
                            .into_iter()
                            .partition(|r| r.end_phy_offset <= flushed);
                        *pending = left;
                        done
                    }
                };
                // Completed outside the lock so appenders can queue the next round meanwhile.
                let completed = covered.len();
                for r in covered {
                    let _ = r.done.send(true);
                }
                Some(completed)
            }
            Err(e) => {
                tracing::error!(cause = %e, "commit log flush failed; store is read-only");
                self.flags.set_write_error();
                for r in std::mem::take(&mut *self.flush_requests.lock()) {
                    let _ = r.done.send(false);
                }
                None
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
    let mut last_batch = 0usize;
    while !inner.stop.load(Ordering::Acquire) {
        {
            let mut pending = inner.flush_requests.lock();
            if pending.is_empty() && !inner.stop.load(Ordering::Acquire) {
                inner.flush_cv.wait_for(&mut pending, interval);
            }
            if sync && last_batch > 1 && !pending.is_empty() {
                // The producers the last round released are appending again: give them a
                // moment so one fdatasync covers them all instead of splitting them over two
                // rounds (each append notifies; bounded by the deadline).
                let deadline = Instant::now() + GROUP_COMMIT_GATHER;
                // Set and cleared under the `flush_requests` lock, which appenders hold when
                // they read it, so the request that completes the round always notifies.
                inner
                    .flush_gather_target
                    .store(last_batch, Ordering::Relaxed);
                while pending.len() < last_batch && !inner.stop.load(Ordering::Acquire) {
                    if inner
                        .flush_cv
                        .wait_until(&mut pending, deadline)
                        .timed_out()
                    {
                        break;
                    }
                }
                inner.flush_gather_target.store(0, Ordering::Relaxed);
            }
        }
        if failed {
            // Never retry a failed fsync as if it were transient: fail every waiter.
            for r in std::mem::take(&mut *inner.flush_requests.lock()) {
                let _ = r.done.send(false);
            }
            continue;
        }
        match inner.flush_commit_log_once() {
            Some(completed) => last_batch = completed,
            None => failed = true,
        }
    }
    if !failed {
        inner.flush_commit_log_once();
    }
    for r in std::mem::take(&mut *inner.flush_requests.lock()) {
        let _ = r.done.send(false);
    }
}

/// Longest a SYNC_FLUSH round waits for the producers of the previous round to queue again
/// before it flushes (about half an fdatasync on the development VM's disk).
pub const GROUP_COMMIT_GATHER: Duration = Duration::from_micros(500);

/// How far ahead of the CommitLog write position the prefault thread populates pages.
pub const PREFAULT_AHEAD_BYTES: usize = 32 * 1024 * 1024;

/// Appends that cross a multiple of this many bytes (or start a file) wake the prefault
/// thread: a quarter of a file, at most 4 MiB, at least one page.
pub(super) fn prefault_step(file_size: usize) -> i64 {
    (file_size / 4).clamp(4096, 4 * 1024 * 1024) as i64
}

/// How long the prefault thread sleeps when no append wakes it.
const PREFAULT_IDLE_WAIT: Duration = Duration::from_millis(50);

/// Body of the CommitLog prefault thread: preallocate the next file, populate the pages ahead
/// of the writer, sleep until an append crosses a step (or [`PREFAULT_IDLE_WAIT`]).
pub(super) fn run_prefault(inner: Arc<Inner>) {
    let files = inner.commit_log.files();
    if let Err(e) = super::mapped_file::set_current_thread_sched_idle() {
        tracing::debug!(cause = %e, "prefault thread keeps the normal scheduling policy");
    }
    let mut warned = false;
    while !inner.stop.load(Ordering::Acquire) {
        let result = files
            .preallocate_next()
            .and_then(|()| files.prefault_ahead(PREFAULT_AHEAD_BYTES, true));
        match result {
            Ok(_) => warned = false,
            // Best effort: appends still work (creating files and faulting pages themselves).
            Err(e) if !warned => {
                tracing::warn!(cause = %e, "cannot prepare the commit log ahead of the writer");
                warned = true;
            }
            Err(_) => {}
        }
        if !inner.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(PREFAULT_IDLE_WAIT);
        }
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
