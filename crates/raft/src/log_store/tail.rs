//! The in-memory part of the log store: the vote, the purge point, and the *tail* of recent
//! entries that appends, replication and apply read without touching RocksDB. The tail
//! invariant is stated in the parent module; every method here keeps it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::log_store::Write;
use crate::types::{Entry, Vote};

/// Encoded bytes the in-memory tail keeps at least (if that many are written): enough for
/// followers that lag by a few seconds of load to be served from memory.
pub(super) const TAIL_BYTES: usize = 32 << 20;

/// One entry of the in-memory tail.
pub(super) struct Cached {
    pub(super) entry: Entry,
    /// The request that writes it: it may leave the tail once `Memory::written_seq ≥ seq`.
    pub(super) seq: u64,
    /// Its encoded size.
    pub(super) bytes: usize,
}

/// The in-memory part of the store, under one lock (never held across an `.await`).
pub(super) struct Memory {
    /// Latest saved vote (as RocksDB will hold it once the queue is written).
    pub(super) vote: Option<Vote>,
    /// First index the tail answers for (see the module's tail invariant).
    pub(super) start: u64,
    /// First index not purged: reads start here even before the purge's delete has run.
    pub(super) first: u64,
    pub(super) entries: VecDeque<Cached>,
    pub(super) bytes: usize,
    /// Sequence number of the next queued request.
    pub(super) next_seq: u64,
    /// Every request up to this one has been written to RocksDB.
    pub(super) written_seq: u64,
    /// The latest `committed` not yet handed to the `raft-log` thread. It rides along with the
    /// next queued request instead of waking the thread for itself.
    pub(super) committed: Option<Write>,
}

impl Memory {
    /// The index after the tail's last entry.
    pub(super) fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// Forgets every entry from `index` on: the log now ends before `index`.
    pub(super) fn truncate(&mut self, index: u64) {
        if index <= self.start {
            // Entries in [index, start) may still be in RocksDB until the queued delete runs:
            // the tail now answers for them (as absent).
            self.entries.clear();
            self.bytes = 0;
            self.start = index;
        } else {
            let keep = usize::try_from(index - self.start).unwrap_or(usize::MAX);
            for dropped in self.entries.drain(keep.min(self.entries.len())..) {
                self.bytes -= dropped.bytes;
            }
        }
    }

    /// Forgets every entry up to and including `index` (purged).
    pub(super) fn purge(&mut self, index: u64) {
        self.first = self.first.max(index + 1);
        while self
            .entries
            .front()
            .is_some_and(|c| c.entry.log_id.index <= index)
        {
            if let Some(dropped) = self.entries.pop_front() {
                self.bytes -= dropped.bytes;
            }
        }
        self.start = self.start.max(index + 1);
    }

    /// Drops written entries from the front while the tail is over its budget.
    pub(super) fn evict(&mut self) {
        while self.bytes > TAIL_BYTES
            && self
                .entries
                .front()
                .is_some_and(|c| c.seq <= self.written_seq)
        {
            if let Some(dropped) = self.entries.pop_front() {
                self.bytes -= dropped.bytes;
                self.start += 1;
            }
        }
    }
}

pub(super) fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    // A panic while holding the lock leaves plain data behind, never a half-made invariant that
    // a later reader could trip on worse than the panic itself.
    memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
