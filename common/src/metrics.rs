//! The Prometheus plumbing the NameServer and the broker share (cargo feature `metrics`):
//! the `GET /metrics` HTTP endpoint, the per-request-code counter and latency histogram, and
//! [`Instrumented`], the [`RequestHandler`] wrapper that times every request.
//!
//! Each server keeps its own metric families in its own registry and implements
//! [`RequestObserver`] to record what it wants of a request and its response; this module
//! only serves the rendered text (OpenMetrics, `prometheus-client`) and times the handler.
//! `docs/metrics.md` lists every metric.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
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
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::protocol::{RemotingCommand, RequestCode};
use crate::remoting::{Connection, RequestHandler};

/// Most concurrent HTTP connections of a metrics endpoint; more wait to be accepted.
pub const MAX_HTTP_CONNECTIONS: usize = 16;
/// How long an HTTP client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The OpenMetrics text content type that Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the per-request-code metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    /// RocketMQ's constant name of the request code (`GET_ROUTEINFO_BY_TOPIC`), or `UNKNOWN`.
    code: String,
}

type LatencyFamily = Family<CodeLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 10 µs .. ~5 s in 20 doubling buckets.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// RocketMQ's constant name of request code `code` (`SEND_MESSAGE_V2`), or `UNKNOWN` for a
/// code outside its table, so label values stay bounded.
pub fn code_name(code: i32) -> String {
    RequestCode::try_from(code)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| "UNKNOWN".to_string())
}

/// Request codes below this have their metric handles cached in [`RequestMetrics`]; every
/// code RocketMQ defines for a client request is (the largest is in the low thousands, the
/// common ones below 400).
const CACHED_CODES: usize = 4096;

/// The `requests` counter and `request_duration_seconds` histogram, both labelled by
/// request code name.
///
/// The handles of a code are looked up in the families once and kept: a family lookup
/// renders the code's name into a `String`, hashes it and takes a lock, which was several
/// per cent of a broker's CPU per request.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    requests: Family<CodeLabels, Counter>,
    request_duration: LatencyFamily,
    by_code: Arc<[OnceLock<(Counter, Histogram)>]>,
}

impl RequestMetrics {
    /// Registers both families in `registry` (under its prefix); `duration_help` is the help
    /// text of the histogram, which is in seconds with 20 doubling buckets from 10 µs.
    pub fn register(registry: &mut Registry, duration_help: &str) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by RocketMQ request code",
            requests.clone(),
        );
        let request_duration: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            duration_help,
            request_duration.clone(),
        );
        RequestMetrics {
            requests,
            request_duration,
            by_code: (0..CACHED_CODES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The counter and histogram of `code`, looked up in the families.
    fn handles(&self, code: i32) -> (Counter, Histogram) {
        let labels = CodeLabels {
            code: code_name(code),
        };
        (
            self.requests.get_or_create(&labels).clone(),
            self.request_duration.get_or_create(&labels).clone(),
        )
    }

    /// Counts one handled request of `code` that took `elapsed`.
    pub fn observe(&self, code: i32, elapsed: Duration) {
        let record = |(requests, duration): &(Counter, Histogram)| {
            requests.inc();
            duration.observe(elapsed.as_secs_f64());
        };
        match usize::try_from(code).ok().and_then(|i| self.by_code.get(i)) {
            Some(cached) => record(cached.get_or_init(|| self.handles(code))),
            None => record(&self.handles(code)),
        }
    }
}

/// Renders every metric of `registry` as OpenMetrics text (ending in `# EOF`).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// What a server records of each request handled through [`Instrumented`].
pub trait RequestObserver: Send + Sync + 'static {
    /// What is kept of the request while the handler owns it.
    type Summary: Send;

    /// Takes what [`observe`](Self::observe) needs from `request` before it is handled.
    fn summarize(&self, request: &RemotingCommand) -> Self::Summary;

    /// Records a handled request: its summary, its response (`None` when answered later or
    /// oneway) and the handling time.
    fn observe(
        &self,
        summary: Self::Summary,
        response: Option<&RemotingCommand>,
        elapsed: Duration,
    );
}

/// A [`RequestHandler`] that times every request and hands it, with its response, to an
/// observer; everything else is delegated to the inner handler.
#[derive(Debug)]
pub struct Instrumented<H, O> {
    inner: H,
    observer: Arc<O>,
}

impl<H, O> Instrumented<H, O> {
    /// Wraps `inner`, recording into `observer`.
    pub fn new(inner: H, observer: Arc<O>) -> Self {
        Instrumented { inner, observer }
    }
}

impl<H: RequestHandler, O: RequestObserver> RequestHandler for Instrumented<H, O> {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        let summary = self.observer.summarize(&request);
        let started = Instant::now();
        let response = self.inner.handle(conn, request).await;
        self.observer
            .observe(summary, response.as_ref(), started.elapsed());
        response
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.inner.on_connection_closed(conn);
    }
}

/// Binds `addr` and serves `GET /metrics` with `render()` until `shutdown` resolves; `name`
/// (`tern-broker`) appears in the answer of `GET /`. A bind failure is logged at error level
/// and the server runs on without metrics.
pub async fn serve(
    addr: SocketAddr,
    name: &'static str,
    render: Arc<dyn Fn() -> String + Send + Sync>,
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
    serve_http(listener, name, render, shutdown).await;
}

/// The HTTP loop on a bound `listener`: accepts up to [`MAX_HTTP_CONNECTIONS`] connections at
/// once and answers `GET /metrics` with `render()`, `GET /` with a pointer to it, other paths
/// 404 and other methods 405.
pub async fn serve_http(
    listener: TcpListener,
    name: &'static str,
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
                async move { Ok::<_, Infallible>(respond(&req, name, render.as_ref())) }
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
    name: &str,
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
            format!("{name}: metrics at /metrics\n"),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn request_metrics_count_by_code_name() {
        let mut registry = Registry::with_prefix("x");
        let m = RequestMetrics::register(&mut registry, "Handling time, seconds");
        m.observe(105, Duration::from_micros(50));
        m.observe(105, Duration::from_micros(70));
        m.observe(987_654, Duration::from_micros(70));
        let text = render(&registry);
        assert!(
            text.contains("x_requests_total{code=\"GET_ROUTEINFO_BY_TOPIC\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("x_requests_total{code=\"UNKNOWN\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("x_request_duration_seconds_count{code=\"GET_ROUTEINFO_BY_TOPIC\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    async fn http_request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn http_endpoint_serves_metrics_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(
            listener,
            "tern-test",
            Arc::new(|| "x_total 1\n# EOF\n".to_string()),
            async {
                let _ = stop_rx.await;
            },
        ));
        let ok = http_request(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.ends_with("x_total 1\n# EOF\n"), "{ok}");
        let root = http_request(addr, "GET", "/").await;
        assert!(root.ends_with("tern-test: metrics at /metrics\n"), "{root}");
        let missing = http_request(addr, "GET", "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = http_request(addr, "POST", "/metrics").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let _ = stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
