//! atomicCommit: sets and deletes at one version, invalid operations reject the whole commit,
//! read-conflict keys abort it.

use dolmen_tests::client::{op, op_delete, op_set};
use dolmen_tests::kvstore::{AtomicCommitRequest, Operation, TTransactionalKVSyncClient};
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{assert_found, assert_missing, assert_nonempty_error, fresh_ns, key, reply};

/// atomicCommit applies sets and deletes atomically at one version; an empty commit succeeds.
pub(crate) fn suite_atomic_commit(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("commit");
    let (a, b, d) = (key(&ns, b"a"), key(&ns, b"b"), key(&ns, b"d"));
    kv.must_set(&d, b"doomed");

    let rv = kv.read_version();
    let cv = kv.must_commit(
        rv,
        vec![
            op_set(&a, b"1"),
            op_set(&b, b"2"),
            op_delete(&d),
            op_delete(&key(&ns, b"none")),
        ],
        vec![a.clone()],
    );
    assert!(
        cv > rv,
        "expected committed_version {cv} > read version {rv}"
    );
    assert_found(&mut kv, &a, b"1");
    assert_found(&mut kv, &b, b"2");
    assert_missing(&mut kv, &d);

    // One version for all: at cv-1 none of the writes is visible, at cv all are.
    let before = kv.snapshot_read_in(&a, cv - 1, None);
    assert!(
        !before.found,
        "expected a invisible at {} (commit at {cv}): {before:?}",
        cv - 1
    );
    let before = kv.snapshot_read_in(&d, cv - 1, None);
    assert!(
        before.found,
        "expected d still visible at {} (deleted at {cv}): {before:?}",
        cv - 1
    );
    let at = kv.snapshot_read_in(&b, cv, None);
    assert!(
        at.found && at.value == b"2",
        "expected b visible at {cv}: {at:?}"
    );
    let at = kv.snapshot_read_in(&d, cv, None);
    assert!(
        !at.found && at.error.is_none(),
        "expected d deleted at {cv}: {at:?}"
    );

    // Empty operation list commits.
    let rv = kv.read_version();
    let r = kv.commit(rv, vec![], vec![]);
    assert!(
        r.success && r.error.is_none() && r.error_code.is_none(),
        "expected an empty atomicCommit to succeed with no error fields: {r:?}"
    );
    let ecv = r
        .committed_version
        .unwrap_or_else(|| panic!("expected committed_version on an empty commit, got {r:?}"));
    let after = kv.read_version();
    assert!(
        ecv <= after,
        "expected empty commit version {ecv} <= later read version {after}"
    );

    // timeout_seconds is honoured as an optional field.
    let r = reply(
        "atomicCommit",
        kv.atomic_commit(AtomicCommitRequest::new(
            after,
            vec![op_set(&a, b"3")],
            vec![],
            Some(5),
        )),
    );
    assert!(
        r.success && r.committed_version.is_some(),
        "expected commit success: {r:?}"
    );
    assert_found(&mut kv, &a, b"3");
}

/// Invalid operations fail the whole commit with INVALID_OPERATION and apply nothing.
pub(crate) fn suite_atomic_commit_invalid_operations(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("invalid-op");
    let k = key(&ns, b"k");
    let cases: Vec<(&str, Operation)> = vec![
        (
            "unknown operation type",
            op("frobnicate", &k, Some(b"v"), None),
        ),
        ("set without value", op("set", &k, None, None)),
        (
            "SET_VERSIONSTAMPED_KEY with a 9-byte key",
            op("SET_VERSIONSTAMPED_KEY", b"123456789", Some(b"v"), None),
        ),
        (
            "SET_VERSIONSTAMPED_KEY without value",
            op(
                "SET_VERSIONSTAMPED_KEY",
                &key(&ns, b"0123456789"),
                None,
                None,
            ),
        ),
        (
            "SET_VERSIONSTAMPED_VALUE with a 9-byte value",
            op("SET_VERSIONSTAMPED_VALUE", &k, Some(b"123456789"), None),
        ),
    ];
    for (i, (what, invalid)) in cases.into_iter().enumerate() {
        let sibling = key(&ns, format!("sibling{i}").as_bytes());
        let rv = kv.read_version();
        // The valid operation comes first: a server that applies as it validates would leak it.
        let r = kv.commit(rv, vec![op_set(&sibling, b"x"), invalid], vec![]);
        assert!(
            !r.success,
            "expected atomicCommit with {what} to fail: {r:?}"
        );
        assert_eq!(
            r.error_code.as_deref(),
            Some("INVALID_OPERATION"),
            "expected error_code INVALID_OPERATION for {what}: {r:?}"
        );
        assert_nonempty_error(&r.error, &format!("atomicCommit with {what}"));
        assert_missing(&mut kv, &sibling);
    }
    assert_missing(&mut kv, &k);
}

/// Read-conflict keys written after the read version abort the commit; nothing else does.
pub(crate) fn suite_conflicts(c: &dyn TestCluster, connect: Connector) {
    let mut t1 = connect.client(c);
    let mut t2 = connect.client(c);
    let ns = fresh_ns("conflict");
    let (k, k2, other) = (key(&ns, b"k"), key(&ns, b"k2"), key(&ns, b"other"));
    t1.must_set(&k, b"0");
    t1.must_set(&other, b"o");

    let v = t1.read_version();
    let v2 = t2.read_version();
    assert!(v2 >= v, "expected the second read version {v2} >= {v}");
    let v = v.min(v2);

    t1.must_commit(v, vec![op_set(&k, b"t1")], vec![k.clone()]);
    let r = t2.commit(
        v,
        vec![op_set(&k2, b"t2"), op_set(&k, b"t2")],
        vec![k.clone()],
    );
    assert!(
        !r.success,
        "expected T2 (read k at {v}, k written since) to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("CONFLICT"),
        "expected CONFLICT: {r:?}"
    );
    assert_nonempty_error(&r.error, "conflicting atomicCommit");
    assert_found(&mut t2, &k, b"t1");
    assert_missing(&mut t2, &k2);

    // A conflict key not written after v: success even at the old read version.
    let k3 = key(&ns, b"k3");
    t2.must_commit(v, vec![op_set(&k3, b"t3")], vec![other.clone()]);
    assert_found(&mut t2, &k3, b"t3");

    // Blind writes never conflict, even on a key written after the read version.
    t2.must_commit(v, vec![op_set(&k, b"blind")], vec![]);
    assert_found(&mut t2, &k, b"blind");

    // Writes by setKey and deleteKey count as writes for conflict detection.
    let v = t1.read_version();
    t2.must_set(&k, b"by-setKey");
    let r = t1.commit(v, vec![op_set(&k2, b"x")], vec![k.clone()]);
    assert_eq!(
        r.error_code.as_deref(),
        Some("CONFLICT"),
        "expected CONFLICT after setKey: {r:?}"
    );
    let v = t1.read_version();
    t2.must_delete(&k);
    let r = t1.commit(v, vec![op_set(&k2, b"x")], vec![k.clone()]);
    assert_eq!(
        r.error_code.as_deref(),
        Some("CONFLICT"),
        "expected CONFLICT after deleteKey: {r:?}"
    );
    assert_missing(&mut t1, &k2);

    // A conflict key written at or before the read version does not conflict.
    let v = t1.read_version();
    t1.must_commit(v, vec![op_set(&k2, b"ok")], vec![k.clone(), other.clone()]);
    assert_found(&mut t1, &k2, b"ok");
}
