//! The plugin's metrics (calls by method and outcome, latency, health) and its one log line
//! per call. Labels are bounded: the method, and `ok` or the gRPC code.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tonic::Status;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    calls: IntCounterVec,
    latency: HistogramVec,
    healthy: IntGauge,
    last_healthy: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let calls = IntCounterVec::new(
            Opts::new(
                "kms_plugin_calls_total",
                "KMS v2 calls by method and outcome (ok or the gRPC code)",
            ),
            &["method", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kms_plugin_call_duration_seconds",
                "Time to answer a KMS v2 call, KMS round trips included",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method"],
        )?;
        let healthy = IntGauge::new(
            "kms_plugin_healthy",
            "1 when the last Status round trip through the KMS succeeded",
        )?;
        let last_healthy = IntGauge::new(
            "kms_plugin_last_healthy_timestamp_seconds",
            "When a Status round trip through the KMS last succeeded (Unix time)",
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(healthy.clone()))?;
        registry.register(Box::new(last_healthy.clone()))?;
        kms_common::metrics::register_log_drops(&registry, "kms_plugin_log_lines_dropped_total")?;
        Ok(Self {
            registry,
            calls,
            latency,
            healthy,
            last_healthy,
        })
    }

    pub fn call(&self, method: &str, outcome: &str, took: Duration) {
        self.calls.with_label_values(&[method, outcome]).inc();
        self.latency
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
    }

    pub fn healthy(&self, healthy: bool) {
        self.healthy.set(i64::from(healthy));
        if healthy {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.last_healthy
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.get() == 1
    }

    /// Counts and logs one Encrypt or Decrypt (never its data).
    pub fn finish<T>(
        &self,
        method: &str,
        request: &str,
        result: &Result<T, Status>,
        started: Instant,
    ) {
        let took = started.elapsed();
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        };
        self.call(method, &outcome, took);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok(_) => tracing::info!(target: "access", method, request, outcome, micros),
            Err(status) => tracing::warn!(
                target: "access",
                method,
                request,
                outcome,
                reason = status.message(),
                micros
            ),
        }
    }
}
