//! `[consensus] replication_mode` (docs/replication.md §7.5): under `"all"` an acknowledged
//! write is applied on every voter (a stale read on any of them sees it at once); a frozen
//! follower makes writes answer `TIMEOUT` naming it, and those writes are committed; `"quorum"`
//! acknowledges with a follower frozen; a node whose group holds a voter missing from its
//! `consensus.endpoints` refuses to start (exit 2), and the leader refuses to add one.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test replication_mode`.

use std::path::Path;
use std::time::Duration;

use dolmen_testkit::process::{log_tail, Launch};
use dolmen_tests::binary::dolmen_bin;
use dolmen_tests::replicated::{unique_prefix, wait_until, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvClient, KvExt, ReplicatedBuilder, ReplicatedCluster};

/// The wait of `all` in these tests: short, so a frozen follower's writes answer soon.
const ALL_WAIT_MS: i64 = 1000;

/// An `all` cluster whose reads are `stale` (each node answers from its own applied state).
fn all_mode() -> ReplicatedBuilder {
    ReplicatedCluster::builder()
        .set("consensus", "replication_mode", "all")
        .set("consensus", "all_wait_ms", ALL_WAIT_MS)
        .set("reads", "consistency_level", "stale")
        .set("reads", "allow_stale_reads", true)
        .set("reads", "max_staleness_ms", 600_000)
        .set("mvcc", "retention_window_ms", 600_000)
}

fn key(prefix: &[u8], i: usize) -> Vec<u8> {
    [prefix, format!("{i:04}").as_bytes()].concat()
}

/// Asserts node `node`'s own state (a stale read) holds `key` = `value`.
#[track_caller]
fn assert_holds(client: &mut KvClient, node: usize, key: &[u8], value: &[u8], what: &str) {
    let r = client.get_value(key);
    assert!(
        r.found && r.value == value && r.error.is_none(),
        "expected node {node} to hold {} = {} {what}, got {r:?}",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(value)
    );
}

#[test]
fn an_acknowledged_all_write_is_readable_at_once_on_every_voter() {
    let c = all_mode().start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = c.followers()[0];
    let mut clients: Vec<KvClient> = (0..c.node_count())
        .map(|i| connect_buffered(c.thrift_endpoint(i)))
        .collect();
    let prefix = unique_prefix("all-everywhere");
    for i in 0..60 {
        // Half through the leader, half forwarded by a follower.
        let via = if i % 2 == 0 { leader } else { follower };
        let (k, v) = (key(&prefix, i), format!("value {i}").into_bytes());
        let r = clients[via].set_in(&k, &v, None);
        assert!(
            r.success && r.error_code.is_none(),
            "expected write {i} through node {via} to be acknowledged, got {r:?}"
        );
        for (node, client) in clients.iter_mut().enumerate() {
            assert_holds(
                client,
                node,
                &k,
                &v,
                "as soon as the write was acknowledged",
            );
        }
    }
}

#[test]
fn a_frozen_follower_makes_all_writes_time_out_naming_it_and_they_still_commit() {
    let mut c = all_mode().start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let followers = c.followers();
    let (frozen, live) = (followers[0], followers[1]);
    let prefix = unique_prefix("all-frozen");
    let mut to_leader = connect_buffered(c.thrift_endpoint(leader));
    let mut to_live = connect_buffered(c.thrift_endpoint(live));
    to_leader.must_set(&key(&prefix, 0), b"before");

    c.sigstop(frozen);
    let named = format!(
        "replication_mode = all: node {frozen} ({}) has applied up to index ",
        c.peer_endpoint(frozen)
    );
    // Through the leader and forwarded by the live follower: committed, not applied on the
    // frozen node, so neither may be acknowledged.
    let timed_out: Vec<(Vec<u8>, Vec<u8>)> = (1..=2)
        .map(|i| {
            let (k, v) = (key(&prefix, i), format!("during {i}").into_bytes());
            let (via, client) = if i == 1 {
                (leader, &mut to_leader)
            } else {
                (live, &mut to_live)
            };
            let r = client.set_in(&k, &v, None);
            let error = r.error.clone().unwrap_or_default();
            assert!(
                !r.success && r.error_code.as_deref() == Some("TIMEOUT"),
                "expected write {i} through node {via} to answer TIMEOUT while node {frozen} \
                 is frozen, got {r:?}"
            );
            assert!(
                error.contains(&named)
                    && error.contains(&format!("after {ALL_WAIT_MS} ms"))
                    && error.contains("the write is committed on a majority and will apply there"),
                "expected the TIMEOUT of write {i} to name node {frozen} ({named}...), got \
                 {error:?}"
            );
            (k, v)
        })
        .collect();
    // Committed: the leader and the live follower hold both.
    for (k, v) in &timed_out {
        assert_holds(&mut to_leader, leader, k, v, "after its all-wait TIMEOUT");
        assert_holds(&mut to_live, live, k, v, "after its all-wait TIMEOUT");
    }

    c.sigcont(frozen);
    // Once the thawed follower reports again, writes are acknowledged again.
    let mut attempts = 0;
    let mut last = None;
    let acknowledged = wait_until(Duration::from_secs(60), || {
        attempts += 1;
        let k = key(&prefix, 100 + attempts);
        let r = to_leader.set_in(&k, b"after", None);
        let ok = r.success;
        last = Some(r);
        ok || attempts >= 100
    });
    let last = last.expect("at least one write after SIGCONT");
    assert!(
        acknowledged && last.success,
        "expected writes to be acknowledged again after node {frozen} was resumed \
         ({attempts} tries), last answer {last:?}"
    );
    // The writes that timed out applied on the thawed node too.
    let mut to_thawed = connect_buffered(c.thrift_endpoint(frozen));
    for (k, v) in &timed_out {
        assert_holds(&mut to_thawed, frozen, k, v, "once it was resumed");
    }
}

#[test]
fn quorum_mode_acknowledges_writes_while_a_follower_is_frozen() {
    let mut c = ReplicatedCluster::builder().start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let followers = c.followers();
    let (frozen, live) = (followers[0], followers[1]);
    let prefix = unique_prefix("quorum-frozen");
    c.sigstop(frozen);
    let mut to_leader = connect_buffered(c.thrift_endpoint(leader));
    let mut to_live = connect_buffered(c.thrift_endpoint(live));
    for i in 0..10 {
        let client = if i % 2 == 0 {
            &mut to_leader
        } else {
            &mut to_live
        };
        client.must_set(&key(&prefix, i), b"acknowledged by a majority");
    }
    c.sigcont(frozen);
}

/// Sets `[consensus] key = value` in the TOML file at `path`.
fn set_consensus(path: &Path, key: &str, value: toml::Value) {
    let text = std::fs::read_to_string(path).expect("read the node's config");
    let mut table: toml::Table = text.parse().expect("the node's config is TOML");
    table
        .entry("consensus")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[consensus] is a table")
        .insert(key.to_owned(), value);
    std::fs::write(path, toml::to_string(&table).expect("render the config"))
        .expect("write the node's config");
}

/// The voter ids node `i` reports.
fn voters(c: &ReplicatedCluster, i: usize) -> Vec<u64> {
    c.try_status(i)
        .ok()
        .and_then(|s| s.raft)
        .map(|r| r.voter_ids())
        .unwrap_or_default()
}

#[test]
fn all_mode_refuses_to_start_with_a_voter_missing_from_the_endpoints() {
    // Nodes 0..3 list only themselves; node 3 is added later, so node 0's endpoints lack it.
    let mut c = ReplicatedCluster::builder().nodes(4).initial(3).start();
    c.start(3);
    c.add_member(3)
        .unwrap_or_else(|e| c.fail(&format!("expected node 3 to be added: {e}")));
    if !wait_until(Duration::from_secs(30), || voters(&c, 0) == [0, 1, 2, 3]) {
        c.fail(&format!(
            "expected voters [0, 1, 2, 3] on node 0, got {:?}",
            voters(&c, 0)
        ));
    }
    c.stop(0);
    let config = c.config_path(0);
    set_consensus(&config, "replication_mode", "all".into());

    let log = config.with_file_name("node-0-all.log");
    let mut node = Launch::new(&dolmen_bin(), &config, &log)
        .spawn()
        .unwrap_or_else(|e| c.fail(&format!("start node 0 with replication_mode = all: {e}")));
    let status = node.wait_exit(Duration::from_secs(60));
    let text = log_tail(&log, 20);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "expected node 0 to refuse to start (exit 2), got {status:?}; log:\n{text}"
    );
    assert!(
        text.contains("replication_mode = \"all\": group 0 has voter 3 (peer address ")
            && text.contains("which is not a configured node")
            && text.contains("consensus.endpoints has entries for nodes 0, 1, 2"),
        "expected the refusal to name group 0 and voter 3, got:\n{text}"
    );
}

#[test]
fn all_mode_refuses_to_add_a_voter_missing_from_the_leaders_endpoints() {
    let mut c = all_mode().nodes(4).initial(3).start();
    c.wait_for_leader(LEADER_TIMEOUT);
    c.start(3);
    let refusal = match c.add_member(3) {
        Ok(outcome) => c.fail(&format!(
            "expected adding node 3 (not in the leader's consensus.endpoints) to be refused, \
             got {outcome:?}"
        )),
        Err(e) => e.to_string(),
    };
    assert!(
        refusal.contains("replication_mode = \"all\": node 3 is not a configured node of group 0")
            && refusal.contains("409"),
        "expected a 409 naming node 3, got {refusal}"
    );
    assert_eq!(voters(&c, 0), [0, 1, 2], "the membership is unchanged");
}
