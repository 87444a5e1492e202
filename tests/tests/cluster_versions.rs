//! A cluster's versions are in FoundationDB units (docs/sharding.md §3.1, §3.2): the leader's
//! sequencer draws each commit's version from the group's oracle, `max(last + 1, now)`, and
//! every replica applies the commit at that version. So versions are microseconds of wall time,
//! strictly increasing, identical on every replica, and above everything before after the
//! leader is killed: the next leader starts above the bound its predecessor persisted, at most
//! one oracle window (3 s) ahead of the clock, and continues by one per commit until the clock
//! catches up. Through the real binary and a stock Thrift client, on the leader and on a
//! follower.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test cluster_versions`.

use dolmen_tests::client::{now_micros as now_us, op_set, versionstamped_commit};
use dolmen_tests::replicated::LEADER_TIMEOUT;
use dolmen_tests::{connect_buffered, KvClient, KvExt, ReplicatedCluster};

/// How far ahead of the clock a new leader's versions may start: one oracle window
/// (`sequencer::DEFAULT_ORACLE_WINDOW`).
const ORACLE_WINDOW_US: i64 = 3_000_000;

/// Commits `n` blind sets through `kv`, each checked against the clock around it (versions at
/// most `ahead` µs past it) and above `last`; returns the last version.
fn commit_in_microseconds(kv: &mut KvClient, what: &str, n: u32, mut last: i64, ahead: i64) -> i64 {
    for i in 0..n {
        let before = now_us();
        let rv = kv.read_version();
        assert!(
            rv >= last,
            "{what}: read version {rv} below acknowledged commit {last}"
        );
        let key = format!("cluster-versions/{what}/{}", i % 5);
        let cv = kv.must_commit(rv, vec![op_set(key.as_bytes(), b"v")], vec![]);
        let after = now_us();
        assert!(cv > last, "{what}: commit version {cv} not above {last}");
        // The leader's clock, read between the two readings of ours (same machine), unless
        // earlier versions were already above it: then one above the last.
        assert!(
            cv >= before.min(last + 1) && cv <= (after + ahead).max(last + 1),
            "{what}: expected a version in microseconds of wall time between {before} and \
             {} (or {} if the clock lags the versions); got {cv}",
            after + ahead,
            last + 1
        );
        last = cv;
    }
    last
}

#[test]
fn cluster_versions_are_microseconds_identical_on_every_replica_and_survive_a_leader_kill() {
    // History kept long enough to compare digests at the versions of this test.
    let mut cluster = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 120_000)
        .start();
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let follower = (leader + 1) % cluster.node_count();

    let mut on_leader = connect_buffered(cluster.thrift_endpoint(leader));
    let last = commit_in_microseconds(&mut on_leader, "leader", 50, 0, 0);
    let mut on_follower = connect_buffered(cluster.thrift_endpoint(follower));
    let mut last = commit_in_microseconds(&mut on_follower, "follower", 50, last, 0);

    // A versionstamp carries the commit version, whichever node the commit went through.
    let (stamped, in_stamp) = versionstamped_commit(
        &mut on_follower,
        &mut on_leader,
        b"cluster-versions/stamped",
    );
    assert_eq!(in_stamp, stamped, "the stamp is the commit version");
    last = last.max(stamped);

    // Every replica derived the same versions: at the versions just below and at the stamped
    // commit, and at the last one, every replica's data digest is the same (a replica that
    // gave a commit another version would see it appear at another version).
    let stamped = u64::try_from(stamped).expect("positive");
    agree_at(
        &cluster,
        &[stamped - 1, stamped, u64::try_from(last).expect("positive")],
    );

    // Killing the leader: the next leader's versions continue above, from the bound its
    // predecessor persisted (at most one window ahead of the clock).
    cluster.kill9(leader);
    let next = cluster.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(next, leader);
    let mut on_next = connect_buffered(cluster.thrift_endpoint(next));
    let last = commit_in_microseconds(&mut on_next, "next leader", 20, last, ORACLE_WINDOW_US);

    // The killed node comes back, applies the new leader's entries, and agrees.
    cluster.start(leader);
    agree_at(&cluster, &[stamped, u64::try_from(last).expect("positive")]);
}

/// Waits until every node applied the highest of `versions`, then checks that all nodes have
/// the same data digest at each of them.
fn agree_at(cluster: &ReplicatedCluster, versions: &[u64]) {
    let top = versions.iter().copied().max().expect("versions");
    let nodes = cluster.running();
    for &i in &nodes {
        cluster.wait_applied_at_least(i, top);
    }
    for &v in versions {
        let digests: Vec<String> = nodes
            .iter()
            .map(|&i| {
                cluster
                    .digest(i, v)
                    .unwrap_or_else(|e| panic!("node {i}'s digest at {v}: {e}"))
            })
            .collect();
        assert!(
            digests.iter().all(|d| d == &digests[0]),
            "replicas {nodes:?} disagree at version {v}: {digests:?}"
        );
    }
}

/// Commits `n` blind sets through node `node`, each version above the one before; returns the
/// last. With a clock stepped back the versions go on by one per commit.
fn commit_above(
    cluster: &ReplicatedCluster,
    node: usize,
    what: &str,
    n: u32,
    mut last: i64,
) -> i64 {
    let mut kv = connect_buffered(cluster.thrift_endpoint(node));
    for i in 0..n {
        let rv = kv.read_version();
        assert!(
            rv >= last,
            "{what}: read version {rv} below acknowledged commit {last}"
        );
        let key = format!("clock-steps/{}", i % 3);
        let cv = kv.must_commit(rv, vec![op_set(key.as_bytes(), b"v")], vec![]);
        assert!(cv > last, "{what}: commit version {cv} not above {last}");
        last = cv;
    }
    last
}

/// Power-cuts every node and starts them all with `offset_ms` added to their clocks; returns
/// the new leader.
fn restart_all_with_clock_offset(cluster: &mut ReplicatedCluster, offset_ms: i64) -> usize {
    let all: Vec<usize> = (0..cluster.node_count()).collect();
    let offset = offset_ms.to_string();
    for &i in &all {
        cluster.kill9(i);
        cluster.set_env(i, &[("DOLMEN_FAULTS__CLOCK_OFFSET_MS", offset.as_str())]);
    }
    cluster.start_many(&all);
    cluster.wait_for_leader(LEADER_TIMEOUT)
}

#[test]
fn oracle_never_goes_back_across_leader_kills_and_clock_steps() {
    const TEN_MINUTES_MS: i64 = 600_000;
    let mut cluster = ReplicatedCluster::builder().start();
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let before = commit_above(&cluster, leader, "before any step", 10, 0);

    // Every clock steps back ten minutes (a restart of the whole cluster): the oracle starts
    // above the bound its last leader persisted and goes on by one per commit.
    let leader = restart_all_with_clock_offset(&mut cluster, -TEN_MINUTES_MS);
    let mut last = commit_above(&cluster, leader, "clocks ten minutes back", 10, before);
    assert!(
        last < before + 2 * ORACLE_WINDOW_US,
        "versions jumped from {before} to {last} though every clock went back"
    );
    // A leader change under the stepped-back clocks: a kill, then a transfer.
    cluster.kill9(leader);
    let next = cluster.wait_for_leader(LEADER_TIMEOUT);
    last = commit_above(&cluster, next, "after a leader kill", 10, last);
    cluster.start(leader);
    cluster.wait_ready(leader, LEADER_TIMEOUT);
    cluster
        .transfer_leader(leader)
        .unwrap_or_else(|e| panic!("transfer to node {leader}: {e}"));
    let moved = cluster.wait_for_leader(LEADER_TIMEOUT);
    last = commit_above(&cluster, moved, "after a transfer", 10, last);

    // Clocks jump ten minutes forward: versions follow them.
    let leader = restart_all_with_clock_offset(&mut cluster, TEN_MINUTES_MS);
    let ahead = commit_above(&cluster, leader, "clocks ten minutes ahead", 10, last);
    assert!(
        ahead > now_us() + TEN_MINUTES_MS * 1000 / 2,
        "versions {ahead} did not follow the clock ten minutes ahead"
    );
    // And back again: nothing handed out below what the forward clock reached.
    let leader = restart_all_with_clock_offset(&mut cluster, 0);
    commit_above(&cluster, leader, "clocks back to true time", 10, ahead);
}
