//! The openraft type configuration for Dolmen (docs/replication.md §2): log payload = engine
//! `Command`, node id = `deployment.instance_id`, node = `NodeAddr`. Every openraft type used by
//! the crate is named here, so an openraft upgrade starts in this file.

use crate::NodeId;

openraft::declare_raft_types!(
    /// Dolmen's Raft type configuration.
    pub DolmenRaft:
        D            = dolmen_engine::Command,
        R            = crate::state_machine::EntryReply, // the `client_write` response
        NodeId       = u64,
        Node         = NodeAddr,
        // Set explicitly: the macro's default, `impls::TokioRuntime`, is deprecated in 0.10.
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

/// The one Raft group a node runs today, which holds the data; with sharding it becomes the
/// metadata group (docs/sharding.md §2). The transport already serves any group a node adds
/// (docs/replication.md invariant 16).
pub const GROUP_ID: u64 = 0;

/// A member's addresses; after `initialize` the Raft membership is the address book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddr {
    /// The Thrift client address (for `NOT_LEADER` and diagnostics).
    pub client_addr: String,
    /// The peer gRPC address.
    pub peer_addr: String,
    /// The admin HTTP address; empty when unknown.
    pub admin_addr: String,
}

/// A log id: `(term, node_id, index)`.
pub type LogId = openraft::LogId<openraft::impls::leader_id_adv::LeaderId<u64, NodeId>>;
/// A vote: leader id plus whether it is committed.
pub type Vote = openraft::impls::Vote<openraft::impls::leader_id_adv::LeaderId<u64, NodeId>>;
/// A log entry.
pub type Entry = <DolmenRaft as openraft::RaftTypeConfig>::Entry;
/// A log entry's payload.
pub type EntryPayload = openraft::EntryPayload<dolmen_engine::Command, NodeId, NodeAddr>;
/// A membership (joint configs plus the address book).
pub type Membership = openraft::Membership<NodeId, NodeAddr>;

/// Voter `id` of `membership` with its peer address (empty when the membership names none).
pub(crate) fn voter_with_addr(membership: &Membership, id: NodeId) -> (NodeId, String) {
    let addr = membership
        .get_node(&id)
        .map(|n| n.peer_addr.clone())
        .unwrap_or_default();
    (id, addr)
}

/// A snapshot's bytes: one file in the node's snapshot directory (docs/replication.md §5).
/// Built from a consistent RocksDB snapshot, streamed to followers in chunks, never held whole
/// in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Where the file is.
    pub path: std::path::PathBuf,
}

/// A handle on the Raft core (openraft 0.10: the state machine is a type parameter).
pub type Raft = openraft::Raft<DolmenRaft, crate::state_machine::StateMachine>;

/// A snapshot as openraft, the state machine and the network see it: its metadata plus the file
/// holding the bytes.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<DolmenRaft, SnapshotFile>;
/// A snapshot's metadata: last included log id and the membership as of it.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<DolmenRaft>;
/// A membership with the log id of the entry that carried it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<DolmenRaft>;
