//! How fast this machine takes fresh page-cache pages: copies 1,100-byte records (the length of
//! a CommitLog record with a 1 KiB body) one after another into new memory-mapped files, made
//! and advised as the CommitLog's are ([`MappedFile::create`]), by one thread with nothing else
//! running, and prints the rate of each 512 MiB written.
//!
//! ```text
//! cargo run --release -p tern-broker --example fresh_page_rate -- DIR [GIB]
//! ```
//!
//! `DIR` must be on the file system under test; `GIB` (default 4) is how much to write. The
//! files are deleted at the end. docs/BENCHMARKS.md ("Store → Fifth session") explains what
//! the figures say about the sustained ASYNC_FLUSH target.

use std::sync::Arc;
use std::time::Instant;

use tern_broker::store::mapped_file::{MappedFile, RealFileOps};

const RECORD: usize = 1_100;
const FILE_SIZE: usize = 256 * 1024 * 1024;
const REPORT_EVERY: usize = 512 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: fresh_page_rate DIR [GIB]"))?,
    );
    let gib: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let dir = tempfile::tempdir_in(dir)?;
    let record = vec![b'x'; RECORD];
    let (mut written, mut since_report, mut records) = (0usize, 0usize, 0usize);
    let (start, mut last) = (Instant::now(), Instant::now());
    let mut files = Vec::new();
    while written < gib << 30 {
        let from = i64::try_from(files.len() * FILE_SIZE)?;
        let file = MappedFile::create(dir.path(), from, FILE_SIZE, Arc::new(RealFileOps))?;
        while file.append(&record)?.is_some() {
            written += RECORD;
            since_report += RECORD;
            records += 1;
            if since_report >= REPORT_EVERY {
                let rate = (since_report / RECORD) as f64 / last.elapsed().as_secs_f64();
                print!("{:.0}k ", rate / 1e3);
                (since_report, last) = (0, Instant::now());
            }
        }
        // Kept until the end, as a CommitLog keeps its files.
        files.push(file);
    }
    let rate = records as f64 / start.elapsed().as_secs_f64();
    println!("| all {:.0}k records/s", rate / 1e3);
    Ok(())
}
