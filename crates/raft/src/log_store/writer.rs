//! The `raft-log` thread of a node: every write of every log store opened on one [`LogWriter`]
//! goes, in each store's call order, through its one queue; it writes whatever is queued, for
//! all the groups, in one RocksDB batch, then issues one WAL fsync for all of it if any request
//! needs durability (group commit across groups), then completes the requests in queue order.
//!
//! ```text
//!  group 0 store ─┐
//!  group 1 store ─┼─▶ one queue ─▶ raft-log: take every store's pending `committed`
//!  group g store ─┘     ─▶ drain ALL queued ─▶ one batch (the requests, then the committeds)
//!                       ─▶ flush_wal(true) once ─▶ each group: written_seq, evict
//!                       ─▶ callbacks and waiters, in queue order
//! ```

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dolmen_engine::{failpoint, Engine, CF_RAFT_LOG, CF_RAFT_STATE};
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
    /// Before any append or vote in the batch is acknowledged: the only correct mode.
    #[default]
    BeforeAck,
    /// A planted bug for the fault-injection suite's self-test (`[faults]
    /// unsafe_skip_log_fsync`): batches are acknowledged at once and fsynced at most every
    /// five seconds, so a power cut (`[faults] lose_unsynced_writes`) loses acknowledged writes.
    UnsafeLazy,
}

/// Why the `raft-log` thread could not write a batch of requests; every request of the batch,
/// of every group, is told (it is `Clone` for that).
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum LogWriteError {
    /// RocksDB failed to write the batch or to fsync the WAL.
    #[error(transparent)]
    Write(Arc<io::Error>),
    /// The engine and every store were dropped before the queue was written.
    #[error("database closed before the log was written")]
    Closed,
}

/// One change the `raft-log` thread makes, in queue order, at its store's group's keys.
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

/// One log store as the `raft-log` thread sees it: the group whose keys its writes go to, its
/// memory (held weakly, so a dropped store is forgotten), and its fsync counter.
pub(super) struct Member {
    /// The prefix of every key its writes touch.
    pub(super) group: GroupId,
    /// Its pending `committed`, `written_seq` and tail; gone once every clone of the store is.
    pub(super) memory: Weak<Mutex<Memory>>,
    /// Fsyncs that covered at least one of its requests needing one.
    pub(super) fsyncs: AtomicU64,
}

impl Member {
    pub(super) fn new(group: GroupId, memory: Weak<Mutex<Memory>>) -> Self {
        Self {
            group,
            memory,
            fsyncs: AtomicU64::new(0),
        }
    }
}

/// A queued request: its store, its sequence number (that store's tail eviction clock), its
/// writes, its caller.
pub(super) struct Request {
    pub(super) member: Arc<Member>,
    pub(super) seq: u64,
    pub(super) writes: Vec<Write>,
    pub(super) completion: Completion,
}

/// The stores registered with one writer: the thread takes each one's pending `committed`
/// before every drain.
type Members = Mutex<Vec<Arc<Member>>>;

/// A node's `raft-log` writer: one thread that writes the log of every group whose store was
/// opened on it ([`super::LogStore::open_with`]), over one database. `Clone` shares the thread;
/// the thread ends once the last clone, the stores' included, is dropped. It holds the database
/// weakly, so dropping the last store and engine closes RocksDB.
#[derive(Clone)]
pub struct LogWriter {
    /// The database it writes: a store over another one is refused.
    db: Weak<DB>,
    /// The thread's queue; the last sender dropped ends it.
    queue: mpsc::Sender<Request>,
    /// The stores opened on it.
    members: Arc<Members>,
    /// WAL fsyncs the thread issued, for all its stores.
    fsyncs: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("fsyncs", &self.fsync_count())
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts the `raft-log` thread over `engine`'s database, fsyncing by `policy` (a planted
    /// bug when not [`LogFsync::BeforeAck`]). Every group handle of one database
    /// (`Engine::open_group`) shares the database, so one writer serves them all.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(engine: &Engine, policy: LogFsync) -> io::Result<Self> {
        let (writer, thread) = Self::unstarted(engine.db(), policy);
        std::thread::Builder::new()
            .name("raft-log".to_owned())
            .spawn(move || thread.run())?;
        Ok(writer)
    }

    /// A writer whose thread the caller runs ([`WriterThread::run`]): tests queue requests
    /// from several stores before it looks.
    pub(super) fn unstarted(db: &Arc<DB>, policy: LogFsync) -> (Self, WriterThread) {
        let (queue, requests) = mpsc::channel();
        let writer = Self {
            db: Arc::downgrade(db),
            queue,
            members: Arc::default(),
            fsyncs: Arc::default(),
        };
        let thread = WriterThread {
            db: writer.db.clone(),
            members: Arc::clone(&writer.members),
            requests,
            fsyncs: Arc::clone(&writer.fsyncs),
            policy,
        };
        (writer, thread)
    }

    /// How many WAL fsyncs the thread has issued, for all its groups (for metrics and tests).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Whether this writer writes `db`.
    pub(super) fn writes(&self, db: &Arc<DB>) -> bool {
        std::ptr::eq(self.db.as_ptr(), Arc::as_ptr(db))
    }

    /// Registers a store; its pending `committed` rides with every drain from now on.
    pub(super) fn register(&self, member: Arc<Member>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        // Stores whose every clone is gone are forgotten here and at each drain.
        members.retain(|m| m.memory.strong_count() > 0);
        members.push(member);
    }

    /// Queues `request` for the thread.
    pub(super) fn send(&self, request: Request) -> io::Result<()> {
        self.queue
            .send(request)
            .map_err(|_| io::Error::other("the raft-log thread has stopped"))
    }

    /// The stores registered (for tests: the thread holds the list until it ends).
    #[cfg(test)]
    pub(super) fn members(&self) -> Weak<Members> {
        Arc::downgrade(&self.members)
    }
}

/// The `raft-log` thread's side of a [`LogWriter`].
pub(super) struct WriterThread {
    db: Weak<DB>,
    members: Arc<Members>,
    requests: mpsc::Receiver<Request>,
    fsyncs: Arc<AtomicU64>,
    policy: LogFsync,
}

impl WriterThread {
    /// Runs the thread until the last [`LogWriter`] clone is dropped.
    pub(super) fn run(self) {
        run_log_writer(
            &self.db,
            &self.members,
            &self.requests,
            &self.fsyncs,
            self.policy,
        );
    }
}

/// The `raft-log` thread of a node: writes every queued request of every group opened on it in
/// one batch, then one fsync if any of them needs durability, then completes them in queue
/// order (which is each group's call order). One thread per node: the groups share its batch
/// and its fsync (docs/sharding.md §7).
///
/// It holds the database weakly so that dropping the last store and engine closes RocksDB; it
/// ends when the last sender ([`LogWriter`] clone, each store holds one) is dropped.
fn run_log_writer(
    db: &Weak<DB>,
    members: &Members,
    requests: &mpsc::Receiver<Request>,
    fsyncs: &AtomicU64,
    policy: LogFsync,
) {
    let mut last_fsync = Instant::now();
    while let Ok(first) = requests.recv() {
        // Every store's pending `committed` is taken before the queue is drained: every entry
        // it covers was queued, by its store, before it was saved, so it is in this batch (or
        // an earlier one) and written ahead of it (each `committed` goes after every request).
        let committed = take_committed(members);
        // Group commit: every request queued so far, of every group, shares this write and
        // this fsync.
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let wanted = batch.iter().any(|r| r.completion.needs_fsync());
        let fsync = match policy {
            LogFsync::BeforeAck => wanted,
            // The planted bug: the batch is acknowledged below whether or not this fsyncs.
            LogFsync::UnsafeLazy => wanted && last_fsync.elapsed() >= UNSAFE_LAZY_FSYNC,
        };
        let involved = involved(&batch);
        let result = match db.upgrade() {
            Some(db) => write_batch(&db, &batch, &committed, fsync, || {
                fsyncs.fetch_add(1, Ordering::Relaxed);
                for store in involved.iter().filter(|s| s.wants_fsync) {
                    store.member.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| LogWriteError::Write(Arc::new(e))),
            None => Err(LogWriteError::Closed),
        };
        if fsync {
            last_fsync = Instant::now();
        }
        // Durable (when the batch needed it); no caller has been told yet.
        failpoint::crash_point(failpoint::LOG_BEFORE_ACK);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        if result.is_ok() {
            for store in &involved {
                if let Some(memory) = store.member.memory.upgrade() {
                    let mut memory = lock(&memory);
                    memory.written_seq = store.last_seq;
                    memory.evict();
                }
            }
        }
        // FIFO, so each group's in its call order; openraft keeps only the highest completed
        // IOId anyway. A failure is told to every request of the batch, of every group.
        for request in batch {
            request.completion.complete(&result);
        }
    }
}

/// Takes the pending `committed` of every registered store still open, forgetting the others.
fn take_committed(members: &Members) -> Vec<(Arc<Member>, Write)> {
    let registered = {
        let mut members = members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|m| m.memory.strong_count() > 0);
        members.clone()
    };
    registered
        .into_iter()
        .filter_map(|member| {
            let memory = member.memory.upgrade()?;
            let committed = lock(&memory).committed.take()?;
            Some((member, committed))
        })
        .collect()
}

/// One store with requests in a batch.
struct Involved<'a> {
    member: &'a Arc<Member>,
    /// Its last request in the batch: every one up to it is written once the batch is.
    last_seq: u64,
    /// Whether one of its requests needs the fsync (its fsync counter counts it).
    wants_fsync: bool,
}

/// The stores with requests in `batch`, each with its last sequence number.
fn involved(batch: &[Request]) -> Vec<Involved<'_>> {
    let mut stores: Vec<Involved<'_>> = Vec::new();
    for request in batch {
        let wants = request.completion.needs_fsync();
        match stores
            .iter_mut()
            .find(|s| Arc::ptr_eq(s.member, &request.member))
        {
            Some(store) => {
                store.last_seq = request.seq;
                store.wants_fsync |= wants;
            }
            None => stores.push(Involved {
                member: &request.member,
                last_seq: request.seq,
                wants_fsync: wants,
            }),
        }
    }
    stores
}

/// Writes a batch of requests of any groups, each at its store's group's keys and in queue
/// order, then every store's `committed`, as one unsynced RocksDB batch; then fsyncs the WAL if
/// `fsync` (a request needs it, under [`LogFsync::BeforeAck`]), calling `count` just before.
fn write_batch(
    db: &DB,
    batch: &[Request],
    committed: &[(Arc<Member>, Write)],
    fsync: bool,
    count: impl FnOnce(),
) -> io::Result<()> {
    let (log, state) = (cf(db, CF_RAFT_LOG)?, cf(db, CF_RAFT_STATE)?);
    let mut rocks_batch = WriteBatch::default();
    let writes = || {
        batch
            .iter()
            .flat_map(|r| r.writes.iter().map(|w| (r.member.group, w)))
    };
    // Crash points of the steps a batch may hold, before anything of it is written.
    if writes().any(|(_, w)| matches!(w, Write::State(name, _) if *name == VOTE)) {
        failpoint::crash_point(failpoint::LOG_SAVE_VOTE);
    }
    if writes().any(|(_, w)| matches!(w, Write::DeleteFrom(_))) {
        failpoint::crash_point(failpoint::LOG_TRUNCATE);
    }
    if writes().any(|(_, w)| matches!(w, Write::DeleteThrough(_))) {
        failpoint::crash_point(failpoint::LOG_PURGE);
    }
    failpoint::crash_point(failpoint::LOG_BEFORE_WRITE);
    let committed = committed.iter().map(|(m, w)| (m.group, w));
    for (group, write) in writes().chain(committed) {
        match write {
            Write::Entry(index, value) => rocks_batch.put_cf(log, log_key(group, *index), value),
            Write::State(name, value) => rocks_batch.put_cf(state, state_key(group, name), value),
            Write::ClearState(name) => rocks_batch.delete_cf(state, state_key(group, name)),
            // One range delete: it cannot leave a hole, and later appends are written after it.
            // Both ranges stop at the group's end: no other group's key is touched.
            Write::DeleteFrom(index) => {
                let from = log_key(group, *index);
                rocks_batch.delete_range_cf(log, &from[..], &log_end(group)[..]);
            }
            Write::DeleteThrough(index) => {
                let (from, to) = (log_key(group, 0), through(group, *index));
                rocks_batch.delete_range_cf(log, &from[..], &to[..]);
            }
        }
    }
    if !rocks_batch.is_empty() {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        db.write_opt(rocks_batch, &opts).map_err(rocks)?;
    }
    // Written, not durable: a process crash keeps it (the OS has it), a power cut may not.
    failpoint::crash_point(failpoint::LOG_BEFORE_FSYNC);
    if fsync {
        // Durability: entries and votes, of every group in the batch, are on disk only once
        // this returns Ok. The WAL is one ordered log, so unsynced writes queued earlier
        // (`committed`, other groups' truncations and purges) are covered too.
        count();
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
