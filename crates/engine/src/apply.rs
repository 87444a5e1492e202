//! `Engine::apply_batch`, the only code that writes user data: a run of `(version, command)`
//! applied in order into one RocksDB batch with `applied_version` and the caller's metadata.
//!
//! ```text
//!   for each (version, command): validate ─▶ dedupe (retry?) ─▶ resolver ─▶ put mutations
//!       (overlay: this batch's writes, seen by later commands)
//!   ─▶ + applied_version, horizon, live_keys, dedupe_entries, extra_meta ─▶ one write
//!   ─▶ live cache ─▶ publish
//! ```

use std::sync::atomic::Ordering;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::command::{
    stamp_buffer, versionstamp, Command, Invalid, Mutation, Outcome, Transaction,
};
use crate::dedupe::Dedupe;
use crate::encoding;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys::{self, TAG_TOMBSTONE, TAG_VALUE};
use crate::live_cache::{LiveCache, Pending};
use crate::options::{Durability, CF_DATA, CF_META};
use crate::read::decode_value;
use crate::resolver::{Overlay, Resolver};
use crate::Version;

impl Engine {
    /// Applies `entries` in order, atomically, in one RocksDB batch together with
    /// `applied_version` and `extra_meta` (key/value pairs for `meta`). Returns one outcome per
    /// entry. Commit versions must strictly increase past `applied_version()`; other commands
    /// may repeat the version reached.
    ///
    /// The only code that writes user data (invariant 1). Deterministic (docs/engine-format.md
    /// invariant 6).
    pub fn apply_batch(
        &self,
        entries: &[(Version, Command)],
        durability: Durability,
        extra_meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Outcome>, StorageError> {
        let mut live_cache = self.apply_lock.lock();
        // `restore` holds `apply_lock` for its whole run, so no batch interleaves with it.
        self.check_restored()?;
        // A batch that failed after spilling `ClearRange` chunks left them above the applied
        // version: remove them before anything reads `data` as the truth (invariant 10).
        if self.clear_pending.load(Ordering::SeqCst) {
            self.recover_partial_clears()?;
        }
        let mut applied = self.applied_version();
        let mut batch = Applier {
            engine: self,
            live_cache: &mut live_cache,
            batch: WriteBatch::default(),
            markers: Vec::new(),
            overlay: Overlay::new(),
            dedupe: Dedupe::new(self.dedupe_entries.load(Ordering::SeqCst)),
            horizon: self.horizon(),
            live_keys: self.live_keys.load(Ordering::SeqCst),
            oracle_bound: None,
        };
        let mut outcomes = Vec::with_capacity(entries.len());
        for (version, command) in entries {
            // Commit versions strictly increase; other commands write nothing at a version and
            // may apply at the version reached (invariant 3).
            let commit = matches!(command, Command::Commit(_));
            if *version < applied || (commit && *version == applied) {
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
            markers,
            overlay,
            dedupe,
            horizon,
            live_keys,
            oracle_bound,
            ..
        } = batch;
        let meta = self.cf(CF_META);
        let put = |batch: &mut WriteBatch, name: &[u8], value: &[u8]| {
            batch.put_cf(meta, self.meta_key(name), value);
        };
        // applied_version rides in the same batch as the data it covers (invariant 2).
        put(
            &mut batch,
            keys::META_APPLIED_VERSION,
            &encoding::encode_u64(applied),
        );
        put(
            &mut batch,
            keys::META_HORIZON,
            &encoding::encode_u64(horizon),
        );
        put(
            &mut batch,
            keys::META_LIVE_KEYS,
            &encoding::encode_u64(live_keys),
        );
        // The count rides with the entries it counts.
        put(
            &mut batch,
            keys::META_DEDUPE_ENTRIES,
            &encoding::encode_u64(dedupe.entries()),
        );
        if let Some(bound) = oracle_bound {
            put(
                &mut batch,
                keys::META_ORACLE_BOUND,
                &encoding::encode_u64(bound),
            );
        }
        for (k, v) in extra_meta {
            put(&mut batch, k, v);
        }
        // The spilled `ClearRange` chunks become real with this write: their markers go in the
        // same batch as `applied_version` (invariant 10).
        for marker in &markers {
            batch.delete_cf(meta, marker);
        }
        let mut write = WriteOptions::default();
        // Standalone: the acknowledgement waits for this fsync. Replicated: the log is the WAL.
        write.set_sync(durability == Durability::Sync);
        crate::failpoint::crash_point(crate::failpoint::APPLY_BEFORE_WRITE);
        self.db.write_opt(batch, &write)?;
        if !markers.is_empty() {
            self.clear_pending.store(false, Ordering::SeqCst);
        }
        // Written (and, standalone, fsynced); nothing is published and no caller answered yet.
        crate::failpoint::crash_point(crate::failpoint::APPLY_AFTER_WRITE);
        for ((cf, key), pending) in overlay {
            if let Ok(prefix) = self.prefix(&cf) {
                live_cache.insert(keys::key_start(prefix, &key), pending);
            }
        }
        // Publish only after the batch is durable/visible: readers at ≤ applied see it whole.
        self.live_keys.store(live_keys, Ordering::SeqCst);
        self.dedupe_entries
            .store(dedupe.entries(), Ordering::SeqCst);
        self.dedupe_expired
            .fetch_add(dedupe.expired(), Ordering::Relaxed);
        self.horizon.fetch_max(horizon, Ordering::SeqCst);
        self.applied.store(applied, Ordering::SeqCst);
        Ok(outcomes)
    }
}

/// One `apply_batch` in progress: the write batch and what it changed so far.
pub(crate) struct Applier<'e> {
    pub(crate) engine: &'e Engine,
    /// Whether keys written by earlier batches are live (a cache of `data`); a spilled
    /// `ClearRange` chunk removes its keys.
    pub(crate) live_cache: &'e mut LiveCache,
    pub(crate) batch: WriteBatch,
    /// The `meta/clear_pending/` markers of the chunks this batch spilled: the final write
    /// deletes them.
    pub(crate) markers: Vec<Vec<u8>>,
    /// Keys written earlier in this batch, so later commands see them (conflicts, existence).
    pub(crate) overlay: Overlay,
    /// Dedupe entries, with those written earlier in this batch.
    dedupe: Dedupe,
    horizon: Version,
    pub(crate) live_keys: u64,
    /// The oracle bound once a command of this batch raised it (written with the batch).
    oracle_bound: Option<Version>,
}

impl Applier<'_> {
    fn apply(&mut self, version: Version, command: &Command) -> Result<Outcome, StorageError> {
        match command {
            Command::Noop => Ok(Outcome::Applied),
            Command::Compact { horizon } => {
                // Never lowers, never passes the applied state (invariant 4).
                self.horizon = self.horizon.max((*horizon).min(version));
                Ok(Outcome::Applied)
            }
            Command::Commit(tx) => self.commit(version, tx),
            Command::ExpireIdempotency { before, limit } => {
                // Capped at the horizon (deterministic: the horizon at this log position), so
                // a retry of an expired commit that read anything is TRANSACTION_TOO_OLD, never
                // applied a second time (docs/engine-format.md invariant 9).
                let before = (*before).min(self.horizon);
                self.dedupe
                    .expire(self.engine, &mut self.batch, before, *limit)?;
                Ok(Outcome::Applied)
            }
            Command::OracleBound { bound } => {
                let stored = match self.oracle_bound {
                    Some(b) => b,
                    None => self.engine.oracle_bound()?,
                };
                // Never lowers it.
                self.oracle_bound = Some(stored.max(*bound));
                Ok(Outcome::Applied)
            }
        }
    }

    fn commit(&mut self, version: Version, tx: &Transaction) -> Result<Outcome, StorageError> {
        if let Err(invalid) = tx.validate() {
            return Ok(Outcome::Rejected(invalid));
        }
        // Before the idempotency table: a commit sent to the wrong group is not remembered
        // there, so its retry through the right group applies (once).
        if let Some(outside) = self.outside_span(version, tx) {
            return Ok(Outcome::Rejected(outside));
        }
        for cf in tx.column_families() {
            if let Err(invalid) = self.engine.check_column_family(cf) {
                return Ok(Outcome::Rejected(invalid));
            }
        }
        let previous = match &tx.idempotency {
            Some(token) => self.dedupe.latest(self.engine, &token.client_id)?,
            None => None,
        };
        if let (Some(token), Some(entry)) = (&tx.idempotency, &previous) {
            if entry.sequence == token.sequence {
                // a retry: the first outcome, nothing applied twice
                return Ok(entry.outcome.clone());
            }
            if entry.sequence > token.sequence {
                return Ok(Outcome::Rejected(Invalid::StaleSequence {
                    sequence: token.sequence,
                    latest: entry.sequence,
                }));
            }
        }
        let outcome = self.check_and_write(version, tx)?;
        if let Some(token) = &tx.idempotency {
            self.dedupe.record(
                self.engine,
                &mut self.batch,
                token,
                version,
                &outcome,
                previous.as_ref(),
            )?;
        }
        Ok(outcome)
    }

    /// The first key or range of `tx` outside this group's span, if any (docs/sharding.md §4.2:
    /// the apply-time route check); a versionstamped key is checked as it would be written.
    fn outside_span(&self, version: Version, tx: &Transaction) -> Option<Invalid> {
        let span = &self.engine.scope.span;
        if *span == crate::KeySpan::all() {
            return None;
        }
        let outside = |what: &str, key: &[u8]| Invalid::OutsideRange {
            what: what.to_owned(),
            key: key.to_vec(),
            group: self.engine.scope.group,
        };
        for (order, mutation) in tx.mutations.iter().enumerate() {
            match mutation {
                Mutation::Set { key, .. }
                | Mutation::Delete { key, .. }
                | Mutation::SetVersionstampedValue { key, .. } => {
                    if !span.contains(key) {
                        return Some(outside("key", key));
                    }
                }
                Mutation::SetVersionstampedKey { key, .. } => {
                    let stamp = versionstamp(version, u16::try_from(order).unwrap_or(u16::MAX));
                    let stamped = stamp_buffer(key, &stamp);
                    if !span.contains(&stamped) {
                        return Some(outside("versionstamped key", &stamped));
                    }
                }
                Mutation::ClearRange { begin, end, .. } => {
                    if !span.holds(begin, end) {
                        return Some(outside("clear range starting at", begin));
                    }
                }
            }
        }
        tx.read_conflicts
            .iter()
            .find(|range| !span.holds(&range.begin, &range.end))
            .map(|range| outside("read-conflict range starting at", &range.begin))
    }

    fn check_and_write(
        &mut self,
        version: Version,
        tx: &Transaction,
    ) -> Result<Outcome, StorageError> {
        let resolver = Resolver {
            engine: self.engine,
            live_cache: &*self.live_cache,
            overlay: &self.overlay,
            horizon: self.horizon,
        };
        if let Some(refused) = resolver.check(tx, version)? {
            return Ok(refused);
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
                // Streams the range in bounded chunks (clear.rs, invariant 12).
                Mutation::ClearRange { cf, begin, end } => {
                    self.clear_range(version, order, cf, begin, end)?
                }
            }
        }
        Ok(Outcome::Committed { version })
    }

    /// Writes one version of `key` (`None` = tombstone) and keeps the live-key count.
    pub(crate) fn put(
        &mut self,
        cf: &str,
        key: &[u8],
        value: Option<&Vec<u8>>,
        version: Version,
    ) -> Result<(), StorageError> {
        let was_live = self.was_live(cf, key)?;
        self.put_known(cf, key, value, version, was_live)
    }

    /// [`Self::put`] of a key whose newest state the caller knows (`was_live`).
    pub(crate) fn put_known(
        &mut self,
        cf: &str,
        key: &[u8],
        value: Option<&Vec<u8>>,
        version: Version,
        was_live: bool,
    ) -> Result<(), StorageError> {
        let prefix = self.engine.checked_prefix(cf)?;
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
        let prefix = self.engine.checked_prefix(cf)?;
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
}
