//! Commits across groups in one participant's engine (docs/sharding.md §6.3–§6.5): a prepare
//! checks read conflicts over `(R, ∞)` and holds its locks in replicated state; locks refuse
//! other transactions' overlapping writes and reads; a resolve writes the piece at the commit
//! version, possibly below the versions applied since, and releases the locks; the horizon
//! never passes a lock's stamp; group 0 records the first decision and answers a retried token
//! with its first outcome. Everything reopens from `meta`.

use dolmen_engine::{
    Command, Decide, Durability, Engine, EngineOptions, IdempotencyToken, KeyRange, KeySpan,
    Mutation, Outcome, Prepare, Transaction, TxId, Version,
};

fn options(dir: &tempfile::TempDir) -> EngineOptions {
    EngineOptions::new(dir.path(), vec!["default".into(), "other".into()])
}

/// Group 2 over `["m", +∞)` of `base`'s database.
fn group(base: &Engine) -> Engine {
    base.open_group(2, KeySpan::new(b"m".to_vec(), None).unwrap())
        .unwrap()
}

fn set(key: &str, value: &str) -> Mutation {
    Mutation::Set {
        cf: "default".into(),
        key: key.into(),
        value: value.into(),
    }
}

fn apply(engine: &Engine, version: Version, command: Command) -> Outcome {
    engine
        .apply_batch(&[(version, command)], Durability::Buffered, &[])
        .unwrap()
        .remove(0)
}

fn commit(read_version: Option<Version>, mutations: Vec<Mutation>, reads: &[&str]) -> Command {
    Command::Commit(Transaction {
        read_version,
        mutations,
        read_conflicts: reads
            .iter()
            .map(|k| KeyRange::single("default", k.as_bytes()))
            .collect(),
        ..Transaction::default()
    })
}

fn prepare(txid: TxId, stamp: Version, piece: Vec<Mutation>, reads: &[&str]) -> Command {
    Command::Prepare(Prepare {
        txid,
        stamp,
        read_version: Some(stamp),
        piece: piece
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i as u32 * 2, m))
            .collect(),
        read_conflicts: reads
            .iter()
            .map(|k| KeyRange::single("default", k.as_bytes()))
            .collect(),
    })
}

fn resolve(txid: TxId, stamp: Version, commit: Option<Version>) -> Command {
    Command::Resolve {
        txid,
        stamp,
        commit,
    }
}

fn get(engine: &Engine, key: &str, version: Version) -> Option<Vec<u8>> {
    engine.get("default", key.as_bytes(), version).unwrap()
}

#[test]
fn a_resolved_piece_lands_at_its_commit_version_below_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    let g = group(&base);
    assert_eq!(
        apply(&g, 10, commit(None, vec![set("p", "old")], &[])),
        Outcome::Committed { version: 10 }
    );
    let t = [1; 16];
    // Prepared at stamp 20 (the versions reached stay: a prepare takes none of its own).
    let piece = prepare(t, 20, vec![set("p", "new"), set("q", "new")], &["r"]);
    assert_eq!(apply(&g, 10, piece.clone()), Outcome::Prepared);
    assert_eq!(g.locks().len(), 1);
    // A retried prepare of the same transaction is answered the same, nothing doubled.
    assert_eq!(apply(&g, 10, piece), Outcome::Prepared);
    assert_eq!(g.locks().len(), 1);
    // Other transactions: a write under its write lock, a write under its read lock, and a
    // read of its writes are refused; an unrelated write goes through (at 40, above C = 30).
    for (version, refused) in [
        (37, commit(None, vec![set("p", "x")], &[])),
        (38, commit(None, vec![set("r", "x")], &[])),
        (39, commit(Some(15), vec![set("s", "x")], &["q"])),
    ] {
        assert!(matches!(
            apply(&g, version, refused),
            Outcome::Locked { .. }
        ));
    }
    assert_eq!(
        apply(&g, 40, commit(Some(15), vec![set("s", "x")], &["r"])),
        Outcome::Committed { version: 40 }
    );
    // Commit at 30: below the group's applied version 40, only on the keys it held.
    assert_eq!(apply(&g, 40, resolve(t, 20, Some(30))), Outcome::Applied);
    assert!(g.locks().is_empty());
    assert_eq!(g.applied_version(), 40);
    assert_eq!(get(&g, "p", 29), Some(b"old".to_vec()));
    assert_eq!(get(&g, "p", 30), Some(b"new".to_vec()));
    assert_eq!(get(&g, "q", 29), None);
    assert_eq!(get(&g, "q", 40), Some(b"new".to_vec()));
    // The resolve is idempotent, and a late prepare of the transaction holds nothing.
    assert_eq!(apply(&g, 40, resolve(t, 20, Some(30))), Outcome::Applied);
    assert_eq!(
        apply(&g, 40, prepare(t, 20, vec![set("p", "new")], &[])),
        Outcome::AlreadyResolved
    );
    assert!(g.locks().is_empty());
    assert_eq!(get(&g, "p", 40), Some(b"new".to_vec()));
}

#[test]
fn a_prepare_checks_its_reads_over_everything_applied_after_its_read_version() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    let g = group(&base);
    apply(&g, 10, commit(None, vec![set("p", "1")], &[]));
    apply(&g, 50, commit(None, vec![set("p", "2")], &[]));
    // Read at 20: the write at 50 is after it, whatever the commit version will be.
    let refused = apply(&g, 50, prepare([2; 16], 20, vec![set("q", "x")], &["p"]));
    assert_eq!(
        refused,
        Outcome::Conflict {
            cf: "default".into(),
            key: b"p".to_vec()
        }
    );
    assert!(g.locks().is_empty(), "a refused prepare holds nothing");
    // Two transactions' prepares on one key: the second is refused, not queued (no deadlock).
    assert_eq!(
        apply(&g, 50, prepare([3; 16], 60, vec![set("q", "x")], &[])),
        Outcome::Prepared
    );
    assert!(matches!(
        apply(&g, 50, prepare([4; 16], 60, vec![set("q", "y")], &[])),
        Outcome::Locked { .. }
    ));
    // Read locks share: two transactions may read one key.
    assert_eq!(
        apply(&g, 50, prepare([5; 16], 60, vec![set("s", "1")], &["p"])),
        Outcome::Prepared
    );
    assert_eq!(
        apply(&g, 50, prepare([6; 16], 60, vec![set("t", "1")], &["p"])),
        Outcome::Prepared
    );
    // A piece outside the group's span is refused.
    assert!(matches!(
        apply(&g, 50, prepare([7; 16], 60, vec![set("a", "1")], &[])),
        Outcome::Rejected(_)
    ));
    // Aborts drop the pieces.
    for t in [[3; 16], [5; 16], [6; 16]] {
        apply(&g, 50, resolve(t, 60, None));
    }
    assert!(g.locks().is_empty());
    assert_eq!(get(&g, "q", 50), None);
}

#[test]
fn the_horizon_waits_for_the_oldest_lock_and_forgets_the_done_records_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    let g = group(&base);
    apply(&g, 10, commit(None, vec![set("p", "1")], &[]));
    let (old, young) = ([8; 16], [9; 16]);
    apply(&g, 10, prepare(old, 100, vec![set("q", "x")], &[]));
    apply(&g, 10, resolve(old, 100, None));
    apply(&g, 10, prepare(young, 200, vec![set("r", "x")], &[]));
    // The lock of stamp 200 holds the horizon there.
    apply(&g, 500, Command::Compact { horizon: 400 });
    assert_eq!(g.horizon(), 200);
    // A prepare whose stamp is below the horizon is too old.
    assert!(matches!(
        apply(&g, 500, prepare([10; 16], 150, vec![set("s", "x")], &[])),
        Outcome::TooOld { .. }
    ));
    // The done record of stamp 100 was passed: a late prepare of that transaction is too old,
    // never prepared again.
    assert!(matches!(
        apply(&g, 500, prepare(old, 100, vec![set("q", "x")], &[])),
        Outcome::TooOld { .. }
    ));
    // Once resolved, the horizon moves on.
    apply(&g, 500, resolve(young, 200, Some(300)));
    apply(&g, 600, Command::Compact { horizon: 400 });
    assert_eq!(g.horizon(), 400);
    assert_eq!(get(&g, "r", 400), Some(b"x".to_vec()));
}

#[test]
fn locks_and_decisions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = [11; 16];
    {
        let base = Engine::open(&options(&dir)).unwrap();
        let g = group(&base);
        apply(&g, 10, prepare(t, 10, vec![set("p", "x")], &[]));
        let decided = apply(
            &base,
            5,
            Command::Decide(Decide {
                txid: t,
                idempotency: None,
                outcome: Outcome::Committed { version: 30 },
            }),
        );
        assert_eq!(
            decided,
            Outcome::Decided {
                commit: Some(30),
                answer: Box::new(Outcome::Committed { version: 30 })
            }
        );
    }
    let base = Engine::open(&options(&dir)).unwrap();
    let g = group(&base);
    assert_eq!(g.locks().len(), 1, "the lock table is rebuilt from meta");
    assert!(matches!(
        apply(&g, 40, commit(None, vec![set("p", "y")], &[])),
        Outcome::Locked { .. }
    ));
    let (commit, _) = base.decision(&t).unwrap().expect("recorded");
    assert_eq!(commit, Some(30));
    apply(&g, 40, resolve(t, 10, commit));
    assert_eq!(get(&g, "p", 30), Some(b"x".to_vec()));
    // Forgotten once every participant resolved.
    apply(&base, 5, Command::Forget { txid: t });
    assert_eq!(base.decision(&t).unwrap(), None);
}

#[test]
fn the_first_decision_wins_and_a_token_answers_its_first_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    let token = IdempotencyToken {
        client_id: b"c".to_vec(),
        sequence: 3,
    };
    let decide = |txid: TxId, outcome: Outcome, token: Option<IdempotencyToken>| {
        Command::Decide(Decide {
            txid,
            idempotency: token,
            outcome,
        })
    };
    let committed = Outcome::Committed { version: 70 };
    let aborted = Outcome::Aborted {
        reason: "orphan".into(),
    };
    // An orphan's resolver came first: the coordinator's commit is answered with the abort.
    assert_eq!(
        apply(&base, 5, decide([1; 16], aborted.clone(), None)),
        Outcome::Decided {
            commit: None,
            answer: Box::new(aborted.clone())
        }
    );
    assert_eq!(
        apply(
            &base,
            5,
            decide([1; 16], committed.clone(), Some(token.clone()))
        ),
        Outcome::Decided {
            commit: None,
            answer: Box::new(aborted)
        }
    );
    // A decision with a token commits once; a retry (another txid, same token) aborts its own
    // attempt and answers the first outcome.
    assert_eq!(
        apply(
            &base,
            5,
            decide([2; 16], committed.clone(), Some(token.clone()))
        ),
        Outcome::Decided {
            commit: Some(70),
            answer: Box::new(committed.clone())
        }
    );
    assert_eq!(
        apply(
            &base,
            5,
            decide(
                [3; 16],
                Outcome::Committed { version: 90 },
                Some(token.clone())
            )
        ),
        Outcome::Decided {
            commit: None,
            answer: Box::new(committed)
        }
    );
    // An older sequence is refused.
    let stale = IdempotencyToken {
        sequence: 2,
        ..token
    };
    assert!(matches!(
        apply(&base, 5, decide([4; 16], Outcome::Committed { version: 95 }, Some(stale))),
        Outcome::Decided { commit: None, answer } if matches!(*answer, Outcome::Rejected(_))
    ));
}

#[test]
fn a_versionstamped_key_is_written_only_by_the_group_it_lands_in() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    // Split inside the keys `log/ ‖ stamp` can become: group 2 owns those above `log/\x00\x00…\x01`.
    let split = [b"log/".as_slice(), &[0, 0, 0, 0, 0, 0, 0, 1]].concat();
    let low = base
        .open_group(1, KeySpan::new(Vec::new(), Some(split.clone())).unwrap())
        .unwrap();
    let high = base
        .open_group(2, KeySpan::new(split, None).unwrap())
        .unwrap();
    let buffer = [b"log/".as_slice(), &[0; 10]].concat();
    let stamped = Mutation::SetVersionstampedKey {
        cf: "default".into(),
        key: buffer,
        value: b"v".to_vec(),
    };
    let t = [12; 16];
    for g in [&low, &high] {
        assert_eq!(
            apply(g, 10, prepare(t, 10, vec![stamped.clone()], &[])),
            Outcome::Prepared
        );
    }
    // Commit version 2^56: the key is `log/ ‖ 01 00 … ‖ 00 00`, in group 2 only.
    let version: Version = 1 << 56;
    for g in [&low, &high] {
        // Above the version reached: the entry applies at the commit version (invariant 5).
        apply(g, version, resolve(t, 10, Some(version)));
    }
    let key = [b"log/".as_slice(), &version.to_be_bytes(), &[0, 0]].concat();
    assert_eq!(
        high.get("default", &key, version).unwrap(),
        Some(b"v".to_vec())
    );
    let limits = dolmen_engine::ScanLimits {
        skip: 0,
        ask: None,
        budget: dolmen_engine::ByteBudget::new(None),
    };
    let low_end = low.span().end.clone().unwrap();
    let page = low
        .scan("default", b"", &low_end, version, &limits)
        .unwrap();
    assert!(
        page.pairs.is_empty(),
        "the other group wrote nothing: {page:?}"
    );
}

#[test]
fn a_large_clear_resolved_below_the_applied_version_is_undone_whole_when_its_batch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let base = Engine::open(&options(&dir)).unwrap();
    // Chunks of two keys: clearing five keys spills chunks ahead of the batch.
    let g = group(&base).with_clear_range_chunk_keys(2);
    let keys = ["m1", "m2", "m3", "m4", "m5"];
    apply(
        &g,
        10,
        commit(None, keys.iter().map(|k| set(k, "v")).collect(), &[]),
    );
    let t = [13; 16];
    let clear = Mutation::ClearRange {
        cf: "default".into(),
        begin: b"m".to_vec(),
        end: b"n".to_vec(),
    };
    apply(&g, 10, prepare(t, 10, vec![clear], &[]));
    apply(&g, 50, commit(None, vec![set("z", "later")], &[]));
    // The resolve at 30 fails after one spilled chunk: none of it may stay.
    g.fail_clear_range_after_chunks(Some(1));
    assert!(g
        .apply_batch(&[(50, resolve(t, 10, Some(30)))], Durability::Buffered, &[])
        .is_err());
    g.fail_clear_range_after_chunks(None);
    drop(g);
    let g = group(&base);
    for key in keys {
        assert_eq!(
            get(&g, key, 50),
            Some(b"v".to_vec()),
            "{key} at 50 after recovery"
        );
    }
    assert_eq!(g.locks().len(), 1, "the lock is still held");
    // Applied again, whole.
    apply(&g, 50, resolve(t, 10, Some(30)));
    for key in keys {
        assert_eq!(get(&g, key, 29), Some(b"v".to_vec()));
        assert_eq!(get(&g, key, 30), None);
    }
}
