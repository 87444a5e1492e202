//! Mutual TLS between peers (issue 18; docs/SECURITY.md §1), through real processes: a cluster
//! whose members hold certificates of one CA forms and replicates; a member configured with a
//! certificate another CA signed can neither vote nor receive the log: the other two elect a
//! leader and commit without it, and it never learns of either.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test peer_tls`.

use std::time::Duration;

use dolmen_tests::replicated::{unique_prefix, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster};

#[test]
fn a_cluster_of_one_ca_replicates_over_mutual_tls() {
    let c = ReplicatedCluster::builder().tls(&[]).start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let prefix = unique_prefix("tls");
    let v = c.write_until_acked(leader, &prefix, b"over TLS");
    let all: Vec<usize> = (0..3).collect();
    let (at, digest) = c.converged_digest(&all, v, Duration::from_secs(30));
    println!("three members over mutual TLS converged at version {at}: {digest}");
    let follower = (leader + 1) % 3;
    let got = connect_buffered(c.thrift_endpoint(follower)).get_value(&prefix);
    assert!(got.found && got.value == b"over TLS", "{got:?}");
}

#[test]
fn a_member_with_a_certificate_of_another_ca_can_neither_vote_nor_replicate() {
    const STRANGER: usize = 2;
    let c = ReplicatedCluster::builder().tls(&[STRANGER]).start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    assert_ne!(leader, STRANGER, "the stranger cannot win an election");
    let prefix = unique_prefix("tls-stranger");
    let v = c.write_until_acked(leader, &prefix, b"without the stranger");
    let members: Vec<usize> = (0..3).filter(|&i| i != STRANGER).collect();
    c.converged_digest(&members, v, Duration::from_secs(30));
    // Several election timeouts later, the stranger still has nothing and knows no leader.
    std::thread::sleep(c.election_timeout() * 4);
    let status = c.status(STRANGER);
    println!(
        "stranger: applied {}, leader {:?}, term {}; the others at version {v}",
        status.applied_version, status.leader, status.term
    );
    assert_eq!(status.leader, None, "no leader reached it");
    assert!(status.applied_version < v, "it received no log entry");
    assert_eq!(
        c.current_leader(),
        Some(leader),
        "its campaigns did not disturb the leader"
    );
}
