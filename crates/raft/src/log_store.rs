//! The Raft log store over the node's shared RocksDB (docs/replication.md §3): `raft_log` holds
//! the entries, `raft_state` the vote, `committed` and `last_purged`. Writes run on blocking
//! threads in call order; fsyncs run on one `log-sync` thread, which groups them.
//!
//! ```text
//! append(entries, cb) ─▶ blocking: write batch (no sync) ─▶ returns (entries readable)
//!                              └─ cb ─▶ log-sync: take ALL queued ─▶ flush_wal(true) ─▶ complete each
//! save_vote(v) ─▶ blocking: put vote (no sync) ─▶ waiter ─▶ log-sync (same fsync) ─▶ returns
//! ```

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};

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

/// Runs blocking RocksDB work off the async threads (STYLE 10).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("log store task failed: {e}")))?
}

/// A write without its own fsync: durability comes from the `log-sync` thread's `flush_wal(true)`.
fn write_unsynced(db: &DB, batch: WriteBatch) -> io::Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(false);
    db.write_opt(batch, &opts).map_err(rocks)
}

/// Something waiting for the next WAL fsync.
enum SyncRequest {
    /// openraft's append callback.
    Flushed(IOFlushed<DolmenRaft>),
    /// `save_vote`, awaiting its fsync.
    Waiter(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl SyncRequest {
    fn complete(self, result: &Result<(), String>) {
        let result = result.clone().map_err(io::Error::other);
        match self {
            SyncRequest::Flushed(callback) => callback.io_completed(result),
            // The waiter may have been dropped (its task cancelled); nothing to tell then.
            SyncRequest::Waiter(tx) => drop(tx.send(result)),
        }
    }
}

/// The `log-sync` thread: one fsync at a time, covering every request queued before it began.
///
/// It holds the database weakly so that dropping the last store and engine closes RocksDB; the
/// thread ends when the last `LogStore` clone (the last sender) is dropped.
fn run_log_sync(db: Weak<DB>, requests: mpsc::Receiver<SyncRequest>, fsyncs: Arc<AtomicU64>) {
    while let Ok(first) = requests.recv() {
        // Group commit: every request queued so far shares this one fsync. Each request was
        // queued after its write returned, so the fsync below covers all of their writes.
        let mut group = vec![first];
        group.extend(requests.try_iter());
        let result = match db.upgrade() {
            // Durability: entries and votes are on disk only once this returns Ok.
            Some(db) => {
                fsyncs.fetch_add(1, Ordering::Relaxed);
                db.flush_wal(true).map_err(|e| e.to_string())
            }
            None => Err("database closed before the log was synced".to_owned()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log fsync failed");
        }
        // FIFO; openraft keeps only the highest completed IOId anyway.
        for request in group {
            request.complete(&result);
        }
    }
}

/// The RocksDB Raft log store; `Clone` shares the database and the `log-sync` thread.
///
/// Implements [`RaftLogStorage`] and [`RaftLogReader`] for [`DolmenRaft`]. openraft calls the
/// storage methods one at a time (`&mut self`), and each awaits its write, so writes reach
/// RocksDB in call order: vote and log I/O are serialized as the trait requires.
#[derive(Clone)]
pub struct LogStore {
    /// The node's database, shared with the engine; this store owns `raft_log` and `raft_state`.
    db: Arc<DB>,
    /// Queue of the `log-sync` thread.
    sync: mpsc::Sender<SyncRequest>,
    /// WAL fsyncs issued by the `log-sync` thread (entries per fsync is the write throughput).
    fsyncs: Arc<AtomicU64>,
}

impl LogStore {
    /// A log store over `engine`'s database; starts the `log-sync` thread.
    pub fn new(engine: &Engine) -> io::Result<Self> {
        let db = Arc::clone(engine.db());
        cf(&db, CF_RAFT_LOG)?;
        cf(&db, CF_RAFT_STATE)?;
        let (sync, requests) = mpsc::channel();
        let weak = Arc::downgrade(&db);
        let fsyncs = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&fsyncs);
        std::thread::Builder::new()
            .name("log-sync".to_owned())
            .spawn(move || run_log_sync(weak, requests, counter))?;
        Ok(Self { db, sync, fsyncs })
    }

    /// How many WAL fsyncs this store's `log-sync` thread has issued (for metrics and tests).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    fn enqueue_sync(&self, request: SyncRequest) -> io::Result<()> {
        self.sync
            .send(request)
            .map_err(|_| io::Error::other("the log-sync thread has stopped"))
    }

    /// Reads one `raft_state` log id (`committed` or `last_purged`).
    async fn read_state_log_id(&self, key: &'static [u8]) -> io::Result<Option<LogId>> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let value = db.get_cf(cf(&db, CF_RAFT_STATE)?, key).map_err(rocks)?;
            value.map(|v| codec::decode_log_id(&v)).transpose()
        })
        .await
    }
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
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut entries = Vec::new();
            let from = log_key(start);
            let iter = db.iterator_cf(
                cf(&db, CF_RAFT_LOG)?,
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
        })
        .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let value = db
                .get_cf(cf(&db, CF_RAFT_STATE)?, KEY_VOTE)
                .map_err(rocks)?;
            value.map(|v| codec::decode_vote(&v)).transpose()
        })
        .await
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
        let db = Arc::clone(&self.db);
        let last = blocking(move || {
            let mut iter = db.iterator_cf(cf(&db, CF_RAFT_LOG)?, IteratorMode::End);
            match iter.next() {
                Some(item) => {
                    let (key, value) = item.map_err(rocks)?;
                    Ok(Some(decode_at(key_index(&key)?, &value)?.log_id))
                }
                None => Ok(None),
            }
        })
        .await?;
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let db = Arc::clone(&self.db);
        let value = codec::encode_vote(vote);
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_STATE)?, KEY_VOTE, value);
            write_unsynced(&db, batch)
        })
        .await?;
        // Durability: the vote must be persisted on disk before returning, so wait for an fsync
        // that starts after the write above (shared with any appends queued meanwhile).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue_sync(SyncRequest::Waiter(tx))?;
        rx.await
            .map_err(|_| io::Error::other("the log-sync thread dropped a vote fsync"))?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let state = cf(&db, CF_RAFT_STATE)?;
            let mut batch = WriteBatch::default();
            match committed {
                Some(id) => batch.put_cf(state, KEY_COMMITTED, codec::encode_log_id(&id)),
                None => batch.delete_cf(state, KEY_COMMITTED),
            }
            // Unsynced by design: the WAL is one ordered log, so after a crash `committed`
            // can never be ahead of the entries it covers (replication.md invariant 4).
            write_unsynced(&db, batch)
        })
        .await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.read_state_log_id(KEY_COMMITTED).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<DolmenRaft>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((log_key(entry.log_id.index), codec::encode_entry(&entry)?)))
            .collect::<io::Result<Vec<_>>>()?;
        let db = Arc::clone(&self.db);
        blocking(move || {
            let log = cf(&db, CF_RAFT_LOG)?;
            let mut batch = WriteBatch::default();
            for (key, value) in encoded {
                batch.put_cf(log, key, value);
            }
            write_unsynced(&db, batch)
        })
        .await?;
        // The entries are readable now, as the trait requires on return. Durability: the
        // callback reports them flushed only after the log-sync thread's next fsync, which
        // starts after this write returned.
        self.enqueue_sync(SyncRequest::Flushed(callback))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut batch = WriteBatch::default();
            // One range delete: it cannot leave a hole, and later appends are written after it.
            batch.delete_range_cf(
                cf(&db, CF_RAFT_LOG)?,
                &log_key(from)[..],
                &PAST_LAST_KEY[..],
            );
            write_unsynced(&db, batch)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // TODO(slice 3): assert `log_id.index ≤ durable_applied` (flush-before-purge,
        // replication.md §4) once the state machine publishes it.
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut batch = WriteBatch::default();
            // `last_purged` and the delete share one batch, so `get_log_state` never sees a
            // purged prefix without its marker.
            batch.put_cf(
                cf(&db, CF_RAFT_STATE)?,
                KEY_LAST_PURGED,
                codec::encode_log_id(&log_id),
            );
            batch.delete_range_cf(cf(&db, CF_RAFT_LOG)?, log_key(0), log_key(log_id.index + 1));
            write_unsynced(&db, batch)
        })
        .await
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
            store.save_committed(Some(log_id(3, 1, 3))).await.unwrap();
            store.purge(log_id(3, 1, 1)).await.unwrap();
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

    #[tokio::test]
    async fn log_store_corrupt_value_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, mut store) = open(&dir);
        let db = engine.db();
        db.put_cf(db.cf_handle(CF_RAFT_LOG).unwrap(), log_key(1), b"\x01junk")
            .unwrap();
        let err = store.try_get_log_entries(..).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn log_store_group_commit_shares_one_fsync() {
        // Requests queued before the log-sync loop looks are all completed by one fsync.
        let dir = tempfile::tempdir().unwrap();
        let (engine, _store) = open(&dir);
        let (tx, requests) = mpsc::channel();
        let mut waiters = Vec::new();
        for _ in 0..200 {
            let (done, waiter) = tokio::sync::oneshot::channel();
            tx.send(SyncRequest::Waiter(done)).unwrap();
            waiters.push(waiter);
        }
        drop(tx);
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (db, counter) = (Arc::downgrade(engine.db()), Arc::clone(&fsyncs));
        std::thread::spawn(move || run_log_sync(db, requests, counter))
            .join()
            .unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(fsyncs.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn log_store_concurrent_flushes_all_complete() {
        // Many callbacks queued at once: each completes after a shared fsync.
        let dir = tempfile::tempdir().unwrap();
        let (_engine, store) = open(&dir);
        let mut tasks = Vec::new();
        for i in 1..=50u64 {
            let mut store = store.clone();
            tasks.push(tokio::spawn(async move {
                append_flushed(&mut store, vec![blank(1, i)]).await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut store = store;
        assert_eq!(indexes(&mut store).await, (1..=50).collect::<Vec<_>>());
        let fsyncs = store.fsync_count();
        assert!((1..=50).contains(&fsyncs), "{fsyncs} fsyncs for 50 appends");
    }
}
