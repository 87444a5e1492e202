//! The engine handle: one RocksDB opened with the four column families, the published applied
//! version and horizon, the restore fence, and the `meta` reads everything else builds on.
//! Writes are in `apply.rs`, reads in `read.rs`, maintenance in `gc.rs` and `stats.rs`.
//!
//! ```text
//!   apply_batch([(version, Command)]) ──▶ resolver (overlay + data) ──▶ one WriteBatch
//!                                          (data + applied_version + meta)  ──▶ publish atomics
//!   get / get_range(version)          ──▶ iterator (snapshot) ──▶ horizon check ──▶ seek
//! ```
//! Every read holds the read side of the restore fence; `Engine::restore` (in `transfer.rs`)
//! holds the write side, so no reader observes a half-restored state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, DB};

use crate::command::Invalid;
use crate::encoding;
use crate::error::{OpenError, StorageError};
use crate::keys;
use crate::live_cache::LiveCache;
use crate::locks::{LockInfo, LockTable};
use crate::options::{
    check_column_family_name, EngineOptions, CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE,
};
use crate::scope::{KeySpan, Scope};
use crate::Version;

/// The MVCC engine. Cheap to share (`Arc<Engine>`); reads are concurrent with `apply_batch`.
pub struct Engine {
    /// The node's database; the raft layer uses its `raft_*` column families.
    pub(crate) db: Arc<DB>,
    /// Kept to read RocksDB statistics (block cache hit rate).
    pub(crate) db_options: Options,
    /// Whether RocksDB keeps statistics (`[performance]`): the hit rate is known only then.
    pub(crate) statistics: bool,
    /// Configured user column families and their `data` key prefixes.
    pub(crate) prefixes: BTreeMap<String, Vec<u8>>,
    /// Published after each batch is written: reads at ≤ this see complete batches.
    pub(crate) applied: AtomicU64,
    /// Reads at versions up to this one are known complete though not applied here: every
    /// commit of the group at or below it has applied (a read barrier established it,
    /// [`Engine::mark_complete`]); 0 until one does.
    complete: AtomicU64,
    /// The version of the last applied command that may have written data: any command but
    /// `Noop`, `OracleBound` and the retention commands (`Compact`, `ExpireIdempotency`).
    /// In memory only; the applied version when the handle opens or a snapshot is installed
    /// (over-estimating is safe: it only costs the retention job one more `Compact`).
    pub(crate) written: AtomicU64,
    /// Published before garbage collection uses it (docs/engine-format.md, read ordering).
    pub(crate) horizon: AtomicU64,
    /// Mirrors `meta/live_keys`.
    pub(crate) live_keys: AtomicU64,
    /// Mirrors `meta/dedupe_entries`: the number of idempotency entries.
    pub(crate) dedupe_entries: AtomicU64,
    /// Idempotency entries expired since open.
    pub(crate) dedupe_expired: AtomicU64,
    /// Serializes `apply_batch` (and `restore`): one writer at a time keeps versions ordered.
    /// It guards the writer's cache of recent keys' newest versions ([`LiveCache`]).
    pub(crate) apply_lock: Mutex<LiveCache>,
    /// Where the next garbage-collection pass resumes (a raw `data` key).
    pub(crate) gc_cursor: Mutex<Vec<u8>>,
    /// Garbage-collection passes completed since open.
    pub(crate) gc_passes: AtomicU64,
    /// Versions garbage collection deleted since open.
    pub(crate) gc_versions_deleted: AtomicU64,
    /// The restore fence: readers of `data`/`meta` hold the read side, `restore` the write side,
    /// so nobody observes a half-restored state.
    pub(crate) fence: RwLock<()>,
    /// Set while `meta/restore_pending` exists (a restore started and has not finished): every
    /// read and write fails with `RestoreIncomplete` until a restore completes.
    pub(crate) restore_incomplete: AtomicBool,
    /// Live keys a `ClearRange` holds before it writes them as one chunk (clear.rs).
    pub(crate) clear_range_chunk_keys: usize,
    /// Set while `meta/clear_pending/` markers may exist (a batch failed after spilling a
    /// chunk): recovery runs before the next batch (docs/engine-format.md invariant 10).
    pub(crate) clear_pending: AtomicBool,
    /// Test hook: spilled chunks left before `apply_batch` fails with `Injected` (`u64::MAX`:
    /// never). See [`Engine::fail_clear_range_after_chunks`].
    pub(crate) clear_chunks_before_failure: AtomicU64,
    /// The planted bug `unsafe_skip_conflict_check` ([`EngineOptions`]), as configured for
    /// every handle over this database (handed on by `open_group`).
    unsafe_skip_conflict_check: bool,
    /// ... and the one group it applies to (0: every group).
    unsafe_skip_conflict_check_group: u64,
    /// Whether this handle's resolver skips the read-conflict check (the planted bug applies
    /// to its group).
    pub(crate) skips_conflict_check: bool,
    /// The group this handle applies for and what of the database it owns (scope.rs).
    pub(crate) scope: Scope,
    /// Mirrors `meta/txn_lock/`: the prepared pieces of commits across groups (locks.rs),
    /// replaced after each batch that changed it is written.
    pub(crate) locks: RwLock<LockTable>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.db.path())
            .field("column_families", &self.prefixes.keys().collect::<Vec<_>>())
            .field("applied", &self.applied_version())
            .field("horizon", &self.horizon())
            .field("group", &self.scope.group)
            .finish()
    }
}

/// What every engine handle over one database shares.
struct Shared {
    db: Arc<DB>,
    db_options: Options,
    statistics: bool,
    prefixes: BTreeMap<String, Vec<u8>>,
    clear_range_chunk_keys: usize,
    unsafe_skip_conflict_check: bool,
    /// 0: every handle skips the check under the planted bug; else only this group's.
    unsafe_skip_conflict_check_group: u64,
}

/// Reads one `meta` counter (`applied_version`, `horizon`, `live_keys`) stored at `key`, whose
/// name in its group is `name`: 0 when absent.
pub(crate) fn read_counter(
    db: &DB,
    meta: &ColumnFamily,
    key: &[u8],
    name: &'static [u8],
) -> Result<u64, StorageError> {
    match db.get_pinned_cf(meta, key)? {
        None => Ok(0),
        Some(bytes) => Ok(encoding::decode_u64(counter_name(name), &bytes)?),
    }
}

/// The name of a `meta` counter key, for decode errors.
fn counter_name(key: &[u8]) -> &'static str {
    match key {
        keys::META_APPLIED_VERSION => "meta/applied_version",
        keys::META_HORIZON => "meta/horizon",
        keys::META_LIVE_KEYS => "meta/live_keys",
        keys::META_DEDUPE_ENTRIES => "meta/dedupe_entries",
        keys::META_ORACLE_BOUND => "meta/oracle_bound",
        _ => "meta counter",
    }
}

/// The database-wide and the per-column-family RocksDB options of `options`.
fn rocksdb_options(options: &EngineOptions) -> (Options, Options) {
    let tuning = &options.tuning;
    let cache = Cache::new_lru_cache(options.block_cache_size_mb.max(1) << 20);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_block_size(tuning.block_size.max(1));
    // By default index and filter blocks live in the block cache too, so the cache size bounds
    // them: held by each open table reader instead, they grow with the number of SST files.
    table.set_cache_index_and_filter_blocks(tuning.cache_index_and_filter_blocks);
    table.set_cache_index_and_filter_blocks_with_high_priority(
        tuning.index_and_filter_blocks_high_priority,
    );
    table.set_pin_l0_filter_and_index_blocks_in_cache(
        tuning.pin_l0_filter_and_index_blocks_in_cache,
    );
    if let Some(bits) = tuning.bloom_bits_per_key {
        table.set_bloom_filter(bits, false);
    }

    let mut cf_opts = Options::default();
    cf_opts.set_block_based_table_factory(&table);
    cf_opts.set_write_buffer_size(options.write_buffer_size_mb.max(1) << 20);
    cf_opts.set_max_write_buffer_number(options.max_write_buffer_number.max(2));
    let c = tuning.compression;
    cf_opts.set_compression_type(c.l1);
    cf_opts.set_compression_per_level(&[c.l0, c.l1, c.l1, c.l1, c.l1, c.l1, c.l1]);
    cf_opts.set_bottommost_compression_type(c.bottom);
    cf_opts.set_level_compaction_dynamic_level_bytes(tuning.level_compaction_dynamic_level_bytes);
    cf_opts.set_compaction_pri(tuning.compaction_pri.rocksdb());
    cf_opts.set_target_file_size_base(tuning.target_file_size_base);
    cf_opts.set_target_file_size_multiplier(tuning.target_file_size_multiplier);
    cf_opts.set_max_bytes_for_level_base(tuning.max_bytes_for_level_base);
    cf_opts.set_max_bytes_for_level_multiplier(tuning.max_bytes_for_level_multiplier);

    let mut db_opts = cf_opts.clone();
    // Memtables of all column families together stay under one limit, charged to the block
    // cache, so one number bounds RocksDB's memory (blocks are evicted to make room for
    // memtables). No stall: flushes keep memtables under the limit.
    if let Some(limit) = tuning.write_buffer_manager_bytes {
        let memtables = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
            limit.max(1 << 20),
            false,
            cache.clone(),
        );
        db_opts.set_write_buffer_manager(&memtables);
    }
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(tuning.max_background_jobs.max(1));
    db_opts.set_bytes_per_sync(tuning.bytes_per_sync);
    db_opts.set_log_level(tuning.info_log_level);
    db_opts.set_max_log_file_size(tuning.max_log_file_size);
    db_opts.set_keep_log_file_num(tuning.keep_log_file_num.max(1));
    db_opts.set_stats_dump_period_sec(tuning.stats_dump_period_sec);
    // Test-only power cut (`[faults] lose_unsynced_writes`): unsynced WAL writes live in
    // process memory until the next `flush_wal`.
    db_opts.set_manual_wal_flush(tuning.manual_wal_flush);
    if let Some(level) = tuning.statistics {
        db_opts.enable_statistics();
        db_opts.set_statistics_level(level);
    }
    (db_opts, cf_opts)
}

impl Engine {
    /// Opens (or creates) the engine at `options.path`.
    pub fn open(options: &EngineOptions) -> Result<Self, OpenError> {
        let mut prefixes = BTreeMap::new();
        for name in &options.column_families {
            check_column_family_name(name).map_err(|problem| OpenError::ColumnFamily {
                name: name.clone(),
                problem,
            })?;
            prefixes.insert(name.clone(), keys::cf_prefix(name));
        }
        if !prefixes.contains_key("default") {
            return Err(OpenError::MissingDefault);
        }

        let (db_opts, cf_opts) = rocksdb_options(options);
        let descriptors = [CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_opts.clone()));
        let db =
            DB::open_cf_descriptors(&db_opts, &options.path, descriptors).map_err(|source| {
                OpenError::Rocks {
                    path: options.path.clone(),
                    source,
                }
            })?;

        let engine = Self::handle(
            Shared {
                db: Arc::new(db),
                db_options: db_opts,
                statistics: options.tuning.statistics.is_some(),
                prefixes,
                clear_range_chunk_keys: crate::clear::DEFAULT_CHUNK_KEYS,
                unsafe_skip_conflict_check: options.unsafe_skip_conflict_check,
                unsafe_skip_conflict_check_group: options.unsafe_skip_conflict_check_group,
            },
            Scope::first(),
        );
        engine.load()?;
        Ok(engine)
    }

    /// A handle for Raft group `group` (≥ 1) over the same database, owning the user keys of
    /// `span` (docs/sharding.md §7, scope.rs): its own applied version, horizon, idempotency
    /// table, restore fence and `ClearRange` markers, under its own `meta` keys. The handle
    /// [`Engine::open`] returns is group 0's.
    ///
    /// # Errors
    /// `InvalidScope` for group 0; storage errors reading the group's state.
    pub fn open_group(&self, group: u64, span: KeySpan) -> Result<Self, StorageError> {
        if group == 0 {
            return Err(StorageError::InvalidScope(
                "group 0 is the handle Engine::open returns".into(),
            ));
        }
        let engine = Self::handle(
            Shared {
                db: Arc::clone(&self.db),
                db_options: self.db_options.clone(),
                statistics: self.statistics,
                prefixes: self.prefixes.clone(),
                clear_range_chunk_keys: self.clear_range_chunk_keys,
                unsafe_skip_conflict_check: self.unsafe_skip_conflict_check,
                unsafe_skip_conflict_check_group: self.unsafe_skip_conflict_check_group,
            },
            Scope::group(group, span),
        );
        engine.load()?;
        Ok(engine)
    }

    /// A handle over `shared` for `scope`, with nothing loaded yet.
    fn handle(shared: Shared, scope: Scope) -> Self {
        let Shared {
            db,
            db_options,
            statistics,
            prefixes,
            clear_range_chunk_keys,
            unsafe_skip_conflict_check,
            unsafe_skip_conflict_check_group,
        } = shared;
        let skips = unsafe_skip_conflict_check
            && (unsafe_skip_conflict_check_group == 0
                || unsafe_skip_conflict_check_group == scope.group);
        Self {
            db,
            db_options,
            statistics,
            prefixes,
            applied: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            written: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            live_keys: AtomicU64::new(0),
            dedupe_entries: AtomicU64::new(0),
            dedupe_expired: AtomicU64::new(0),
            gc_passes: AtomicU64::new(0),
            gc_versions_deleted: AtomicU64::new(0),
            apply_lock: Mutex::new(LiveCache::default()),
            gc_cursor: Mutex::new(Vec::new()),
            fence: RwLock::new(()),
            restore_incomplete: AtomicBool::new(false),
            clear_range_chunk_keys,
            clear_pending: AtomicBool::new(false),
            clear_chunks_before_failure: AtomicU64::new(u64::MAX),
            unsafe_skip_conflict_check,
            unsafe_skip_conflict_check_group,
            skips_conflict_check: skips,
            scope,
            locks: RwLock::new(LockTable::default()),
        }
    }

    /// Makes group 0's handle own no user data (a sharded node, whose data groups own every
    /// key: docs/sharding.md §2): its snapshots, installs, digests and garbage collection then
    /// leave the data groups' keys alone. Called once, before the handle is shared.
    ///
    /// # Errors
    /// `InvalidScope` on a handle of another group.
    pub fn own_no_data(&mut self) -> Result<(), StorageError> {
        if self.scope.group != 0 {
            return Err(StorageError::InvalidScope(format!(
                "only group 0's handle can be made metadata-only (this is group {})",
                self.scope.group
            )));
        }
        self.scope.span = KeySpan::none();
        Ok(())
    }

    /// The Raft group this handle applies for (0 for the handle [`Engine::open`] returns).
    pub fn group(&self) -> u64 {
        self.scope.group
    }

    /// The user keys whose data this handle owns.
    pub fn span(&self) -> &KeySpan {
        &self.scope.span
    }

    /// Loads what the handle caches from its `meta` keys, and finishes what a crash left.
    fn load(&self) -> Result<(), StorageError> {
        // A restore that did not finish leaves its marker: refuse service until it is redone
        // (invariant 7).
        let pending = self
            .db
            .get_pinned_cf(self.cf(CF_META), self.meta_key(keys::META_RESTORE_PENDING))?
            .is_some();
        self.restore_incomplete.store(pending, Ordering::SeqCst);
        self.load_counters()?;
        // An unfinished restore replaces the table; its end loads the count.
        if !pending {
            // A batch that spilled `ClearRange` chunks and never finished: remove them before
            // anything reads or applies (invariant 10).
            self.recover_partial_clears()?;
            self.dedupe_entries
                .store(crate::dedupe::load_entries(self)?, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Loads the applied version, horizon, live-key count and lock table from `meta`.
    pub(crate) fn load_counters(&self) -> Result<(), StorageError> {
        *self.locks.write() = LockTable::load(self)?;
        let applied = self.counter(keys::META_APPLIED_VERSION)?;
        self.applied.store(applied, Ordering::SeqCst);
        self.written.store(applied, Ordering::SeqCst);
        self.horizon
            .store(self.counter(keys::META_HORIZON)?, Ordering::SeqCst);
        self.live_keys
            .store(self.counter(keys::META_LIVE_KEYS)?, Ordering::SeqCst);
        Ok(())
    }

    /// The `meta` counter `name` of this handle's group (0 when absent).
    pub(crate) fn counter(&self, name: &'static [u8]) -> Result<u64, StorageError> {
        read_counter(&self.db, self.cf(CF_META), &self.meta_key(name), name)
    }

    /// The raw `meta` key of `name` in this handle's group, as exports and snapshots carry it
    /// (the name itself for group 0).
    pub fn meta_key(&self, name: &[u8]) -> Vec<u8> {
        self.scope.meta_key(name)
    }

    /// The underlying database, for the raft layer's own column families.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // The four column families are created by `open`; their absence is impossible.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| unreachable!("column family {name} is created at open"))
    }

    /// The configured user column families.
    pub fn column_families(&self) -> impl Iterator<Item = &str> {
        self.prefixes.keys().map(String::as_str)
    }

    /// The `data` key prefix of a configured user column family.
    pub(crate) fn prefix(&self, cf: &str) -> Result<&[u8], Invalid> {
        self.prefixes
            .get(cf)
            .map(Vec::as_slice)
            .ok_or_else(|| Invalid::UnknownColumnFamily {
                name: cf.to_owned(),
                configured: self
                    .prefixes
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The `data` key prefix of a column family the commit being applied already checked:
    /// its absence is corruption, not bad input.
    pub(crate) fn checked_prefix(&self, cf: &str) -> Result<&[u8], StorageError> {
        self.prefix(cf)
            .map_err(|e| StorageError::Corrupt(format!("column family checked at commit: {e}")))
    }

    /// Checks that `cf` is configured.
    pub fn check_column_family(&self, cf: &str) -> Result<(), Invalid> {
        self.prefix(cf).map(|_| ())
    }

    /// The version of the last applied command (0 when nothing was applied).
    pub fn applied_version(&self) -> Version {
        self.applied.load(Ordering::SeqCst)
    }

    /// The version of the last applied command that may have written data (any but `Noop`,
    /// `OracleBound`, `Compact` and `ExpireIdempotency`; the applied version after an open or
    /// a snapshot install). Once the horizon is above it, raising the horizon further frees
    /// nothing: the retention job then lets the group rest.
    pub fn written_version(&self) -> Version {
        self.written.load(Ordering::SeqCst)
    }

    /// Records that every commit of this handle's group with a version ≤ `version` has applied
    /// here, though the group's own applied version may be lower (a data group of a sharded
    /// cluster draws its versions from group 0's oracle, so other groups' commits fill the
    /// gaps: docs/sharding.md §5.2). Reads up to `version` are then allowed. Only the read
    /// barrier that proved it calls this; it never lowers the mark.
    pub fn mark_complete(&self, version: Version) {
        self.complete.fetch_max(version, Ordering::SeqCst);
    }

    /// The highest version reads may use: the applied version, or a higher one a read barrier
    /// proved complete ([`Engine::mark_complete`]).
    pub fn readable_version(&self) -> Version {
        self.applied_version()
            .max(self.complete.load(Ordering::SeqCst))
    }

    /// The locks of transactions committing across groups whose writes overlap `range`
    /// (docs/sharding.md §6.5): a read of `range` at a version must wait for or resolve them.
    pub fn write_locks_over(&self, range: &crate::KeyRange) -> Vec<LockInfo> {
        self.locks.read().writers_over(range)
    }

    /// The decision group 0 recorded for `txid` as applied here: the commit version (`None`:
    /// abort) and the client's answer; `None` when none is recorded (docs/sharding.md §6.3).
    ///
    /// # Errors
    /// Storage errors, or a record that does not decode.
    pub fn decision(
        &self,
        txid: &crate::TxId,
    ) -> Result<Option<(Option<Version>, crate::Outcome)>, StorageError> {
        self.read_meta(&crate::locks::decision_name(txid))?
            .map(|bytes| encoding::decode_decision(&bytes).map_err(StorageError::from))
            .transpose()
    }

    /// How many locks this group holds.
    pub fn lock_count(&self) -> u64 {
        self.locks.read().len() as u64
    }

    /// Every lock of this group (the orphan sweeper's list).
    pub fn locks(&self) -> Vec<LockInfo> {
        self.locks.read().infos()
    }

    /// The MVCC retention horizon.
    pub fn horizon(&self) -> Version {
        self.horizon.load(Ordering::SeqCst)
    }

    /// The oracle's persisted upper bound (`Command::OracleBound`), 0 when none was applied.
    pub fn oracle_bound(&self) -> Result<Version, StorageError> {
        let _fence = self.read_fence()?;
        self.counter(keys::META_ORACLE_BOUND)
    }

    /// Reads a `meta` value of this handle's group written through `apply_batch`'s
    /// `extra_meta` under the name `key`.
    pub fn read_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _fence = self.read_fence()?;
        Ok(self.db.get_cf(self.cf(CF_META), self.meta_key(key))?)
    }

    /// Takes the read side of the restore fence; fails while a restore is unfinished.
    pub(crate) fn read_fence(&self) -> Result<RwLockReadGuard<'_, ()>, StorageError> {
        let guard = self.fence.read();
        self.check_restored()?;
        Ok(guard)
    }

    /// Fails with `RestoreIncomplete` while `meta/restore_pending` exists (invariant 7).
    pub(crate) fn check_restored(&self) -> Result<(), StorageError> {
        if !self.restore_incomplete.load(Ordering::SeqCst) {
            return Ok(());
        }
        let marker = match self
            .db
            .get_cf(self.cf(CF_META), self.meta_key(keys::META_RESTORE_PENDING))?
        {
            Some(stored) => encoding::decode_marker(&stored)?,
            None => Vec::new(),
        };
        Err(StorageError::RestoreIncomplete {
            marker: String::from_utf8_lossy(&marker).into_owned(),
        })
    }

    /// Flushes `data` and `meta` memtables to SST files. Call before discarding a log that
    /// covers buffered batches (docs/engine-format.md, Durability).
    pub fn flush(&self) -> Result<(), StorageError> {
        let cfs = [self.cf(CF_DATA), self.cf(CF_META)];
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }
}
