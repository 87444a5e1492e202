//! Catch-up by snapshot: a node that was down while the others purged the log it needs comes
//! back, installs a snapshot, catches up, and ends with the same state (digest) as the others.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- catch_up`.

use std::time::Duration;

use dolmen_tests::replicated::{
    check_writes, summarize, unique_prefix, wait_until, Outcome, WriteKind, WriteLoad,
    WriteLoadConfig, APPLY_TIMEOUT, LEADER_TIMEOUT,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

/// Keys written while node 2 is down.
const KEYS: usize = 2000;
const LAGGARD: usize = 2;

#[test]
fn restarted_node_catches_up_by_snapshot() {
    let mut c = ReplicatedCluster::builder()
        .set("consensus", "snapshot_interval_entries", 100)
        .set("consensus", "snapshot_keep_entries", 10)
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    c.wait_for_leader(LEADER_TIMEOUT);
    let before_stop = c
        .status(LAGGARD)
        .raft
        .map(|r| r.last_log)
        .unwrap_or_else(|| c.fail("expected raft.last_log in node 2's /status"));
    c.stop(LAGGARD);
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    // What the leader knows node 2 has; at most a few entries beyond what we sampled.
    let matched = c
        .status(leader)
        .raft
        .and_then(|r| r.members.into_iter().find(|m| m.id == LAGGARD as u64))
        .and_then(|m| m.matched)
        .unwrap_or(0);
    let laggard_last = before_stop.max(matched);

    let live: Vec<usize> = (0..c.node_count()).filter(|&i| i != LAGGARD).collect();
    let prefix = unique_prefix("catch-up");
    let load = WriteLoad::start(WriteLoadConfig {
        targets: live.iter().map(|&i| (i, c.thrift_endpoint(i))).collect(),
        threads: 4,
        prefix: prefix.clone(),
        kind: WriteKind::SetKey,
        pause: Duration::ZERO,
        max_writes_per_thread: KEYS / 4,
        max_duration: Duration::from_secs(120),
    });
    let records = load.complete();
    let acked = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .count();
    if acked != KEYS {
        c.fail(&format!(
            "expected all {KEYS} writes to two healthy nodes acked; {}",
            summarize(&records)
        ));
    }

    let mut purged = 0;
    if !wait_until(Duration::from_secs(30), || {
        purged = live
            .iter()
            .filter_map(|&i| c.try_status(i).ok())
            .filter_map(|s| s.raft.map(|r| r.purged))
            .max()
            .unwrap_or(0);
        purged > laggard_last
    }) {
        c.fail(&format!(
            "expected a live node to purge its log past node 2's last index {laggard_last} \
             (snapshot every 100 entries, keep 10), largest purged: {purged}"
        ));
    }
    let target = c.applied(leader);
    println!("node 2 last log {laggard_last}; live purged {purged}; leader applied {target}");

    c.start(LAGGARD);
    c.wait_ready(LAGGARD, LEADER_TIMEOUT);
    let mut installed = 0;
    if !wait_until(APPLY_TIMEOUT, || {
        installed = c
            .try_status(LAGGARD)
            .ok()
            .and_then(|s| s.raft.map(|r| r.snapshots_installed))
            .unwrap_or(0);
        installed >= 1
    }) {
        c.fail(&format!(
            "expected node 2 to install a snapshot (its log is purged on the others), \
             snapshots_installed = {installed}"
        ));
    }
    c.wait_applied_at_least(LAGGARD, target);
    let all: Vec<usize> = (0..c.node_count()).collect();
    let (v, digest) = c.converged_digest(&all, target, Duration::from_secs(60));
    println!("snapshots_installed={installed}; converged at version {v}: {digest}");
    check_writes(&c, &[LAGGARD], &prefix, &records, Duration::from_secs(20));
}

/// Large commits while a follower is down (issue 18): ten 9 MB commits are 90 MB of log, more
/// than the 64 MiB a peer message carries. The leader cuts the catch-up into appends of
/// at most 8 MiB of entries (docs/replication.md §6.3), so the follower catches up from the log
/// (no snapshot) instead of being refused message after message.
#[test]
fn a_follower_down_during_ten_9_mb_commits_catches_up_from_the_log() {
    const COMMITS: u32 = 10;
    // 90 values of 100 kB (the value limit): a 9 MB commit (the commit limit is 10 MB).
    const VALUES_PER_COMMIT: u32 = 90;
    const VALUE_BYTES: usize = 100_000;
    let mut c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let laggard = (leader + 1) % 3;
    c.stop(laggard);
    let prefix = unique_prefix("big-commits");
    let mut kv = dolmen_tests::connect_buffered(c.thrift_endpoint(leader));
    for i in 0..COMMITS {
        let value = vec![b'a' + (i % 26) as u8; VALUE_BYTES];
        let ops = (0..VALUES_PER_COMMIT)
            .map(|j| {
                let key = [prefix.as_slice(), &i.to_be_bytes(), &j.to_be_bytes()].concat();
                dolmen_tests::client::op_set(&key, &value)
            })
            .collect();
        let rv = kv.read_version();
        kv.must_commit(rv, ops, vec![]);
    }
    let target = c.applied(leader);
    c.start(laggard);
    c.wait_ready(laggard, LEADER_TIMEOUT);
    c.wait_applied_at_least(laggard, target);
    let installed = c
        .status(laggard)
        .raft
        .map(|r| r.snapshots_installed)
        .unwrap_or(0);
    assert_eq!(installed, 0, "caught up from the log, not a snapshot");
    let all: Vec<usize> = (0..c.node_count()).collect();
    let (v, digest) = c.converged_digest(&all, target, Duration::from_secs(60));
    println!(
        "node {laggard} caught up {COMMITS} commits of {VALUES_PER_COMMIT} x {VALUE_BYTES} bytes \
         from the log; converged at version {v}: {digest}"
    );
}
