//! The node's own state as `dolmen_admin` wire types: the Raft node's status and cluster
//! status, and the service's cluster view. Each field is named once, so a field added on one
//! side and not the other does not compile.

use dolmen_admin::{ClusterStatus, Health, MemberView, NodeReport, RaftMember, RaftStatus, Role};

/// A role as the wire says it.
pub fn role(role: dolmen_raft::Role) -> Role {
    match role {
        dolmen_raft::Role::Leader => Role::Leader,
        dolmen_raft::Role::Follower => Role::Follower,
        dolmen_raft::Role::Candidate => Role::Candidate,
        dolmen_raft::Role::Learner => Role::Learner,
        dolmen_raft::Role::Unknown => Role::Unknown,
    }
}

/// A role named by the Raft node's status (`leader`, ..., `shutdown`).
fn role_named(name: &str) -> Role {
    match name {
        "leader" => Role::Leader,
        "follower" => Role::Follower,
        "candidate" => Role::Candidate,
        "learner" => Role::Learner,
        "shutdown" => Role::Shutdown,
        _ => Role::Unknown,
    }
}

/// A health as the wire says it.
pub fn health(health: dolmen_raft::Health) -> Health {
    match health {
        dolmen_raft::Health::Healthy => Health::Healthy,
        dolmen_raft::Health::Degraded => Health::Degraded,
        dolmen_raft::Health::Unreachable => Health::Unreachable,
        dolmen_raft::Health::Unknown => Health::Unknown,
    }
}

/// One member of the service's cluster view.
pub fn member_view(m: &dolmen_raft::MemberView) -> MemberView {
    MemberView {
        id: m.id,
        client_addr: m.client_addr.clone(),
        role: role(m.role),
        health: health(m.health),
        last_seen_unix_ms: m.last_seen_unix_ms,
    }
}

/// The Raft section of `/status`.
pub fn raft_status(s: dolmen_raft::RaftStatus) -> RaftStatus {
    RaftStatus {
        node_id: s.node_id,
        role: role_named(&s.role),
        term: s.term,
        leader: s.leader,
        last_log: s.last_log,
        committed: s.committed,
        applied: s.applied,
        snapshot: s.snapshot,
        purged: s.purged,
        members: s
            .members
            .into_iter()
            .map(|m| RaftMember {
                id: m.id,
                client_addr: m.client_addr,
                peer_addr: m.peer_addr,
                admin_addr: m.admin_addr,
                voter: m.voter,
                health: health(dolmen_raft::Health::from_wire(&m.health)),
                matched: m.matched,
            })
            .collect(),
        snapshots_built: s.snapshots_built,
        snapshots_installed: s.snapshots_installed,
        running: s.running,
    }
}

/// `/cluster/status`.
pub fn cluster_status(s: dolmen_raft::ClusterStatus) -> ClusterStatus {
    ClusterStatus {
        leader: s.leader,
        leader_last_log: s.leader_last_log,
        nodes: s
            .nodes
            .into_iter()
            .map(|n| NodeReport {
                id: n.id,
                client_addr: n.client_addr,
                role: role_named(&n.role),
                term: n.term,
                last_log: n.last_log,
                committed: n.committed,
                applied: n.applied,
                health: health(dolmen_raft::Health::from_wire(n.health)),
                error: n.error,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_and_health_name_reads_back_as_itself() {
        for name in ["leader", "follower", "candidate", "learner", "shutdown"] {
            assert_eq!(role_named(name).as_str(), name);
        }
        for name in ["healthy", "degraded", "unreachable", "unknown"] {
            assert_eq!(health(dolmen_raft::Health::from_wire(name)).as_str(), name);
        }
    }
}
