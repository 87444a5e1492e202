//! Why an operator's request on a Raft node was refused: [`MembershipError`] for add, remove
//! and transfer, [`BootstrapError`] for the guarded initialization, [`CoreStopped`] for the
//! rest. Each has a [`ErrorKind`] so the admin API and the CLI act on it without reading text.

use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, InitializeError, RaftError};

use crate::log_store::GroupId;
use crate::types::DolmenRaft;
use crate::NodeId;

/// What a caller can do about a refusal: the admin API maps it to an HTTP status, the CLI to
/// an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Ask the leader instead (HTTP 409; the error names the leader when one is known).
    NotLeader,
    /// The cluster is not in a state that allows the request; change it first (HTTP 409).
    Conflict,
    /// The request itself is wrong (an id that is not a voter; HTTP 400).
    BadRequest,
    /// Not now: the node is stopping or a majority is unreachable; retry later (HTTP 503).
    Unavailable,
    /// A failure inside the node (HTTP 500).
    Internal,
}

/// The Raft core has stopped (a fatal error, or a shutdown); nothing more can be asked of it.
#[derive(Debug, thiserror::Error)]
#[error("the Raft core stopped: {0}")]
pub struct CoreStopped(#[from] pub Fatal<DolmenRaft>);

impl CoreStopped {
    /// Always [`ErrorKind::Unavailable`]: another node may serve the request.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }
}

/// A membership change step, named in errors ("promoting node 4 to voter: ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// Adding a node as a learner (it starts receiving the log).
    AddLearner(NodeId),
    /// Promoting a caught-up learner to voter.
    Promote(NodeId),
    /// Removing a voter.
    RemoveVoter(NodeId),
    /// Removing a learner.
    RemoveLearner(NodeId),
}

impl std::fmt::Display for MembershipStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AddLearner(id) => write!(f, "adding node {id} as a learner"),
            Self::Promote(id) => write!(f, "promoting node {id} to voter"),
            Self::RemoveVoter(id) => write!(f, "removing node {id}"),
            Self::RemoveLearner(id) => write!(f, "removing learner {id}"),
        }
    }
}

/// Why `add_node`, `remove_node` or `transfer_leader` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// This node is not the leader of the group; only the leader changes the membership or
    /// hands the leadership over.
    #[error(
        "node {node} is not the leader{}: {}; send membership changes to the leader's admin \
         address",
        of_group(*.group),
        leader_hint(.leader)
    )]
    NotLeader {
        /// The node that refused.
        node: NodeId,
        /// The group asked about (0: the metadata group, the only one of an unsharded node).
        group: GroupId,
        /// The leader of the group this node knows of, with its client address.
        leader: Option<(NodeId, String)>,
    },
    /// The node is already a voter at another peer address.
    #[error(
        "node {id} is already a voter at peer address {current}; remove it first to move it to \
         {requested}"
    )]
    VoterElsewhere {
        /// The node.
        id: NodeId,
        /// Its peer address in the membership.
        current: String,
        /// The peer address asked for.
        requested: String,
    },
    /// A sharded node's data groups keep the members the cluster was formed with: adding or
    /// removing a node is not built for them yet.
    #[error(
        "this cluster is sharded ({groups} data groups): adding or removing nodes is not built          for sharded clusters yet (each data group keeps the members the cluster was formed          with); transfer-leader works"
    )]
    Sharded {
        /// How many data groups this node runs.
        groups: usize,
    },
    /// Removing the only voter would leave a cluster that can decide nothing.
    #[error("node {0} is the last voter; a cluster needs one")]
    LastVoter(NodeId),
    /// Removing the node would leave fewer reachable voters than a majority of those remaining.
    #[error(
        "removing node {id} would leave {remaining} voters of which only {reachable} are \
         reachable: no majority. Bring members back first"
    )]
    NoMajority {
        /// The node to remove.
        id: NodeId,
        /// Voters left after the removal.
        remaining: usize,
        /// How many of them the leader hears from.
        reachable: usize,
    },
    /// The transfer target is a learner of the group, not a voter.
    #[error(
        "node {id} is not a voter{} (its voters are {}); only a voter can lead",
        of_group(*.group),
        ids(.voters)
    )]
    NotVoter {
        /// The target.
        id: NodeId,
        /// The group.
        group: GroupId,
        /// The group's voters.
        voters: Vec<NodeId>,
    },
    /// The transfer target is not a member of the group at all.
    #[error(
        "node {id} is not a voter{} (its voters are {}); only a voter can lead",
        of_group(*.group),
        ids(.voters)
    )]
    UnknownNode {
        /// The target.
        id: NodeId,
        /// The group.
        group: GroupId,
        /// The group's voters.
        voters: Vec<NodeId>,
    },
    /// A transfer names a group this node does not run.
    #[error(
        "there is no group {group}: this node runs group{} {}",
        if .groups.len() == 1 { "" } else { "s" },
        ids(.groups)
    )]
    UnknownGroup {
        /// The group asked for.
        group: GroupId,
        /// The groups this node runs: 0 (the metadata group), then its data groups.
        groups: Vec<GroupId>,
    },
    /// The target did not become leader in time.
    #[error(
        "node {to} did not take over{} within {limit:?} ({}); is it reachable and caught up?",
        data_group(*.group),
        leads(.leader)
    )]
    TransferTimedOut {
        /// The group.
        group: GroupId,
        /// The target.
        to: NodeId,
        /// How long it was given.
        limit: Duration,
        /// Who leads now, if anyone is known.
        leader: Option<NodeId>,
    },
    /// A proposed change did not commit in time; it may still complete.
    #[error(
        "{step}: not committed within {limit:?} (is a majority of the new membership \
         reachable?); it may still complete"
    )]
    NotCommitted {
        /// The step that was proposed.
        step: MembershipStep,
        /// How long it was given.
        limit: Duration,
    },
    /// openraft refused or failed the step.
    #[error("{step}: {source}")]
    Raft {
        /// The step that failed.
        step: MembershipStep,
        /// openraft's reason.
        source: RaftError<DolmenRaft, ClientWriteError<DolmenRaft>>,
    },
    /// This node is shutting down.
    #[error("this node is shutting down")]
    ShuttingDown,
    /// Under `replication_mode = "all"` every voter must be a configured node: this one is not.
    #[error(
        "replication_mode = \"all\": node {id} is not a configured node of group {group} \
         (consensus.endpoints has entries for nodes {}), so it could never be counted on to \
         apply every write; add its entry to consensus.endpoints on every member (and restart \
         them) first",
        ids(.configured)
    )]
    UnconfiguredVoter {
        /// The group (0).
        group: u64,
        /// The node that was to become a voter.
        id: NodeId,
        /// The configured nodes.
        configured: Vec<NodeId>,
    },
    /// This node runs standalone: there is no membership to change.
    #[error(
        "this node runs [deployment] mode = \"standalone\": there is no cluster to operate on"
    )]
    Standalone,
    /// The Raft core stopped.
    #[error(transparent)]
    CoreStopped(#[from] CoreStopped),
}

/// Node ids as "0, 1, 2" ("none" when empty).
pub(crate) fn ids(ids: &[NodeId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .map(NodeId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "" for group 0 (the metadata group, the only one of an unsharded node), " of data group G"
/// for a data group.
fn of_group(group: GroupId) -> String {
    if group == crate::types::GROUP_ID {
        String::new()
    } else {
        format!(" of data group {group}")
    }
}

/// "" for group 0, " data group G" for a data group.
fn data_group(group: GroupId) -> String {
    if group == crate::types::GROUP_ID {
        String::new()
    } else {
        format!(" data group {group}")
    }
}

/// "node N leads" or "no leader is known".
fn leads(leader: &Option<NodeId>) -> String {
    match leader {
        Some(id) => format!("node {id} leads"),
        None => "no leader is known".to_owned(),
    }
}

/// "the leader is node N (client H:P)" or "no leader is known".
fn leader_hint(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, client_addr)) => format!("the leader is node {id} (client {client_addr})"),
        None => "no leader is known".to_owned(),
    }
}

impl MembershipError {
    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotLeader { .. } => ErrorKind::NotLeader,
            Self::VoterElsewhere { .. }
            | Self::LastVoter(_)
            | Self::NoMajority { .. }
            | Self::UnconfiguredVoter { .. } => ErrorKind::Conflict,
            Self::Standalone | Self::Sharded { .. } => ErrorKind::Conflict,
            Self::NotVoter { .. } | Self::UnknownNode { .. } | Self::UnknownGroup { .. } => {
                ErrorKind::BadRequest
            }
            Self::TransferTimedOut { .. } | Self::NotCommitted { .. } | Self::ShuttingDown => {
                ErrorKind::Unavailable
            }
            Self::CoreStopped(e) => e.kind(),
            Self::Raft { source, .. } => match source {
                RaftError::Fatal(_) => ErrorKind::Unavailable,
                RaftError::APIError(
                    ClientWriteError::ForwardToLeader(_) | ClientWriteError::LogEntryDiscarded(_),
                ) => ErrorKind::NotLeader,
                RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_)
                    | ChangeMembershipError::UncommittedLeaderLog(_),
                )) => ErrorKind::Unavailable,
                RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
                    ErrorKind::Conflict
                }
                RaftError::APIError(ClientWriteError::PreconditionFailed(_)) => ErrorKind::Conflict,
            },
        }
    }

    /// The leader to ask instead, when this node knows one (for [`ErrorKind::NotLeader`]):
    /// its id and client address.
    pub fn leader(&self) -> Option<(NodeId, &str)> {
        match self {
            Self::NotLeader {
                leader: Some((id, addr)),
                ..
            } => Some((*id, addr)),
            _ => None,
        }
    }
}

/// Why `init_guarded` could not initialize the cluster.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A peer was configured with other column families; initializing would split the data.
    #[error(
        "node {id} at {peer_addr} has a different data layout ({theirs}); this node has \
         {ours}. Every member must configure the same [database] column_families and \
         [consensus] replication_mode"
    )]
    LayoutMismatch {
        /// The peer.
        id: NodeId,
        /// Its peer address.
        peer_addr: String,
        /// Its fingerprint.
        theirs: String,
        /// This node's fingerprint.
        ours: String,
    },
    /// openraft refused the initialization.
    #[error("cannot initialize the cluster: {0}")]
    Initialize(RaftError<DolmenRaft, InitializeError<DolmenRaft>>),
    /// The Raft core stopped.
    #[error(transparent)]
    CoreStopped(#[from] CoreStopped),
}

impl BootstrapError {
    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::LayoutMismatch { .. } => ErrorKind::Conflict,
            Self::Initialize(RaftError::Fatal(_)) => ErrorKind::Unavailable,
            // Not in its own initial members: a configuration error of this node.
            Self::Initialize(RaftError::APIError(_)) => ErrorKind::Internal,
            Self::CoreStopped(e) => e.kind(),
        }
    }
}
