//! Process setup the NameServer and broker binaries share (cargo feature `runtime`): logging
//! to stderr with an `EnvFilter`, the SIGINT/SIGTERM shutdown future, and the
//! `listening on IP:PORT` line that scripts and tests wait for on stdout.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;

use tracing::info;
use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber: formatted lines on stderr, filtered by
/// `RUST_LOG` or else by `default_filter` (`"info"`), with ANSI colours only when stderr is
/// a terminal (no colour codes in log files). Does nothing if a subscriber is already set.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the SIGINT and SIGTERM handlers now (call it before announcing the address, so
/// a signal sent right after the announcement is never missed) and returns the future that
/// resolves, with an info log line, on the first of them. Off Unix: Ctrl-C only.
///
/// # Errors
/// The OS refused to install a signal handler.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => info!("received SIGINT, shutting down"),
            _ = term.recv() => info!("received SIGTERM, shutting down"),
        }
    })
}

/// Returns the future that resolves, with an info log line, on Ctrl-C.
///
/// # Errors
/// Never on this platform (the handler is installed when the future is first polled).
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        info!("received Ctrl-C, shutting down");
    })
}

/// Prints `listening on {addr}` as one flushed line on stdout: the line the deploy scripts
/// and the tests read to learn the bound port.
///
/// # Errors
/// Writing or flushing stdout failed (closed pipe).
pub fn announce_listening(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn shutdown_future_waits_for_a_signal() {
        let signal = shutdown_signal().unwrap();
        // Without a signal the future stays pending.
        let waited = tokio::time::timeout(Duration::from_millis(50), signal).await;
        assert!(waited.is_err());
    }

    #[test]
    fn logging_can_be_initialised_twice() {
        init_logging("warn");
        init_logging("info");
        tracing::info!("still fine");
    }
}
