//! Crash safety of the layout-1 log migration (docs/sharding.md §7): a process opening a
//! layout-1 log is killed (SIGKILL, the `dolmen_engine::failpoint` catalog's `return`) at each
//! migration failpoint in turn; each next open resumes the migration, and the last one serves
//! every entry, the vote, the commit and the purge point, and keeps working.
//!
//! ```text
//!  group-0 log written by LogStore ─ rewritten to layout-1 keys (no marker)
//!    ─ child: open, dies at raft_log::migrate_copy_chunk (2nd chunk)
//!    ─ child: open, dies at raft_log::migrate_delete_chunk (2nd chunk)
//!    ─ child: open, dies at raft_log::migrate_before_marker
//!    ─ open: everything there, layout 2, appends and purges work
//! ```
//! The children are this test binary run again on the one test, told by [`CHILD_DIR`] which
//! directory to open and by [`CHILD_FAILPOINTS`] where to die. A crate-level test rather than a
//! cluster one: the black-box suites link no storage code, and a layout-1 directory can only be
//! made by rewriting a stopped node's RocksDB.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dolmen_engine::{failpoint, Engine, EngineOptions, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use dolmen_raft::log_store::layout::{read_layout, META_LAYOUT};
use dolmen_raft::types::{DolmenRaft, Entry, EntryPayload, LogId, Vote, GROUP_ID};
use dolmen_raft::LogStore;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::RaftLogReader;
use rocksdb::IteratorMode;

/// Set in a child: the data directory to open.
const CHILD_DIR: &str = "DOLMEN_TEST_MIGRATION_DIR";
/// Set in a child: the `FAILPOINTS` spec to configure before opening.
const CHILD_FAILPOINTS: &str = "DOLMEN_TEST_MIGRATION_FAILPOINTS";
/// This test's name, for the children's filter.
const TEST: &str = "a_layout_1_log_migration_killed_at_every_failpoint_loses_nothing";
/// Entries in the log: three chunks of at most 1,000.
const LAST: u64 = 2_600;
const PURGED: u64 = 40;

fn engine(dir: &Path) -> Arc<Engine> {
    Arc::new(Engine::open(&EngineOptions::new(dir, vec!["default".into()])).unwrap())
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id: 1 },
        index,
    }
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

async fn append_flushed(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = DolmenRaft::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

/// Writes a group-0 log (entries, vote, commit, purge) through the store, then rewrites it
/// as a build before layout 2 stored it: `be64(index)` and bare names, no `meta/layout`.
async fn write_layout_1(dir: &Path) {
    let engine = engine(dir);
    let mut store = LogStore::new(&engine, GROUP_ID).unwrap();
    append_flushed(&mut store, (1..=LAST).map(|i| blank(3, i)).collect()).await;
    store.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
    store
        .save_committed(Some(log_id(3, LAST - 5)))
        .await
        .unwrap();
    store.purge(log_id(3, PURGED)).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    let db = engine.db();
    let prefix = GROUP_ID.to_be_bytes();
    for name in [CF_RAFT_LOG, CF_RAFT_STATE] {
        let cf = db.cf_handle(name).unwrap();
        let rows: Vec<_> = db
            .iterator_cf(cf, IteratorMode::Start)
            .map(Result::unwrap)
            .collect();
        for (key, value) in rows {
            assert!(key.starts_with(&prefix), "{name} key {key:02x?}");
            db.delete_cf(cf, &key).unwrap();
            db.put_cf(cf, &key[8..], value).unwrap();
        }
    }
    db.delete_cf(db.cf_handle(CF_META).unwrap(), META_LAYOUT)
        .unwrap();
    db.flush_wal(true).unwrap();
    assert_eq!(read_layout(db).unwrap(), None);
}

/// Every entry's bytes by index, wherever it is stored (layout-1 or group-0 key); they must
/// agree where both exist.
fn stored_entries(engine: &Engine) -> BTreeMap<u64, Vec<u8>> {
    let db = engine.db();
    let mut entries = BTreeMap::new();
    for item in db.iterator_cf(db.cf_handle(CF_RAFT_LOG).unwrap(), IteratorMode::Start) {
        let (key, value) = item.unwrap();
        let index = u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap());
        if let Some(other) = entries.insert(index, value.to_vec()) {
            assert_eq!(
                other,
                value.to_vec(),
                "the two copies of entry {index} differ"
            );
        }
    }
    entries
}

/// Runs this test again in a child process that opens `dir` with `failpoints` and must die by
/// SIGKILL at `point`.
fn open_and_die_at(dir: &Path, failpoints: &str, point: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_FAILPOINTS, failpoints)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "expected the child to die by SIGKILL at {point}: {:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("failpoint {point}: crashing the process here")),
        "{stderr}"
    );
}

/// The child: configure the failpoints and open (it never returns from the open).
fn child(dir: &str, failpoints: &str) {
    failpoint::configure(failpoints).unwrap();
    let engine = engine(Path::new(dir));
    let opened = LogStore::new(&engine, GROUP_ID);
    panic!(
        "the open should have died at {failpoints}: {:?}",
        opened.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_1_log_migration_killed_at_every_failpoint_loses_nothing() {
    if let (Ok(dir), Ok(failpoints)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_FAILPOINTS)) {
        return child(&dir, &failpoints);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    write_layout_1(&dir).await;
    let expected = stored_entries(&engine(&dir));
    assert_eq!(expected.len() as u64, LAST - PURGED);

    for (point, actions) in [
        (failpoint::LOG_MIGRATE_COPY_CHUNK, "1*off->return"),
        (failpoint::LOG_MIGRATE_DELETE_CHUNK, "1*off->return"),
        (failpoint::LOG_MIGRATE_BEFORE_MARKER, "return"),
    ] {
        open_and_die_at(&dir, &format!("{point}={actions}"), point);
        let engine = engine(&dir);
        assert_eq!(read_layout(engine.db()).unwrap(), None, "after {point}");
        assert_eq!(stored_entries(&engine), expected, "after {point}");
    }

    let engine = engine(&dir);
    let mut store = LogStore::new(&engine, GROUP_ID).unwrap();
    assert_eq!(read_layout(engine.db()).unwrap(), Some(2));
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 1))
    );
    assert_eq!(
        store.read_committed().await.unwrap(),
        Some(log_id(3, LAST - 5))
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, PURGED)));
    assert_eq!(state.last_log_id, Some(log_id(3, LAST)));
    let entries = store.try_get_log_entries(..).await.unwrap();
    let want: Vec<Entry> = (PURGED + 1..=LAST).map(|i| blank(3, i)).collect();
    assert_eq!(entries, want);
    // Every key is group 0's now, and the store keeps working.
    let db = engine.db();
    for item in db.iterator_cf(db.cf_handle(CF_RAFT_LOG).unwrap(), IteratorMode::Start) {
        assert_eq!(item.unwrap().0.len(), 16);
    }
    append_flushed(&mut store, vec![blank(4, LAST + 1)]).await;
    store.purge(log_id(3, LAST - 10)).await.unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.len(), 11);
    assert_eq!(entries.last(), Some(&blank(4, LAST + 1)));
}
