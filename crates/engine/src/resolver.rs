//! The resolver: the conflict check of a commit. It decides whether the commit may write, from
//! its read version and read-conflict ranges, against every write the engine holds in `data`
//! plus the writes earlier in the same batch (the overlay). This is the piece sharding will move:
//! each shard resolves the conflict ranges that fall in its key range against its own writes.
//!
//! ```text
//!   commit(read_version R, conflicts) at V ──▶ R ≥ V? Rejected ── R < horizon? TooOld
//!       ──▶ each range: overlay (this batch) ─▶ live cache (one key) ─▶ data scan ──▶ Conflict?
//! ```

use std::collections::BTreeMap;

use rocksdb::ReadOptions;

use crate::command::{Invalid, KeyRange, Outcome, Transaction};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys;
use crate::live_cache::{LiveCache, Pending};
use crate::options::CF_DATA;
use crate::read::VisibleEntry;
use crate::Version;

/// Keys written earlier in the batch being applied, by `(column family, user key)`: later
/// commands of the batch see them (conflicts, existence) before they reach `data`.
pub(crate) type Overlay = BTreeMap<(String, Vec<u8>), Pending>;

/// One commit's conflict check, over everything written before it.
pub(crate) struct Resolver<'a> {
    /// `data`, as of the batches written before this one.
    pub(crate) engine: &'a Engine,
    /// The writer's memory of recently written keys (a cache of `data`).
    pub(crate) live_cache: &'a LiveCache,
    /// The writes earlier in this batch.
    pub(crate) overlay: &'a Overlay,
    /// The horizon as of this command (a `Compact` earlier in the batch may have raised it).
    pub(crate) horizon: Version,
}

impl Resolver<'_> {
    /// Why the commit at `version` must not write (`Rejected`, `TooOld` or `Conflict`), or
    /// `None` when it may. Blind writes (no read version) never conflict.
    ///
    /// A commit at `V` with read version `R` conflicts when some key of its read-conflict set has
    /// a version `w` with `R < w < V` (docs/engine-format.md, Versions and commands).
    pub(crate) fn check(
        &self,
        tx: &Transaction,
        version: Version,
    ) -> Result<Option<Outcome>, StorageError> {
        let Some(read_version) = tx.read_version else {
            return Ok(None);
        };
        if read_version >= version {
            return Ok(Some(Outcome::Rejected(Invalid::FutureReadVersion {
                read_version,
                version,
            })));
        }
        // History below the horizon may be gone: it cannot be checked (invariant 4 keeps the
        // horizon from passing the applied state).
        if !tx.read_conflicts.is_empty() && read_version < self.horizon {
            return Ok(Some(Outcome::TooOld {
                read_version,
                horizon: self.horizon,
            }));
        }
        // The planted bug (test-only, `[faults] unsafe_skip_conflict_check`): every commit
        // writes, whatever was written since its read version.
        if self.engine.skips_conflict_check {
            return Ok(None);
        }
        for range in &tx.read_conflicts {
            if let Some(key) = self.conflict_in(range, read_version, version)? {
                return Ok(Some(Outcome::Conflict {
                    cf: range.cf.clone(),
                    key,
                }));
            }
        }
        Ok(None)
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
        let prefix = self.engine.checked_prefix(&range.cf)?;
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
        // conflicts with its own writes, which keeps a replay after a crash deterministic
        // (invariant 6).
        while let Some(entry) = VisibleEntry::next(&mut iter, prefix, version - 1)? {
            if in_window(entry.version) {
                return Ok(Some(entry.key));
            }
        }
        Ok(None)
    }
}
