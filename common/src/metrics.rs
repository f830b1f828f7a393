//! Metrics both binaries export besides their own: the process (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, `process_threads`, `process_virtual_memory_bytes`, read from
//! `/proc` by the prometheus crate's collector), a build-info gauge and the count of log lines
//! dropped because stderr could not keep up ([`crate::log`]).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGaugeVec, Opts, Registry};

/// Registers the process collector (Linux; elsewhere it exports nothing).
pub fn register_process(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
}

/// Registers `<name>{version="..."} 1`.
pub fn register_build_info(registry: &Registry, name: &str) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(Opts::new(name, "Build information; always 1"), &["version"])?;
    registry.register(Box::new(info.clone()))?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Ok(())
}

/// Registers `<name>`: log lines dropped since start (read from [`crate::log::dropped_lines`]
/// at each scrape).
pub fn register_log_drops(registry: &Registry, name: &str) -> prometheus::Result<()> {
    let counter = IntCounter::new(
        name,
        "Log lines dropped because stderr could not take them as fast as they were logged",
    )?;
    registry.register(Box::new(LogDrops { counter }))
}

struct LogDrops {
    counter: IntCounter,
}

impl Collector for LogDrops {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = crate::log::dropped_lines();
        let seen = self.counter.get();
        if now > seen {
            self.counter.inc_by(now - seen);
        }
        self.counter.collect()
    }
}
