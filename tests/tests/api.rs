//! Black-box API suite: every docs/WIRE.md §2 method and the §3/§4 semantics, driven through the stock
//! Apache Thrift client (buffered and framed) against real `dolmen serve` processes.
//!
//! Each `suite_*` function takes `(&dyn TestCluster, Connector)`, so the same function runs
//! against a standalone node (one fresh node per test) and against a 3-node Raft cluster with
//! the client on the leader and on a follower (`cluster::*`, a few suites per cluster). Suites
//! keep their keys under a unique namespace ([`fresh_ns`]) unless their doc says they need an
//! empty column family.
//!
//! Run: `make test`, or `cargo build --workspace --all-targets && cargo test --workspace` (`DOLMEN_BIN=<path>` picks
//! another binary; `DOLMEN_TEST_KEEP=1` keeps each node's temp dir with its `server.log`).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_tests::client::{op, op_delete, op_set, range_all_absent};
use dolmen_tests::kvstore::{
    AddReadConflictRangeRequest, AddReadConflictRequest, AtomicCommitRequest, DeleteKeyRequest,
    FaultInjectionRequest, GetClusterHealthRequest, GetCommittedVersionRequest,
    GetDatabaseStatsRequest, GetNodeInfoRequest, GetRangeRequest, GetRangeResponse,
    GetReadVersionRequest, GetRequest, KeyValue, NodeStatus, Operation, PingRequest, PingResponse,
    SetKeyRequest, SetReadVersionRequest, SetVersionstampedKeyRequest,
    SetVersionstampedValueRequest, SnapshotGetRangeRequest, SnapshotReadRequest,
    TTransactionalKVSyncClient,
};
use dolmen_tests::raw::{call_bytes, frame, pseudo_random_bytes, show, strict_header, RawConn};
use dolmen_tests::replicated::try_connect;
use dolmen_tests::{
    Connector, KvClient, KvExt, ReplicatedCluster, Standalone, StandaloneBuilder, Target,
    TestCluster, Transport,
};
use thrift::protocol::TMessageType;
use thrift::{ApplicationErrorKind, OrderedFloat};

// ---------------------------------------------------------------------------------------------
// Runners: standalone × {buffered, framed}
// ---------------------------------------------------------------------------------------------

type Suite = fn(&dyn TestCluster, Connector);
type MutSuite = fn(&mut dyn TestCluster, Connector);

fn run_standalone(builder: StandaloneBuilder, suite: Suite, transport: Transport) {
    let node = builder.start();
    suite(&node, Connector::new(transport, Target::Leader));
}

fn run_standalone_mut(builder: StandaloneBuilder, suite: MutSuite, transport: Transport) {
    let mut node = builder.start();
    suite(&mut node, Connector::new(transport, Target::Leader));
}

/// `standalone!(name => suite[, builder])` defines `name::buffered` and `name::framed`, each
/// running `suite` against its own fresh standalone node.
macro_rules! standalone {
    ($name:ident => $suite:path) => {
        standalone!($name => $suite, Standalone::builder());
    };
    ($name:ident => $suite:path, $builder:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn buffered() {
                run_standalone($builder, $suite, Transport::Buffered)
            }
            #[test]
            fn framed() {
                run_standalone($builder, $suite, Transport::Framed)
            }
        }
    };
}

standalone!(every_method_replies => suite_every_method_replies);
standalone!(get_set_delete => suite_get_set_delete);
standalone!(column_families => suite_column_families);
standalone!(unknown_column_family => suite_unknown_column_family);
standalone!(read_versions => suite_read_versions);
standalone!(atomic_commit => suite_atomic_commit);
standalone!(atomic_commit_invalid_operations => suite_atomic_commit_invalid_operations);
standalone!(conflicts => suite_conflicts);
standalone!(snapshots => suite_snapshots);
standalone!(future_version => suite_future_version);
standalone!(transaction_too_old => suite_transaction_too_old);
standalone!(versionstamps => suite_versionstamps);
standalone!(get_range_algorithm => suite_get_range_algorithm);
standalone!(range_defaults_and_byte_order => suite_range_defaults_and_byte_order);
standalone!(size_limits_and_empty_keys => suite_size_limits_and_empty_keys);
standalone!(legacy_methods => suite_legacy_methods);
standalone!(fault_injection => suite_fault_injection);
standalone!(
    fault_injection_disabled => suite_fault_injection_disabled,
    Standalone::builder().allow_injection(false)
);
standalone!(ping => suite_ping);
standalone!(diagnostics => suite_diagnostics);
standalone!(malformed_input_closes_connection => suite_malformed_input_closes_connection);
standalone!(unknown_method => suite_unknown_method);
standalone!(byte_at_a_time => suite_byte_at_a_time);
standalone!(many_sequential_requests => suite_many_sequential_requests);
standalone!(concurrent_clients => suite_concurrent_clients);

mod restart {
    use super::*;
    #[test]
    fn buffered() {
        run_standalone_mut(Standalone::builder(), suite_restart, Transport::Buffered)
    }
    #[test]
    fn framed() {
        run_standalone_mut(Standalone::builder(), suite_restart, Transport::Framed)
    }
}

// ---------------------------------------------------------------------------------------------
// Runners: a 3-node cluster, client on the leader and on a follower
// ---------------------------------------------------------------------------------------------
//
// One cluster per group of suites that can share it (suites keep to their own namespaces), run
// one after another, each in `catch_unwind` so that every failure is reported with its suite and
// connector. Suites needing their own configuration or state get their own cluster.

/// `(name, suite)` pairs for [`run_on_cluster`].
macro_rules! suites {
    ($($suite:ident),* $(,)?) => {
        &[$((stringify!($suite), $suite as Suite)),*]
    };
}

/// The leader over buffered and a follower over framed; every transport on both when
/// `DOLMEN_CLUSTER_ALL_CONNECTORS` is set (about twice the time).
fn cluster_connectors() -> Vec<Connector> {
    if std::env::var_os("DOLMEN_CLUSTER_ALL_CONNECTORS").is_some() {
        let mut all = Vec::new();
        for target in [Target::Leader, Target::Follower] {
            for transport in [Transport::Buffered, Transport::Framed] {
                all.push(Connector::new(transport, target));
            }
        }
        all
    } else {
        vec![
            Connector::new(Transport::Buffered, Target::Leader),
            Connector::new(Transport::Framed, Target::Follower),
        ]
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

/// Clears a commit fault a failed suite may have left installed, on every node (best effort:
/// with injection disabled the call is refused, which is fine).
fn clear_faults(cluster: &ReplicatedCluster) {
    for addr in cluster.client_endpoints() {
        if let Ok(mut kv) = try_connect(addr) {
            let _cleared = kv.set_fault_injection(fault(Some(0.0), None));
        }
    }
}

/// Runs every suite with every connector of [`cluster_connectors`] on `cluster`, then the
/// mutating suites (which may restart it); fails naming every (suite, connector) that failed.
fn run_on_cluster(
    cluster: &mut ReplicatedCluster,
    suites: &[(&str, Suite)],
    mut_suites: &[(&str, MutSuite)],
) {
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut record =
        |name: &str, connect: Connector, started: Instant, r: std::thread::Result<()>| {
            runs += 1;
            let took = started.elapsed();
            eprintln!(
                "cluster suite {name} via {connect:?}: {} in {took:?}",
                if r.is_ok() { "ok" } else { "FAILED" }
            );
            r.map_err(|p| format!("{name} via {connect:?}: {}", panic_text(p.as_ref())))
        };
    for connect in cluster_connectors() {
        for (name, suite) in suites {
            let started = Instant::now();
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| suite(&*cluster, connect)));
            if let Err(e) = record(name, connect, started, r) {
                failures.push(e);
                clear_faults(cluster);
            }
        }
    }
    for connect in cluster_connectors() {
        for (name, suite) in mut_suites {
            let started = Instant::now();
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| suite(&mut *cluster, connect)));
            if let Err(e) = record(name, connect, started, r) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} suite runs failed on the 3-node cluster:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

mod cluster {
    use super::*;

    /// Suites that need fault injection allowed (the test default).
    #[test]
    fn shared_with_fault_injection() {
        let mut c = ReplicatedCluster::builder().start();
        run_on_cluster(
            &mut c,
            suites![
                suite_every_method_replies,
                suite_fault_injection,
                suite_get_set_delete,
                suite_column_families,
                suite_unknown_column_family,
                suite_read_versions,
                suite_atomic_commit,
                suite_atomic_commit_invalid_operations,
                suite_conflicts,
                suite_snapshots,
                suite_future_version,
                suite_transaction_too_old,
            ],
            &[],
        );
    }

    /// The rest of the shareable suites, on a cluster that refuses fault injection.
    #[test]
    fn shared_without_fault_injection() {
        let mut c = ReplicatedCluster::builder()
            .set("faults", "allow_injection", false)
            .start();
        run_on_cluster(
            &mut c,
            suites![
                suite_fault_injection_disabled,
                suite_versionstamps,
                suite_get_range_algorithm,
                suite_size_limits_and_empty_keys,
                suite_legacy_methods,
                suite_ping,
                suite_diagnostics,
                suite_malformed_input_closes_connection,
                suite_unknown_method,
                suite_byte_at_a_time,
                suite_many_sequential_requests,
                suite_concurrent_clients,
            ],
            &[],
        );
    }

    /// Suites with their own needs: `range_defaults_and_byte_order` needs the `users` column
    /// family to itself (it is idempotent, so it runs once per connector), `max_connections`
    /// needs `[server] max_connections = 2`, and `restart` restarts every node (rolling).
    #[test]
    fn own_config() {
        let mut c = ReplicatedCluster::builder()
            .set("server", "max_connections", 2)
            .start();
        run_on_cluster(
            &mut c,
            suites![suite_range_defaults_and_byte_order, suite_max_connections],
            &[("suite_restart", suite_restart as MutSuite)],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A key prefix no other suite invocation uses (process id, clock, counter).
fn fresh_ns(tag: &str) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}/{}-{nanos}-{}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// `ns ‖ suffix`.
fn key(ns: &[u8], suffix: &[u8]) -> Vec<u8> {
    [ns, suffix].concat()
}

/// Unwraps a stock-client result: `Err` means the server did not answer with a REPLY carrying
/// every required field (or the connection failed).
#[track_caller]
fn reply<T>(method: &str, r: thrift::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        panic!("expected a REPLY to {method} with every required field present, got {e:?}")
    })
}

#[track_caller]
fn assert_error_mentions(error: &Option<String>, needle: &str, what: &str) {
    match error {
        Some(e) if e.contains(needle) => {}
        other => panic!("expected {what} to return an error mentioning {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_nonempty_error(error: &Option<String>, what: &str) {
    assert!(
        error.as_ref().is_some_and(|e| !e.trim().is_empty()),
        "expected {what} to return a non-empty error, got {error:?}"
    );
}

#[track_caller]
fn assert_found(kv: &mut KvClient, k: &[u8], expected: &[u8]) {
    let r = kv.get_value(k);
    assert!(
        r.found && r.value == expected && r.error.is_none(),
        "expected get({}) = found {} with no error, got found={} value={} error={:?}",
        show(k),
        show(expected),
        r.found,
        show(&r.value),
        r.error
    );
}

#[track_caller]
fn assert_missing(kv: &mut KvClient, k: &[u8]) {
    let r = kv.get_value(k);
    assert!(
        !r.found && r.value.is_empty() && r.error.is_none(),
        "expected get({}) = not found, empty value, no error; got found={} value={} error={:?}",
        show(k),
        r.found,
        show(&r.value),
        r.error
    );
}

fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_micros()).expect("micros fit i64")
}

fn kv_pairs(r: &GetRangeResponse) -> Vec<(Vec<u8>, Vec<u8>)> {
    r.key_values
        .iter()
        .map(|KeyValue { key, value }| (key.clone(), value.clone()))
        .collect()
}

fn show_keys(keys: &[Vec<u8>]) -> String {
    let shown: Vec<String> = keys.iter().map(|k| show(k)).collect();
    format!("[{}]", shown.join(", "))
}

#[track_caller]
fn assert_ascending(r: &GetRangeResponse, what: &str) {
    for w in r.key_values.windows(2) {
        assert!(
            w[0].key < w[1].key,
            "expected {what} results strictly bytewise ascending, got {} before {}",
            show(&w[0].key),
            show(&w[1].key)
        );
    }
}

fn snapshot_range_of(r: &GetRangeRequest, read_version: i64) -> SnapshotGetRangeRequest {
    SnapshotGetRangeRequest {
        begin_key: r.begin_key.clone(),
        end_key: r.end_key.clone(),
        begin_offset: r.begin_offset,
        begin_or_equal: r.begin_or_equal,
        end_offset: r.end_offset,
        end_or_equal: r.end_or_equal,
        read_version,
        limit: r.limit,
        column_family: r.column_family.clone(),
    }
}

/// Splits a versionstamp into (commit version, order).
fn parse_stamp(stamp: &[u8]) -> (i64, u16) {
    assert_eq!(stamp.len(), 10, "a versionstamp is 10 bytes");
    let version = i64::from_be_bytes(stamp[..8].try_into().expect("8 bytes"));
    let order = u16::from_be_bytes(stamp[8..].try_into().expect("2 bytes"));
    (version, order)
}

fn stamp(version: i64, order: u16) -> Vec<u8> {
    let mut s = version.to_be_bytes().to_vec();
    s.extend_from_slice(&order.to_be_bytes());
    s
}

const UNKNOWN_CF: &str = "no_such_cf_7f3a";

// ---------------------------------------------------------------------------------------------
// Suites
// ---------------------------------------------------------------------------------------------

/// Every WIRE §2 method answers with a REPLY (same name and seqid, checked by the stock client)
/// whose required fields are present; on success `error`/`error_code` are absent.
fn suite_every_method_replies(c: &dyn TestCluster, connect: Connector) {
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

/// get / setKey / deleteKey basics, including not-found shape and binary keys and values.
fn suite_get_set_delete(c: &dyn TestCluster, connect: Connector) {
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
fn suite_column_families(c: &dyn TestCluster, connect: Connector) {
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
fn suite_unknown_column_family(c: &dyn TestCluster, connect: Connector) {
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

/// getReadVersion is > 0, ≥ every acknowledged commit, and commit versions strictly increase
/// across setKey, deleteKey and atomicCommit.
fn suite_read_versions(c: &dyn TestCluster, connect: Connector) {
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

/// atomicCommit applies sets and deletes atomically at one version; an empty commit succeeds.
fn suite_atomic_commit(c: &dyn TestCluster, connect: Connector) {
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
fn suite_atomic_commit_invalid_operations(c: &dyn TestCluster, connect: Connector) {
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
fn suite_conflicts(c: &dyn TestCluster, connect: Connector) {
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

/// Snapshot reads see the state as of their read version.
fn suite_snapshots(c: &dyn TestCluster, connect: Connector) {
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
fn suite_future_version(c: &dyn TestCluster, connect: Connector) {
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
fn suite_transaction_too_old(c: &dyn TestCluster, connect: Connector) {
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

/// Versionstamps: 8-byte BE commit version ‖ 2-byte BE order, replacing the buffer's last 10
/// bytes; unique and increasing; the same layout inside atomicCommit.
fn suite_versionstamps(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("vs");
    let placeholder = b"\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA\xAA";

    // setVersionstampedKey
    let prefix = [key(&ns, b"key/").as_slice(), placeholder].concat();
    let mut previous: Option<Vec<u8>> = None;
    for value in [b"val1".as_slice(), b"val2".as_slice()] {
        let before = kv.read_version();
        let r = reply(
            "setVersionstampedKey",
            kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
                prefix.clone(),
                value.to_vec(),
                None,
            )),
        );
        assert!(
            r.success && r.error.is_none(),
            "expected setVersionstampedKey success: {r:?}"
        );
        let gk = r.generated_key;
        assert_eq!(
            gk.len(),
            prefix.len(),
            "expected generated_key as long as the prefix"
        );
        assert_eq!(
            gk[..gk.len() - 10],
            prefix[..prefix.len() - 10],
            "expected generated_key to keep all but the last 10 bytes of the prefix"
        );
        let st = gk[gk.len() - 10..].to_vec();
        let (version, order) = parse_stamp(&st);
        let after = kv.read_version();
        assert!(
            before < version && version <= after,
            "expected stamp version {version} in ({before}, {after}]"
        );
        assert_eq!(order, 0, "expected order 0 in a one-operation commit");
        assert_found(&mut kv, &gk, value);
        if let Some(p) = previous {
            assert!(
                st > p,
                "expected stamps increasing: {} then {}",
                show(&p),
                show(&st)
            );
        }
        previous = Some(st);
    }

    // Exactly 10 bytes: the key is the stamp.
    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            placeholder.to_vec(),
            b"bare".to_vec(),
            None,
        )),
    );
    assert!(
        r.success && r.generated_key.len() == 10,
        "expected a bare 10-byte stamp key: {r:?}"
    );
    assert_found(&mut kv, &r.generated_key, b"bare");

    // setVersionstampedValue
    let vk = key(&ns, b"value");
    let vprefix = [b"hdr:".as_slice(), placeholder].concat();
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..2 {
        let before = kv.read_version();
        let r = reply(
            "setVersionstampedValue",
            kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
                vk.clone(),
                vprefix.clone(),
                None,
            )),
        );
        assert!(
            r.success && r.error.is_none(),
            "expected setVersionstampedValue success: {r:?}"
        );
        let gv = r.generated_value;
        assert_eq!(
            gv.len(),
            vprefix.len(),
            "expected generated_value as long as the prefix"
        );
        assert_eq!(
            &gv[..4],
            b"hdr:",
            "expected generated_value to keep the prefix head"
        );
        let st = gv[4..].to_vec();
        let (version, order) = parse_stamp(&st);
        let after = kv.read_version();
        assert!(
            before < version && version <= after,
            "expected stamp version {version} in ({before}, {after}]"
        );
        assert_eq!(order, 0, "expected order 0 in a one-operation commit");
        assert_found(&mut kv, &vk, &gv);
        if let Some(p) = previous {
            assert!(
                st > p,
                "expected stamps increasing: {} then {}",
                show(&p),
                show(&st)
            );
        }
        previous = Some(st);
    }

    // Short buffers are refused.
    let r = reply(
        "setVersionstampedKey",
        kv.set_versionstamped_key(SetVersionstampedKeyRequest::new(
            b"123456789".to_vec(),
            b"v".to_vec(),
            None,
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedKey with a 9-byte prefix to fail: {r:?}"
    );
    assert_nonempty_error(&r.error, "setVersionstampedKey with a 9-byte prefix");
    let short = key(&ns, b"short");
    let r = reply(
        "setVersionstampedValue",
        kv.set_versionstamped_value(SetVersionstampedValueRequest::new(
            short.clone(),
            b"123456789".to_vec(),
            None,
        )),
    );
    assert!(
        !r.success,
        "expected setVersionstampedValue with a 9-byte prefix to fail: {r:?}"
    );
    assert_nonempty_error(&r.error, "setVersionstampedValue with a 9-byte prefix");
    assert_missing(&mut kv, &short);

    // Inside atomicCommit, operation i is stamped committed_version ‖ i.
    let plain = key(&ns, b"plain");
    let p1 = [key(&ns, b"op1/").as_slice(), placeholder].concat();
    let k2 = key(&ns, b"op2");
    let v2 = [b"v2:".as_slice(), placeholder].concat();
    let p3 = [key(&ns, b"op3/").as_slice(), placeholder].concat();
    let rv = kv.read_version();
    let cv = kv.must_commit(
        rv,
        vec![
            op_set(&plain, b"p"),
            op("SET_VERSIONSTAMPED_KEY", &p1, Some(b"one"), None),
            op("SET_VERSIONSTAMPED_VALUE", &k2, Some(&v2), None),
            op("SET_VERSIONSTAMPED_KEY", &p3, Some(b"three"), None),
        ],
        vec![],
    );
    let key1 = [&p1[..p1.len() - 10], &stamp(cv, 1)].concat();
    let val2 = [&v2[..v2.len() - 10], &stamp(cv, 2)].concat();
    let key3 = [&p3[..p3.len() - 10], &stamp(cv, 3)].concat();
    assert_found(&mut kv, &plain, b"p");
    assert_found(&mut kv, &key1, b"one");
    assert_found(&mut kv, &k2, &val2);
    assert_found(&mut kv, &key3, b"three");
}

/// One row of the getRange table: begin/end are suffixes appended to the suite's namespace.
struct RangeCase {
    name: &'static str,
    begin: &'static [u8],
    end: &'static [u8],
    begin_offset: Option<i32>,
    begin_or_equal: Option<bool>,
    end_offset: Option<i32>,
    end_or_equal: Option<bool>,
    limit: Option<i32>,
    expected: &'static [usize],
    has_more: bool,
}

const CASE: RangeCase = RangeCase {
    name: "",
    begin: b"endoff003",
    end: b"endoff007",
    begin_offset: None,
    begin_or_equal: None,
    end_offset: None,
    end_or_equal: None,
    limit: None,
    expected: &[],
    has_more: false,
};

const RANGE_CASES: &[RangeCase] = &[
    RangeCase {
        name: "defaults: begin inclusive, end exclusive",
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=true explicit",
        begin_or_equal: Some(true),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=false skips begin",
        begin_or_equal: Some(false),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=false, begin not a key",
        begin: b"endoff0031",
        begin_or_equal: Some(false),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal=true includes end",
        end_or_equal: Some(true),
        expected: &[3, 4, 5, 6, 7],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal=false explicit",
        end_or_equal: Some(false),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_offset=2 drops 2",
        begin_offset: Some(2),
        expected: &[5, 6],
        ..CASE
    },
    RangeCase {
        name: "negative begin_offset is 0",
        begin_offset: Some(-3),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_offset past the range",
        begin_offset: Some(10),
        ..CASE
    },
    RangeCase {
        name: "WIRE example: end endoff005 offset -1 = endoff004 (exclusive)",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-1),
        expected: &[0, 1, 2, 3],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset -1, end_or_equal",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-1),
        end_or_equal: Some(true),
        expected: &[0, 1, 2, 3, 4],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset +1 = endoff006",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(1),
        expected: &[0, 1, 2, 3, 4, 5],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset +1, end_or_equal",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(1),
        end_or_equal: Some(true),
        expected: &[0, 1, 2, 3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end offset +2 = endoff007",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(2),
        expected: &[0, 1, 2, 3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end offset -2 = endoff003",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-2),
        expected: &[0, 1, 2],
        ..CASE
    },
    RangeCase {
        name: "step up zeroes trailing 0xFF: endoff004\\xff\\xff +1 = endoff005\\0\\0",
        begin: b"",
        end: b"endoff004\xff\xff",
        end_offset: Some(1),
        expected: &[0, 1, 2, 3, 4, 5],
        ..CASE
    },
    RangeCase {
        name: "step down fills 0xFF: endoff005\\0 -1 = endoff004\\xff",
        begin: b"",
        end: b"endoff005\x00",
        end_offset: Some(-1),
        expected: &[0, 1, 2, 3, 4],
        ..CASE
    },
    RangeCase {
        name: "end before the first key",
        begin: b"",
        end: b"endoff000",
        end_offset: Some(-1),
        ..CASE
    },
    RangeCase {
        name: "limit below remaining: has_more",
        limit: Some(2),
        expected: &[3, 4],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit one below remaining: has_more",
        limit: Some(3),
        expected: &[3, 4, 5],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit = remaining: no has_more (keys beyond end don't count)",
        limit: Some(4),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "limit > remaining",
        limit: Some(5),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal, limit = remaining",
        end_or_equal: Some(true),
        limit: Some(5),
        expected: &[3, 4, 5, 6, 7],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal, limit one short: has_more",
        end_or_equal: Some(true),
        limit: Some(4),
        expected: &[3, 4, 5, 6],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit 0 = unlimited",
        limit: Some(0),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "limit 0 = unlimited, whole namespace",
        begin: b"",
        end: b"~",
        limit: Some(0),
        expected: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ..CASE
    },
    RangeCase {
        name: "negative limit = unlimited",
        begin: b"",
        end: b"~",
        limit: Some(-1),
        expected: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ..CASE
    },
    RangeCase {
        name: "begin_offset then limit: has_more",
        begin_offset: Some(1),
        limit: Some(2),
        expected: &[4, 5],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "begin_offset then limit = remaining",
        begin_offset: Some(1),
        limit: Some(3),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin > end: empty",
        begin: b"endoff007",
        end: b"endoff003",
        ..CASE
    },
    RangeCase {
        name: "begin = end, end exclusive: empty",
        begin: b"endoff005",
        end: b"endoff005",
        ..CASE
    },
    RangeCase {
        name: "begin = end, end inclusive: the key",
        begin: b"endoff005",
        end: b"endoff005",
        end_or_equal: Some(true),
        expected: &[5],
        ..CASE
    },
    RangeCase {
        name: "begin = end, begin exclusive, end inclusive: empty",
        begin: b"endoff005",
        end: b"endoff005",
        begin_or_equal: Some(false),
        end_or_equal: Some(true),
        ..CASE
    },
];

/// The WIRE §3 getRange/snapshotGetRange algorithm, table-driven, on keys endoff000..endoff009
/// under a private namespace; plus the default limit of 1000 and present-but-empty end_key.
fn suite_get_range_algorithm(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("range");
    let keys: Vec<Vec<u8>> = (0..10)
        .map(|i| key(&ns, format!("endoff{i:03}").as_bytes()))
        .collect();
    let rv = kv.read_version();
    let ops = keys
        .iter()
        .enumerate()
        .map(|(i, k)| op_set(k, format!("v{i}").as_bytes()))
        .collect();
    kv.must_commit(rv, ops, vec![]);

    let mut failures = Vec::new();
    for case in RANGE_CASES {
        let req = GetRangeRequest {
            begin_key: Some(key(&ns, case.begin)),
            end_key: Some(key(&ns, case.end)),
            begin_offset: case.begin_offset,
            begin_or_equal: case.begin_or_equal,
            end_offset: case.end_offset,
            end_or_equal: case.end_or_equal,
            limit: case.limit,
            column_family: None,
        };
        let expected: Vec<(Vec<u8>, Vec<u8>)> = case
            .expected
            .iter()
            .map(|&i| (keys[i].clone(), format!("v{i}").into_bytes()))
            .collect();
        let got = kv.range(req.clone());
        // A fresh read version per case: no writes happen meanwhile, and a version taken
        // once would fall below the (short, 300 ms) retention horizon during the table.
        let rv = kv.read_version();
        let snap = reply(
            "snapshotGetRange",
            kv.snapshot_get_range(snapshot_range_of(&req, rv)),
        );
        for (method, r) in [("getRange", got), ("snapshotGetRange", snap)] {
            if !r.success
                || r.error.is_some()
                || kv_pairs(&r) != expected
                || r.has_more != case.has_more
            {
                let got_keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
                failures.push(format!(
                    "{method} [{}]: expected keys {:?} has_more={}, got success={} error={:?} \
                     keys {} has_more={}",
                    case.name,
                    case.expected,
                    case.has_more,
                    r.success,
                    r.error,
                    show_keys(&got_keys),
                    r.has_more
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "range algorithm mismatches:\n{}",
        failures.join("\n")
    );

    // Present-but-empty end_key means an empty range.
    for begin in [None, Some(ns.clone())] {
        let r = kv.range(GetRangeRequest {
            begin_key: begin.clone(),
            end_key: Some(vec![]),
            ..range_all_absent()
        });
        assert!(
            r.success && r.key_values.is_empty() && !r.has_more,
            "expected an empty range for end_key=b\"\" (begin {begin:?}): {r:?}"
        );
    }

    // Absent limit = 1000.
    let ns2 = fresh_ns("range-limit");
    let rv = kv.read_version();
    let ops = (0..1001)
        .map(|i| op_set(&key(&ns2, format!("{i:04}").as_bytes()), b"x"))
        .collect();
    kv.must_commit(rv, ops, vec![]);
    let req = GetRangeRequest {
        begin_key: Some(ns2.clone()),
        end_key: Some(key(&ns2, b"~")),
        ..range_all_absent()
    };
    let r = kv.range(req.clone());
    assert!(
        r.success && r.key_values.len() == 1000 && r.has_more,
        "expected absent limit = 1000 results with has_more of 1001 keys, got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
    assert_ascending(&r, "getRange");
    let r = kv.range(GetRangeRequest {
        limit: Some(1001),
        ..req.clone()
    });
    assert!(
        r.key_values.len() == 1001 && !r.has_more,
        "expected limit 1001 = all 1001 keys, no has_more; got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
    let r = kv.range(GetRangeRequest {
        limit: Some(0),
        ..req
    });
    assert!(
        r.key_values.len() == 1001 && !r.has_more,
        "expected limit 0 = all 1001 keys, no has_more; got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
}

/// Range defaults with absent begin/end and bytewise order with 0x00/0xFF keys.
///
/// Needs the `users` column family empty at the start (a fresh cluster): absent begin and end
/// span the whole column family.
fn suite_range_defaults_and_byte_order(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let sorted: Vec<&[u8]> = vec![
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"a",
        b"a\x00",
        b"a\xff",
        b"b",
        b"\xfe",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    ];
    // Written in a scrambled order.
    for i in [5usize, 0, 9, 2, 7, 10, 1, 4, 8, 3, 6] {
        let r = kv.set_in(sorted[i], format!("v{i}").as_bytes(), Some("users"));
        assert!(
            r.success,
            "expected setKey({}) in users: {r:?}",
            show(sorted[i])
        );
    }
    // A key in the default column family must never show up.
    kv.must_set(b"a\x01", b"default-cf");

    let users = Some("users".to_owned());
    let base = GetRangeRequest {
        column_family: users.clone(),
        ..range_all_absent()
    };
    let cases: Vec<(&str, GetRangeRequest, usize, usize)> = vec![
        ("all fields absent: [\"\", \\xff)", base.clone(), 0, 8),
        (
            "begin absent, begin_or_equal=false",
            GetRangeRequest {
                begin_or_equal: Some(false),
                ..base.clone()
            },
            0,
            8,
        ),
        (
            "end \\xff\\xff\\xff",
            GetRangeRequest {
                end_key: Some(b"\xff\xff\xff".to_vec()),
                ..base.clone()
            },
            0,
            11,
        ),
        (
            "begin \\xff, end \\xff\\xff\\xff",
            GetRangeRequest {
                begin_key: Some(b"\xff".to_vec()),
                end_key: Some(b"\xff\xff\xff".to_vec()),
                ..base.clone()
            },
            8,
            11,
        ),
        (
            "end \\xff inclusive",
            GetRangeRequest {
                end_key: Some(b"\xff".to_vec()),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            9,
        ),
        (
            "absent end, offset +1 = \\xff\\x00",
            GetRangeRequest {
                end_offset: Some(1),
                ..base.clone()
            },
            0,
            9,
        ),
        (
            "end \\xff offset +1 inclusive = ..=\\xff\\x00",
            GetRangeRequest {
                end_key: Some(b"\xff".to_vec()),
                end_offset: Some(1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            10,
        ),
        (
            "end \\xff\\xff offset +1 = \\xff\\xff\\x00",
            GetRangeRequest {
                end_key: Some(b"\xff\xff".to_vec()),
                end_offset: Some(1),
                ..base.clone()
            },
            0,
            11,
        ),
        (
            "absent end, offset -1 = \\xfe",
            GetRangeRequest {
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            7,
        ),
        (
            "end \"a\" offset -1 = empty key (as observed)",
            GetRangeRequest {
                end_key: Some(b"a".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "end \"b\" offset -1 = \"a\"",
            GetRangeRequest {
                end_key: Some(b"b".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            3,
        ),
        (
            "end \"b\" offset -1 = \"a\", inclusive",
            GetRangeRequest {
                end_key: Some(b"b".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            4,
        ),
        (
            "end \\x00\\x01 offset -1 = \\x00\\x00",
            GetRangeRequest {
                end_key: Some(b"\x00\x01".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            1,
        ),
        (
            "end \\x01 offset -1 = \\x00, inclusive",
            GetRangeRequest {
                end_key: Some(b"\x01".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            1,
        ),
        (
            "end \\x00 offset -1 = empty key",
            GetRangeRequest {
                end_key: Some(b"\x00".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "present-but-empty end",
            GetRangeRequest {
                end_key: Some(vec![]),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "begin \"a\", begin exclusive",
            GetRangeRequest {
                begin_key: Some(b"a".to_vec()),
                begin_or_equal: Some(false),
                ..base.clone()
            },
            4,
            8,
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, from, to) in cases {
        let expected: Vec<(Vec<u8>, Vec<u8>)> = (from..to)
            .map(|i| (sorted[i].to_vec(), format!("v{i}").into_bytes()))
            .collect();
        let got = kv.range(req.clone());
        // A fresh read version per case: no writes happen meanwhile, and a version taken
        // once would fall below the (short, 300 ms) retention horizon during the table.
        let rv = kv.read_version();
        let snap = reply(
            "snapshotGetRange",
            kv.snapshot_get_range(snapshot_range_of(&req, rv)),
        );
        for (method, r) in [("getRange", got), ("snapshotGetRange", snap)] {
            if !r.success || kv_pairs(&r) != expected || r.has_more {
                let got_keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
                let want: Vec<Vec<u8>> = expected.iter().map(|(k, _)| k.clone()).collect();
                failures.push(format!(
                    "{method} [{name}]: expected {} has_more=false, got success={} error={:?} {} \
                     has_more={}",
                    show_keys(&want),
                    r.success,
                    r.error,
                    show_keys(&got_keys),
                    r.has_more
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "range default/byte-order mismatches:\n{}",
        failures.join("\n")
    );
}

/// Key ≤ 10,000 and value ≤ 100,000 bytes; larger or empty keys are INVALID_ARGUMENT.
fn suite_size_limits_and_empty_keys(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("limits");

    let mut max_key = key(&ns, b"");
    max_key.resize(10_000, b'k');
    kv.must_set(&max_key, b"max-key");
    assert_found(&mut kv, &max_key, b"max-key");

    let mut big_key = max_key.clone();
    big_key.push(b'k');
    let r = kv.set_in(&big_key, b"v", None);
    assert!(
        !r.success,
        "expected setKey with a 10,001-byte key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    assert_nonempty_error(&r.error, "setKey with a 10,001-byte key");
    let r = kv.get_value(&big_key);
    assert!(
        !r.found,
        "expected get with a 10,001-byte key not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "get with a 10,001-byte key");
    let rv = kv.read_version();
    let r = kv.commit(rv, vec![op_set(&big_key, b"v")], vec![]);
    assert!(
        !r.success,
        "expected atomicCommit with a 10,001-byte key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT for a 10,001-byte key in atomicCommit: {r:?}"
    );

    let k = key(&ns, b"value");
    let max_value = vec![b'v'; 100_000];
    kv.must_set(&k, &max_value);
    assert_found(&mut kv, &k, &max_value);
    let kb = key(&ns, b"big-value");
    let r = kv.set_in(&kb, &vec![b'v'; 100_001], None);
    assert!(
        !r.success,
        "expected setKey with a 100,001-byte value to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    assert_nonempty_error(&r.error, "setKey with a 100,001-byte value");
    assert_missing(&mut kv, &kb);

    // Empty keys.
    let r = kv.set_in(b"", b"v", None);
    assert!(
        !r.success,
        "expected setKey with an empty key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    let r = kv.get_value(b"");
    assert!(
        !r.found && r.value.is_empty(),
        "expected get(empty key) not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "get with an empty key");
    let rv = kv.read_version();
    let r = kv.snapshot_read_in(b"", rv, None);
    assert!(
        !r.found,
        "expected snapshotRead(empty key) not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "snapshotRead with an empty key");
}

/// Legacy per-connection methods answer success=false with an explanation.
fn suite_legacy_methods(c: &dyn TestCluster, connect: Connector) {
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

fn fault(probability: Option<f64>, target: Option<&str>) -> FaultInjectionRequest {
    FaultInjectionRequest::new(
        "CONFLICT".to_owned(),
        probability.map(OrderedFloat),
        Some(0),
        target.map(str::to_owned),
    )
}

/// setFaultInjection installs and clears a process-wide commit fault (injection allowed).
fn suite_fault_injection(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("fault");
    for (what, install, clear) in [
        (
            "target absent, cleared with probability 0",
            fault(Some(1.0), None),
            fault(Some(0.0), None),
        ),
        (
            "target \"commit\", cleared with probability absent",
            fault(Some(1.0), Some("commit")),
            fault(None, None),
        ),
    ] {
        let r = reply("setFaultInjection", kv.set_fault_injection(install));
        assert!(
            r.success && r.error.is_none(),
            "expected installing a fault to succeed ({what}): {r:?}"
        );
        let k = key(&ns, what.as_bytes());
        let rv = kv.read_version();
        let r = kv.commit(rv, vec![op_set(&k, b"x")], vec![]);
        assert!(
            !r.success,
            "expected the injected fault to fail the commit ({what}): {r:?}"
        );
        assert_eq!(
            r.error_code.as_deref(),
            Some("CONFLICT"),
            "expected CONFLICT ({what}): {r:?}"
        );
        assert_missing(&mut kv, &k);

        let r = reply("setFaultInjection", kv.set_fault_injection(clear));
        assert!(
            r.success && r.error.is_none(),
            "expected clearing the fault to succeed ({what}): {r:?}"
        );
        let rv = kv.read_version();
        kv.must_commit(rv, vec![op_set(&k, b"y")], vec![]);
        assert_found(&mut kv, &k, b"y");
    }
}

/// With `[faults] allow_injection = false`, setFaultInjection refuses.
fn suite_fault_injection_disabled(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let r = reply(
        "setFaultInjection",
        kv.set_fault_injection(fault(Some(1.0), None)),
    );
    assert!(
        !r.success,
        "expected setFaultInjection to be refused when not allowed: {r:?}"
    );
    assert_nonempty_error(&r.error, "setFaultInjection with injection disabled");
    let k = key(&fresh_ns("fault-off"), b"k");
    let rv = kv.read_version();
    kv.must_commit(rv, vec![op_set(&k, b"x")], vec![]);
    assert_found(&mut kv, &k, b"x");
}

/// ping echoes its fields (defaults pong / 0) and reports the server clock in microseconds.
fn suite_ping(c: &dyn TestCluster, connect: Connector) {
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

/// getClusterHealth / getNodeInfo / getDatabaseStats tell the truth.
fn suite_diagnostics(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let me: SocketAddr = connect.endpoint(c);
    let n = c.client_endpoints().len();
    let n_i32 = i32::try_from(n).expect("node count fits i32");

    let r = reply(
        "getClusterHealth",
        kv.get_cluster_health(GetClusterHealthRequest::new(None)),
    );
    assert!(
        r.success && r.error.is_none(),
        "expected getClusterHealth success: {r:?}"
    );
    let h = r.cluster_health.expect("cluster_health present on success");
    assert_eq!(
        h.nodes.len(),
        n,
        "expected {n} nodes in cluster health: {h:?}"
    );
    assert_eq!(
        h.cluster_status, "healthy",
        "expected cluster_status healthy: {h:?}"
    );
    assert_eq!(
        (h.healthy_nodes_count, h.total_nodes_count),
        (n_i32, n_i32),
        "expected {n}/{n} healthy: {h:?}"
    );
    for node in &h.nodes {
        assert_eq!(
            node.status, "healthy",
            "expected every node healthy: {node:?}"
        );
    }
    let leaders: Vec<&NodeStatus> = h.nodes.iter().filter(|s| s.is_leader).collect();
    assert_eq!(leaders.len(), 1, "expected exactly one leader: {h:?}");
    assert_eq!(
        leaders[0].endpoint,
        c.leader_endpoint().to_string(),
        "expected the leader's endpoint to be its client address"
    );
    let leader = h
        .leader
        .as_ref()
        .expect("expected cluster_health.leader present");
    assert_eq!(
        leader.node_id, leaders[0].node_id,
        "expected leader field = the is_leader node"
    );
    let mine = h
        .nodes
        .iter()
        .find(|s| s.endpoint == me.to_string())
        .unwrap_or_else(|| {
            panic!("expected a node with endpoint {me} (the address connected to): {h:?}")
        });
    let mut endpoints: Vec<String> = h.nodes.iter().map(|s| s.endpoint.clone()).collect();
    endpoints.sort();
    let mut want: Vec<String> = c
        .client_endpoints()
        .iter()
        .map(SocketAddr::to_string)
        .collect();
    want.sort();
    assert_eq!(
        endpoints, want,
        "expected node endpoints = the cluster's client addresses"
    );

    let r = reply(
        "getNodeInfo",
        kv.get_node_info(GetNodeInfoRequest::new(None, None)),
    );
    assert!(
        r.success && r.error.is_none(),
        "expected getNodeInfo success: {r:?}"
    );
    let info = r.node_info.expect("node_info present on success");
    assert_eq!(
        info.endpoint,
        me.to_string(),
        "expected getNodeInfo() to describe this node: {info:?}"
    );
    assert_eq!(
        info.node_id, mine.node_id,
        "expected the same node id as in cluster health"
    );
    assert_eq!(
        info.status, "healthy",
        "expected this node healthy: {info:?}"
    );
    assert_eq!(
        info.is_leader,
        me == c.leader_endpoint(),
        "expected is_leader to match: {info:?}"
    );
    if n == 1 {
        assert_eq!(
            info.node_id, 0,
            "expected a standalone node to have id 0: {info:?}"
        );
        assert!(
            info.is_leader,
            "expected a standalone node to be its own leader: {info:?}"
        );
    }

    let r = reply(
        "getNodeInfo",
        kv.get_node_info(GetNodeInfoRequest::new(None, info.node_id)),
    );
    let same = r
        .node_info
        .unwrap_or_else(|| panic!("expected node_info for node {}", info.node_id));
    assert_eq!(
        (same.node_id, same.endpoint.as_str()),
        (info.node_id, info.endpoint.as_str()),
        "expected getNodeInfo(node_id={}) to describe the same node",
        info.node_id
    );
    if n == 1 {
        let r = reply(
            "getNodeInfo",
            kv.get_node_info(GetNodeInfoRequest::new(None, 0)),
        );
        assert!(
            r.success,
            "expected getNodeInfo(node_id=0) success on standalone: {r:?}"
        );
        let zero = r.node_info.expect("node_info for node 0");
        assert_eq!(
            zero.endpoint,
            me.to_string(),
            "expected node 0 to be this node"
        );
    }
    let r = reply(
        "getNodeInfo",
        kv.get_node_info(GetNodeInfoRequest::new(None, 99)),
    );
    assert!(
        !r.success,
        "expected getNodeInfo(node_id=99) to fail: {r:?}"
    );
    assert_nonempty_error(&r.error, "getNodeInfo(node_id=99)");

    // Stats are real counters.
    let stats = |kv: &mut KvClient, detailed: Option<bool>| {
        let r = reply(
            "getDatabaseStats",
            kv.get_database_stats(GetDatabaseStatsRequest::new(None, detailed)),
        );
        assert!(
            r.success && r.error.is_none(),
            "expected getDatabaseStats success: {r:?}"
        );
        r.database_stats.expect("database_stats present on success")
    };
    let s0 = stats(&mut kv, None);
    assert!(
        s0.cache_hit_rate_percent.is_none() && s0.compaction_pending_bytes.is_none(),
        "expected detailed stats absent without include_detailed_stats: {s0:?}"
    );
    let s0b = stats(&mut kv, Some(false));
    assert!(
        s0b.cache_hit_rate_percent.is_none() && s0b.compaction_pending_bytes.is_none(),
        "expected detailed stats absent with include_detailed_stats=false: {s0b:?}"
    );
    let ns = fresh_ns("stats");
    for i in 0..3 {
        let k = key(&ns, format!("k{i}").as_bytes());
        kv.must_set(&k, b"v");
        assert_found(&mut kv, &k, b"v");
    }
    let rv = kv.read_version();
    kv.must_commit(rv, vec![op_set(&key(&ns, b"c"), b"v")], vec![]);
    let s1 = stats(&mut kv, Some(true));
    assert!(
        s1.write_operations_count > s0.write_operations_count,
        "expected write_operations_count to grow: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.read_operations_count > s0.read_operations_count,
        "expected read_operations_count to grow: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.committed_transactions > s0.committed_transactions,
        "expected committed_transactions to grow: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.total_keys > 0,
        "expected total_keys > 0 after writes: {s1:?}"
    );
    let hit = s1.cache_hit_rate_percent.unwrap_or_else(|| {
        panic!("expected cache_hit_rate_percent with include_detailed_stats: {s1:?}")
    });
    assert!(
        (0..=100).contains(&hit),
        "expected cache_hit_rate_percent in 0..=100: {s1:?}"
    );
    let pending = s1.compaction_pending_bytes.unwrap_or_else(|| {
        panic!("expected compaction_pending_bytes with include_detailed_stats: {s1:?}")
    });
    assert!(
        pending >= 0,
        "expected compaction_pending_bytes >= 0: {s1:?}"
    );

    let k = key(&ns, b"conflict");
    let rv = kv.read_version();
    kv.must_set(&k, b"moved");
    let r = kv.commit(rv, vec![op_set(&k, b"x")], vec![k.clone()]);
    assert_eq!(
        r.error_code.as_deref(),
        Some("CONFLICT"),
        "expected CONFLICT: {r:?}"
    );
    let s2 = stats(&mut kv, None);
    assert!(
        s2.aborted_transactions > s1.aborted_transactions,
        "expected aborted_transactions to grow after a CONFLICT: {s1:?} -> {s2:?}"
    );
}

/// Data and versions survive a SIGTERM restart.
fn suite_restart(c: &mut dyn TestCluster, connect: Connector) {
    let ns = fresh_ns("restart");
    let keys: Vec<Vec<u8>> = (0..5)
        .map(|i| key(&ns, format!("k{i}").as_bytes()))
        .collect();
    let gone = key(&ns, b"gone");
    let before = {
        let mut kv = connect.client(c);
        for k in &keys {
            kv.must_set(k, k);
        }
        kv.must_set(&gone, b"x");
        kv.must_delete(&gone);
        let rv = kv.read_version();
        kv.must_commit(rv, vec![op_set(&key(&ns, b"committed"), b"c")], vec![]);
        kv.read_version()
    };

    c.restart();

    let mut kv = connect.client(c);
    for k in &keys {
        assert_found(&mut kv, k, k);
    }
    assert_found(&mut kv, &key(&ns, b"committed"), b"c");
    assert_missing(&mut kv, &gone);
    let rv = kv.read_version();
    assert!(
        rv >= before,
        "expected the read version after restart {rv} >= {before} before"
    );
    kv.must_set(&key(&ns, b"after"), b"a");
    let after = kv.read_version();
    assert!(
        after > before,
        "expected a new write after restart to give read version {after} > {before}"
    );
}

/// Malformed input closes that connection, and the server keeps serving new ones.
fn suite_malformed_input_closes_connection(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let framed = connect.framed();
    let wrap = |bytes: Vec<u8>| if framed { frame(&bytes) } else { bytes };

    let mut random = pseudo_random_bytes(0x00D0_13E5, 4096);
    random[0] = 0xA5; // neither a strict header nor a plausible frame length

    let mut huge_name = strict_header(b"", 1, 1);
    huge_name.truncate(4);
    huge_name.extend_from_slice(&0x7FFF_FFF0_i32.to_be_bytes());
    huge_name.extend_from_slice(b"getReadVersion");

    let mut negative_name = strict_header(b"", 1, 1);
    negative_name.truncate(4);
    negative_name.extend_from_slice(&(-5_i32).to_be_bytes());
    negative_name.extend_from_slice(b"ping\x00\x00\x00\x01");

    // setKey(request={1: key=<length>, ...}) with a forged key length.
    let key_with_length = |len: i32| {
        let mut m = strict_header(b"setKey", 1, 1);
        m.extend_from_slice(&[12, 0, 1]); // field 1: struct
        m.extend_from_slice(&[11, 0, 1]); // field 1: binary
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(b"0123456789abcdef");
        m
    };
    // atomicCommit(request={2: operations=list<struct>(-1)}).
    let mut negative_list = strict_header(b"atomicCommit", 1, 1);
    negative_list.extend_from_slice(&[12, 0, 1, 10, 0, 1]);
    negative_list.extend_from_slice(&1_i64.to_be_bytes());
    negative_list.extend_from_slice(&[15, 0, 2, 12]);
    negative_list.extend_from_slice(&(-1_i32).to_be_bytes());
    negative_list.extend_from_slice(&[0; 16]);

    let ping = call_bytes("ping", 1, &PingRequest::new(b"truncated".to_vec(), 1));
    let truncated = wrap(ping.clone())[..ping.len() / 2].to_vec();

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: dolmen\r\n\r\n".to_vec(),
            false,
        ),
        (
            "4 KiB of pseudo-random bytes (seed 0xD013E5)",
            random,
            false,
        ),
        (
            "a 2 GiB frame/length prefix",
            [0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x01, 0x00, 0x01].to_vec(),
            false,
        ),
        (
            "a strict header whose method name claims 2 GiB",
            wrap(huge_name),
            false,
        ),
        (
            "a strict header with a negative name length",
            wrap(negative_name),
            false,
        ),
        (
            "a setKey whose key claims 2 GiB",
            wrap(key_with_length(0x7FFF_FFF0)),
            false,
        ),
        (
            "a setKey whose key length is negative",
            wrap(key_with_length(-1)),
            false,
        ),
        (
            "an atomicCommit with a negative list length",
            wrap(negative_list),
            false,
        ),
        ("half a ping, then end of stream", truncated, true),
    ];
    for (what, bytes, then_close) in cases {
        let mut raw = RawConn::connect(addr, framed);
        raw.send_raw_lossy(&bytes);
        if then_close {
            raw.shutdown_write();
        }
        raw.expect_closed(what);

        let mut kv = connect.connect(addr);
        let r = reply("ping", kv.ping(PingRequest::new(b"alive".to_vec(), 1)));
        assert_eq!(
            r.message, b"alive",
            "expected the server to keep serving after {what}"
        );
    }
}

/// An unknown method gets an EXCEPTION (UnknownMethod) and the connection stays usable.
fn suite_unknown_method(c: &dyn TestCluster, connect: Connector) {
    let mut raw = RawConn::connect(connect.endpoint(c), connect.framed());
    raw.send(&call_bytes(
        "noSuchMethod",
        7,
        &PingRequest::new(None, None),
    ));
    let r = raw.recv::<PingResponse>().unwrap_or_else(|e| {
        panic!("expected an EXCEPTION message for an unknown method, got {e:?}")
    });
    assert_eq!(
        r.header.message_type,
        TMessageType::Exception,
        "expected message type EXCEPTION (3): {r:?}"
    );
    assert_eq!(
        r.header.name, "noSuchMethod",
        "expected the method name echoed: {r:?}"
    );
    assert_eq!(
        r.header.sequence_number, 7,
        "expected the seqid echoed: {r:?}"
    );
    let ex = r.exception.expect("exception body");
    assert_eq!(
        ex.kind,
        ApplicationErrorKind::UnknownMethod,
        "expected UNKNOWN_METHOD: {ex:?}"
    );

    raw.send(&call_bytes(
        "ping",
        8,
        &PingRequest::new(b"after".to_vec(), 8),
    ));
    let r = raw
        .recv::<PingResponse>()
        .unwrap_or_else(|e| panic!("expected a ping REPLY on the same connection, got {e:?}"));
    assert_eq!(
        r.header.message_type,
        TMessageType::Reply,
        "expected REPLY: {r:?}"
    );
    assert_eq!(
        (r.header.name.as_str(), r.header.sequence_number),
        ("ping", 8),
        "expected ping/8: {r:?}"
    );
    let p = r.response.expect("result field 0");
    assert_eq!(
        (p.message.as_slice(), p.timestamp),
        (b"after".as_slice(), 8),
        "expected the ping echoed: {p:?}"
    );
}

/// A request written one byte per segment still gets the right reply.
fn suite_byte_at_a_time(c: &dyn TestCluster, connect: Connector) {
    let mut raw = RawConn::connect(connect.endpoint(c), connect.framed());
    let seqid = 0x0102_0304;
    raw.send_bytewise(&call_bytes(
        "ping",
        seqid,
        &PingRequest::new(b"slow".to_vec(), 42),
    ));
    let r = raw
        .recv::<PingResponse>()
        .unwrap_or_else(|e| panic!("expected a ping REPLY to a byte-at-a-time request, got {e:?}"));
    assert_eq!(
        r.header.message_type,
        TMessageType::Reply,
        "expected REPLY: {r:?}"
    );
    assert_eq!(
        (r.header.name.as_str(), r.header.sequence_number),
        ("ping", seqid),
        "expected ping/{seqid}: {r:?}"
    );
    let p = r.response.expect("result field 0");
    assert_eq!(
        (p.message.as_slice(), p.timestamp),
        (b"slow".as_slice(), 42),
        "expected the ping echoed: {p:?}"
    );

    let k = key(&fresh_ns("bytewise"), b"k");
    raw.send_bytewise(&call_bytes(
        "setKey",
        2,
        &SetKeyRequest::new(k.clone(), b"v".to_vec(), None),
    ));
    let r = raw
        .recv::<dolmen_tests::kvstore::SetKeyResponse>()
        .unwrap_or_else(|e| panic!("expected a setKey REPLY, got {e:?}"));
    let s = r
        .response
        .unwrap_or_else(|| panic!("expected result field 0 in {:?}", r.header));
    assert!(
        s.success,
        "expected the byte-at-a-time setKey to succeed: {s:?}"
    );
    let mut kv = connect.client(c);
    assert_found(&mut kv, &k, b"v");
}

/// 1000 requests in sequence on one connection.
fn suite_many_sequential_requests(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let k = key(&fresh_ns("sequential"), b"k");
    kv.must_set(&k, b"value");
    for i in 0..1000_i64 {
        if i % 2 == 0 {
            let msg = format!("ping-{i}").into_bytes();
            let r = reply("ping", kv.ping(PingRequest::new(msg.clone(), i)));
            assert_eq!(
                (r.message, r.timestamp),
                (msg, i),
                "expected ping {i} echoed"
            );
        } else {
            let r = reply("get", kv.get(GetRequest::new(k.clone(), None)));
            assert!(
                r.found && r.value == b"value",
                "expected get {i} to find the value: {r:?}"
            );
        }
    }
}

/// 16 threads, each with its own connection, writing and reading concurrently.
fn suite_concurrent_clients(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let ns = fresh_ns("concurrent");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let ns = ns.clone();
                s.spawn(move || {
                    let mut kv = connect.connect(addr);
                    for i in 0..50 {
                        let k = key(&ns, format!("t{t:02}/k{i:02}").as_bytes());
                        let v = format!("{t}-{i}").into_bytes();
                        kv.must_set(&k, &v);
                        assert_found(&mut kv, &k, &v);
                    }
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(Box::new(format!(
                    "client thread {t} failed: {:?}",
                    e.downcast_ref::<String>()
                )));
            }
        }
    });
    let mut kv = connect.client(c);
    let r = kv.range(GetRangeRequest {
        begin_key: Some(ns.clone()),
        end_key: Some(key(&ns, b"\xff")),
        limit: Some(0),
        ..range_all_absent()
    });
    assert_eq!(
        r.key_values.len(),
        16 * 50,
        "expected all 800 concurrent writes visible"
    );
}

/// `[server] max_connections`: a connection beyond the cap is refused with an error and closed;
/// connections within it keep working, and closing one frees its place.
fn suite_max_connections(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let ns = fresh_ns("maxconn");
    let mut first = connect.connect(addr);
    let mut second = connect.connect(addr);
    first.must_set(&key(&ns, b"a"), b"1");
    second.must_set(&key(&ns, b"b"), b"2");
    {
        let mut third = connect.connect(addr);
        let refused = third.get(GetRequest::new(key(&ns, b"a"), None));
        assert!(
            refused.is_err(),
            "a third connection with max_connections=2 must be refused, got {refused:?}"
        );
    }
    assert_found(&mut first, &key(&ns, b"b"), b"2");
    drop(second);
    // The server notices the close asynchronously: retry a bounded number of times.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect.connect(addr);
        match again.get(GetRequest::new(key(&ns, b"a"), None)) {
            Ok(r) => {
                assert!(r.found, "expected the value written before: {r:?}");
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "a freed connection slot was not reused within 10 s: {e:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
standalone!(max_connections => suite_max_connections, Standalone::builder().set("server", "max_connections", 2));

/// `/metrics` (Prometheus text) and `/status` report the engine's memory next to its counters:
/// after writes the memtables hold bytes, the block cache gauge is there, and the live-key
/// gauge counts exactly the keys written to this fresh node.
#[test]
fn admin_metrics_report_memory_and_live_keys() {
    let node = Standalone::builder().start();
    let mut kv = Connector::new(Transport::Buffered, Target::Leader).client(&node);
    for i in 0..5 {
        kv.must_set(format!("metrics-{i}").as_bytes(), b"value");
    }
    let answer = dolmen_tests::admin::http_get(node.admin_endpoint(), "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(answer.status, 200, "GET /metrics: {answer:?}");
    let gauge = |name: &str| -> u64 {
        answer
            .body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("expected {name} in /metrics:\n{}", answer.body))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not an integer: {e}"))
    };
    assert!(gauge("dolmen_memtable_bytes") > 0, "{}", answer.body);
    gauge("dolmen_block_cache_bytes");
    assert_eq!(gauge("dolmen_live_keys"), 5, "{}", answer.body);
    assert!(gauge("dolmen_writes_total") >= 5, "{}", answer.body);

    let status = dolmen_tests::admin::http_get(node.admin_endpoint(), "/status")
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET /status: {e}"));
    assert!(
        status["memtable_bytes"].as_u64().is_some_and(|b| b > 0)
            && status["block_cache_bytes"].is_u64(),
        "expected memory figures in /status: {status}"
    );
}
