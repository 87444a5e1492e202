//! Several Raft groups over one database (docs/sharding.md §7): each group's engine handle has
//! its own applied version, horizon and idempotency table under its own `meta` keys, and owns
//! its span of the shared `data`: exports, restores, digests and garbage collection of one
//! group never touch another's state, and group 0 keeps the keys of layout 1.

use dolmen_engine::{
    Command, Durability, Engine, EngineOptions, IdempotencyToken, KeyRange, KeySpan, Mutation,
    Outcome, Record, Section, StorageError, Transaction,
};

fn open(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&EngineOptions::new(
        dir.path(),
        vec!["default".into(), "other".into()],
    ))
    .unwrap()
}

/// Groups 1 (`["", "m")`) and 2 (`["m", +∞)`) over `base`'s database.
fn groups(base: &Engine) -> (Engine, Engine) {
    let low = KeySpan::new(Vec::new(), Some(b"m".to_vec())).unwrap();
    let high = KeySpan::new(b"m".to_vec(), None).unwrap();
    (
        base.open_group(1, low).unwrap(),
        base.open_group(2, high).unwrap(),
    )
}

fn set(cf: &str, key: &str, value: &str) -> Mutation {
    Mutation::Set {
        cf: cf.into(),
        key: key.into(),
        value: value.into(),
    }
}

fn commit(mutations: Vec<Mutation>, token: Option<(&str, u64)>) -> Command {
    Command::Commit(Transaction {
        mutations,
        idempotency: token.map(|(client, sequence)| IdempotencyToken {
            client_id: client.as_bytes().to_vec(),
            sequence,
        }),
        ..Transaction::default()
    })
}

fn apply(engine: &Engine, version: u64, command: Command) -> Outcome {
    engine
        .apply_batch(&[(version, command)], Durability::Buffered, &[])
        .unwrap()
        .remove(0)
}

fn get(engine: &Engine, cf: &str, key: &str, version: u64) -> Option<Vec<u8>> {
    engine.get(cf, key.as_bytes(), version).unwrap()
}

#[test]
fn groups_apply_their_own_versions_and_idempotency_tables_and_reopen_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let base = open(&dir);
        let (low, high) = groups(&base);
        // Versions interleave across groups: each group only orders its own.
        apply(
            &low,
            100,
            commit(vec![set("default", "a", "1")], Some(("c", 1))),
        );
        apply(
            &high,
            90,
            commit(vec![set("other", "x", "2")], Some(("c", 1))),
        );
        // The same token in another group is another client's first commit, not a retry.
        assert_eq!(
            (
                low.applied_version(),
                high.applied_version(),
                base.applied_version()
            ),
            (100, 90, 0)
        );
        assert_eq!(
            (low.idempotency_entries(), high.idempotency_entries()),
            (1, 1)
        );
        // A retry in group 1 answers its first outcome and applies nothing.
        assert_eq!(
            apply(
                &low,
                101,
                commit(vec![set("default", "a", "again")], Some(("c", 1)))
            ),
            Outcome::Committed { version: 100 }
        );
        // Each group reads its keys at its own versions (a version its handle has not applied
        // is a future version there).
        assert_eq!(get(&low, "default", "a", 101), Some(b"1".to_vec()));
        assert_eq!(get(&high, "other", "x", 90), Some(b"2".to_vec()));
        assert!(base.get("default", b"a", 101).is_err());
        // Each group's Raft metadata is its own.
        low.apply_batch(
            &[(102, Command::Noop)],
            Durability::Buffered,
            &[(b"raft/last_applied".to_vec(), b"low".to_vec())],
        )
        .unwrap();
        assert_eq!(
            low.read_meta(b"raft/last_applied").unwrap(),
            Some(b"low".to_vec())
        );
        assert_eq!(high.read_meta(b"raft/last_applied").unwrap(), None);
        assert_eq!(base.read_meta(b"raft/last_applied").unwrap(), None);
    }
    let base = open(&dir);
    let (low, high) = groups(&base);
    assert_eq!(
        (
            low.applied_version(),
            high.applied_version(),
            base.applied_version()
        ),
        (102, 90, 0)
    );
    assert_eq!(
        (low.idempotency_entries(), high.idempotency_entries()),
        (1, 1)
    );
    assert_eq!(
        low.read_meta(b"raft/last_applied").unwrap(),
        Some(b"low".to_vec())
    );
    assert!(matches!(
        base.open_group(0, KeySpan::all()),
        Err(StorageError::InvalidScope(_))
    ));
}

#[test]
fn an_export_and_a_restore_of_one_group_leave_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = open(&dir);
    let (low, high) = groups(&base);
    apply(
        &low,
        10,
        commit(
            vec![set("default", "b", "old"), set("other", "c", "old")],
            None,
        ),
    );
    apply(
        &high,
        10,
        commit(
            vec![set("default", "q", "high"), set("other", "z", "high")],
            None,
        ),
    );
    let saved: Vec<Record> = low.export().unwrap().map(Result::unwrap).collect();
    // Only group 1's keys: its data span in each column family and its `meta` names.
    let (meta, data): (Vec<&Record>, Vec<&Record>) = saved
        .iter()
        .partition(|(section, _, _)| *section == Section::Meta);
    assert_eq!(
        data.len(),
        2,
        "two keys of group 1, one version each: {data:02x?}"
    );
    assert!(!meta.is_empty());
    assert!(meta.iter().all(|(_, key, _)| key.first() == Some(&0x00)));
    let high_digest = high.digest_at(10).unwrap();

    // Both groups move on; then group 1 goes back to its export.
    apply(
        &low,
        20,
        commit(
            vec![set("default", "b", "new"), set("default", "e", "new")],
            None,
        ),
    );
    apply(&high, 20, commit(vec![set("default", "r", "high2")], None));
    let high_after = high.digest_at(20).unwrap();
    low.restore(b"test", saved.into_iter().map(Ok)).unwrap();
    assert_eq!(low.applied_version(), 10);
    assert_eq!(get(&low, "default", "b", 10), Some(b"old".to_vec()));
    assert_eq!(
        get(&low, "default", "e", 10),
        None,
        "group 1's later key is gone"
    );
    // Group 2 is untouched, history and all.
    assert_eq!(high.applied_version(), 20);
    assert_eq!(high.digest_at(10).unwrap(), high_digest);
    assert_eq!(high.digest_at(20).unwrap(), high_after);

    // A record outside the group fails the restore, which stays pending.
    let stray: Record = (
        Section::Data,
        high.export().unwrap().nth(1).unwrap().unwrap().1,
        vec![1],
    );
    let err = low
        .restore(b"stray", std::iter::once(Ok(stray)))
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidScope(_)), "{err}");
    assert_eq!(low.pending_restore().unwrap(), Some(b"stray".to_vec()));
    assert!(high.pending_restore().unwrap().is_none());
    assert_eq!(get(&high, "default", "q", 20), Some(b"high".to_vec()));
}

#[test]
fn garbage_collection_of_one_group_keeps_the_history_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let base = open(&dir);
    let (low, high) = groups(&base);
    for v in 1..=5 {
        let value = format!("v{v}");
        apply(&low, v, commit(vec![set("default", "a", &value)], None));
        apply(&high, v, commit(vec![set("default", "x", &value)], None));
    }
    apply(&low, 6, Command::Compact { horizon: 5 });
    apply(&high, 6, Command::Compact { horizon: 1 });
    for engine in [&low, &high] {
        let mut wrapped = false;
        for _ in 0..10 {
            if engine.collect_garbage(1000).unwrap().wrapped {
                wrapped = true;
                break;
            }
        }
        assert!(wrapped);
    }
    // Group 1 dropped what its horizon no longer needs; group 2 kept what its horizon needs.
    assert!(
        low.get("default", b"a", 2).is_err(),
        "below group 1's horizon"
    );
    assert_eq!(get(&low, "default", "a", 5), Some(b"v5".to_vec()));
    for v in 1..=5 {
        assert_eq!(
            get(&high, "default", "x", v),
            Some(format!("v{v}").into_bytes()),
            "group 2's version {v}"
        );
    }
}

/// A group applies nothing outside its span (docs/sharding.md §4.2, the apply-time route
/// check): keys, versionstamped keys as they would be written, clear ranges and read-conflict
/// ranges are checked; the refusal is not remembered for an idempotency token, so the retry
/// through the owning group applies once.
#[test]
fn a_group_refuses_what_lies_outside_its_span_and_forgets_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let base = open(&dir);
    let (low, high) = groups(&base);
    let outside = |outcome: Outcome, group: u64| match outcome {
        Outcome::Rejected(dolmen_engine::Invalid::OutsideRange { group: g, .. }) => {
            assert_eq!(g, group);
        }
        other => panic!("expected OutsideRange of group {group}, got {other:?}"),
    };
    outside(
        apply(&low, 10, commit(vec![set("default", "x", "1")], None)),
        1,
    );
    outside(
        apply(&high, 11, commit(vec![set("other", "a", "1")], None)),
        2,
    );
    // `[k, m)` reaches group 2's first key only at its end: inside group 1; `[k, n)` is not.
    let clear = |begin: &str, end: &str| Mutation::ClearRange {
        cf: "default".into(),
        begin: begin.into(),
        end: end.into(),
    };
    assert_eq!(
        apply(&low, 12, commit(vec![clear("k", "m")], None)),
        Outcome::Committed { version: 12 }
    );
    outside(apply(&low, 13, commit(vec![clear("k", "n")], None)), 1);
    // A read-conflict range across the boundary.
    let reads_across = Command::Commit(Transaction {
        read_version: Some(12),
        mutations: vec![set("default", "b", "1")],
        read_conflicts: vec![dolmen_engine::KeyRange {
            cf: "default".into(),
            begin: b"l".to_vec(),
            end: b"mm".to_vec(),
        }],
        ..Transaction::default()
    });
    outside(apply(&low, 14, reads_across), 1);
    // A versionstamped key is checked as written: `l` ‖ stamp stays in group 1; the bare
    // stamp (10 bytes of buffer) of version 15 starts with 0x00: group 1, never group 2.
    let stamped = Mutation::SetVersionstampedKey {
        cf: "default".into(),
        key: vec![0u8; 10],
        value: b"v".to_vec(),
    };
    assert_eq!(
        apply(&low, 15, commit(vec![stamped.clone()], None)),
        Outcome::Committed { version: 15 }
    );
    outside(apply(&high, 16, commit(vec![stamped], None)), 2);
    // Refused with a token through the wrong group, then applied once through the right one.
    outside(
        apply(
            &high,
            17,
            commit(vec![set("default", "c", "1")], Some(("client", 1))),
        ),
        2,
    );
    assert_eq!(
        apply(
            &low,
            18,
            commit(vec![set("default", "c", "1")], Some(("client", 1)))
        ),
        Outcome::Committed { version: 18 }
    );
    assert_eq!(
        apply(
            &low,
            19,
            commit(vec![set("default", "c", "2")], Some(("client", 1)))
        ),
        Outcome::Committed { version: 18 },
        "the retry answers the first outcome"
    );
    assert_eq!(get(&low, "default", "c", 19), Some(b"1".to_vec()));
    assert_eq!(
        get(&high, "default", "x", 17),
        None,
        "nothing of a refusal applied"
    );
}

/// `written_version` follows the commands that may write data, per group, and not the
/// retention commands or `Noop`; a reopened handle starts it at its applied version.
#[test]
fn the_written_version_skips_retention_commands_and_starts_at_the_applied_version() {
    let dir = tempfile::tempdir().unwrap();
    let base = open(&dir);
    let (low, high) = groups(&base);
    apply(&low, 10, commit(vec![set("default", "a", "1")], None));
    apply(&high, 20, commit(vec![set("default", "x", "1")], None));
    apply(&low, 11, Command::Compact { horizon: 10 });
    apply(
        &low,
        12,
        Command::ExpireIdempotency {
            before: 10,
            limit: 10,
        },
    );
    apply(&low, 12, Command::Noop);
    assert_eq!((low.applied_version(), low.written_version()), (12, 10));
    assert_eq!((high.applied_version(), high.written_version()), (20, 20));
    drop((low, high));
    let (low, _) = groups(&base);
    assert_eq!(low.written_version(), 12, "reopened: the applied version");
}

/// The planted bug on one shard (`[faults] unsafe_skip_conflict_check_group`): only that
/// group's handle commits a transaction whose read was overwritten; the others still refuse it.
#[test]
fn the_planted_bug_on_one_group_skips_the_conflict_check_there_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path(), vec!["default".into(), "other".into()]);
    options.unsafe_skip_conflict_check = true;
    options.unsafe_skip_conflict_check_group = 2;
    let base = Engine::open(&options).unwrap();
    let (low, high) = groups(&base);
    for (engine, key) in [(&low, "a"), (&high, "x")] {
        apply(engine, 10, commit(vec![set("default", key, "1")], None));
        // Read at 5, before the write at 10 it conflicts with.
        let stale = Command::Commit(Transaction {
            read_version: Some(5),
            mutations: vec![set("default", key, "2")],
            read_conflicts: vec![KeyRange::single("default", key.as_bytes())],
            ..Transaction::default()
        });
        let outcome = apply(engine, 20, stale);
        if engine.group() == 2 {
            assert_eq!(outcome, Outcome::Committed { version: 20 }, "group 2 skips");
        } else {
            assert!(
                matches!(outcome, Outcome::Conflict { .. }),
                "group {} still checks: {outcome:?}",
                engine.group()
            );
        }
    }
}
