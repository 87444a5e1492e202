//! The Raft log store over the node's shared RocksDB (docs/replication.md §3): `raft_log` holds
//! the entries, `raft_state` the vote, `committed` and `last_purged`, each key prefixed by the
//! store's group (`keys.rs`; docs/sharding.md §7), so several groups can share the column
//! families. Opening a store first checks the node's layout and migrates a layout-1 log
//! (`layout.rs`).
//!
//! Every write goes, in call order, to the node's one `raft-log` thread ([`LogWriter`], shared by
//! every group's store on the node), which writes whatever is queued, for all the groups, in one
//! RocksDB batch and then, if anything queued needs durability, issues one WAL fsync for all of
//! it (group commit, within and across groups; `writer.rs`). The async side never waits for a
//! blocking thread on the hot path: the recent entries (the *tail*) and the vote are also kept
//! in memory, so `append` returns as soon as its entries are queued and readable, and
//! replication and apply read the tail without touching RocksDB.
//!
//! ```text
//! append(entries, cb) ─▶ tail += entries ─▶ queue ─▶ returns (entries readable from the tail)
//!                                            └─ raft-log: take ALL queued ─▶ one write batch
//!                                                  ─▶ flush_wal(true) ─▶ cb, waiters ─▶ evict tail
//! save_vote(v) ─▶ vote = v ─▶ queue ─▶ await the fsync
//! read(range)  ─▶ tail part (memory) + older part (RocksDB, blocking thread)
//! ```
//!
//! Tail invariant: every index `≥ tail.start` is answered by the tail alone (absent = not in the
//! log), and every entry below `tail.start` has been written to RocksDB. An entry leaves the tail
//! only once the batch that wrote it has been written, and only while the tail holds more than
//! `TAIL_BYTES` (`tail.rs`).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use dolmen_engine::{Engine, CF_RAFT_LOG, CF_RAFT_STATE};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, DB};

use crate::codec;
use crate::types::{DolmenRaft, Entry, LogId, Vote};

mod keys;
pub mod layout;
mod tail;
mod writer;

pub use keys::GroupId;
pub(crate) use keys::{log_end, log_key, state_key, COMMITTED, LAST_PURGED, VOTE};
pub use layout::LayoutError;
#[cfg(test)]
use tail::TAIL_BYTES;
use tail::{lock, Cached, Memory};
use writer::{Completion, Member, Request, Write};
pub use writer::{LogFsync, LogWriter};

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io::Error::other(format!("column family {name} is missing")))
}

fn rocks(e: rocksdb::Error) -> io::Error {
    io::Error::other(e)
}

/// Runs blocking RocksDB reads off the async threads (STYLE 10).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("log store task failed: {e}")))?
}

/// The RocksDB Raft log store of one group; `Clone` shares the database, the memory and the
/// `raft-log` thread (which the stores of other groups opened on the same [`LogWriter`] share
/// too). It reads and writes only its group's keys.
///
/// Implements [`RaftLogStorage`] and [`RaftLogReader`] for [`DolmenRaft`]. Requests are queued
/// under the memory lock, so the queue order is the call order and the tail always matches what
/// RocksDB will hold once the queue is written.
#[derive(Clone)]
pub struct LogStore {
    /// The node's database, shared with the engine; this store owns its group's keys in
    /// `raft_log` and `raft_state`.
    db: Arc<DB>,
    /// The group whose log this is: the prefix of every key it touches.
    group: GroupId,
    memory: Arc<Mutex<Memory>>,
    /// The `raft-log` thread's queue, shared with the node's other groups.
    writer: LogWriter,
    /// This store as the `raft-log` thread knows it: its group, its memory (weakly) and the
    /// fsyncs that covered its requests (entries per fsync is the write throughput).
    member: Arc<Member>,
}

impl LogStore {
    /// The log store of `group` over `engine`'s database, fsyncing before every
    /// acknowledgement ([`LogFsync::BeforeAck`]): [`Self::open`].
    pub fn new(engine: &Engine, group: GroupId) -> io::Result<Self> {
        Self::open(engine, group, LogFsync::BeforeAck)
    }

    /// The log store of `group` over `engine`'s database, with the `raft-log` thread's fsync
    /// `policy` (a planted bug for the fault-injection suite's self-test when not
    /// [`LogFsync::BeforeAck`]). First checks the node's storage layout and migrates a layout-1
    /// log to group 0's keys ([`layout::prepare`]), then reads the group's vote and the log's
    /// end, and starts a `raft-log` thread of its own. Blocking: call it at start-up. A node
    /// running several groups opens them all on one writer instead ([`Self::open_with`]).
    ///
    /// # Errors
    /// A layout newer than this build's ([`LayoutError`], kind `Unsupported`), corrupt stored
    /// values (`InvalidData`), or RocksDB failures.
    pub fn open(engine: &Engine, group: GroupId, policy: LogFsync) -> io::Result<Self> {
        Self::open_with(engine, group, &LogWriter::start(engine, policy)?)
    }

    /// The log store of `group` over `engine`'s database, written by `writer`'s `raft-log`
    /// thread, which the node's other groups share: one batch and one fsync cover every
    /// group's queued requests. As [`Self::open`] otherwise (the fsync policy is the writer's).
    ///
    /// # Errors
    /// As [`Self::open`], and `InvalidInput` when `writer` writes another database than
    /// `engine`'s.
    pub fn open_with(engine: &Engine, group: GroupId, writer: &LogWriter) -> io::Result<Self> {
        let db = Arc::clone(engine.db());
        if !writer.writes(&db) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the log store of group {group} was opened on the raft-log writer of \
                     another database: start the writer over this engine (LogWriter::start)"
                ),
            ));
        }
        layout::prepare(&db)?;
        let state = cf(&db, CF_RAFT_STATE)?;
        let vote = db
            .get_cf(state, state_key(group, VOTE))
            .map_err(rocks)?
            .map(|v| codec::decode_vote(&v))
            .transpose()?;
        let first = db
            .get_cf(state, state_key(group, LAST_PURGED))
            .map_err(rocks)?
            .map(|v| codec::decode_log_id(&v))
            .transpose()?
            .map_or(0, |id| id.index + 1);
        let last = last_stored_entry(&db, group)?.map_or(0, |id| id.index + 1);
        let memory = Arc::new(Mutex::new(Memory {
            vote,
            first,
            start: last.max(first),
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            written_seq: 0,
            committed: None,
        }));
        let member = Arc::new(Member::new(group, Arc::downgrade(&memory)));
        writer.register(Arc::clone(&member));
        Ok(Self {
            db,
            group,
            memory,
            writer: writer.clone(),
            member,
        })
    }

    /// How many WAL fsyncs of the `raft-log` thread covered a request of this store that
    /// needed one (for metrics and tests). One fsync shared by several groups counts once in
    /// each; the writer's own count ([`LogWriter::fsync_count`]) counts it once.
    pub fn fsync_count(&self) -> u64 {
        self.member.fsyncs.load(Ordering::Relaxed)
    }

    /// The group whose log this is.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Queues `writes` under the memory lock, after `update` has changed the memory to match.
    fn enqueue(
        &self,
        writes: Vec<Write>,
        completion: Completion,
        update: impl FnOnce(&mut Memory, u64),
    ) -> io::Result<()> {
        let mut memory = lock(&self.memory);
        let seq = memory.next_seq;
        memory.next_seq += 1;
        update(&mut memory, seq);
        self.writer.send(Request {
            member: Arc::clone(&self.member),
            seq,
            writes,
            completion,
        })
    }

    /// Queues `writes` and waits until the `raft-log` thread has written them (and, if
    /// `durable`, fsynced them), with every request queued before.
    async fn enqueue_and_wait(&self, writes: Vec<Write>, durable: bool) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let completion = if durable {
            Completion::Durable(tx)
        } else {
            Completion::Written(tx)
        };
        self.enqueue(writes, completion, |_, _| {})?;
        rx.await
            .map_err(|_| io::Error::other("the raft-log thread dropped a request"))?
    }

    /// Waits until everything queued so far is written to RocksDB (not fsynced: what is
    /// unsynced by design, `committed`, truncations and purges, stays so). Call it before the
    /// engine closes, so that no queued write is dropped.
    pub async fn flush(&self) -> io::Result<()> {
        self.enqueue_and_wait(Vec::new(), false).await
    }

    /// Waits until the entry at `index`, as the log holds it now, has been written to RocksDB
    /// by the `raft-log` thread (not necessarily fsynced). The state machine calls it before it
    /// applies up to `index`, so its own write follows the entry's in RocksDB's WAL: no crash,
    /// of the process or of the machine, can leave the state machine ahead of the log (a node
    /// that applied a new leader's entry while its log still held the divergent suffix that
    /// entry replaces could not restart: its applied log id would be newer than its last one).
    /// Free when the entry is written already, as it nearly always is by the time it commits.
    ///
    /// # Errors
    /// When the `raft-log` thread has stopped.
    pub async fn wait_written(&self, index: u64) -> io::Result<()> {
        let written = {
            let memory = lock(&self.memory);
            // Below the tail's start every entry is written (the tail invariant).
            index < memory.start
                || usize::try_from(index - memory.start)
                    .ok()
                    .and_then(|i| memory.entries.get(i))
                    .is_some_and(|cached| cached.seq <= memory.written_seq)
        };
        if written {
            return Ok(());
        }
        // Written once every request queued so far is: the append that holds it is one of them.
        self.flush().await
    }

    /// The first unpurged index, the tail's start, and the tail's entries in `[start, end)`
    /// (`end` `None`: to the last one).
    fn tail_part(&self, start: u64, end: Option<u64>) -> (u64, u64, Vec<Entry>) {
        let memory = lock(&self.memory);
        let from = start.max(memory.start);
        let to = end.map_or(memory.end(), |end| end.min(memory.end()));
        let skip = usize::try_from(from - memory.start).unwrap_or(usize::MAX);
        let take = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        let entries = memory
            .entries
            .iter()
            .skip(skip)
            .take(take)
            .map(|c| c.entry.clone())
            .collect();
        (memory.first, memory.start, entries)
    }

    /// Reads one `raft_state` log id (`committed` or `last_purged`), after the queue is written.
    async fn read_state_log_id(&self, name: &'static [u8]) -> io::Result<Option<LogId>> {
        self.flush().await?;
        let (db, key) = (Arc::clone(&self.db), state_key(self.group, name));
        blocking(move || {
            let value = db.get_cf(cf(&db, CF_RAFT_STATE)?, key).map_err(rocks)?;
            value.map(|v| codec::decode_log_id(&v)).transpose()
        })
        .await
    }
}

/// Read options bounding an iterator to `group`'s `raft_log` keys in `[start, end)` (`end`
/// `None`: to the group's last entry): it never sees another group's key.
fn group_bounds(group: GroupId, start: u64, end: Option<u64>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(log_key(group, start));
    match end {
        Some(end) => opts.set_iterate_upper_bound(log_key(group, end)),
        None => opts.set_iterate_upper_bound(log_end(group)),
    }
    opts
}

/// The log id of the last entry of `group` in `raft_log`, if any.
fn last_stored_entry(db: &DB, group: GroupId) -> io::Result<Option<LogId>> {
    let opts = group_bounds(group, 0, None);
    let mut iter = db.iterator_cf_opt(cf(db, CF_RAFT_LOG)?, opts, IteratorMode::End);
    match iter.next() {
        Some(item) => {
            let (key, value) = item.map_err(rocks)?;
            Ok(Some(
                decode_at(keys::key_index(group, &key)?, &value)?.log_id,
            ))
        }
        None => Ok(None),
    }
}

/// Reads `group`'s stored entries in `[start, end)` (`None`: to the last one).
fn read_stored(db: &DB, group: GroupId, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let opts = group_bounds(group, start, end);
    for item in db.iterator_cf_opt(cf(db, CF_RAFT_LOG)?, opts, IteratorMode::Start) {
        let (key, value) = item.map_err(rocks)?;
        let index = keys::key_index(group, &key)?;
        entries.push(decode_at(index, &value)?);
    }
    Ok(entries)
}

impl RaftLogReader<DolmenRaft> for LogStore {
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> io::Result<Vec<Entry>>
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Exclusive end; `None` means "to the last entry".
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        // A truncation below the tail's start that the raft-log thread runs between the two
        // reads below could leave a gap where they meet; openraft never reads entries a node is
        // truncating, but a gap is retried rather than returned.
        for _ in 0..3 {
            let (first, tail_start, tail) = self.tail_part(start, end);
            // Purged entries are gone at once, before the raft-log thread deletes them.
            let start = start.max(first);
            if start >= tail_start {
                return Ok(tail);
            }
            // Everything below the tail's start at that look was already in RocksDB.
            let (db, group) = (Arc::clone(&self.db), self.group);
            let older_end = end.map_or(tail_start, |end| end.min(tail_start));
            let mut entries =
                blocking(move || read_stored(&db, group, start, Some(older_end))).await?;
            let joined = match (entries.last(), tail.first()) {
                (Some(older), Some(newer)) => older.log_id.index + 1 == newer.log_id.index,
                _ => true,
            };
            if joined {
                entries.extend(tail);
                return Ok(entries);
            }
        }
        Err(io::Error::other(format!(
            "reading raft log entries {range:?} raced with truncations three times"
        )))
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(lock(&self.memory).vote)
    }
}

/// Decodes the entry stored at `index`; its own log id must name the same index.
fn decode_at(index: u64, value: &[u8]) -> io::Result<Entry> {
    let entry = codec::decode_entry(value)?;
    if entry.log_id.index != index {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt raft_log: key {index} holds entry {}",
                entry.log_id.index
            ),
        ));
    }
    Ok(entry)
}

impl RaftLogStorage<DolmenRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<DolmenRaft>> {
        let last_purged_log_id = self.read_state_log_id(LAST_PURGED).await?;
        let tail_last = lock(&self.memory).entries.back().map(|c| c.entry.log_id);
        let last = match tail_last {
            Some(last) => Some(last),
            None => {
                // The queue was written by `read_state_log_id`: RocksDB holds the whole log.
                let (db, group) = (Arc::clone(&self.db), self.group);
                blocking(move || last_stored_entry(&db, group)).await?
            }
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writes = vec![Write::State(VOTE, codec::encode_vote(vote))];
        self.enqueue(writes, Completion::Durable(tx), |memory, _| {
            memory.vote = Some(*vote);
        })?;
        // Durability: the vote must be persisted on disk before returning.
        rx.await
            .map_err(|_| io::Error::other("the raft-log thread dropped a vote fsync"))?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Unsynced by design: the WAL is one ordered log, so after a crash `committed` can never
        // be ahead of the entries it covers (replication.md invariant 4).
        let write = match committed {
            Some(id) => Write::State(COMMITTED, codec::encode_log_id(&id)),
            None => Write::ClearState(COMMITTED),
        };
        // Not queued by itself: it waits for the next request (at the latest `flush`), so a
        // commit costs the `raft-log` thread no wake-up. A crash may lose it; openraft then
        // learns the commit again from the leader.
        lock(&self.memory).committed = Some(write);
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.read_state_log_id(COMMITTED).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<DolmenRaft>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut cached = Vec::new();
        let mut writes = Vec::new();
        for entry in entries {
            let value = codec::encode_entry(&entry)?;
            let bytes = value.len();
            writes.push(Write::Entry(entry.log_id.index, value));
            cached.push((entry, bytes));
        }
        // The entries are readable from the tail once this returns, as the trait requires.
        // Durability: the callback reports them flushed only after the raft-log thread's fsync
        // of the batch that writes them.
        self.enqueue(writes, Completion::Flushed(callback), |memory, seq| {
            for (entry, bytes) in cached {
                let index = entry.log_id.index;
                if index < memory.start {
                    // Below the tail: the log ends before `index` now (this request's puts
                    // overwrite RocksDB from here on).
                    memory.truncate(index);
                } else if index > memory.end() {
                    // Past a gap, which openraft leaves only after a snapshot install made
                    // everything before it purged: the tail restarts here.
                    memory.purge(index - 1);
                } else if index < memory.end() {
                    // Overwrites a suffix, as a put at these keys would.
                    memory.truncate(index);
                }
                memory.entries.push_back(Cached { entry, seq, bytes });
                memory.bytes += bytes;
            }
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.enqueue(
            vec![Write::DeleteFrom(from)],
            Completion::None,
            |memory, _| {
                memory.truncate(from);
            },
        )
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // `last_purged` and the delete share one batch, so `get_log_state` never sees a purged
        // prefix without its marker.
        let writes = vec![
            Write::State(LAST_PURGED, codec::encode_log_id(&log_id)),
            Write::DeleteThrough(log_id.index),
        ];
        self.enqueue(writes, Completion::None, |memory, _| {
            memory.purge(log_id.index);
        })
    }
}

#[cfg(test)]
mod tests;
