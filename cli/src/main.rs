//! `tern`: the command line of a Tern (or Apache RocketMQ) cluster.
//!
//! It administers topics and consumer groups, looks messages up, sends and consumes for quick
//! checks, and runs end-to-end benchmarks. It talks to the NameServers given with
//! `-n/--namesrv HOST:PORT[;HOST:PORT]` (or `NAMESRV_ADDR`, default `127.0.0.1:9876`), and from
//! the routes they return, to the brokers.
//!
//! # Layout
//! - `admin`: the SDK's `Admin` client plus the NameServer check, optional routes, master
//!   listings and errors in words.
//! - `commands`: cluster, topic, consumer-group and broker commands.
//! - `messaging`: `send`, `consume` and message lookup.
//! - `bench`: `tern bench` (produce, consume, end-to-end, transactional).
//! - `output`: text tables, JSON output, body previews, time formatting.
//! - `time_arg`: parsing of `--to TIME` style arguments.

mod admin;
mod bench;
mod commands;
mod messaging;
mod output;
mod time_arg;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::admin::{describe_error, AdminClient, Encoding};

/// mimalloc instead of glibc's malloc: every request allocates and frees many small buffers,
/// and glibc's `malloc`/`free` were 15–25 % of the CPU of a publish run (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Administer, use and benchmark a Tern (or Apache RocketMQ) cluster.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// NameServer address(es), `HOST:PORT[;HOST:PORT]`.
    #[arg(
        short = 'n',
        long = "namesrv",
        env = "NAMESRV_ADDR",
        default_value = "127.0.0.1:9876",
        global = true,
        value_name = "ADDR[;ADDR]"
    )]
    pub(crate) namesrv: String,
    /// Print listings as JSON (streams such as `send` and `consume` print one JSON object per
    /// line).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Timeout of each request to a NameServer or broker, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    pub(crate) request_timeout_ms: u64,
    /// Encoding of admin requests' headers and bodies: `json` (default; understood by Apache
    /// RocketMQ and Tern) or `msgpack` (Tern only). `send`, `consume`, `message at` and
    /// `bench` use the SDK's default, MessagePack.
    #[arg(long, global = true, value_enum, default_value_t = Encoding::Json)]
    pub(crate) serialize_type: Encoding,
    /// Worker threads of this process's async runtime. Default: 1 for `bench` (the client
    /// shares a small machine with the broker it measures, and a second worker cost more in
    /// wake-ups than it added: docs/BENCHMARKS.md, "fourth session"), else one per CPU.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) worker_threads: Option<u16>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Clusters and their brokers.
    #[command(subcommand)]
    Cluster(commands::ClusterCmd),
    /// Create, update, delete, list and inspect topics.
    #[command(subcommand)]
    Topic(commands::TopicCmd),
    /// Consumer groups: list, progress and lag, connections, offset reset.
    #[command(subcommand, alias = "group")]
    Consumer(commands::ConsumerCmd),
    /// Look messages up by key, by id or by queue offset.
    #[command(subcommand)]
    Message(messaging::MessageCmd),
    /// Broker runtime information.
    #[command(subcommand)]
    Broker(commands::BrokerCmd),
    /// Send messages given as arguments, or one per line of standard input.
    Send(messaging::SendArgs),
    /// Consume and print messages.
    Consume(messaging::ConsumeArgs),
    /// Benchmarks against a running cluster.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// Worker threads for the runtime: `--worker-threads`, else 1 for `bench`, else `None`
/// (tokio's default: `TOKIO_WORKER_THREADS` or one per CPU).
fn runtime_workers(cli: &Cli) -> Option<usize> {
    cli.worker_threads.map(usize::from).or(match cli.command {
        Command::Bench(_) => Some(1),
        _ => None,
    })
}

async fn run(cli: Cli) -> Result<()> {
    let admin = AdminClient::new(
        &cli.namesrv,
        Duration::from_millis(cli.request_timeout_ms.max(1)),
        cli.serialize_type,
    )
    .await?;
    let result = run_command(&admin, cli.command, cli.json).await;
    admin.shutdown().await;
    result
}

async fn run_command(admin: &AdminClient, command: Command, json: bool) -> Result<()> {
    admin.ensure_namesrv().await?;
    match command {
        Command::Cluster(cmd) => commands::cluster(admin, cmd, json).await,
        Command::Topic(cmd) => commands::topic(admin, cmd, json).await,
        Command::Consumer(cmd) => commands::consumer(admin, cmd, json).await,
        Command::Broker(cmd) => commands::broker(admin, cmd, json).await,
        Command::Message(cmd) => messaging::message(admin, cmd, json).await,
        Command::Send(args) => messaging::send(admin, args, json).await,
        Command::Consume(args) => messaging::consume(admin, args, json).await,
        Command::Bench(cmd) => bench::run(admin, cmd, json).await,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let workers = runtime_workers(&cli);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("tern: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tern: error: {}", describe_error(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_flag_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["tern", "topic", "list", "--json", "-n", "h:1"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.namesrv, "h:1");
    }

    #[test]
    fn benchmarks_default_to_one_worker_thread() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap();
        assert_eq!(
            runtime_workers(&parse(&["tern", "bench", "produce"])),
            Some(1)
        );
        assert_eq!(
            runtime_workers(&parse(&[
                "tern",
                "bench",
                "produce",
                "--worker-threads",
                "3"
            ])),
            Some(3)
        );
        assert_eq!(runtime_workers(&parse(&["tern", "topic", "list"])), None);
        assert_eq!(
            runtime_workers(&parse(&["tern", "--worker-threads", "2", "topic", "list"])),
            Some(2)
        );
        assert!(
            Cli::try_parse_from(["tern", "bench", "produce", "--worker-threads", "0"]).is_err()
        );
    }
}
