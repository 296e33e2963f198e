//! Prometheus metrics of the NameServer, served over HTTP at `GET /metrics` in the
//! OpenMetrics text format (`prometheus-client`) when `metrics_listen` (flag
//! `--metrics-listen HOST:PORT`) is set. Off by default; `docs/metrics.md` lists every metric.
//!
//! Contract: request counters and latencies are recorded by [`Instrumented`], a
//! [`RequestHandler`] wrapper around the dispatcher; the route-table gauges (live brokers,
//! clusters, topics) are read from the tables at each scrape, so a scrape costs one pass over
//! the cluster and topic tables and never blocks request handling for longer than those
//! reads. Label values are bounded: request codes outside RocketMQ's table count as `UNKNOWN`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tern_common::protocol::{RemotingCommand, RequestCode};
use tern_common::remoting::{Connection, RequestHandler};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::processor::NameServer;

/// Most concurrent HTTP connections of the metrics endpoint; more wait to be accepted.
const MAX_HTTP_CONNECTIONS: usize = 16;
/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The OpenMetrics text content type that Prometheus negotiates.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of per-request-code metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    /// RocketMQ's constant name of the request code (`GET_ROUTEINFO_BY_TOPIC`), or `UNKNOWN`.
    code: String,
}

fn code_label(code: i32) -> CodeLabels {
    CodeLabels {
        code: RequestCode::try_from(code)
            .map(|c| c.to_string())
            .unwrap_or_else(|_| "UNKNOWN".to_string()),
    }
}

type LatencyFamily = Family<CodeLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 10 µs .. ~5 s in 20 doubling buckets.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The NameServer's metric registry.
#[derive(Debug)]
pub struct NameServerMetrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    request_duration: LatencyFamily,
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
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by RocketMQ request code",
            requests.clone(),
        );
        let request_duration: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time to handle a request, by request code, seconds",
            request_duration.clone(),
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
            request_duration,
            live_brokers,
            clusters,
            topics,
            started: Instant::now(),
            uptime,
        }
    }

    /// Counts one handled request of `code` that took `elapsed`.
    pub fn observe_request(&self, code: i32, elapsed: Duration) {
        let labels = code_label(code);
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
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
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A [`RequestHandler`] that records each request's code and handling time, then delegates.
#[derive(Debug)]
pub struct Instrumented<H> {
    inner: H,
    metrics: Arc<NameServerMetrics>,
}

impl<H> Instrumented<H> {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: H, metrics: Arc<NameServerMetrics>) -> Self {
        Instrumented { inner, metrics }
    }
}

impl<H: RequestHandler> RequestHandler for Instrumented<H> {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        let code = request.code;
        let started = Instant::now();
        let response = self.inner.handle(conn, request).await;
        self.metrics.observe_request(code, started.elapsed());
        response
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.inner.on_connection_closed(conn);
    }
}

/// Binds `addr` and serves `GET /metrics` for `state` until `shutdown` resolves. A bind
/// failure is logged at error level and the NameServer runs on without metrics.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<NameServerMetrics>,
    state: Arc<NameServer>,
    shutdown: impl Future<Output = ()>,
) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(%addr, cause = %err, "cannot bind the metrics listener; metrics are off");
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    info!("metrics listening on http://{bound}/metrics");
    let render = move || metrics.render(&state);
    serve_http(listener, Arc::new(render), shutdown).await;
}

/// The HTTP loop: accepts up to [`MAX_HTTP_CONNECTIONS`] connections at once and answers
/// `GET /metrics` with `render()`, `GET /` with a pointer to it, other paths 404 and other
/// methods 405.
async fn serve_http(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    warn!(cause = %err, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let render = Arc::clone(&render);
                async move { Ok::<_, Infallible>(respond(&req, render.as_ref())) }
            });
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = result {
                debug!(%peer, cause = %err, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn respond<B>(
    req: &Request<B>,
    render: &(dyn Fn() -> String + Send + Sync),
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        response
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, render()),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "tern-nameserver: metrics at /metrics\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NameServerConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn http_endpoint_serves_metrics_and_404s_elsewhere() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(
            listener,
            Arc::new(|| "x_total 1\n# EOF\n".to_string()),
            async {
                let _ = stop_rx.await;
            },
        ));
        let ok = http_get(addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.ends_with("x_total 1\n# EOF\n"), "{ok}");
        let missing = http_get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let _ = stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
