//! Replication for Dolmen: the seams the service core writes and reads through, and their
//! implementations. Standalone mode plugs in [`Direct`]; replicated mode (openraft) plugs in the
//! Raft replicator behind the same traits, so handlers never branch on the mode.
//!
//! ```text
//!   service ──propose(Command)──▶ dyn Replicator ──▶ Direct: queue ─▶ writer thread ─▶ Engine
//!   service ──read_version()────▶ dyn ReadGate   ──▶ Direct: the applied version
//! ```

mod apply_report;
pub mod apply_tracker;
mod coalesce;
mod codec;
mod direct;
pub mod hibernate;
pub mod log_store;
pub mod network;
pub mod oracle;
mod raft_node;
mod raft_replicator;
mod replicator;
mod seed;
mod sequencer;
pub mod shard;
pub use sequencer::DEFAULT_ORACLE_WINDOW;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use apply_tracker::{ApplyTracker, ReplicationMode, WriteAck};
pub use direct::{Direct, DirectOptions};
pub use log_store::{LogFsync, LogStore, LogWriter};
pub use raft_node::{
    BootstrapError, CoreStopped, DataGroup, ErrorKind, Formation, InitOutcome, Leadership,
    MembershipError, MembershipOutcome, MembershipStep, PlacementOptions, RaftNode, RaftNodeError,
    RaftNodeOptions,
};
pub use raft_replicator::{
    Confirmations, RaftReadGate, RaftReplicator, ReadConsistency, ReadOptions,
};
pub use replicator::{
    Applied, BoxFuture, ClusterView, Health, MemberView, NodeId, ProposeError, ReadError, ReadGate,
    Replicator, Role, WriteAdmission,
};
pub use seed::{seed_cluster, SeedError};
pub use snapshot::{SnapshotDir, SnapshotReader, SnapshotStats};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use types::NodeAddr;
