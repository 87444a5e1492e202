//! A rolling restart under load loses nothing: while writers run on every node, each node in
//! turn gets SIGTERM, is started again on its data and waited for (`/ready`); afterwards every
//! acknowledged write is present on every node and the replicas' digests agree.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- rolling_restart`.

use std::time::{Duration, Instant};

use dolmen_tests::client::connect_buffered;
use dolmen_tests::replicated::{
    check_writes, summarize, unique_prefix, wait_until, Outcome, WriteKind, WriteLoad,
    WriteLoadConfig, LEADER_TIMEOUT,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

#[test]
fn rolling_restart_under_load_loses_nothing() {
    let mut c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    let n = c.node_count();
    let prefix = unique_prefix("rolling");
    let targets: Vec<_> = (0..n).map(|i| (i, c.thrift_endpoint(i))).collect();
    let rv = connect_buffered(c.thrift_endpoint(0)).read_version();
    let loads = WriteLoad::start_mixed(
        &WriteLoadConfig {
            targets,
            threads: n,
            prefix: prefix.clone(),
            kind: WriteKind::SetKey,
            pause: Duration::from_millis(5),
            max_writes_per_thread: 100_000,
            max_duration: Duration::from_secs(180),
        },
        rv,
    );
    let acked = |loads: &[WriteLoad]| loads.iter().map(WriteLoad::acked).sum::<usize>();

    let mut before = acked(&loads);
    for i in 0..n {
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        c.stop(i);
        c.start(i);
        c.wait_ready(i, LEADER_TIMEOUT);
        println!("node {i} restarted and ready in {:?}", started.elapsed());
        // Writes keep being acknowledged around each restart.
        let wanted = before + 20;
        if !wait_until(Duration::from_secs(30), || acked(&loads) >= wanted) {
            let all: Vec<_> = loads.iter().flat_map(WriteLoad::records).collect();
            c.fail(&format!(
                "expected writes to be acked again after restarting node {i}; {}",
                summarize(&all)
            ));
        }
        before = acked(&loads);
    }
    std::thread::sleep(Duration::from_secs(1));
    let records: Vec<_> = loads.into_iter().flat_map(WriteLoad::finish).collect();
    println!("rolling restart writes: {}", summarize(&records));
    let total_acked = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .count();
    assert!(
        total_acked > 0,
        "expected acked writes during the rolling restart"
    );

    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let v = c.write_until_acked(leader, &[prefix.as_slice(), b"final"].concat(), b"done");
    let all: Vec<usize> = (0..n).collect();
    for &i in &all {
        c.wait_applied_at_least(i, v);
    }
    check_writes(&c, &all, &prefix, &records, Duration::from_secs(20));
    let (at, digest) = c.converged_digest(&all, v, Duration::from_secs(60));
    println!("converged at version {at}: {digest}");
}

/// SIGTERM on the leader hands leadership to another voter before the node stops serving.
/// The election timeout is 10 s, so no election by timeout can happen in the few seconds the
/// old leader takes to exit: when it has exited, the survivors already name a new leader only
/// if it handed leadership over; without the hand-off they would still name the old one.
#[test]
fn sigterm_on_the_leader_hands_leadership_over_before_it_stops() {
    let election_timeout = Duration::from_secs(10);
    let mut c = ReplicatedCluster::builder()
        .set("consensus", "election_timeout_ms", 10_000)
        .set("consensus", "heartbeat_interval_ms", 500)
        .start();
    let old = c.wait_for_leader(LEADER_TIMEOUT);
    // A client connected to the leader keeps its connection open across the stop.
    let mut kv = connect_buffered(c.thrift_endpoint(old));
    kv.must_set(b"handoff-before", b"1");

    let stopping = Instant::now();
    c.stop(old);
    let took = stopping.elapsed();
    assert!(
        took < election_timeout,
        "the old leader took {took:?} to stop, as long as an election timeout: the test cannot \
         tell a hand-off from an election"
    );
    let survivors: Vec<usize> = (0..c.node_count()).filter(|&i| i != old).collect();
    for &i in &survivors {
        let status = c.status(i);
        let leader = status.leader.map(|l| l as usize);
        assert!(
            leader.is_some_and(|l| l != old && survivors.contains(&l)),
            "expected node {i} to name a new leader the moment node {old} had stopped \
             ({took:?} after SIGTERM), it names {leader:?}; log of node {old}:\n{}",
            c.log_tail(old, 20)
        );
    }
    // Writes through a survivor need no election.
    let started = Instant::now();
    c.write_until_acked(survivors[0], b"handoff-after", b"2");
    assert!(
        started.elapsed() < election_timeout,
        "a write after the hand-off took {:?}, an election timeout or more",
        started.elapsed()
    );
}
