//! Prometheus metrics of the core: operations by name and outcome, latency, database pool.
//! Operation labels are bounded: the names of [`crate::kmip::operation::Operation`],
//! `RequestMessage`, or `other`.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    operations: IntCounterVec,
    duration: HistogramVec,
    pub pool: IntGaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            operations: IntCounterVec::new(
                Opts::new(
                    "kms_core_operations_total",
                    "KMIP operations, by name and outcome",
                ),
                &["operation", "outcome"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "kms_core_operation_duration_seconds",
                    "KMIP operation latency",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["operation"],
            )?,
            pool: IntGaugeVec::new(
                Opts::new(
                    "kms_core_db_pool_connections",
                    "Database pool connections, by state",
                ),
                &["state"],
            )?,
        };
        registry.register(Box::new(metrics.operations.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.pool.clone()))?;
        Ok(metrics)
    }

    pub fn observe(&self, op: &'static str, outcome: &str, elapsed: Duration) {
        self.operations.with_label_values(&[op, outcome]).inc();
        self.duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
    }
}
