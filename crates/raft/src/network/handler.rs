//! What the peer server calls: the [`PeerHandler`] seam (independent of tonic, so a simulated
//! transport can call it directly), and [`RaftPeerHandler`], its implementation over
//! `openraft::Raft`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use dolmen_engine::{Command, Version};
use futures::stream::BoxStream;
use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{
    ClientWriteError, Fatal, ForwardReason, ForwardToLeader, LinearizableReadError, RaftError,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::{LinearizerOption, Raft, ReadPolicy};

use crate::apply_tracker::{CommandKind, WriteAck};
use crate::network::Snapshot;
use crate::oracle::VersionGrant;
use crate::sequencer::{WriteError, Written};
use crate::state_machine::EntryReply;
use crate::types::{DolmenRaft, SnapshotFile, Vote};
use crate::{Applied, BoxFuture, NodeId, ProposeError, WriteAdmission};

/// A node's answer to `Probe`, for the bootstrap guard (docs/replication.md §8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// The answering node's id.
    pub node_id: NodeId,
    /// Whether its Raft state is initialized (it has a membership): then nobody may
    /// `initialize` the cluster again.
    pub initialized: bool,
    /// Its configuration fingerprint (a hash of the column families); peers must agree.
    pub fingerprint: String,
    /// Its Raft status as JSON (for `dolmen cluster status`); empty when not offered.
    pub status_json: String,
}

/// A callback without arguments (hooks of [`RaftPeerHandler`]).
pub type Hook = Arc<dyn Fn() + Send + Sync>;
/// A provider of this node's status JSON for `Probe`.
pub type StatusJson = Arc<dyn Fn() -> String + Send + Sync>;
/// Answers a `ReadIndex` request within the given time (the node's batched leader barrier),
/// covering the commits drawn at or below the given version (0: none asked), confirmed by the
/// leader lease when the asker reads under lease reads (the `bool`).
pub type ReadIndexHook = Arc<
    dyn Fn(Duration, Version, bool) -> BoxFuture<'static, Result<u64, ProposeError>> + Send + Sync,
>;
/// Proposes a forwarded write on the leader and waits until it applied there (the group's
/// sequencer, docs/sharding.md §6.2).
pub(crate) type WriteHook =
    Arc<dyn Fn(Command) -> BoxFuture<'static, Result<Written, WriteError>> + Send + Sync>;
/// Hands out versions as the oracle (`Timestamps`, docs/sharding.md §3.2): `commit_count`
/// commit versions and, if asked, a read version.
pub type TimestampsHook =
    Arc<dyn Fn(u32, bool) -> BoxFuture<'static, Result<VersionGrant, ProposeError>> + Send + Sync>;

/// The server side of every peer RPC, in openraft and domain types.
pub trait PeerHandler: Send + Sync + 'static {
    /// `Raft::append_entries`.
    fn append_entries(
        &self,
        req: AppendEntriesRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<AppendEntriesResponse<DolmenRaft>, RaftError<DolmenRaft>>>;

    /// `Raft::stream_append`: answers the requests of one replication session in order, each
    /// once it is flushed; the answers end after the first refusal (conflict or higher vote), or
    /// when `requests` ends and every request is answered.
    fn stream_append(
        &self,
        requests: BoxStream<'static, AppendEntriesRequest<DolmenRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<DolmenRaft>, Fatal<DolmenRaft>>>;

    /// `Raft::vote`.
    fn vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>>;

    /// `Raft::pre_vote`.
    fn pre_vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>>;

    /// `Raft::install_full_snapshot` with a completely received, fsynced snapshot file.
    fn install_full_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'_, Result<SnapshotResponse<DolmenRaft>, Fatal<DolmenRaft>>>;

    /// `Raft::handle_transfer_leader`.
    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<TransferLeaderResponse<DolmenRaft>, Fatal<DolmenRaft>>>;

    /// Proposes a command a follower forwarded, once, within `timeout`.
    /// `NotLeader`/`Unavailable` mean it was not proposed; `Timeout` means the outcome is unknown.
    fn forward(
        &self,
        command: Command,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Applied, ProposeError>>;

    /// A linearizable read index (the leader's `ReadIndex` barrier), within `timeout`; in a
    /// data group of a sharded cluster it also covers every commit drawn at or below
    /// `covering` (0: no such version) before the call (docs/sharding.md §5.2). `lease`: the
    /// asker reads under lease reads, so the leadership may be confirmed by the leader lease
    /// instead of a heartbeat round.
    fn read_index(
        &self,
        timeout: Duration,
        covering: Version,
        lease: bool,
    ) -> BoxFuture<'_, Result<u64, ProposeError>>;

    /// As the oracle (group 0's leader, docs/sharding.md §3.2): `commit_count` consecutive
    /// commit versions and, if `want_read`, a read version (at least every version handed out
    /// before the call), after a leadership confirmation that started after the call. Every
    /// error means nothing was handed out: `NotLeader` off the leader, `Unavailable` otherwise
    /// (versions drawn for a failed call are burned, never handed out).
    fn timestamps(
        &self,
        commit_count: u32,
        want_read: bool,
    ) -> BoxFuture<'_, Result<VersionGrant, ProposeError>>;

    /// This node's identity and state.
    fn probe(&self) -> BoxFuture<'_, ProbeInfo>;

    /// Member `from` reports it has applied up to log index `applied` (`AppliedStream`,
    /// `replication_mode = "all"`). The default ignores it.
    fn applied_report(&self, from: NodeId, applied: u64) {
        let _ = (from, applied);
    }
}

/// [`PeerHandler`] over an `openraft::Raft`: the Raft RPCs pass through 1:1; `forward` is
/// `client_write`, `read_index` is `get_read_log_id(ReadPolicy::ReadIndex)`.
pub struct RaftPeerHandler<SM>
where
    SM: RaftStateMachine<DolmenRaft, SnapshotData = SnapshotFile>,
{
    raft: Raft<DolmenRaft, SM>,
    node_id: NodeId,
    fingerprint: String,
    on_leader_append: Option<Hook>,
    status: Option<StatusJson>,
    read_index: Option<ReadIndexHook>,
    /// The oracle (`Timestamps`); `None`: this node serves none.
    timestamps: Option<TimestampsHook>,
    /// Proposes a forwarded write (the group's sequencer); `None`: `client_write` as it is.
    writes: Option<WriteHook>,
    /// Permits for writes in flight on this node (`max_outstanding_proposals`), shared with
    /// its own clients' writes, and their number; forwarded writes take one too.
    write_limit: Option<(Arc<Semaphore>, usize)>,
    /// Asked before a forwarded write is proposed (the disk guard); `None` admits all.
    admission: Option<Arc<dyn WriteAdmission>>,
    /// How a forwarded write that applied here is acknowledged (`replication_mode`), and the
    /// tracker followers' applied reports go to.
    ack: Arc<WriteAck>,
}

impl<SM> RaftPeerHandler<SM>
where
    SM: RaftStateMachine<DolmenRaft, SnapshotData = SnapshotFile>,
{
    /// Serves `raft`; `Probe` answers with `node_id`, `fingerprint` and whether `raft` is
    /// initialized.
    pub fn new(raft: Raft<DolmenRaft, SM>, node_id: NodeId, fingerprint: String) -> Self {
        Self {
            raft,
            node_id,
            fingerprint,
            on_leader_append: None,
            status: None,
            read_index: None,
            timestamps: None,
            writes: None,
            write_limit: None,
            admission: None,
            ack: Arc::new(WriteAck::default()),
        }
    }

    /// Acknowledges forwarded writes through `ack` (the node's one [`WriteAck`], shared with
    /// its own writes), which also receives followers' applied reports. Default: `quorum`.
    pub fn with_write_ack(mut self, ack: Arc<WriteAck>) -> Self {
        self.ack = ack;
        self
    }

    /// Asks `admission` before proposing each forwarded write; its refusal goes back to the
    /// follower as the answer (nothing was proposed). `None` admits every write.
    pub fn with_admission(mut self, admission: Option<Arc<dyn WriteAdmission>>) -> Self {
        self.admission = admission;
        self
    }

    /// Calls `hook` whenever an append (or heartbeat) from the current leader is accepted, so
    /// a follower knows how fresh its state is (stale reads).
    pub fn on_leader_append(mut self, hook: Hook) -> Self {
        self.on_leader_append = Some(hook);
        self
    }

    /// Answers `Probe` with the status `status` produces.
    pub fn with_status(mut self, status: StatusJson) -> Self {
        self.status = Some(status);
        self
    }

    /// Makes every forwarded write take one of `permits` (this node's `max` writes in flight,
    /// shared with its own clients' writes), or be refused with `UNAVAILABLE`.
    pub fn with_write_limit(mut self, permits: Arc<Semaphore>, max: usize) -> Self {
        self.write_limit = Some((permits, max));
        self
    }

    /// Proposes forwarded writes through `hook` (the group's sequencer, which gives commits
    /// their versions) instead of plain `client_write` (transport tests' state machines).
    pub(crate) fn with_writes(mut self, hook: WriteHook) -> Self {
        self.writes = Some(hook);
        self
    }

    /// Answers `ReadIndex` with `hook` (which shares confirmations among concurrent reads)
    /// instead of one `get_read_log_id` per request.
    pub fn with_read_index(mut self, hook: ReadIndexHook) -> Self {
        self.read_index = Some(hook);
        self
    }

    /// Answers `Timestamps` with `hook` (the node's oracle); without one, every request is
    /// `Unavailable`.
    pub fn with_timestamps(mut self, hook: TimestampsHook) -> Self {
        self.timestamps = Some(hook);
        self
    }

    /// Turns openraft's "not the leader here" into `NOT_LEADER` with the leader's client
    /// address, taken from the error or else from the membership. A leader whose lease expired
    /// names itself; a follower whose leader's lease expired names none.
    fn not_leader(&self, f: ForwardToLeader<DolmenRaft>) -> ProposeError {
        // Lease expired: nothing was proposed. On the leader (a new one whose lease starts with
        // a quorum's first acknowledgement, or one cut off from the quorum) it names itself, so
        // the forwarding node retries shortly and answers `UNAVAILABLE` only at its deadline;
        // on a follower whose leader went silent it names none, so the forwarding node waits
        // for the next leader.
        let leader_id = match f.reason {
            ForwardReason::LeaseExpired
                if self.raft.metrics().borrow_watched().current_leader == Some(self.node_id) =>
            {
                Some(self.node_id)
            }
            ForwardReason::LeaseExpired => {
                return ProposeError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                }
            }
            _ => f.leader_id,
        };
        let leader_node = f.leader_node.filter(|_| leader_id == f.leader_id);
        let leader_addr = match (&leader_node, leader_id) {
            (Some(node), _) => Some(node.client_addr.clone()),
            (None, Some(id)) => self
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .get_node(&id)
                .map(|node| node.client_addr.clone()),
            (None, None) => None,
        };
        ProposeError::NotLeader {
            leader_id,
            leader_addr: leader_addr.filter(|a| !a.is_empty()),
        }
    }

    /// The reason Raft is not running, if it stopped.
    fn stopped(&self) -> Option<String> {
        match &self.raft.metrics().borrow_watched().running_state {
            Ok(()) => None,
            Err(fatal) => Some(fatal.to_string()),
        }
    }

    async fn forward_inner(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Applied, ProposeError> {
        if let Some(reason) = self.stopped() {
            return Err(ProposeError::Unavailable(format!(
                "raft on node {} is not running: {reason}",
                self.node_id
            )));
        }
        // Refused before it is proposed (a full disk here): the follower relays the refusal.
        if let Some(admission) = &self.admission {
            admission.admit(&command)?;
        }
        // A forwarded write is in flight here like a client's own: it counts against this
        // node's bound, so followers cannot queue unbounded work on the leader.
        let _permit = match &self.write_limit {
            Some((permits, max)) => Some(permits.try_acquire().map_err(|_| {
                ProposeError::Unavailable(format!(
                    "too many writes in flight on node {} (consensus.max_outstanding_proposals \
                     = {max})",
                    self.node_id
                ))
            })?),
            None => None,
        };
        let start = Instant::now();
        let kind = CommandKind::of(&command);
        let write = async {
            match &self.writes {
                Some(hook) => hook(command).await,
                None => {
                    let response = self.raft.client_write(command).await?;
                    match response.data {
                        EntryReply::Applied(applied) => Ok(Written {
                            index: response.log_id.index,
                            applied,
                        }),
                        EntryReply::NotSequenced(refused) => {
                            Err(WriteError::NotSequenced(refused.to_string()))
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, write).await {
            Err(_elapsed) => Err(ProposeError::Timeout(timeout)),
            // Applied here; under `replication_mode = "all"` also on every voter.
            Ok(Ok(written)) => {
                self.ack
                    .acknowledge(kind, written.index, written.applied)
                    .await
            }
            Ok(Err(WriteError::Raft(RaftError::APIError(ClientWriteError::ForwardToLeader(
                f,
            ))))) => Err(self.not_leader(f)),
            Ok(Err(WriteError::NotLeader(_))) => {
                let leader_id = self.raft.metrics().borrow_watched().current_leader;
                Err(self.not_leader(ForwardToLeader {
                    leader_id: leader_id.filter(|id| *id != self.node_id),
                    leader_node: None,
                    reason: ForwardReason::NotLeader,
                }))
            }
            // Appended, then lost to a leader change: it may still commit.
            Ok(Err(WriteError::Raft(RaftError::APIError(
                ClientWriteError::LogEntryDiscarded(_),
            )))) => Err(ProposeError::Timeout(start.elapsed())),
            Ok(Err(WriteError::Raft(RaftError::APIError(other)))) => {
                Err(ProposeError::Unavailable(format!(
                    "write refused by node {}: {other}",
                    self.node_id
                )))
            }
            // Raft stopped while the write was in flight: it may have been appended.
            Ok(Err(e @ WriteError::Unknown(_))) => {
                tracing::warn!(node = self.node_id, error = %e, "raft stopped during a forwarded write");
                Err(ProposeError::Timeout(start.elapsed()))
            }
            Ok(Err(WriteError::Raft(RaftError::Fatal(fatal)))) => {
                tracing::warn!(node = self.node_id, error = %fatal, "raft stopped during a forwarded write");
                Err(ProposeError::Timeout(start.elapsed()))
            }
            // Nothing applied: the oracle could not serve, or every try was out of order.
            Ok(Err(e @ (WriteError::Oracle(_) | WriteError::NotSequenced(_)))) => Err(
                ProposeError::Unavailable(format!("write refused by node {}: {e}", self.node_id)),
            ),
        }
    }

    async fn read_index_inner(
        &self,
        timeout: Duration,
        covering: Version,
        lease: bool,
    ) -> Result<u64, ProposeError> {
        if let Some(hook) = &self.read_index {
            return hook(timeout, covering, lease).await;
        }
        let policy = if lease {
            // From the lease while it holds, else one heartbeat round (docs/replication.md §7.2).
            LinearizerOption::new(None, true)
        } else {
            ReadPolicy::ReadIndex.into()
        };
        match tokio::time::timeout(timeout, self.raft.get_read_log_id(policy)).await {
            Err(_elapsed) => Err(ProposeError::Timeout(timeout)),
            Ok(Ok((read_log_id, _applied))) => Ok(read_log_id.log_id().index),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f))
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
                Err(ProposeError::Unavailable(format!("read index: {q}")))
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(ProposeError::Unavailable(format!(
                "raft on node {} is not running: {fatal}",
                self.node_id
            ))),
        }
    }
}

impl<SM> PeerHandler for RaftPeerHandler<SM>
where
    SM: RaftStateMachine<DolmenRaft, SnapshotData = SnapshotFile>,
{
    fn append_entries(
        &self,
        req: AppendEntriesRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<AppendEntriesResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        Box::pin(async move {
            let response = self.raft.append_entries(req).await;
            let from_leader = matches!(
                &response,
                Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))
            );
            if let (true, Some(hook)) = (from_leader, &self.on_leader_append) {
                hook();
            }
            response
        })
    }

    fn stream_append(
        &self,
        requests: BoxStream<'static, AppendEntriesRequest<DolmenRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<DolmenRaft>, Fatal<DolmenRaft>>> {
        let hook = self.on_leader_append.clone();
        Box::pin(self.raft.stream_append(requests).inspect(move |answer| {
            // As for `append_entries`: every answer but a higher vote accepts the sender as
            // the current leader.
            let from_leader = matches!(answer, Ok(Ok(_) | Err(StreamAppendError::Conflict(_))));
            if let (true, Some(hook)) = (from_leader, &hook) {
                hook();
            }
        }))
    }

    fn vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        Box::pin(self.raft.vote(req))
    }

    fn pre_vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        Box::pin(self.raft.pre_vote(req))
    }

    fn install_full_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'_, Result<SnapshotResponse<DolmenRaft>, Fatal<DolmenRaft>>> {
        Box::pin(self.raft.install_full_snapshot(vote, snapshot))
    }

    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<TransferLeaderResponse<DolmenRaft>, Fatal<DolmenRaft>>> {
        Box::pin(self.raft.handle_transfer_leader(req))
    }

    fn forward(
        &self,
        command: Command,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Applied, ProposeError>> {
        Box::pin(self.forward_inner(command, timeout))
    }

    fn read_index(
        &self,
        timeout: Duration,
        covering: Version,
        lease: bool,
    ) -> BoxFuture<'_, Result<u64, ProposeError>> {
        Box::pin(self.read_index_inner(timeout, covering, lease))
    }

    fn timestamps(
        &self,
        commit_count: u32,
        want_read: bool,
    ) -> BoxFuture<'_, Result<VersionGrant, ProposeError>> {
        match &self.timestamps {
            Some(hook) => hook(commit_count, want_read),
            None => {
                let node = self.node_id;
                Box::pin(async move {
                    Err(ProposeError::Unavailable(format!(
                        "node {node} serves no oracle (Timestamps)"
                    )))
                })
            }
        }
    }

    fn applied_report(&self, from: NodeId, applied: u64) {
        self.ack.tracker().report(from, applied);
    }

    fn probe(&self) -> BoxFuture<'_, ProbeInfo> {
        Box::pin(async move {
            let initialized = match self.raft.is_initialized().await {
                Ok(initialized) => initialized,
                Err(fatal) => {
                    // Unknown: claim initialized, so nobody bootstraps a second cluster on it.
                    tracing::warn!(node = self.node_id, error = %fatal, "probe: raft not running; reporting initialized");
                    true
                }
            };
            ProbeInfo {
                node_id: self.node_id,
                initialized,
                fingerprint: self.fingerprint.clone(),
                status_json: self.status.as_ref().map(|s| s()).unwrap_or_default(),
            }
        })
    }
}
