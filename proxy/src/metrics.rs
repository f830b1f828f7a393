//! Prometheus metrics of the proxy. Labels are bounded: never a user, a path or a token.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every metric the proxy exports, registered on an injected registry.
#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub open_connections: IntGauge,
    pub parked_connections: IntGauge,
    pub connections_rejected: IntCounter,
    pub tls_handshake_failures: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_duration: Histogram,
    pub cert_not_after: IntGauge,
    pub cert_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub auth_decisions: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub jwks_last_success: IntGaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new("kms_proxy_requests_total", "Requests handled, by outcome"),
                &["method", "status_class", "auth_method", "outcome"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "kms_proxy_request_duration_seconds",
                    "Time from request received to response headers sent",
                )
                .buckets(buckets.clone()),
                &["outcome"],
            )?,
            in_flight: IntGauge::new("kms_proxy_requests_in_flight", "Requests being served")?,
            open_connections: IntGauge::new(
                "kms_proxy_open_connections",
                "Client connections currently open",
            )?,
            parked_connections: IntGauge::new(
                "kms_proxy_parked_connections",
                "Open client connections waiting for a request without HTTP buffers",
            )?,
            connections_rejected: IntCounter::new(
                "kms_proxy_connections_rejected_total",
                "Client connections closed at accept because max_connections was reached",
            )?,
            tls_handshake_failures: IntCounterVec::new(
                Opts::new(
                    "kms_proxy_tls_handshake_failures_total",
                    "TLS handshakes with clients that failed",
                ),
                &["reason"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "kms_proxy_upstream_errors_total",
                    "Failed upstream calls, by kind",
                ),
                &["kind"],
            )?,
            upstream_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kms_proxy_upstream_duration_seconds",
                    "Time from forwarding a request to the upstream's response headers",
                )
                .buckets(buckets),
            )?,
            cert_not_after: IntGauge::new(
                "kms_proxy_server_certificate_not_after_timestamp_seconds",
                "Expiry (Unix time) of the server certificate in use",
            )?,
            cert_reloads: IntCounterVec::new(
                Opts::new(
                    "kms_proxy_certificate_reloads_total",
                    "Server certificate reload attempts, by result",
                ),
                &["result"],
            )?,
            build_info: IntGaugeVec::new(
                Opts::new("kms_proxy_build_info", "Build information; always 1"),
                &["version"],
            )?,
            auth_decisions: IntCounterVec::new(
                Opts::new(
                    "kms_proxy_auth_decisions_total",
                    "Authentication decisions, by method, outcome and reason",
                ),
                &["method", "outcome", "reason"],
            )?,
            jwks_fetches: IntCounterVec::new(
                Opts::new(
                    "kms_proxy_jwks_fetches_total",
                    "JWKS fetches, by identity provider (issuer) and result",
                ),
                &["provider", "result"],
            )?,
            jwks_last_success: IntGaugeVec::new(
                Opts::new(
                    "kms_proxy_jwks_last_success_timestamp_seconds",
                    "Unix time of the last successful JWKS fetch, by identity provider",
                ),
                &["provider"],
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.auth_decisions.clone()))?;
        registry.register(Box::new(metrics.jwks_fetches.clone()))?;
        registry.register(Box::new(metrics.jwks_last_success.clone()))?;
        registry.register(Box::new(metrics.request_duration.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        registry.register(Box::new(metrics.open_connections.clone()))?;
        registry.register(Box::new(metrics.parked_connections.clone()))?;
        registry.register(Box::new(metrics.connections_rejected.clone()))?;
        registry.register(Box::new(metrics.tls_handshake_failures.clone()))?;
        registry.register(Box::new(metrics.upstream_errors.clone()))?;
        registry.register(Box::new(metrics.upstream_duration.clone()))?;
        registry.register(Box::new(metrics.cert_not_after.clone()))?;
        registry.register(Box::new(metrics.cert_reloads.clone()))?;
        registry.register(Box::new(metrics.build_info.clone()))?;
        kms_common::metrics::register_process(registry)?;
        kms_common::metrics::register_log_drops(registry, "kms_proxy_log_lines_dropped_total")?;
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Make the labelled families visible at zero from the start.
        for reason in [
            "timeout",
            "unknown_ca",
            "expired",
            "revoked",
            "no_certificate",
            "bad_certificate",
            "protocol",
        ] {
            metrics.tls_handshake_failures.with_label_values(&[reason]);
        }
        for kind in ["connect", "connect_timeout", "tls", "timeout", "protocol"] {
            metrics.upstream_errors.with_label_values(&[kind]);
        }
        for result in ["success", "failure"] {
            metrics.cert_reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }
}

/// `2xx`, `4xx`, ... for a status code.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The method as a bounded label: the standard ones, else `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "other",
    }
}
