//! Prometheus metrics of the NameServer, served over HTTP at `GET /metrics` in the
//! OpenMetrics text format (`prometheus-client`) when `metrics_listen` (flag
//! `--metrics-listen HOST:PORT`) is set. Off by default; `docs/metrics.md` lists every metric.
//!
//! Contract: request counters and latencies are recorded by [`Instrumented`], a
//! [`RequestHandler`](tern_common::remoting::RequestHandler) wrapper around the dispatcher; the route-table gauges (live brokers,
//! clusters, topics) are read from the tables at each scrape, so a scrape costs one pass over
//! the cluster and topic tables and never blocks request handling for longer than those
//! reads. Label values are bounded: request codes outside RocketMQ's table count as `UNKNOWN`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tern_common::metrics::{RequestMetrics, RequestObserver};
use tern_common::protocol::RemotingCommand;

use crate::processor::NameServer;

/// The NameServer's metric registry.
#[derive(Debug)]
pub struct NameServerMetrics {
    registry: Registry,
    requests: RequestMetrics,
    live_brokers: Gauge,
    clusters: Gauge,
    topics: Gauge,
    started: Instant,
    uptime: Gauge,
}

impl Default for NameServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NameServerMetrics {
    /// A registry with every NameServer metric registered (all zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tern_nameserver");
        let requests = RequestMetrics::register(
            &mut registry,
            "Time to handle a request, by request code, seconds",
        );
        let live_brokers = Gauge::default();
        registry.register(
            "live_brokers",
            "Broker processes registered and not expired",
            live_brokers.clone(),
        );
        let clusters = Gauge::default();
        registry.register(
            "clusters",
            "Clusters with at least one broker",
            clusters.clone(),
        );
        let topics = Gauge::default();
        registry.register("topics", "Topics in the route table", topics.clone());
        let uptime = Gauge::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the NameServer started",
            uptime.clone(),
        );
        NameServerMetrics {
            registry,
            requests,
            live_brokers,
            clusters,
            topics,
            started: Instant::now(),
            uptime,
        }
    }

    /// Counts one handled request of `code` that took `elapsed`.
    pub fn observe_request(&self, code: i32, elapsed: Duration) {
        self.requests.observe(code, elapsed);
    }

    /// Reads the route-table gauges from `state` and renders every metric as OpenMetrics
    /// text.
    pub fn render(&self, state: &NameServer) -> String {
        let routes = state.routes();
        self.live_brokers
            .set(i64::try_from(routes.live_broker_count()).unwrap_or(i64::MAX));
        let info = routes.cluster_info();
        self.clusters
            .set(i64::try_from(info.cluster_addr_table.len()).unwrap_or(i64::MAX));
        self.topics
            .set(i64::try_from(routes.all_topics().topic_list.len()).unwrap_or(i64::MAX));
        self.uptime
            .set(i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        tern_common::metrics::render(&self.registry)
    }
}

impl RequestObserver for NameServerMetrics {
    type Summary = i32;

    fn summarize(&self, request: &RemotingCommand) -> i32 {
        request.code
    }

    fn observe(&self, code: i32, _response: Option<&RemotingCommand>, elapsed: Duration) {
        self.observe_request(code, elapsed);
    }
}

/// A [`RequestHandler`](tern_common::remoting::RequestHandler) that records each request's
/// code and handling time into [`NameServerMetrics`], then delegates.
pub type Instrumented<H> = tern_common::metrics::Instrumented<H, NameServerMetrics>;

/// Binds `addr` and serves `GET /metrics` for `state` until `shutdown` resolves. A bind
/// failure is logged at error level and the NameServer runs on without metrics.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<NameServerMetrics>,
    state: Arc<NameServer>,
    shutdown: impl Future<Output = ()>,
) {
    let render = move || metrics.render(&state);
    tern_common::metrics::serve(addr, "tern-nameserver", Arc::new(render), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NameServerConfig;

    #[test]
    fn rendering_counts_requests_by_code_name() {
        let metrics = NameServerMetrics::new();
        metrics.observe_request(105, Duration::from_micros(50));
        metrics.observe_request(105, Duration::from_micros(70));
        metrics.observe_request(987_654, Duration::from_micros(70));
        let state = NameServer::new(NameServerConfig::default());
        let text = metrics.render(&state);
        assert!(
            text.contains("tern_nameserver_requests_total{code=\"GET_ROUTEINFO_BY_TOPIC\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tern_nameserver_requests_total{code=\"UNKNOWN\"} 1"),
            "{text}"
        );
        assert!(text.contains("tern_nameserver_live_brokers 0"), "{text}");
        assert!(
            text.contains(
                "tern_nameserver_request_duration_seconds_count{code=\"GET_ROUTEINFO_BY_TOPIC\"} 2"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
