//! The Raft log store over the node's shared RocksDB (docs/replication.md §3): `raft_log` holds
//! the entries, `raft_state` the vote, `committed` and `last_purged`.
//!
//! Every write goes, in call order, to one `raft-log` thread, which writes whatever is queued in
//! one RocksDB batch and then, if anything queued needs durability, issues one WAL fsync for all
//! of it (group commit). The async side never waits for a blocking thread on the hot path: the
//! recent entries (the *tail*) and the vote are also kept in memory, so `append` returns as soon
//! as its entries are queued and readable, and replication and apply read the tail without
//! touching RocksDB.
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
//! [`TAIL_BYTES`].

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};

use dolmen_engine::{Engine, CF_RAFT_LOG, CF_RAFT_STATE};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec;
use crate::types::{DolmenRaft, Entry, LogId, Vote};

/// `raft_state` key of the vote.
const KEY_VOTE: &[u8] = b"vote";
/// `raft_state` key of the last committed log id (`save_committed`).
const KEY_COMMITTED: &[u8] = b"committed";
/// `raft_state` key of the last purged log id.
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// Sorts after every 8-byte `raft_log` key: the exclusive end of "to the last entry".
const PAST_LAST_KEY: [u8; 9] = [0xff; 9];
/// Encoded bytes the in-memory tail keeps at least (if that many are written): enough for
/// followers that lag by a few seconds of load to be served from memory.
const TAIL_BYTES: usize = 32 << 20;

/// The `raft_log` key of `index`: big-endian, so keys sort by index.
fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

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

/// One change the `raft-log` thread makes, in queue order.
#[derive(Debug)]
enum Write {
    /// Puts an encoded entry at its index.
    Entry(u64, Vec<u8>),
    /// Puts a `raft_state` value.
    State(&'static [u8], Vec<u8>),
    /// Deletes a `raft_state` value.
    ClearState(&'static [u8]),
    /// Deletes every entry from this index on.
    DeleteFrom(u64),
    /// Deletes every entry up to and including this index.
    DeleteThrough(u64),
}

/// What the caller of a queued request is told, and when.
enum Completion {
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
    fn needs_fsync(&self) -> bool {
        matches!(self, Completion::Flushed(_) | Completion::Durable(_))
    }

    fn complete(self, result: &Result<(), String>) {
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
struct Request {
    seq: u64,
    writes: Vec<Write>,
    completion: Completion,
}

/// One entry of the in-memory tail.
struct Cached {
    entry: Entry,
    /// The request that writes it: it may leave the tail once `Memory::written_seq ≥ seq`.
    seq: u64,
    /// Its encoded size.
    bytes: usize,
}

/// The in-memory part of the store, under one lock (never held across an `.await`).
struct Memory {
    /// Latest saved vote (as RocksDB will hold it once the queue is written).
    vote: Option<Vote>,
    /// First index the tail answers for (see the module's tail invariant).
    start: u64,
    /// First index not purged: reads start here even before the purge's delete has run.
    first: u64,
    entries: VecDeque<Cached>,
    bytes: usize,
    /// Sequence number of the next queued request.
    next_seq: u64,
    /// Every request up to this one has been written to RocksDB.
    written_seq: u64,
    /// The latest `committed` not yet handed to the `raft-log` thread. It rides along with the
    /// next queued request instead of waking the thread for itself.
    committed: Option<Write>,
}

impl Memory {
    /// The index after the tail's last entry.
    fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// Forgets every entry from `index` on: the log now ends before `index`.
    fn truncate(&mut self, index: u64) {
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
    fn purge(&mut self, index: u64) {
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
    fn evict(&mut self) {
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

/// The `raft-log` thread: writes every queued request in one batch, then one fsync if any of
/// them needs durability, then completes them in order.
///
/// It holds the database weakly so that dropping the last store and engine closes RocksDB; the
/// thread ends when the last `LogStore` clone (the last sender) is dropped.
fn run_log_writer(
    db: Weak<DB>,
    memory: Weak<Mutex<Memory>>,
    requests: mpsc::Receiver<Request>,
    fsyncs: Arc<AtomicU64>,
) {
    while let Ok(first) = requests.recv() {
        // The pending `committed` is taken before the queue is drained: every entry it covers
        // was queued before it was saved, so it is in this group and written ahead of it.
        let committed = memory.upgrade().and_then(|m| lock(&m).committed.take());
        // Group commit: every request queued so far shares this write and this fsync.
        let mut group = vec![first];
        group.extend(requests.try_iter());
        let result = match db.upgrade() {
            Some(db) => {
                write_group(&db, &group, committed.as_ref(), &fsyncs).map_err(|e| e.to_string())
            }
            None => Err("database closed before the log was written".to_owned()),
        };
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

/// Writes a group of requests, then `committed`, as one unsynced batch, then fsyncs the WAL if
/// one of the requests needs it.
fn write_group(
    db: &DB,
    group: &[Request],
    committed: Option<&Write>,
    fsyncs: &AtomicU64,
) -> io::Result<()> {
    let (log, state) = (cf(db, CF_RAFT_LOG)?, cf(db, CF_RAFT_STATE)?);
    let mut batch = WriteBatch::default();
    for write in group.iter().flat_map(|r| &r.writes).chain(committed) {
        match write {
            Write::Entry(index, value) => batch.put_cf(log, log_key(*index), value),
            Write::State(key, value) => batch.put_cf(state, key, value),
            Write::ClearState(key) => batch.delete_cf(state, key),
            // One range delete: it cannot leave a hole, and later appends are written after it.
            Write::DeleteFrom(index) => {
                batch.delete_range_cf(log, &log_key(*index)[..], &PAST_LAST_KEY[..]);
            }
            Write::DeleteThrough(index) => {
                batch.delete_range_cf(log, log_key(0), log_key(index + 1));
            }
        }
    }
    if !batch.is_empty() {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        db.write_opt(batch, &opts).map_err(rocks)?;
    }
    if group.iter().any(|r| r.completion.needs_fsync()) {
        // Durability: entries and votes are on disk only once this returns Ok. The WAL is one
        // ordered log, so unsynced writes queued earlier (`committed`) are covered too.
        fsyncs.fetch_add(1, Ordering::Relaxed);
        db.flush_wal(true).map_err(rocks)?;
    }
    Ok(())
}

fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    // A panic while holding the lock leaves plain data behind, never a half-made invariant that
    // a later reader could trip on worse than the panic itself.
    memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The RocksDB Raft log store; `Clone` shares the database, the memory and the `raft-log` thread.
///
/// Implements [`RaftLogStorage`] and [`RaftLogReader`] for [`DolmenRaft`]. Requests are queued
/// under the memory lock, so the queue order is the call order and the tail always matches what
/// RocksDB will hold once the queue is written.
#[derive(Clone)]
pub struct LogStore {
    /// The node's database, shared with the engine; this store owns `raft_log` and `raft_state`.
    db: Arc<DB>,
    memory: Arc<Mutex<Memory>>,
    /// Queue of the `raft-log` thread.
    queue: mpsc::Sender<Request>,
    /// WAL fsyncs issued by the `raft-log` thread (entries per fsync is the write throughput).
    fsyncs: Arc<AtomicU64>,
}

impl LogStore {
    /// A log store over `engine`'s database; reads the vote and the log's end, and starts the
    /// `raft-log` thread. Blocking: call it at start-up.
    pub fn new(engine: &Engine) -> io::Result<Self> {
        let db = Arc::clone(engine.db());
        let state = cf(&db, CF_RAFT_STATE)?;
        let vote = db
            .get_cf(state, KEY_VOTE)
            .map_err(rocks)?
            .map(|v| codec::decode_vote(&v))
            .transpose()?;
        let first = db
            .get_cf(state, KEY_LAST_PURGED)
            .map_err(rocks)?
            .map(|v| codec::decode_log_id(&v))
            .transpose()?
            .map_or(0, |id| id.index + 1);
        let last = last_stored_entry(&db)?.map_or(0, |id| id.index + 1);
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
        let (queue, requests) = mpsc::channel();
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (weak_db, weak_memory, counter) = (
            Arc::downgrade(&db),
            Arc::downgrade(&memory),
            Arc::clone(&fsyncs),
        );
        std::thread::Builder::new()
            .name("raft-log".to_owned())
            .spawn(move || run_log_writer(weak_db, weak_memory, requests, counter))?;
        Ok(Self {
            db,
            memory,
            queue,
            fsyncs,
        })
    }

    /// How many WAL fsyncs this store's `raft-log` thread has issued (for metrics and tests).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
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
        self.queue
            .send(Request {
                seq,
                writes,
                completion,
            })
            .map_err(|_| io::Error::other("the raft-log thread has stopped"))
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
    async fn read_state_log_id(&self, key: &'static [u8]) -> io::Result<Option<LogId>> {
        self.flush().await?;
        let db = Arc::clone(&self.db);
        blocking(move || {
            let value = db.get_cf(cf(&db, CF_RAFT_STATE)?, key).map_err(rocks)?;
            value.map(|v| codec::decode_log_id(&v)).transpose()
        })
        .await
    }
}

/// The log id of the last entry in `raft_log`, if any.
fn last_stored_entry(db: &DB) -> io::Result<Option<LogId>> {
    let mut iter = db.iterator_cf(cf(db, CF_RAFT_LOG)?, IteratorMode::End);
    match iter.next() {
        Some(item) => {
            let (key, value) = item.map_err(rocks)?;
            Ok(Some(decode_at(key_index(&key)?, &value)?.log_id))
        }
        None => Ok(None),
    }
}

/// Reads the stored entries in `[start, end)` (`None`: to the last one).
fn read_stored(db: &DB, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let from = log_key(start);
    let iter = db.iterator_cf(
        cf(db, CF_RAFT_LOG)?,
        IteratorMode::From(&from, Direction::Forward),
    );
    for item in iter {
        let (key, value) = item.map_err(rocks)?;
        let index = key_index(&key)?;
        if end.is_some_and(|end| index >= end) {
            break;
        }
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
            let db = Arc::clone(&self.db);
            let older_end = end.map_or(tail_start, |end| end.min(tail_start));
            let mut entries = blocking(move || read_stored(&db, start, Some(older_end))).await?;
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

/// The index a `raft_log` key names.
fn key_index(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt raft_log key of {} bytes", key.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
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
        let last_purged_log_id = self.read_state_log_id(KEY_LAST_PURGED).await?;
        let tail_last = lock(&self.memory).entries.back().map(|c| c.entry.log_id);
        let last = match tail_last {
            Some(last) => Some(last),
            None => {
                // The queue was written by `read_state_log_id`: RocksDB holds the whole log.
                let db = Arc::clone(&self.db);
                blocking(move || last_stored_entry(&db)).await?
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
        let writes = vec![Write::State(KEY_VOTE, codec::encode_vote(vote))];
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
            Some(id) => Write::State(KEY_COMMITTED, codec::encode_log_id(&id)),
            None => Write::ClearState(KEY_COMMITTED),
        };
        // Not queued by itself: it waits for the next request (at the latest `flush`), so a
        // commit costs the `raft-log` thread no wake-up. A crash may lose it; openraft then
        // learns the commit again from the leader.
        lock(&self.memory).committed = Some(write);
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.read_state_log_id(KEY_COMMITTED).await
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
            Write::State(KEY_LAST_PURGED, codec::encode_log_id(&log_id)),
            Write::DeleteThrough(log_id.index),
        ];
        self.enqueue(writes, Completion::None, |memory, _| {
            memory.purge(log_id.index);
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use dolmen_engine::{Command, EngineOptions};
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::types::{EntryPayload, Membership, NodeAddr};

    fn open(dir: &tempfile::TempDir) -> (Arc<Engine>, LogStore) {
        let engine = Arc::new(
            Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap(),
        );
        let store = LogStore::new(&engine).unwrap();
        (engine, store)
    }

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id },
            index,
        }
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Appends and waits for the flush callback, as openraft does before reporting durability.
    async fn append_flushed(store: &mut LogStore, entries: Vec<Entry>) {
        let (tx, rx) = DolmenRaft::oneshot();
        store.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        let entries = store.try_get_log_entries(..).await.unwrap();
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn log_store_appends_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut store) = open(&dir);
        assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
        append_flushed(&mut store, (1..=5).map(|i| blank(1, i)).collect()).await;

        let got = store.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(got, vec![blank(1, 2), blank(1, 3)]);
        let got = store.try_get_log_entries(4..=9).await.unwrap();
        assert_eq!(got, vec![blank(1, 4), blank(1, 5)]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        assert_eq!(state.last_purged_log_id, None);
    }

    #[tokio::test]
    async fn log_store_round_trips_every_payload_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut store) = open(&dir);
        let nodes: BTreeMap<u64, NodeAddr> = [
            (1, NodeAddr::default()),
            (
                2,
                NodeAddr {
                    client_addr: "127.0.0.1:9090".into(),
                    peer_addr: "127.0.0.1:7090".into(),
                    admin_addr: String::new(),
                },
            ),
        ]
        .into();
        let membership =
            Membership::new(vec![BTreeSet::from([1]), BTreeSet::from([1, 2])], nodes).unwrap();
        let entries = vec![
            Entry {
                log_id: log_id(2, 3, 0),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: log_id(2, 3, 1),
                payload: EntryPayload::Normal(Command::Compact { horizon: 7 }),
            },
            blank(2, 2),
        ];
        append_flushed(&mut store, entries.clone()).await;
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), entries);
    }

    #[tokio::test]
    async fn log_store_truncate_after_removes_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut store) = open(&dir);
        append_flushed(&mut store, (1..=5).map(|i| blank(1, i)).collect()).await;

        store.truncate_after(Some(log_id(1, 1, 3))).await.unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3]);
        // A new leader's entries replace the truncated ones.
        append_flushed(&mut store, vec![blank(2, 4)]).await;
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));

        store.truncate_after(None).await.unwrap();
        assert_eq!(indexes(&mut store).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn log_store_purge_keeps_the_last_purged_id() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut store) = open(&dir);
        append_flushed(&mut store, (1..=5).map(|i| blank(1, i)).collect()).await;

        store.purge(log_id(1, 1, 2)).await.unwrap();
        assert_eq!(indexes(&mut store).await, vec![3, 4, 5]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));

        // Purging everything leaves last_log_id = last_purged.
        store.purge(log_id(1, 1, 5)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        assert_eq!(indexes(&mut store).await, Vec::<u64>::new());
    }

    #[tokio::test]
    async fn log_store_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_engine, mut store) = open(&dir);
            assert_eq!(store.read_vote().await.unwrap(), None);
            assert_eq!(store.read_committed().await.unwrap(), None);
            append_flushed(&mut store, (1..=4).map(|i| blank(3, i)).collect()).await;
            let vote = Vote {
                leader_id: LeaderId {
                    term: 3,
                    node_id: 1,
                },
                committed: true,
            };
            store.save_vote(&vote).await.unwrap();
            store.purge(log_id(3, 1, 1)).await.unwrap();
            // The last request before the close: `flush` carries it to RocksDB.
            store.save_committed(Some(log_id(3, 1, 3))).await.unwrap();
            store.flush().await.unwrap();
        }
        // The engine and every store clone are dropped: RocksDB is closed and reopened.
        let (_engine, mut store) = open(&dir);
        let vote = store.read_vote().await.unwrap().unwrap();
        assert_eq!((vote.leader_id.term, vote.committed), (3, true));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3, 1, 3)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 1, 1)));
        assert_eq!(state.last_log_id, Some(log_id(3, 1, 4)));
        assert_eq!(indexes(&mut store).await, vec![2, 3, 4]);
    }

    /// Appends entries 1 to 3, then overwrites entry `index` with garbage behind the store.
    async fn corrupt_after_writing(dir: &tempfile::TempDir, index: u64) {
        let (engine, mut store) = open(dir);
        append_flushed(&mut store, (1..=3).map(|i| blank(1, i)).collect()).await;
        let db = engine.db();
        db.put_cf(
            db.cf_handle(CF_RAFT_LOG).unwrap(),
            log_key(index),
            b"\x01junk",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn log_store_corrupt_value_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        corrupt_after_writing(&dir, 2).await;
        // Entries older than the tail are read from RocksDB, and decoded there.
        let (_engine, mut store) = open(&dir);
        let err = store.try_get_log_entries(..).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn log_store_corrupt_last_entry_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        corrupt_after_writing(&dir, 3).await;
        let engine = Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap();
        let err = LogStore::new(&engine)
            .err()
            .expect("a corrupt last entry must fail the open");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn log_store_group_commit_shares_one_fsync() {
        // Requests queued before the raft-log loop looks are all completed by one fsync.
        let dir = tempfile::tempdir().unwrap();
        let (engine, _store) = open(&dir);
        let (tx, requests) = mpsc::channel();
        let mut waiters = Vec::new();
        for seq in 1..=200 {
            let (done, waiter) = tokio::sync::oneshot::channel();
            let writes = vec![Write::State(KEY_COMMITTED, vec![0])];
            let completion = Completion::Durable(done);
            tx.send(Request {
                seq,
                writes,
                completion,
            })
            .unwrap();
            waiters.push(waiter);
        }
        drop(tx);
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (db, counter) = (Arc::downgrade(engine.db()), Arc::clone(&fsyncs));
        std::thread::spawn(move || run_log_writer(db, Weak::new(), requests, counter))
            .join()
            .unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(fsyncs.load(Ordering::Relaxed), 1);
    }

    /// An entry of about `bytes` encoded bytes (one set of a value that large).
    fn big(term: u64, index: u64, bytes: usize) -> Entry {
        let tx = dolmen_engine::Transaction {
            read_version: None,
            mutations: vec![dolmen_engine::Mutation::Set {
                cf: "default".into(),
                key: index.to_be_bytes().to_vec(),
                value: vec![7; bytes],
            }],
            read_conflicts: Vec::new(),
            idempotency: None,
        };
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(Command::Commit(tx)),
        }
    }

    #[tokio::test]
    async fn log_store_reads_span_rocksdb_and_the_tail() {
        // Enough bytes that the oldest entries leave the tail once written: a read across the
        // boundary is served from both RocksDB and memory, and a reopened store reads it all.
        let dir = tempfile::tempdir().unwrap();
        let written: Vec<Entry> = (1..=40).map(|i| big(1, i, TAIL_BYTES / 16)).collect();
        let mut expected = {
            let (_engine, mut store) = open(&dir);
            for chunk in written.chunks(8) {
                append_flushed(&mut store, chunk.to_vec()).await;
            }
            let start = lock(&store.memory).start;
            assert!(start > 4, "the tail kept everything (starts at {start})");
            assert_eq!(store.try_get_log_entries(..).await.unwrap(), written);
            let at = usize::try_from(start).unwrap();
            let got = store
                .try_get_log_entries(start - 2..start + 2)
                .await
                .unwrap();
            assert_eq!(got, written[at - 3..at + 1].to_vec());

            // Truncating below the tail's start: the removed entries are gone at once, before
            // the raft-log thread has deleted them from RocksDB.
            store
                .truncate_after(Some(log_id(1, 1, start - 3)))
                .await
                .unwrap();
            let mut expected = written[..at - 3].to_vec();
            assert_eq!(store.try_get_log_entries(..).await.unwrap(), expected);
            expected.push(blank(2, start - 2));
            append_flushed(&mut store, vec![blank(2, start - 2)]).await;
            assert_eq!(store.try_get_log_entries(..).await.unwrap(), expected);
            expected
        };
        let (_engine, mut store) = open(&dir);
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), expected);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, expected.pop().map(|e| e.log_id));
    }

    #[tokio::test]
    async fn log_store_queued_flushes_all_complete() {
        // Appends queued back to back without waiting: each callback fires after an fsync that
        // covers it, and the fsyncs are shared.
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut store) = open(&dir);
        let mut flushed = Vec::new();
        for i in 1..=50u64 {
            let (tx, rx) = DolmenRaft::oneshot();
            store
                .append(vec![blank(1, i)], IOFlushed::signal(tx))
                .await
                .unwrap();
            flushed.push(rx);
        }
        // Readable before flushed, as the trait requires.
        assert_eq!(indexes(&mut store).await, (1..=50).collect::<Vec<_>>());
        for rx in flushed {
            rx.await.unwrap().unwrap();
        }
        let fsyncs = store.fsync_count();
        assert!((1..=50).contains(&fsyncs), "{fsyncs} fsyncs for 50 appends");
    }
}
