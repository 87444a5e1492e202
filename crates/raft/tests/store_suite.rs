//! The RocksDB log store and state machine against openraft's conformance suite, plus Dolmen's
//! own storage guarantees: real commands at version = log index, restart, snapshot transfer
//! between nodes (equal digests), refusal of bad snapshot files, and crash redo via the marker.
//! The suite runs for group 0's log store and for group 7's in a database whose groups 6 and 8
//! hold logs too, once with a `raft-log` thread per store and once with one writer shared by
//! the three groups, as a node runs them; another test checks that every change to one group's
//! log leaves the other groups' bytes identical (docs/sharding.md §7).

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use dolmen_engine::{
    Command, Durability, Engine, EngineOptions, KeySpan, Mutation, Transaction, CF_RAFT_LOG,
    CF_RAFT_STATE,
};
use dolmen_raft::log_store::GroupId;
use dolmen_raft::snapshot::SnapshotDir;
use dolmen_raft::state_machine::{AppliedPosition, META_LAST_APPLIED};
use dolmen_raft::types::{
    DolmenRaft, Entry, EntryPayload, LogId, Membership, SnapshotFile, Vote, GROUP_ID,
};
use dolmen_raft::{LogFsync, LogStore, LogWriter, StateMachine};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use tempfile::TempDir;
use tokio::sync::watch;

fn open_engine(dir: &Path) -> Arc<Engine> {
    Arc::new(
        Engine::open(&EngineOptions::new(
            dir.join("db"),
            vec!["default".into(), "other".into()],
        ))
        .unwrap(),
    )
}

/// Opens a state machine over a fresh or existing node directory.
fn open_sm(
    dir: &Path,
) -> io::Result<(Arc<Engine>, StateMachine, watch::Receiver<AppliedPosition>)> {
    let engine = open_engine(dir);
    let (tx, rx) = watch::channel(AppliedPosition::default());
    let sm = StateMachine::open(Arc::clone(&engine), dir.join("snapshots"), tx)?;
    Ok((engine, sm, rx))
}

/// Builds the log store of `group` over a fresh database in which each of `neighbors` already
/// has a log ([`fill_group`]).
struct RocksBuilder {
    group: GroupId,
    neighbors: &'static [GroupId],
    /// Whether every store of the database is opened on one `raft-log` writer
    /// (`LogStore::open_with`), as a node opens its groups, rather than each on its own.
    shared_writer: bool,
}

impl StoreBuilder<DolmenRaft, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine), openraft::StorageError<DolmenRaft>> {
        let err = |e: io::Error| openraft::StorageError::write(DolmenRaft::err_from_error(&e));
        let dir = tempfile::tempdir().map_err(err)?;
        let engine = open_engine(dir.path());
        let writer = if self.shared_writer {
            Some(LogWriter::start(&engine, LogFsync::BeforeAck).map_err(err)?)
        } else {
            None
        };
        let open = |group| match &writer {
            Some(writer) => LogStore::open_with(&engine, group, writer),
            None => LogStore::new(&engine, group),
        };
        for &neighbor in self.neighbors {
            let mut other = open(neighbor).map_err(err)?;
            fill_group(&mut other).await;
        }
        let log = open(self.group).map_err(err)?;
        // Another group's state machine applies through its own engine handle (its own
        // applied state under its own `meta` keys), as a node running several groups will.
        let engine = if self.group == GROUP_ID {
            engine
        } else {
            let scoped = engine
                .open_group(self.group, KeySpan::all())
                .map_err(|e| err(io::Error::other(e)))?;
            Arc::new(scoped)
        };
        let (tx, _rx) = watch::channel(AppliedPosition::default());
        let sm = StateMachine::open(engine, dir.path().join("snapshots"), tx).map_err(err)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_openraft_conformance() {
    Suite::test_all(RocksBuilder {
        group: GROUP_ID,
        neighbors: &[],
        shared_writer: false,
    })
    .await
    .unwrap();
}

/// The suite sees an empty store for group 7 although groups 6 and 8, the keys right below and
/// above its own, hold logs, votes, commits and purges: no read, range scan, truncation or purge
/// of group 7 reaches them. Group 7's state machine applies, snapshots and installs through its
/// own engine handle (`Engine::open_group`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_openraft_conformance_for_group_7_beside_other_groups() {
    Suite::test_all(RocksBuilder {
        group: 7,
        neighbors: &[6, 8],
        shared_writer: false,
    })
    .await
    .unwrap();
}

/// The same, with groups 6, 7 and 8 opened on one `raft-log` writer, as a sharded node opens
/// its groups: group 7's requests share the thread, its batches and its fsyncs with the others'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_openraft_conformance_for_group_7_on_a_writer_shared_with_groups_6_and_8() {
    Suite::test_all(RocksBuilder {
        group: 7,
        neighbors: &[6, 8],
        shared_writer: true,
    })
    .await
    .unwrap();
}

/// Appends and waits for the flush callback, as openraft does before reporting durability.
async fn append_flushed(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = DolmenRaft::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

/// Gives `store`'s group a log: entries 0..=40, a vote, a commit, a purge through 5.
async fn fill_group(store: &mut LogStore) {
    append_flushed(store, (0..=40).map(|i| blank(2, i)).collect()).await;
    store.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    store.save_committed(Some(log_id(2, 30))).await.unwrap();
    store.purge(log_id(2, 5)).await.unwrap();
    store.flush().await.unwrap();
}

/// Every `raft_log` and `raft_state` key and value outside `group`.
fn other_groups(engine: &Engine, group: GroupId) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let db = engine.db();
    let mut rows = Vec::new();
    for name in [CF_RAFT_LOG, CF_RAFT_STATE] {
        let cf = db.cf_handle(name).unwrap();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) = item.unwrap();
            if !key.starts_with(&group.to_be_bytes()) {
                rows.push((name, key.to_vec(), value.to_vec()));
            }
        }
    }
    rows
}

/// Appending, overwriting, truncating (a suffix and the whole log), purging, saving the vote
/// and the commit in group 7 leaves every byte of groups 6 and 8 as it was, and group 7's
/// state as expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_one_groups_log_leave_other_groups_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    for neighbor in [6, 8] {
        fill_group(&mut LogStore::new(&engine, neighbor).unwrap()).await;
    }
    let before = other_groups(&engine, 7);
    assert_eq!(before.iter().filter(|r| r.0 == CF_RAFT_LOG).count(), 2 * 35);

    let mut store = LogStore::new(&engine, 7).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!((state.last_log_id, state.last_purged_log_id), (None, None));
    assert_eq!(store.read_vote().await.unwrap(), None);
    append_flushed(&mut store, (0..=50).map(|i| blank(1, i)).collect()).await;
    store.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
    store.save_committed(Some(log_id(1, 20))).await.unwrap();
    store.truncate_after(Some(log_id(1, 30))).await.unwrap();
    append_flushed(&mut store, (31..=35).map(|i| blank(3, i)).collect()).await;
    store.purge(log_id(1, 10)).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(other_groups(&engine, 7), before);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(3, 35)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 10)));
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(11));
    assert_eq!(entries.len(), 25);

    // Reopened from RocksDB alone (no tail), then the whole log truncated.
    drop(store);
    let mut store = LogStore::new(&engine, 7).unwrap();
    assert_eq!(store.try_get_log_entries(..).await.unwrap(), entries);
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 2))
    );
    store.truncate_after(None).await.unwrap();
    store.flush().await.unwrap();
    assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    assert_eq!(other_groups(&engine, 7), before);

    // The neighbors still read their own logs.
    for neighbor in [6, 8] {
        let mut other = LogStore::new(&engine, neighbor).unwrap();
        let state = other.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 40)));
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 5)));
        assert_eq!(other.read_committed().await.unwrap(), Some(log_id(2, 30)));
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id: 1 },
        index,
    }
}

fn set(cf: &str, key: &str, value: &str) -> Command {
    Command::Commit(Transaction {
        read_version: None,
        mutations: vec![Mutation::Set {
            cf: cf.into(),
            key: key.into(),
            value: value.into(),
        }],
        read_conflicts: Vec::new(),
        idempotency: None,
        stamp: None,
    })
}

fn normal(index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(command),
    }
}

fn membership_entry(index: u64, voters: &[u64]) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(membership(voters)),
    }
}

fn membership(voters: &[u64]) -> Membership {
    Membership::new_with_defaults(vec![voters.iter().copied().collect::<BTreeSet<_>>()], [])
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) {
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
}

fn get(engine: &Engine, key: &str) -> Option<Vec<u8>> {
    engine
        .get("default", key.as_bytes(), engine.applied_version())
        .unwrap()
}

/// A node with the initial membership at index 0, commands at 1..=n, a membership change.
async fn populated(
    dir: &Path,
    n: u64,
) -> (Arc<Engine>, StateMachine, watch::Receiver<AppliedPosition>) {
    let (engine, mut sm, rx) = open_sm(dir).unwrap();
    let mut entries = vec![membership_entry(0, &[1])];
    entries.extend((1..=n).map(|i| normal(i, set("default", &format!("k{i}"), &format!("v{i}")))));
    entries.push(membership_entry(n + 1, &[1, 2]));
    entries.push(normal(n + 2, set("other", "o", "x")));
    apply(&mut sm, entries).await;
    (engine, sm, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_applies_at_log_index_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (engine, mut sm, rx) = open_sm(dir.path()).unwrap();
        assert_eq!(
            sm.applied_state().await.unwrap(),
            (None, Default::default())
        );
        // Index 0: meta-only, consumes no version.
        apply(&mut sm, vec![membership_entry(0, &[1])]).await;
        assert_eq!(engine.applied_version(), 0);
        let (applied, stored) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 0)));
        assert_eq!(stored.log_id(), &Some(log_id(1, 0)));
        // 3000 entries: several chunks of at most 1024, each one engine batch.
        let entries = (1..=3000)
            .map(|i| normal(i, set("default", &format!("k{i}"), "v")))
            .collect();
        apply(&mut sm, entries).await;
        assert_eq!(engine.applied_version(), 3000);
        assert_eq!(rx.borrow().index, 3000);
        apply(&mut sm, vec![membership_entry(3001, &[1, 2])]).await;
        assert_eq!(
            engine.applied_version(),
            3000,
            "a membership writes no data: it takes no version of its own"
        );
        assert_eq!(get(&engine, "k2999"), Some(b"v".to_vec()));
    }
    let (engine, mut sm, rx) = open_sm(dir.path()).unwrap();
    let (applied, stored) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3001)));
    assert_eq!(stored.log_id(), &Some(log_id(1, 3001)));
    assert_eq!(stored.membership(), &membership(&[1, 2]));
    assert_eq!((engine.applied_version(), rx.borrow().index), (3000, 3001));
    assert_eq!(get(&engine, "k1"), Some(b"v".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_installs_on_a_fresh_node_with_an_identical_digest() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, mut leader_sm, _) = populated(leader_dir.path(), 50).await;
    let snap = leader_sm
        .try_create_snapshot_builder(true)
        .await
        .unwrap()
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 52)));
    assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(1, 51)));
    assert_eq!(leader_sm.stats().built(), 1);
    assert_eq!(leader_sm.stats().last_snapshot_index(), 52);

    // The network layer writes the received bytes into an incoming temp file.
    let (follower, mut follower_sm, rx) = open_sm(follower_dir.path()).unwrap();
    let (path, mut file) = follower_sm.snapshot_dir().incoming().unwrap();
    io::copy(
        &mut std::fs::File::open(&snap.snapshot.path).unwrap(),
        &mut file,
    )
    .unwrap();
    drop(file);
    follower_sm
        .install_snapshot(&snap.meta, SnapshotFile { path: path.clone() })
        .await
        .unwrap();
    assert!(
        !path.exists(),
        "the incoming file moved under its final name"
    );
    // 51 commits; the membership at index 51 takes no version.
    assert_eq!(follower.applied_version(), 51);
    assert_eq!(rx.borrow().index, 52);
    assert_eq!(
        follower.digest_at(51).unwrap(),
        leader.digest_at(51).unwrap()
    );
    assert_eq!(
        follower_sm.applied_state().await.unwrap(),
        (snap.meta.last_log_id, snap.meta.last_membership.clone())
    );
    let current = follower_sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(follower_sm.stats().installed(), 1);

    // The follower keeps applying after the snapshot.
    apply(
        &mut follower_sm,
        vec![normal(53, set("default", "after", "x"))],
    )
    .await;
    assert_eq!(get(&follower, "after"), Some(b"x".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_over_existing_data_removes_old_keys() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, mut leader_sm, _) = populated(leader_dir.path(), 5).await;
    let snap = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // The follower diverged: different keys at lower indexes.
    let (follower, mut follower_sm, _) = open_sm(follower_dir.path()).unwrap();
    apply(
        &mut follower_sm,
        (1..=3)
            .map(|i| normal(i, set("default", &format!("stale{i}"), "s")))
            .collect(),
    )
    .await;
    // Another node's file, handed over directly: it is copied, never taken away.
    follower_sm
        .install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    assert!(snap.snapshot.path.exists(), "the leader keeps its snapshot");
    assert_eq!(get(&follower, "stale1"), None);
    assert_eq!(get(&follower, "k5"), Some(b"v5".to_vec()));
    assert_eq!(follower.digest_at(6).unwrap(), leader.digest_at(6).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_snapshot_is_refused_and_state_stays() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_leader, mut leader_sm, _) = populated(leader_dir.path(), 20).await;
    let snap = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let bytes = std::fs::read(&snap.snapshot.path).unwrap();

    let (follower, mut follower_sm, _) = open_sm(follower_dir.path()).unwrap();
    apply(
        &mut follower_sm,
        vec![normal(1, set("default", "mine", "m"))],
    )
    .await;
    let before = follower.digest_at(1).unwrap();
    let snapshots = follower_sm.snapshot_dir();

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    for bad in [
        bytes[..bytes.len() - 3].to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
        flipped,
    ] {
        let (path, _) = snapshots.incoming().unwrap();
        std::fs::write(&path, &bad).unwrap();
        let err = follower_sm
            .install_snapshot(&snap.meta, SnapshotFile { path })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(follower.applied_version(), 1);
        assert_eq!(follower.digest_at(1).unwrap(), before);
        assert_eq!(follower.pending_restore().unwrap(), None);
    }
    // A good file whose meta is not what openraft asked for is refused too.
    let mut other_meta = snap.meta.clone();
    other_meta.last_log_id = Some(log_id(9, 22));
    let (path, _) = snapshots.incoming().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let err = follower_sm
        .install_snapshot(&other_meta, SnapshotFile { path })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("install asked for"), "{err}");
    assert_eq!(get(&follower, "mine"), Some(b"m".to_vec()));
    assert!(follower_sm.get_current_snapshot().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_install_is_redone_at_open() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, mut leader_sm, _) = populated(leader_dir.path(), 30).await;
    let snap = leader_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let final_path = {
        let (follower, mut follower_sm, _) = open_sm(follower_dir.path()).unwrap();
        apply(
            &mut follower_sm,
            vec![normal(1, set("default", "old", "o"))],
        )
        .await;
        // The install got as far as the file under its final name and a partial restore,
        // then the node "crashed": the marker names the file.
        let dir = SnapshotDir::open(follower_dir.path().join("snapshots")).unwrap();
        let adopted = dir.adopt(&snap.snapshot, &snap.meta).unwrap();
        let marker = adopted.path.as_os_str().as_encoded_bytes().to_vec();
        let records = dolmen_raft::SnapshotReader::open(&adopted.path).unwrap();
        let partial = records
            .take(5)
            .chain(std::iter::once(Err(io::Error::other("power cut"))));
        assert!(follower.restore(&marker, partial).is_err());
        adopted.path
    };
    let (follower, mut follower_sm, rx) = open_sm(follower_dir.path()).unwrap();
    assert_eq!(follower.pending_restore().unwrap(), None);
    assert_eq!(follower.applied_version(), 31);
    assert_eq!(rx.borrow().index, 32);
    assert_eq!(
        follower.digest_at(31).unwrap(),
        leader.digest_at(31).unwrap()
    );
    assert_eq!(get(&follower, "old"), None);
    let (applied, _) = follower_sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 32)));
    assert_eq!(follower_sm.stats().installed(), 1);
    let current = follower_sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.snapshot.path, final_path);

    // Without its file, a redo is impossible: open fails and says what to do.
    drop((follower, follower_sm));
    let engine = open_engine(follower_dir.path());
    engine
        .restore(
            b"/nonexistent/1-1-9.snap",
            std::iter::once(Err(io::Error::other("cut"))),
        )
        .unwrap_err();
    drop(engine);
    let err = open_sm(follower_dir.path()).unwrap_err();
    assert!(err.to_string().contains("must be redone"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_meta_rides_in_the_apply_batch() {
    // raft/last_applied is written with the data, never separately: an engine batch written
    // outside the state machine leaves it untouched.
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut sm, _) = populated(dir.path(), 3).await;
    engine
        .apply_batch(&[(6, Command::Noop)], Durability::Buffered, &[])
        .unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 5)));
    assert!(engine.read_meta(META_LAST_APPLIED).unwrap().is_some());
}
