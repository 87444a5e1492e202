//! Every WIRE §2 method replies; the legacy per-connection methods refuse; `ping`.

use dolmen_tests::client::{op_set, range_all_absent};
use dolmen_tests::kvstore::{
    AddReadConflictRangeRequest, AddReadConflictRequest, AtomicCommitRequest, DeleteKeyRequest,
    FaultInjectionRequest, GetClusterHealthRequest, GetCommittedVersionRequest,
    GetDatabaseStatsRequest, GetNodeInfoRequest, GetRangeRequest, GetReadVersionRequest,
    GetRequest, PingRequest, PingResponse, SetKeyRequest, SetReadVersionRequest,
    SetVersionstampedKeyRequest, SetVersionstampedValueRequest, SnapshotGetRangeRequest,
    SnapshotReadRequest, TTransactionalKVSyncClient,
};
use dolmen_tests::{Connector, KvExt, TestCluster};
use thrift::OrderedFloat;

use crate::helpers::{assert_found, assert_nonempty_error, fresh_ns, key, now_micros, reply};

/// Every WIRE §2 method answers with a REPLY (same name and seqid, checked by the stock client)
/// whose required fields are present; on success `error`/`error_code` are absent.
pub(crate) fn suite_every_method_replies(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("replies");
    let k = key(&ns, b"k");

    let r = reply(
        "getReadVersion",
        kv.get_read_version(GetReadVersionRequest::new()),
    );
    assert!(
        r.success && r.read_version > 0,
        "expected getReadVersion success, > 0: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected getReadVersion.error absent on success"
    );

    let r = reply(
        "setKey",
        kv.set_key(SetKeyRequest::new(k.clone(), b"v".to_vec(), None)),
    );
    assert!(r.success, "expected setKey success: {r:?}");
    assert_eq!(
        (r.error, r.error_code),
        (None, None),
        "expected setKey error fields absent"
    );

    let r = reply("get", kv.get(GetRequest::new(k.clone(), None)));
    assert!(
        r.found && r.value == b"v",
        "expected get to find the value: {r:?}"
    );
    assert_eq!(r.error, None, "expected get.error absent on success");

    let rv = kv.read_version();
    let r = reply(
        "snapshotRead",
        kv.snapshot_read(SnapshotReadRequest::new(k.clone(), rv, None)),
    );
    assert!(
        r.found && r.value == b"v",
        "expected snapshotRead to find the value: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected snapshotRead.error absent on success"
    );

    let r = reply(
        "snapshotGet",
        kv.snapshot_get(SnapshotReadRequest::new(k.clone(), rv, None)),
    );
    assert!(
        r.found && r.value == b"v",
        "expected snapshotGet to find the value: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected snapshotGet.error absent on success"
    );

    let r = reply(
        "atomicCommit",
        kv.atomic_commit(AtomicCommitRequest::new(
            rv,
            vec![op_set(&key(&ns, b"k2"), b"v2")],
            vec![k.clone()],
            Some(30),
        )),
    );
    assert!(
        r.success && r.committed_version.is_some(),
        "expected commit success: {r:?}"
    );
    assert_eq!(
        (r.error, r.error_code),
        (None, None),
        "expected commit error fields absent"
    );

    let r = reply(
        "getRange",
        kv.get_range(GetRangeRequest {
            begin_key: Some(ns.clone()),
            end_key: Some(key(&ns, b"\xff")),
            ..range_all_absent()
        }),
    );
    assert!(
        r.success && r.key_values.len() == 2 && !r.has_more,
        "expected 2 keys: {r:?}"
    );
    assert_eq!(r.error, None, "expected getRange.error absent on success");

    let rv = kv.read_version();
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(SnapshotGetRangeRequest {
            begin_key: Some(ns.clone()),
            end_key: Some(key(&ns, b"\xff")),
            begin_offset: None,
            begin_or_equal: None,
            end_offset: None,
            end_or_equal: None,
            read_version: rv,
            limit: None,
            column_family: None,
        }),
    );
    assert!(
        r.success && r.key_values.len() == 2 && !r.has_more,
        "expected 2 keys: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected snapshotGetRange.error absent on success"
    );

    let r = reply(
        "deleteKey",
        kv.delete_key(DeleteKeyRequest::new(k.clone(), None)),
    );
    assert!(r.success, "expected deleteKey success: {r:?}");
    assert_eq!(
        (r.error, r.error_code),
        (None, None),
        "expected deleteKey error fields absent"
    );

    // Legacy methods: a REPLY with required fields (their success=false is checked elsewhere).
    reply(
        "addReadConflict",
        kv.add_read_conflict(AddReadConflictRequest::new(k.clone(), None)),
    );
    reply(
        "addReadConflictRange",
        kv.add_read_conflict_range(AddReadConflictRangeRequest::new(
            k.clone(),
            key(&k, b"z"),
            None,
        )),
    );
    reply(
        "setReadVersion",
        kv.set_read_version(SetReadVersionRequest::new(rv)),
    );
    reply(
        "getCommittedVersion",
        kv.get_committed_version(GetCommittedVersionRequest::new()),
    );

    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            key(&ns, b"vs/0123456789"),
            b"x".to_vec(),
            None,
        )),
    );
    assert!(
        r.success && !r.generated_key.is_empty(),
        "expected versionstamped key: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected setVersionstampedKey.error absent on success"
    );

    let r = reply(
        "setVersionstampedValue",
        kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
            key(&ns, b"vsv"),
            b"0123456789".to_vec(),
            None,
        )),
    );
    assert!(
        r.success && r.generated_value.len() == 10,
        "expected versionstamped value: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected setVersionstampedValue.error absent on success"
    );

    // Clearing (probability 0) is allowed and harmless in every configuration with injection on.
    let r = reply(
        "setFaultInjection",
        kv.set_fault_injection(FaultInjectionRequest::new(
            "CONFLICT".to_owned(),
            Some(OrderedFloat(0.0)),
            None,
            None,
        )),
    );
    assert!(
        r.success,
        "expected clearing fault injection to succeed: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected setFaultInjection.error absent on success"
    );

    let r = reply("ping", kv.ping(PingRequest::new(None, None)));
    assert_eq!(r.message, b"pong", "expected ping to answer pong");

    let r = reply(
        "getClusterHealth",
        kv.get_cluster_health(GetClusterHealthRequest::new(None)),
    );
    assert!(
        r.success && r.cluster_health.is_some(),
        "expected cluster health: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected getClusterHealth.error absent on success"
    );

    let r = reply(
        "getDatabaseStats",
        kv.get_database_stats(GetDatabaseStatsRequest::new(None, None)),
    );
    assert!(
        r.success && r.database_stats.is_some(),
        "expected database stats: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected getDatabaseStats.error absent on success"
    );

    let r = reply(
        "getNodeInfo",
        kv.get_node_info(GetNodeInfoRequest::new(None, None)),
    );
    assert!(
        r.success && r.node_info.is_some(),
        "expected node info: {r:?}"
    );
    assert_eq!(
        r.error, None,
        "expected getNodeInfo.error absent on success"
    );
}

/// Legacy per-connection methods answer success=false with an explanation.
pub(crate) fn suite_legacy_methods(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let k = key(&fresh_ns("legacy"), b"k");

    let r = reply(
        "addReadConflict",
        kv.add_read_conflict(AddReadConflictRequest::new(k.clone(), None)),
    );
    assert!(!r.success, "expected addReadConflict success=false: {r:?}");
    assert_nonempty_error(&r.error, "addReadConflict");

    let r = reply(
        "addReadConflictRange",
        kv.add_read_conflict_range(AddReadConflictRangeRequest::new(
            k.clone(),
            key(&k, b"z"),
            None,
        )),
    );
    assert!(
        !r.success,
        "expected addReadConflictRange success=false: {r:?}"
    );
    assert_nonempty_error(&r.error, "addReadConflictRange");

    let rv = kv.read_version();
    let r = reply(
        "setReadVersion",
        kv.set_read_version(SetReadVersionRequest::new(rv)),
    );
    assert!(!r.success, "expected setReadVersion success=false: {r:?}");
    assert_nonempty_error(&r.error, "setReadVersion");

    let r = reply(
        "getCommittedVersion",
        kv.get_committed_version(GetCommittedVersionRequest::new()),
    );
    assert!(
        !r.success,
        "expected getCommittedVersion success=false: {r:?}"
    );
    assert_nonempty_error(&r.error, "getCommittedVersion");

    kv.must_set(&k, b"still-usable");
    assert_found(&mut kv, &k, b"still-usable");
}

/// ping echoes its fields (defaults pong / 0) and reports the server clock in microseconds.
pub(crate) fn suite_ping(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let check_clock = |r: &PingResponse| {
        let now = now_micros();
        assert!(
            (r.server_timestamp - now).abs() < 60_000_000,
            "expected server_timestamp {} within a minute of the test clock {now} (µs since epoch)",
            r.server_timestamp
        );
    };
    let r = reply("ping", kv.ping(PingRequest::new(None, None)));
    assert_eq!(
        (r.message.as_slice(), r.timestamp),
        (b"pong".as_slice(), 0),
        "expected pong/0: {r:?}"
    );
    check_clock(&r);

    let r = reply(
        "ping",
        kv.ping(PingRequest::new(b"hello\x00\xff".to_vec(), 1_234_567)),
    );
    assert_eq!(
        r.message, b"hello\x00\xff",
        "expected the message echoed: {r:?}"
    );
    assert_eq!(
        r.timestamp, 1_234_567,
        "expected the timestamp echoed: {r:?}"
    );
    check_clock(&r);

    let r = reply("ping", kv.ping(PingRequest::new(Vec::new(), -5)));
    assert_eq!(
        (r.message.as_slice(), r.timestamp),
        (b"".as_slice(), -5),
        "expected present-empty message echoed: {r:?}"
    );
}
