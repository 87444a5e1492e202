//! The lock table of a group: the prepared pieces of transactions committing across groups
//! (docs/sharding.md §6.4). Replicated state: each lock is `meta/txn_lock/<txid>` (the
//! prepare's body), written by the `Prepare`'s apply batch and deleted by the `Resolve`'s; the
//! table in memory mirrors those keys, loaded at open and after a restore, and replaced after
//! each batch that changed it is written.
//!
//! ```text
//!   lock of txn t: write footprint (its piece's keys, clear ranges, versionstamp slots)
//!                  read ranges (its read-conflict ranges in this group)
//!   a write  overlapping another txn's writes or reads ─▶ Locked
//!   a read range overlapping another txn's writes     ─▶ Locked   (read locks share)
//! ```
//! The table is small (one entry per transaction between its prepare and its resolve), so
//! overlap is a scan of every lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocksdb::Direction;

use crate::command::{KeyRange, Mutation, Prepare, TxId, VERSIONSTAMP_LEN};
use crate::encoding::{self, Reader, Writer};
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys;
use crate::options::CF_META;
use crate::Version;

/// One prepared piece and what it holds.
#[derive(Debug)]
pub(crate) struct Lock {
    /// The prepare as applied (its piece is written at the commit version by the resolve).
    pub(crate) prepare: Prepare,
    /// The half-open ranges its writes cover.
    writes: Vec<KeyRange>,
}

/// What a reader or a sweeper learns of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// The transaction holding it.
    pub txid: TxId,
    /// Its stamp: an oracle version from when it prepared (its age).
    pub stamp: Version,
}

/// The half-open range `[begin, end)` a mutation writes in: one key, a clear range, or every key
/// a versionstamped key buffer can become.
pub(crate) fn footprint(mutation: &Mutation) -> KeyRange {
    match mutation {
        Mutation::Set { cf, key, .. }
        | Mutation::Delete { cf, key }
        | Mutation::SetVersionstampedValue { cf, key, .. } => KeyRange::single(cf, key),
        Mutation::ClearRange { cf, begin, end } => KeyRange {
            cf: cf.clone(),
            begin: begin.clone(),
            end: end.clone(),
        },
        Mutation::SetVersionstampedKey { cf, key, .. } => {
            let (lowest, highest) = stamp_slots(key);
            KeyRange::single(cf, &highest).with_begin(lowest)
        }
    }
}

/// The lowest and highest keys a versionstamped key buffer can become (`p ‖ 00×10`,
/// `p ‖ ff×10`); the caller checked the buffer holds at least 10 bytes.
pub(crate) fn stamp_slots(buffer: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let prefix = &buffer[..buffer.len().saturating_sub(VERSIONSTAMP_LEN)];
    let mut lowest = prefix.to_vec();
    lowest.extend_from_slice(&[0; VERSIONSTAMP_LEN]);
    let mut highest = prefix.to_vec();
    highest.extend_from_slice(&[0xff; VERSIONSTAMP_LEN]);
    (lowest, highest)
}

impl KeyRange {
    fn with_begin(mut self, begin: Vec<u8>) -> Self {
        self.begin = begin;
        self
    }

    /// Whether the two ranges share a key (same column family, both non-empty, overlapping).
    fn overlaps(&self, other: &KeyRange) -> bool {
        self.cf == other.cf
            && self.begin < self.end
            && other.begin < other.end
            && self.begin < other.end
            && other.begin < self.end
    }
}

impl Lock {
    pub(crate) fn new(prepare: Prepare) -> Self {
        let writes = prepare.piece.iter().map(|(_, m)| footprint(m)).collect();
        Self { prepare, writes }
    }
}

/// The locks of one group, by transaction.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockTable {
    locks: BTreeMap<TxId, Arc<Lock>>,
}

/// `txn_lock/ ‖ txid`.
pub(crate) fn lock_name(txid: &TxId) -> Vec<u8> {
    let mut name = keys::META_TXN_LOCK_PREFIX.to_vec();
    name.extend_from_slice(txid);
    name
}

/// `txn_done/ ‖ be64 stamp ‖ txid`: ordered by stamp, so the records the horizon passed are
/// one range.
pub(crate) fn done_name(stamp: Version, txid: &TxId) -> Vec<u8> {
    let mut name = keys::META_TXN_DONE_PREFIX.to_vec();
    name.extend_from_slice(&stamp.to_be_bytes());
    name.extend_from_slice(txid);
    name
}

/// `txn_decision/ ‖ txid` (group 0).
pub(crate) fn decision_name(txid: &TxId) -> Vec<u8> {
    let mut name = keys::META_TXN_DECISION_PREFIX.to_vec();
    name.extend_from_slice(txid);
    name
}

/// `FORMAT_V1 ‖ prepare body`: a lock record.
pub(crate) fn encode_lock(prepare: &Prepare) -> Result<Vec<u8>, StorageError> {
    let mut w = Writer::new("lock record");
    encoding::put_prepare(&mut w, prepare)?;
    Ok(w.finish())
}

pub(crate) fn decode_lock(bytes: &[u8]) -> Result<Prepare, StorageError> {
    Ok(Reader::whole("lock record", bytes, encoding::read_prepare)?)
}

impl LockTable {
    /// The table stored under `engine`'s `meta/txn_lock/`.
    pub(crate) fn load(engine: &Engine) -> Result<Self, StorageError> {
        let start = engine.meta_key(keys::META_TXN_LOCK_PREFIX);
        let mut locks = BTreeMap::new();
        let iter = engine.db.iterator_cf(
            engine.cf(CF_META),
            rocksdb::IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(&start) {
                break;
            }
            let prepare = decode_lock(&value)?;
            locks.insert(prepare.txid, Arc::new(Lock::new(prepare)));
        }
        Ok(Self { locks })
    }

    pub(crate) fn len(&self) -> usize {
        self.locks.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    pub(crate) fn get(&self, txid: &TxId) -> Option<&Arc<Lock>> {
        self.locks.get(txid)
    }

    pub(crate) fn insert(&mut self, lock: Lock) {
        self.locks.insert(lock.prepare.txid, Arc::new(lock));
    }

    pub(crate) fn remove(&mut self, txid: &TxId) -> Option<Arc<Lock>> {
        self.locks.remove(txid)
    }

    /// The smallest stamp of any lock: the group's horizon stays at or below it (invariant 11).
    pub(crate) fn oldest_stamp(&self) -> Option<Version> {
        self.locks.values().map(|l| l.prepare.stamp).min()
    }

    /// Every lock, by transaction.
    pub(crate) fn infos(&self) -> Vec<LockInfo> {
        self.locks.values().map(|l| l.info()).collect()
    }

    /// The first key at which a write to `range` meets a lock of another transaction than
    /// `except` (its writes or its reads).
    pub(crate) fn write_blocked(&self, range: &KeyRange, except: Option<&TxId>) -> Option<Vec<u8>> {
        self.others(except).find_map(|lock| {
            lock.writes
                .iter()
                .chain(&lock.prepare.read_conflicts)
                .find(|held| held.overlaps(range))
                .map(|held| held.begin.clone().max(range.begin.clone()))
        })
    }

    /// The first key at which a read of `range` (a read-conflict range) meets another
    /// transaction's write lock.
    pub(crate) fn read_blocked(&self, range: &KeyRange, except: Option<&TxId>) -> Option<Vec<u8>> {
        self.others(except).find_map(|lock| {
            lock.writes
                .iter()
                .find(|held| held.overlaps(range))
                .map(|held| held.begin.clone().max(range.begin.clone()))
        })
    }

    /// The locks whose writes overlap `range`: what a read of it must wait for or resolve.
    pub(crate) fn writers_over(&self, range: &KeyRange) -> Vec<LockInfo> {
        self.locks
            .values()
            .filter(|lock| lock.writes.iter().any(|held| held.overlaps(range)))
            .map(|lock| lock.info())
            .collect()
    }

    fn others<'a>(&'a self, except: Option<&'a TxId>) -> impl Iterator<Item = &'a Arc<Lock>> {
        self.locks
            .iter()
            .filter(move |(txid, _)| Some(*txid) != except)
            .map(|(_, lock)| lock)
    }
}

impl Lock {
    fn info(&self) -> LockInfo {
        LockInfo {
            txid: self.prepare.txid,
            stamp: self.prepare.stamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str) -> Mutation {
        Mutation::Set {
            cf: "default".into(),
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }
    }

    fn range(begin: &str, end: &str) -> KeyRange {
        KeyRange {
            cf: "default".into(),
            begin: begin.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
        }
    }

    fn table() -> LockTable {
        let mut table = LockTable::default();
        table.insert(Lock::new(Prepare {
            txid: [1; 16],
            stamp: 10,
            read_version: Some(9),
            piece: vec![(0, set("b"))],
            read_conflicts: vec![range("m", "p")],
        }));
        table
    }

    #[test]
    fn writes_meet_writes_and_reads_reads_meet_only_writes() {
        let table = table();
        assert_eq!(
            table.write_blocked(&KeyRange::single("default", b"b"), None),
            Some(b"b".to_vec())
        );
        assert_eq!(
            table.write_blocked(&range("n", "o"), None),
            Some(b"n".to_vec())
        );
        assert_eq!(table.write_blocked(&range("c", "m"), None), None);
        assert_eq!(
            table.read_blocked(&range("a", "c"), None),
            Some(b"b".to_vec())
        );
        // Read locks share.
        assert_eq!(table.read_blocked(&range("m", "p"), None), None);
        // A transaction never meets its own locks.
        assert_eq!(
            table.write_blocked(&KeyRange::single("default", b"b"), Some(&[1; 16])),
            None
        );
        // Another column family is another keyspace.
        let other = KeyRange::single("other", b"b");
        assert_eq!(table.write_blocked(&other, None), None);
        assert_eq!(table.writers_over(&range("a", "z")).len(), 1);
        assert!(table.writers_over(&range("m", "z")).is_empty());
        assert_eq!(table.oldest_stamp(), Some(10));
    }

    #[test]
    fn a_versionstamped_key_locks_every_key_it_can_become() {
        let buffer = [b"log/".as_slice(), &[0; VERSIONSTAMP_LEN]].concat();
        let held = footprint(&Mutation::SetVersionstampedKey {
            cf: "default".into(),
            key: buffer,
            value: vec![],
        });
        assert!(held.overlaps(&KeyRange::single(
            "default",
            &[b"log/".as_slice(), &[7; 10]].concat()
        )));
        assert!(held.overlaps(&KeyRange::single(
            "default",
            &[b"log/".as_slice(), &[0xff; 10]].concat()
        )));
        assert!(!held.overlaps(&KeyRange::single("default", b"log0")));
    }
}
