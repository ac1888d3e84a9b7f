//! What a platform team scrapes from the relay (`relay --metrics ADDR`): the OpenMetrics text
//! format that Prometheus reads, written by the `prometheus-client` crate.
//!
//! - `imds_shim_relay_grants_active`: grants usable now (counted at each scrape);
//! - `imds_shim_relay_requests_total{outcome=...}`: requests by [`Outcome`], each refusal
//!   reason apart;
//! - `imds_shim_relay_upstream_calls_total{upstream=...}` and
//!   `imds_shim_relay_upstream_failures_total{upstream=...}`: the relay's own calls to
//!   [`Upstream`]s (IMDS, STS `AssumeRole`);
//! - `imds_shim_relay_served_credentials_age_seconds`: how long before being served the
//!   credentials were fetched;
//! - `imds_shim_relay_request_duration_seconds`: from a request's head read to its answer.
//!
//! No label holds a grant's id, label or anything a client sent: the set of series is fixed,
//! and no secret can reach it.
//!
//! The endpoint is an input path of its own, kept apart from serving: `GET /metrics` only,
//! request heads of at most 8 KiB within 5 s, no body, at most [`MAX_SCRAPERS`] connections at
//! once (more are closed unanswered), each closed after 10 s.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use strum::VariantArray as _;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::logging::log;

/// The most scrapes served at once.
pub const MAX_SCRAPERS: usize = 8;
/// How long a scraper may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's smallest read buffer, which bounds a request head.
const MAX_HEAD_BYTES: usize = 8192;
/// The path served.
pub const METRICS_PATH: &str = "/metrics";
/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a credentials request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// 200: credentials served.
    Served,
    /// 403: no `<id>.<secret>`.
    NotAGrant,
    /// 403: no grant has the id.
    UnknownGrant,
    /// 403: the secret is wrong.
    WrongSecret,
    /// 403: the grant has expired.
    Expired,
    /// 403: the grant was revoked.
    Revoked,
    /// 429: over the grant's rate limit.
    RateLimited,
    /// 403: the full-URI form without an `Authorization` header.
    NoAuthorization,
    /// 404: not a credentials path.
    NotFound,
    /// 405: not a GET.
    MethodNotAllowed,
    /// 413: a request body.
    Body,
    /// 503: no credentials to serve (the upstream failed).
    NoCredentials,
}

/// Where the relay gets credentials from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Upstream {
    /// The instance role from IMDS on the host.
    Imds,
    /// A role assumed with STS `AssumeRole`.
    AssumeRole,
}

macro_rules! snake_case_label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(<&'static str>::from(*self))
            }
        }
    )*};
}
snake_case_label_value!(Outcome, Upstream);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Upstream,
}

/// The relay's metrics; every series exists from the start, at 0.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    grants_active: Gauge,
    requests: Family<OutcomeLabel, Counter>,
    upstream_calls: Family<UpstreamLabel, Counter>,
    upstream_failures: Family<UpstreamLabel, Counter>,
    credentials_age: Histogram,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, every series at 0.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("imds_shim_relay");
        let grants_active = Gauge::default();
        let requests = Family::<OutcomeLabel, Counter>::default();
        let upstream_calls = Family::<UpstreamLabel, Counter>::default();
        let upstream_failures = Family::<UpstreamLabel, Counter>::default();
        // 1 s .. ~9 h: the credentials' lifetime is at most 12 h (IMDS), 1 h (AssumeRole).
        let credentials_age = Histogram::new(exponential_buckets(1.0, 3.0, 11));
        // 50 µs .. ~1.6 s.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "grants_active",
            "Grants usable now (neither expired nor revoked)",
            grants_active.clone(),
        );
        registry.register(
            "requests",
            "Credentials requests by outcome: served, or why not",
            requests.clone(),
        );
        registry.register(
            "upstream_calls",
            "The relay's calls for credentials (IMDS, STS AssumeRole)",
            upstream_calls.clone(),
        );
        registry.register(
            "upstream_failures",
            "The relay's calls for credentials that failed",
            upstream_failures.clone(),
        );
        registry.register(
            "served_credentials_age_seconds",
            "How long before being served the credentials were fetched",
            credentials_age.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From a credentials request's head read to its answer",
            latency.clone(),
        );
        for &outcome in Outcome::VARIANTS {
            drop(requests.get_or_create(&OutcomeLabel { outcome }));
        }
        for &upstream in Upstream::VARIANTS {
            drop(upstream_calls.get_or_create(&UpstreamLabel { upstream }));
            drop(upstream_failures.get_or_create(&UpstreamLabel { upstream }));
        }
        Self {
            registry,
            grants_active,
            requests,
            upstream_calls,
            upstream_failures,
            credentials_age,
            latency,
        }
    }

    /// Counts a request that ended in `outcome` after `took`.
    pub fn request(&self, outcome: Outcome, took: Duration) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Records that credentials fetched at `fetched` were served at `now`.
    pub fn served_age(&self, fetched: SystemTime, now: SystemTime) {
        let age = now.duration_since(fetched).unwrap_or_default();
        self.credentials_age.observe(age.as_secs_f64());
    }

    /// Counts a call to `upstream`, and whether it failed.
    pub fn upstream(&self, upstream: Upstream, ok: bool) {
        let label = UpstreamLabel { upstream };
        self.upstream_calls.get_or_create(&label).inc();
        if !ok {
            self.upstream_failures.get_or_create(&label).inc();
        }
    }

    /// The text a scrape gets, with `grants_active` as given.
    pub fn render(&self, grants_active: usize) -> String {
        self.grants_active
            .set(i64::try_from(grants_active).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String does not fail; should it, the scrape says so.
            text.clear();
            let _ = writeln!(text, "# the metrics could not be encoded: {e}\n# EOF");
        }
        text
    }
}

/// Serves [`METRICS_PATH`] on `listener` until `shutdown` turns true: `metrics`, with
/// `grants_active()` counted at each scrape.
pub async fn serve<F>(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    grants_active: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn() -> usize + Send + Sync + 'static,
{
    let grants_active = Arc::new(grants_active);
    let places = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log(&format!("metrics: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // Every place taken: this one is closed unanswered.
        let Ok(place) = places.clone().try_acquire_owned() else {
            continue;
        };
        let (metrics, grants_active) = (metrics.clone(), grants_active.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = scrape(&metrics, grants_active(), &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(place);
        });
    }
}

fn scrape(
    metrics: &Metrics,
    grants_active: usize,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::from_static(text.as_bytes())))
            .expect("a valid response")
    };
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    if req.body().size_hint().upper() != Some(0) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "no request body\n");
    }
    if req.uri().path() != METRICS_PATH {
        return plain(StatusCode::NOT_FOUND, "only /metrics\n");
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Full::new(Bytes::from(metrics.render(grants_active))))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start_and_counts_move() {
        let m = Metrics::new();
        let text = m.render(0);
        assert!(text.contains("imds_shim_relay_grants_active 0\n"), "{text}");
        for outcome in ["served", "wrong_secret", "rate_limited", "no_credentials"] {
            assert!(
                text.contains(&format!(
                    "imds_shim_relay_requests_total{{outcome=\"{outcome}\"}} 0\n"
                )),
                "{text}"
            );
        }
        assert!(text.contains("imds_shim_relay_upstream_calls_total{upstream=\"assume_role\"} 0\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");

        m.request(Outcome::Served, Duration::from_micros(300));
        m.request(Outcome::Revoked, Duration::from_micros(80));
        m.upstream(Upstream::Imds, true);
        m.upstream(Upstream::AssumeRole, false);
        let now = SystemTime::now();
        m.served_age(now - Duration::from_secs(100), now);
        let text = m.render(3);
        for line in [
            "imds_shim_relay_grants_active 3",
            "imds_shim_relay_requests_total{outcome=\"served\"} 1",
            "imds_shim_relay_requests_total{outcome=\"revoked\"} 1",
            "imds_shim_relay_upstream_calls_total{upstream=\"imds\"} 1",
            "imds_shim_relay_upstream_failures_total{upstream=\"imds\"} 0",
            "imds_shim_relay_upstream_failures_total{upstream=\"assume_role\"} 1",
            "imds_shim_relay_request_duration_seconds_count 2",
            "imds_shim_relay_served_credentials_age_seconds_count 1",
            "imds_shim_relay_served_credentials_age_seconds_sum 100.0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}:\n{text}");
        }
    }
}
