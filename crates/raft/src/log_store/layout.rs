//! The node's storage layout (docs/sharding.md §7): the node-wide `meta/layout` marker, and the
//! in-place migration of a layout-1 Raft log (one group, keys without a group) to group 0's
//! layout-2 keys, run before any log store of the node is used ([`prepare`]).
//!
//! ```text
//!  meta/layout = 2 ──▶ done (never scanned again)          > 2 ──▶ refused, naming the value
//!  absent ──▶ copy: raft_state vote/committed/last_purged ─▶ be64(0) ‖ name
//!                   raft_log be64(i) ─▶ be64(0) ‖ be64(i)   chunks of ≤ 1,000 entries or 64 MiB,
//!                                                          each synced   [raft_log::migrate_copy_chunk]
//!             delete: the old keys, same chunks, synced    [raft_log::migrate_delete_chunk]
//!                                                          [raft_log::migrate_before_marker]
//!             marker: meta/layout = 0x01 ‖ be64 2, synced
//! ```
//!
//! Crash safety: old and new keys are disjoint (an old `raft_log` key has 8 bytes, a new one
//! 16; an old `raft_state` key is a bare name, a new one starts with `be64(group)`), nothing is
//! deleted before every old key is copied and synced, and the marker is written last. A crash
//! anywhere leaves a database without the marker whose every entry and value is at its old key,
//! its new key or both, with equal bytes; the next open runs the same steps again, which re-copy
//! what is still old (harmless) and finish. A fresh database takes the same path: nothing to
//! copy or delete, then the marker.

use std::io;

use dolmen_engine::encoding::{DecodeError, Reader, Writer};
use dolmen_engine::{failpoint, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use rocksdb::{ColumnFamily, IteratorMode, WriteBatch, WriteOptions, DB};

use super::keys::{log_key, state_key, GroupId, STATE_NAMES};

/// The node-wide `meta` key of the storage layout.
pub const META_LAYOUT: &[u8] = b"layout";
/// The layout this build writes: Raft keys scoped by group (docs/sharding.md §7). The `data`
/// and `meta` parts of layout 2 (group-scoped `meta` keys) are not built yet.
pub const LAYOUT: u64 = 2;
/// The group a layout-1 log belongs to: the only group there was.
const LAYOUT_1_GROUP: GroupId = 0;
/// Length of a layout-1 `raft_log` key, `be64(index)`.
const LAYOUT_1_LOG_KEY: usize = 8;
/// Entries copied or deleted per synced batch, at most.
const CHUNK_ENTRIES: usize = 1_000;
/// Key and value bytes per synced batch, at most (an entry of any size still fits alone).
const CHUNK_BYTES: usize = 64 << 20;

/// Why the layout could not be checked or the migration could not finish.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The database was written by a newer build, in a layout this one does not read.
    #[error(
        "the data directory has storage layout {found} (meta/layout); this build reads layout \
         {LAYOUT} and migrates layout 1: start it with the Dolmen build that wrote it, or newer \
         (docs/sharding.md §7)"
    )]
    Newer {
        /// The layout found.
        found: u64,
    },
    /// `meta/layout` holds a value no build writes (layout 1 has no marker).
    #[error(
        "meta/layout holds {found}, a storage layout no Dolmen build writes (layout 1 has no \
         marker, this build writes {LAYOUT}): the data directory is corrupt or not Dolmen's"
    )]
    Unknown {
        /// The value found.
        found: u64,
    },
    /// `meta/layout` does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// RocksDB failed (or a column family is missing).
    #[error("migrating the Raft log to storage layout {LAYOUT}: {0}")]
    Storage(#[from] io::Error),
}

impl From<LayoutError> for io::Error {
    fn from(e: LayoutError) -> Self {
        match e {
            LayoutError::Storage(e) => e,
            e @ (LayoutError::Newer { .. } | LayoutError::Unknown { .. }) => {
                io::Error::new(io::ErrorKind::Unsupported, e)
            }
            e @ LayoutError::Decode(_) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// What [`prepare`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The marker says layout 2: nothing was read but the marker.
    Marked,
    /// The marker was absent: `entries` log entries and `states` `raft_state` values were moved
    /// to group 0's keys (both 0 for a fresh database), then the marker was written.
    Migrated {
        /// Log entries moved.
        entries: u64,
        /// `raft_state` values moved (vote, committed, last purged).
        states: u64,
    },
}

/// A step of the migration, after which a test may stop it (a crash there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A chunk of copies is written and synced.
    Copied,
    /// A chunk of deletes of old keys is written and synced.
    Deleted,
    /// Every old key is deleted; the marker is not written.
    BeforeMarker,
}

impl Step {
    fn failpoint(self) -> &'static str {
        match self {
            Step::Copied => failpoint::LOG_MIGRATE_COPY_CHUNK,
            Step::Deleted => failpoint::LOG_MIGRATE_DELETE_CHUNK,
            Step::BeforeMarker => failpoint::LOG_MIGRATE_BEFORE_MARKER,
        }
    }
}

/// Bounds of one synced batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
}

impl Chunk {
    const DEFAULT: Chunk = Chunk {
        entries: CHUNK_ENTRIES,
        bytes: CHUNK_BYTES,
    };
}

/// Checks the node's storage layout and migrates a layout-1 Raft log to layout 2, crash-safely
/// (module docs). Blocking; run it before any log store of the node is used
/// ([`super::LogStore::open`] does). Cheap once the marker is there: one point read.
///
/// # Errors
/// [`LayoutError::Newer`] / [`LayoutError::Unknown`] naming the marker's value; a marker that
/// does not decode; a RocksDB failure (the migration resumes at the next call).
pub fn prepare(db: &DB) -> Result<Prepared, LayoutError> {
    prepare_with(db, Chunk::DEFAULT, |step| {
        failpoint::crash_point(step.failpoint());
        Ok(())
    })
}

/// The stored layout: `None` without a marker (layout 1, or a fresh database).
pub fn read_layout(db: &DB) -> Result<Option<u64>, LayoutError> {
    let meta = cf(db, CF_META)?;
    match db.get_cf(meta, META_LAYOUT).map_err(rocks)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(Reader::whole("meta/layout", &bytes, |r| {
            r.u64("layout")
        })?)),
    }
}

/// [`prepare`] with the batch bounds `chunk`, calling `after` at each [`Step`] (its error stops
/// the migration there, as a crash would).
pub(crate) fn prepare_with(
    db: &DB,
    chunk: Chunk,
    mut after: impl FnMut(Step) -> Result<(), LayoutError>,
) -> Result<Prepared, LayoutError> {
    match read_layout(db)? {
        Some(LAYOUT) => return Ok(Prepared::Marked),
        Some(found) if found > LAYOUT => return Err(LayoutError::Newer { found }),
        Some(found) => return Err(LayoutError::Unknown { found }),
        None => {}
    }
    let (entries, states) = copy_old_keys(db, chunk, &mut after)?;
    delete_old_keys(db, chunk, &mut after)?;
    after(Step::BeforeMarker)?;
    let mut w = Writer::with_capacity("meta/layout", 9);
    w.u64(LAYOUT);
    // Durability: the marker is written, synced, only after every old key is gone (every
    // batch before it was synced): a marked database holds no layout-1 key.
    db.put_cf_opt(cf(db, CF_META)?, META_LAYOUT, w.finish(), &synced())
        .map_err(rocks)?;
    if entries > 0 || states > 0 {
        tracing::info!(
            entries,
            states,
            "migrated the Raft log to storage layout {LAYOUT} (group {LAYOUT_1_GROUP})"
        );
    }
    Ok(Prepared::Migrated { entries, states })
}

/// Copies every layout-1 key to its group-0 key, in synced chunks. Returns the entries and
/// `raft_state` values copied.
fn copy_old_keys(
    db: &DB,
    chunk: Chunk,
    after: &mut impl FnMut(Step) -> Result<(), LayoutError>,
) -> Result<(u64, u64), LayoutError> {
    let (log, state) = (cf(db, CF_RAFT_LOG)?, cf(db, CF_RAFT_STATE)?);
    let mut batch = Batch::new(db, chunk, Step::Copied);
    let mut states = 0;
    for name in STATE_NAMES {
        if let Some(value) = db.get_cf(state, name).map_err(rocks)? {
            batch.add(
                |b| b.put_cf(state, state_key(LAYOUT_1_GROUP, name), &value),
                name.len() + value.len(),
                after,
            )?;
            states += 1;
        }
    }
    let mut entries = 0;
    // The iterator reads one implicit snapshot: the copies it makes are not read back.
    for item in db.iterator_cf(log, IteratorMode::Start) {
        let (key, value) = item.map_err(rocks)?;
        let Ok(index) = <[u8; LAYOUT_1_LOG_KEY]>::try_from(&key[..]) else {
            continue; // a layout-2 key (a copy made before a crash)
        };
        let new_key = log_key(LAYOUT_1_GROUP, u64::from_be_bytes(index));
        batch.add(
            |b| b.put_cf(log, new_key, &value),
            key.len() + value.len(),
            after,
        )?;
        entries += 1;
    }
    batch.finish(after)?;
    Ok((entries, states))
}

/// Deletes every layout-1 key, in synced chunks.
fn delete_old_keys(
    db: &DB,
    chunk: Chunk,
    after: &mut impl FnMut(Step) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let (log, state) = (cf(db, CF_RAFT_LOG)?, cf(db, CF_RAFT_STATE)?);
    let mut batch = Batch::new(db, chunk, Step::Deleted);
    for name in STATE_NAMES {
        if db.get_cf(state, name).map_err(rocks)?.is_some() {
            batch.add(|b| b.delete_cf(state, name), name.len(), after)?;
        }
    }
    for item in db.iterator_cf(log, IteratorMode::Start) {
        let (key, _) = item.map_err(rocks)?;
        if key.len() == LAYOUT_1_LOG_KEY {
            batch.add(|b| b.delete_cf(log, &key), key.len(), after)?;
        }
    }
    batch.finish(after)
}

/// A write batch written, synced, whenever it reaches its [`Chunk`] bounds, with `step`
/// reported after each write.
struct Batch<'a> {
    db: &'a DB,
    chunk: Chunk,
    step: Step,
    batch: WriteBatch,
    entries: usize,
    bytes: usize,
}

impl<'a> Batch<'a> {
    fn new(db: &'a DB, chunk: Chunk, step: Step) -> Self {
        Self {
            db,
            chunk,
            step,
            batch: WriteBatch::default(),
            entries: 0,
            bytes: 0,
        }
    }

    /// Adds one write of about `bytes` bytes; writes the batch once it is full.
    fn add(
        &mut self,
        write: impl FnOnce(&mut WriteBatch),
        bytes: usize,
        after: &mut impl FnMut(Step) -> Result<(), LayoutError>,
    ) -> Result<(), LayoutError> {
        write(&mut self.batch);
        self.entries += 1;
        self.bytes += bytes;
        if self.entries >= self.chunk.entries || self.bytes >= self.chunk.bytes {
            self.finish(after)?;
        }
        Ok(())
    }

    /// Writes what the batch holds, synced, then reports the step.
    fn finish(
        &mut self,
        after: &mut impl FnMut(Step) -> Result<(), LayoutError>,
    ) -> Result<(), LayoutError> {
        if self.entries == 0 {
            return Ok(());
        }
        // Durability: each chunk is on disk before the next step, so no delete can be durable
        // while a copy it depends on is not.
        self.db
            .write_opt(std::mem::take(&mut self.batch), &synced())
            .map_err(rocks)?;
        (self.entries, self.bytes) = (0, 0);
        after(self.step)
    }
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a ColumnFamily> {
    super::cf(db, name)
}

fn rocks(e: rocksdb::Error) -> io::Error {
    super::rocks(e)
}

#[cfg(test)]
mod tests;
