//! Prometheus metrics, one registry per gate, served in text format on a listener of their own so
//! `/metrics` is never exposed on the public port.

use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::http::body::{Body, full};
use crate::http::gate::Gate;
use crate::services::sessions::SessionCounters;

/// One label, with a fixed name and a `'static` value: lookups allocate nothing.
type Label = [(&'static str, &'static str); 1];

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Label, Counter>,
    /// The counter almost every request bumps, held directly rather than looked up each time.
    forwarded: Counter,
    latency: Histogram,
    logins: Family<Label, Counter>,
    registrations: Counter,
    refreshes: Counter,
    revocations: Counter,
    revocation_entries: Gauge,
    upstream_errors: Family<Label, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authgate");
        let requests = Family::<Label, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let logins = Family::<Label, Counter>::default();
        let registrations = Counter::default();
        let refreshes = Counter::default();
        let revocations = Counter::default();
        let revocation_entries = Gauge::default();
        let upstream_errors = Family::<Label, Counter>::default();
        registry.register(
            "requests",
            "Requests by outcome: forwarded, answered, or the refusal's reason",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers",
            latency.clone(),
        );
        registry.register("logins", "Login attempts by result", logins.clone());
        registry.register("registrations", "Users registered", registrations.clone());
        registry.register("refreshes", "Refresh tokens rotated", refreshes.clone());
        registry.register(
            "revocations",
            "Sessions and tokens revoked by this replica",
            revocations.clone(),
        );
        registry.register(
            "revocation_cache_entries",
            "Revoked sessions and tokens held in memory",
            revocation_entries.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        let forwarded = requests.get_or_create(&[("outcome", "forwarded")]).clone();
        Metrics {
            registry,
            forwarded,
            requests,
            latency,
            logins,
            registrations,
            refreshes,
            revocations,
            revocation_entries,
            upstream_errors,
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, outcome: &'static str, seconds: f64) {
        if outcome == "forwarded" {
            self.forwarded.inc();
        } else {
            self.requests.get_or_create(&[("outcome", outcome)]).inc();
        }
        self.latency.observe(seconds);
        match outcome {
            "upstream_unavailable" => self
                .upstream_errors
                .get_or_create(&[("kind", "unavailable")])
                .inc(),
            "upstream_timeout" => self
                .upstream_errors
                .get_or_create(&[("kind", "timeout")])
                .inc(),
            _ => 0,
        };
    }

    /// Handles onto the counters the sessions service bumps: logins by result, registrations,
    /// refreshes and revocations.
    pub(crate) fn session_counters(&self) -> SessionCounters {
        let logins = |result| self.logins.get_or_create(&[("result", result)]).clone();
        SessionCounters {
            logins_succeeded: logins("succeeded"),
            logins_failed: logins("failed"),
            registrations: self.registrations.clone(),
            refreshes: self.refreshes.clone(),
            revocations: self.revocations.clone(),
        }
    }

    pub(crate) fn set_revocation_entries(&self, entries: u64) {
        self.revocation_entries.set(entries as i64);
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gate = gate.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&gate, &request)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(gate: &Gate, request: &Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        let mut response = Response::new(full("not found\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    gate.metrics.set_revocation_entries(gate.revocations.len());
    let mut response = Response::new(full(gate.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}
