//! The README's quick start, run as written.
//!
//! Goal: the commands a new user copies from README.md start a working cluster (a message is
//! sent and consumed) and stop it again. Method: read the command blocks between the
//! `<!-- quickstart:start -->` / `<!-- quickstart-stop:start -->` markers of README.md and run
//! each line with bash from the repository root, exactly as printed, in a clean temporary
//! `TERN_HOME` and on free ports (`TERN_NAMESRV_PORT`, `TERN_BROKER_PORT`) so it cannot collide
//! with another cluster. To keep the run short it uses the debug build
//! (`TERN_BUILD_PROFILE=debug`, which the test harness has already built) instead of the
//! README's default release build; everything else is the user's path. A guard stops the
//! cluster if the test fails half-way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Longest one quick-start command may run (it may have to run `cargo build`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace root")
        .to_path_buf()
}

/// The shell lines of the fenced block between `<!-- NAME:start -->` and `<!-- NAME:end -->`.
fn readme_block(readme: &str, name: &str) -> Result<Vec<String>> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let from = readme
        .find(&start)
        .with_context(|| format!("README has no {start}"))?;
    let to = readme[from..]
        .find(&end)
        .with_context(|| format!("README has no {end}"))?;
    let lines: Vec<String> = readme[from + start.len()..from + to]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("```") && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("README block {name} holds no command");
    }
    Ok(lines)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Env {
    home: PathBuf,
    namesrv_port: u16,
    broker_port: u16,
}

impl Env {
    /// Runs `line` with bash in the repository root with the test's environment.
    fn run(&self, line: &str) -> Result<Output> {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(line)
            .current_dir(repo_root())
            .env("TERN_HOME", &self.home)
            .env("TERN_NAMESRV_PORT", self.namesrv_port.to_string())
            .env("TERN_BROKER_PORT", self.broker_port.to_string())
            .env("TERN_BUILD_PROFILE", "debug")
            .env_remove("NAMESRV_ADDR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running `{line}`"))?;
        let started = Instant::now();
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "`{line}` did not finish within {COMMAND_TIMEOUT:?}\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Stops the cluster when the test ends, whatever happened.
struct StopGuard<'a>(&'a Env);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("deploy/local-cluster.sh stop");
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn readme_quick_start_starts_a_working_cluster_and_stops_it() -> Result<()> {
    // The harness builds the debug binaries the launcher will run.
    let _ = tern_tests::bin_path("tern");
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let start = readme_block(&readme, "quickstart")?;
    let stop = readme_block(&readme, "quickstart-stop")?;
    assert!(
        readme.contains("cargo nextest run --workspace --no-fail-fast"),
        "README must give the test command CI runs"
    );

    let dir = tempfile::tempdir()?;
    let env = Env {
        home: dir.path().join("tern-home"),
        namesrv_port: free_port()?,
        broker_port: free_port()?,
    };
    let _guard = StopGuard(&env);

    for line in &start {
        let out = env.run(line)?;
        let all = text(&out);
        assert!(out.status.success(), "`{line}` failed:\n{all}");
        assert!(
            all.contains("sending one message to topic QuickStart"),
            "{all}"
        );
        assert!(
            all.contains("Hello, Tern!"),
            "the consumed message is shown:\n{all}"
        );
        assert!(
            all.contains(&format!("127.0.0.1:{}", env.broker_port)),
            "the broker registered on the chosen port:\n{all}"
        );
        assert!(all.contains("cluster is up"), "{all}");
    }
    let status = env.run("deploy/local-cluster.sh status")?;
    assert!(
        status.status.success(),
        "status while running:\n{}",
        text(&status)
    );

    for line in &stop {
        let out = env.run(line)?;
        assert!(out.status.success(), "`{line}` failed:\n{}", text(&out));
    }
    let status = env.run("deploy/local-cluster.sh status")?;
    assert!(
        !status.status.success(),
        "status after stop:\n{}",
        text(&status)
    );
    assert!(!env.home.join("broker.pid").exists());
    assert!(!env.home.join("nameserver.pid").exists());
    // A clean stop removes the broker's abort file (no crash recovery on the next start).
    assert!(env.home.join("store").is_dir());
    assert!(!env.home.join("store").join("abort").exists());
    Ok(())
}
