//! getClusterHealth, getNodeInfo and getDatabaseStats tell the truth.

use std::net::SocketAddr;

use dolmen_tests::client::op_set;
use dolmen_tests::kvstore::{
    GetClusterHealthRequest, GetDatabaseStatsRequest, GetNodeInfoRequest, NodeStatus,
    TTransactionalKVSyncClient,
};
use dolmen_tests::{Connector, KvClient, KvExt, TestCluster};

use crate::helpers::{assert_found, assert_nonempty_error, fresh_ns, key, reply};

/// getClusterHealth / getNodeInfo / getDatabaseStats tell the truth.
pub(crate) fn suite_diagnostics(c: &dyn TestCluster, connect: Connector) {
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
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit i64");
    for node in &h.nodes {
        assert_eq!(
            node.status, "healthy",
            "expected every node healthy: {node:?}"
        );
        assert!(
            (now_ms - 10_000..=now_ms + 1_000).contains(&node.last_seen_timestamp),
            "expected every healthy member seen within the last 10 s (now {now_ms}): {node:?}"
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
