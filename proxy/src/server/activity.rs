//! What a connection did, for its timeouts: when bytes last moved, requests in flight and
//! served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// Activity of one connection, for the idle timeout.
pub(crate) struct Activity {
    pub(super) epoch: Instant,
    last_ms: AtomicU64,
    /// Requests in flight on this connection.
    pub(super) requests: AtomicUsize,
    /// Requests ever started on this connection.
    pub(super) served: AtomicU64,
    /// The last write or flush to the client could not complete (its receive window is full):
    /// hyper may hold bytes not yet sent.
    pub(super) write_blocked: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
        }
    }
    pub(super) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    pub(super) fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Counts a request in flight (globally and on its connection) until dropped.
pub(crate) struct InFlight {
    gauge: IntGauge,
    activity: Arc<Activity>,
}

impl InFlight {
    pub(crate) fn new(gauge: IntGauge, activity: Arc<Activity>) -> Self {
        gauge.inc();
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.served.fetch_add(1, Ordering::Relaxed);
        Self { gauge, activity }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
        self.activity.requests.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
    }
}
