//! Expiry of the idempotency (dedupe) table through `Command::ExpireIdempotency`: entries carry
//! the version they were recorded at, expiry deletes exactly those below `before` (capped at
//! the horizon), oldest first and at most `limit` per command, whatever the batch boundaries;
//! entries of an earlier build (no recorded version, no index) are indexed at open and expire;
//! the index and the count travel with snapshots.

use dolmen_engine::{
    encoding, Command, Durability, Engine, EngineOptions, IdempotencyToken, KeyRange, Mutation,
    Outcome, Transaction, Version, CF_META,
};

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&EngineOptions::new(dir.path(), vec!["default".into()])).unwrap()
}

/// A blind write of `key = value` carrying `client`'s token `sequence`.
fn write(client: &str, sequence: u64, key: &str, value: &str) -> Command {
    Command::Commit(Transaction {
        mutations: vec![Mutation::Set {
            cf: "default".into(),
            key: key.into(),
            value: value.into(),
        }],
        idempotency: Some(IdempotencyToken {
            client_id: client.as_bytes().to_vec(),
            sequence,
        }),
        ..Transaction::default()
    })
}

fn expire(before: Version, limit: u32) -> Command {
    Command::ExpireIdempotency { before, limit }
}

fn apply(e: &Engine, entries: Vec<(Version, Command)>) -> Vec<Outcome> {
    e.apply_batch(&entries, Durability::Buffered, &[]).unwrap()
}

/// Applies `command` at the next version.
fn next(e: &Engine, command: Command) -> Outcome {
    let v = e.applied_version() + 1;
    apply(e, vec![(v, command)]).remove(0)
}

fn value(e: &Engine, key: &str) -> Option<Vec<u8>> {
    e.get("default", key.as_bytes(), e.applied_version())
        .unwrap()
}

#[test]
fn expiry_deletes_exactly_the_entries_recorded_before_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    // Clients c1..c5 commit at versions 1..5.
    for i in 1..=5u64 {
        let out = next(&e, write(&format!("c{i}"), 1, &format!("k{i}"), "first"));
        assert_eq!(out, Outcome::Committed { version: i });
    }
    assert_eq!(e.idempotency_entries(), 5);
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(1));
    next(&e, Command::Compact { horizon: 6 }); // version 6
    assert_eq!(next(&e, expire(4, 100)), Outcome::Applied); // version 7
    assert_eq!(e.idempotency_entries(), 2, "c1..c3 (versions 1..3) expired");
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(4));
    assert_eq!(e.stats().idempotency_expired, 3);

    // c4 is still remembered: its retry gets the first outcome and writes nothing.
    assert_eq!(
        next(&e, write("c4", 1, "k4", "retry")),
        Outcome::Committed { version: 4 }
    );
    assert_eq!(value(&e, "k4"), Some(b"first".to_vec()));
    // c1 was forgotten: a retry of its blind write is a new transaction (the documented
    // trade-off of the window).
    let v = e.applied_version() + 1;
    assert_eq!(
        next(&e, write("c1", 1, "k1", "again")),
        Outcome::Committed { version: v }
    );
    assert_eq!(value(&e, "k1"), Some(b"again".to_vec()));
    assert_eq!(e.idempotency_entries(), 3);

    // The table, its index and its count survive a restart.
    drop(e);
    let e = engine(&dir);
    assert_eq!(e.idempotency_entries(), 3);
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(4));
    // An expiry with nothing below its bound changes nothing.
    next(&e, expire(4, 100));
    assert_eq!(e.idempotency_entries(), 3);
}

#[test]
fn a_retry_that_read_something_is_too_old_after_expiry_because_the_bound_is_capped_at_the_horizon()
{
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    next(&e, write("blind", 1, "k", "v")); // 1
    let reader = |value: &str| {
        Command::Commit(Transaction {
            read_version: Some(1),
            mutations: vec![Mutation::Set {
                cf: "default".into(),
                key: b"r".to_vec(),
                value: value.into(),
            }],
            read_conflicts: vec![KeyRange::single("default", b"k")],
            idempotency: Some(IdempotencyToken {
                client_id: b"reader".to_vec(),
                sequence: 1,
            }),
            stamp: None,
        })
    };
    assert_eq!(next(&e, reader("first")), Outcome::Committed { version: 2 });
    next(&e, Command::Noop); // 3
    next(&e, Command::Noop); // 4
                             // The horizon is 2: an expiry asking for everything below 100 forgets only version 1.
    next(&e, Command::Compact { horizon: 2 }); // 5
    next(&e, expire(100, 100)); // 6
    assert_eq!(e.idempotency_entries(), 1);
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(2));
    // Raise the horizon past the reader's entry and expire it: its retry read at 1 < horizon,
    // so it is refused as too old, not applied again.
    next(&e, Command::Compact { horizon: 5 }); // 7
    next(&e, expire(100, 100)); // 8
    assert_eq!(e.idempotency_entries(), 0);
    assert_eq!(
        next(&e, reader("second")),
        Outcome::TooOld {
            read_version: 1,
            horizon: 5
        }
    );
    assert_eq!(value(&e, "r"), Some(b"first".to_vec()));
}

#[test]
fn a_new_sequence_moves_the_entry_to_its_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    next(&e, write("a", 1, "k", "1")); // 1
    next(&e, write("b", 1, "k", "2")); // 2
    next(&e, write("a", 2, "k", "3")); // 3: a's entry moves from 1 to 3
    assert_eq!(e.idempotency_entries(), 2);
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(2));
    next(&e, Command::Compact { horizon: 4 }); // 4
    next(&e, expire(3, 100)); // 5: only b (2) is below 3
    assert_eq!(e.idempotency_entries(), 1);
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(3));
    // a is remembered at sequence 2: its retry gets the first outcome.
    assert_eq!(
        next(&e, write("a", 2, "k", "retry")),
        Outcome::Committed { version: 3 }
    );
    next(&e, Command::Compact { horizon: 6 }); // 7
    next(&e, expire(4, 100)); // 8
    assert_eq!(e.idempotency_entries(), 0);
    assert_eq!(e.oldest_idempotency_version().unwrap(), None);
}

#[test]
fn one_expiry_deletes_at_most_its_limit_and_the_next_continues() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let commits: Vec<(Version, Command)> = (1..=7u64)
        .map(|i| (i, write(&format!("c{i}"), 1, "k", "v")))
        .collect();
    apply(&e, commits);
    next(&e, Command::Compact { horizon: 8 }); // 8
    let mut counts = Vec::new();
    for _ in 0..4 {
        next(&e, expire(8, 3));
        counts.push(e.idempotency_entries());
    }
    assert_eq!(counts, [4, 1, 0, 0]);
    // Oldest first: after the first command c4..c7 remained, and so on.
    assert_eq!(e.stats().idempotency_expired, 7);
}

#[test]
fn the_limit_the_leader_proposes_bounds_a_command_over_a_larger_table() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let limit = dolmen_engine::EXPIRE_IDEMPOTENCY_LIMIT;
    let n = u64::from(limit) + 50;
    let commits: Vec<(Version, Command)> = (1..=n)
        .map(|i| (i, write(&format!("client-{i}"), 1, "k", "v")))
        .collect();
    apply(&e, commits);
    assert_eq!(e.idempotency_entries(), n);
    next(&e, Command::Compact { horizon: n + 1 });
    next(&e, expire(n + 1, limit));
    assert_eq!(e.idempotency_entries(), 50);
    assert_eq!(
        e.oldest_idempotency_version().unwrap(),
        Some(u64::from(limit) + 1)
    );
    next(&e, expire(n + 1, limit));
    assert_eq!(e.idempotency_entries(), 0);
}

/// The commands of one run, applied one per batch and all in one batch, give the same outcomes
/// and the same table: replicas cut batches differently.
#[test]
fn batch_boundaries_do_not_change_what_expires() {
    let commands = vec![
        write("a", 1, "k", "1"),         // 1
        write("b", 1, "k", "2"),         // 2
        Command::Compact { horizon: 2 }, // 3
        write("a", 2, "k", "3"),         // 4: a moves 1 -> 4 within the batch
        write("c", 1, "k", "4"),         // 5
        Command::Compact { horizon: 6 }, // 6
        expire(6, 1),                    // 7: b (2) only, by the limit
        expire(6, 10),                   // 8: a (4) and c (5), written in this batch
        write("a", 2, "k", "again"),     // 9: a forgotten: applies again
        write("b", 1, "k", "again"),     // 10: b forgotten: applies again
        expire(100, 10),                 // 11: capped at horizon 6: nothing
    ];
    let entries: Vec<(Version, Command)> = commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, c))
        .collect();
    let one = tempfile::tempdir().unwrap();
    let e1 = engine(&one);
    let whole = apply(&e1, entries.clone());
    let each = tempfile::tempdir().unwrap();
    let e2 = engine(&each);
    let singles: Vec<Outcome> = entries
        .iter()
        .map(|entry| apply(&e2, vec![entry.clone()]).remove(0))
        .collect();
    assert_eq!(whole, singles);
    assert_eq!(whole[8], Outcome::Committed { version: 9 });
    assert_eq!(whole[9], Outcome::Committed { version: 10 });
    for e in [&e1, &e2] {
        assert_eq!(e.idempotency_entries(), 2);
        assert_eq!(e.oldest_idempotency_version().unwrap(), Some(9));
        assert_eq!(e.stats().idempotency_expired, 3);
    }
    assert_eq!(meta_records(&e1), meta_records(&e2));
}

/// Every `meta` record of `e` but the applied version.
fn meta_records(e: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.export()
        .unwrap()
        .map(Result::unwrap)
        .filter(|(s, k, _)| *s == dolmen_engine::Section::Meta && k != b"applied_version")
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// An entry as an earlier build stored it: `0x01 ‖ be64 sequence ‖ outcome`.
fn v1_entry(sequence: u64, outcome: &Outcome) -> Vec<u8> {
    let mut out = vec![encoding::FORMAT_V1];
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&encoding::encode_outcome(outcome).unwrap()[1..]);
    out
}

#[test]
fn entries_of_an_earlier_build_are_indexed_at_open_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    for _ in 0..10 {
        next(&e, Command::Noop);
    }
    // What an earlier build left: V1 entries, no index, no count.
    {
        let db = e.db();
        let meta = db.cf_handle(CF_META).unwrap();
        let committed = v1_entry(1, &Outcome::Committed { version: 8 });
        let conflict = v1_entry(
            4,
            &Outcome::Conflict {
                cf: "default".into(),
                key: b"k".to_vec(),
            },
        );
        db.put_cf(meta, b"dedupe/old-committed", committed).unwrap();
        db.put_cf(meta, b"dedupe/old-conflict", conflict).unwrap();
        db.delete_cf(meta, b"dedupe_entries").unwrap();
        for key in db
            .iterator_cf(meta, rocksdb_prefix(b"dedupe-by-version/"))
            .map(|r| r.unwrap().0)
            .filter(|k| k.starts_with(b"dedupe-by-version/"))
        {
            db.delete_cf(meta, key).unwrap();
        }
    }
    drop(e);
    let e = engine(&dir);
    assert_eq!(e.idempotency_entries(), 2);
    // The conflict has no version: 0, the oldest.
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(0));
    // Still remembered until expired.
    assert_eq!(
        next(&e, write("old-committed", 1, "k", "retry")),
        Outcome::Committed { version: 8 }
    );
    next(&e, Command::Compact { horizon: 8 });
    next(&e, expire(8, 100));
    assert_eq!(e.idempotency_entries(), 1, "the conflict (0) expired");
    assert_eq!(e.oldest_idempotency_version().unwrap(), Some(8));
    next(&e, Command::Compact { horizon: 9 });
    next(&e, expire(9, 100));
    assert_eq!(e.idempotency_entries(), 0, "the commit at 8 expired");
}

fn rocksdb_prefix(prefix: &[u8]) -> rocksdb::IteratorMode<'_> {
    rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward)
}

#[test]
fn a_restored_snapshot_carries_the_table_its_index_and_its_count() {
    let a = tempfile::tempdir().unwrap();
    let e1 = engine(&a);
    for i in 1..=4u64 {
        next(&e1, write(&format!("c{i}"), 1, "k", "v"));
    }
    let records: Vec<_> = e1.export().unwrap().collect::<Vec<_>>();
    let b = tempfile::tempdir().unwrap();
    let e2 = engine(&b);
    e2.restore(
        b"test",
        records
            .into_iter()
            .map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))),
    )
    .unwrap();
    assert_eq!(e2.idempotency_entries(), 4);
    for e in [&e1, &e2] {
        next(e, Command::Compact { horizon: 5 });
        next(e, expire(3, 100));
        assert_eq!(e.idempotency_entries(), 2);
    }
    assert_eq!(meta_records(&e1), meta_records(&e2));
}
