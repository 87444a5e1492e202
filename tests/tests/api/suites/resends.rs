//! Resends with an idempotency token (docs/WIRE.md §3) of commits across ranges
//! (docs/sharding.md §6.6): the token, recorded in group 0 by the decision, answers a resend
//! with the first outcome through every node, and nothing applies twice. The keys and helpers
//! are those of `across_ranges.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dolmen_tests::client::{op, op_set};
use dolmen_tests::kvstore::{AtomicCommitResponse, Operation};
use dolmen_tests::raw::{call_bytes, RawConn, TokenCommit};
use dolmen_tests::{Connector, KvExt, TestCluster};

use super::across_ranges::{assert_at, assert_refused, clients, in_range, nodes, RANGES};
use crate::helpers::{assert_found, fresh_ns, stamp};

/// Sends `request` to `node` on a fresh connection with `connect`'s transport; the answer.
fn token_commit(
    connect: Connector,
    node: SocketAddr,
    request: &TokenCommit,
) -> AtomicCommitResponse {
    let mut conn = RawConn::connect(node, connect.framed());
    conn.send(&call_bytes("atomicCommit", 1, request));
    let answer = conn
        .recv::<AtomicCommitResponse>()
        .unwrap_or_else(|e| panic!("expected an atomicCommit REPLY from {node}: {e:?}"));
    match answer.response {
        Some(response) => response,
        None => panic!(
            "expected a REPLY with a response from {node}, got {:?}",
            answer.exception
        ),
    }
}

/// Resends of a commit across ranges with the same idempotency token, through every node,
/// answer the first commit version and apply nothing again (a key overwritten meanwhile
/// keeps the new value, the versionstamp stays the first commit's), with read-conflict keys
/// that its own writes touched too; an older sequence is refused with `INVALID_ARGUMENT`.
pub(crate) fn suite_idempotent_retries_across_ranges(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    let ns = fresh_ns("xr-token");
    let keys: Vec<Vec<u8>> = RANGES.iter().map(|&r| in_range(r, &ns, b"k")).collect();
    let stamped = in_range(b'm', &ns, b"stamped");
    let mut operations: Vec<Operation> = keys.iter().map(|k| op_set(k, b"first")).collect();
    operations.push(op(
        "SET_VERSIONSTAMPED_VALUE",
        &stamped,
        Some(&[0; 10]),
        None,
    ));
    let blind = TokenCommit {
        read_version: kvs[0].read_version(),
        operations,
        read_conflict_keys: vec![],
        client_id: ns.clone(),
        client_sequence: 1,
    };
    let r = token_commit(connect, nodes[0], &blind);
    assert!(r.success, "expected the first commit to succeed: {r:?}");
    let cv = r.committed_version.expect("committed_version");
    // Another writer's value: a resend applied again would put "first" back.
    let other = 1 % kvs.len();
    kvs[other].must_set(&keys[0], b"overwritten");
    for &node in &nodes {
        let r = token_commit(connect, node, &blind);
        assert!(
            r.success && r.committed_version == Some(cv),
            "expected the resend through {node} to answer the first commit at {cv}: {r:?}"
        );
    }
    for (kv, &node) in kvs.iter_mut().zip(&nodes) {
        assert_found(kv, &keys[0], b"overwritten");
        for k in &keys[1..] {
            assert_found(kv, k, b"first");
            assert_at(kv, node, k, cv, Some(b"first"));
            assert_at(kv, node, k, cv - 1, None);
        }
        assert_found(kv, &stamped, &stamp(cv, 4));
    }

    // With read-conflict keys that the commit itself writes: a resend's conflict check would
    // see the first attempt's writes, but the token answers first.
    let checked = TokenCommit {
        read_version: kvs[0].read_version(),
        operations: vec![op_set(&keys[1], b"second"), op_set(&keys[3], b"second")],
        read_conflict_keys: vec![keys[1].clone(), keys[2].clone()],
        client_id: ns.clone(),
        client_sequence: 2,
    };
    let r = token_commit(connect, nodes[0], &checked);
    assert!(r.success, "expected the checked commit to succeed: {r:?}");
    let cv2 = r.committed_version.expect("committed_version");
    for &node in &nodes {
        let r = token_commit(connect, node, &checked);
        assert!(
            r.success && r.committed_version == Some(cv2),
            "expected the resend through {node} to answer the first commit at {cv2}: {r:?}"
        );
    }
    for (kv, &node) in kvs.iter_mut().zip(&nodes) {
        assert_at(kv, node, &keys[1], cv2, Some(b"second"));
        assert_at(kv, node, &keys[3], cv2, Some(b"second"));
        assert_at(kv, node, &keys[3], cv2 - 1, Some(b"first"));
    }
    // The older sequence is now refused, through every node.
    for &node in &nodes {
        let r = token_commit(connect, node, &blind);
        assert_refused(&r, "INVALID_ARGUMENT", "a resend of an older sequence");
    }
    for kv in &mut kvs {
        assert_found(kv, &keys[0], b"overwritten");
        assert_found(kv, &keys[1], b"second");
    }
}

/// How long [`suite_resends_whose_every_check_fails`] waits at most for the MVCC horizon to
/// pass a read version (the test window is 300 ms; this is only a bound on the wait).
const HORIZON_WAIT: Duration = Duration::from_secs(30);

/// Regression: a resend with the same idempotency token of a committed commit whose
/// read-conflict check now fails in every range it reaches answers the first outcome, as the
/// token promises (docs/WIRE.md §3), not the check's: CONFLICT (its own writes are newer
/// than its read version) nor TRANSACTION_TOO_OLD (the horizon passed its read version) would
/// tell the client "not applied" about a commit that was, and its rerun would apply twice.
/// An older sequence resent likewise is `INVALID_ARGUMENT`. Holds on one group, where the
/// token is looked up before the checks; across ranges, two-phase commit must do the same.
pub(crate) fn suite_resends_whose_every_check_fails(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    let ns = fresh_ns("xr-resend");
    let keys: Vec<Vec<u8>> = RANGES.iter().map(|&r| in_range(r, &ns, b"k")).collect();
    let first = TokenCommit {
        read_version: kvs[0].read_version(),
        operations: keys.iter().map(|k| op_set(k, b"first")).collect(),
        read_conflict_keys: keys.clone(),
        client_id: ns.clone(),
        client_sequence: 1,
    };
    let r = token_commit(connect, nodes[0], &first);
    assert!(r.success, "expected the first commit to succeed: {r:?}");
    let cv = r.committed_version.expect("committed_version");
    // Every key read was written at cv, after the read version.
    for &node in &nodes {
        let r = token_commit(connect, node, &first);
        assert!(
            r.success && r.committed_version == Some(cv),
            "expected the resend through {node}, whose every read-conflict key was written \
             after its read version by the first attempt, to answer the first commit at {cv}: \
             {r:?}"
        );
    }

    // Wait (bounded) until the horizon passed the read version in every range.
    let started = Instant::now();
    for k in &keys {
        loop {
            let r = kvs[0].snapshot_read_in(k, first.read_version, None);
            if r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("TRANSACTION_TOO_OLD"))
            {
                break;
            }
            assert!(
                started.elapsed() < HORIZON_WAIT,
                "expected the horizon to pass {} within {HORIZON_WAIT:?}: {r:?}",
                first.read_version
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for &node in &nodes {
        let r = token_commit(connect, node, &first);
        assert!(
            r.success && r.committed_version == Some(cv),
            "expected the resend through {node}, whose read version is below the horizon now, \
             to answer the first commit at {cv}: {r:?}"
        );
    }

    // A newer sequence, then the older one again: refused as older, not as a conflict.
    let second = TokenCommit {
        read_version: kvs[0].read_version(),
        operations: keys.iter().map(|k| op_set(k, b"second")).collect(),
        read_conflict_keys: keys.clone(),
        client_id: ns.clone(),
        client_sequence: 2,
    };
    let r = token_commit(connect, nodes[0], &second);
    assert!(r.success, "expected the second commit to succeed: {r:?}");
    for &node in &nodes {
        let r = token_commit(connect, node, &first);
        assert_refused(&r, "INVALID_ARGUMENT", "a resend of an older sequence");
    }
    for kv in &mut kvs {
        for k in &keys {
            assert_found(kv, k, b"second");
        }
    }
}
