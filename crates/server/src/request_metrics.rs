//! Per-method request metrics: a latency histogram per Thrift method and a count of errors per
//! method and wire error code. Recording is lock-free on success (one atomic add per bucket
//! and two for the sum and count); an error takes one uncontended mutex to count its code.
//!
//! The histogram's buckets are fixed ([`BOUNDS_SECONDS`]) so that `/metrics` and the console's
//! one-second series (differences of two snapshots) read the same counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A timed Thrift method of `TransactionalKV` (the ones that read or commit), by its wire
/// name.
#[allow(
    missing_docs,
    reason = "each variant is the IDL method of the same name (see `Method::name`)"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    GetReadVersion,
    SnapshotRead,
    AtomicCommit,
    Get,
    SetKey,
    DeleteKey,
    GetRange,
    SnapshotGet,
    SnapshotGetRange,
    SetVersionstampedKey,
    SetVersionstampedValue,
}

/// What a method does, for the console's grouped series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Reads data or a version.
    Read,
    /// Commits a transaction (one write is one transaction).
    Commit,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 11] = [
        Method::GetReadVersion,
        Method::SnapshotRead,
        Method::AtomicCommit,
        Method::Get,
        Method::SetKey,
        Method::DeleteKey,
        Method::GetRange,
        Method::SnapshotGet,
        Method::SnapshotGetRange,
        Method::SetVersionstampedKey,
        Method::SetVersionstampedValue,
    ];

    /// The wire name, as in the IDL.
    pub fn name(self) -> &'static str {
        match self {
            Method::GetReadVersion => "getReadVersion",
            Method::SnapshotRead => "snapshotRead",
            Method::AtomicCommit => "atomicCommit",
            Method::Get => "get",
            Method::SetKey => "setKey",
            Method::DeleteKey => "deleteKey",
            Method::GetRange => "getRange",
            Method::SnapshotGet => "snapshotGet",
            Method::SnapshotGetRange => "snapshotGetRange",
            Method::SetVersionstampedKey => "setVersionstampedKey",
            Method::SetVersionstampedValue => "setVersionstampedValue",
        }
    }

    /// Read or commit.
    pub fn kind(self) -> Kind {
        match self {
            Method::GetReadVersion
            | Method::SnapshotRead
            | Method::Get
            | Method::GetRange
            | Method::SnapshotGet
            | Method::SnapshotGetRange => Kind::Read,
            Method::AtomicCommit
            | Method::SetKey
            | Method::DeleteKey
            | Method::SetVersionstampedKey
            | Method::SetVersionstampedValue => Kind::Commit,
        }
    }
}

/// The histogram's upper bounds in seconds; a last bucket holds everything above.
pub const BOUNDS_SECONDS: [f64; 28] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_7, 0.001, 0.001_5, 0.002, 0.003, 0.005,
    0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0,
];

/// Buckets, the overflow bucket included.
const BUCKETS: usize = BOUNDS_SECONDS.len() + 1;

/// One method's latency histogram.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram's counts at one instant (per bucket, not cumulative).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations per bucket, the overflow bucket last.
    pub buckets: [u64; BUCKETS],
    /// Observations.
    pub count: u64,
    /// Their total, in seconds.
    pub sum_seconds: f64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            count: 0,
            sum_seconds: 0.0,
        }
    }
}

impl HistogramSnapshot {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }

    /// The counts observed since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut out = self.clone();
        for (now, then) in out.buckets.iter_mut().zip(earlier.buckets) {
            *now = now.saturating_sub(then);
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum_seconds = (self.sum_seconds - earlier.sum_seconds).max(0.0);
        out
    }

    /// The `q` quantile (0 < q ≤ 1) in seconds, interpolated linearly within its bucket;
    /// `None` with no observations. The overflow bucket reads as its lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BOUNDS_SECONDS[i - 1] };
                let Some(&upper) = BOUNDS_SECONDS.get(i) else {
                    return Some(lower);
                };
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        BOUNDS_SECONDS.last().copied()
    }

    /// `(upper bound, count)` pairs, the overflow bucket as `+Inf`, as the Prometheus encoder
    /// takes them.
    pub fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets)
            .collect()
    }
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS_SECONDS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0; BUCKETS];
        for (out, b) in buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Every method's histogram and error counts.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    latency: [Histogram; Method::ALL.len()],
    errors: Mutex<BTreeMap<(Method, String), u64>>,
}

impl RequestMetrics {
    /// Records one request of `method` that took `elapsed` and failed with `error_code`, if
    /// it failed.
    pub fn observe(&self, method: Method, elapsed: Duration, error_code: Option<&str>) {
        self.latency[method as usize].observe(elapsed);
        if let Some(code) = error_code {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            match errors.get_mut(&(method, code.to_owned())) {
                Some(n) => *n += 1,
                None => {
                    errors.insert((method, code.to_owned()), 1);
                }
            }
        }
    }

    /// Each method's histogram now, in [`Method::ALL`] order.
    pub fn latency(&self) -> Vec<(Method, HistogramSnapshot)> {
        Method::ALL
            .iter()
            .map(|&m| (m, self.latency[m as usize].snapshot()))
            .collect()
    }

    /// Errors so far by method and code.
    pub fn errors(&self) -> BTreeMap<(Method, String), u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_listed_once_in_declaration_order() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
    }

    #[test]
    fn observations_land_in_their_bucket_and_quantiles_follow() {
        let metrics = RequestMetrics::default();
        for _ in 0..99 {
            metrics.observe(Method::Get, Duration::from_micros(400), None);
        }
        metrics.observe(Method::Get, Duration::from_millis(60), Some("CONFLICT"));
        let (_, get) = metrics.latency()[Method::Get as usize].clone();
        assert_eq!(get.count, 100);
        // 400 µs is in (300 µs, 500 µs]; 60 ms in (50 ms, 70 ms].
        assert_eq!(get.buckets[4], 99);
        assert_eq!(get.buckets[17], 1);
        let p50 = get.quantile(0.5).unwrap();
        assert!((0.0003..=0.0005).contains(&p50), "{p50}");
        let p100 = get.quantile(1.0).unwrap();
        assert!((0.05..=0.07).contains(&p100), "{p100}");
        assert!((get.sum_seconds - (99.0 * 0.0004 + 0.06)).abs() < 1e-9);
        assert_eq!(
            metrics.errors().get(&(Method::Get, "CONFLICT".to_owned())),
            Some(&1)
        );
        assert_eq!(HistogramSnapshot::default().quantile(0.99), None);
    }

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots_and_overflow_reads_as_its_floor() {
        let metrics = RequestMetrics::default();
        metrics.observe(Method::AtomicCommit, Duration::from_millis(1), None);
        let before = metrics.latency()[Method::AtomicCommit as usize].1.clone();
        metrics.observe(Method::AtomicCommit, Duration::from_secs(30), None);
        let after = metrics.latency()[Method::AtomicCommit as usize].1.clone();
        let interval = after.since(&before);
        assert_eq!(interval.count, 1);
        assert_eq!(interval.quantile(0.5), Some(10.0));
        let buckets = interval.prometheus_buckets();
        assert_eq!(buckets.len(), BOUNDS_SECONDS.len() + 1);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }
}
