//! Round trips and refusals of the engine's encodings, and the stored-fixture test: the bytes
//! under `tests/fixtures/v1/` (and `v2/` for the dedupe entry) were written by an earlier build;
//! this build must decode each of them to exactly the value it was made from (docs/encoding.md,
//! "Fixtures").

use std::path::PathBuf;

use super::*;
use crate::command::{
    Command, Decide, IdempotencyToken, Invalid, KeyRange, Mutation, Outcome, Prepare, Stamp,
    Transaction,
};
use crate::dedupe;
use crate::error::StorageError;
use crate::keys::{TAG_TOMBSTONE, TAG_VALUE};
use crate::read::decode_value;
use crate::routing::{Placement, RangeDescriptor, RoutingTable};

fn commit() -> Command {
    Command::Commit(Transaction {
        read_version: Some(41),
        mutations: vec![
            Mutation::Set {
                cf: "default".into(),
                key: b"k".to_vec(),
                value: vec![0, 255, 7],
            },
            Mutation::Delete {
                cf: "default".into(),
                key: b"gone".to_vec(),
            },
            Mutation::ClearRange {
                cf: "other".into(),
                begin: b"a".to_vec(),
                end: b"b".to_vec(),
            },
            Mutation::SetVersionstampedKey {
                cf: "default".into(),
                key: vec![1; 12],
                value: b"v".to_vec(),
            },
            Mutation::SetVersionstampedValue {
                cf: "default".into(),
                key: b"vs".to_vec(),
                value: vec![2; 10],
            },
        ],
        read_conflicts: vec![KeyRange::single("default", b"k")],
        idempotency: Some(IdempotencyToken {
            client_id: b"client".to_vec(),
            sequence: 5,
        }),
        stamp: None,
    })
}

/// `commit()` with the leader's clock reading (kind 4).
fn stamped_commit(stamp: Stamp) -> Command {
    match commit() {
        Command::Commit(txn) => Command::Commit(Transaction {
            stamp: Some(stamp),
            ..txn
        }),
        other => other,
    }
}

fn outcomes() -> Vec<(&'static str, Outcome)> {
    vec![
        ("outcome_committed", Outcome::Committed { version: 12 }),
        (
            "outcome_conflict",
            Outcome::Conflict {
                cf: "default".into(),
                key: b"k\x00".to_vec(),
            },
        ),
        (
            "outcome_too_old",
            Outcome::TooOld {
                read_version: 3,
                horizon: 10,
            },
        ),
        (
            "outcome_rejected_operation",
            Outcome::Rejected(Invalid::Operation {
                index: 2,
                problem: "bad op".into(),
            }),
        ),
        (
            "outcome_rejected_argument",
            Outcome::Rejected(Invalid::Argument {
                field: "key".into(),
                problem: "too long".into(),
            }),
        ),
        (
            "outcome_rejected_unknown_column_family",
            Outcome::Rejected(Invalid::UnknownColumnFamily {
                name: "nope".into(),
                configured: "default, other".into(),
            }),
        ),
        (
            "outcome_rejected_future_read_version",
            Outcome::Rejected(Invalid::FutureReadVersion {
                read_version: 9,
                version: 8,
            }),
        ),
        (
            "outcome_rejected_stale_sequence",
            Outcome::Rejected(Invalid::StaleSequence {
                sequence: 4,
                latest: 6,
            }),
        ),
        (
            "outcome_rejected_outside_range",
            Outcome::Rejected(Invalid::OutsideRange {
                what: "key".into(),
                key: b"zz".to_vec(),
                group: 3,
            }),
        ),
        ("outcome_applied", Outcome::Applied),
        ("outcome_prepared", Outcome::Prepared),
        (
            "outcome_locked",
            Outcome::Locked {
                cf: "default".into(),
                key: b"held".to_vec(),
            },
        ),
        ("outcome_already_resolved", Outcome::AlreadyResolved),
        (
            "outcome_aborted",
            Outcome::Aborted {
                reason: "its coordinator stopped before deciding (an orphan)".into(),
            },
        ),
        (
            "outcome_decided_commit",
            Outcome::Decided {
                commit: Some(1_796_640_000_000_009),
                answer: Box::new(Outcome::Committed {
                    version: 1_796_640_000_000_009,
                }),
            },
        ),
        (
            "outcome_decided_abort",
            Outcome::Decided {
                commit: None,
                answer: Box::new(Outcome::Conflict {
                    cf: "default".into(),
                    key: b"hot".to_vec(),
                }),
            },
        ),
    ]
}

/// A participant's piece of a commit across groups: two mutations with their global orders,
/// one read range.
fn prepare() -> Prepare {
    Prepare {
        txid: *b"\x00\x00\x00\x02\x00\x00\x30\x39tx-00042",
        stamp: 1_796_640_000_000_001,
        read_version: Some(1_796_640_000_000_000),
        piece: vec![
            (
                1,
                Mutation::Set {
                    cf: "default".into(),
                    key: b"m".to_vec(),
                    value: b"v".to_vec(),
                },
            ),
            (
                3,
                Mutation::SetVersionstampedKey {
                    cf: "other".into(),
                    key: [b"log/".as_slice(), &[0; 10]].concat(),
                    value: Vec::new(),
                },
            ),
        ],
        read_conflicts: vec![KeyRange::single("default", b"n")],
    }
}

fn commands() -> Vec<(&'static str, Command)> {
    vec![
        ("command_commit", commit()),
        (
            "command_commit_blind",
            Command::Commit(Transaction {
                read_version: None,
                mutations: vec![Mutation::Set {
                    cf: "default".into(),
                    key: b"b".to_vec(),
                    value: Vec::new(),
                }],
                read_conflicts: Vec::new(),
                idempotency: None,
                stamp: None,
            }),
        ),
        (
            "command_commit_stamped",
            stamped_commit(Stamp::ProposedAt(1_765_000_000_123_456)),
        ),
        (
            "command_commit_sequenced",
            stamped_commit(Stamp::Sequenced {
                version: 1_796_640_000_000_001,
                term: 7,
            }),
        ),
        (
            "command_oracle_bound",
            Command::OracleBound {
                bound: 1_796_640_003_000_000,
            },
        ),
        ("command_prepare", Command::Prepare(prepare())),
        (
            "command_resolve_commit",
            Command::Resolve {
                txid: prepare().txid,
                stamp: 1_796_640_000_000_001,
                commit: Some(1_796_640_000_000_009),
            },
        ),
        (
            "command_resolve_abort",
            Command::Resolve {
                txid: prepare().txid,
                stamp: 1_796_640_000_000_001,
                commit: None,
            },
        ),
        (
            "command_decide",
            Command::Decide(Decide {
                txid: prepare().txid,
                idempotency: Some(IdempotencyToken {
                    client_id: b"client-1".to_vec(),
                    sequence: 9,
                }),
                outcome: Outcome::Committed {
                    version: 1_796_640_000_000_009,
                },
            }),
        ),
        (
            "command_forget",
            Command::Forget {
                txid: prepare().txid,
            },
        ),
        ("command_compact", Command::Compact { horizon: 17 }),
        ("command_noop", Command::Noop),
        (
            "command_expire_idempotency",
            Command::ExpireIdempotency {
                before: 0x0102_0304_0506_0708,
                limit: 10_000,
            },
        ),
    ]
}

/// Every stored kind of the engine at the current version: `(fixture name, expected value,
/// encoding of the expected value)`.
fn samples() -> Vec<(&'static str, Sample, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, command) in commands() {
        let bytes = encode_command(&command).unwrap();
        out.push((name, Sample::Command(command), bytes));
    }
    for (name, outcome) in outcomes() {
        let bytes = encode_outcome(&outcome).unwrap();
        out.push((name, Sample::Outcome(outcome), bytes));
    }
    let remembered = Outcome::Conflict {
        cf: "default".into(),
        key: b"hot".to_vec(),
    };
    let entry = dedupe::Entry {
        sequence: 7,
        recorded_at: 12,
        outcome: remembered,
    };
    let bytes = dedupe::encode_entry(&entry).unwrap();
    out.push(("dedupe_entry", Sample::Dedupe(entry), bytes));
    out.push((
        "meta_counter",
        Sample::Counter(0x0102_0304_0506_0708),
        encode_u64(0x0102_0304_0506_0708),
    ));
    let marker = b"/var/lib/dolmen/snapshots/3-1-42.snap".to_vec();
    out.push((
        "restore_marker",
        Sample::Marker(marker.clone()),
        encode_marker(&marker),
    ));
    out.push((
        "data_value",
        Sample::Data(Some(b"v\x00".to_vec())),
        vec![TAG_VALUE, b'v', 0],
    ));
    out.push(("data_tombstone", Sample::Data(None), vec![TAG_TOMBSTONE]));
    let lock = prepare();
    let bytes = crate::locks::encode_lock(&lock).unwrap();
    out.push(("lock_record", Sample::Lock(lock), bytes));
    let answer = Outcome::Committed {
        version: 1_796_640_000_000_009,
    };
    let bytes = encode_decision(Some(1_796_640_000_000_009), &answer).unwrap();
    out.push((
        "decision_record",
        Sample::Decision(Some(1_796_640_000_000_009), answer),
        bytes,
    ));
    let descriptor = descriptor();
    let bytes = encode_descriptor(&descriptor).unwrap();
    out.push(("descriptor", Sample::Descriptor(descriptor), bytes));
    let table = routing();
    let bytes = encode_routing(&table).unwrap();
    out.push(("routing", Sample::Routing(table), bytes));
    out
}

/// A data group's descriptor (docs/sharding.md §4.1), with bytes that are not ASCII in its end.
fn descriptor() -> RangeDescriptor {
    RangeDescriptor {
        group: 3,
        start: b"g".to_vec(),
        end: Some(b"p\x00\xff".to_vec()),
        epoch: 7,
        voters: vec![2, 0, 1],
    }
}

/// Three data groups split at `"g"` and `"p\xff"`, two voters each over nodes 0..3 (§4.5); the
/// last range ends at +∞ (an absent end).
fn routing() -> RoutingTable {
    let placement = Placement::new(vec![0, 1, 2], 2).unwrap();
    RoutingTable::from_split_keys(&[b"g".to_vec(), b"p\xff".to_vec()], &placement).unwrap()
}

#[derive(Debug, PartialEq)]
enum Sample {
    Command(Command),
    Outcome(Outcome),
    Dedupe(dedupe::Entry),
    Counter(u64),
    Marker(Vec<u8>),
    Data(Option<Vec<u8>>),
    Descriptor(RangeDescriptor),
    Routing(RoutingTable),
    Lock(Prepare),
    Decision(Option<crate::Version>, Outcome),
}

/// Decodes `bytes` as the kind `expected` is.
fn decode_like(expected: &Sample, bytes: &[u8]) -> Result<Sample, StorageError> {
    Ok(match expected {
        Sample::Command(_) => Sample::Command(decode_command(bytes)?),
        Sample::Outcome(_) => Sample::Outcome(decode_outcome(bytes)?),
        Sample::Dedupe(_) => Sample::Dedupe(dedupe::decode_entry(bytes)?),
        Sample::Counter(_) => Sample::Counter(decode_u64("meta counter", bytes)?),
        Sample::Marker(_) => Sample::Marker(decode_marker(bytes)?),
        Sample::Data(_) => Sample::Data(decode_value(bytes)?.map(<[u8]>::to_vec)),
        Sample::Descriptor(_) => Sample::Descriptor(decode_descriptor(bytes)?),
        Sample::Routing(_) => Sample::Routing(decode_routing(bytes)?),
        Sample::Lock(_) => Sample::Lock(crate::locks::decode_lock(bytes)?),
        Sample::Decision(..) => {
            let (commit, answer) = decode_decision(bytes)?;
            Sample::Decision(commit, answer)
        }
    })
}

/// The directory of the fixtures of format version `version` ("v1", "v2").
fn fixture_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
}

/// The fixture of sample `name` at the version this build writes it: the dedupe entry is the
/// one value at version 2.
fn fixture_path(name: &str) -> PathBuf {
    let version = if name == "dedupe_entry" { "v2" } else { "v1" };
    fixture_dir(version).join(format!("{name}.bin"))
}

/// Writes the fixtures of the current version. Run it only when adding a stored kind or a
/// sample; a change of an existing layout needs a new version byte and a new fixture directory
/// instead (docs/encoding.md, "Fixtures"):
/// `cargo test --workspace --lib write_engine_fixtures -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/v1 and v2; run by hand, see docs/encoding.md"]
fn write_engine_fixtures() {
    for (name, _, bytes) in samples() {
        let path = fixture_path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn stored_v1_fixtures_decode_to_their_values() {
    for (name, expected, encoded) in samples() {
        let path = fixture_path(name);
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
        let decoded = decode_like(&expected, &stored)
            .unwrap_or_else(|e| panic!("fixture {name} no longer decodes: {e}"));
        assert_eq!(decoded, expected, "fixture {name} decodes to another value");
        // The encoder still writes exactly these bytes: a layout change must bump the version.
        assert_eq!(
            encoded, stored,
            "{name} encodes differently from its fixture"
        );
    }
}

/// The dedupe entry of an earlier build (version 1, no recorded version) still decodes; the
/// version it was recorded at is derived alike on every replica: the commit version of a
/// `Committed` outcome, else 0.
#[test]
fn stored_v1_dedupe_entry_decodes_with_a_derived_version() {
    let path = fixture_dir("v1").join("dedupe_entry.bin");
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(stored[0], FORMAT_V1);
    assert_eq!(
        dedupe::decode_entry(&stored).unwrap(),
        dedupe::Entry {
            sequence: 7,
            recorded_at: 0,
            outcome: Outcome::Conflict {
                cf: "default".into(),
                key: b"hot".to_vec(),
            },
        }
    );
    let mut committed = vec![FORMAT_V1];
    committed.extend_from_slice(&3u64.to_be_bytes());
    committed.extend_from_slice(&encode_outcome(&Outcome::Committed { version: 40 }).unwrap()[1..]);
    let entry = dedupe::decode_entry(&committed).unwrap();
    assert_eq!((entry.sequence, entry.recorded_at), (3, 40));
}

#[test]
fn every_versioned_value_refuses_an_unknown_version_by_name() {
    for (name, expected, mut bytes) in samples() {
        if matches!(expected, Sample::Data(_)) {
            continue; // data values carry tags, not a version byte (docs/encoding.md)
        }
        // The dedupe entry reads versions 1 and 2.
        let unknown = if matches!(expected, Sample::Dedupe(_)) {
            [0x00, 0x03, 0x80, 0x81]
        } else {
            [0x00, 0x02, 0x80, 0x81]
        };
        for version in unknown {
            bytes[0] = version;
            let err = decode_like(&expected, &bytes).expect_err(name).to_string();
            assert!(
                err.contains(&format!("unknown format version {version:#04x}")),
                "{name}: {err}"
            );
        }
        let err = decode_like(&expected, &[]).expect_err(name).to_string();
        assert!(err.contains("empty value"), "{name}: {err}");
    }
    let err = decode_outcome(&[0x80, b'{']).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnknownVersion {
                what: "outcome",
                version: 0x80
            }
        ),
        "{err}"
    );
}

#[test]
fn commands_and_outcomes_round_trip_and_refuse_truncation() {
    for (name, expected, bytes) in samples() {
        if matches!(expected, Sample::Data(_) | Sample::Marker(_)) {
            continue; // no length structure to truncate
        }
        assert_eq!(decode_like(&expected, &bytes).unwrap(), expected, "{name}");
        // Every truncation is an error, never a panic or a wrong value.
        for cut in 1..bytes.len() {
            let err = decode_like(&expected, &bytes[..cut])
                .expect_err(name)
                .to_string();
            assert!(err.starts_with("corrupt "), "{name} cut at {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode_like(&expected, &longer).expect_err(name).to_string();
        assert!(err.contains("1 trailing bytes"), "{name}: {err}");
    }
}

#[test]
fn unknown_tags_are_named() {
    let err = decode_command(&[FORMAT_V1, 13]).unwrap_err();
    assert_eq!(err.to_string(), "corrupt command: unknown command kind 13");
    let err = decode_outcome(&[FORMAT_V1, 3, 7]).unwrap_err();
    assert_eq!(err.to_string(), "corrupt outcome: unknown rejection kind 7");
    let err = decode_command(&[FORMAT_V1, 0, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt command: unknown read_version presence flag 2"
    );
}

#[test]
fn decode_errors_are_invalid_data_io_errors_that_keep_their_type() {
    let io: std::io::Error = decode_command(&[0x80]).unwrap_err().into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
    let inner = io.get_ref().and_then(|e| e.downcast_ref::<DecodeError>());
    assert!(
        matches!(
            inner,
            Some(DecodeError::UnknownVersion {
                what: "command",
                version: 0x80
            })
        ),
        "{io}"
    );
}

/// A decision's answer is never itself a decision: a nested one is refused, not recursed into.
#[test]
fn a_nested_decision_is_refused() {
    let inner = Outcome::Decided {
        commit: None,
        answer: Box::new(Outcome::Applied),
    };
    let bytes = encode_decision(None, &inner).unwrap();
    let err = decode_decision(&bytes).unwrap_err();
    assert!(err.to_string().contains("itself a decision"), "{err}");
}
