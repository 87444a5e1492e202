//! One node of a Raft group (docs/replication.md §8): storage, openraft, the peer server, the
//! quiet period after a restart, the guarded bootstrap, and the status the admin API reports.
//!
//! ```text
//!  Engine ─▶ LogStore + StateMachine ─▶ Raft::build ─▶ (quiet period if initialized) ─▶ run
//!                                                          └─▶ peer gRPC server
//!  bootstrap / `cluster init` ─▶ init_guarded: never when initialized, never when a peer is
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::{Engine, Version};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::storage::RaftLogStorage;
use openraft::{ChangeMembers, RaftLogReader, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::log_store::LogStore;
use crate::network::{self, GrpcNetworkFactory, NetworkOptions, PeerFaults, RaftPeerHandler};
use crate::raft_replicator::{
    follower_health, read_batchers, LeaderContact, RaftReadGate, RaftReplicator, ReadOptions,
    Shared,
};
use crate::replicator::Health;
use crate::snapshot::SnapshotStats;
use crate::state_machine::StateMachine;
use crate::types::{NodeAddr, Raft};
use crate::NodeId;

/// Everything a node needs to join its group.
#[derive(Clone, Debug)]
pub struct RaftNodeOptions {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's addresses (the client address is what `NOT_LEADER` points at).
    pub this: NodeAddr,
    /// The initial members (ids and addresses), used only to initialize a new cluster.
    pub initial_members: BTreeMap<NodeId, NodeAddr>,
    /// Where snapshots are kept.
    pub snapshot_dir: PathBuf,
    /// The election timeout; elections start after a random time in `[t, 2t)`.
    pub election_timeout: Duration,
    /// The heartbeat interval.
    pub heartbeat_interval: Duration,
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
    /// Identifies the data layout (column families); peers with another one are refused.
    pub fingerprint: String,
    /// Test-only fault rules for every call this node sends to peers (`None` in production).
    pub faults: Option<Arc<dyn PeerFaults>>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    /// A storage failure while opening.
    #[error("opening the Raft storage: {0}")]
    Storage(#[from] std::io::Error),
    /// openraft refused the configuration.
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    /// openraft failed to start.
    #[error("the Raft core failed to start: {0}")]
    Start(String),
}

/// What `init_guarded` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitOutcome {
    /// This call initialized the cluster.
    Initialized,
    /// The cluster was already initialized (here or on a peer); nothing was done.
    AlreadyInitialized,
}

/// A running Raft node.
pub struct RaftNode {
    raft: Raft,
    shared: Arc<Shared>,
    options: RaftNodeOptions,
    snapshots: Arc<SnapshotStats>,
    /// A handle on the log store, for its fsync counter.
    log: LogStore,
    peer_addr: std::net::SocketAddr,
    stop_peers: watch::Sender<bool>,
    peer_server: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RaftNode {
    /// Opens the node's Raft storage over `engine`, builds and runs openraft, and serves the
    /// peer protocol on `peer_listener`. Returns once the node takes part in the group (after
    /// the quiet period of a restarted node).
    pub async fn start(
        engine: Arc<Engine>,
        options: RaftNodeOptions,
        peer_listener: TcpListener,
    ) -> Result<Self, RaftNodeError> {
        let election_ms = duration_ms(options.election_timeout);
        let config = openraft::Config {
            cluster_name: "dolmen".into(),
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            heartbeat_interval: duration_ms(options.heartbeat_interval),
            // The snapshot call's hard deadline: generous, the stream itself is bounded.
            install_snapshot_timeout: 60_000,
            max_payload_entries: options.max_batch_entries.max(1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_interval_entries),
            max_in_snapshot_log_to_keep: options.snapshot_keep_entries,
            enable_pre_vote: Some(true),
            // Our state machine does not fsync on apply: never trust it as a leader's restore.
            enable_leader_restore: Some(false),
            allow_log_reversion: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftNodeError::Config(e.to_string()))?;

        let mut log_store = LogStore::new(&engine)?;
        // Asked of storage: the Raft core cannot answer before `run`.
        let initialized = log_store.get_log_state().await?.last_log_id.is_some()
            || log_store.read_vote().await?.is_some();
        let log = log_store.clone();
        let (applied_tx, applied_rx) = watch::channel(engine.applied_version());
        // Opening may redo an interrupted snapshot install: blocking work.
        let (sm_engine, sm_dir) = (engine.clone(), options.snapshot_dir.clone());
        let state_machine =
            tokio::task::spawn_blocking(move || StateMachine::open(sm_engine, sm_dir, applied_tx))
                .await
                .map_err(|e| RaftNodeError::Start(format!("opening the state machine: {e}")))??;
        let snapshots = state_machine.stats();
        let incoming = state_machine.snapshot_dir();
        let mut network = GrpcNetworkFactory::new(options.node_id, NetworkOptions::default());
        if let Some(faults) = &options.faults {
            network = network.with_faults(faults.clone());
        }
        let peers = network.peer_client();
        let raft = Raft::build(
            options.node_id,
            Arc::new(config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| RaftNodeError::Start(e.to_string()))?;

        // Invariant 14: a restarted member may have granted a lease it no longer remembers;
        // it stays silent for one maximum election timeout before it may campaign or vote.
        if initialized {
            tokio::time::sleep(options.election_timeout * 2).await;
        }
        raft.run();

        let contact = Arc::new(LeaderContact::default());
        let shared_contact = contact.clone();
        let shared = Arc::new_cyclic(|weak| {
            let (local_reads, remote_reads) = read_batchers(weak);
            Shared {
                raft: raft.clone(),
                node_id: options.node_id,
                peers,
                forward_writes: options.forward_writes,
                outstanding: Semaphore::new(options.max_outstanding_proposals.max(1)),
                max_outstanding: options.max_outstanding_proposals.max(1),
                applied: applied_rx,
                reads: options.reads,
                contact: shared_contact,
                rpc_timeout: Duration::from_secs(10),
                election_timeout: options.election_timeout,
                leader_view: parking_lot::Mutex::new(None),
                local_reads,
                remote_reads,
            }
        });

        let peer_addr = peer_listener.local_addr()?;
        let status_raft = raft.clone();
        let status_stats = snapshots.clone();
        let node_id = options.node_id;
        let election_timeout = options.election_timeout;
        let handler = Arc::new(
            RaftPeerHandler::new(raft.clone(), node_id, options.fingerprint.clone())
                .on_leader_append(Arc::new(move || contact.touch()))
                .with_read_index({
                    let shared = shared.clone();
                    Arc::new(move |timeout| {
                        let shared = shared.clone();
                        Box::pin(async move { shared.local_reads.read_index(timeout).await })
                    })
                })
                .with_status(Arc::new(move || {
                    let status = status_of(&status_raft, node_id, &status_stats, election_timeout);
                    serde_json::to_string(&status).unwrap_or_default()
                })),
        );
        let (stop_peers, mut stop_rx) = watch::channel(false);
        let incoming = Arc::new(move || incoming.incoming());
        let peer_server = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = network::serve(peer_listener, handler, incoming, stop).await {
                tracing::error!(error = %e, "the peer server stopped");
            }
        });

        // A follower learns the other members' health from the leader, every heartbeat
        // interval (one small Probe), so its getClusterHealth agrees with the leader's.
        let view_shared = shared.clone();
        let mut view_stop = stop_peers.subscribe();
        let view_every = options.heartbeat_interval.max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(view_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = view_stop.changed() => return,
                    _ = tick.tick() => view_shared.refresh_leader_view().await,
                }
            }
        });

        Ok(Self {
            raft,
            shared,
            options,
            snapshots,
            log,
            peer_addr,
            stop_peers,
            peer_server: parking_lot::Mutex::new(Some(peer_server)),
        })
    }

    /// Raft log fsyncs so far (each covers every entry appended before it: entries per fsync
    /// is the group-commit factor).
    pub fn log_fsyncs(&self) -> u64 {
        self.log.fsync_count()
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

    /// Initializes the cluster with the configured members, unless this node or any reachable
    /// peer is already initialized (invariant 15). Safe to call on every node, any number of
    /// times.
    pub async fn init_guarded(&self) -> Result<InitOutcome, String> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| format!("the Raft core stopped: {e}"))?
        {
            return Ok(InitOutcome::AlreadyInitialized);
        }
        for (&id, addr) in &self.options.initial_members {
            if id == self.options.node_id {
                continue;
            }
            let probe = self
                .shared
                .peers
                .probe(id, &addr.peer_addr, Duration::from_secs(2))
                .await;
            match probe {
                Ok(info) if info.fingerprint != self.options.fingerprint => {
                    return Err(format!(
                        "node {id} at {} has a different data layout ({}); this node has {}. \
                         Every member must configure the same [database] column_families",
                        addr.peer_addr, info.fingerprint, self.options.fingerprint
                    ));
                }
                Ok(info) if info.initialized => return Ok(InitOutcome::AlreadyInitialized),
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(peer = id, error = %e, "peer not reachable during bootstrap");
                }
            }
        }
        match self
            .raft
            .initialize(self.options.initial_members.clone())
            .await
        {
            Ok(()) => Ok(InitOutcome::Initialized),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Ok(InitOutcome::AlreadyInitialized)
            }
            Err(e) => Err(format!("cannot initialize the cluster: {e}")),
        }
    }

    /// Adds node `id` at `addr` as a voter: first as a learner, waiting until it has caught up
    /// with the log, then promoted. Idempotent: a voter already at `addr` is left alone. Only
    /// the leader can change the membership.
    pub async fn add_node(&self, id: NodeId, addr: NodeAddr) -> Result<MembershipOutcome, String> {
        self.require_leader()?;
        let (voters, known) = self.membership_of(id);
        if voters.contains(&id) {
            return match known {
                Some(current) if current.peer_addr == addr.peer_addr => {
                    Ok(MembershipOutcome::Unchanged)
                }
                Some(current) => Err(format!(
                    "node {id} is already a voter at peer address {}; remove it first to move it                      to {}",
                    current.peer_addr, addr.peer_addr
                )),
                None => Ok(MembershipOutcome::Unchanged),
            };
        }
        self.raft
            .add_learner(id, addr, true)
            .await
            .map_err(|e| format!("adding node {id} as a learner: {e}"))?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.bounded(&format!("promoting node {id} to voter"), change)
            .await?;
        Ok(MembershipOutcome::Changed)
    }

    /// Removes node `id` from the membership. Refuses to remove the last voter, and refuses a
    /// change that would leave the remaining voters without a reachable majority. Idempotent.
    pub async fn remove_node(&self, id: NodeId) -> Result<MembershipOutcome, String> {
        self.require_leader()?;
        let (voters, known) = self.membership_of(id);
        if known.is_none() {
            return Ok(MembershipOutcome::Unchanged);
        }
        if voters.contains(&id) {
            let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            if remaining.is_empty() {
                return Err(format!("node {id} is the last voter; a cluster needs one"));
            }
            let healthy = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow_watched();
                remaining
                    .iter()
                    .filter(|v| {
                        follower_health(&m, **v, self.options.election_timeout)
                            .is_some_and(|h| h == Health::Healthy || h == Health::Degraded)
                    })
                    .count()
            };
            if healthy <= remaining.len() / 2 {
                return Err(format!(
                    "removing node {id} would leave {} voters of which only {healthy} are reachable: \
                     no majority. Bring members back first",
                    remaining.len()
                ));
            }
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.bounded(&format!("removing node {id}"), change).await?;
        } else {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.bounded(&format!("removing learner {id}"), change)
                .await?;
        }
        Ok(MembershipOutcome::Changed)
    }

    /// Hands leadership to voter `to` and waits (≤ 10 election timeouts) until it leads.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<MembershipOutcome, String> {
        let (voters, _) = self.membership_of(to);
        if !voters.contains(&to) {
            return Err(format!("node {to} is not a voter; only a voter can lead"));
        }
        if self.shared.leader().is_some_and(|(id, _)| id == to) {
            return Ok(MembershipOutcome::Unchanged);
        }
        self.require_leader()?;
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| format!("the Raft core stopped: {e}"))?;
        let limit = self.options.election_timeout * 10;
        match self
            .raft
            .wait(Some(limit))
            .current_leader(to, "leader transfer")
            .await
        {
            Ok(_) => Ok(MembershipOutcome::Changed),
            // The timeout's own text carries openraft's whole metrics dump; say what matters.
            Err(WaitError::Timeout(..)) => {
                let now = self.shared.leader().map_or_else(
                    || "no leader is known".to_owned(),
                    |(id, _)| format!("node {id} leads"),
                );
                Err(format!(
                    "node {to} did not take over within {limit:?} ({now}); is it reachable and \
                     caught up?"
                ))
            }
            Err(WaitError::ShuttingDown) => Err("this node is shutting down".to_owned()),
        }
    }

    /// Proposes a membership change and waits for it, at most 20 election timeouts (a change
    /// whose new majority is unreachable cannot commit).
    async fn bounded(
        &self,
        what: &str,
        change: ChangeMembers<NodeId, NodeAddr>,
    ) -> Result<(), String> {
        let limit = self.options.election_timeout * 20;
        match tokio::time::timeout(limit, self.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!(
                "{what}: not committed within {limit:?} (is a majority of the new membership \
                 reachable?); it may still complete"
            )),
        }
    }

    /// Voter ids, and `id`'s addresses if it is a member.
    fn membership_of(&self, id: NodeId) -> (BTreeSet<NodeId>, Option<NodeAddr>) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        (
            membership.voter_ids().collect(),
            membership.get_node(&id).cloned(),
        )
    }

    fn require_leader(&self) -> Result<(), String> {
        if self.shared.is_leader() {
            return Ok(());
        }
        let leader = self.shared.leader().map_or_else(
            || "no leader is known".to_owned(),
            |(id, addr)| format!("the leader is node {id} (client {})", addr.client_addr),
        );
        Err(format!(
            "node {} is not the leader: {leader}; send membership changes to the leader's admin \
             address",
            self.options.node_id
        ))
    }

    /// Asks the state machine to build a snapshot now.
    pub async fn trigger_snapshot(&self) -> Result<(), String> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| format!("the Raft core stopped: {e}"))
    }

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

    /// The version applied on this node.
    pub fn applied_version(&self) -> Version {
        *self.shared.applied.borrow()
    }

    /// Resolves when the Raft core stops on its own (a fatal error), with the reason.
    pub async fn stopped(&self) -> String {
        // Server metrics change only with the role, leader or membership; the full metrics
        // change with every append and apply, and waking on each would cost several thread
        // switches per write. A fatal error ends the core, which closes both channels.
        let mut server = self.raft.server_metrics();
        loop {
            if let Err(fatal) = &self.raft.metrics().borrow_watched().running_state {
                return fatal.to_string();
            }
            if server.changed().await.is_err() {
                return match &self.raft.metrics().borrow_watched().running_state {
                    Err(fatal) => fatal.to_string(),
                    Ok(()) => "the Raft core exited".into(),
                };
            }
        }
    }

    /// Stops Raft and the peer server. Idempotent.
    pub async fn shutdown(&self) {
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

/// What a membership operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipOutcome {
    /// The change was made.
    Changed,
    /// Nothing to do: the cluster already was as asked.
    Unchanged,
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

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
fn status_of(
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
