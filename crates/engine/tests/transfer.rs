//! Whole-state transfer: `export` → `restore` replaces state, an interrupted restore leaves its
//! marker and is redone after reopen, and `digest_at` compares visible states, not histories.

use std::io;

use dolmen_engine::{
    Command, Durability, Engine, EngineOptions, Mutation, ReadError, Record, Section, StorageError,
    Transaction,
};

fn open(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&EngineOptions::new(
        dir.path(),
        vec!["default".into(), "other".into()],
    ))
    .unwrap()
}

fn set(cf: &str, key: &str, value: &str) -> Mutation {
    Mutation::Set {
        cf: cf.into(),
        key: key.into(),
        value: value.into(),
    }
}

fn del(key: &str) -> Mutation {
    Mutation::Delete {
        cf: "default".into(),
        key: key.into(),
    }
}

fn commit(mutations: Vec<Mutation>) -> Command {
    Command::Commit(Transaction {
        read_version: None,
        mutations,
        read_conflicts: Vec::new(),
        idempotency: None,
        stamp: None,
    })
}

fn apply(engine: &Engine, version: u64, command: Command) {
    engine
        .apply_batch(&[(version, command)], Durability::Buffered, &[])
        .unwrap();
}

fn get(engine: &Engine, key: &str) -> Option<Vec<u8>> {
    let v = engine.applied_version();
    engine.get("default", key.as_bytes(), v).unwrap()
}

fn export_all(engine: &Engine) -> Vec<Record> {
    engine.export().unwrap().map(Result::unwrap).collect()
}

/// A source engine with two keys, a deleted key, a second column family and a raised horizon.
fn source(dir: &tempfile::TempDir) -> Engine {
    let e = open(dir);
    apply(
        &e,
        1,
        commit(vec![set("default", "a", "1"), set("default", "gone", "x")]),
    );
    apply(&e, 2, commit(vec![set("other", "o", "2"), del("gone")]));
    e.apply_batch(
        &[(3, Command::Compact { horizon: 2 })],
        Durability::Buffered,
        &[(b"raft/test".to_vec(), b"meta-value".to_vec())],
    )
    .unwrap();
    e
}

#[test]
fn restore_replaces_the_whole_state() {
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = source(&src_dir);
    let records = export_all(&src);
    assert!(records.iter().any(|(s, _, _)| *s == Section::Meta));
    assert!(records.iter().any(|(s, _, _)| *s == Section::Data));

    let dst = open(&dst_dir);
    for v in 1..=7 {
        apply(
            &dst,
            v,
            commit(vec![set("default", &format!("old{v}"), "x")]),
        );
    }
    dst.restore(b"marker", records.into_iter().map(Ok)).unwrap();

    assert_eq!((dst.applied_version(), dst.horizon()), (3, 2));
    assert_eq!(dst.stats().live_keys, 2);
    assert_eq!(get(&dst, "old1"), None, "old keys are gone");
    assert_eq!(get(&dst, "old7"), None);
    assert_eq!(get(&dst, "a"), Some(b"1".to_vec()));
    assert_eq!(get(&dst, "gone"), None);
    assert_eq!(dst.get("other", b"o", 3).unwrap(), Some(b"2".to_vec()));

    assert_eq!(
        dst.read_meta(b"raft/test").unwrap(),
        Some(b"meta-value".to_vec())
    );
    assert_eq!(dst.pending_restore().unwrap(), None);
    assert!(matches!(
        dst.get("default", b"a", 1),
        Err(ReadError::TooOld { .. })
    ));
    assert_eq!(dst.digest_at(3).unwrap(), src.digest_at(3).unwrap());
    // The restored engine keeps applying after the snapshot's version.
    apply(&dst, 4, commit(vec![set("default", "b", "4")]));
    assert_eq!(get(&dst, "b"), Some(b"4".to_vec()));
    // The writer's memory of which keys were live went with the old state: writing an old key
    // again adds a live key (a, o, b and old1), deleting `gone` (absent here) removes none.
    let next = dst.applied_version() + 1;
    apply(
        &dst,
        next,
        commit(vec![set("default", "old1", "y"), del("gone")]),
    );
    assert_eq!(dst.stats().live_keys, 4);
}

#[test]
fn export_reads_one_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = source(&dir);
    let export = e.export().unwrap();
    // Writes after the export started are invisible to it, meta and records alike.
    apply(&e, 4, commit(vec![set("default", "late", "y")]));
    assert_eq!(export.applied_version().unwrap(), 3);
    let records: Vec<Record> = export.map(Result::unwrap).collect();
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = open(&dst_dir);
    dst.restore(b"m", records.into_iter().map(Ok)).unwrap();
    assert_eq!(dst.applied_version(), 3);
    assert_eq!(dst.get("default", b"late", 3).unwrap(), None);
}

#[test]
fn an_interrupted_restore_leaves_its_marker_and_a_redo_completes() {
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = source(&src_dir);
    let records = export_all(&src);
    {
        let dst = open(&dst_dir);
        apply(&dst, 1, commit(vec![set("default", "old", "x")]));
        // The record source fails midway, as a crash or a bad file would.
        let half = records.len() / 2;
        let failing = records
            .iter()
            .take(half)
            .cloned()
            .map(Ok)
            .chain(std::iter::once(Err(io::Error::other("disk gone"))));
        let err = dst.restore(b"snapshots/3.snap", failing).unwrap_err();
        assert!(matches!(err, StorageError::RestoreSource(_)), "{err}");
        assert_eq!(
            dst.pending_restore().unwrap(),
            Some(b"snapshots/3.snap".to_vec())
        );
        // Nobody may observe the half-restored state.
        assert!(matches!(
            dst.get("default", b"a", dst.applied_version()),
            Err(ReadError::Storage(StorageError::RestoreIncomplete { .. }))
        ));
        assert!(dst
            .apply_batch(&[(9, Command::Noop)], Durability::Buffered, &[])
            .is_err());
    }
    // "Crash" and reopen: the marker is still there, and service is still refused.
    let dst = open(&dst_dir);
    assert_eq!(
        dst.pending_restore().unwrap(),
        Some(b"snapshots/3.snap".to_vec())
    );
    assert!(dst.digest_at(0).is_err());
    dst.restore(b"snapshots/3.snap", records.into_iter().map(Ok))
        .unwrap();
    assert_eq!(dst.pending_restore().unwrap(), None);
    assert_eq!(get(&dst, "old"), None);
    assert_eq!(get(&dst, "a"), Some(b"1".to_vec()));
    assert_eq!(dst.digest_at(3).unwrap(), src.digest_at(3).unwrap());
    drop(dst);
    let dst = open(&dst_dir);
    assert_eq!(
        (dst.applied_version(), dst.pending_restore().unwrap()),
        (3, None)
    );
}

#[test]
fn restore_of_many_records_spans_several_batches() {
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = open(&src_dir);
    let value = "v".repeat(50_000);
    for v in 1..=30u64 {
        let mutations = (0..10)
            .map(|i| set("default", &format!("k{v:03}-{i}"), &value))
            .collect();
        apply(&src, v, commit(mutations));
    }
    let dst = open(&dst_dir);
    let export = src.export().unwrap();
    dst.restore(b"m", export.map(|r| r.map_err(io::Error::other)))
        .unwrap();
    assert_eq!(dst.stats().live_keys, 300);
    assert_eq!(dst.digest_at(30).unwrap(), src.digest_at(30).unwrap());
}

#[test]
fn digest_depends_on_visible_content_not_history() {
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Engine 1: direct writes.
    let e1 = open(&d1);
    apply(
        &e1,
        1,
        commit(vec![set("default", "a", "1"), set("other", "b", "2")]),
    );
    apply(&e1, 2, Command::Noop);
    apply(&e1, 3, Command::Noop);
    apply(&e1, 4, Command::Noop);
    // Engine 2: a longer history with overwrites, deletes, compaction and garbage collection.
    let e2 = open(&d2);
    apply(
        &e2,
        1,
        commit(vec![set("default", "a", "0"), set("default", "tmp", "t")]),
    );
    apply(&e2, 2, commit(vec![set("default", "a", "1"), del("tmp")]));
    apply(&e2, 3, commit(vec![set("other", "b", "2")]));
    apply(&e2, 4, Command::Compact { horizon: 3 });
    let before_gc = e2.digest_at(4).unwrap();
    e2.collect_garbage(1000).unwrap();
    assert_eq!(
        e2.digest_at(4).unwrap(),
        before_gc,
        "GC never changes a digest"
    );
    assert_eq!(e1.digest_at(4).unwrap(), e2.digest_at(4).unwrap());
    assert_eq!(e1.digest_at(3).unwrap(), e2.digest_at(3).unwrap());
    // Engine 3: the same keys, one value differs.
    let e3 = open(&d3);
    apply(
        &e3,
        1,
        commit(vec![set("default", "a", "1"), set("other", "b", "3")]),
    );
    apply(&e3, 4, Command::Noop);
    assert_ne!(e1.digest_at(4).unwrap(), e3.digest_at(4).unwrap());
    // The same key and value in another column family is a different state.
    let d4 = tempfile::tempdir().unwrap();
    let e4 = open(&d4);
    apply(
        &e4,
        1,
        commit(vec![set("default", "a", "1"), set("default", "b", "2")]),
    );
    apply(&e4, 4, Command::Noop);
    assert_ne!(e1.digest_at(4).unwrap(), e4.digest_at(4).unwrap());
}

#[test]
fn digest_refuses_versions_outside_the_retained_range() {
    let dir = tempfile::tempdir().unwrap();
    let e = source(&dir);
    assert!(matches!(
        e.digest_at(4),
        Err(StorageError::VersionOutOfRange {
            version: 4,
            horizon: 2,
            applied: 3
        })
    ));
    assert!(matches!(
        e.digest_at(1),
        Err(StorageError::VersionOutOfRange { .. })
    ));
    // The horizon itself is readable, and differs from the state at 3 only where data does.
    assert_eq!(e.digest_at(2).unwrap(), e.digest_at(3).unwrap());
}
