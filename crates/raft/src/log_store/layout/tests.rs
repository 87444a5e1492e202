//! The layout marker and the layout-1 migration: a fresh database is marked, a layout-1 log is
//! moved whole, a migration stopped after any step (a crash there) is finished by the next
//! open, a marked database is never scanned again, and a newer layout is refused by value.

use std::sync::Arc;

use dolmen_engine::{Engine, EngineOptions};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;

use super::*;
use crate::codec;
use crate::log_store::keys::{COMMITTED, LAST_PURGED, VOTE};
use crate::log_store::LogStore;
use crate::types::{Entry, EntryPayload, LogId, Vote};

fn engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    Arc::new(Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap())
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id: 1 },
        index,
    }
}

/// A layout-1 log: entries 6..=`last` (5 purged), a vote, a commit at 20.
struct Layout1 {
    entries: Vec<Entry>,
    vote: Vote,
    committed: LogId,
    last_purged: LogId,
}

impl Layout1 {
    fn new(last: u64) -> Self {
        let entries = (6..=last)
            .map(|i| Entry {
                log_id: log_id(2, i),
                payload: EntryPayload::Blank,
            })
            .collect();
        Self {
            entries,
            vote: Vote::new_committed(2, 1),
            committed: log_id(2, 20),
            last_purged: log_id(1, 5),
        }
    }

    /// Writes it as a build before layout 2 did: `be64(index)` and bare names, no marker.
    fn write(&self, db: &DB) {
        let (log, state) = (cf(db, CF_RAFT_LOG).unwrap(), cf(db, CF_RAFT_STATE).unwrap());
        for entry in &self.entries {
            let value = codec::encode_entry(entry).unwrap();
            db.put_cf(log, entry.log_id.index.to_be_bytes(), value)
                .unwrap();
        }
        db.put_cf(state, VOTE, codec::encode_vote(&self.vote))
            .unwrap();
        db.put_cf(state, COMMITTED, codec::encode_log_id(&self.committed))
            .unwrap();
        db.put_cf(state, LAST_PURGED, codec::encode_log_id(&self.last_purged))
            .unwrap();
    }

    /// Checks that group 0's store reads exactly this log, and that no layout-1 key is left.
    async fn check_migrated(&self, engine: &Engine) {
        let db = engine.db();
        assert_eq!(read_layout(db).unwrap(), Some(LAYOUT));
        assert_eq!(layout_1_keys(db), 0, "layout-1 keys left behind");
        let mut store = LogStore::new(engine, 0).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(self.vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(self.committed));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(self.last_purged));
        assert_eq!(state.last_log_id, self.entries.last().map(|e| e.log_id));
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), self.entries);
    }
}

/// Layout-1 keys in the database: 8-byte `raft_log` keys and bare `raft_state` names.
fn layout_1_keys(db: &DB) -> usize {
    let log = cf(db, CF_RAFT_LOG).unwrap();
    let state = cf(db, CF_RAFT_STATE).unwrap();
    let entries = db
        .iterator_cf(log, IteratorMode::Start)
        .filter(|item| item.as_ref().unwrap().0.len() == LAYOUT_1_LOG_KEY)
        .count();
    let names = STATE_NAMES
        .iter()
        .filter(|name| db.get_cf(state, name).unwrap().is_some())
        .count();
    entries + names
}

fn write_marker(db: &DB, layout: u64) {
    let mut w = Writer::new("meta/layout");
    w.u64(layout);
    db.put_cf(cf(db, CF_META).unwrap(), META_LAYOUT, w.finish())
        .unwrap();
}

#[test]
fn layout_a_fresh_database_gets_the_marker_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    assert_eq!(read_layout(engine.db()).unwrap(), None);
    let prepared = prepare(engine.db()).unwrap();
    assert_eq!(
        prepared,
        Prepared::Migrated {
            entries: 0,
            states: 0
        }
    );
    assert_eq!(read_layout(engine.db()).unwrap(), Some(2));
    // The stored bytes are a meta counter's: 0x01 ‖ be64 2.
    let stored = engine.read_meta(META_LAYOUT).unwrap().unwrap();
    assert_eq!(stored, [1, 0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(prepare(engine.db()).unwrap(), Prepared::Marked);
}

#[tokio::test]
async fn layout_1_log_is_migrated_with_every_entry_vote_commit_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    // 2,495 entries: three chunks of at most 1,000.
    let old = Layout1::new(2_500);
    {
        let engine = engine(&dir);
        old.write(engine.db());
    }
    let engine = engine(&dir);
    let prepared = prepare(engine.db()).unwrap();
    assert_eq!(
        prepared,
        Prepared::Migrated {
            entries: 2_495,
            states: 3
        }
    );
    old.check_migrated(&engine).await;
    // The store keeps working on the migrated log.
    let mut store = LogStore::new(&engine, 0).unwrap();
    store.purge(log_id(2, 100)).await.unwrap();
    store.flush().await.unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(101));
}

/// Stops the migration at the `nth` report of `at` (a crash there), with chunks of 7 entries.
fn interrupted(db: &DB, at: Step, nth: usize) {
    let chunk = Chunk {
        entries: 7,
        bytes: 1 << 20,
    };
    let mut seen = 0;
    let err = prepare_with(db, chunk, |step| {
        if step == at {
            seen += 1;
            if seen == nth {
                return Err(io::Error::other("power cut").into());
            }
        }
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("power cut"), "{err}");
}

#[tokio::test]
async fn layout_migration_stopped_after_any_step_is_finished_by_the_next_open() {
    let stops = [
        (Step::Copied, 1),
        (Step::Copied, 3),
        (Step::Deleted, 1),
        (Step::Deleted, 4),
        (Step::BeforeMarker, 1),
    ];
    for (at, nth) in stops {
        let dir = tempfile::tempdir().unwrap();
        let old = Layout1::new(30);
        let engine = engine(&dir);
        old.write(engine.db());
        interrupted(engine.db(), at, nth);
        assert_eq!(read_layout(engine.db()).unwrap(), None, "{at:?} {nth}");
        if at == Step::Copied {
            // Stopped again, later: each attempt makes progress or repeats harmless copies.
            interrupted(engine.db(), Step::Deleted, 2);
        }
        drop(engine);
        let engine = self::engine(&dir);
        assert!(matches!(
            prepare(engine.db()).unwrap(),
            Prepared::Migrated { .. }
        ));
        old.check_migrated(&engine).await;
    }
}

#[tokio::test]
async fn layout_marked_database_is_never_scanned_for_layout_1_keys_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    write_marker(engine.db(), LAYOUT);
    // A layout-1 key in a marked database: left alone, and outside group 0's range.
    let log = cf(engine.db(), CF_RAFT_LOG).unwrap();
    engine.db().put_cf(log, 3u64.to_be_bytes(), b"x").unwrap();
    assert_eq!(prepare(engine.db()).unwrap(), Prepared::Marked);
    assert_eq!(layout_1_keys(engine.db()), 1);
    let mut store = LogStore::new(&engine, 0).unwrap();
    assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
}

#[test]
fn layout_newer_than_this_build_is_refused_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    Layout1::new(10).write(engine.db());
    write_marker(engine.db(), 3);
    let err = prepare(engine.db()).unwrap_err();
    assert!(matches!(err, LayoutError::Newer { found: 3 }), "{err:?}");
    assert!(err.to_string().contains("storage layout 3"), "{err}");
    let err = LogStore::new(&engine, 0)
        .err()
        .expect("a newer layout must fail the open");
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("storage layout 3"), "{err}");
    // Nothing was migrated.
    assert_eq!(layout_1_keys(engine.db()), 5 + 3);

    write_marker(engine.db(), 1);
    let err = prepare(engine.db()).unwrap_err();
    assert!(matches!(err, LayoutError::Unknown { found: 1 }), "{err:?}");
    engine
        .db()
        .put_cf(cf(engine.db(), CF_META).unwrap(), META_LAYOUT, [9])
        .unwrap();
    let err = prepare(engine.db()).unwrap_err();
    assert!(matches!(err, LayoutError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("meta/layout"), "{err}");
}
