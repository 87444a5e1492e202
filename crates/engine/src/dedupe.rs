//! The idempotency (dedupe) table: per client, the sequence and outcome of its latest commit,
//! in `meta/dedupe/<client_id>`, so a retried commit gets its first outcome and is not applied
//! twice; an index by the version each entry was recorded at, so expiry is a bounded range scan;
//! and the number of entries. The layouts are docs/encoding.md's "dedupe entry" and
//! docs/engine-format.md's `meta` keys.
//!
//! ```text
//!   commit (token) ─▶ latest(client) ─ retry? ─▶ first outcome
//!                                    └ new ───▶ record: entry V2 + index key (old one deleted)
//!   ExpireIdempotency { before, limit } ─▶ index [.., before) oldest first, ≤ limit
//!                                        ─▶ delete entry + index key   (same batch, every replica)
//! ```

use std::collections::BTreeMap;

use rocksdb::{ReadOptions, WriteBatch};

use crate::command::{IdempotencyToken, Outcome};
use crate::encoding::{self, DecodeError, EncodeError, Reader, Writer, FORMAT_V1, FORMAT_V2};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys;
use crate::options::CF_META;
use crate::Version;

/// The value of an index key: the version byte and no body (docs/encoding.md invariant 1).
const INDEX_VALUE: [u8; 1] = [FORMAT_V1];
/// The migration of a table without index writes its index keys in batches of this many.
const MIGRATION_BATCH: usize = 10_000;

/// One client's remembered commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The client's latest sequence.
    pub sequence: u64,
    /// The version of the commit that recorded the entry: expiry compares it with `before`.
    pub recorded_at: Version,
    /// The outcome a retry of that commit gets.
    pub outcome: Outcome,
}

/// `FORMAT_V2 ‖ be64 sequence ‖ be64 recorded_at ‖ outcome`.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::versioned("dedupe entry", FORMAT_V2, 64);
    w.u64(entry.sequence);
    w.u64(entry.recorded_at);
    encoding::put_outcome(&mut w, &entry.outcome)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_entry`], or by an earlier build in the first layout
/// (`FORMAT_V1 ‖ be64 sequence ‖ outcome`). A V1 entry does not carry the version it was
/// recorded at; it is taken from what every replica computes alike: the commit version of a
/// `Committed` outcome (exactly what a V2 entry of the same commit holds), else 0, so such an
/// entry expires at the first expiry.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let (version, mut r) = Reader::versioned("dedupe entry", bytes, &[FORMAT_V1, FORMAT_V2])?;
    let sequence = r.u64("sequence")?;
    let recorded_at = if version == FORMAT_V2 {
        Some(r.u64("recorded_at")?)
    } else {
        None
    };
    let outcome = encoding::read_outcome(&mut r)?;
    r.finish()?;
    let recorded_at = recorded_at.unwrap_or(match outcome {
        Outcome::Committed { version } => version,
        _ => 0,
    });
    Ok(Entry {
        sequence,
        recorded_at,
        outcome,
    })
}

/// Whether a retry of a commit should get `outcome` back: `Rejected` is recomputed from the
/// command itself and `Applied` is not a commit's, so neither is remembered.
fn remembered(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Committed { .. } | Outcome::Conflict { .. } | Outcome::TooOld { .. }
    )
}

/// The dedupe table as one batch sees it: `meta`'s entries and index plus what the batch
/// changed so far, and the number of entries.
pub(crate) struct Dedupe {
    /// Entries written (`Some`) or expired (`None`) earlier in the batch, by client id.
    written: BTreeMap<Vec<u8>, Option<Entry>>,
    /// Index keys put (`true`) or deleted (`false`) earlier in the batch: an expiry later in
    /// the batch must see them, or the result would depend on where batches are cut (the
    /// replicas cut them differently).
    index: BTreeMap<Vec<u8>, bool>,
    /// The number of entries, this batch included.
    entries: u64,
    /// Entries this batch expired.
    expired: u64,
}

impl Dedupe {
    /// The table before the batch: `entries` entries.
    pub(crate) fn new(entries: u64) -> Self {
        Self {
            written: BTreeMap::new(),
            index: BTreeMap::new(),
            entries,
            expired: 0,
        }
    }

    /// The number of entries, this batch included.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// Entries this batch expired.
    pub(crate) fn expired(&self) -> u64 {
        self.expired
    }

    /// The entry remembered for `client_id`, if any.
    pub(crate) fn latest(
        &self,
        engine: &Engine,
        client_id: &[u8],
    ) -> Result<Option<Entry>, StorageError> {
        if let Some(entry) = self.written.get(client_id) {
            return Ok(entry.clone());
        }
        let Some(raw) = engine.db.get_pinned_cf(
            engine.cf(CF_META),
            engine.meta_key(&keys::dedupe_key(client_id)),
        )?
        else {
            return Ok(None);
        };
        Ok(Some(decode_entry(&raw)?))
    }

    /// Puts the outcome of the commit at `version` carrying `token` into `batch`, if it is
    /// worth remembering; `previous` is the client's entry before it. The index key moves
    /// with the entry in the same batch, and the count with it.
    pub(crate) fn record(
        &mut self,
        engine: &Engine,
        batch: &mut WriteBatch,
        token: &IdempotencyToken,
        version: Version,
        outcome: &Outcome,
        previous: Option<&Entry>,
    ) -> Result<(), StorageError> {
        if !remembered(outcome) {
            return Ok(());
        }
        let meta = engine.cf(CF_META);
        let entry = Entry {
            sequence: token.sequence,
            recorded_at: version,
            outcome: outcome.clone(),
        };
        match previous {
            Some(old) => {
                let old_key = keys::dedupe_index_key(old.recorded_at, &token.client_id);
                batch.delete_cf(meta, engine.meta_key(&old_key));
                self.index.insert(old_key, false);
            }
            None => self.entries += 1,
        }
        batch.put_cf(
            meta,
            engine.meta_key(&keys::dedupe_key(&token.client_id)),
            encode_entry(&entry)?,
        );
        let key = keys::dedupe_index_key(version, &token.client_id);
        batch.put_cf(meta, engine.meta_key(&key), INDEX_VALUE);
        self.index.insert(key, true);
        self.written.insert(token.client_id.clone(), Some(entry));
        Ok(())
    }

    /// Deletes from `batch` the entries recorded before `before`, oldest first (by version,
    /// then client id), at most `limit` of them; returns how many. Reads only the index range
    /// below `before` (merged with this batch's index changes), so the work is bounded by
    /// `limit` plus this batch's own writes, whatever the size of the table.
    pub(crate) fn expire(
        &mut self,
        engine: &Engine,
        batch: &mut WriteBatch,
        before: Version,
        limit: u32,
    ) -> Result<u64, StorageError> {
        let limit = limit as usize;
        let start = keys::META_DEDUPE_INDEX_PREFIX.to_vec();
        let end = keys::dedupe_index_bound(before);
        let meta = engine.cf(CF_META);
        // This batch's index changes below `before`, merged in key order with the stored ones.
        let pending: Vec<(Vec<u8>, bool)> = self
            .index
            .range(start.clone()..end.clone())
            .map(|(k, present)| (k.clone(), *present))
            .collect();
        let mut pending = pending.into_iter().peekable();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(engine.meta_key(&end));
        let mut iter = engine.db.raw_iterator_cf_opt(meta, opts);
        iter.seek(engine.meta_key(&start));
        let mut victims = Vec::new();
        while victims.len() < limit {
            // Index keys by their names in the group, as the batch's changes are.
            let stored = if iter.valid() {
                iter.key()
                    .and_then(|k| engine.scope.meta_name(k))
                    .map(<[u8]>::to_vec)
            } else {
                iter.status()?;
                None
            };
            let from_batch = match (&stored, pending.peek()) {
                (None, None) => break,
                (Some(s), Some((p, _))) => p <= s,
                (Some(_), None) => false,
                (None, Some(_)) => true,
            };
            let (key, present) = if from_batch {
                let Some((key, present)) = pending.next() else {
                    break;
                };
                // The batch's change of a stored key replaces it.
                if stored.as_ref() == Some(&key) {
                    iter.next();
                }
                (key, present)
            } else {
                let Some(key) = stored else { break };
                iter.next();
                (key, true)
            };
            if present {
                victims.push(key);
            }
        }
        drop(iter);
        for key in &victims {
            let (_, client_id) = keys::decode_dedupe_index_key(key).ok_or_else(|| {
                StorageError::Corrupt(format!("undecodable dedupe index key {key:02x?}"))
            })?;
            batch.delete_cf(meta, engine.meta_key(&keys::dedupe_key(client_id)));
            batch.delete_cf(meta, engine.meta_key(key));
            self.written.insert(client_id.to_vec(), None);
        }
        let n = victims.len() as u64;
        for key in victims {
            self.index.insert(key, false);
        }
        self.entries = self.entries.saturating_sub(n);
        self.expired += n;
        Ok(n)
    }
}

/// Reads `meta/dedupe_entries`. When it is absent (a data directory, snapshot or backup from a
/// build without the index, or a fresh one) builds the index of the stored entries and the
/// count first. The result is a function of the entries alone, so every replica builds the
/// same index (V1 entries: see [`decode_entry`]). Written unsynced: the count goes in the last
/// batch, so a migration cut short by a crash finds it absent and runs again (it only puts).
pub(crate) fn load_entries(engine: &Engine) -> Result<u64, StorageError> {
    let meta = engine.cf(CF_META);
    let counted = engine
        .db
        .get_pinned_cf(meta, engine.meta_key(keys::META_DEDUPE_ENTRIES))?;
    if let Some(bytes) = counted {
        return Ok(encoding::decode_u64("meta/dedupe_entries", &bytes)?);
    }
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(engine.meta_key(&keys::prefix_end(keys::META_DEDUPE_PREFIX)));
    let mut iter = engine.db.raw_iterator_cf_opt(meta, opts);
    iter.seek(engine.meta_key(keys::META_DEDUPE_PREFIX));
    let mut batch = WriteBatch::default();
    let mut entries = 0u64;
    while iter.valid() {
        let key = iter.key().unwrap_or_default();
        let client_id = engine
            .scope
            .meta_name(key)
            .and_then(|name| name.strip_prefix(keys::META_DEDUPE_PREFIX))
            .ok_or_else(|| StorageError::Corrupt(format!("dedupe key {key:02x?} out of place")))?;
        let entry = decode_entry(iter.value().unwrap_or_default())?;
        batch.put_cf(
            meta,
            engine.meta_key(&keys::dedupe_index_key(entry.recorded_at, client_id)),
            INDEX_VALUE,
        );
        entries += 1;
        if batch.len() >= MIGRATION_BATCH {
            engine.db.write(std::mem::take(&mut batch))?;
        }
        iter.next();
    }
    iter.status()?;
    drop(iter);
    batch.put_cf(
        meta,
        engine.meta_key(keys::META_DEDUPE_ENTRIES),
        encoding::encode_u64(entries),
    );
    engine.db.write(batch)?;
    Ok(entries)
}

impl Engine {
    /// The number of entries in the idempotency (dedupe) table.
    pub fn idempotency_entries(&self) -> u64 {
        self.dedupe_entries
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The version the oldest idempotency entry was recorded at (`None`: the table is empty).
    /// One seek into the index: the leader asks it before proposing an expiry, so that it
    /// proposes one only when there is something to expire.
    pub fn oldest_idempotency_version(&self) -> Result<Option<Version>, StorageError> {
        let _fence = self.read_fence()?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(
            self.meta_key(&keys::prefix_end(keys::META_DEDUPE_INDEX_PREFIX)),
        );
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_META), opts);
        iter.seek(self.meta_key(keys::META_DEDUPE_INDEX_PREFIX));
        if !iter.valid() {
            iter.status()?;
            return Ok(None);
        }
        let raw = iter.key().unwrap_or_default();
        let key = self.scope.meta_name(raw).unwrap_or(raw);
        let (version, _) = keys::decode_dedupe_index_key(key).ok_or_else(|| {
            StorageError::Corrupt(format!("undecodable dedupe index key {key:02x?}"))
        })?;
        Ok(Some(version))
    }
}
