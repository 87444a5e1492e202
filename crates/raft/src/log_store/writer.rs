//! The `raft-log` thread: every write of the log store goes, in call order, through its queue;
//! it writes whatever is queued in one RocksDB batch, then issues one WAL fsync for all of it if
//! any request needs durability (group commit), then completes the requests in order.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dolmen_engine::{failpoint, CF_RAFT_LOG, CF_RAFT_STATE};
use openraft::storage::IOFlushed;
use rocksdb::{WriteBatch, WriteOptions, DB};

use super::tail::{lock, Memory};
use super::{cf, log_end, log_key, rocks, state_key, GroupId, VOTE};
use crate::types::DolmenRaft;

/// How often [`LogFsync::UnsafeLazy`] fsyncs at most.
const UNSAFE_LAZY_FSYNC: Duration = Duration::from_secs(5);

/// When the `raft-log` thread fsyncs the WAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFsync {
    /// Before any append or vote in the group is acknowledged: the only correct mode.
    #[default]
    BeforeAck,
    /// A planted bug for the fault-injection suite's self-test (`[faults]
    /// unsafe_skip_log_fsync`): groups are acknowledged at once and fsynced at most every
    /// five seconds, so a power cut (`[faults] lose_unsynced_writes`) loses acknowledged writes.
    UnsafeLazy,
}

/// Why the `raft-log` thread could not write a group of requests; every request of the group
/// is told (it is `Clone` for that).
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum LogWriteError {
    /// RocksDB failed to write the batch or to fsync the WAL.
    #[error(transparent)]
    Write(Arc<io::Error>),
    /// The engine and every store were dropped before the queue was written.
    #[error("database closed before the log was written")]
    Closed,
}

/// One change the `raft-log` thread makes, in queue order.
#[derive(Debug)]
pub(super) enum Write {
    /// Puts an encoded entry at its index.
    Entry(u64, Vec<u8>),
    /// Puts the group's `raft_state` value of this name.
    State(&'static [u8], Vec<u8>),
    /// Deletes the group's `raft_state` value of this name.
    ClearState(&'static [u8]),
    /// Deletes every entry of the group from this index on.
    DeleteFrom(u64),
    /// Deletes every entry of the group up to and including this index.
    DeleteThrough(u64),
}

/// What the caller of a queued request is told, and when.
pub(super) enum Completion {
    /// Nothing: the caller did not wait.
    None,
    /// openraft's append callback, after the fsync.
    Flushed(IOFlushed<DolmenRaft>),
    /// A caller awaiting the fsync (`save_vote`).
    Durable(tokio::sync::oneshot::Sender<io::Result<()>>),
    /// A caller awaiting the write, not the fsync (a barrier before reading RocksDB).
    Written(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl Completion {
    pub(super) fn needs_fsync(&self) -> bool {
        matches!(self, Completion::Flushed(_) | Completion::Durable(_))
    }

    pub(super) fn complete(self, result: &Result<(), LogWriteError>) {
        let result = result.clone().map_err(io::Error::other);
        match self {
            Completion::None => {}
            Completion::Flushed(callback) => callback.io_completed(result),
            // The waiter may have been dropped (its task cancelled); nothing to tell then.
            Completion::Durable(tx) | Completion::Written(tx) => drop(tx.send(result)),
        }
    }
}

/// A queued request: its sequence number (the tail's eviction clock), its writes, its caller.
pub(super) struct Request {
    pub(super) seq: u64,
    pub(super) writes: Vec<Write>,
    pub(super) completion: Completion,
}

/// The `raft-log` thread of `raft_group`'s store: writes every queued request in one batch, then one
/// fsync if any of them needs durability, then completes them in order. One thread per store
/// for now; sharing one across the node's groups is the next step (docs/sharding.md §7).
///
/// It holds the database weakly so that dropping the last store and engine closes RocksDB; the
/// thread ends when the last `LogStore` clone (the last sender) is dropped.
pub(super) fn run_log_writer(
    db: Weak<DB>,
    raft_group: GroupId,
    memory: Weak<Mutex<Memory>>,
    requests: mpsc::Receiver<Request>,
    fsyncs: Arc<AtomicU64>,
    policy: LogFsync,
) {
    let mut last_fsync = Instant::now();
    while let Ok(first) = requests.recv() {
        // The pending `committed` is taken before the queue is drained: every entry it covers
        // was queued before it was saved, so it is in this group and written ahead of it.
        let committed = memory.upgrade().and_then(|m| lock(&m).committed.take());
        // Group commit: every request queued so far shares this write and this fsync.
        let mut group = vec![first];
        group.extend(requests.try_iter());
        let wanted = group.iter().any(|r| r.completion.needs_fsync());
        let fsync = match policy {
            LogFsync::BeforeAck => wanted,
            // The planted bug: the group is acknowledged below whether or not this fsyncs.
            LogFsync::UnsafeLazy => wanted && last_fsync.elapsed() >= UNSAFE_LAZY_FSYNC,
        };
        let result = match db.upgrade() {
            Some(db) => write_group(&db, raft_group, &group, committed.as_ref(), fsync, &fsyncs)
                .map_err(|e| LogWriteError::Write(Arc::new(e))),
            None => Err(LogWriteError::Closed),
        };
        if fsync {
            last_fsync = Instant::now();
        }
        // Durable (when the group needed it); no caller has been told yet.
        failpoint::crash_point(failpoint::LOG_BEFORE_ACK);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        let last_seq = group.last().map_or(0, |r| r.seq);
        if let (Ok(()), Some(memory)) = (&result, memory.upgrade()) {
            let mut memory = lock(&memory);
            memory.written_seq = last_seq;
            memory.evict();
        }
        // FIFO; openraft keeps only the highest completed IOId anyway.
        for request in group {
            request.completion.complete(&result);
        }
    }
}

/// Writes a group of requests, then `committed`, as one unsynced batch at `raft_group`'s keys,
/// then fsyncs the WAL if `fsync` (one of the requests needs it, under
/// [`LogFsync::BeforeAck`]).
fn write_group(
    db: &DB,
    raft_group: GroupId,
    group: &[Request],
    committed: Option<&Write>,
    fsync: bool,
    fsyncs: &AtomicU64,
) -> io::Result<()> {
    let (log, state) = (cf(db, CF_RAFT_LOG)?, cf(db, CF_RAFT_STATE)?);
    let mut batch = WriteBatch::default();
    let writes = || group.iter().flat_map(|r| &r.writes);
    // Crash points of the steps a group may hold, before anything of it is written.
    if writes().any(|w| matches!(w, Write::State(name, _) if *name == VOTE)) {
        failpoint::crash_point(failpoint::LOG_SAVE_VOTE);
    }
    if writes().any(|w| matches!(w, Write::DeleteFrom(_))) {
        failpoint::crash_point(failpoint::LOG_TRUNCATE);
    }
    if writes().any(|w| matches!(w, Write::DeleteThrough(_))) {
        failpoint::crash_point(failpoint::LOG_PURGE);
    }
    failpoint::crash_point(failpoint::LOG_BEFORE_WRITE);
    for write in writes().chain(committed) {
        match write {
            Write::Entry(index, value) => batch.put_cf(log, log_key(raft_group, *index), value),
            Write::State(name, value) => batch.put_cf(state, state_key(raft_group, name), value),
            Write::ClearState(name) => batch.delete_cf(state, state_key(raft_group, name)),
            // One range delete: it cannot leave a hole, and later appends are written after it.
            // Both ranges stop at the group's end: no other group's key is touched.
            Write::DeleteFrom(index) => {
                let from = log_key(raft_group, *index);
                batch.delete_range_cf(log, &from[..], &log_end(raft_group)[..]);
            }
            Write::DeleteThrough(index) => {
                let (from, to) = (log_key(raft_group, 0), through(raft_group, *index));
                batch.delete_range_cf(log, &from[..], &to[..]);
            }
        }
    }
    if !batch.is_empty() {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        db.write_opt(batch, &opts).map_err(rocks)?;
    }
    // Written, not durable: a process crash keeps it (the OS has it), a power cut may not.
    failpoint::crash_point(failpoint::LOG_BEFORE_FSYNC);
    if fsync {
        // Durability: entries and votes are on disk only once this returns Ok. The WAL is one
        // ordered log, so unsynced writes queued earlier (`committed`) are covered too.
        fsyncs.fetch_add(1, Ordering::Relaxed);
        db.flush_wal(true).map_err(rocks)?;
    }
    Ok(())
}

/// The exclusive end of `group`'s entries up to and including `index`.
fn through(group: GroupId, index: u64) -> Vec<u8> {
    match index.checked_add(1) {
        Some(next) => log_key(group, next).to_vec(),
        None => log_end(group).to_vec(),
    }
}
