//! Round trips and refusals of the Raft values' encodings, and the stored-fixture test: the bytes
//! under `crates/raft/tests/fixtures/v1/` were written by an earlier build; this build must
//! decode each to exactly the value it was made from (docs/encoding.md, "Fixtures").

use std::path::PathBuf;

use dolmen_engine::encoding::FORMAT_V1;
use dolmen_engine::{IdempotencyToken, Invalid, KeyRange, Mutation, Transaction};

use super::*;

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id },
        index,
    }
}

fn membership() -> Membership {
    let nodes: BTreeMap<NodeId, NodeAddr> = [
        (1, NodeAddr::default()),
        (
            2,
            NodeAddr {
                client_addr: "127.0.0.1:9090".into(),
                peer_addr: "127.0.0.1:7090".into(),
                admin_addr: "127.0.0.1:9190".into(),
            },
        ),
    ]
    .into();
    Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap()
}

fn addr(i: u64) -> NodeAddr {
    NodeAddr {
        client_addr: format!("127.0.0.1:{}", 7000 + i),
        peer_addr: format!("127.0.0.1:{}", 8000 + i),
        admin_addr: if i == 2 {
            String::new()
        } else {
            format!("127.0.0.1:{}", 9000 + i)
        },
    }
}

fn joint_membership() -> Membership {
    let configs = vec![BTreeSet::from([0, 1]), BTreeSet::from([1, 2])];
    let nodes = (0..4).map(|i| (i, addr(i))).collect::<BTreeMap<_, _>>();
    Membership::new(configs, nodes).expect("voters are all in the address book")
}

fn commit() -> Command {
    Command::Commit(Transaction {
        read_version: Some(41),
        mutations: vec![
            Mutation::Set {
                cf: "default".into(),
                key: b"k".to_vec(),
                value: vec![0, 255, 7],
            },
            Mutation::ClearRange {
                cf: "other".into(),
                begin: b"a".to_vec(),
                end: b"b".to_vec(),
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

/// A decoded value of any Raft kind, to compare with the expected one.
#[derive(Debug, PartialEq)]
enum Sample {
    Entry(Entry),
    LogId(LogId),
    Vote(Vote),
    StoredMembership(StoredMembership),
    SnapshotMeta(SnapshotMeta),
    Membership(Membership),
}

impl Sample {
    fn encode(&self) -> Vec<u8> {
        match self {
            Sample::Entry(e) => encode_entry(e).unwrap(),
            Sample::LogId(id) => encode_log_id(id),
            Sample::Vote(v) => encode_vote(v),
            Sample::StoredMembership(s) => encode_stored_membership(s).unwrap(),
            Sample::SnapshotMeta(m) => encode_snapshot_meta(m).unwrap(),
            Sample::Membership(m) => encode_membership(m).unwrap(),
        }
    }

    /// Decodes `bytes` as the kind `self` is.
    fn decode_like(&self, bytes: &[u8]) -> io::Result<Sample> {
        Ok(match self {
            Sample::Entry(_) => Sample::Entry(decode_entry(bytes)?),
            Sample::LogId(_) => Sample::LogId(decode_log_id(bytes)?),
            Sample::Vote(_) => Sample::Vote(decode_vote(bytes)?),
            Sample::StoredMembership(_) => {
                Sample::StoredMembership(decode_stored_membership(bytes)?)
            }
            Sample::SnapshotMeta(_) => Sample::SnapshotMeta(decode_snapshot_meta(bytes)?),
            Sample::Membership(_) => Sample::Membership(decode_membership(bytes)?),
        })
    }
}

/// Every stored or sent Raft kind at the current version, by fixture name.
fn samples() -> Vec<(&'static str, Sample)> {
    vec![
        (
            "entry_blank",
            Sample::Entry(Entry {
                log_id: log_id(2, 1, 7),
                payload: EntryPayload::Blank,
            }),
        ),
        (
            "entry_command",
            Sample::Entry(Entry {
                log_id: log_id(3, 1, 9),
                payload: EntryPayload::Normal(commit()),
            }),
        ),
        (
            "entry_membership",
            Sample::Entry(Entry {
                log_id: log_id(3, 2, 10),
                payload: EntryPayload::Membership(joint_membership()),
            }),
        ),
        ("log_id", Sample::LogId(log_id(0x0102, 0x0304, 0x0506))),
        (
            "vote",
            Sample::Vote(Vote {
                leader_id: LeaderId {
                    term: 5,
                    node_id: 2,
                },
                committed: true,
            }),
        ),
        (
            "stored_membership",
            Sample::StoredMembership(StoredMembership::new(Some(log_id(3, 1, 7)), membership())),
        ),
        (
            "stored_membership_initial",
            Sample::StoredMembership(StoredMembership::default()),
        ),
        (
            "snapshot_meta",
            Sample::SnapshotMeta(SnapshotMeta {
                last_log_id: Some(log_id(4, 2, 10)),
                last_membership: StoredMembership::new(Some(log_id(3, 1, 7)), membership()),
            }),
        ),
        ("membership", Sample::Membership(joint_membership())),
    ]
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// Writes the fixtures of the current version. Run it only when adding a stored kind or a
/// sample; a change of an existing layout needs a new version byte and a new fixture directory
/// instead (docs/encoding.md, "Fixtures"):
/// `cargo test --workspace --lib write_raft_fixtures -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/v1; run by hand, see docs/encoding.md"]
fn write_raft_fixtures() {
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, sample) in samples() {
        std::fs::write(dir.join(format!("{name}.bin")), sample.encode()).unwrap();
    }
}

#[test]
fn stored_v1_fixtures_decode_to_their_values() {
    for (name, expected) in samples() {
        let path = fixture_dir().join(format!("{name}.bin"));
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
        let decoded = expected
            .decode_like(&stored)
            .unwrap_or_else(|e| panic!("fixture {name} no longer decodes: {e}"));
        assert_eq!(decoded, expected, "fixture {name} decodes to another value");
        // The encoder still writes exactly these bytes: a layout change must bump the version.
        assert_eq!(
            expected.encode(),
            stored,
            "{name} encodes differently from its v1 fixture"
        );
    }
}

#[test]
fn every_value_refuses_an_unknown_version_by_name() {
    for (name, sample) in samples() {
        let mut bytes = sample.encode();
        assert_eq!(bytes[0], FORMAT_V1, "{name}");
        for version in [0x00, 0x02, 0x80] {
            bytes[0] = version;
            let err = sample.decode_like(&bytes).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
            let typed = err.get_ref().and_then(|e| e.downcast_ref::<DecodeError>());
            assert!(
                matches!(typed, Some(DecodeError::UnknownVersion { version: v, .. }) if *v == version),
                "{name}: {err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("unknown format version {version:#04x}")),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn every_value_round_trips_and_refuses_truncation_and_trailing_bytes() {
    for (name, sample) in samples() {
        let bytes = sample.encode();
        assert_eq!(sample.decode_like(&bytes).unwrap(), sample, "{name}");
        for cut in 0..bytes.len() {
            let err = sample.decode_like(&bytes[..cut]).expect_err(name);
            assert!(
                err.to_string().starts_with("corrupt "),
                "{name} at {cut}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = sample.decode_like(&longer).expect_err(name);
        assert!(err.to_string().contains("trailing"), "{name}: {err}");
    }
}

#[test]
fn membership_value_is_the_entry_body() {
    let membership = joint_membership();
    let bytes = encode_membership(&membership).expect("encodes");
    let entry = Entry {
        log_id: log_id(3, 1, 9),
        payload: EntryPayload::Membership(membership),
    };
    let entry_bytes = encode_entry(&entry).expect("encodes");
    assert_eq!(&entry_bytes[1 + 24 + 1..], &bytes[1..]);
}

#[test]
fn commands_and_outcomes_use_the_engine_encoding() {
    // The command an entry carries is the forwarded command's body, byte for byte.
    let command = commit();
    let forwarded = encode_command(&command).unwrap();
    let entry = encode_entry(&Entry {
        log_id: log_id(3, 1, 9),
        payload: EntryPayload::Normal(command.clone()),
    })
    .unwrap();
    assert_eq!(&entry[1 + 24 + 1..], &forwarded[1..]);
    assert_eq!(decode_command(&forwarded).unwrap(), command);
    let outcome = Outcome::Rejected(Invalid::Argument {
        field: "key".into(),
        problem: "too long".into(),
    });
    let bytes = encode_outcome(&outcome).unwrap();
    assert_eq!(
        bytes,
        dolmen_engine::encoding::encode_outcome(&outcome).unwrap()
    );
    assert_eq!(decode_outcome(&bytes).unwrap(), outcome);
    let err = decode_entry(&[
        FORMAT_V1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9,
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt raft_log entry: unknown payload tag 9"
    );
}
