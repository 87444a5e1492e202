//! Whole-state transfer: `export` streams `data` + `meta` from one RocksDB snapshot, `restore`
//! replaces them crash-safely under a durable marker (`backup.rs` builds backups and the
//! replica digest on the same snapshot reads). The engine knows nothing of snapshot files or
//! Raft.
//!
//! ```text
//!   export() ──▶ one RocksDB snapshot ──▶ meta records, then data records (key order)
//!   restore(marker, records) ──▶ fence(write) ─▶ marker (sync) ─▶ delete all + records (~4 MiB
//!                                batches) ─▶ last batch deletes the marker ─▶ flush_wal(true)
//! ```

use std::io;
use std::sync::atomic::Ordering;

use rocksdb::{DBRawIterator, ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions, DB};

use crate::encoding;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys;
use crate::options::{CF_DATA, CF_META};
use crate::Version;

/// Which engine column family a record of an export or restore belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// The `meta` column family (applied version, horizon, dedupe table with its index and
    /// count, Raft metadata).
    Meta,
    /// The `data` column family (MVCC user data of every user column family).
    Data,
}

impl Section {
    fn cf_name(self) -> &'static str {
        match self {
            Section::Meta => CF_META,
            Section::Data => CF_DATA,
        }
    }
}

/// One exported record: `(section, raw key, raw value)`.
pub type Record = (Section, Vec<u8>, Vec<u8>);

/// Restore writes its records in batches of about this many bytes (bounded memory).
const RESTORE_BATCH_BYTES: usize = 4 << 20;

/// A streaming export of `meta` then `data`, all read from one RocksDB snapshot.
///
/// Iterating yields every record except the restore marker, in key order per section; nothing
/// is collected in memory. [`Export::meta`] reads a `meta` key from the same snapshot, so a
/// caller's metadata (e.g. the Raft last-applied log id) matches the records exactly.
pub struct Export<'e> {
    // Field order matters: the iterator is dropped before the snapshot it reads.
    /// The current interval's iterator; `None` between intervals and at the end.
    iter: Option<(Section, DBRawIterator<'e>)>,
    /// The intervals still to read, in reverse order (popped from the end): this handle's
    /// `meta` keys, then its `data` spans (scope.rs).
    pending: Vec<(Section, Vec<u8>, Option<Vec<u8>>)>,
    /// The point-in-time view every read of this export uses.
    snapshot: SnapshotWithThreadMode<'e, DB>,
    /// For column family handles.
    engine: &'e Engine,
    /// Set after an iterator error: the export is over.
    failed: bool,
}

impl Export<'_> {
    /// A `meta` value as of this export's snapshot.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .snapshot
            .get_cf(self.engine.cf(CF_META), self.engine.meta_key(key))?)
    }

    /// The applied version as of this export's snapshot.
    pub fn applied_version(&self) -> Result<Version, StorageError> {
        match self.meta(keys::META_APPLIED_VERSION)? {
            None => Ok(0),
            Some(bytes) => Ok(encoding::decode_u64("meta/applied_version", &bytes)?),
        }
    }
}

impl<'e> Export<'e> {
    fn interval_iter(&self, section: Section, lo: &[u8], hi: Option<Vec<u8>>) -> DBRawIterator<'e> {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        if let Some(hi) = hi {
            opts.set_iterate_upper_bound(hi);
        }
        // A whole-state scan: caching its blocks would only push hot ones out.
        opts.fill_cache(false);
        let engine: &'e Engine = self.engine;
        let mut iter = engine
            .db
            .raw_iterator_cf_opt(engine.cf(section.cf_name()), opts);
        iter.seek(lo);
        iter
    }
}

impl Iterator for Export<'_> {
    type Item = Result<Record, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let Some((section, iter)) = self.iter.as_mut() else {
                let (section, lo, hi) = self.pending.pop()?;
                self.iter = Some((section, self.interval_iter(section, &lo, hi)));
                continue;
            };
            let section = *section;
            if !iter.valid() {
                if let Err(e) = iter.status() {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
                self.iter = None;
                continue;
            }
            let key = iter.key().unwrap_or_default().to_vec();
            let value = iter.value().unwrap_or_default().to_vec();
            iter.next();
            if section == Section::Meta && key == self.engine.meta_key(keys::META_RESTORE_PENDING) {
                continue; // the marker is node-local restore state, never part of a snapshot
            }
            return Some(Ok((section, key, value)));
        }
    }
}

/// Adds a range delete of every key of `cf` in `[from, to)` to `batch`; `to = None` means past
/// the last key.
fn delete_range(
    db: &DB,
    batch: &mut WriteBatch,
    cf: &rocksdb::ColumnFamily,
    from: &[u8],
    to: Option<&[u8]>,
) -> Result<(), StorageError> {
    if let Some(to) = to {
        if from < to {
            batch.delete_range_cf(cf, from, to);
        }
        return Ok(());
    }
    let mut iter = db.raw_iterator_cf(cf);
    iter.seek_to_last();
    if !iter.valid() {
        iter.status()?;
        return Ok(()); // empty
    }
    let mut end = iter.key().unwrap_or_default().to_vec();
    end.push(0); // the smallest key after the last one
    if from < end.as_slice() {
        batch.delete_range_cf(cf, from, end.as_slice());
    }
    Ok(())
}

impl Engine {
    /// Refuses a restore record outside what this handle owns (another group's `meta` keys or
    /// `data` outside its span): a snapshot of one group never writes another's state.
    fn check_owned(
        &self,
        section: Section,
        key: &[u8],
        spans: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), StorageError> {
        let owned = match section {
            Section::Meta => self.scope.meta_name(key).is_some(),
            Section::Data => spans.iter().any(|(lo, hi)| {
                key >= lo.as_slice() && hi.as_ref().is_none_or(|h| key < h.as_slice())
            }),
        };
        if owned {
            Ok(())
        } else {
            Err(StorageError::InvalidScope(format!(
                "a restore record of group {} lies outside it: {section:?} key {key:02x?}",
                self.scope.group
            )))
        }
    }
}

impl Engine {
    /// A streaming export of `data` and `meta` from one consistent RocksDB snapshot (the Raft
    /// column families are not included, nor is the restore marker). Never collects.
    pub fn export(&self) -> Result<Export<'_>, StorageError> {
        // The fence makes the snapshot point fall between restores, never inside one.
        let snapshot = {
            let _fence = self.read_fence()?;
            self.db.snapshot()
        };
        let (meta_lo, meta_hi) = self.scope.meta_bounds();
        let mut pending: Vec<(Section, Vec<u8>, Option<Vec<u8>>)> =
            std::iter::once((Section::Meta, meta_lo, meta_hi))
                .chain(
                    self.scope
                        .data_spans(&self.prefixes)
                        .into_iter()
                        .map(|(lo, hi)| (Section::Data, lo, hi)),
                )
                .collect();
        pending.reverse();
        Ok(Export {
            iter: None,
            pending,
            snapshot,
            engine: self,
            failed: false,
        })
    }

    /// The restore marker, if a restore started and did not finish. The caller must redo the
    /// restore (from the source the marker names) before the engine serves again.
    pub fn pending_restore(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match self
            .db
            .get_cf(self.cf(CF_META), self.meta_key(keys::META_RESTORE_PENDING))?
        {
            Some(stored) => Ok(Some(encoding::decode_marker(&stored)?)),
            None => Ok(None),
        }
    }

    /// Replaces the whole `data` + `meta` state with `records`, crash-safely.
    ///
    /// Order (docs/engine-format.md, Restore): (a) `meta/restore_pending = marker`, synced,
    /// before anything destructive; (b) delete all of `data` and `meta` except the marker and
    /// write the records in ~4 MiB batches, unsynced; (c) the last batch deletes the marker, then
    /// the WAL is fsynced; (d) the in-memory applied version, horizon, live keys and GC cursor
    /// are reloaded. Readers and `apply_batch` are excluded for the whole run (restore fence).
    /// On error the marker stays, the engine refuses reads and writes, and
    /// [`Engine::pending_restore`] reports the marker until a restore completes.
    pub fn restore(
        &self,
        marker: &[u8],
        records: impl Iterator<Item = io::Result<Record>>,
    ) -> Result<(), StorageError> {
        let mut writer = self.apply_lock.lock();
        writer.clear();
        let _fence = self.fence.write();
        let (data, meta) = (self.cf(CF_DATA), self.cf(CF_META));

        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        // (a) Durability: the marker must be on disk before the first destructive write, so a
        // crash anywhere after this point is seen at the next open and the restore redone
        // (invariant 7).
        let stored_marker = encoding::encode_marker(marker);
        let marker_key = self.meta_key(keys::META_RESTORE_PENDING);
        self.db
            .put_cf_opt(meta, &marker_key, stored_marker, &synced)?;
        self.restore_incomplete.store(true, Ordering::SeqCst);

        // (b) Delete everything this handle owns but the marker, in the first batch.
        let mut batch = WriteBatch::default();
        let spans = self.scope.data_spans(&self.prefixes);
        for (lo, hi) in &spans {
            delete_range(&self.db, &mut batch, data, lo, hi.as_deref())?;
        }
        let (meta_lo, meta_hi) = self.scope.meta_bounds();
        batch.delete_range_cf(meta, meta_lo.as_slice(), marker_key.as_slice());
        let mut after_marker = marker_key.clone();
        after_marker.push(0);
        delete_range(
            &self.db,
            &mut batch,
            meta,
            &after_marker,
            meta_hi.as_deref(),
        )?;

        let unsynced = WriteOptions::default(); // the final flush_wal(true) covers these
        let mut bytes = 0usize;
        for record in records {
            let (section, key, value) = record.map_err(StorageError::RestoreSource)?;
            if section == Section::Meta && key == marker_key {
                continue; // never let a record clear or replace the marker early
            }
            self.check_owned(section, &key, &spans)?;
            bytes += key.len() + value.len();
            batch.put_cf(self.cf(section.cf_name()), key, value);
            if bytes >= RESTORE_BATCH_BYTES {
                self.db.write_opt(std::mem::take(&mut batch), &unsynced)?;
                bytes = 0;
            }
        }
        // (c) The marker goes in the same batch as the last records: with point-in-time WAL
        // recovery, a durable marker delete implies every earlier batch is durable too.
        batch.delete_cf(meta, &marker_key);
        self.db.write_opt(batch, &unsynced)?;
        // Durability: the restored state is on disk before restore returns.
        self.db.flush_wal(true)?;

        // (d) Reload what the engine caches from meta.
        self.load_counters()?;
        // The index and the count travel with the table; a source without them (an older
        // build's snapshot, a backup) gets them built here.
        let dedupe_entries = crate::dedupe::load_entries(self)?;
        self.dedupe_entries.store(dedupe_entries, Ordering::SeqCst);
        self.gc_cursor.lock().clear();
        // An export taken while a batch was spilling `ClearRange` chunks carries them and their
        // marker: they go before the engine serves (invariant 11).
        self.recover_partial_clears()?;
        self.restore_incomplete.store(false, Ordering::SeqCst);
        Ok(())
    }
}
