//! The engine: MVCC state over one RocksDB, changed only by `apply_batch`.
//!
//! ```text
//!   apply_batch([(version, Command)]) ──▶ conflict check (overlay + data) ──▶ one WriteBatch
//!                                          (data + applied_version + meta)  ──▶ publish atomics
//!   get / get_range(version)          ──▶ iterator (snapshot) ──▶ horizon check ──▶ seek
//! ```
//! Every read holds the read side of the restore fence; `Engine::restore` (in `transfer.rs`)
//! holds the write side, so no reader observes a half-restored state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBRawIterator, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};

use crate::command::{
    check_key, stamp_buffer, versionstamp, Command, Invalid, KeyRange, Mutation, Outcome,
    Transaction,
};
use crate::keys::{self, DecodedKey, TAG_TOMBSTONE, TAG_VALUE};
use crate::range::{RangePage, RangeSpec, RangeWalk, Step};
use crate::Version;

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

/// Failure to open the engine.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// RocksDB refused to open (permissions, lock held by another process, corruption).
    #[error("cannot open the database at {path}: {source}")]
    Rocks {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A configured column family name is unusable.
    #[error("column family '{name}': {problem}")]
    ColumnFamily {
        /// The name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Stored metadata could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A storage-level failure: the node cannot continue safely.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed.
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Bytes on disk do not match docs/engine-format.md.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// `apply_batch` was handed versions that do not strictly increase past the applied one.
    #[error("version {version} does not follow the applied version {applied}")]
    VersionOrder {
        /// The offending version.
        version: Version,
        /// The last applied version.
        applied: Version,
    },
    /// A whole-state operation (`digest_at`) was asked for a version outside the retained range.
    #[error("version {version} is outside the retained range [horizon {horizon}, applied {applied}]; pick a version in it")]
    VersionOutOfRange {
        /// The requested version.
        version: Version,
        /// The retention horizon.
        horizon: Version,
        /// The last applied version.
        applied: Version,
    },
    /// A snapshot restore started and did not finish: the state is partial until it is redone.
    #[error("a snapshot restore did not finish (marker {marker:?}); redo it with Engine::restore before using the engine")]
    RestoreIncomplete {
        /// The restore marker, lossily as text (the raft layer stores the snapshot file path).
        marker: String,
    },
    /// The records handed to `Engine::restore` failed to read; the restore marker stays.
    #[error(
        "reading the records to restore failed: {0}; the restore marker stays, redo the restore"
    )]
    RestoreSource(#[source] std::io::Error),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Bad input (unknown column family, bad key).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The version is below the retention horizon: `TRANSACTION_TOO_OLD`.
    #[error("TRANSACTION_TOO_OLD: read version {version} is below the retention horizon {horizon}; start a new transaction")]
    TooOld {
        /// The requested version.
        version: Version,
        /// The horizon.
        horizon: Version,
    },
    /// The version is not applied yet: `FUTURE_VERSION` (callers wait before asking).
    #[error("FUTURE_VERSION: read version {version} is beyond the applied version {applied}")]
    FutureVersion {
        /// The requested version.
        version: Version,
        /// The last applied version.
        applied: Version,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<rocksdb::Error> for ReadError {
    fn from(e: rocksdb::Error) -> Self {
        ReadError::Storage(StorageError::Rocks(e))
    }
}

/// Engine-level statistics (real values, for diagnostics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// User keys whose newest version is a value, over all column families.
    pub live_keys: u64,
    /// SST files plus memtables of `data` and `meta`, in bytes.
    pub size_bytes: u64,
    /// Block cache hits / (hits + misses) since start, percent; `None` before any lookup.
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
}

/// What one garbage-collection pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// User keys examined.
    pub keys_scanned: u64,
    /// Version entries deleted.
    pub versions_deleted: u64,
    /// The pass reached the end of the data and starts over next time.
    pub wrapped: bool,
}

/// The latest known state of one user key inside a batch being applied.
#[derive(Clone, Copy, Debug)]
struct Pending {
    version: Version,
    live: bool,
}

/// The newest version of recently written keys and whether it is live, so that a write need not
/// seek `data` to keep the live-key count (that seek was the largest cost of applying a blind
/// write), nor a single-key read conflict to find the key's newest version.
///
/// Only the writer uses it, under `apply_lock`, and it is updated only after a batch is written,
/// so it always matches `data`, but for one case that changes no answer: garbage collection may
/// delete a newest version that is a tombstone at or below the horizon, which is neither live
/// nor able to conflict (a conflict check needs a read version at or above the horizon).
/// `restore` clears it. Two generations bound its memory: when the current one holds
/// [`LiveCache::GENERATION_BYTES`] of keys it becomes the old one, and the old one is dropped.
#[derive(Default)]
pub(crate) struct LiveCache {
    current: HashMap<Vec<u8>, Pending>,
    old: HashMap<Vec<u8>, Pending>,
    current_bytes: usize,
}

impl LiveCache {
    /// Key bytes per generation (plus about 64 bytes of overhead per key).
    const GENERATION_BYTES: usize = 8 << 20;

    fn get(&self, key: &[u8]) -> Option<Pending> {
        self.current.get(key).or_else(|| self.old.get(key)).copied()
    }

    fn insert(&mut self, key: Vec<u8>, newest: Pending) {
        let bytes = key.len() + 64;
        if self.current.insert(key, newest).is_none() {
            self.current_bytes += bytes;
        }
        if self.current_bytes > Self::GENERATION_BYTES {
            self.old = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
    }

    /// Forgets everything (the data was replaced).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The MVCC engine. Cheap to share (`Arc<Engine>`); reads are concurrent with `apply_batch`.
pub struct Engine {
    /// The node's database; the raft layer uses its `raft_*` column families.
    pub(crate) db: Arc<DB>,
    /// Kept to read RocksDB statistics (block cache hit rate).
    db_options: Options,
    /// Configured user column families and their `data` key prefixes.
    pub(crate) prefixes: BTreeMap<String, Vec<u8>>,
    /// Published after each batch is written: reads at ≤ this see complete batches.
    pub(crate) applied: AtomicU64,
    /// Published before garbage collection uses it (docs/engine-format.md, read ordering).
    pub(crate) horizon: AtomicU64,
    /// Mirrors `meta/live_keys`.
    pub(crate) live_keys: AtomicU64,
    /// Serializes `apply_batch` (and `restore`): one writer at a time keeps versions ordered.
    /// It guards the writer's cache of recent keys' newest versions ([`LiveCache`]).
    pub(crate) apply_lock: Mutex<LiveCache>,
    /// Where the next garbage-collection pass resumes (a raw `data` key).
    pub(crate) gc_cursor: Mutex<Vec<u8>>,
    /// The restore fence: readers of `data`/`meta` hold the read side, `restore` the write side,
    /// so nobody observes a half-restored state.
    pub(crate) fence: RwLock<()>,
    /// Set while `meta/restore_pending` exists (a restore started and has not finished): every
    /// read and write fails with `RestoreIncomplete` until a restore completes.
    pub(crate) restore_incomplete: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.db.path())
            .field("column_families", &self.prefixes.keys().collect::<Vec<_>>())
            .field("applied", &self.applied_version())
            .field("horizon", &self.horizon())
            .finish()
    }
}

/// Checks a user column family name (docs/engine-format.md: 1..=255 printable ASCII bytes).
pub fn check_column_family_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("must be 1..=255 bytes long, got {}", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn read_u64(db: &DB, cf: &ColumnFamily, key: &[u8]) -> Result<u64, StorageError> {
    match db.get_pinned_cf(cf, key)? {
        None => Ok(0),
        Some(bytes) => {
            let arr: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
                StorageError::Corrupt(format!(
                    "meta key {} holds {} bytes, expected 8",
                    String::from_utf8_lossy(key),
                    bytes.len()
                ))
            })?;
            Ok(u64::from_be_bytes(arr))
        }
    }
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
            return Err(OpenError::ColumnFamily {
                name: "default".into(),
                problem: "the \"default\" column family must be configured".into(),
            });
        }

        let cache = Cache::new_lru_cache(options.block_cache_size_mb.max(1) << 20);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Index and filter blocks live in the block cache too, so the cache size bounds them:
        // held by each open table reader instead, they grow with the number of SST files.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_write_buffer_size(options.write_buffer_size_mb.max(1) << 20);
        cf_opts.set_max_write_buffer_number(options.max_write_buffer_number.max(2));
        cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);

        let mut db_opts = cf_opts.clone();
        // Memtables of all column families together: at most two memtables' worth, charged to
        // the block cache, so one number bounds RocksDB's memory (blocks are evicted to make
        // room for memtables). No stall: flushes keep memtables under the limit.
        let memtables = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
            options.write_buffer_size_mb.max(1) << 21,
            false,
            cache.clone(),
        );
        db_opts.set_write_buffer_manager(&memtables);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.enable_statistics();

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

        let engine = Self {
            db: Arc::new(db),
            db_options: db_opts,
            prefixes,
            applied: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            live_keys: AtomicU64::new(0),
            apply_lock: Mutex::new(LiveCache::default()),
            gc_cursor: Mutex::new(Vec::new()),
            fence: RwLock::new(()),
            restore_incomplete: AtomicBool::new(false),
        };
        let meta = engine.cf(CF_META);
        // A restore that did not finish leaves its marker: refuse service until it is redone.
        let pending = engine
            .db
            .get_pinned_cf(meta, keys::META_RESTORE_PENDING)
            .map_err(StorageError::from)?
            .is_some();
        engine.restore_incomplete.store(pending, Ordering::SeqCst);
        engine.applied.store(
            read_u64(&engine.db, meta, keys::META_APPLIED_VERSION)?,
            Ordering::SeqCst,
        );
        engine.horizon.store(
            read_u64(&engine.db, meta, keys::META_HORIZON)?,
            Ordering::SeqCst,
        );
        engine.live_keys.store(
            read_u64(&engine.db, meta, keys::META_LIVE_KEYS)?,
            Ordering::SeqCst,
        );
        Ok(engine)
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

    fn prefix(&self, cf: &str) -> Result<&[u8], Invalid> {
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

    /// Checks that `cf` is configured.
    pub fn check_column_family(&self, cf: &str) -> Result<(), Invalid> {
        self.prefix(cf).map(|_| ())
    }

    /// The version of the last applied command (0 when nothing was applied).
    pub fn applied_version(&self) -> Version {
        self.applied.load(Ordering::SeqCst)
    }

    /// The MVCC retention horizon.
    pub fn horizon(&self) -> Version {
        self.horizon.load(Ordering::SeqCst)
    }

    /// Reads a `meta` value written through `apply_batch`'s `extra_meta`.
    pub fn read_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _fence = self.read_fence()?;
        Ok(self.db.get_cf(self.cf(CF_META), key)?)
    }

    /// Takes the read side of the restore fence; fails while a restore is unfinished.
    pub(crate) fn read_fence(&self) -> Result<RwLockReadGuard<'_, ()>, StorageError> {
        let guard = self.fence.read();
        self.check_restored()?;
        Ok(guard)
    }

    /// Fails with `RestoreIncomplete` while `meta/restore_pending` exists.
    pub(crate) fn check_restored(&self) -> Result<(), StorageError> {
        if !self.restore_incomplete.load(Ordering::SeqCst) {
            return Ok(());
        }
        let marker = self
            .db
            .get_cf(self.cf(CF_META), keys::META_RESTORE_PENDING)?
            .unwrap_or_default();
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

    // ----------------------------------------------------------------------------------------
    // Writes
    // ----------------------------------------------------------------------------------------

    /// Applies `entries` in order, atomically, in one RocksDB batch together with
    /// `applied_version` and `extra_meta` (key/value pairs for `meta`). Returns one outcome per
    /// entry. Versions must strictly increase past `applied_version()`.
    ///
    /// The only code that writes user data. Deterministic (docs/engine-format.md invariant 6).
    pub fn apply_batch(
        &self,
        entries: &[(Version, Command)],
        durability: Durability,
        extra_meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Outcome>, StorageError> {
        let mut live_cache = self.apply_lock.lock();
        // `restore` holds `apply_lock` for its whole run, so no batch interleaves with it.
        self.check_restored()?;
        let mut applied = self.applied_version();
        let mut batch = Applier {
            engine: self,
            live_cache: &live_cache,
            batch: WriteBatch::default(),
            overlay: BTreeMap::new(),
            dedupe: BTreeMap::new(),
            horizon: self.horizon(),
            live_keys: self.live_keys.load(Ordering::SeqCst),
        };
        let mut outcomes = Vec::with_capacity(entries.len());
        for (version, command) in entries {
            if *version <= applied {
                return Err(StorageError::VersionOrder {
                    version: *version,
                    applied,
                });
            }
            outcomes.push(batch.apply(*version, command)?);
            applied = *version;
        }
        let Applier {
            mut batch,
            overlay,
            horizon,
            live_keys,
            ..
        } = batch;
        let meta = self.cf(CF_META);
        // applied_version rides in the same batch as the data it covers (invariant 2).
        batch.put_cf(meta, keys::META_APPLIED_VERSION, applied.to_be_bytes());
        batch.put_cf(meta, keys::META_HORIZON, horizon.to_be_bytes());
        batch.put_cf(meta, keys::META_LIVE_KEYS, live_keys.to_be_bytes());
        for (k, v) in extra_meta {
            batch.put_cf(meta, k, v);
        }
        let mut write = WriteOptions::default();
        // Standalone: the acknowledgement waits for this fsync. Replicated: the log is the WAL.
        write.set_sync(durability == Durability::Sync);
        self.db.write_opt(batch, &write)?;
        for ((cf, key), pending) in overlay {
            if let Ok(prefix) = self.prefix(&cf) {
                live_cache.insert(keys::key_start(prefix, &key), pending);
            }
        }
        // Publish only after the batch is durable/visible: readers at ≤ applied see it whole.
        self.live_keys.store(live_keys, Ordering::SeqCst);
        self.horizon.fetch_max(horizon, Ordering::SeqCst);
        self.applied.store(applied, Ordering::SeqCst);
        Ok(outcomes)
    }

    // ----------------------------------------------------------------------------------------
    // Reads
    // ----------------------------------------------------------------------------------------

    /// An iterator over `data` with an upper bound, followed by the horizon check (the order
    /// matters: docs/engine-format.md, read ordering).
    fn read_iter(
        &self,
        version: Version,
        upper_bound: Vec<u8>,
    ) -> Result<DBRawIterator<'_>, ReadError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper_bound);
        let iter = self.db.raw_iterator_cf_opt(self.cf(CF_DATA), opts);
        let horizon = self.horizon();
        if version < horizon {
            return Err(ReadError::TooOld { version, horizon });
        }
        let applied = self.applied_version();
        if version > applied {
            return Err(ReadError::FutureVersion { version, applied });
        }
        Ok(iter)
    }

    /// The value of `key` in `cf` as of `version` (`None` if absent or deleted).
    pub fn get(
        &self,
        cf: &str,
        key: &[u8],
        version: Version,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        check_key("key", key)?;
        let prefix = self.prefix(cf)?;
        let _fence = self.read_fence()?;
        let mut iter = self.read_iter(version, keys::key_end(prefix, key))?;
        iter.seek(keys::version_key(prefix, key, version));
        if !iter.valid() {
            iter.status()?;
            return Ok(None);
        }
        // The upper bound confines the iterator to versions of `key` that are ≤ `version`.
        let value = iter.value().unwrap_or_default();
        decode_value(value)
            .map(|v| v.map(<[u8]>::to_vec))
            .map_err(Into::into)
    }

    /// A page of `cf` as of `version`, following WIRE §3 exactly.
    pub fn get_range(
        &self,
        cf: &str,
        spec: &RangeSpec,
        version: Version,
    ) -> Result<RangePage, ReadError> {
        let prefix = self.prefix(cf)?;
        let _fence = self.read_fence()?;
        let mut iter = self.read_iter(version, keys::cf_end(prefix))?;
        let mut walk = RangeWalk::new(spec);
        let mut page = RangePage::default();
        iter.seek(keys::key_start(prefix, &spec.begin_key));
        while let Some(entry) = VisibleEntry::next(&mut iter, prefix, version)? {
            if walk.past_end(&entry.key) {
                break;
            }
            if let Some(value) = entry.value {
                match walk.feed(&entry.key) {
                    Step::Skip | Step::Dropped => {}
                    Step::Take => page.items.push((entry.key, value)),
                    Step::MoreAfterLimit => {
                        page.has_more = true;
                        break;
                    }
                    Step::End => break,
                }
            }
        }
        Ok(page)
    }

    // ----------------------------------------------------------------------------------------
    // Maintenance
    // ----------------------------------------------------------------------------------------

    /// Deletes up to about `max_keys` user keys' worth of versions that no read at or above the
    /// horizon can observe, resuming where the previous pass stopped. Never changes an answer.
    pub fn collect_garbage(&self, max_keys: u64) -> Result<GcReport, StorageError> {
        let _fence = self.read_fence()?;
        let horizon = self.horizon();
        let mut report = GcReport::default();
        if horizon == 0 {
            return Ok(report);
        }
        let data = self.cf(CF_DATA);
        let mut cursor = self.gc_cursor.lock();
        // A scan of everything over time: caching its blocks (old versions included) would fill
        // the block cache with data no read wants and push hot blocks out.
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(data, opts);
        iter.seek(&*cursor);
        let mut batch = WriteBatch::default();
        // (raw key prefix of the current user key, whether its newest version ≤ horizon was seen)
        let mut current: Option<(Vec<u8>, bool)> = None;
        while iter.valid() {
            let (Some(raw), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let user_prefix = &raw[..raw.len().saturating_sub(8)];
            let same = current
                .as_ref()
                .is_some_and(|(p, _)| p.as_slice() == user_prefix);
            if !same {
                if report.keys_scanned >= max_keys {
                    *cursor = raw.to_vec();
                    break;
                }
                report.keys_scanned += 1;
                current = Some((user_prefix.to_vec(), false));
            }
            let version = raw
                .get(raw.len().saturating_sub(8)..)
                .and_then(|b| b.try_into().ok())
                .map(|b: [u8; 8]| !u64::from_be_bytes(b))
                .ok_or_else(|| StorageError::Corrupt("short data key".into()))?;
            if let Some((_, seen_visible)) = current.as_mut() {
                if version <= horizon {
                    if *seen_visible {
                        batch.delete_cf(data, raw); // shadowed by a newer version ≤ horizon
                        report.versions_deleted += 1;
                    } else {
                        *seen_visible = true;
                        if value.first() == Some(&TAG_TOMBSTONE) {
                            batch.delete_cf(data, raw); // the newest visible state is "absent"
                            report.versions_deleted += 1;
                        }
                    }
                }
            }
            iter.next();
        }
        if !iter.valid() {
            iter.status()?;
            report.wrapped = true;
            cursor.clear();
        }
        if report.versions_deleted > 0 {
            self.db.write(batch)?;
        }
        Ok(report)
    }

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
            cache_hit_rate_percent: (hits + misses > 0).then(|| hits * 100 / (hits + misses)),
            compaction_pending_bytes: prop(data, "rocksdb.estimate-pending-compaction-bytes"),
            applied_version: self.applied_version(),
            horizon: self.horizon(),
            // The block cache is one for the whole database; any column family reports it.
            block_cache_bytes: prop(data, "rocksdb.block-cache-usage"),
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

/// Decodes a `data` value: `Some(user value)` or `None` for a tombstone.
fn decode_value(raw: &[u8]) -> Result<Option<&[u8]>, StorageError> {
    match raw.split_first() {
        Some((&TAG_VALUE, rest)) => Ok(Some(rest)),
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        _ => Err(StorageError::Corrupt(format!(
            "data value with unknown tag {:?}",
            raw.first()
        ))),
    }
}

/// The state of one user key as of a version, produced by walking `data` in key order.
pub(crate) struct VisibleEntry {
    pub(crate) key: Vec<u8>,
    /// `None`: the newest version ≤ the read version is a tombstone.
    pub(crate) value: Option<Vec<u8>>,
    /// The version of that newest entry.
    pub(crate) version: Version,
}

impl VisibleEntry {
    /// Advances `iter` to the next user key that has a version ≤ `version` and returns its
    /// state, leaving the iterator at the following user key. Versions newer than `version` and
    /// older than the visible one are skipped by seeking, not walked.
    pub(crate) fn next(
        iter: &mut DBRawIterator<'_>,
        prefix: &[u8],
        version: Version,
    ) -> Result<Option<Self>, StorageError> {
        loop {
            if !iter.valid() {
                iter.status()?;
                return Ok(None);
            }
            let raw = iter.key().unwrap_or_default();
            let Some(DecodedKey {
                user_key,
                version: found,
            }) = keys::decode_version_key(prefix, raw)
            else {
                return Err(StorageError::Corrupt(format!(
                    "undecodable data key {raw:02x?}"
                )));
            };
            if found > version {
                iter.seek(keys::version_key(prefix, &user_key, version));
                continue;
            }
            let value = decode_value(iter.value().unwrap_or_default())?.map(<[u8]>::to_vec);
            iter.seek(keys::key_end(prefix, &user_key));
            return Ok(Some(Self {
                key: user_key,
                value,
                version: found,
            }));
        }
    }
}

/// One `apply_batch` in progress: the write batch and what it changed so far.
struct Applier<'e> {
    engine: &'e Engine,
    /// Whether keys written by earlier batches are live (a cache of `data`).
    live_cache: &'e LiveCache,
    batch: WriteBatch,
    /// Keys written earlier in this batch, so later commands see them (conflicts, existence).
    overlay: BTreeMap<(String, Vec<u8>), Pending>,
    /// Dedupe entries written earlier in this batch.
    dedupe: BTreeMap<Vec<u8>, (u64, Outcome)>,
    horizon: Version,
    live_keys: u64,
}

impl Applier<'_> {
    /// The `data` prefix of a column family `commit` already checked exists.
    fn prefix(&self, cf: &str) -> Result<&[u8], StorageError> {
        self.engine
            .prefix(cf)
            .map_err(|e| StorageError::Corrupt(format!("column family checked at commit: {e}")))
    }

    fn apply(&mut self, version: Version, command: &Command) -> Result<Outcome, StorageError> {
        match command {
            Command::Noop => Ok(Outcome::Applied),
            Command::Compact { horizon } => {
                // Never lowers, never passes the applied state (invariant 4).
                self.horizon = self.horizon.max((*horizon).min(version));
                Ok(Outcome::Applied)
            }
            Command::Commit(tx) => self.commit(version, tx),
        }
    }

    fn commit(&mut self, version: Version, tx: &Transaction) -> Result<Outcome, StorageError> {
        if let Err(invalid) = tx.validate() {
            return Ok(Outcome::Rejected(invalid));
        }
        for cf in tx.column_families() {
            if let Err(invalid) = self.engine.check_column_family(cf) {
                return Ok(Outcome::Rejected(invalid));
            }
        }
        if let Some(token) = &tx.idempotency {
            if let Some((latest, outcome)) = self.dedupe_entry(&token.client_id)? {
                if latest == token.sequence {
                    return Ok(outcome); // a retry: the first outcome, nothing applied twice
                }
                if latest > token.sequence {
                    return Ok(Outcome::Rejected(Invalid::StaleSequence {
                        sequence: token.sequence,
                        latest,
                    }));
                }
            }
        }
        let outcome = self.check_and_write(version, tx)?;
        if let Some(token) = &tx.idempotency {
            if let Some(encoded) = encode_outcome(&outcome) {
                let mut value = token.sequence.to_be_bytes().to_vec();
                value.extend_from_slice(&encoded);
                self.batch.put_cf(
                    self.engine.cf(CF_META),
                    keys::dedupe_key(&token.client_id),
                    value,
                );
                self.dedupe
                    .insert(token.client_id.clone(), (token.sequence, outcome.clone()));
            }
        }
        Ok(outcome)
    }

    fn check_and_write(
        &mut self,
        version: Version,
        tx: &Transaction,
    ) -> Result<Outcome, StorageError> {
        if let Some(read_version) = tx.read_version {
            if read_version >= version {
                return Ok(Outcome::Rejected(Invalid::FutureReadVersion {
                    read_version,
                    version,
                }));
            }
            if !tx.read_conflicts.is_empty() && read_version < self.horizon {
                return Ok(Outcome::TooOld {
                    read_version,
                    horizon: self.horizon,
                });
            }
            for range in &tx.read_conflicts {
                if let Some(key) = self.conflict_in(range, read_version, version)? {
                    return Ok(Outcome::Conflict {
                        cf: range.cf.clone(),
                        key,
                    });
                }
            }
        }
        for (order, mutation) in tx.mutations.iter().enumerate() {
            // `validate` bounds versionstamped operations to the first 65,536.
            let stamp = versionstamp(version, u16::try_from(order).unwrap_or(u16::MAX));
            match mutation {
                Mutation::Set { cf, key, value } => self.put(cf, key, Some(value), version)?,
                Mutation::Delete { cf, key } => self.put(cf, key, None, version)?,
                Mutation::SetVersionstampedKey { cf, key, value } => {
                    self.put(cf, &stamp_buffer(key, &stamp), Some(value), version)?
                }
                Mutation::SetVersionstampedValue { cf, key, value } => {
                    self.put(cf, key, Some(&stamp_buffer(value, &stamp)), version)?
                }
                Mutation::ClearRange { cf, begin, end } => {
                    for key in self.live_keys_in(cf, begin, end)? {
                        self.put(cf, &key, None, version)?;
                    }
                }
            }
        }
        Ok(Outcome::Committed { version })
    }

    /// Writes one version of `key` (`None` = tombstone) and keeps the live-key count.
    fn put(
        &mut self,
        cf: &str,
        key: &[u8],
        value: Option<&Vec<u8>>,
        version: Version,
    ) -> Result<(), StorageError> {
        let was_live = self.was_live(cf, key)?;
        let prefix = self.prefix(cf)?;
        let encoded = match value {
            Some(v) => {
                let mut out = Vec::with_capacity(v.len() + 1);
                out.push(TAG_VALUE);
                out.extend_from_slice(v);
                out
            }
            None => vec![TAG_TOMBSTONE],
        };
        self.batch.put_cf(
            self.engine.cf(CF_DATA),
            keys::version_key(prefix, key, version),
            encoded,
        );
        let live = value.is_some();
        match (was_live, live) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys = self.live_keys.saturating_sub(1),
            _ => {}
        }
        self.overlay
            .insert((cf.to_owned(), key.to_vec()), Pending { version, live });
        Ok(())
    }

    /// Whether the newest state of `key`, including this batch's writes, is a value.
    fn was_live(&self, cf: &str, key: &[u8]) -> Result<bool, StorageError> {
        if let Some(p) = self.overlay.get(&(cf.to_owned(), key.to_vec())) {
            return Ok(p.live);
        }
        let prefix = self.prefix(cf)?;
        let start = keys::key_start(prefix, key);
        if let Some(newest) = self.live_cache.get(&start) {
            return Ok(newest.live);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::key_end(prefix, key));
        let mut iter = self
            .engine
            .db
            .raw_iterator_cf_opt(self.engine.cf(CF_DATA), opts);
        iter.seek(start);
        if !iter.valid() {
            iter.status()?;
            return Ok(false);
        }
        let raw = iter.key().unwrap_or_default();
        keys::decode_version_key(prefix, raw)
            .ok_or_else(|| StorageError::Corrupt(format!("undecodable data key {raw:02x?}")))?;
        Ok(decode_value(iter.value().unwrap_or_default())?.is_some())
    }

    /// The first key in `range` with a version in `(read_version, version)`, if any.
    fn conflict_in(
        &self,
        range: &KeyRange,
        read_version: Version,
        version: Version,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if range.begin >= range.end {
            return Ok(None);
        }
        let in_window = |v: Version| v > read_version && v < version;
        let pending = self
            .overlay
            .range((range.cf.clone(), range.begin.clone())..(range.cf.clone(), range.end.clone()))
            .find(|(_, p)| in_window(p.version));
        if let Some(((_, key), _)) = pending {
            return Ok(Some(key.clone()));
        }
        let prefix = self.prefix(&range.cf)?;
        // One key (`KeyRange::single`, what most transactions send): its newest version decides,
        // and the writer's cache usually knows it.
        if let Some(key) = range.single_key() {
            if let Some(newest) = self.live_cache.get(&keys::key_start(prefix, key)) {
                return Ok(in_window(newest.version).then(|| key.to_vec()));
            }
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::key_start(prefix, &range.end));
        let mut iter = self
            .engine
            .db
            .raw_iterator_cf_opt(self.engine.cf(CF_DATA), opts);
        iter.seek(keys::key_start(prefix, &range.begin));
        // The newest stored version below `version` of each key decides: an entry never
        // conflicts with its own writes, which keeps a replay after a crash deterministic.
        while let Some(entry) = VisibleEntry::next(&mut iter, prefix, version - 1)? {
            if in_window(entry.version) {
                return Ok(Some(entry.key));
            }
        }
        Ok(None)
    }

    /// Keys in `[begin, end)` of `cf` whose newest state (this batch included) is live.
    fn live_keys_in(
        &self,
        cf: &str,
        begin: &[u8],
        end: &[u8],
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        if begin >= end {
            return Ok(Vec::new());
        }
        let prefix = self.prefix(cf)?;
        let mut live: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::key_start(prefix, end));
        let mut iter = self
            .engine
            .db
            .raw_iterator_cf_opt(self.engine.cf(CF_DATA), opts);
        iter.seek(keys::key_start(prefix, begin));
        while let Some(e) = VisibleEntry::next(&mut iter, prefix, Version::MAX)? {
            live.insert(e.key, e.value.is_some());
        }
        for ((_, key), p) in self
            .overlay
            .range((cf.to_owned(), begin.to_vec())..(cf.to_owned(), end.to_vec()))
        {
            live.insert(key.clone(), p.live);
        }
        Ok(live
            .into_iter()
            .filter(|(_, l)| *l)
            .map(|(k, _)| k)
            .collect())
    }

    fn dedupe_entry(&self, client_id: &[u8]) -> Result<Option<(u64, Outcome)>, StorageError> {
        if let Some(entry) = self.dedupe.get(client_id) {
            return Ok(Some(entry.clone()));
        }
        let Some(raw) = self
            .engine
            .db
            .get_pinned_cf(self.engine.cf(CF_META), keys::dedupe_key(client_id))?
        else {
            return Ok(None);
        };
        let corrupt = || StorageError::Corrupt("undecodable dedupe entry".into());
        let (seq, rest) = raw.split_at_checked(8).ok_or_else(corrupt)?;
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| corrupt())?);
        Ok(Some((seq, decode_outcome(rest).ok_or_else(corrupt)?)))
    }
}

/// Encodes the outcomes worth remembering for retries (`Rejected` is recomputed from the
/// command itself, so it is not stored).
fn encode_outcome(outcome: &Outcome) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match outcome {
        Outcome::Committed { version } => {
            out.push(1);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Outcome::Conflict { cf, key } => {
            out.push(2);
            out.push(u8::try_from(cf.len()).ok()?);
            out.extend_from_slice(cf.as_bytes());
            out.extend_from_slice(key);
        }
        Outcome::TooOld {
            read_version,
            horizon,
        } => {
            out.push(3);
            out.extend_from_slice(&read_version.to_be_bytes());
            out.extend_from_slice(&horizon.to_be_bytes());
        }
        Outcome::Rejected(_) | Outcome::Applied => return None,
    }
    Some(out)
}

fn decode_outcome(raw: &[u8]) -> Option<Outcome> {
    let (tag, rest) = raw.split_first()?;
    let be64 = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
    match tag {
        1 => Some(Outcome::Committed {
            version: be64(rest)?,
        }),
        2 => {
            let (len, rest) = rest.split_first()?;
            let (cf, key) = rest.split_at_checked(usize::from(*len))?;
            Some(Outcome::Conflict {
                cf: String::from_utf8(cf.to_vec()).ok()?,
                key: key.to_vec(),
            })
        }
        3 => Some(Outcome::TooOld {
            read_version: be64(rest.get(..8)?)?,
            horizon: be64(rest.get(8..)?)?,
        }),
        _ => None,
    }
}
