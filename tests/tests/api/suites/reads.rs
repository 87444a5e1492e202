//! Point reads and writes: get / setKey / deleteKey, column families as separate
//! keyspaces, and an unknown column family on every method.

use dolmen_tests::client::{op, op_set, range_all_absent};
use dolmen_tests::kvstore::{
    GetRangeRequest, SetVersionstampedKeyRequest, SetVersionstampedValueRequest,
    SnapshotReadRequest, TTransactionalKVSyncClient,
};
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{
    assert_error_mentions, assert_found, assert_missing, fresh_ns, key, reply, snapshot_range_of,
    UNKNOWN_CF,
};

/// get / setKey / deleteKey basics, including not-found shape and binary keys and values.
pub(crate) fn suite_get_set_delete(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("basic");
    let k = key(&ns, b"k");

    assert_missing(&mut kv, &k);
    kv.must_set(&k, b"v1");
    assert_found(&mut kv, &k, b"v1");
    kv.must_set(&k, b"v2");
    assert_found(&mut kv, &k, b"v2");
    kv.must_delete(&k);
    assert_missing(&mut kv, &k);

    // Deleting a missing key succeeds.
    kv.must_delete(&key(&ns, b"never-written"));
    kv.must_delete(&k);

    // Binary keys and values, including 0x00 and 0xFF bytes.
    let bk = key(&ns, b"\x00\xff\x00bin\xff");
    let bv = b"\xff\x00\x01\x02\xfe".to_vec();
    kv.must_set(&bk, &bv);
    assert_found(&mut kv, &bk, &bv);

    // An empty value is a value: found=true.
    let ek = key(&ns, b"empty-value");
    kv.must_set(&ek, b"");
    assert_found(&mut kv, &ek, b"");

    // Explicit "default" column family is the same keyspace as the absent field.
    let r = kv.get_in(&bk, Some("default"));
    assert!(
        r.found && r.value == bv,
        "expected get(cf=\"default\") to see the key: {r:?}"
    );
}

/// Column families are separate keyspaces for every read and write method.
pub(crate) fn suite_column_families(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("cf");
    let k = key(&ns, b"k");
    let users = Some("users");

    let r = kv.set_in(&k, b"in-users", users);
    assert!(
        r.success && r.error.is_none(),
        "expected setKey(cf=users) success: {r:?}"
    );
    let r = kv.get_in(&k, users);
    assert!(
        r.found && r.value == b"in-users",
        "expected get(cf=users) to find it: {r:?}"
    );
    assert_missing(&mut kv, &k);

    kv.must_set(&k, b"in-default");
    assert_found(&mut kv, &k, b"in-default");
    let r = kv.get_in(&k, users);
    assert_eq!(
        r.value, b"in-users",
        "expected users' value unaffected by a default write"
    );

    let rv = kv.read_version();
    let r = kv.snapshot_read_in(&k, rv, users);
    assert!(
        r.found && r.value == b"in-users",
        "expected snapshotRead(cf=users): {r:?}"
    );
    let r = kv.snapshot_read_in(&k, rv, None);
    assert!(
        r.found && r.value == b"in-default",
        "expected snapshotRead(default): {r:?}"
    );

    // Ranges see only their column family.
    let ku = key(&ns, b"only-users");
    let r = kv.set_in(&ku, b"u", users);
    assert!(r.success, "expected setKey(cf=users) success: {r:?}");
    let req = GetRangeRequest {
        begin_key: Some(ns.clone()),
        end_key: Some(key(&ns, b"\xff")),
        column_family: Some("users".to_owned()),
        ..range_all_absent()
    };
    let r = kv.range(req.clone());
    let keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        vec![k.clone(), ku.clone()],
        "expected getRange(cf=users) = [k, only-users]"
    );
    let r = kv.range(GetRangeRequest {
        column_family: None,
        ..req.clone()
    });
    let keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        vec![k.clone()],
        "expected getRange(default) = [k] only"
    );
    let rv = kv.read_version();
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(&req, rv)),
    );
    assert_eq!(
        r.key_values.len(),
        2,
        "expected snapshotGetRange(cf=users) = 2 keys: {r:?}"
    );

    // atomicCommit operations carry their own column family.
    let kc = key(&ns, b"committed");
    kv.must_commit(rv, vec![op("set", &kc, Some(b"cu"), Some("users"))], vec![]);
    let r = kv.get_in(&kc, users);
    assert!(
        r.found && r.value == b"cu",
        "expected the commit's write in users: {r:?}"
    );
    assert_missing(&mut kv, &kc);
    let rv = kv.read_version();
    kv.must_commit(rv, vec![op("delete", &k, None, Some("users"))], vec![]);
    let r = kv.get_in(&k, users);
    assert!(
        !r.found,
        "expected the commit's delete in users to remove k: {r:?}"
    );
    assert_found(&mut kv, &k, b"in-default");

    // deleteKey is per column family too.
    let r = kv.delete_in(&ku, users);
    assert!(r.success, "expected deleteKey(cf=users) success: {r:?}");
    let r = kv.get_in(&ku, users);
    assert!(!r.found, "expected only-users deleted: {r:?}");

    // Versionstamped writes honour the column family.
    let r = reply(
        "setVersionstampedValue",
        kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
            key(&ns, b"vsv"),
            b"0123456789".to_vec(),
            Some("users".to_owned()),
        )),
    );
    assert!(
        r.success,
        "expected setVersionstampedValue(cf=users) success: {r:?}"
    );
    let r2 = kv.get_in(&key(&ns, b"vsv"), users);
    assert!(
        r2.found && r2.value == r.generated_value,
        "expected the stamped value in users"
    );
    assert_missing(&mut kv, &key(&ns, b"vsv"));
}

/// An unknown column family fails every method with an error naming it.
pub(crate) fn suite_unknown_column_family(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("unknown-cf");
    let k = key(&ns, b"k");
    let cf = Some(UNKNOWN_CF);
    let cf_s = Some(UNKNOWN_CF.to_owned());

    let r = kv.get_in(&k, cf);
    assert!(
        !r.found && r.value.is_empty(),
        "expected get(unknown cf) not found: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "get(unknown cf)");

    let r = kv.set_in(&k, b"v", cf);
    assert!(!r.success, "expected setKey(unknown cf) to fail: {r:?}");
    assert_error_mentions(&r.error, UNKNOWN_CF, "setKey(unknown cf)");

    let r = kv.delete_in(&k, cf);
    assert!(!r.success, "expected deleteKey(unknown cf) to fail: {r:?}");
    assert_error_mentions(&r.error, UNKNOWN_CF, "deleteKey(unknown cf)");

    let req = GetRangeRequest {
        column_family: cf_s.clone(),
        ..range_all_absent()
    };
    let r = kv.range(req.clone());
    assert!(
        !r.success && r.key_values.is_empty(),
        "expected getRange(unknown cf) to fail: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "getRange(unknown cf)");

    let rv = kv.read_version();
    let r = kv.snapshot_read_in(&k, rv, cf);
    assert!(
        !r.found,
        "expected snapshotRead(unknown cf) not found: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "snapshotRead(unknown cf)");

    let r = reply(
        "snapshotGet",
        kv.snapshot_get(SnapshotReadRequest::new(k.clone(), rv, cf_s.clone())),
    );
    assert!(
        !r.found,
        "expected snapshotGet(unknown cf) not found: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "snapshotGet(unknown cf)");

    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(&req, rv)),
    );
    assert!(
        !r.success && r.key_values.is_empty(),
        "expected snapshotGetRange fail: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "snapshotGetRange(unknown cf)");

    let sibling = key(&ns, b"sibling");
    let r = kv.commit(
        rv,
        vec![op_set(&sibling, b"x"), op("set", &k, Some(b"v"), cf)],
        vec![],
    );
    assert!(
        !r.success,
        "expected atomicCommit with an unknown-cf op to fail: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "atomicCommit(op in unknown cf)");
    assert_missing(&mut kv, &sibling);

    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            key(&ns, b"0123456789"),
            b"v".to_vec(),
            cf_s.clone(),
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedKey(unknown cf) to fail: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "setVersionstampedKey(unknown cf)");

    let r = reply(
        "setVersionstampedValue",
        kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
            k.clone(),
            b"0123456789".to_vec(),
            cf_s,
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedValue(unknown cf) to fail: {r:?}"
    );
    assert_error_mentions(&r.error, UNKNOWN_CF, "setVersionstampedValue(unknown cf)");

    // The server is still fine.
    kv.must_set(&k, b"ok");
    assert_found(&mut kv, &k, b"ok");
}
