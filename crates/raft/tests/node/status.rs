//! What a node reports: its own Raft state from the metrics (`status`) and every member's as
//! it reaches them over the peer transport (`cluster_status`), including a member that is down.

use dolmen_raft::{Health, Role};

use crate::harness::{cluster, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_roles_leader_and_members_on_leader_and_follower() {
    let nodes = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let leader = a.raft.status();
    assert_eq!(leader.node_id, 0);
    assert_eq!(leader.role, Role::Leader);
    assert_eq!(leader.leader, Some(0));
    assert!(leader.term >= 1);
    assert!(leader.running.is_none());
    let ids: Vec<_> = leader.members.iter().map(|m| (m.id, m.voter)).collect();
    assert_eq!(ids, vec![(0, true), (1, true)]);
    let member_1 = &leader.members[1];
    assert_eq!(member_1.peer_addr, b.addr.peer_addr);
    assert_eq!(member_1.client_addr, b.addr.client_addr);
    assert_eq!(
        member_1.health,
        Health::Healthy,
        "the leader hears from node 1"
    );

    eventually("node 1 applied what node 0 committed", || async {
        b.raft.status().applied >= a.raft.status().committed
    })
    .await;
    let follower = b.raft.status();
    assert_eq!(follower.role, Role::Follower);
    assert_eq!(follower.leader, Some(0));
    assert_eq!(follower.term, leader.term);
    assert_eq!(follower.members.len(), 2);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_reaches_every_member_and_reports_a_stopped_one_unreachable() {
    let mut nodes = cluster(3).await;
    let a = &nodes[0];
    let all = a.raft.cluster_status().await;
    assert_eq!(all.leader, Some(0));
    assert_eq!(all.leader_last_log, Some(a.raft.status().last_log));
    let seen: Vec<_> = all
        .nodes
        .iter()
        .map(|n| (n.id, n.role.as_str(), n.health.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, "leader", "healthy"),
            (1, "follower", "healthy"),
            (2, "follower", "healthy")
        ]
    );
    assert_eq!(all.nodes[2].client_addr, nodes[2].addr.client_addr);

    let c = nodes.pop().expect("node 2");
    c.stop().await;
    let a = &nodes[0];
    let all = a.raft.cluster_status().await;
    let down = &all.nodes[2];
    assert_eq!(
        (down.id, down.role.as_str(), down.health.as_str()),
        (2, "unknown", "unreachable")
    );
    assert!(down.term.is_none() && down.last_log.is_none());
    assert!(down.error.is_some(), "{down:?}");
    assert_eq!(all.nodes[1].health, Health::Healthy);
    for node in nodes {
        node.stop().await;
    }
}
