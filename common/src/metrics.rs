//! Metrics both binaries export besides their own: the process (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, `process_threads`, `process_virtual_memory_bytes`, read from
//! `/proc` by the prometheus crate's collector) and a build-info gauge.

use prometheus::{IntGaugeVec, Opts, Registry};

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
