//! The disk guard: samples the free space of the filesystem holding the node's data directory
//! and the directory's size every second, and refuses client writes while either is past its
//! `[database]` threshold (`min_free_disk_mb`, `max_data_size_mb`); reads go on.
//!
//! ```text
//!  watch(): every 1 s ─▶ Sample { statvfs free, Σ file lengths } ─▶ DiskGuard::observe
//!                                             (hysteresis: full below T, clear at T + 5%)
//!  Service::commit ───────────────┐
//!  forwarded write (leader side) ─┴─▶ DiskGuard::check ─▶ Ok | DiskFull (UNAVAILABLE, not proposed)
//!  /ready, /metrics, getClusterHealth ─▶ DiskGuard::full / sample
//! ```
//!
//! The threshold is headroom, not a wall: writes in flight when the disk crosses it, memtable
//! flushes, compactions and followers' log appends still need space, so RocksDB itself should
//! never meet a full disk (docs/replication.md §7.1 "Full disk").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::Command;
use dolmen_raft::{ProposeError, WriteAdmission};

/// How often the background job samples the disk.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One MiB, the unit of the settings.
const MIB: u64 = 1 << 20;

/// Writes are taken again only this fraction (1/20 = 5%) of the threshold past it, so a disk
/// hovering at the threshold does not flip between refusing and taking writes every second.
const HYSTERESIS_DIVISOR: u64 = 20;

/// The thresholds, in bytes; `0` turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskLimits {
    /// Least free space on the data directory's filesystem (`min_free_disk_mb`).
    pub min_free_bytes: u64,
    /// Most bytes in the data directory (`max_data_size_mb`).
    pub max_data_bytes: u64,
}

impl DiskLimits {
    /// The limits `[database]` sets.
    pub fn from_config(database: &dolmen_config::DatabaseConfig) -> Self {
        Self {
            min_free_bytes: database.min_free_disk_mb.saturating_mul(MIB),
            max_data_bytes: database.max_data_size_mb.saturating_mul(MIB),
        }
    }
}

/// What one look at the disk found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Bytes an unprivileged user may still write on the data directory's filesystem
    /// (`statvfs`: available blocks × fragment size).
    pub free_bytes: u64,
    /// The data directory's size: the lengths of every file under it (database, Raft log,
    /// snapshots). Space RocksDB preallocates beyond a file's length is not counted; the free
    /// space check sees it.
    pub data_bytes: u64,
}

/// Why the node refuses writes: the error text clients get after `UNAVAILABLE: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskFull {
    /// The filesystem has less free space than `min_free_disk_mb`.
    #[error(
        "disk full: {} MiB free on {}, below [database] min_free_disk_mb = {threshold_mb}; \
         writes are refused until space is freed, reads are still served",
        free_bytes / MIB,
        path.display()
    )]
    LowFreeSpace {
        /// Free bytes at the last sample.
        free_bytes: u64,
        /// The setting.
        threshold_mb: u64,
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory holds more than `max_data_size_mb`.
    #[error(
        "disk full: {} MiB in {}, above [database] max_data_size_mb = {quota_mb}; writes are \
         refused until the data shrinks or the quota is raised, reads are still served",
        data_bytes / MIB,
        path.display()
    )]
    OverQuota {
        /// The directory's size at the last sample.
        data_bytes: u64,
        /// The setting.
        quota_mb: u64,
        /// The data directory.
        path: PathBuf,
    },
}

/// Which thresholds are crossed, each with its own hysteresis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Crossed {
    low_free: bool,
    over_quota: bool,
}

impl Crossed {
    /// The state after `sample`, given the state before: a threshold is crossed when the
    /// sample passes it, and stays crossed until the sample is 5% of it back on the right side.
    fn next(self, limits: DiskLimits, sample: Sample) -> Self {
        let free = limits.min_free_bytes;
        let quota = limits.max_data_bytes;
        let low_free = free > 0
            && if self.low_free {
                sample.free_bytes < free.saturating_add(free / HYSTERESIS_DIVISOR)
            } else {
                sample.free_bytes < free
            };
        let over_quota = quota > 0
            && if self.over_quota {
                sample.data_bytes > quota - quota / HYSTERESIS_DIVISOR
            } else {
                sample.data_bytes > quota
            };
        Self {
            low_free,
            over_quota,
        }
    }
}

/// The guard's state: the last sample and what it crossed.
#[derive(Clone, Debug, Default)]
struct State {
    sample: Option<Sample>,
    crossed: Crossed,
    full: Option<DiskFull>,
}

/// Refuses writes while the disk is full; shared by the service, the peer handler (forwarded
/// writes), the admin API and the sampling job.
#[derive(Debug)]
pub struct DiskGuard {
    /// The node's data directory (`<base_path>/node-<id>`).
    path: PathBuf,
    limits: DiskLimits,
    state: parking_lot::RwLock<State>,
    /// Writes refused since start (`dolmen_writes_refused_disk_full_total`).
    refused: AtomicU64,
}

impl DiskGuard {
    /// A guard of `path` with `limits`; it refuses nothing until its first sample.
    pub fn new(path: PathBuf, limits: DiskLimits) -> Self {
        Self {
            path,
            limits,
            state: parking_lot::RwLock::new(State::default()),
            refused: AtomicU64::new(0),
        }
    }

    /// A guard with every check off (never full, never samples).
    pub fn off() -> Self {
        Self::new(PathBuf::new(), DiskLimits::default())
    }

    /// Whether any threshold is set.
    pub fn is_on(&self) -> bool {
        self.limits != DiskLimits::default()
    }

    /// The data directory it watches.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes `sample` as the disk's state; logs when writes start or stop being refused.
    pub fn observe(&self, sample: Sample) {
        let mut state = self.state.write();
        let crossed = state.crossed.next(self.limits, sample);
        let full = self.reason(crossed, sample);
        match (&state.full, &full) {
            (None, Some(why)) => tracing::error!("{why}"),
            (Some(_), None) => tracing::warn!(
                free_bytes = sample.free_bytes,
                data_bytes = sample.data_bytes,
                "disk space recovered: writes are taken again"
            ),
            _ => {}
        }
        *state = State {
            sample: Some(sample),
            crossed,
            full,
        };
    }

    fn reason(&self, crossed: Crossed, sample: Sample) -> Option<DiskFull> {
        if crossed.low_free {
            Some(DiskFull::LowFreeSpace {
                free_bytes: sample.free_bytes,
                threshold_mb: self.limits.min_free_bytes / MIB,
                path: self.path.clone(),
            })
        } else if crossed.over_quota {
            Some(DiskFull::OverQuota {
                data_bytes: sample.data_bytes,
                quota_mb: self.limits.max_data_bytes / MIB,
                path: self.path.clone(),
            })
        } else {
            None
        }
    }

    /// `Ok` when a write may be proposed; the reason otherwise (counted as a refusal).
    ///
    /// # Errors
    /// [`DiskFull`] while a threshold is crossed.
    pub fn check(&self) -> Result<(), DiskFull> {
        match &self.state.read().full {
            None => Ok(()),
            Some(full) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(full.clone())
            }
        }
    }

    /// Why writes are refused right now, if they are (not counted).
    pub fn full(&self) -> Option<DiskFull> {
        self.state.read().full.clone()
    }

    /// The last sample, once one was taken.
    pub fn sample(&self) -> Option<Sample> {
        self.state.read().sample
    }

    /// Writes refused since start.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Measures the disk now (blocking: `statvfs` and a walk of the data directory).
    ///
    /// # Errors
    /// When the filesystem cannot be queried or the directory cannot be read.
    pub fn measure(&self) -> std::io::Result<Sample> {
        let stat = rustix::fs::statvfs(&self.path)?;
        Ok(Sample {
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            data_bytes: dir_size(&self.path)?,
        })
    }

    /// Measures and observes once (blocking); a failure is logged and the state kept.
    pub fn refresh(&self) {
        match self.measure() {
            Ok(sample) => self.observe(sample),
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot measure the data directory's disk; keeping the last state"
            ),
        }
    }
}

/// A write forwarded to this leader is admitted like one of its own clients' (the same
/// refusal, counted the same); housekeeping (`Compact`, `Noop`) always passes: it is tiny, and
/// MVCC garbage collection is what frees space.
impl WriteAdmission for DiskGuard {
    fn admit(&self, command: &Command) -> Result<(), ProposeError> {
        match command {
            // Writes that add data; resolves and decisions release it and always pass.
            Command::Commit(_) | Command::Prepare(_) => self
                .check()
                .map_err(|full| ProposeError::Unavailable(full.to_string())),
            _ => Ok(()),
        }
    }
}

/// The sum of the lengths of every file under `dir`. Files that vanish during the walk
/// (compactions delete SST files) are skipped.
fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.path().symlink_metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

/// Samples the disk every [`SAMPLE_INTERVAL`] until `stop` resolves; with every check off too,
/// for `/metrics`. The caller takes the first sample before serving.
pub async fn watch(guard: Arc<DiskGuard>, stop: impl std::future::Future<Output = ()>) {
    let mut ticks = crate::jobs::Ticks::new(SAMPLE_INTERVAL, stop);
    while ticks.next().await {
        let guard = guard.clone();
        // statvfs and the directory walk block: keep them off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || guard.refresh()).await {
            tracing::warn!(error = %e, "the disk sample panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn guard(min_free_mb: u64, max_data_mb: u64) -> DiskGuard {
        DiskGuard::new(
            PathBuf::from("/data/node-1"),
            DiskLimits {
                min_free_bytes: min_free_mb * MIB,
                max_data_bytes: max_data_mb * MIB,
            },
        )
    }

    fn sample(free_bytes: u64, data_bytes: u64) -> Sample {
        Sample {
            free_bytes,
            data_bytes,
        }
    }

    #[test]
    fn low_free_space_refuses_writes_until_5_percent_above_the_threshold() {
        let g = guard(1024, 0);
        assert!(g.check().is_ok(), "nothing refused before the first sample");
        g.observe(sample(GIB, 0));
        assert!(
            g.check().is_ok(),
            "exactly at the threshold is not below it"
        );
        g.observe(sample(GIB - 1, 0));
        assert!(g.check().is_err());
        // Back above the threshold, but within the margin: still refused (no flapping).
        g.observe(sample(GIB + 50 * MIB, 0));
        assert!(g.full().is_some());
        g.observe(sample(GIB + GIB / 20 - 1, 0));
        assert!(g.full().is_some());
        g.observe(sample(GIB + GIB / 20, 0));
        assert_eq!(g.full(), None);
        // Below the margin again but above the threshold: taken (it must cross T again).
        g.observe(sample(GIB + 10 * MIB, 0));
        assert!(g.check().is_ok());
        assert_eq!(
            g.refused_total(),
            1,
            "only check() counts, and only refusals"
        );
    }

    #[test]
    fn a_quota_refuses_writes_until_5_percent_below_it() {
        let g = guard(0, 100);
        g.observe(sample(0, 100 * MIB));
        assert!(
            g.check().is_ok(),
            "free space is not checked at 0; the quota is not passed"
        );
        g.observe(sample(0, 100 * MIB + 1));
        assert!(matches!(g.full(), Some(DiskFull::OverQuota { .. })));
        g.observe(sample(0, 96 * MIB));
        assert!(g.full().is_some(), "within 5% of the quota");
        g.observe(sample(0, 95 * MIB));
        assert_eq!(g.full(), None);
    }

    #[test]
    fn zero_turns_each_check_off() {
        let g = guard(0, 0);
        assert!(!g.is_on());
        g.observe(sample(0, u64::MAX));
        assert!(g.check().is_ok());
        assert!(!DiskGuard::off().is_on());
    }

    #[test]
    fn the_refusal_names_the_free_space_the_setting_and_the_path() {
        let g = guard(1024, 0);
        g.observe(sample(812 * MIB + 5, 0));
        let text = g.check().unwrap_err().to_string();
        assert_eq!(
            text,
            "disk full: 812 MiB free on /data/node-1, below [database] min_free_disk_mb = 1024; \
             writes are refused until space is freed, reads are still served"
        );
        let g = guard(0, 1);
        g.observe(sample(GIB, 3 * MIB));
        let text = g.check().unwrap_err().to_string();
        assert!(
            text.starts_with(
                "disk full: 3 MiB in /data/node-1, above [database] max_data_size_mb = 1;"
            ),
            "{text}"
        );
    }

    #[test]
    fn both_crossed_reports_low_free_space_first() {
        let g = guard(10, 1);
        g.observe(sample(MIB, 2 * MIB));
        assert!(matches!(g.full(), Some(DiskFull::LowFreeSpace { .. })));
    }

    #[test]
    fn forwarded_commits_are_refused_and_housekeeping_passes() {
        let g = guard(1024, 0);
        g.observe(sample(0, 0));
        let commit = Command::Commit(dolmen_engine::Transaction::default());
        let refused = g.admit(&commit).unwrap_err();
        assert!(
            matches!(&refused, ProposeError::Unavailable(m) if m.starts_with("disk full: ")),
            "{refused:?}"
        );
        assert!(g.admit(&Command::Compact { horizon: 1 }).is_ok());
        assert!(g.admit(&Command::Noop).is_ok());
        assert_eq!(g.refused_total(), 1);
    }

    #[test]
    fn measuring_a_directory_sums_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 24]).unwrap();
        let g = DiskGuard::new(dir.path().to_owned(), DiskLimits::default());
        let s = g.measure().unwrap();
        assert_eq!(s.data_bytes, 1024);
        assert!(s.free_bytes > 0);
    }
}
