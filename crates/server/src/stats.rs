//! Request counters for `getDatabaseStats` and `/metrics`: real counts, lock-free.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dolmen_api::ConnectionStats;

use crate::request_metrics::RequestMetrics;

/// Counters since the node started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Write requests served (setKey, deleteKey, atomicCommit, versionstamped sets).
    pub writes: AtomicU64,
    /// Read requests served (get, snapshot reads, ranges, getReadVersion).
    pub reads: AtomicU64,
    /// Transactions that committed.
    pub committed: AtomicU64,
    /// Transactions that did not commit (conflict, too old, injected fault, timeout).
    pub aborted: AtomicU64,
    /// atomicCommit calls in flight.
    pub active: AtomicI64,
    /// Requests timed, and their total duration in microseconds.
    requests: AtomicU64,
    total_micros: AtomicU64,
    /// Latency and errors per Thrift method.
    pub methods: RequestMetrics,
    /// Thrift connections open, accepted and refused.
    pub connections: Arc<ConnectionStats>,
}

impl Stats {
    /// Records one request's duration.
    pub fn observe(&self, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Mean request duration in milliseconds (0 before any request).
    pub fn average_response_ms(&self) -> f64 {
        let n = self.requests.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.total_micros.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
    }

    /// Requests timed so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Increments `counter` now and decrements it when dropped (in-flight gauges).
pub struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    /// Enters the gauge.
    pub fn enter(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
