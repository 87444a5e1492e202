//! `[consensus] replication_mode` (docs/replication.md §7.5): under `"all"` an acknowledged
//! write is applied on every voter (a stale read on any of them sees it at once); a frozen
//! follower makes writes answer `TIMEOUT` naming it, and those writes are committed; `"quorum"`
//! acknowledges with a follower frozen; a node whose group holds a voter missing from its
//! `consensus.endpoints` refuses to start (exit 2), and the leader refuses to add one. On a
//! sharded cluster, `all` holds for every data group a commit writes, through the fast path
//! and through two-phase commit, with group 0 under its own `metadata_replication_mode`.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test replication_mode`.

use std::path::Path;
use std::time::Duration;

use dolmen_testkit::process::{log_tail, Launch};
use dolmen_tests::binary::dolmen_bin;
use dolmen_tests::client::op_set;
use dolmen_tests::kvstore::{
    AtomicCommitRequest, AtomicCommitResponse, TTransactionalKVSyncClient,
};
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

/// Keys of the four data groups of [`sharded_all`]: `sa/a…` in group 1, `sa/c…` in 2, `sa/e…`
/// in 3, `sa/g…` in 4.
const RANGES: [&[u8]; 4] = [b"sa/a", b"sa/c", b"sa/e", b"sa/g"];

/// A 3-node cluster with four data groups whose writes are acknowledged under `all`.
fn sharded_all() -> ReplicatedBuilder {
    ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["sa/b", "sa/d", "sa/f"])
        .set("consensus", "replication_mode", "all")
        .set("consensus", "all_wait_ms", ALL_WAIT_MS)
}

/// One commit setting `key ‖ suffix` for each range index in `ranges`, through `kv`.
fn commit_in(
    kv: &mut KvClient,
    ranges: &[usize],
    suffix: &[u8],
    value: &[u8],
) -> AtomicCommitResponse {
    let operations = ranges
        .iter()
        .map(|&r| op_set(&[RANGES[r], suffix].concat(), value))
        .collect::<Vec<_>>();
    let read_version = kv.read_version();
    kv.atomic_commit(AtomicCommitRequest::new(
        read_version,
        operations,
        Vec::<Vec<u8>>::new(),
        None,
    ))
    .expect("atomicCommit answers")
}

/// Each range alone (the fast path), then all four at once (two-phase commit).
fn commit_shapes() -> Vec<Vec<usize>> {
    let mut shapes: Vec<Vec<usize>> = (0..RANGES.len()).map(|r| vec![r]).collect();
    shapes.push((0..RANGES.len()).collect());
    shapes
}

#[test]
fn a_sharded_all_commit_is_applied_on_every_voter_of_every_group_it_wrote_when_acknowledged() {
    let c = sharded_all()
        .set("consensus", "metadata_replication_mode", "all")
        .start();
    c.wait_for_leader(LEADER_TIMEOUT);
    let prefix = unique_prefix("sharded-all");
    for via in 0..c.node_count() {
        let mut kv = connect_buffered(c.thrift_endpoint(via));
        for ranges in commit_shapes() {
            let r = commit_in(&mut kv, &ranges, &prefix, b"everywhere");
            assert!(
                r.success,
                "expected a commit to ranges {ranges:?} through node {via} to be acknowledged, \
                 got {r:?}"
            );
            let version = r.committed_version.expect("committed_version") as u64;
            // Acknowledged: every voter of every group written has applied it already.
            for node in 0..c.node_count() {
                let status = c.status(node);
                for &range in &ranges {
                    let group = range as u64 + 1;
                    let applied = status
                        .groups
                        .iter()
                        .find(|g| g.id == group)
                        .map(|g| g.applied_version);
                    assert!(
                        applied.is_some_and(|v| v >= version),
                        "expected node {node} to have applied group {group} up to the version \
                         {version} of the commit to ranges {ranges:?} through node {via} when \
                         it was acknowledged, got {applied:?}"
                    );
                }
            }
        }
    }
}

/// Data groups under `all`, group 0 under `quorum`: with a node frozen, a commit in one range
/// and one across ranges (whose decision group 0 records on a quorum) both answer `TIMEOUT`
/// naming the frozen node, are committed, and apply there once it is resumed.
#[test]
fn a_frozen_node_makes_sharded_all_commits_time_out_naming_it_and_they_still_commit() {
    let mut c = sharded_all()
        .set("consensus", "metadata_replication_mode", "quorum")
        .start();
    c.wait_for_leader(LEADER_TIMEOUT);
    let (frozen, via) = (2, 0);
    let prefix = unique_prefix("sharded-all-frozen");
    let mut kv = connect_buffered(c.thrift_endpoint(via));
    let before = commit_in(&mut kv, &[0, 1, 2, 3], &prefix, b"before");
    assert!(
        before.success,
        "expected the first commit to be acknowledged: {before:?}"
    );

    c.sigstop(frozen);
    // Every group, group 0 included, elects a leader among the live nodes: only the frozen
    // node's applying is then missing (a write to a group it still led would wait for that
    // election instead).
    let live = [0, 1];
    if !wait_until(Duration::from_secs(30), || led_by(&c, &live)) {
        c.fail(&format!(
            "expected every group to elect a leader among nodes {live:?} after node {frozen} \
             was frozen"
        ));
    }
    let named = format!(
        "replication_mode = all: node {frozen} ({}) has applied up to index ",
        c.peer_endpoint(frozen)
    );
    let mut timed_out = Vec::new();
    for (i, ranges) in commit_shapes().into_iter().enumerate() {
        let suffix = [prefix.as_slice(), format!("{i}").as_bytes()].concat();
        let r = commit_in(&mut kv, &ranges, &suffix, b"during");
        let error = r.error.clone().unwrap_or_default();
        assert!(
            !r.success && r.error_code.as_deref() == Some("TIMEOUT") && error.contains(&named),
            "expected the commit to ranges {ranges:?} to answer TIMEOUT naming node {frozen} \
             ({named}...) while it is frozen, got {r:?}"
        );
        timed_out.push((ranges, suffix));
    }
    // Committed: the live nodes serve every write that timed out.
    for (ranges, suffix) in &timed_out {
        for &r in ranges {
            let key = [RANGES[r], suffix.as_slice()].concat();
            let got = kv.get_value(&key);
            assert!(
                got.found && got.value == b"during",
                "expected {} committed after its TIMEOUT, got {got:?}",
                String::from_utf8_lossy(&key)
            );
        }
    }

    c.sigcont(frozen);
    let mut attempts = 0;
    let mut last = None;
    let acknowledged = wait_until(Duration::from_secs(60), || {
        attempts += 1;
        let suffix = [prefix.as_slice(), format!("after{attempts}").as_bytes()].concat();
        let r = commit_in(&mut kv, &[0, 1, 2, 3], &suffix, b"after");
        let ok = r.success;
        last = Some(r);
        ok || attempts >= 100
    });
    assert!(
        acknowledged && last.as_ref().is_some_and(|r| r.success),
        "expected commits to be acknowledged again after node {frozen} was resumed \
         ({attempts} tries), last answer {last:?}"
    );
    let mut thawed = connect_buffered(c.thrift_endpoint(frozen));
    for (ranges, suffix) in &timed_out {
        for &r in ranges {
            assert_holds(
                &mut thawed,
                frozen,
                &[RANGES[r], suffix.as_slice()].concat(),
                b"during",
                "once it was resumed",
            );
        }
    }
}

/// Whether every node of `nodes` sees group 0 and every data group led by one of `nodes`.
fn led_by(c: &ReplicatedCluster, nodes: &[usize]) -> bool {
    let among = |leader: Option<u64>| leader.is_some_and(|l| nodes.contains(&(l as usize)));
    nodes.iter().all(|&i| {
        c.try_status(i).is_ok_and(|s| {
            among(s.raft.as_ref().and_then(|r| r.leader))
                && !s.groups.is_empty()
                && s.groups.iter().all(|g| among(g.leader))
        })
    })
}
