//! What a node reports about Raft: its own state from openraft's metrics ([`RaftStatus`], for
//! `/status`, and for peers over `Probe`), and every member's as this node reaches them
//! ([`ClusterStatus`], for `dolmen cluster status`). The types are the admin API's own, so
//! what the core produces is what clients read, field for field.

use std::time::Duration;

use dolmen_admin::{ClusterStatus, NodeReport, RaftMember, RaftStatus};
use openraft::async_runtime::WatchReceiver;

use super::RaftNode;
use crate::direct::now_unix_ms;
use crate::raft_replicator::{follower_health, last_ack_unix_ms, role_of};
use crate::replicator::{Health, Role};
use crate::snapshot::SnapshotStats;
use crate::types::Raft;
use crate::NodeId;

impl RaftNode {
    /// This node's Raft state, for `/status` and `dolmen cluster status`.
    pub fn status(&self) -> RaftStatus {
        status_of(
            &self.raft,
            (self.options.node_id, &self.options.this.admin_addr),
            &self.snapshots,
            self.options.election_timeout,
        )
    }

    /// Every member's status, asked over the peer transport (`dolmen cluster status`).
    pub async fn cluster_status(&self) -> ClusterStatus {
        let own = self.status();
        let own_ref = &own;
        let probes = own.members.iter().map(|m| async move {
            if m.id == self.options.node_id {
                return reached(own_ref.clone());
            }
            match self
                .shared
                .peers
                .probe(m.id, &m.peer_addr, Duration::from_secs(2))
                .await
            {
                Ok(info) => match serde_json::from_str::<RaftStatus>(&info.status_json) {
                    Ok(status) => reached(status),
                    Err(e) => unreachable(m, format!("unreadable status: {e}")),
                },
                Err(e) => unreachable(m, e.to_string()),
            }
        });
        let nodes = futures::future::join_all(probes).await;
        let leader_last_log = nodes
            .iter()
            .find(|n| n.role == Role::Leader)
            .and_then(|n| n.last_log);
        ClusterStatus {
            leader: own.leader,
            leader_last_log,
            nodes,
        }
    }
}

fn reached(s: RaftStatus) -> NodeReport {
    let (client_addr, admin_addr) = s
        .members
        .iter()
        .find(|m| m.id == s.node_id)
        .map(|m| (m.client_addr.clone(), m.admin_addr.clone()))
        .unwrap_or_default();
    NodeReport {
        id: s.node_id,
        client_addr,
        admin_addr,
        role: s.role,
        term: Some(s.term),
        last_log: Some(s.last_log),
        committed: Some(s.committed),
        applied: Some(s.applied),
        health: if s.running.is_none() {
            Health::Healthy
        } else {
            Health::Unreachable
        },
        error: s.running,
    }
}

fn unreachable(m: &RaftMember, error: String) -> NodeReport {
    NodeReport {
        id: m.id,
        client_addr: m.client_addr.clone(),
        admin_addr: m.admin_addr.clone(),
        role: Role::Unknown,
        term: None,
        last_log: None,
        committed: None,
        applied: None,
        health: Health::Unreachable,
        error: Some(error),
    }
}

/// A node's Raft state from its metrics.
/// `this` is the node's id and its own admin address (the membership may not know it: a new
/// cluster's membership names only the initializing node's).
pub(super) fn status_of(
    raft: &Raft,
    this: (NodeId, &str),
    snapshots: &SnapshotStats,
    election_timeout: Duration,
) -> RaftStatus {
    let (node_id, own_admin) = this;
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let index = |l: &Option<crate::types::LogId>| l.as_ref().map_or(0, |l| l.index);
    let membership = m.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(&id, addr)| RaftMember {
            id,
            client_addr: addr.client_addr.clone(),
            peer_addr: addr.peer_addr.clone(),
            admin_addr: if id == node_id && addr.admin_addr.is_empty() {
                own_admin.to_owned()
            } else {
                addr.admin_addr.clone()
            },
            voter: membership.voter_ids().any(|v| v == id),
            health: follower_health(&m, id, election_timeout).unwrap_or(Health::Unknown),
            matched: m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index),
            last_seen_unix_ms: if id == node_id {
                Some(now_unix_ms())
            } else {
                last_ack_unix_ms(&m, id)
            },
        })
        .collect();
    RaftStatus {
        node_id,
        role: role_of(m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log: m.last_log_index.unwrap_or(0),
        committed: index(&m.local_committed),
        applied: index(&m.last_applied),
        snapshot: index(&m.snapshot),
        purged: index(&m.purged),
        members,
        snapshots_built: snapshots.built(),
        snapshots_installed: snapshots.installed(),
        snapshots_sent: snapshots.sent(),
        running: m.running_state.as_ref().err().map(ToString::to_string),
    }
}
