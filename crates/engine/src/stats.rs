//! Engine statistics for diagnostics (`/status`, metrics): real RocksDB numbers, never
//! estimates of our own, read without failing.

use std::sync::atomic::Ordering;

use rocksdb::ColumnFamily;

use crate::engine::Engine;
use crate::options::{CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use crate::Version;

/// Engine-level statistics (real values, for diagnostics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// User keys whose newest version is a value, over all column families.
    pub live_keys: u64,
    /// SST files plus memtables of `data` and `meta`, in bytes.
    pub size_bytes: u64,
    /// Block cache hits / (hits + misses) since start, percent; 100 while no read has needed
    /// a block (every read was served from the memtables); `None` when RocksDB keeps no
    /// statistics (`[performance]`).
    pub cache_hit_rate_percent: Option<u64>,
    /// RocksDB's estimate of bytes awaiting compaction.
    pub compaction_pending_bytes: u64,
    /// The last applied version.
    pub applied_version: Version,
    /// The retention horizon.
    pub horizon: Version,
    /// Bytes held by the shared block cache, memtables' charge included (bounded by
    /// `block_cache_size_mb`).
    pub block_cache_bytes: u64,
    /// Bytes held by the memtables of every column family, the Raft log's included (at most
    /// twice `write_buffer_size_mb`, and part of `block_cache_bytes`).
    pub memtable_bytes: u64,
    /// Garbage-collection passes over the whole keyspace completed since open.
    pub gc_passes: u64,
    /// Versions garbage collection deleted since open.
    pub gc_versions_deleted: u64,
    /// Entries in the idempotency (dedupe) table.
    pub idempotency_entries: u64,
    /// Idempotency entries expired (`ExpireIdempotency` commands applied) since open.
    pub idempotency_expired: u64,
}

impl Engine {
    /// Statistics for diagnostics.
    pub fn stats(&self) -> EngineStats {
        // Not `read_fence`: stats never fail; during a restore they wait for it to finish.
        let _fence = self.fence.read();
        let prop = |cf: &ColumnFamily, name: &str| {
            self.db
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let (data, meta) = (self.cf(CF_DATA), self.cf(CF_META));
        let size_bytes = [data, meta]
            .iter()
            .map(|cf| {
                prop(cf, "rocksdb.total-sst-files-size")
                    + prop(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum();
        let hits = self
            .db_options
            .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheHit);
        let misses = self
            .db_options
            .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheMiss);
        EngineStats {
            live_keys: self.live_keys.load(Ordering::SeqCst),
            size_bytes,
            cache_hit_rate_percent: self
                .statistics
                .then(|| (hits * 100).checked_div(hits + misses).unwrap_or(100)),
            compaction_pending_bytes: prop(data, "rocksdb.estimate-pending-compaction-bytes"),
            applied_version: self.applied_version(),
            horizon: self.horizon(),
            // The block cache is one for the whole database; any column family reports it.
            block_cache_bytes: prop(data, "rocksdb.block-cache-usage"),
            gc_passes: self.gc_passes.load(Ordering::Relaxed),
            gc_versions_deleted: self.gc_versions_deleted.load(Ordering::Relaxed),
            idempotency_entries: self.dedupe_entries.load(Ordering::SeqCst),
            idempotency_expired: self.dedupe_expired.load(Ordering::Relaxed),
            memtable_bytes: [CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE]
                .iter()
                .map(|name| prop(self.cf(name), "rocksdb.size-all-mem-tables"))
                .sum::<u64>()
                + self
                    .db
                    .property_int_value("rocksdb.size-all-mem-tables")
                    .ok()
                    .flatten()
                    .unwrap_or(0),
        }
    }
}
