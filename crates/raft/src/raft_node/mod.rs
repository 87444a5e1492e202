//! One node of a Raft group (docs/replication.md §8): [`RaftNode`] and its options, the handles
//! it gives the service core, and its shutdown; on a sharded node also its [`DataGroup`]s
//! (docs/sharding.md §2), which share its peer server and connections. Its jobs live beside it: `startup` (storage,
//! openraft, the peer server), `bootstrap` (the guarded init), `membership`, `placement` (data
//! groups' leaderships to their preferred nodes), `status`, and the typed refusals in `error`.
//!
//! ```text
//!  Engine ─▶ LogStore + StateMachine ─▶ Raft::build ─▶ (quiet period if initialized) ─▶ run
//!                                                          └─▶ peer gRPC server
//!  bootstrap / `cluster init` ─▶ init_guarded: never when initialized, never when a peer is
//!  add / remove / transfer ─▶ leader only ─▶ change_membership (bounded) ─▶ MembershipOutcome
//! ```

mod bootstrap;
mod error;
mod leadership;
mod membership;
mod placement;
mod startup;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::Version;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

pub use bootstrap::{Formation, InitOutcome};
pub use error::{BootstrapError, CoreStopped, ErrorKind, MembershipError, MembershipStep};
pub use leadership::Leadership;
pub use membership::MembershipOutcome;
pub use placement::PlacementOptions;
pub use startup::RaftNodeError;

use crate::apply_tracker::ReplicationMode;
use crate::log_store::{LogStore, LogWriter};
use crate::network::PeerFaults;
use crate::raft_replicator::{Confirmations, RaftReadGate, RaftReplicator, ReadOptions, Shared};
use crate::snapshot::SnapshotStats;
use crate::types::{NodeAddr, Raft};
use crate::NodeId;

/// Everything a node needs to join its group.
#[derive(Clone, Debug)]
pub struct RaftNodeOptions {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's addresses (the client address is what `NOT_LEADER` points at).
    pub this: NodeAddr,
    /// The configured members (ids and addresses, `[consensus] endpoints`): the members a new
    /// cluster is initialized with, and under `replication_mode = "all"` the nodes every voter
    /// must be one of (a voter outside them refuses the start and the membership change).
    pub initial_members: BTreeMap<NodeId, NodeAddr>,
    /// Where snapshots are kept.
    pub snapshot_dir: PathBuf,
    /// The election timeout: a follower that hears nothing from the leader for between `t`
    /// and `1.2 t` campaigns (`startup::election_window`).
    pub election_timeout: Duration,
    /// The heartbeat interval.
    pub heartbeat_interval: Duration,
    /// How long a write or linearizable read waits for a leader that can take it before it
    /// fails (`UNAVAILABLE`); two election timeouts cover one failover.
    pub leader_wait: Duration,
    /// A snapshot is built after this many applied entries.
    pub snapshot_interval_entries: u64,
    /// Log entries kept behind a snapshot, so briefly lagging followers catch up from the log.
    pub snapshot_keep_entries: u64,
    /// Most entries in one append request.
    pub max_batch_entries: u64,
    /// Most writes waiting for commit at once on this node.
    pub max_outstanding_proposals: usize,
    /// Whether followers pass writes to the leader (otherwise they answer `NOT_LEADER`).
    pub forward_writes: bool,
    /// Read consistency.
    pub reads: ReadOptions,
    /// When a write of group 0 is acknowledged: `[consensus] replication_mode` on an unsharded
    /// node (group 0 holds the data), `metadata_replication_mode` on a sharded one.
    pub replication: ReplicationMode,
    /// When a write of a data group is acknowledged (`[consensus] replication_mode` on a
    /// sharded node; unused on an unsharded one).
    pub data_replication: ReplicationMode,
    /// Identifies the data layout (column families); peers with another one are refused.
    pub fingerprint: String,
    /// Test-only fault rules for every call this node sends to peers (`None` in production).
    pub faults: Option<Arc<dyn PeerFaults>>,
    /// Mutual TLS on the peer port and to every peer; plaintext when `None`.
    pub tls: Option<crate::network::PeerTls>,
    /// Asked before a write forwarded by a follower is proposed here (the disk guard); `None`
    /// admits every write.
    pub admission: Option<Arc<dyn crate::WriteAdmission>>,
    /// A planted bug (`[faults] unsafe_skip_log_fsync`): the log store acknowledges before its
    /// fsync (`LogFsync::UnsafeLazy`). `false` in production.
    pub unsafe_skip_log_fsync: bool,
    /// How far ahead of handed-out versions the oracle persists its bound
    /// (`[consensus] oracle_window_ms`).
    pub oracle_window: Duration,
    /// Milliseconds added to the clock the oracle draws versions from (`[faults]
    /// clock_offset_ms`, tests of clock steps); 0 in production.
    pub clock_offset_ms: i64,
    /// A data group idle this long hibernates (`[sharding] hibernate_after_ms`, docs/sharding.md
    /// §8.3); zero: never. Group 0 never does.
    pub hibernate_after: Duration,
}

/// A running Raft node.
pub struct RaftNode {
    raft: Raft,
    shared: Arc<Shared>,
    options: RaftNodeOptions,
    snapshots: Arc<SnapshotStats>,
    /// A handle on group 0's log store, to land its queued writes at shutdown.
    log: LogStore,
    /// The node's one `raft-log` writer: every group's log store (group 0's and each data
    /// group's) queues into its thread, which writes them in one batch and one fsync.
    log_writer: LogWriter,
    leadership: Arc<leadership::LeadershipStats>,
    peer_addr: std::net::SocketAddr,
    stop_peers: watch::Sender<bool>,
    peer_server: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Versions this node handed out as the oracle to gateways (`Timestamps`): commit versions
    /// plus one per read version.
    oracle_versions: Arc<std::sync::atomic::AtomicU64>,
    /// The groups the peer server answers for.
    router: crate::network::GroupRouter,
    /// Group 0's network factory: every group's is `for_group` of it (one channel per peer).
    network: crate::network::GrpcNetworkFactory,
    /// The data groups of a sharded node, in the order they started.
    data_groups: parking_lot::Mutex<Vec<Arc<DataGroup>>>,
    /// Group 0's oracle as this node reaches it, shared by every data group and the gateway
    /// (one record of what it handed out).
    group_zero_oracle: Arc<crate::shard::GroupZeroOracle>,
    /// The hibernation controller of the data groups and its beat loop, made with the first
    /// data group when `hibernate_after` is not zero.
    hibernation: std::sync::OnceLock<(
        Arc<crate::hibernate::Hibernation>,
        parking_lot::Mutex<Option<crate::hibernate::BeatLoop>>,
    )>,
}

/// One data group of a sharded node (docs/sharding.md §2): its Raft core over its engine
/// handle, served by the node's peer server; commits draw versions from group 0's oracle.
pub struct DataGroup {
    group: crate::log_store::GroupId,
    raft: Raft,
    shared: Arc<Shared>,
    log: LogStore,
    snapshots: Arc<SnapshotStats>,
    oracle: Arc<crate::shard::GroupZeroOracle>,
    election_timeout: Duration,
    /// This node's id and admin address (its status names them).
    this: (NodeId, String),
}

impl DataGroup {
    /// The group's id.
    pub fn id(&self) -> crate::log_store::GroupId {
        self.group
    }

    /// The write path of this group for the service core.
    pub fn replicator(&self) -> RaftReplicator {
        RaftReplicator {
            shared: self.shared.clone(),
        }
    }

    /// The read path of this group for the service core (`cover` carries versions to the
    /// group's leader).
    pub fn read_gate(&self) -> RaftReadGate {
        RaftReadGate {
            shared: self.shared.clone(),
        }
    }

    /// The gateway's read versions: group 0's oracle as this node reaches it.
    pub fn oracle_gate(&self) -> crate::shard::OracleGate {
        crate::shard::OracleGate::new(self.oracle.clone())
    }

    /// The version applied in this group on this node.
    pub fn applied_version(&self) -> Version {
        self.shared.applied.borrow().version
    }

    /// This group's Raft state on this node.
    pub fn status(&self) -> dolmen_admin::RaftStatus {
        status::status_of(
            &self.raft,
            (self.this.0, &self.this.1),
            &self.snapshots,
            self.election_timeout,
        )
    }

    /// Initializes the group with `members` if it is not initialized (every node of a sharded
    /// cluster does so with the same members, which openraft allows: the first log entry is
    /// the same everywhere). Returns whether this call initialized it.
    ///
    /// # Errors
    /// The Raft core stopped, or refused for another reason than being initialized.
    pub async fn initialize_with(
        &self,
        members: BTreeMap<NodeId, NodeAddr>,
    ) -> Result<bool, RaftNodeError> {
        if self.raft.is_initialized().await.map_err(|e| {
            RaftNodeError::Storage(std::io::Error::other(format!("group {}: {e}", self.group)))
        })? {
            return Ok(false);
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(false),
            Err(e) => Err(RaftNodeError::Storage(std::io::Error::other(format!(
                "initializing group {}: {e}",
                self.group
            )))),
        }
    }

    /// Stops the group's Raft core and lands its queued log writes.
    async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = self.group, error = %e, "a data group's Raft core did not stop cleanly");
        }
        if let Err(e) = self.log.flush().await {
            tracing::warn!(group = self.group, error = %e, "a data group's queued log writes were not written");
        }
    }
}

impl RaftNode {
    /// Raft log fsyncs so far, of the node's one `raft-log` writer (each covers every entry,
    /// of every group, appended before it: entries per fsync is the group-commit factor).
    pub fn log_fsyncs(&self) -> u64 {
        self.log_writer.fsync_count()
    }

    /// Versions this node has handed out as the oracle on `Timestamps` (commit versions plus
    /// one per read version), since it started.
    pub fn oracle_versions(&self) -> u64 {
        self.oracle_versions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How this node, as the oracle's leader, confirmed the grants it answered (a ReadIndex
    /// round each, or the leader lease under `consistency_level = "lease"`).
    pub fn oracle_confirmations(&self) -> &Confirmations {
        &self.shared.oracle_confirmations
    }

    /// How this node, as group 0's leader, confirmed the followers' `ReadIndex` requests it
    /// answered (a ReadIndex round each, or the leader lease when the follower reads under
    /// `consistency_level = "lease"`).
    pub fn read_index_confirmations(&self) -> &Confirmations {
        &self.shared.read_index_confirmations
    }

    /// Writes of every group of this node answered `TIMEOUT` because a voter had not applied
    /// them within `all_wait_ms` (`replication_mode = "all"`; always 0 under `quorum`).
    pub fn all_wait_timeouts(&self) -> u64 {
        let data: u64 = self
            .data_groups
            .lock()
            .iter()
            .map(|g| g.shared.ack.tracker().timeouts())
            .sum();
        self.shared.ack.tracker().timeouts() + data
    }

    /// On the leader under `replication_mode = "all"`: each voter's applied index as reported
    /// to it (0 = no report yet), by id. Empty on followers and under `quorum`.
    pub fn voters_applied(&self) -> Vec<(NodeId, u64)> {
        match self.shared.ack.mode() {
            ReplicationMode::All { .. } if self.shared.is_leader() => {
                self.shared.ack.tracker().voters_applied()
            }
            _ => Vec::new(),
        }
    }

    /// Snapshots built, sent and installed by this node.
    pub fn snapshot_stats(&self) -> &SnapshotStats {
        &self.snapshots
    }

    /// Elections, leader changes and leaderless time as this node saw them.
    pub fn leadership(&self) -> Leadership {
        self.leadership.read(std::time::Instant::now())
    }

    /// The write path for the service core.
    pub fn replicator(&self) -> RaftReplicator {
        RaftReplicator {
            shared: self.shared.clone(),
        }
    }

    /// The read path for the service core.
    pub fn read_gate(&self) -> RaftReadGate {
        RaftReadGate {
            shared: self.shared.clone(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.options.node_id
    }

    /// This node's addresses (as given to the membership when it is added).
    pub fn this(&self) -> &NodeAddr {
        &self.options.this
    }

    /// Whether this node is a voter of the current membership.
    pub fn is_voter(&self) -> bool {
        self.membership_of(self.options.node_id)
            .0
            .contains(&self.options.node_id)
    }

    /// The address the peer server listens on.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.peer_addr
    }

    /// Asks the state machine to build a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), CoreStopped> {
        self.raft.trigger().snapshot().await.map_err(CoreStopped)
    }

    /// The version applied on this node.
    pub fn applied_version(&self) -> Version {
        self.shared.applied.borrow().version
    }

    /// Resolves when the Raft core stops on its own (a fatal error), with the reason.
    pub async fn stopped(&self) -> CoreStopped {
        // Server metrics change only with the role, leader or membership; the full metrics
        // change with every append and apply, and waking on each would cost several thread
        // switches per write. A fatal error ends the core, which closes both channels.
        let mut server = self.raft.server_metrics();
        loop {
            if let Err(fatal) = &self.raft.metrics().borrow_watched().running_state {
                return CoreStopped(fatal.clone());
            }
            if server.changed().await.is_err() {
                return CoreStopped(match &self.raft.metrics().borrow_watched().running_state {
                    Err(fatal) => fatal.clone(),
                    Ok(()) => openraft::error::Fatal::Stopped,
                });
            }
        }
    }

    /// The data groups this node runs (none unless sharded), in the order they started.
    pub fn data_groups(&self) -> Vec<Arc<DataGroup>> {
        self.data_groups.lock().clone()
    }

    /// How many data groups have their timers off on this node now (hibernating, docs/sharding.md
    /// §8.3); 0 when hibernation is off.
    pub fn data_groups_asleep(&self) -> usize {
        self.hibernation.get().map_or(0, |(h, _)| h.asleep())
    }

    /// Whether data group `group` has its timers off on this node now (hibernating).
    pub fn is_asleep(&self, group: crate::log_store::GroupId) -> bool {
        self.hibernation
            .get()
            .and_then(|(h, _)| h.phase(group))
            .is_some_and(|phase| phase.is_asleep())
    }

    /// Whether group 0 is initialized on this node (it has a membership).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Stops Raft (every group) and the peer server. Idempotent.
    pub async fn shutdown(&self) {
        let data_groups = self.data_groups();
        if let Some((hibernation, beats)) = self.hibernation.get() {
            let beats = beats.lock().take();
            if let Some(beats) = beats {
                beats.shutdown().await;
            }
            for group in &data_groups {
                hibernation.unregister(group.group);
            }
        }
        for group in &data_groups {
            group.shutdown().await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the Raft core did not stop cleanly");
        }
        // Queued unsynced log writes (committed, truncations, purges) land before the engine
        // closes.
        if let Err(e) = self.log.flush().await {
            tracing::warn!(error = %e, "the Raft log's queued writes were not written");
        }
        let _ = self.stop_peers.send(true);
        let server = self.peer_server.lock().take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}
