//! Read versions and snapshots: versions increase, snapshot reads see their version, a
//! future version waits then fails, a version older than the retention window is too old.

use std::time::{Duration, Instant};

use dolmen_tests::client::{op_set, range_all_absent};
use dolmen_tests::kvstore::{
    GetRangeRequest, SnapshotGetRangeRequest, SnapshotReadRequest, TTransactionalKVSyncClient,
};
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{
    assert_error_mentions, assert_found, assert_missing, fresh_ns, key, kv_pairs, reply,
    snapshot_range_of,
};

/// getReadVersion is > 0, ≥ every acknowledged commit, and commit versions strictly increase
/// across setKey, deleteKey and atomicCommit.
pub(crate) fn suite_read_versions(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("versions");
    let mut last = kv.read_version();
    for i in 0..20u32 {
        let k = key(&ns, format!("k{}", i % 3).as_bytes());
        let rv = kv.read_version();
        assert!(
            rv >= last,
            "expected read versions non-decreasing: {rv} after {last}"
        );
        match i % 3 {
            0 => {
                let cv = kv.must_commit(rv, vec![op_set(&k, b"v")], vec![]);
                assert!(
                    cv > last,
                    "expected commit version {cv} > previous {last} (step {i})"
                );
                let after = kv.read_version();
                assert!(
                    after >= cv,
                    "expected read version {after} >= acknowledged commit {cv}"
                );
                last = cv;
            }
            1 => {
                kv.must_set(&k, b"v");
                let after = kv.read_version();
                assert!(
                    after > last,
                    "expected setKey to commit at a version > {last}; read version after it is \
                     {after} (step {i})"
                );
                last = after;
            }
            _ => {
                kv.must_delete(&k);
                let after = kv.read_version();
                assert!(
                    after > last,
                    "expected deleteKey to commit at a version > {last}; read version after it \
                     is {after} (step {i})"
                );
                last = after;
            }
        }
    }
    // Across connections too: a fresh connection's read version covers acknowledged commits.
    let cv = kv.must_commit(last, vec![op_set(&key(&ns, b"x"), b"1")], vec![]);
    let mut other = connect.client(c);
    let rv = other.read_version();
    assert!(
        rv >= cv,
        "expected a new connection's read version {rv} >= acknowledged {cv}"
    );
}

/// Snapshot reads see the state as of their read version.
pub(crate) fn suite_snapshots(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("snap");
    let (a, b, ck, d) = (
        key(&ns, b"a"),
        key(&ns, b"b"),
        key(&ns, b"c"),
        key(&ns, b"d"),
    );
    kv.must_set(&a, b"a1");
    kv.must_set(&ck, b"c1");
    kv.must_set(&d, b"d1");
    let rv = kv.read_version();
    kv.must_delete(&a); // deleted after rv: still visible at rv
    kv.must_set(&b, b"b1"); // created after rv: invisible at rv
    kv.must_set(&ck, b"c2"); // modified after rv: old value at rv

    let r = kv.snapshot_read_in(&ck, rv, None);
    assert!(
        r.found && r.value == b"c1" && r.error.is_none(),
        "expected snapshotRead(c, {rv}) = c1: {r:?}"
    );
    let r = reply(
        "snapshotGet",
        kv.snapshot_get(SnapshotReadRequest::new(ck.clone(), rv, None)),
    );
    assert!(
        r.found && r.value == b"c1",
        "expected snapshotGet(c, {rv}) = c1: {r:?}"
    );
    assert_found(&mut kv, &ck, b"c2");
    let r = kv.snapshot_read_in(&a, rv, None);
    assert!(
        r.found && r.value == b"a1",
        "expected deleted-later a visible at {rv}: {r:?}"
    );
    let r = kv.snapshot_read_in(&b, rv, None);
    assert!(
        !r.found && r.value.is_empty() && r.error.is_none(),
        "expected created-later b absent at {rv} with no error: {r:?}"
    );
    let now = kv.read_version();
    let r = kv.snapshot_read_in(&ck, now, None);
    assert!(
        r.found && r.value == b"c2",
        "expected snapshotRead at {now} = c2: {r:?}"
    );

    let req = GetRangeRequest {
        begin_key: Some(ns.clone()),
        end_key: Some(key(&ns, b"\xff")),
        ..range_all_absent()
    };
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(&req, rv)),
    );
    assert!(
        r.success && !r.has_more && r.error.is_none(),
        "expected snapshotGetRange ok: {r:?}"
    );
    assert_eq!(
        kv_pairs(&r),
        vec![
            (a.clone(), b"a1".to_vec()),
            (ck.clone(), b"c1".to_vec()),
            (d.clone(), b"d1".to_vec())
        ],
        "expected snapshotGetRange at {rv} = [a=a1, c=c1, d=d1]"
    );
    let r = kv.range(req.clone());
    assert_eq!(
        kv_pairs(&r),
        vec![
            (b.clone(), b"b1".to_vec()),
            (ck.clone(), b"c2".to_vec()),
            (d.clone(), b"d1".to_vec())
        ],
        "expected getRange now = [b=b1, c=c2, d=d1]"
    );

    // Field 7 is read_version and field 8 is limit in snapshotGetRange.
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(SnapshotGetRangeRequest {
            limit: Some(1),
            ..snapshot_range_of(&req, rv)
        }),
    );
    assert_eq!(
        kv_pairs(&r),
        vec![(a.clone(), b"a1".to_vec())],
        "expected limit 1 = [a=a1]"
    );
    assert!(r.has_more, "expected has_more with limit 1 of 3: {r:?}");
}

/// A read version far in the future waits (bounded) and fails with FUTURE_VERSION.
pub(crate) fn suite_future_version(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("future");
    let k = key(&ns, b"k");
    kv.must_set(&k, b"v");
    let future = kv.read_version() + 1_000_000_000;

    let r = kv.snapshot_read_in(&k, future, None);
    assert!(
        !r.found,
        "expected snapshotRead at a future version not found: {r:?}"
    );
    assert_error_mentions(
        &r.error,
        "FUTURE_VERSION",
        "snapshotRead at a future version",
    );

    let r = reply(
        "snapshotGet",
        kv.snapshot_get(SnapshotReadRequest::new(k.clone(), future, None)),
    );
    assert!(
        !r.found,
        "expected snapshotGet at a future version not found: {r:?}"
    );
    assert_error_mentions(
        &r.error,
        "FUTURE_VERSION",
        "snapshotGet at a future version",
    );

    let req = GetRangeRequest {
        begin_key: Some(ns.clone()),
        ..range_all_absent()
    };
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(&req, future)),
    );
    assert!(
        !r.success && r.key_values.is_empty(),
        "expected snapshotGetRange to fail: {r:?}"
    );
    assert_error_mentions(
        &r.error,
        "FUTURE_VERSION",
        "snapshotGetRange at a future version",
    );

    assert_found(&mut kv, &k, b"v");
}

/// Versions older than the retention window are TRANSACTION_TOO_OLD (config: 300 ms window).
pub(crate) fn suite_transaction_too_old(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("too-old");
    let (k, filler, x) = (key(&ns, b"k"), key(&ns, b"filler"), key(&ns, b"x"));
    kv.must_set(&k, b"old");
    let old = kv.read_version();
    kv.must_set(&k, b"new");

    std::thread::sleep(Duration::from_millis(1500));
    // The horizon moves with writes and compaction ticks; allow a few more ticks, bounded.
    let started = Instant::now();
    let mut last = None;
    for attempt in 0..50 {
        kv.must_set(&filler, format!("{attempt}").as_bytes());
        let r = kv.snapshot_read_in(&k, old, None);
        let too_old = r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("TRANSACTION_TOO_OLD"));
        last = Some(r);
        if too_old || started.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = last.expect("at least one attempt");
    assert!(
        !r.found,
        "expected no value at a version below the horizon: {r:?}"
    );
    assert_error_mentions(
        &r.error,
        "TRANSACTION_TOO_OLD",
        &format!(
            "snapshotRead at version {old}, 1.5 s + {:?} after it (retention 300 ms)",
            started.elapsed()
        ),
    );

    let r = kv.commit(old, vec![op_set(&x, b"x")], vec![k.clone()]);
    assert!(
        !r.success,
        "expected atomicCommit at a too-old read version to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("TRANSACTION_TOO_OLD"),
        "expected error_code TRANSACTION_TOO_OLD for a commit at read version {old}: {r:?}"
    );
    assert_missing(&mut kv, &x);

    let req = GetRangeRequest {
        begin_key: Some(ns.clone()),
        ..range_all_absent()
    };
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(&req, old)),
    );
    assert!(
        !r.success,
        "expected snapshotGetRange at a too-old version to fail: {r:?}"
    );
    assert_error_mentions(
        &r.error,
        "TRANSACTION_TOO_OLD",
        "snapshotGetRange at a too-old version",
    );
}
