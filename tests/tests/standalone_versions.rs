//! A standalone node's versions are in FoundationDB units (docs/sharding.md §3.1, §3.4):
//! microseconds of wall time, strictly increasing, above every earlier version after a restart,
//! and they are what a versionstamp carries. Through the real binary and a stock Thrift client.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test standalone_versions`.

use dolmen_tests::client::{now_micros as now_us, op_set, versionstamped_commit};
use dolmen_tests::{connect_buffered, KvExt, Standalone, TestCluster};

#[test]
fn standalone_versions_are_microseconds_and_never_go_back_across_restarts() {
    let mut node = Standalone::start();
    let mut kv = connect_buffered(node.thrift_endpoint());

    // Units: a version is drawn as max(last + 1, now in µs), so a fresh node's first commit
    // lands between the clock before the call and (give or take one per earlier version) the
    // clock after it.
    let before = now_us();
    let rv = kv.read_version();
    let first = kv.must_commit(rv, vec![op_set(b"versions/a", b"1")], vec![]);
    let after = now_us();
    assert!(
        first >= before && first <= after + 1_000,
        "expected a commit version in microseconds of wall time, between {before} and {after}; \
         got {first}"
    );

    // Strictly increasing, and every read version at least every acknowledged commit.
    let mut last = first;
    for i in 0..200u32 {
        let rv = kv.read_version();
        assert!(
            rv >= last,
            "read version {rv} below acknowledged commit {last}"
        );
        let key = format!("versions/k{}", i % 7);
        let cv = kv.must_commit(rv, vec![op_set(key.as_bytes(), b"v")], vec![]);
        assert!(cv > last, "commit version {cv} not above {last}");
        last = cv;
    }

    // A versionstamp carries the commit version in its first eight bytes.
    let mut reader = connect_buffered(node.thrift_endpoint());
    let (stamped, in_stamp) = versionstamped_commit(&mut kv, &mut reader, b"versions/stamped");
    assert_eq!(in_stamp, stamped, "the stamp is the commit version");
    last = stamped;

    // A restart starts above everything handed out before.
    node.restart();
    let mut kv = connect_buffered(node.thrift_endpoint());
    let rv = kv.read_version();
    assert!(
        rv >= last,
        "after a restart, read version {rv} below {last}"
    );
    let next = kv.must_commit(rv, vec![op_set(b"versions/b", b"2")], vec![]);
    assert!(
        next > last,
        "after a restart, commit version {next} not above {last}"
    );
}
