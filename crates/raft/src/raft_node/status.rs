//! What a node reports about Raft: its own state from openraft's metrics ([`RaftStatus`], for
//! `/status`, and for peers over `Probe`), and every member's as this node reaches them
//! ([`ClusterStatus`], for `dolmen cluster status`).

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::RaftNode;
use crate::raft_replicator::follower_health;
use crate::replicator::Health;
use crate::snapshot::SnapshotStats;
use crate::types::Raft;
use crate::NodeId;

impl RaftNode {
    /// This node's Raft state, for `/status` and `dolmen cluster status`.
    pub fn status(&self) -> RaftStatus {
        status_of(
            &self.raft,
            self.options.node_id,
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
                return NodeReport::reached(own_ref.clone());
            }
            match self
                .shared
                .peers
                .probe(m.id, &m.peer_addr, Duration::from_secs(2))
                .await
            {
                Ok(info) => match serde_json::from_str::<RaftStatus>(&info.status_json) {
                    Ok(status) => NodeReport::reached(status),
                    Err(e) => NodeReport::unreachable(m, format!("unreadable status: {e}")),
                },
                Err(e) => NodeReport::unreachable(m, e.to_string()),
            }
        });
        let nodes = futures::future::join_all(probes).await;
        let leader_last_log = nodes
            .iter()
            .find(|n| n.role == "leader")
            .and_then(|n| n.last_log);
        ClusterStatus {
            leader: own.leader,
            leader_last_log,
            nodes,
        }
    }
}

/// One member in [`RaftStatus`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Thrift address.
    pub client_addr: String,
    /// Peer address.
    pub peer_addr: String,
    /// Admin address (may be empty).
    pub admin_addr: String,
    /// Voter or learner.
    pub voter: bool,
    /// On the leader: `healthy`, `degraded` or `unreachable` from its acknowledgements and lag;
    /// `unknown` elsewhere.
    pub health: String,
    /// On the leader: the last log index known replicated to this member.
    pub matched: Option<u64>,
}

/// A node's Raft state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This node.
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index.
    pub last_log: u64,
    /// Last committed index known here.
    pub committed: u64,
    /// Last applied index (= version).
    pub applied: u64,
    /// Index of the last snapshot.
    pub snapshot: u64,
    /// Last purged log index.
    pub purged: u64,
    /// The membership.
    pub members: Vec<MemberStatus>,
    /// Snapshots built by this node.
    pub snapshots_built: u64,
    /// Snapshots installed on this node.
    pub snapshots_installed: u64,
    /// Why the Raft core stopped, if it did.
    pub running: Option<String>,
}

/// Every member's status, as one node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The leader's last log index (to compute lag), if the leader answered.
    pub leader_last_log: Option<u64>,
    /// One report per member.
    pub nodes: Vec<NodeReport>,
}

/// One member in [`ClusterStatus`]; the numbers are absent when it did not answer.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    /// Node id.
    pub id: NodeId,
    /// Thrift address.
    pub client_addr: String,
    /// Role, or `unknown`.
    pub role: String,
    /// Term.
    pub term: Option<u64>,
    /// Last log index.
    pub last_log: Option<u64>,
    /// Committed index.
    pub committed: Option<u64>,
    /// Applied index.
    pub applied: Option<u64>,
    /// `healthy` or `unreachable`.
    pub health: &'static str,
    /// Why it is unreachable.
    pub error: Option<String>,
}

impl NodeReport {
    fn reached(s: RaftStatus) -> Self {
        let client_addr = s
            .members
            .iter()
            .find(|m| m.id == s.node_id)
            .map(|m| m.client_addr.clone())
            .unwrap_or_default();
        Self {
            id: s.node_id,
            client_addr,
            role: s.role,
            term: Some(s.term),
            last_log: Some(s.last_log),
            committed: Some(s.committed),
            applied: Some(s.applied),
            health: if s.running.is_none() {
                "healthy"
            } else {
                "unreachable"
            },
            error: s.running,
        }
    }

    fn unreachable(m: &MemberStatus, error: String) -> Self {
        Self {
            id: m.id,
            client_addr: m.client_addr.clone(),
            role: "unknown".into(),
            term: None,
            last_log: None,
            committed: None,
            applied: None,
            health: "unreachable",
            error: Some(error),
        }
    }
}

/// A node's Raft state from its metrics.
pub(super) fn status_of(
    raft: &Raft,
    node_id: NodeId,
    snapshots: &SnapshotStats,
    election_timeout: Duration,
) -> RaftStatus {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let index = |l: &Option<crate::types::LogId>| l.as_ref().map_or(0, |l| l.index);
    let membership = m.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(&id, addr)| MemberStatus {
            id,
            client_addr: addr.client_addr.clone(),
            peer_addr: addr.peer_addr.clone(),
            admin_addr: addr.admin_addr.clone(),
            voter: membership.voter_ids().any(|v| v == id),
            health: follower_health(&m, id, election_timeout)
                .unwrap_or(Health::Unknown)
                .as_wire()
                .to_owned(),
            matched: m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index),
        })
        .collect();
    RaftStatus {
        node_id,
        role: match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        }
        .to_owned(),
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
        running: m.running_state.as_ref().err().map(ToString::to_string),
    }
}
