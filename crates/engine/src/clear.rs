//! `ClearRange` in bounded memory: the range is walked with one iterator and its tombstones are
//! written ahead of the batch in chunks, under a synced `meta/clear_pending/` marker; recovery
//! removes the chunks of a batch that never finished (docs/engine-format.md, Clearing a range;
//! invariants 10–12).
//!
//! ```text
//!   iterator over data[begin, end) ─▶ live key not in overlay ─▶ chunk (≤ chunk_keys keys)
//!       chunk full ─▶ marker (first time, synced) ─▶ write chunk (WAL, unsynced) ─▶ live cache −key
//!   end ─▶ spilled? last chunk as the others : tombstones into the overlay and the batch
//!   open / restore / next batch after a failure ─▶ delete versions > applied in marked bounds
//! ```

use std::sync::atomic::Ordering;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::apply::Applier;
use crate::encoding::{Reader, Writer};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys::{self, TAG_TOMBSTONE};
use crate::options::{CF_DATA, CF_META};
use crate::read::VisibleEntry;
use crate::Version;

/// Live keys a `ClearRange` holds before writing them as one chunk, unless the engine was built
/// with another number ([`Engine::with_clear_range_chunk_keys`]).
pub(crate) const DEFAULT_CHUNK_KEYS: usize = 10_000;

/// Deletes recovery puts in one write.
const RECOVERY_CHUNK: usize = 10_000;

/// Bytes of the inverted version at the end of a `data` key.
const VERSION_SUFFIX: usize = 8;

/// `clear_pending/ ‖ be64 version ‖ be32 index`.
fn marker_key(version: Version, index: usize) -> Vec<u8> {
    let mut key = keys::META_CLEAR_PENDING_PREFIX.to_vec();
    key.extend_from_slice(&version.to_be_bytes());
    // `Transaction::validate` bounds a commit's operations far below 2^32.
    key.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    key
}

/// The version of a marker, from its name after the prefix.
fn marker_version(rest: &[u8]) -> Result<Version, StorageError> {
    rest.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt(format!("short clear marker name {rest:02x?}")))
}

/// `0x01 ‖ be32 len ‖ from ‖ be32 len ‖ to` (docs/encoding.md, clear marker).
fn encode_bounds(from: &[u8], to: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut w = Writer::with_capacity("clear marker", from.len() + to.len() + 9);
    w.bytes("from", from)?;
    w.bytes("to", to)?;
    Ok(w.finish())
}

fn decode_bounds(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
    let mut r = Reader::new("clear marker", bytes)?;
    let from = r.bytes("from")?;
    let to = r.bytes("to")?;
    r.finish()?;
    Ok((from, to))
}

/// The version of a raw `data` key (its last 8 bytes, inverted).
fn raw_version(raw: &[u8]) -> Result<Version, StorageError> {
    raw.len()
        .checked_sub(VERSION_SUFFIX)
        .and_then(|at| raw[at..].try_into().ok())
        .map(|b: [u8; 8]| !u64::from_be_bytes(b))
        .ok_or_else(|| StorageError::Corrupt(format!("short data key {raw:02x?}")))
}

/// One `ClearRange` being applied: where its tombstones go and whether any went ahead.
struct Clear<'a> {
    version: Version,
    index: usize,
    prefix: &'a [u8],
    /// The range's `data` bounds, recorded in the marker.
    from: Vec<u8>,
    to: Vec<u8>,
    /// Live keys not yet written (at most one chunk).
    chunk: Vec<Vec<u8>>,
    /// A chunk was written ahead of the batch: the rest must be too.
    spilled: bool,
}

impl Applier<'_> {
    /// Writes a tombstone at `version` for every key of `[begin, end)` in `cf` whose newest
    /// state (this batch included) is a value, holding at most one chunk of keys
    /// (docs/engine-format.md, Clearing a range). `index` is the mutation's position in its
    /// commit (it names the marker).
    pub(crate) fn clear_range(
        &mut self,
        version: Version,
        index: usize,
        cf: &str,
        begin: &[u8],
        end: &[u8],
    ) -> Result<(), StorageError> {
        if begin >= end {
            return Ok(());
        }
        let engine = self.engine;
        let prefix = engine.checked_prefix(cf)?;
        let mut clear = Clear {
            version,
            index,
            prefix,
            from: keys::key_start(prefix, begin),
            to: keys::key_start(prefix, end),
            chunk: Vec::new(),
            spilled: false,
        };
        // The batch's own unwritten writes decide for their keys; they are bounded by the batch,
        // not by the range.
        let in_overlay: Vec<Vec<u8>> = self
            .overlay
            .range((cf.to_owned(), begin.to_vec())..(cf.to_owned(), end.to_vec()))
            .filter(|(_, pending)| pending.live)
            .map(|((_, key), _)| key.clone())
            .collect();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(clear.to.clone());
        // A walk over the whole range: caching its blocks would push hot ones out.
        opts.fill_cache(false);
        // A point-in-time view: this clear's own chunks, written while it walks, are not seen.
        let mut iter = engine.db.raw_iterator_cf_opt(engine.cf(CF_DATA), opts);
        iter.seek(&clear.from);
        while let Some(entry) = VisibleEntry::next(&mut iter, prefix, Version::MAX)? {
            if entry.value.is_none()
                || self
                    .overlay
                    .contains_key(&(cf.to_owned(), entry.key.clone()))
            {
                continue;
            }
            clear.chunk.push(entry.key);
            if clear.chunk.len() >= engine.clear_range_chunk_keys {
                self.spill(&mut clear)?;
            }
        }
        if clear.spilled {
            self.spill(&mut clear)?;
        } else {
            // Fewer live keys than a chunk: as `Delete`s, in the batch and its overlay.
            for key in std::mem::take(&mut clear.chunk) {
                self.put_known(cf, &key, None, version, true)?;
            }
        }
        for key in in_overlay {
            self.put_known(cf, &key, None, version, true)?;
        }
        Ok(())
    }

    /// Writes `clear`'s chunk ahead of the batch: the marker first (once, synced), then the
    /// tombstones in one unsynced write; each key leaves the live cache (invariant 12).
    fn spill(&mut self, clear: &mut Clear<'_>) -> Result<(), StorageError> {
        let engine = self.engine;
        if !clear.spilled {
            let marker = engine.meta_key(&marker_key(clear.version, clear.index));
            let mut synced = WriteOptions::default();
            synced.set_sync(true);
            engine.clear_pending.store(true, Ordering::SeqCst);
            // Durability: the marker is on disk before any chunk can be, so a crash that keeps
            // a chunk keeps what recovery needs to find it (invariant 10).
            engine.db.put_cf_opt(
                engine.cf(CF_META),
                &marker,
                encode_bounds(&clear.from, &clear.to)?,
                &synced,
            )?;
            self.markers.push(marker);
            clear.spilled = true;
        }
        if clear.chunk.is_empty() {
            return Ok(());
        }
        let data = engine.cf(CF_DATA);
        let mut chunk = WriteBatch::default();
        for key in clear.chunk.drain(..) {
            chunk.put_cf(
                data,
                keys::version_key(clear.prefix, &key, clear.version),
                [TAG_TOMBSTONE],
            );
            self.live_cache.remove(&keys::key_start(clear.prefix, &key));
            self.live_keys = self.live_keys.saturating_sub(1);
        }
        // Unsynced: the batch's final write follows in the same WAL (synced standalone), and
        // until it lands `applied_version` hides these versions from every read (invariant 11).
        engine.db.write_opt(chunk, &WriteOptions::default())?;
        crate::failpoint::crash_point(crate::failpoint::APPLY_CLEAR_RANGE_CHUNK);
        engine.injected_clear_failure()
    }
}

impl Engine {
    /// This engine with `ClearRange` writing its tombstones in chunks of `keys` live keys
    /// (at least 1; the default is 10,000). Tests use a small number to cross chunk
    /// boundaries with a few keys.
    #[must_use]
    pub fn with_clear_range_chunk_keys(mut self, keys: usize) -> Self {
        self.clear_range_chunk_keys = keys.max(1);
        self
    }

    /// Test hook: after `chunks` more spilled `ClearRange` chunks are written, the `apply_batch`
    /// writing them fails with [`StorageError::Injected`], leaving them on disk as a crash at
    /// that point would; `None` disarms it. Reopening (or the next `apply_batch`) recovers.
    #[doc(hidden)]
    pub fn fail_clear_range_after_chunks(&self, chunks: Option<u64>) {
        self.clear_chunks_before_failure
            .store(chunks.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Counts one spilled chunk against the test hook; `Injected` when it runs out.
    fn injected_clear_failure(&self) -> Result<(), StorageError> {
        let left = self.clear_chunks_before_failure.load(Ordering::SeqCst);
        if left == u64::MAX {
            return Ok(());
        }
        let left = left.saturating_sub(1);
        self.clear_chunks_before_failure
            .store(if left == 0 { u64::MAX } else { left }, Ordering::SeqCst);
        if left == 0 {
            return Err(StorageError::Injected {
                what: "after a spilled clear_range chunk",
            });
        }
        Ok(())
    }

    /// Deletes the spilled `ClearRange` chunks of a batch that never finished: within each
    /// `meta/clear_pending/` marker's bounds, every `data` version at the marker's version
    /// (invariant 10), then the markers. Every write is synced: a crash in the middle leaves
    /// the markers, and recovery runs again. Called at open, after a restore and before a batch
    /// that follows a failed one; the caller excludes `apply_batch`.
    pub(crate) fn recover_partial_clears(&self) -> Result<(), StorageError> {
        let (data, meta) = (self.cf(CF_DATA), self.cf(CF_META));
        let mut markers = Vec::new();
        let mut iter = self.db.raw_iterator_cf(meta);
        iter.seek(self.meta_key(keys::META_CLEAR_PENDING_PREFIX));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let Some(version) = self
                .scope
                .meta_name(key)
                .and_then(|name| name.strip_prefix(keys::META_CLEAR_PENDING_PREFIX))
                .map(marker_version)
            else {
                break;
            };
            markers.push((key.to_vec(), version?, decode_bounds(value)?));
            iter.next();
        }
        iter.status()?;
        drop(iter);
        if markers.is_empty() {
            self.clear_pending.store(false, Ordering::SeqCst);
            return Ok(());
        }
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        let mut batch = WriteBatch::default();
        let mut deletes = 0usize;
        for (_, version, (from, to)) in &markers {
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(to.clone());
            opts.fill_cache(false);
            let mut iter = self.db.raw_iterator_cf_opt(data, opts);
            iter.seek(from);
            while let Some(raw) = iter.key() {
                // Only the unfinished batch wrote at the marker's version (versions are unique
                // in a group), above the applied version for a commit, possibly below it for a
                // commit across groups resolved here.
                if raw_version(raw)? == *version {
                    batch.delete_cf(data, raw);
                    deletes += 1;
                    if deletes.is_multiple_of(RECOVERY_CHUNK) {
                        self.db.write_opt(std::mem::take(&mut batch), &synced)?;
                    }
                }
                iter.next();
            }
            iter.status()?;
        }
        // Durability: the markers go only with (or after) the last deletes, so a crash before
        // this write finds them and recovers again.
        for (key, _, _) in &markers {
            batch.delete_cf(meta, key);
        }
        self.db.write_opt(batch, &synced)?;
        self.clear_pending.store(false, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_holds_the_bounds_it_was_given() {
        let bytes = encode_bounds(b"from", b"").unwrap();
        assert_eq!(bytes, b"\x01\x00\x00\x00\x04from\x00\x00\x00\x00");
        assert_eq!(
            decode_bounds(&bytes).unwrap(),
            (b"from".to_vec(), Vec::new())
        );
        assert!(decode_bounds(&bytes[..6]).is_err());
        assert_eq!(
            marker_key(7, 2),
            b"clear_pending/\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x02"
        );
        assert_eq!(raw_version(&(!5u64).to_be_bytes()).unwrap(), 5);
        assert!(raw_version(b"short").is_err());
    }
}
