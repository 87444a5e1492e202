//! The test-only network fault layer (`[faults] allow_network_faults`, admin
//! `/debug/network-faults`) and the planted bug the chaos suite must catch
//! (`[faults] unsafe_stale_reads`), on real 3-node clusters:
//! - rules are refused unless the node allows them, and bad rules are refused naming the field;
//! - cutting the leader off with drop rules elects another leader, and the cut-off node never
//!   answers a linearizable read with its stale value; after the rules are cleared every replica
//!   converges;
//! - duplicated and delayed Raft messages lose no acknowledged write;
//! - with the planted bug, a cut-off follower serves a stale value (what the checker must see).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- network_faults`.

use std::net::SocketAddr;
use std::time::Duration;

use dolmen_tests::admin::{http_call, HttpResponse};
use dolmen_tests::client::connect_buffered;
use dolmen_tests::kvstore::{GetRequest, TTransactionalKVSyncClient};
use dolmen_tests::replicated::{
    check_writes, summarize, try_connect, unique_prefix, wait_until, WriteKind, WriteLoad,
    WriteLoadConfig, LEADER_TIMEOUT,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

const RULES: &str = "/debug/network-faults";

fn put_rules(addr: SocketAddr, body: &str) -> HttpResponse {
    http_call(addr, "PUT", RULES, body).unwrap_or_else(|e| panic!("PUT {RULES}: {e}"))
}

/// Drop rules on both sides between `node` and every other member.
fn cut_off(c: &ReplicatedCluster, node: usize) {
    for i in 0..c.node_count() {
        let body = if i == node {
            r#"{"rules":[{"action":"drop"}]}"#.to_owned()
        } else {
            format!(r#"{{"rules":[{{"to":{node},"action":"drop"}}]}}"#)
        };
        let answer = put_rules(c.admin_endpoint(i), &body);
        assert_eq!(answer.status, 200, "node {i}: {}", answer.body);
    }
}

fn heal(c: &ReplicatedCluster) {
    for i in 0..c.node_count() {
        let answer = http_call(c.admin_endpoint(i), "DELETE", RULES, "")
            .unwrap_or_else(|e| panic!("DELETE {RULES}: {e}"));
        assert_eq!(answer.status, 200, "node {i}: {}", answer.body);
    }
}

/// A linearizable `get` of `key` through `node`: `Ok(value)` when found, `Err` for an error
/// answer, a transport failure or absence.
fn get(c: &ReplicatedCluster, node: usize, key: &[u8]) -> Result<Vec<u8>, String> {
    let mut kv = try_connect(c.thrift_endpoint(node))?;
    let r = kv
        .get(GetRequest::new(key.to_vec(), None))
        .map_err(|e| format!("transport: {e}"))?;
    match (r.error, r.found) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(r.value),
        (None, false) => Err("not found".into()),
    }
}

fn faulty_cluster() -> dolmen_tests::replicated::ReplicatedBuilder {
    ReplicatedCluster::builder()
        .set("faults", "allow_network_faults", true)
        .set("mvcc", "retention_window_ms", 600_000)
}

#[test]
fn network_rules_are_validated_and_refused_unless_allowed() {
    let c = ReplicatedCluster::builder()
        .set_node(0, "faults", "allow_network_faults", true)
        .start();
    c.wait_for_leader(LEADER_TIMEOUT);

    let refused = put_rules(c.admin_endpoint(1), r#"{"rules":[]}"#);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("allow_network_faults"),
        "{}",
        refused.body
    );

    let bad = put_rules(
        c.admin_endpoint(0),
        r#"{"rules":[{"action":"drop"},{"action":"delay","probability":1.5,"delay_ms":5}]}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("rules[1].probability"), "{}", bad.body);

    let good = put_rules(
        c.admin_endpoint(0),
        r#"{"rules":[{"to":2,"action":"delay","delay_ms":5,"jitter_ms":5,"rpcs":["AppendEntries"]}]}"#,
    );
    assert_eq!(good.status, 200, "{}", good.body);
    let shown = http_call(c.admin_endpoint(0), "GET", RULES, "")
        .and_then(|r| r.json())
        .unwrap();
    assert_eq!(shown["rules"][0]["to"], 2, "{shown}");
    assert_eq!(shown["rules"][0]["action"], "delay", "{shown}");
    heal_one(c.admin_endpoint(0));
}

fn heal_one(addr: SocketAddr) {
    let cleared = http_call(addr, "DELETE", RULES, "").and_then(|r| r.json());
    assert_eq!(cleared, Ok(serde_json::json!({ "rules": [] })));
}

#[test]
fn a_cut_off_leader_is_replaced_and_serves_no_stale_read() {
    let c = faulty_cluster().start();
    let old = c.wait_for_leader(LEADER_TIMEOUT);
    let key = [unique_prefix("netfaults").as_slice(), b"k"].concat();
    c.write_until_acked(old, &key, b"v1");

    cut_off(&c, old);
    let others: Vec<usize> = (0..c.node_count()).filter(|&i| i != old).collect();
    let mut new = None;
    let elected = wait_until(LEADER_TIMEOUT, || {
        new = c
            .try_status(others[0])
            .ok()
            .and_then(|s| s["leader"].as_u64())
            .map(|l| l as usize)
            .filter(|&l| l != old);
        new.is_some()
    });
    assert!(
        elected,
        "no new leader among {others:?} after cutting off {old}"
    );
    let new = new.unwrap_or(others[0]);
    c.write_until_acked(new, &key, b"v2");

    // The old leader may still believe it leads; it must not answer from its stale state.
    match get(&c, old, &key) {
        Ok(value) => assert_ne!(value, b"v1", "the cut-off node served a stale value"),
        Err(e) => println!("cut-off node refused the read: {e}"),
    }

    heal(&c);
    let all: Vec<usize> = (0..c.node_count()).collect();
    let (v, digest) = c.converged_digest(&all, c.applied(new), Duration::from_secs(60));
    println!("healed and converged at version {v}: {digest}");
    assert_eq!(get(&c, old, &key), Ok(b"v2".to_vec()));
}

#[test]
fn duplicated_and_delayed_raft_messages_lose_no_acknowledged_write() {
    let c = faulty_cluster().start();
    c.wait_for_leader(LEADER_TIMEOUT);
    for i in 0..c.node_count() {
        let answer = put_rules(
            c.admin_endpoint(i),
            r#"{"rules":[
                {"action":"duplicate","probability":0.5,"rpcs":["AppendEntries","Vote","PreVote"]},
                {"action":"delay","probability":0.3,"delay_ms":1,"jitter_ms":20}]}"#,
        );
        assert_eq!(answer.status, 200, "node {i}: {}", answer.body);
    }
    let prefix = unique_prefix("dup");
    let rv = connect_buffered(c.thrift_endpoint(0)).read_version();
    let targets: Vec<_> = (0..c.node_count())
        .map(|i| (i, c.thrift_endpoint(i)))
        .collect();
    let loads = WriteLoad::start_mixed(
        &WriteLoadConfig {
            targets,
            threads: 3,
            prefix: prefix.clone(),
            kind: WriteKind::SetKey,
            pause: Duration::from_millis(1),
            max_writes_per_thread: 300,
            max_duration: Duration::from_secs(30),
        },
        rv,
    );
    let records: Vec<_> = loads.into_iter().flat_map(WriteLoad::complete).collect();
    println!("writes under duplication: {}", summarize(&records));
    heal(&c);
    let all: Vec<usize> = (0..c.node_count()).collect();
    check_writes(&c, &all, &prefix, &records, Duration::from_secs(30));
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    c.converged_digest(&all, c.applied(leader), Duration::from_secs(60));
}

#[test]
fn with_the_planted_bug_a_cut_off_follower_serves_a_stale_value() {
    let c = faulty_cluster()
        .set("faults", "unsafe_stale_reads", true)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = c.followers()[0];
    let key = [unique_prefix("planted").as_slice(), b"k"].concat();
    let v1 = c.write_until_acked(leader, &key, b"v1");
    c.wait_applied_at_least(follower, v1);

    cut_off(&c, follower);
    c.write_until_acked(leader, &key, b"v2");
    assert_eq!(
        get(&c, follower, &key),
        Ok(b"v1".to_vec()),
        "with [faults] unsafe_stale_reads a cut-off follower answers from its own state"
    );
    heal(&c);
}
