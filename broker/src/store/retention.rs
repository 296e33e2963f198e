//! Retention: deleting expired CommitLog files and what points into them.
//!
//! A CommitLog file (never the newest) expires when the first record of the file after it was
//! stored more than `file_reserved_hours` before `now` — so every record of the file is at
//! least that old. A file is never deleted before it is fully flushed and dispatched. After
//! CommitLog files go, ConsumeQueue files whose units all point before the new minimum are
//! deleted, queue min offsets move up (consumers below them get `OffsetTooSmall`), and index
//! files wholly before it are deleted. [`run_retention`] drives the pass at the `delete_when`
//! cron time and forces it when disk usage passes `disk_max_used_space_ratio`.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tern_common::message::record::decode_record;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::commit_log::now_ms;
use super::mapped_file::disk_used_ratio;
use super::{MessageStore, StoreError};

/// Most CommitLog files deleted by one pass (RocketMQ `deleteFileBatchMax`).
pub const DELETE_FILES_BATCH_MAX: usize = 10;

/// How often `run_retention` checks disk usage.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(10);

impl MessageStore {
    /// One retention pass at `now_ms`. `force` deletes the oldest files even if they have not
    /// expired (disk pressure). Returns the number of CommitLog files deleted.
    pub fn delete_expired_files(&self, now_ms: i64, force: bool) -> usize {
        let inner = &self.inner;
        let reserved_ms = i64::try_from(inner.config.file_reserved_hours.saturating_mul(3_600_000))
            .unwrap_or(i64::MAX);
        let safe_end = inner
            .dispatched
            .load(Ordering::Acquire)
            .min(inner.commit_log.files().flushed_offset());
        let deleted =
            inner
                .commit_log
                .files()
                .delete_leading_files(DELETE_FILES_BATCH_MAX, |file, next| {
                    let file_end = file.file_from_offset() + file.size() as i64;
                    if file_end > safe_end {
                        return false;
                    }
                    if force {
                        return true;
                    }
                    let Some(next) = next else {
                        return false;
                    };
                    let next_first = next
                        .with_slice(0, next.wrote_position(), |b| {
                            decode_record(b, false).ok().map(|r| r.store_timestamp)
                        })
                        .flatten();
                    next_first.is_some_and(|ts| ts.saturating_add(reserved_ms) < now_ms)
                });
        if deleted > 0 {
            let cl_min = inner.commit_log.min_offset();
            let mut cq_files = 0;
            for cq in inner.all_queues() {
                cq_files += cq.delete_expired(cl_min);
            }
            let index_files = inner.index.delete_before(cl_min);
            tracing::info!(
                commit_log_files = deleted,
                cq_files,
                index_files,
                min_phy_offset = cl_min,
                force,
                "deleted expired files"
            );
        }
        deleted
    }
}

/// Runs retention until `shutdown` completes: the daily pass at `delete_when` (a cron
/// expression with seconds, run by `tokio-cron-scheduler`) and a disk-usage check every
/// [`DISK_CHECK_INTERVAL`] that forces deletion above `disk_max_used_space_ratio` and refuses
/// appends above `disk_full_ratio`.
///
/// # Errors
/// Scheduler errors (for example an invalid `delete_when`).
pub async fn run_retention(
    store: Arc<MessageStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    let mut scheduler = JobScheduler::new().await.map_err(StoreError::Scheduler)?;
    let job_store = store.clone();
    let job = Job::new_async(store.config().delete_when.as_str(), move |_id, _sched| {
        let store = job_store.clone();
        Box::pin(async move {
            let _ =
                tokio::task::spawn_blocking(move || store.delete_expired_files(now_ms(), false))
                    .await;
        })
    })
    .map_err(StoreError::Scheduler)?;
    scheduler.add(job).await.map_err(StoreError::Scheduler)?;
    scheduler.start().await.map_err(StoreError::Scheduler)?;

    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(DISK_CHECK_INTERVAL);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || check_disk(&store)).await;
            }
        }
    }
    scheduler.shutdown().await.map_err(StoreError::Scheduler)?;
    Ok(())
}

fn check_disk(store: &MessageStore) {
    let root = store.root().to_path_buf();
    match disk_used_ratio(&root) {
        Ok(ratio) => {
            let config = store.config();
            store.inner_flags_disk_full(ratio > config.disk_full_ratio);
            if ratio > config.disk_max_used_space_ratio {
                tracing::warn!(ratio, "disk usage above threshold; deleting oldest files");
                store.delete_expired_files(now_ms(), true);
            }
        }
        Err(e) => tracing::warn!(cause = %e, dir = %root.display(), "cannot read disk usage"),
    }
}
