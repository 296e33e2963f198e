//! Compatibility tests with a second unmodified third-party RocketMQ client: the crates.io crate
//! `rocketmq-client-rust` 1.0.0 (mxsm/rocketmq-rust), the strictest JSON parser among the known
//! clients (PROTOCOL.md §1.3, §9.6.4, §12).
//!
//! The client is driven by the standalone cargo project `tests/compat-rocketmq-rust/` (not a
//! workspace member: it needs rustc >= 1.95 and its own dependency tree, pinned by its own
//! `Cargo.lock`). Each test builds that project once (`cargo build --manifest-path ...
//! --target-dir <target>/compat-rocketmq-rust`, a no-op when fresh, serialised across test
//! processes by a file lock), starts a real `tern-nameserver` and `tern-broker` through the
//! harness with the flags the scenario needs, waits until the broker's `TBW102` route is on the
//! NameServer, runs `compat-rocketmq-rust <scenario> <namesrv> <topic> <group> [N]` with a timeout
//! and asserts exit code 0 and `"ok":true` in its final JSON summary line. On failure the panic
//! message carries that summary (failed checks first), the program's stderr and both server logs.
//! A test that cannot build or run the program fails with the reason; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tern_tests::{
    run_client_program, start_broker, start_nameserver, tail_lines, unique_name,
    wait_for_broker_registration_blocking, ClientRun, TernProcess,
};

/// Upper bound for one program run; the program's own hard timeout is below it.
const RUN_TIMEOUT: Duration = Duration::from_secs(110);
/// The timeout handed to the program (`TERN_TIMEOUT_MS`); it exits at most 15 s after it.
const PROGRAM_TIMEOUT_MS: u64 = 80_000;
/// How long the broker may take to register `TBW102` with the NameServer.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Short delay levels for the `delay` and `retry` scenarios.
const DELAY_LEVELS: &str = "1s 2s 3s";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace root")
        .to_path_buf()
}

fn compat_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat-rocketmq-rust")
        .join("Cargo.toml")
}

fn compat_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("compat-rocketmq-rust")
}

/// An exclusive advisory lock on a file, held while the guard lives, so parallel test processes
/// do not build the compat project at the same time.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock(2) on a descriptor we own for the lifetime of `file`; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            bail!(
                "flock({}) failed: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: as in `acquire`; unlocking a descriptor we still own.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Builds the compat program (a no-op when fresh) and returns its path.
fn build_compat() -> Result<PathBuf> {
    let target = compat_target_dir();
    let _lock = FileLock::acquire(&target.join("tern-build.lock"))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let started = Instant::now();
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .arg("build")
        .arg("--quiet")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(compat_manifest())
        .arg("--target-dir")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{cargo} build` for tests/compat-rocketmq-rust"))?;
    if !output.status.success() {
        bail!(
            "`cargo build --manifest-path tests/compat-rocketmq-rust/Cargo.toml` failed with {} \
             after {:?} (the crate needs rustc >= 1.95 and crates.io or a filled cargo cache):\n{}",
            output.status,
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bin = target.join("debug").join("compat-rocketmq-rust");
    if !bin.exists() {
        bail!("the build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The build result, computed once per test process.
fn compat_bin() -> std::result::Result<PathBuf, String> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_compat().map_err(|e| format!("{e:#}")))
        .clone()
}

/// Runs the compat program with `args`, killing it after [`RUN_TIMEOUT`].
fn run_program(bin: &Path, args: &[String]) -> Result<ClientRun> {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("TERN_TIMEOUT_MS", PROGRAM_TIMEOUT_MS.to_string());
    run_client_program(command, RUN_TIMEOUT)
}

/// Starts the servers with `broker_args`, runs `scenario`, and panics with a full report unless it
/// passed. Returns the summary line.
fn run_compat(scenario: &str, broker_args: &[&str], extra_args: &[&str]) -> serde_json::Value {
    let bin = match compat_bin() {
        Ok(b) => b,
        Err(e) => {
            panic!("the rocketmq-client-rust compatibility test `{scenario}` cannot run: {e}")
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let namesrv: TernProcess = start_nameserver(dir.path(), &[]).expect("starting tern-nameserver");
    let broker: TernProcess = start_broker(&namesrv.addr, &dir.path().join("broker"), broker_args)
        .expect("starting tern-broker");
    if let Err(e) = wait_for_broker_registration_blocking(&namesrv.addr, ROUTE_TIMEOUT) {
        panic!(
            "{e:#}\n--- broker log ---\n{}\n--- nameserver log ---\n{}",
            broker.log_tail(40),
            namesrv.log_tail(40)
        );
    }
    let short = scenario.replace('-', "_");
    let topic = unique_name(&format!("RsClient_{short}"));
    let group = unique_name(&format!("GID_rs_{short}"));
    let mut args = vec![
        scenario.to_string(),
        namesrv.addr.clone(),
        topic.clone(),
        group.clone(),
    ];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    let run = match run_program(&bin, &args) {
        Ok(r) => r,
        Err(e) => panic!("running compat-rocketmq-rust {scenario}: {e:#}"),
    };
    if !run.success {
        let summary = run
            .summary
            .as_ref()
            .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
            .unwrap_or_else(|| {
                format!(
                    "(no JSON summary line)\n--- stdout ---\n{}",
                    tail_lines(&run.stdout, 40)
                )
            });
        panic!(
            "rocketmq-client-rust scenario `{scenario}` failed ({}), topic {topic}, group {group}\n\
             --- summary ---\n{summary}\n--- program stderr (tail) ---\n{}\n\
             --- broker log (tail) ---\n{}\n--- nameserver log (tail) ---\n{}",
            run.status,
            tail_lines(&run.stderr, 60),
            broker.log_tail(80),
            namesrv.log_tail(30)
        );
    }
    run.summary.unwrap_or_default()
}

/// Asserts the summary's check list is non-empty and names `name` as passed.
fn assert_check_passed(summary: &serde_json::Value, name_part: &str) {
    let checks = summary
        .get("checks")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        checks.iter().any(|c| {
            c.get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| n.contains(name_part))
                && c.get("ok").and_then(|o| o.as_bool()) == Some(true)
        }),
        "no passed check containing `{name_part}` in {summary}"
    );
}

#[test]
fn rocketmq_rust_produce_consume_with_tag_filter() {
    let summary = run_compat("produce-consume", &[], &["10"]);
    assert_check_passed(&summary, "only TagA messages are delivered");
    assert_check_passed(&summary, "delivered once, intact");
}

#[test]
fn rocketmq_rust_ordered_messages() {
    let summary = run_compat("ordered", &[], &[]);
    assert_check_passed(&summary, "consumed in sequence on one queue");
}

#[test]
fn rocketmq_rust_delay_level() {
    let summary = run_compat("delay", &["--message-delay-level", DELAY_LEVELS], &[]);
    assert_check_passed(&summary, "not before 2 s");
}

#[test]
fn rocketmq_rust_transactional_messages() {
    let summary = run_compat(
        "transaction",
        &[
            "--transaction-timeout-ms",
            "1000",
            "--transaction-check-interval-ms",
            "1000",
        ],
        &[],
    );
    assert_check_passed(&summary, "UNKNOWN → check → COMMIT consumed exactly once");
}

#[test]
fn rocketmq_rust_reconsume_later_retry() {
    let summary = run_compat("retry", &["--message-delay-level", DELAY_LEVELS], &[]);
    assert_check_passed(&summary, "reconsume counts 0 then 1");
}
