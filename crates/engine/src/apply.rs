//! `Engine::apply_batch`, the only code that writes user data: a run of `(version, command)`
//! applied in order into one RocksDB batch with `applied_version` and the caller's metadata.
//!
//! ```text
//!   for each (version, command): validate ─▶ dedupe (retry?) ─▶ resolver ─▶ put mutations
//!       (overlay: this batch's writes, seen by later commands)
//!   ─▶ + applied_version, horizon, live_keys, dedupe_entries, extra_meta ─▶ one write
//!   ─▶ live cache ─▶ publish
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::command::{
    stamp_buffer, versionstamp, Command, Decide, Invalid, KeyRange, Mutation, Outcome, Prepare,
    Transaction, TxId,
};
use crate::dedupe::Dedupe;
use crate::encoding;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys::{self, TAG_TOMBSTONE, TAG_VALUE};
use crate::live_cache::{LiveCache, Pending};
use crate::locks::{self, Lock, LockTable};
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
        let mut written = None;
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
            locks: self.locks.read().clone(),
            locks_changed: false,
            txn_records: BTreeMap::new(),
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
            if !matches!(
                command,
                Command::Noop
                    | Command::Compact { .. }
                    | Command::ExpireIdempotency { .. }
                    | Command::OracleBound { .. }
            ) {
                written = Some(*version);
            }
        }
        let Applier {
            mut batch,
            markers,
            overlay,
            dedupe,
            horizon,
            live_keys,
            oracle_bound,
            locks,
            locks_changed,
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
        // Locks first: a reader that finds a lock gone finds its piece written.
        if locks_changed {
            *self.locks.write() = locks;
        }
        self.live_keys.store(live_keys, Ordering::SeqCst);
        self.dedupe_entries
            .store(dedupe.entries(), Ordering::SeqCst);
        self.dedupe_expired
            .fetch_add(dedupe.expired(), Ordering::Relaxed);
        self.horizon.fetch_max(horizon, Ordering::SeqCst);
        if let Some(written) = written {
            self.written.fetch_max(written, Ordering::SeqCst);
        }
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
    /// The group's locks, with this batch's prepares and resolves.
    locks: LockTable,
    /// Whether `locks` differs from the engine's.
    locks_changed: bool,
    /// Done and decision records this batch wrote (`Some`) or deleted (`None`), by `meta`
    /// name: later commands of the batch see them.
    txn_records: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Applier<'_> {
    fn apply(&mut self, version: Version, command: &Command) -> Result<Outcome, StorageError> {
        match command {
            Command::Noop => Ok(Outcome::Applied),
            Command::Compact { horizon } => {
                // Never lowers, never passes the applied state (invariant 4).
                self.compact(version, *horizon);
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
            Command::Prepare(prepare) => self.prepare(prepare),
            Command::Resolve {
                txid,
                stamp,
                commit,
            } => self.resolve(txid, *stamp, *commit),
            Command::Decide(decide) => self.decide(version, decide),
            Command::Forget { txid } => {
                self.set_record(locks::decision_name(txid), None);
                Ok(Outcome::Applied)
            }
        }
    }

    /// Raises the horizon to `horizon` (never past `version`, nor past the oldest lock's
    /// stamp: invariant 11), and forgets the done records it passed: a late prepare with such
    /// a stamp is refused as too old, so nothing needs them.
    fn compact(&mut self, version: Version, horizon: Version) {
        let clamp = self.locks.oldest_stamp().unwrap_or(Version::MAX);
        let raised = self.horizon.max(horizon.min(version).min(clamp));
        if raised > self.horizon {
            let meta = self.engine.cf(CF_META);
            self.batch.delete_range_cf(
                meta,
                self.engine.meta_key(&locks::done_name(0, &[0; 16])),
                self.engine.meta_key(&locks::done_name(raised, &[0; 16])),
            );
        }
        self.horizon = raised;
    }

    /// A `meta` record of this group by name, as of this command (this batch's writes first).
    fn record(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(pending) = self.txn_records.get(name) {
            return Ok(pending.clone());
        }
        self.engine.read_meta(name)
    }

    fn set_record(&mut self, name: Vec<u8>, value: Option<Vec<u8>>) {
        let meta = self.engine.cf(CF_META);
        match &value {
            Some(v) => self.batch.put_cf(meta, self.engine.meta_key(&name), v),
            None => self.batch.delete_cf(meta, self.engine.meta_key(&name)),
        }
        self.txn_records.insert(name, value);
    }

    /// Phase one in a participant (docs/sharding.md §6.3 step 1): checks, then the locks.
    fn prepare(&mut self, prepare: &Prepare) -> Result<Outcome, StorageError> {
        let tx = Transaction {
            read_version: prepare.read_version,
            mutations: prepare.piece.iter().map(|(_, m)| m.clone()).collect(),
            read_conflicts: prepare.read_conflicts.clone(),
            ..Transaction::default()
        };
        if let Err(invalid) = tx.validate() {
            return Ok(Outcome::Rejected(invalid));
        }
        if let Some(outside) = self.piece_outside_span(prepare) {
            return Ok(Outcome::Rejected(outside));
        }
        for cf in tx.column_families() {
            if let Err(invalid) = self.engine.check_column_family(cf) {
                return Ok(Outcome::Rejected(invalid));
            }
        }
        if self.locks.get(&prepare.txid).is_some() {
            return Ok(Outcome::Prepared);
        }
        if self
            .record(&locks::done_name(prepare.stamp, &prepare.txid))?
            .is_some()
        {
            return Ok(Outcome::AlreadyResolved);
        }
        // Its commit version is drawn above the stamp; the horizon must not have passed it
        // (invariant 11), and a read below the horizon cannot be checked.
        if prepare.stamp < self.horizon {
            return Ok(Outcome::TooOld {
                read_version: prepare.read_version.unwrap_or(prepare.stamp),
                horizon: self.horizon,
            });
        }
        if let Some(locked) = self.locked(&tx, Some(&prepare.txid)) {
            return Ok(locked);
        }
        // Everything applied so far lies below the commit version, which is drawn after this
        // prepare applied: the window to check is (R, ∞).
        let resolver = Resolver {
            engine: self.engine,
            live_cache: &*self.live_cache,
            overlay: &self.overlay,
            horizon: self.horizon,
        };
        if let Some(refused) = resolver.check(&tx, Version::MAX)? {
            return Ok(refused);
        }
        let record = locks::encode_lock(prepare)?;
        self.batch.put_cf(
            self.engine.cf(CF_META),
            self.engine.meta_key(&locks::lock_name(&prepare.txid)),
            record,
        );
        self.locks.insert(Lock::new(prepare.clone()));
        self.locks_changed = true;
        Ok(Outcome::Prepared)
    }

    /// Phase two in a participant: the piece written at `commit` (or dropped), the locks
    /// released, the transaction remembered as done. Idempotent.
    fn resolve(
        &mut self,
        txid: &TxId,
        stamp: Version,
        commit: Option<Version>,
    ) -> Result<Outcome, StorageError> {
        if let Some(lock) = self.locks.remove(txid) {
            self.locks_changed = true;
            self.batch.delete_cf(
                self.engine.cf(CF_META),
                self.engine.meta_key(&locks::lock_name(txid)),
            );
            if let Some(version) = commit {
                // Below the group's applied version possibly, but only on keys this lock held
                // since before `version` was drawn (invariants 5, 6).
                let piece = lock.prepare.piece.iter().map(|(order, m)| (*order, m));
                self.write_mutations(version, piece)?;
            }
        }
        let flag = u8::from(commit.is_some());
        self.set_record(locks::done_name(stamp, txid), Some(vec![flag]));
        Ok(Outcome::Applied)
    }

    /// The decision, in group 0 (docs/sharding.md §6.3 step 3, §6.6): the first one recorded
    /// for the transaction wins; a token already used answers with its first outcome, and this
    /// attempt aborts.
    fn decide(&mut self, version: Version, decide: &Decide) -> Result<Outcome, StorageError> {
        let name = locks::decision_name(&decide.txid);
        if let Some(recorded) = self.record(&name)? {
            let (commit, answer) = crate::encoding::decode_decision(&recorded)?;
            return Ok(Outcome::Decided {
                commit,
                answer: Box::new(answer),
            });
        }
        let previous = match &decide.idempotency {
            Some(token) => self.dedupe.latest(self.engine, &token.client_id)?,
            None => None,
        };
        let own = || match decide.outcome {
            Outcome::Committed { version } => Some(version),
            _ => None,
        };
        let (commit, answer) = match (&decide.idempotency, &previous) {
            (Some(token), Some(entry)) if entry.sequence == token.sequence => {
                (None, entry.outcome.clone())
            }
            (Some(token), Some(entry)) if entry.sequence > token.sequence => (
                None,
                Outcome::Rejected(Invalid::StaleSequence {
                    sequence: token.sequence,
                    latest: entry.sequence,
                }),
            ),
            _ => (own(), decide.outcome.clone()),
        };
        if let Some(token) = &decide.idempotency {
            // As the fast path: an invalid commit is not remembered (its resend is refused
            // again by the same checks), nor an abort for want of an answer.
            let fresh = previous
                .as_ref()
                .is_none_or(|entry| entry.sequence < token.sequence)
                && !matches!(answer, Outcome::Rejected(_) | Outcome::Aborted { .. });
            if fresh {
                self.dedupe.record(
                    self.engine,
                    &mut self.batch,
                    token,
                    version,
                    &answer,
                    previous.as_ref(),
                )?;
            }
        }
        let record = crate::encoding::encode_decision(commit, &answer)?;
        self.set_record(name, Some(record));
        Ok(Outcome::Decided {
            commit,
            answer: Box::new(answer),
        })
    }

    /// The first piece element of `prepare` outside this group's span: keys, clear ranges and
    /// read ranges must lie inside; a versionstamped key's possible keys must meet it (only the
    /// group owning the final key writes it).
    fn piece_outside_span(&self, prepare: &Prepare) -> Option<Invalid> {
        let span = &self.engine.scope.span;
        let outside = |what: &str, key: &[u8]| Invalid::OutsideRange {
            what: what.to_owned(),
            key: key.to_vec(),
            group: self.engine.scope.group,
        };
        for (_, mutation) in &prepare.piece {
            let held = locks::footprint(mutation);
            let fits = match mutation {
                Mutation::SetVersionstampedKey { .. } => span.meets(&held.begin, &held.end),
                _ => span.holds(&held.begin, &held.end),
            };
            if !fits {
                return Some(outside("key or range starting at", &held.begin));
            }
        }
        prepare
            .read_conflicts
            .iter()
            .find(|range| !span.holds(&range.begin, &range.end))
            .map(|range| outside("read-conflict range starting at", &range.begin))
    }

    /// `Locked` when a write of `tx` meets another transaction's lock, or one of its read
    /// ranges meets another's write lock (docs/sharding.md §6.4).
    fn locked(&self, tx: &Transaction, own: Option<&TxId>) -> Option<Outcome> {
        if self.locks.is_empty() {
            return None;
        }
        let blocked = |range: &KeyRange, key: Option<Vec<u8>>| {
            key.map(|key| Outcome::Locked {
                cf: range.cf.clone(),
                key,
            })
        };
        tx.mutations
            .iter()
            .map(locks::footprint)
            .find_map(|range| {
                let key = self.locks.write_blocked(&range, own);
                blocked(&range, key)
            })
            .or_else(|| {
                tx.read_conflicts
                    .iter()
                    .find_map(|range| blocked(range, self.locks.read_blocked(range, own)))
            })
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
        // A commit across groups holding a lock here may still land below `version`: a
        // write under its locks, or a read of its writes, cannot be checked (invariant 7).
        if let Some(locked) = self.locked(tx, None) {
            return Ok(locked);
        }
        if let Some(refused) = resolver.check(tx, version)? {
            return Ok(refused);
        }
        let mutations = tx
            .mutations
            .iter()
            .enumerate()
            .map(|(order, m)| (u32::try_from(order).unwrap_or(u32::MAX), m));
        self.write_mutations(version, mutations)?;
        Ok(Outcome::Committed { version })
    }

    /// Writes `mutations` at `version`, each with its order in the whole commit (its
    /// versionstamp). A versionstamped key outside this group's span is another group's to
    /// write (a commit across groups locks it in every group it may land in).
    fn write_mutations<'m>(
        &mut self,
        version: Version,
        mutations: impl Iterator<Item = (u32, &'m Mutation)>,
    ) -> Result<(), StorageError> {
        for (order, mutation) in mutations {
            // `validate` bounds versionstamped operations to the first 65,536.
            let stamp = versionstamp(version, u16::try_from(order).unwrap_or(u16::MAX));
            match mutation {
                Mutation::Set { cf, key, value } => self.put(cf, key, Some(value), version)?,
                Mutation::Delete { cf, key } => self.put(cf, key, None, version)?,
                Mutation::SetVersionstampedKey { cf, key, value } => {
                    let stamped = stamp_buffer(key, &stamp);
                    if self.engine.scope.span.contains(&stamped) {
                        self.put(cf, &stamped, Some(value), version)?
                    }
                }
                Mutation::SetVersionstampedValue { cf, key, value } => {
                    self.put(cf, key, Some(&stamp_buffer(value, &stamp)), version)?
                }
                // Streams the range in bounded chunks (clear.rs, invariant 12).
                Mutation::ClearRange { cf, begin, end } => {
                    self.clear_range(version, order as usize, cf, begin, end)?
                }
            }
        }
        Ok(())
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
