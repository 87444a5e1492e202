//! Transaction semantics the model test does not cover: idempotent retries, conflicts between
//! commands of one batch, too-old and future read versions, unknown column families.

use dolmen_engine::{
    Command, Durability, Engine, EngineOptions, IdempotencyToken, Invalid, KeyRange, Mutation,
    Outcome, Transaction,
};

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap()
}

fn set(key: &str, value: &str) -> Mutation {
    Mutation::Set {
        cf: "default".into(),
        key: key.into(),
        value: value.into(),
    }
}

fn tx(read_version: Option<u64>, mutations: Vec<Mutation>, conflicts: &[&str]) -> Command {
    Command::Commit(Transaction {
        read_version,
        mutations,
        read_conflicts: conflicts
            .iter()
            .map(|k| KeyRange::single("default", k.as_bytes()))
            .collect(),
        idempotency: None,
        stamp: None,
    })
}

#[test]
fn a_write_earlier_in_the_same_batch_conflicts_with_a_later_reader() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let out = e
        .apply_batch(
            &[
                (1, tx(None, vec![set("k", "a")], &[])),
                (2, tx(Some(0), vec![set("x", "b")], &["k"])),
                (3, tx(Some(1), vec![set("y", "c")], &["k"])),
            ],
            Durability::Buffered,
            &[],
        )
        .unwrap();
    assert_eq!(out[0], Outcome::Committed { version: 1 });
    assert!(
        matches!(out[1], Outcome::Conflict { .. }),
        "read at 0, k written at 1: {:?}",
        out[1]
    );
    assert_eq!(out[2], Outcome::Committed { version: 3 });
    assert_eq!(
        e.get("default", b"x", 3).unwrap(),
        None,
        "a conflicting commit applies nothing"
    );
    assert_eq!(e.get("default", b"y", 3).unwrap(), Some(b"c".to_vec()));
}

#[test]
fn the_planted_bug_skip_conflict_check_lets_a_conflicting_commit_write() {
    // `[faults] unsafe_skip_conflict_check` (test-only): the same batch as above, but the
    // commit whose read of k was overwritten writes anyway (a lost update).
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path(), vec!["default".into()]);
    options.unsafe_skip_conflict_check = true;
    let e = Engine::open(&options).unwrap();
    let out = e
        .apply_batch(
            &[
                (1, tx(None, vec![set("k", "a")], &[])),
                (2, tx(Some(0), vec![set("x", "b")], &["k"])),
                (3, tx(Some(3), vec![set("y", "c")], &["k"])),
            ],
            Durability::Buffered,
            &[],
        )
        .unwrap();
    assert_eq!(out[1], Outcome::Committed { version: 2 });
    assert_eq!(e.get("default", b"x", 3).unwrap(), Some(b"b".to_vec()));
    assert!(
        matches!(out[2], Outcome::Rejected(_)),
        "a read version at or after the commit version is still refused: {:?}",
        out[2]
    );
}

#[test]
fn a_retried_commit_returns_its_first_outcome_and_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let with_token = |seq: u64, value: &str| {
        Command::Commit(Transaction {
            mutations: vec![set("counter", value)],
            idempotency: Some(IdempotencyToken {
                client_id: b"client-1".to_vec(),
                sequence: seq,
            }),
            ..Transaction::default()
        })
    };
    let first = e
        .apply_batch(&[(1, with_token(7, "a"))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(first, vec![Outcome::Committed { version: 1 }]);
    // The retry carries different bytes on purpose: it must not apply at all.
    let retry = e
        .apply_batch(&[(2, with_token(7, "b"))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(retry, vec![Outcome::Committed { version: 1 }]);
    assert_eq!(
        e.get("default", b"counter", 2).unwrap(),
        Some(b"a".to_vec())
    );
    // The table survives a restart.
    drop(e);
    let e = engine(&dir);
    let retry = e
        .apply_batch(&[(3, with_token(7, "c"))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(retry, vec![Outcome::Committed { version: 1 }]);
    let stale = e
        .apply_batch(&[(4, with_token(6, "d"))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(
        stale,
        vec![Outcome::Rejected(Invalid::StaleSequence {
            sequence: 6,
            latest: 7
        })]
    );
    let next = e
        .apply_batch(&[(5, with_token(8, "e"))], Durability::Sync, &[])
        .unwrap();
    assert_eq!(next, vec![Outcome::Committed { version: 5 }]);
}

#[test]
fn too_old_future_and_unknown_column_family_apply_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    e.apply_batch(
        &[
            (1, tx(None, vec![set("k", "a")], &[])),
            (2, Command::Compact { horizon: 1 }),
        ],
        Durability::Buffered,
        &[],
    )
    .unwrap();
    let out = e
        .apply_batch(
            &[
                (3, tx(Some(0), vec![set("a", "1")], &["k"])),
                (4, tx(Some(9), vec![set("b", "1")], &[])),
                (
                    5,
                    Command::Commit(Transaction {
                        mutations: vec![Mutation::Set {
                            cf: "nope".into(),
                            key: b"c".to_vec(),
                            value: b"1".to_vec(),
                        }],
                        ..Transaction::default()
                    }),
                ),
                // Without conflict keys an old read version is fine (a blind write).
                (6, tx(Some(0), vec![set("d", "1")], &[])),
            ],
            Durability::Buffered,
            &[],
        )
        .unwrap();
    assert_eq!(
        out[0],
        Outcome::TooOld {
            read_version: 0,
            horizon: 1
        }
    );
    assert!(matches!(
        out[1],
        Outcome::Rejected(Invalid::FutureReadVersion { .. })
    ));
    assert!(matches!(
        out[2],
        Outcome::Rejected(Invalid::UnknownColumnFamily { .. })
    ));
    assert_eq!(out[3], Outcome::Committed { version: 6 });
    for key in ["a", "b", "c"] {
        assert_eq!(
            e.get("default", key.as_bytes(), 6).unwrap(),
            None,
            "{key} must not exist"
        );
    }
    assert!(
        e.get("default", b"k", 0).is_err(),
        "version 0 is below the horizon"
    );
}

#[test]
fn commands_other_than_commits_may_repeat_the_version_reached_and_the_oracle_bound_never_lowers() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let bound = |b| Command::OracleBound { bound: b };
    e.apply_batch(
        &[
            (5, tx(None, vec![set("k", "a")], &[])),
            // Write no data at a version: they apply at the version reached.
            (5, bound(100)),
            (5, Command::Noop),
            (5, bound(40)),
        ],
        Durability::Buffered,
        &[],
    )
    .unwrap();
    assert_eq!((e.applied_version(), e.oracle_bound().unwrap()), (5, 100));
    // A commit at the version reached, or anything below it, is refused whole.
    for (version, command) in [(5, tx(None, vec![set("k", "b")], &[])), (4, Command::Noop)] {
        let err = e
            .apply_batch(&[(version, command)], Durability::Buffered, &[])
            .unwrap_err();
        assert!(err.to_string().contains("does not follow"), "{err}");
    }
    e.apply_batch(&[(6, bound(200))], Durability::Buffered, &[])
        .unwrap();
    drop(e);
    // Persisted with its batch.
    let e = engine(&dir);
    assert_eq!((e.applied_version(), e.oracle_bound().unwrap()), (6, 200));
    assert_eq!(e.get("default", b"k", 6).unwrap(), Some(b"a".to_vec()));
}
