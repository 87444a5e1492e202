//! `ClearRange` in bounded memory (docs/engine-format.md, Clearing a range; invariants 10–12):
//! a clear over more keys than one chunk, reads before and after it, later commands of the same
//! batch that read and write its keys, conflicts across it, and a batch that fails after some
//! chunks (as a crash there would stop it) recovered at reopen, at the next batch and through a
//! snapshot export.

use dolmen_engine::{
    Command, Durability, Engine, EngineOptions, KeyRange, Mutation, Outcome, StorageError,
    Transaction, Version,
};

/// Keys loaded under `k`: 7 chunks of [`CHUNK`] and a partial one.
const KEYS: u32 = 30;
const CHUNK: usize = 4;

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()]))
        .unwrap()
        .with_clear_range_chunk_keys(CHUNK)
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

fn set(key: &[u8], value: &[u8]) -> Mutation {
    Mutation::Set {
        cf: "default".into(),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn clear(begin: &[u8], end: &[u8]) -> Mutation {
    Mutation::ClearRange {
        cf: "default".into(),
        begin: begin.to_vec(),
        end: end.to_vec(),
    }
}

fn tx(read_version: Option<Version>, mutations: Vec<Mutation>, conflicts: &[&[u8]]) -> Command {
    Command::Commit(Transaction {
        read_version,
        mutations,
        read_conflicts: conflicts
            .iter()
            .map(|k| KeyRange::single("default", k))
            .collect(),
        idempotency: None,
        stamp: None,
    })
}

/// Version 1: `k00`..`k29` and two keys around them (`a`, `z`).
fn load(e: &Engine) {
    let mut writes: Vec<Mutation> = (0..KEYS).map(|i| set(&key(i), b"v")).collect();
    writes.push(set(b"a", b"outside"));
    writes.push(set(b"z", b"outside"));
    let out = e
        .apply_batch(&[(1, tx(None, writes, &[]))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(out, vec![Outcome::Committed { version: 1 }]);
}

fn live_keys(e: &Engine) -> u64 {
    e.stats().live_keys
}

/// Every `data` and `meta` record (byte for byte).
fn records(e: &Engine) -> Vec<dolmen_engine::Record> {
    e.export().unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_clear_over_many_chunks_hides_the_keys_from_its_version_on_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    let out = e
        .apply_batch(
            &[(2, tx(None, vec![clear(b"k", b"l")], &[]))],
            Durability::Sync,
            &[],
        )
        .unwrap();
    assert_eq!(out, vec![Outcome::Committed { version: 2 }]);
    for i in 0..KEYS {
        assert_eq!(e.get("default", &key(i), 1).unwrap(), Some(b"v".to_vec()));
        assert_eq!(e.get("default", &key(i), 2).unwrap(), None, "k{i:02} at 2");
    }
    assert_eq!(
        e.get("default", b"a", 2).unwrap(),
        Some(b"outside".to_vec())
    );
    assert_eq!(
        e.get("default", b"z", 2).unwrap(),
        Some(b"outside".to_vec())
    );
    assert_eq!(live_keys(&e), 2);
    assert!(
        !records(&e)
            .iter()
            .any(|(_, k, _)| k.starts_with(b"clear_pending/")),
        "a finished batch leaves no marker"
    );
    // The same after a reopen, and a second clear of the same range writes nothing.
    drop(e);
    let e = engine(&dir);
    assert_eq!(live_keys(&e), 2);
    e.apply_batch(
        &[(3, tx(None, vec![clear(b"k", b"l")], &[]))],
        Durability::Sync,
        &[],
    )
    .unwrap();
    let out = e
        .apply_batch(
            &[(4, tx(Some(2), vec![], &[b"k03"]))],
            Durability::Sync,
            &[],
        )
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Committed { version: 4 }],
        "a clear writes no tombstone over a key that is already gone"
    );
    assert_eq!(live_keys(&e), 2);
}

#[test]
fn later_commands_of_the_same_batch_see_the_spilled_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    let out = e
        .apply_batch(
            &[
                // `k01` written earlier in the batch (in the overlay), then cleared with the rest.
                (
                    2,
                    tx(None, vec![set(&key(1), b"new"), clear(b"k", b"l")], &[]),
                ),
                // Re-creates one cleared key, deletes another one again.
                (
                    3,
                    tx(
                        None,
                        vec![
                            set(&key(5), b"again"),
                            Mutation::Delete {
                                cf: "default".into(),
                                key: key(6),
                            },
                        ],
                        &[],
                    ),
                ),
                // Read at 1: `k07` was cleared at 2 (a spilled chunk, gone from the live cache).
                (4, tx(Some(1), vec![set(b"x", b"1")], &[&key(7)])),
                // Read at 2: nothing newer than 2 on `k07`.
                (5, tx(Some(2), vec![set(b"y", b"1")], &[&key(7)])),
                // Read at 3: `k05` was written at 3, in the overlay.
                (6, tx(Some(2), vec![set(b"w", b"1")], &[&key(5)])),
            ],
            Durability::Sync,
            &[],
        )
        .unwrap();
    assert_eq!(out[0], Outcome::Committed { version: 2 });
    assert_eq!(out[1], Outcome::Committed { version: 3 });
    assert_eq!(
        out[2],
        Outcome::Conflict {
            cf: "default".into(),
            key: key(7)
        }
    );
    assert_eq!(out[3], Outcome::Committed { version: 5 });
    assert!(matches!(out[4], Outcome::Conflict { .. }), "{:?}", out[4]);
    assert_eq!(e.get("default", &key(1), 1).unwrap(), Some(b"v".to_vec()));
    assert_eq!(e.get("default", &key(1), 2).unwrap(), None);
    assert_eq!(e.get("default", &key(5), 2).unwrap(), None);
    assert_eq!(
        e.get("default", &key(5), 3).unwrap(),
        Some(b"again".to_vec())
    );
    // a, z, k05, y: the second delete of k06 counted nothing.
    assert_eq!(live_keys(&e), 4);
    // A range conflict across the cleared keys, in a later batch.
    let out = e
        .apply_batch(
            &[(
                7,
                Command::Commit(Transaction {
                    read_version: Some(1),
                    mutations: vec![],
                    read_conflicts: vec![KeyRange {
                        cf: "default".into(),
                        begin: b"k20".to_vec(),
                        end: b"k22".to_vec(),
                    }],
                    idempotency: None,
                    stamp: None,
                }),
            )],
            Durability::Sync,
            &[],
        )
        .unwrap();
    assert!(matches!(out[0], Outcome::Conflict { .. }), "{:?}", out[0]);
}

/// The batch the crash tests apply: the clear, then a write inside the cleared range.
fn clear_batch() -> Vec<(Version, Command)> {
    vec![
        (2, tx(None, vec![clear(b"k", b"l")], &[])),
        (3, tx(Some(1), vec![set(&key(3), b"after")], &[&key(9)])),
    ]
}

/// The same batch applied to a fresh engine with no failure.
fn clean_apply() -> (tempfile::TempDir, Engine, Vec<Outcome>) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    let out = e
        .apply_batch(&clear_batch(), Durability::Sync, &[])
        .unwrap();
    (dir, e, out)
}

/// Applies [`clear_batch`] with the hook set to fail after `chunks` chunks.
fn fail_after(e: &Engine, chunks: u64) {
    e.fail_clear_range_after_chunks(Some(chunks));
    let err = e
        .apply_batch(&clear_batch(), Durability::Sync, &[])
        .unwrap_err();
    e.fail_clear_range_after_chunks(None);
    assert!(matches!(err, StorageError::Injected { .. }), "{err}");
    assert_eq!(e.applied_version(), 1, "nothing was published");
    for i in 0..KEYS {
        assert_eq!(e.get("default", &key(i), 1).unwrap(), Some(b"v".to_vec()));
    }
}

#[test]
fn a_batch_that_fails_after_some_chunks_reapplies_after_reopen_exactly_as_a_clean_one() {
    let (_clean_dir, clean, clean_out) = clean_apply();
    assert_eq!(
        clean_out[1],
        Outcome::Conflict {
            cf: "default".into(),
            key: key(9)
        }
    );
    for chunks in [1, 3, 7] {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir);
        load(&e);
        fail_after(&e, chunks);
        drop(e);
        // Replicated: the same entries again from the Raft log.
        let e = engine(&dir);
        assert_eq!(e.applied_version(), 1);
        assert_eq!(live_keys(&e), u64::from(KEYS) + 2);
        let out = e
            .apply_batch(&clear_batch(), Durability::Sync, &[])
            .unwrap();
        assert_eq!(out, clean_out, "after failing at chunk {chunks}");
        assert_eq!(live_keys(&e), live_keys(&clean));
        assert_eq!(e.digest_at(3).unwrap(), clean.digest_at(3).unwrap());
        assert!(
            records(&e) == records(&clean),
            "the same bytes in data and meta after failing at chunk {chunks} (invariant 6)"
        );
    }
}

/// Standalone: the version of the lost batch goes to another command, which must not inherit
/// the lost clear's tombstones.
fn a_different_command_at_the_same_version_sees_no_leftover(e: &Engine) {
    let out = e
        .apply_batch(
            &[(2, tx(None, vec![set(b"other", b"1")], &[]))],
            Durability::Sync,
            &[],
        )
        .unwrap();
    assert_eq!(out, vec![Outcome::Committed { version: 2 }]);
    for i in 0..KEYS {
        assert_eq!(
            e.get("default", &key(i), 2).unwrap(),
            Some(b"v".to_vec()),
            "k{i:02} at 2"
        );
    }
    assert_eq!(live_keys(e), u64::from(KEYS) + 3);
    assert!(
        !records(e)
            .iter()
            .any(|(_, k, _)| k.starts_with(b"clear_pending/")),
        "recovery removes the markers"
    );
}

#[test]
fn standalone_after_a_failed_clear_the_next_command_at_its_version_is_unaffected_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    fail_after(&e, 2);
    drop(e);
    let e = engine(&dir);
    a_different_command_at_the_same_version_sees_no_leftover(&e);
}

#[test]
fn without_a_reopen_the_next_batch_recovers_first() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    fail_after(&e, 2);
    a_different_command_at_the_same_version_sees_no_leftover(&e);
}

#[test]
fn a_snapshot_exported_between_chunks_restores_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    load(&e);
    fail_after(&e, 2);
    let exported = records(&e);
    assert!(
        exported
            .iter()
            .any(|(_, k, _)| k.starts_with(b"clear_pending/")),
        "the export carries the chunks and their marker"
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = engine(&other_dir);
    other
        .restore(b"test", exported.into_iter().map(Ok))
        .unwrap();
    assert_eq!(other.applied_version(), 1);
    a_different_command_at_the_same_version_sees_no_leftover(&other);
}
