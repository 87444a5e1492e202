//! Replication on a 3-node cluster: a write acknowledged through any node is immediately
//! readable (`get`, and `snapshotRead` at a fresh `getReadVersion`) from every node, one writer
//! at a time and with concurrent writers on every node.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- replication`.

use std::time::Duration;

use dolmen_tests::client::{connect_buffered, connect_framed, op_set};
use dolmen_tests::raw::show;
use dolmen_tests::replicated::{
    check_writes, summarize, unique_prefix, Outcome, WriteKind, WriteLoad, WriteLoadConfig,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

/// Asserts that node `j` serves `key = value` to `get` and to `snapshotRead` at a read version
/// taken on node `j` after the write was acknowledged.
#[track_caller]
fn assert_readable_on(c: &ReplicatedCluster, j: usize, key: &[u8], value: &[u8], what: &str) {
    let mut kv = connect_framed(c.thrift_endpoint(j));
    let r = kv.get_value(key);
    if !(r.found && r.value == value && r.error.is_none()) {
        c.fail(&format!(
            "expected get({}) on node {j} right after {what} to return {}, got found={} \
             value={} error={:?}",
            show(key),
            show(value),
            r.found,
            show(&r.value),
            r.error
        ));
    }
    let rv = kv.read_version();
    let r = kv.snapshot_read_in(key, rv, None);
    if !(r.found && r.value == value && r.error.is_none()) {
        c.fail(&format!(
            "expected snapshotRead({}, {rv}) on node {j} right after {what} to return {}, got \
             {r:?}",
            show(key),
            show(value)
        ));
    }
}

/// For every pair (i, j): a `setKey` and an `atomicCommit` acknowledged by node i are read
/// back from node j at once, with no wait in between.
#[test]
fn ack_on_any_node_is_readable_on_every_node() {
    let c = ReplicatedCluster::builder().start();
    let ns = unique_prefix("ack-everywhere");
    let n = c.node_count();
    for i in 0..n {
        let mut writer = connect_buffered(c.thrift_endpoint(i));
        for round in 0..3 {
            let k = [ns.as_slice(), format!("set/{i}/{round}").as_bytes()].concat();
            let v = format!("set via {i} round {round}").into_bytes();
            writer.must_set(&k, &v);
            for j in 0..n {
                assert_readable_on(&c, j, &k, &v, &format!("setKey acked by node {i}"));
            }

            let k = [ns.as_slice(), format!("commit/{i}/{round}").as_bytes()].concat();
            let v = format!("commit via {i} round {round}").into_bytes();
            let rv = writer.read_version();
            let cv = writer.must_commit(rv, vec![op_set(&k, &v)], vec![]);
            for j in 0..n {
                assert_readable_on(
                    &c,
                    j,
                    &k,
                    &v,
                    &format!("atomicCommit acked by node {i} at version {cv}"),
                );
                let mut kv = connect_buffered(c.thrift_endpoint(j));
                let later = kv.read_version();
                assert!(
                    later >= cv,
                    "expected getReadVersion on node {j} ({later}) >= the version {cv} acked by \
                     node {i}"
                );
            }
        }
    }
}

/// Two setKey writers and two atomicCommit writers per node at once; afterwards
/// every acknowledged write is readable on every node, and the replicas' digests agree.
#[test]
fn concurrent_writers_on_every_node() {
    let c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    let prefix = unique_prefix("concurrent");
    let targets: Vec<_> = (0..c.node_count())
        .map(|i| (i, c.thrift_endpoint(i)))
        .collect();
    let rv = connect_buffered(c.thrift_endpoint(0)).read_version();
    let loads = WriteLoad::start_mixed(
        &WriteLoadConfig {
            targets,
            threads: 6,
            prefix: prefix.clone(),
            kind: WriteKind::SetKey,
            pause: Duration::ZERO,
            max_writes_per_thread: 100,
            max_duration: Duration::from_secs(60),
        },
        rv,
    );
    let records: Vec<_> = loads.into_iter().flat_map(WriteLoad::complete).collect();
    println!("concurrent writers: {}", summarize(&records));
    let not_acked: Vec<_> = records
        .iter()
        .filter(|r| r.outcome != Outcome::Acked)
        .take(5)
        .collect();
    if !not_acked.is_empty() {
        c.fail(&format!(
            "expected every write to a healthy cluster to be acked; {}; first failures: \
             {not_acked:?}",
            summarize(&records)
        ));
    }
    let all: Vec<usize> = (0..c.node_count()).collect();
    check_writes(&c, &all, &prefix, &records, Duration::from_secs(10));
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let (v, digest) = c.converged_digest(&all, c.applied(leader), Duration::from_secs(30));
    println!("digest at version {v}: {digest}");
}

/// A follower under lease reads asks the leader for a read index confirmed by the leader's
/// lease (no heartbeat round while a quorum acknowledged within the lease); under
/// linearizable reads by a ReadIndex round. Either way every read through a follower, right
/// after a write acknowledged through the other follower, sees it.
#[test]
fn followers_read_indexes_are_confirmed_by_the_lease_only_under_lease_reads() {
    const ROUNDS: u64 = 20;
    for lease in [true, false] {
        let mut builder = ReplicatedCluster::builder();
        if lease {
            builder = builder.set("reads", "consistency_level", "lease");
        }
        let c = builder.start();
        c.wait_for_leader(dolmen_tests::replicated::LEADER_TIMEOUT);
        let followers = c.followers();
        let (writer, reader) = (followers[0], followers[1]);
        let ns = unique_prefix("follower-lease");
        let mut w = connect_buffered(c.thrift_endpoint(writer));
        // Each round takes two read indexes through the reader (get, getReadVersion; the
        // snapshotRead at that version needs none); the forwarded write takes none.
        c.assert_confirmed_by(
            "dolmen_read_index_confirmations_total",
            lease,
            2,
            "write-then-read rounds",
            || {
                for round in 0..ROUNDS {
                    let k = [ns.as_slice(), format!("k{round}").as_bytes()].concat();
                    let v = format!("v{round} lease={lease}").into_bytes();
                    w.must_set(&k, &v);
                    let what = format!("setKey acked by node {writer}");
                    assert_readable_on(&c, reader, &k, &v, &what);
                }
                ROUNDS
            },
        );
    }
}
