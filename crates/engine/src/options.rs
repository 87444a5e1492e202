//! How an engine is opened: its options, the RocksDB column families it creates, the rule for
//! user column family names, and whether a batch is made durable before `apply_batch` returns.

use std::path::PathBuf;

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
