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
    let (writer, thread) = LogWriter::unstarted(engine.db(), LogFsync::BeforeAck);
    let member = Arc::new(Member::new(GROUP, Weak::new()));
    let mut waiters = Vec::new();
    for seq in 1..=200 {
        let (done, waiter) = tokio::sync::oneshot::channel();
        let writes = vec![Write::State(COMMITTED, vec![0])];
        let completion = Completion::Durable(done);
        writer
            .send(Request {
                member: Arc::clone(&member),
                seq,
                writes,
                completion,
            })
            .unwrap();
        waiters.push(waiter);
    }
    let thread = std::thread::spawn(move || thread.run());
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    assert_eq!(writer.fsync_count(), 1);
    assert_eq!(member.fsyncs.load(Ordering::Relaxed), 1);
    drop(writer);
    thread.join().unwrap();
}

/// An engine over `dir` with no store open.
fn open_engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    Arc::new(Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap())
}

/// A blank entry of `group`: its term is the group, so a read that crossed groups shows.
fn of_group(group: GroupId, index: u64) -> Entry {
    blank(group, index)
}

/// Queues an append of `entries` and returns the receiver of its flush callback, without
/// waiting for it.
async fn append_queued(
    store: &mut LogStore,
    entries: Vec<Entry>,
) -> impl std::future::Future<Output = ()> {
    let (tx, rx) = DolmenRaft::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    async move { rx.await.unwrap().unwrap() }
}

/// Every `raft_log` index RocksDB holds for `group`, read past the store (no tail).
fn stored_indexes(engine: &Engine, group: GroupId) -> Vec<u64> {
    read_stored(engine.db(), group, 0, None)
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e.log_id.leader_id.term, group, "group {group} holds {e:?}");
            e.log_id.index
        })
        .collect()
}

/// Three groups' stores on one writer: requests queued by all of them before the thread looks
/// are written in one batch, covered by one fsync (counted once by the writer and once by each
/// store), and each group reads back exactly its own entries, in order, from the tail and from
/// RocksDB; appends interleaved from concurrent tasks afterwards land in their own group too.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn log_store_groups_on_one_writer_share_its_batch_and_fsync_and_keep_their_own_entries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let (writer, thread) = LogWriter::unstarted(engine.db(), LogFsync::BeforeAck);
    let groups: [GroupId; 3] = [1, 2, 3];
    let mut stores: Vec<LogStore> = groups
        .iter()
        .map(|&g| LogStore::open_with(&engine, g, &writer).unwrap())
        .collect();

    // The burst: 20 appends per group, interleaved group by group, and a commit each, all
    // queued before the thread runs.
    let mut flushed = Vec::new();
    for index in 1..=20 {
        for store in &mut stores {
            let entry = of_group(store.group(), index);
            flushed.push(append_queued(store, vec![entry]).await);
        }
    }
    for store in &mut stores {
        let committed = log_id(store.group(), 1, 10);
        store.save_committed(Some(committed)).await.unwrap();
    }
    let thread = std::thread::spawn(move || thread.run());
    for done in flushed {
        done.await;
    }
    assert_eq!(writer.fsync_count(), 1, "60 appends of 3 groups, one fsync");
    for store in &mut stores {
        assert_eq!(store.fsync_count(), 1, "group {}", store.group());
        // Each store's own clock: its 20 requests are written, whatever the others queued.
        assert_eq!(
            lock(&store.memory).written_seq,
            20,
            "group {}",
            store.group()
        );
        let got = store.try_get_log_entries(..).await.unwrap();
        let want: Vec<Entry> = (1..=20).map(|i| of_group(store.group(), i)).collect();
        assert_eq!(got, want);
        assert_eq!(
            stored_indexes(&engine, store.group()),
            (1..=20).collect::<Vec<_>>()
        );
        let committed = store.read_committed().await.unwrap();
        assert_eq!(committed, Some(log_id(store.group(), 1, 10)));
    }

    // Concurrent appenders, one per group, each waiting for its own flush.
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|mut store| {
            tokio::spawn(async move {
                for index in 21..=60 {
                    let entry = of_group(store.group(), index);
                    append_flushed(&mut store, vec![entry]).await;
                }
                store
            })
        })
        .collect();
    for task in tasks {
        let mut store = task.await.unwrap();
        let got = store.try_get_log_entries(..).await.unwrap();
        let want: Vec<Entry> = (1..=60).map(|i| of_group(store.group(), i)).collect();
        assert_eq!(got, want);
        assert_eq!(
            stored_indexes(&engine, store.group()),
            (1..=60).collect::<Vec<_>>()
        );
        let fsyncs = store.fsync_count();
        assert!(
            (2..=41).contains(&fsyncs),
            "group {}: {fsyncs}",
            store.group()
        );
    }
    let all = writer.fsync_count();
    assert!((2..=121).contains(&all), "{all} fsyncs for 180 appends");

    drop((stores, writer));
    thread.join().unwrap();
}

/// With three groups on one writer, group 7's truncation and purge are written in the same
/// RocksDB batch as appends of groups 6 and 8, whose keys sit right below and above group 7's:
/// neither range delete reaches them.
#[tokio::test]
async fn log_store_truncate_and_purge_in_a_shared_batch_leave_the_other_groups_keys() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let (writer, thread) = LogWriter::unstarted(engine.db(), LogFsync::BeforeAck);
    let mut stores: Vec<LogStore> = [6, 7, 8]
        .iter()
        .map(|&g| LogStore::open_with(&engine, g, &writer).unwrap())
        .collect();
    let mut flushed = Vec::new();
    for store in &mut stores {
        let entries = (0..=20).map(|i| of_group(store.group(), i)).collect();
        flushed.push(append_queued(store, entries).await);
    }
    stores[1]
        .truncate_after(Some(log_id(7, 1, 15)))
        .await
        .unwrap();
    stores[1].purge(log_id(7, 1, 5)).await.unwrap();
    for store in stores.iter_mut().filter(|s| s.group() != 7) {
        let entries = (21..=25).map(|i| of_group(store.group(), i)).collect();
        flushed.push(append_queued(store, entries).await);
    }
    let thread = std::thread::spawn(move || thread.run());
    for done in flushed {
        done.await;
    }
    assert_eq!(writer.fsync_count(), 1, "one batch");

    assert_eq!(stored_indexes(&engine, 6), (0..=25).collect::<Vec<_>>());
    assert_eq!(stored_indexes(&engine, 7), (6..=15).collect::<Vec<_>>());
    assert_eq!(stored_indexes(&engine, 8), (0..=25).collect::<Vec<_>>());
    // No key outside the three groups, and none lost between them.
    let db = engine.db();
    let keys = db
        .iterator_cf(db.cf_handle(CF_RAFT_LOG).unwrap(), IteratorMode::Start)
        .count();
    assert_eq!(keys, 26 + 10 + 26);
    for store in &mut stores {
        let state = store.get_log_state().await.unwrap();
        let (purged, last) = match store.group() {
            7 => (Some(log_id(7, 1, 5)), 15),
            _ => (None, 25),
        };
        assert_eq!(state.last_purged_log_id, purged, "group {}", store.group());
        let last_id = state.last_log_id.map(|id| id.index);
        assert_eq!(last_id, Some(last), "group {}", store.group());
    }
    drop((stores, writer));
    thread.join().unwrap();
}

/// The writer's thread ends once every store opened on it and the handle are dropped (it holds
/// the registered stores until it returns), and RocksDB closes: the directory opens again.
#[tokio::test]
async fn log_store_dropping_every_store_ends_the_shared_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let writer = LogWriter::start(&engine, LogFsync::BeforeAck).unwrap();
    for group in [1, 2] {
        let mut store = LogStore::open_with(&engine, group, &writer).unwrap();
        append_flushed(&mut store, vec![of_group(group, 1)]).await;
    }
    let members = writer.members();
    let db = Arc::downgrade(engine.db());
    // Each store holds a writer clone: the thread outlives the handle while one is open.
    let mut store = LogStore::open_with(&engine, 3, &writer).unwrap();
    drop(writer);
    append_flushed(&mut store, vec![of_group(3, 1)]).await;
    assert!(members.strong_count() > 0);
    drop((store, engine));
    let mut waited = 0;
    while members.strong_count() > 0 && waited < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(members.strong_count(), 0, "the raft-log thread did not end");
    assert!(db.upgrade().is_none(), "the thread keeps the database open");
    let engine = open_engine(&dir);
    assert_eq!(stored_indexes(&engine, 3), vec![1]);
}

/// A writer of one database refuses a store of another, naming the fix.
#[test]
fn log_store_refuses_the_writer_of_another_database() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (engine_a, engine_b) = (open_engine(&a), open_engine(&b));
    let writer = LogWriter::start(&engine_a, LogFsync::BeforeAck).unwrap();
    let err = LogStore::open_with(&engine_b, 1, &writer)
        .err()
        .expect("a store over another database must be refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("LogWriter::start"), "{err}");
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
