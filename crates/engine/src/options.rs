//! How an engine is opened: its options, the RocksDB column families it creates, the rule for
//! user column family names, and whether a batch is made durable before `apply_batch` returns.

use std::path::PathBuf;

pub use rocksdb::statistics::StatsLevel;
pub use rocksdb::{DBCompressionType, LogLevel};

use crate::error::ColumnFamilyNameError;

/// RocksDB column family of MVCC user data.
pub const CF_DATA: &str = "data";
/// RocksDB column family of engine and replication metadata.
pub const CF_META: &str = "meta";
/// RocksDB column family of the Raft log (owned by the raft layer).
pub const CF_RAFT_LOG: &str = "raft_log";
/// RocksDB column family of Raft's vote and log bounds (owned by the raft layer).
pub const CF_RAFT_STATE: &str = "raft_state";

/// How to open an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Directory of the RocksDB database (created if missing).
    pub path: PathBuf,
    /// User column families this node serves (must include "default").
    pub column_families: Vec<String>,
    /// RocksDB memtable size per column family, in MiB. All column families together hold at
    /// most twice this in memtables, and that memory is charged to the block cache (RocksDB's
    /// write buffer manager), so the block cache size bounds memtables and cached blocks
    /// together, whatever the column family count.
    pub write_buffer_size_mb: usize,
    /// RocksDB memtables per column family.
    pub max_write_buffer_number: i32,
    /// Shared block cache, in MiB.
    pub block_cache_size_mb: usize,
    /// Everything else RocksDB lets an operator tune.
    pub tuning: Tuning,
    /// A planted bug for the fault-injection suite's self-test (`[faults]
    /// unsafe_skip_conflict_check`): the resolver skips the read-conflict check, so commits
    /// whose reads were overwritten still write (lost updates, write skew). Never in production.
    pub unsafe_skip_conflict_check: bool,
    /// With `unsafe_skip_conflict_check`: only the handle of this group skips the check (the
    /// planted bug on one shard, `[faults] unsafe_skip_conflict_check_group`); 0: every handle.
    pub unsafe_skip_conflict_check_group: u64,
}

/// RocksDB tuning beyond the sizes: each field sets the RocksDB option it is named after.
/// [`Tuning::default`] is what Dolmen runs with when nothing is configured.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// `block_size`: uncompressed size of a data block, in bytes.
    pub block_size: usize,
    /// `max_background_jobs`: flush and compaction threads.
    pub max_background_jobs: i32,
    /// `bytes_per_sync`: SST writes are synced in steps of this many bytes (`0` = at the end).
    pub bytes_per_sync: u64,
    /// `level_compaction_dynamic_level_bytes`.
    pub level_compaction_dynamic_level_bytes: bool,
    /// A whole-key Bloom filter with this many bits per key, or none.
    pub bloom_bits_per_key: Option<f64>,
    /// Compression of level 0, of levels 1 and up, and of the bottommost level.
    pub compression: LevelCompression,
    /// `compaction_pri`.
    pub compaction_pri: CompactionPriority,
    /// `target_file_size_base`, in bytes.
    pub target_file_size_base: u64,
    /// `target_file_size_multiplier`.
    pub target_file_size_multiplier: i32,
    /// `max_bytes_for_level_base`, in bytes.
    pub max_bytes_for_level_base: u64,
    /// `max_bytes_for_level_multiplier`.
    pub max_bytes_for_level_multiplier: f64,
    /// `cache_index_and_filter_blocks`.
    pub cache_index_and_filter_blocks: bool,
    /// `pin_l0_filter_and_index_blocks_in_cache`.
    pub pin_l0_filter_and_index_blocks_in_cache: bool,
    /// `cache_index_and_filter_blocks_with_high_priority`.
    pub index_and_filter_blocks_high_priority: bool,
    /// The write buffer manager's limit over every column family's memtables, in bytes,
    /// charged to the block cache; `None` = no manager (each column family alone is bounded).
    pub write_buffer_manager_bytes: Option<usize>,
    /// `info_log_level` of RocksDB's `LOG` file.
    pub info_log_level: LogLevel,
    /// `max_log_file_size`, in bytes (`0` = one file per start).
    pub max_log_file_size: usize,
    /// `keep_log_file_num`.
    pub keep_log_file_num: usize,
    /// RocksDB statistics at this level, or none.
    pub statistics: Option<StatsLevel>,
    /// `stats_dump_period_sec`.
    pub stats_dump_period_sec: u32,
    /// `manual_wal_flush`: WAL writes stay in RocksDB's buffer, in process memory, until
    /// `flush_wal` (the log store's fsync) or a memtable switch, so a killed process loses what
    /// was never fsynced, as a power cut would. Test-only (`[faults] lose_unsynced_writes`).
    pub manual_wal_flush: bool,
}

/// Which file leveled compaction picks first (RocksDB's `compaction_pri`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionPriority {
    /// `kByCompensatedSize`.
    ByCompensatedSize,
    /// `kOldestLargestSeqFirst`.
    OldestLargestSeqFirst,
    /// `kOldestSmallestSeqFirst`.
    OldestSmallestSeqFirst,
    /// `kMinOverlappingRatio` (RocksDB's default).
    MinOverlappingRatio,
    /// `kRoundRobin`.
    RoundRobin,
}

impl CompactionPriority {
    pub(crate) fn rocksdb(self) -> rocksdb::CompactionPri {
        match self {
            Self::ByCompensatedSize => rocksdb::CompactionPri::ByCompensatedSize,
            Self::OldestLargestSeqFirst => rocksdb::CompactionPri::OldestLargestSeqFirst,
            Self::OldestSmallestSeqFirst => rocksdb::CompactionPri::OldestSmallestSeqFirst,
            Self::MinOverlappingRatio => rocksdb::CompactionPri::MinOverlappingRatio,
            Self::RoundRobin => rocksdb::CompactionPri::RoundRobin,
        }
    }
}

/// Block compression by LSM level.
#[derive(Clone, Copy, Debug)]
pub struct LevelCompression {
    /// Level 0.
    pub l0: DBCompressionType,
    /// Levels 1 and up, except the bottommost.
    pub l1: DBCompressionType,
    /// The bottommost level.
    pub bottom: DBCompressionType,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            block_size: 4 << 10,
            max_background_jobs: 2,
            bytes_per_sync: 0,
            level_compaction_dynamic_level_bytes: true,
            bloom_bits_per_key: None,
            compression: LevelCompression {
                l0: DBCompressionType::Lz4,
                l1: DBCompressionType::Lz4,
                bottom: DBCompressionType::Lz4,
            },
            compaction_pri: CompactionPriority::MinOverlappingRatio,
            target_file_size_base: 64 << 20,
            target_file_size_multiplier: 1,
            max_bytes_for_level_base: 256 << 20,
            max_bytes_for_level_multiplier: 10.0,
            cache_index_and_filter_blocks: true,
            pin_l0_filter_and_index_blocks_in_cache: true,
            index_and_filter_blocks_high_priority: true,
            write_buffer_manager_bytes: Some(128 << 20),
            info_log_level: LogLevel::Info,
            max_log_file_size: 0,
            keep_log_file_num: 1000,
            statistics: Some(StatsLevel::ExceptDetailedTimers),
            stats_dump_period_sec: 600,
            manual_wal_flush: false,
        }
    }
}

impl EngineOptions {
    /// Options with RocksDB defaults suitable for tests and small nodes.
    pub fn new(path: impl Into<PathBuf>, column_families: Vec<String>) -> Self {
        Self {
            path: path.into(),
            column_families,
            write_buffer_size_mb: 64,
            max_write_buffer_number: 4,
            block_cache_size_mb: 512,
            tuning: Tuning::default(),
            unsafe_skip_conflict_check: false,
            unsafe_skip_conflict_check_group: 0,
        }
    }
}

/// Whether `apply_batch` must make the batch durable before returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the RocksDB WAL before returning (standalone: there is no other log).
    Sync,
    /// No fsync: a replicated log covers the batch and replays it after a crash.
    Buffered,
}

/// Checks a user column family name (docs/engine-format.md: 1..=255 printable ASCII bytes).
pub fn check_column_family_name(name: &str) -> Result<(), ColumnFamilyNameError> {
    if name.is_empty() || name.len() > 255 {
        return Err(ColumnFamilyNameError::Length { len: name.len() });
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ColumnFamilyNameError::NotPrintable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_family_names_are_one_to_255_printable_bytes() {
        assert_eq!(check_column_family_name("default"), Ok(()));
        assert_eq!(check_column_family_name(&"x".repeat(255)), Ok(()));
        assert_eq!(
            check_column_family_name(""),
            Err(ColumnFamilyNameError::Length { len: 0 })
        );
        assert_eq!(
            check_column_family_name(&"x".repeat(256)),
            Err(ColumnFamilyNameError::Length { len: 256 })
        );
        assert_eq!(
            check_column_family_name("a b"),
            Err(ColumnFamilyNameError::NotPrintable)
        );
    }
}
