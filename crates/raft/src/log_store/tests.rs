//! Unit tests of the log store: ranges, payload kinds, truncation, purge, reopen, corruption,
//! group commit, and reads that span RocksDB and the in-memory tail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;

use dolmen_engine::{Command, EngineOptions};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::type_config::TypeConfigExt;

use super::*;
use crate::types::{EntryPayload, Membership, NodeAddr, GROUP_ID};

/// The group of the stores these tests open.
const GROUP: GroupId = GROUP_ID;

fn open(dir: &tempfile::TempDir) -> (Arc<Engine>, LogStore) {
    let engine =
        Arc::new(Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap());
    let store = LogStore::new(&engine, GROUP).unwrap();
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
        log_key(GROUP, index),
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
    let err = LogStore::new(&engine, GROUP)
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
        let writes = vec![Write::State(COMMITTED, vec![0])];
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
    std::thread::spawn(move || {
        run_log_writer(
            db,
            GROUP,
            Weak::new(),
            requests,
            counter,
            LogFsync::BeforeAck,
        )
    })
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
        stamp: None,
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

/// The planted bug `LogFsync::UnsafeLazy` acknowledges appends and votes without an fsync
/// (within five seconds of the last one); the correct policy fsyncs before each.
#[tokio::test]
async fn log_store_unsafe_lazy_fsync_acknowledges_without_fsyncing() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap());
    let vote = Vote {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        committed: false,
    };
    let mut lazy = LogStore::open(&engine, GROUP, LogFsync::UnsafeLazy).unwrap();
    append_flushed(&mut lazy, (1..=3).map(|i| blank(1, i)).collect()).await;
    lazy.save_vote(&vote).await.unwrap();
    assert_eq!(lazy.fsync_count(), 0, "acknowledged, never fsynced");
    assert_eq!(indexes(&mut lazy).await, vec![1, 2, 3]);
    drop(lazy);
    let mut correct = LogStore::open(&engine, GROUP, LogFsync::BeforeAck).unwrap();
    append_flushed(&mut correct, vec![blank(1, 4)]).await;
    correct.save_vote(&vote).await.unwrap();
    assert_eq!(correct.fsync_count(), 2);
}
