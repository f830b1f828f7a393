//! Prometheus metrics of the core: operations by name and outcome, latency, access-right
//! changes, database pool, and the process metrics and build info both binaries export.
//! Operation labels are bounded: the names of [`crate::kmip::operation::Operation`],
//! `RequestMessage`, or `other`.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    operations: IntCounterVec,
    duration: HistogramVec,
    access_changes: IntCounterVec,
    pub pool: IntGaugeVec,
    insert_transactions: IntCounter,
    inserts: IntCounter,
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
            access_changes: IntCounterVec::new(
                Opts::new(
                    "kms_core_access_changes_total",
                    "Access-right grants and revokes, by operation and outcome",
                ),
                &["operation", "outcome"],
            )?,
            pool: IntGaugeVec::new(
                Opts::new(
                    "kms_core_db_pool_connections",
                    "Database pool connections, by state",
                ),
                &["state"],
            )?,
            insert_transactions: IntCounter::new(
                "kms_core_insert_transactions_total",
                "SQLite transactions that stored new objects (several Creates share one: group commit; 0 on PostgreSQL)",
            )?,
            inserts: IntCounter::new(
                "kms_core_inserts_total",
                "Inserts of new objects committed (divided by kms_core_insert_transactions_total: the average group)",
            )?,
        };
        registry.register(Box::new(metrics.operations.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.access_changes.clone()))?;
        registry.register(Box::new(metrics.pool.clone()))?;
        registry.register(Box::new(metrics.insert_transactions.clone()))?;
        registry.register(Box::new(metrics.inserts.clone()))?;
        kms_common::metrics::register_process(registry)?;
        kms_common::metrics::register_log_drops(registry, "kms_core_log_lines_dropped_total")?;
        kms_common::metrics::register_build_info(registry, "kms_core_build_info")?;
        Ok(metrics)
    }

    /// A grant or revoke of access rights (`operation` is `grant` or `revoke`).
    pub fn access_changed(&self, operation: &'static str, outcome: &str) {
        self.access_changes
            .with_label_values(&[operation, outcome])
            .inc();
    }

    /// Brings the group-commit counters up to the store's counts (at each scrape).
    pub fn insert_counts(&self, (transactions, inserts): (u64, u64)) {
        for (counter, now) in [
            (&self.insert_transactions, transactions),
            (&self.inserts, inserts),
        ] {
            let seen = counter.get();
            if now > seen {
                counter.inc_by(now - seen);
            }
        }
    }

    pub fn observe(&self, op: &'static str, outcome: &str, elapsed: Duration) {
        self.operations.with_label_values(&[op, outcome]).inc();
        self.duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
    }
}
