//! Compatibility tests with an unmodified third-party RocketMQ client: the npm package `ali-ons`
//! (pinned in `tests/node/package.json`).
//!
//! Each test starts a real `tern-nameserver` and `tern-broker` through the harness (with the short
//! delay levels / transaction timings the script needs), waits until the broker's `TBW102` route is
//! visible on the NameServer, then runs `node tests/node/<script>.js <namesrv> <topic> <group>` with
//! a timeout and asserts that it exits 0 with `"ok":true` in its final JSON summary line. On failure
//! the message carries the summary (failed checks, request code → response codes seen, first remark
//! of each failing code), the script's stderr and the tails of both server logs.
//!
//! Node.js and `tests/node/node_modules` are installed on demand (`apt-get install nodejs npm` when
//! running as root, then `npm install` under a cross-process lock); a test that still cannot run
//! fails with a message saying why — it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tern_tests::{
    run_client_program, start_broker, start_nameserver, tail_lines, unique_name,
    wait_for_broker_registration_blocking, ClientRun, TernProcess,
};

/// Upper bound for one script run; each script also has its own hard timeout (below this).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(100);
/// The hard timeout handed to the script (`TERN_TIMEOUT_MS`).
const SCRIPT_SELF_TIMEOUT_MS: u64 = 90_000;
/// How long the broker may take to register `TBW102` with the NameServer.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Short delay levels for `delay_retry.js` (broker flag and script env must agree).
const DELAY_LEVELS: &str = "1s 2s 3s";

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Runs `program args` in `dir`, returning an error with its output when it fails.
fn run_command(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{program} {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed with {}:\n{}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn command_works(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// An exclusive advisory lock on a file in the temp dir, held while the guard lives, so parallel
/// test processes do not run `npm install` / `apt-get` at the same time.
struct InstallLock(std::fs::File);

impl InstallLock {
    fn acquire() -> Result<Self> {
        let path = std::env::temp_dir().join("tern-ali-ons-install.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
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
        Ok(InstallLock(file))
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: as in `acquire`; unlocking a descriptor we still own.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Makes sure `node` runs and `tests/node/node_modules/ali-ons` is installed.
fn ensure_node_env() -> Result<()> {
    let dir = node_dir();
    let marker = dir
        .join("node_modules")
        .join("ali-ons")
        .join("package.json");
    if command_works("node", "--version") && marker.exists() {
        return Ok(());
    }
    let _lock = InstallLock::acquire()?;
    if !command_works("node", "--version") || !command_works("npm", "--version") {
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || !command_works("apt-get", "--version") {
            bail!(
                "Node.js is not installed (`node`/`npm` not found) and cannot be installed here \
                 (needs root and apt-get); install Node.js >= 14 and npm, e.g. \
                 `apt-get install nodejs npm`"
            );
        }
        run_command(&dir, "apt-get", &["update", "-q"])?;
        run_command(&dir, "apt-get", &["install", "-y", "-q", "nodejs", "npm"])?;
    }
    if !marker.exists() {
        run_command(
            &dir,
            "npm",
            &["install", "--no-audit", "--no-fund", "--loglevel=error"],
        )
        .context("installing ali-ons with `npm install` in tests/node")?;
    }
    if !marker.exists() {
        bail!("`npm install` in {} did not install ali-ons", dir.display());
    }
    Ok(())
}

/// The install result, computed once per test process.
fn node_env() -> std::result::Result<(), String> {
    static ENV: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    ENV.get_or_init(|| ensure_node_env().map_err(|e| format!("{e:#}")))
        .clone()
}

/// Runs `node <script>.js namesrv topic group` with `env`, killing it after [`SCRIPT_TIMEOUT`].
fn run_script(
    script: &str,
    namesrv: &str,
    topic: &str,
    group: &str,
    env: &[(&str, &str)],
) -> Result<ClientRun> {
    let mut command = Command::new("node");
    command
        .arg(format!("{script}.js"))
        .args([namesrv, topic, group])
        .current_dir(node_dir())
        .env("TERN_TIMEOUT_MS", SCRIPT_SELF_TIMEOUT_MS.to_string())
        .envs(env.iter().copied());
    run_client_program(command, SCRIPT_TIMEOUT)
}

/// Starts the servers, runs `script`, and panics with a full report unless it passed.
fn run_compat(script: &str, broker_args: &[&str], env: &[(&str, &str)]) {
    if let Err(e) = node_env() {
        panic!("the ali-ons compatibility test `{script}` cannot run: {e}");
    }
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
    let topic = unique_name(&format!("AliOns_{script}"));
    let group = unique_name(&format!("GID_{script}"));
    let result = match run_script(script, &namesrv.addr, &topic, &group, env) {
        Ok(r) => r,
        Err(e) => panic!("running node {script}.js: {e:#}"),
    };
    if !result.success {
        let summary = result
            .summary
            .as_ref()
            .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
            .unwrap_or_else(|| {
                format!(
                    "(no JSON summary line)\n--- stdout ---\n{}",
                    tail_lines(&result.stdout, 40)
                )
            });
        panic!(
            "ali-ons script {script}.js failed ({}), topic {topic}, group {group}\n--- summary ---\n{summary}\n\
             --- script stderr (tail) ---\n{}\n--- broker log (tail) ---\n{}\n--- nameserver log (tail) ---\n{}",
            result.status,
            tail_lines(&result.stderr, 60),
            broker.log_tail(60),
            namesrv.log_tail(30)
        );
    }
}

#[test]
fn ali_ons_produce_consume_with_tag_filter() {
    run_compat("produce_consume", &[], &[]);
}

#[test]
fn ali_ons_delay_level_and_retry() {
    run_compat(
        "delay_retry",
        &["--message-delay-level", DELAY_LEVELS],
        &[
            ("TERN_DELAY_LEVELS", DELAY_LEVELS),
            ("TERN_DELAY_LEVEL", "3"),
        ],
    );
}

#[test]
fn ali_ons_transport_transactional_messages() {
    run_compat(
        "transaction",
        &[
            "--transaction-timeout-ms",
            "1000",
            "--transaction-check-interval-ms",
            "1000",
        ],
        &[("TERN_TX_SETTLE_MS", "5000")],
    );
}
