//! Membership refusals a caller acts on by kind, never by text: not the leader (naming it), a
//! voter moved without removal, the last voter, a removal that leaves no reachable majority, a
//! transfer to a non-member; and the idempotent answers.

use dolmen_raft::{ErrorKind, MembershipError, MembershipOutcome, NodeAddr};

use crate::harness::{cluster, eventually, leader_alone, start, Spec, ELECTION_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_membership_changes_naming_the_leader() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let err = b
        .raft
        .remove_node(0)
        .await
        .expect_err("node 1 is a follower");
    assert_eq!(err.kind(), ErrorKind::NotLeader);
    assert_eq!(err.leader(), Some((0, a.addr.client_addr.as_str())));
    assert_eq!(
        err.to_string(),
        format!(
            "node 1 is not the leader: the leader is node 0 (client {}); send membership \
             changes to the leader's admin address",
            a.addr.client_addr
        )
    );
    let err = b
        .raft
        .add_node(5, b.addr.clone())
        .await
        .expect_err("node 1 is a follower");
    assert!(
        matches!(err, MembershipError::NotLeader { node: 1, .. }),
        "{err:?}"
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_voter_again_is_unchanged_and_moving_it_is_refused() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    assert!(b.raft.is_voter(), "node 1 was promoted");
    assert_eq!(
        a.raft
            .add_node(1, b.addr.clone())
            .await
            .expect("same address"),
        MembershipOutcome::Unchanged
    );
    let moved = NodeAddr {
        peer_addr: "127.0.0.1:1".into(),
        ..b.addr.clone()
    };
    let err = a
        .raft
        .add_node(1, moved)
        .await
        .expect_err("node 1 is a voter elsewhere");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "node 1 is already a voter at peer address {}; remove it first to move it to \
             127.0.0.1:1",
            b.addr.peer_addr
        )
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_voter_is_never_removed_and_removing_a_stranger_is_unchanged() {
    let a = leader_alone().await;
    let err = a.raft.remove_node(0).await.expect_err("the last voter");
    assert!(matches!(err, MembershipError::LastVoter(0)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "node 0 is the last voter; a cluster needs one"
    );
    assert_eq!(
        a.raft.remove_node(7).await.expect("not a member"),
        MembershipOutcome::Unchanged
    );
    assert_eq!(a.raft.status().members.len(), 1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_leaves_no_reachable_majority_is_refused() {
    let mut nodes = cluster(3).await;
    let c = nodes.pop().expect("node 2");
    c.stop().await;
    let a = &nodes[0];
    // Once the leader stops hearing from node 2, removing node 1 would leave {0, 2}: one
    // reachable voter of two.
    tokio::time::sleep(ELECTION_TIMEOUT * 2).await;
    let err = a.raft.remove_node(1).await.expect_err("no majority");
    assert!(
        matches!(
            err,
            MembershipError::NoMajority {
                id: 1,
                remaining: 2,
                reachable: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "removing node 1 would leave 2 voters of which only 1 are reachable: no majority. \
         Bring members back first"
    );
    assert_eq!(a.raft.status().members.len(), 3, "nothing was removed");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_goes_only_to_a_voter_and_a_transfer_to_the_leader_is_unchanged() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let err = a.raft.transfer_leader(9).await.expect_err("not a member");
    assert!(
        matches!(
            err,
            MembershipError::UnknownNode {
                id: 9,
                group: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(
        err.to_string(),
        "node 9 is not a voter (its voters are 0, 1); only a voter can lead"
    );
    let err = a
        .raft
        .transfer_group_leader(3, 1)
        .await
        .expect_err("an unsharded node runs group 0 only");
    assert!(
        matches!(err, MembershipError::UnknownGroup { group: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(
        err.to_string(),
        "there is no group 3: this node runs group 0"
    );
    assert_eq!(
        b.raft.transfer_leader(0).await.expect("node 0 leads"),
        MembershipOutcome::Unchanged
    );
    assert_eq!(
        a.raft.transfer_leader(1).await.expect("node 1 takes over"),
        MembershipOutcome::Changed
    );
    eventually("node 1 leads", || async { b.role() == "leader" }).await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_core_is_unavailable_and_standalone_is_a_conflict() {
    assert_eq!(MembershipError::Standalone.kind(), ErrorKind::Conflict);
    assert_eq!(MembershipError::ShuttingDown.kind(), ErrorKind::Unavailable);
    let a = start(Spec::new(0, &[])).await;
    a.raft.shutdown().await;
    let err = a
        .raft
        .trigger_snapshot()
        .await
        .expect_err("the core stopped");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().starts_with("the Raft core stopped: "),
        "{err}"
    );
}
