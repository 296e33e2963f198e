//! The `tern` command line against a real cluster.
//!
//! Goal: every command an operator starts with works end to end on real processes, its
//! `--json` output parses, and a missing NameServer gives an error that says what to do.
//! Method: start `tern-nameserver` and `tern-broker` on 127.0.0.1 port 0 with a temporary
//! store (harness in `tests/src/lib.rs`), then run the built `tern` binary as a user would and
//! check its exit status and output. Every wait is bounded (`eventually`, command timeouts).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tern_tests::{bin_path, eventually, Cluster};

/// Longest a single `tern` invocation may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one `tern` run.
#[derive(Debug)]
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tern -n <namesrv> args...` with `stdin` as standard input; kills it after
/// [`COMMAND_TIMEOUT`].
fn tern(namesrv: &str, args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(bin_path("tern"))
        .arg("-n")
        .arg(namesrv)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tern")?;
    {
        let mut input = child.stdin.take().context("stdin")?;
        input.write_all(stdin.as_bytes())?;
    }
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tern {args:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        success: status.success(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Runs `tern` and requires success.
fn tern_ok(namesrv: &str, args: &[&str], stdin: &str) -> Result<String> {
    let out = tern(namesrv, args, stdin)?;
    if !out.success {
        bail!(
            "tern {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
    }
    Ok(out.stdout)
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(json)
        .collect()
}

/// A cluster whose broker `tern cluster list` already shows.
async fn cluster() -> Result<Cluster> {
    let cluster = Cluster::start(&[])?;
    let ns = cluster.namesrv_addr();
    let addr = cluster.broker.addr.clone();
    eventually(
        "the broker in `tern cluster list`",
        Duration::from_secs(30),
        || {
            let ns = ns.clone();
            let addr = addr.clone();
            async move {
                let out = tern_ok(&ns, &["cluster", "list", "--json"], "").ok()?;
                out.contains(&addr).then_some(())
            }
        },
    )
    .await?;
    Ok(cluster)
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_administers_topics_and_sends_and_consumes() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namesrv.addr.as_str();

    // cluster list: JSON rows with the broker's address.
    let rows = json(&tern_ok(ns, &["cluster", "list", "--json"], "")?)?;
    let row = &rows.as_array().context("array")?[0];
    assert_eq!(row["addr"], c.broker.addr.as_str());
    assert_eq!(row["brokerId"], 0);
    let broker_name = row["brokerName"]
        .as_str()
        .context("brokerName")?
        .to_string();
    // The text form is a table with the same address.
    assert!(tern_ok(ns, &["cluster", "list"], "")?.contains(&c.broker.addr));

    // topic create / list / route.
    let created = json(&tern_ok(
        ns,
        &[
            "topic", "create", "CliTopic", "-w", "4", "-r", "4", "--json",
        ],
        "",
    )?)?;
    assert_eq!(created["brokers"][0]["writeQueueNums"], 4);
    let topics = eventually(
        "CliTopic in the topic list",
        Duration::from_secs(30),
        || async {
            let list = json(&tern_ok(ns, &["topic", "list", "--json"], "").ok()?).ok()?;
            let names: BTreeSet<String> = list
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.contains("CliTopic").then_some(names)
        },
    )
    .await?;
    assert!(
        !topics.contains("TBW102"),
        "system topics are hidden without --all"
    );
    let route = json(&tern_ok(ns, &["topic", "route", "CliTopic", "--json"], "")?)?;
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 4);
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        c.broker.addr.as_str()
    );
    tern_ok(ns, &["topic", "update", "CliTopic", "-w", "2"], "")?;
    let route = json(&tern_ok(ns, &["topic", "route", "CliTopic", "--json"], "")?)?;
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 2);
    assert_eq!(
        route["queueDatas"][0]["readQueueNums"], 4,
        "unset values are kept"
    );

    // send: arguments and standard input, JSON lines.
    let sent = json_lines(&tern_ok(
        ns,
        &[
            "send", "CliTopic", "hello-1", "hello-2", "--keys", "cli-key", "--tag", "T1", "--json",
        ],
        "",
    )?)?;
    assert_eq!(sent.len(), 2);
    let first = &sent[0];
    assert_eq!(first["brokerName"], broker_name.as_str());
    let piped = tern_ok(ns, &["send", "CliTopic"], "line-a\nline-b\n")?;
    assert_eq!(
        piped.lines().filter(|l| l.starts_with("sent ")).count(),
        2,
        "{piped}"
    );

    // consume: a group from the beginning gets all four, as JSON lines.
    let consumed = json_lines(&tern_ok(
        ns,
        &[
            "consume",
            "CliTopic",
            "-g",
            "cli-group",
            "--from-beginning",
            "--count",
            "4",
            "--json",
        ],
        "",
    )?)?;
    let bodies: BTreeSet<&str> = consumed.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(
        bodies,
        BTreeSet::from(["hello-1", "hello-2", "line-a", "line-b"]),
        "{consumed:?}"
    );

    // consume one queue at an offset: exactly the first message sent.
    let queue = first["queueId"].to_string();
    let offset = first["queueOffset"].to_string();
    let one = json_lines(&tern_ok(
        ns,
        &[
            "consume",
            "CliTopic",
            "--broker",
            &broker_name,
            "--queue",
            &queue,
            "--offset",
            &offset,
            "--count",
            "1",
            "--json",
        ],
        "",
    )?)?;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["body"], "hello-1");
    assert_eq!(one[0]["tags"], "T1");

    // consumer progress: the group committed everything it consumed.
    let progress = eventually(
        "committed offsets of cli-group",
        Duration::from_secs(30),
        || async {
            let p = json(&tern_ok(ns, &["consumer", "progress", "cli-group", "--json"], "").ok()?)
                .ok()?;
            let queues = p["queues"].as_array()?;
            let consumed: i64 = queues
                .iter()
                .filter(|q| q["topic"] == "CliTopic")
                .filter_map(|q| q["consumerOffset"].as_i64())
                .sum();
            (consumed == 4).then_some(p)
        },
    )
    .await?;
    assert_eq!(progress["totalLag"], 0, "{progress}");

    // message lookup by key finds both keyed messages (the index is built asynchronously).
    let by_key = eventually("messages by key", Duration::from_secs(30), || async {
        let v = json(&tern_ok(ns, &["message", "key", "CliTopic", "cli-key", "--json"], "").ok()?)
            .ok()?;
        (v.as_array()?.len() == 2).then_some(v)
    })
    .await?;
    assert_eq!(by_key[0]["keys"][0], "cli-key");
    // and by broker offset id.
    let id = first["offsetMsgId"].as_str().context("offsetMsgId")?;
    let by_id = json(&tern_ok(ns, &["message", "id", id, "--json"], "")?)?;
    assert_eq!(by_id[0]["body"], "hello-1");

    // topic stats: four messages over the topic's queues.
    let stats = json(&tern_ok(ns, &["topic", "stats", "CliTopic", "--json"], "")?)?;
    let stored: i64 = stats
        .as_array()
        .context("stats rows")?
        .iter()
        .map(|r| r["maxOffset"].as_i64().unwrap_or(0) - r["minOffset"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(stored, 4);

    // broker info answers a key/value table.
    let info = json(&tern_ok(ns, &["broker", "info", "--json"], "")?)?;
    assert!(info.as_object().is_some_and(|o| !o.is_empty()), "{info}");

    // topic delete removes the route.
    tern_ok(ns, &["topic", "delete", "CliTopic"], "")?;
    let gone = tern(ns, &["topic", "route", "CliTopic"], "")?;
    assert!(!gone.success);
    assert!(gone.stderr.contains("does not exist"), "{}", gone.stderr);
    Ok(())
}

/// `tern bench` runs its scenarios against a real cluster and reports complete figures: every
/// message it sent is counted (no errors), and each latency run has percentiles for all of its
/// samples. Small sizes: this checks the harness, not performance (docs/BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread")]
async fn bench_commands_report_every_message() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namesrv.addr.as_str();
    let report = |args: &[&str]| -> Result<Value> {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.push("--json");
        json(&tern_ok(ns, &all, "")?)
    };

    let produce = report(&[
        "produce", "-t", "BenchP", "--count", "300", "--warmup", "20",
    ])?;
    assert_eq!(produce["messages"], 300, "{produce}");
    assert_eq!(produce["errors"], 0, "{produce}");
    assert_eq!(produce["latencyUs"]["samples"], 300, "{produce}");

    let consume = report(&["consume", "-t", "BenchC", "--fill", "300"])?;
    assert_eq!(consume["messages"], 300, "{consume}");
    assert_eq!(consume["errors"], 0, "{consume}");

    // 200 msgs/s for 2 s, paced by the bench's own thread: all 400 sent and delivered.
    let e2e = report(&[
        "e2e",
        "-t",
        "BenchE",
        "--rate",
        "200",
        "--duration-secs",
        "2",
    ])?;
    assert_eq!(e2e["messages"], 400, "{e2e}");
    assert_eq!(e2e["errors"], 0, "{e2e}");
    assert_eq!(e2e["latencyUs"]["samples"], 400, "{e2e}");
    let elapsed = e2e["elapsedSecs"].as_f64().context("elapsedSecs")?;
    // The schedule spans 2 s (the last send is due at 1.995 s); sends never run ahead of it.
    assert!(elapsed >= 1.99, "{e2e}");
    Ok(())
}

#[test]
fn cli_says_when_no_nameserver_answers_and_how_to_start_one() -> Result<()> {
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let out = tern(&free.to_string(), &["cluster", "list"], "")?;
    assert!(!out.success, "must fail: {out:?}");
    assert!(
        out.stderr.contains("no NameServer answers at"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&free.to_string()), "{}", out.stderr);
    assert!(
        out.stderr.contains("deploy/local-cluster.sh start"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    Ok(())
}
