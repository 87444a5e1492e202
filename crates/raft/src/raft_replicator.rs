//! The Raft implementations of the service seams (docs/replication.md §7): [`RaftReplicator`]
//! orders writes through openraft (forwarding from followers), [`RaftReadGate`] hands out read
//! versions under the configured consistency level.
//!
//! ```text
//!  propose ─leader?─▶ Raft::client_write ─▶ applied here ─▶ Ok(Applied)
//!     └─follower─▶ PeerClient::forward(leader) ─▶ wait applied here ≥ version ─▶ Ok(Applied)
//!  read_version ─linearizable─▶ leader: get_read_log_id(ReadIndex) │ follower: ReadIndex RPC
//!                 (concurrent reads share one of either: coalesce.rs)
//!                                 └──────────▶ wait applied ≥ read index ─▶ applied version
//!               ─lease──────▶ the same with ReadPolicy::LeaseRead on the leader
//!               ─stale──────▶ the applied version, if the leader was heard from recently
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Command, Version};
use openraft::async_runtime::{Instant as _, WatchReceiver};
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::raft::ReadPolicy;
use openraft::LinearizerOption;
use openraft::ServerState;
use tokio::sync::{watch, Semaphore};

use crate::apply_tracker::{CommandKind, WriteAck};
use crate::coalesce::Coalescer;
use crate::direct::now_unix_ms;
use crate::network::PeerClient;
use crate::oracle::VersionGrant;
use crate::replicator::{
    Applied, BoxFuture, ClusterView, Health, MemberView, ProposeError, ReadError, ReadGate,
    Replicator, Role,
};
use crate::sequencer::{Sequencer, WriteError};
use crate::shard::GroupZeroOracle;
use crate::state_machine::AppliedPosition;
use crate::types::{DolmenRaft, NodeAddr, Raft};
use crate::NodeId;

/// How reads obtain their version (`[reads]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// A ReadIndex barrier through the leader for every read version.
    Linearizable,
    /// The leader answers from its lease (no quorum round trip); followers ask the leader.
    Lease,
    /// The local applied version, if the leader was heard from within `max_staleness`.
    Stale,
}

/// Read settings.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// The default level.
    pub consistency: ReadConsistency,
    /// Whether a read that cannot get a barrier (no leader, no quorum) may fall back to the
    /// local state, bounded by `max_staleness`.
    pub allow_stale_reads: bool,
    /// How long ago the leader must have been heard from for a stale read.
    pub max_staleness: Duration,
    /// A planted bug, for the fault-injection suite only (`[faults] unsafe_stale_reads`):
    /// followers answer `linearizable` and `lease` reads from their local state without asking
    /// the leader, so they may serve stale values. Never set in production.
    pub unsafe_stale_reads: bool,
}

impl ReadOptions {
    /// Whether every read on this node takes a read barrier through the leader: true for
    /// `linearizable` and `lease` without any fallback to local state (`allow_stale_reads`, or
    /// the planted `unsafe_stale_reads`).
    pub fn every_read_takes_a_barrier(&self) -> bool {
        self.consistency != ReadConsistency::Stale
            && !self.allow_stale_reads
            && !self.unsafe_stale_reads
    }
}

/// When this node last heard from a leader (an append or heartbeat), shared with the peer
/// handler; milliseconds since the node started, `u64::MAX` = never.
#[derive(Debug)]
pub struct LeaderContact {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl LeaderContact {
    /// Records contact now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last contact, `None` if never.
    pub fn since(&self) -> Option<Duration> {
        let last = self.last_ms.load(Ordering::Relaxed);
        (last != u64::MAX).then(|| {
            self.start
                .elapsed()
                .saturating_sub(Duration::from_millis(last))
        })
    }
}

/// Sleeps `pause`, or until `deadline` if that is sooner; false when the deadline has passed.
async fn pause_until(deadline: Instant, pause: Duration) -> bool {
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(pause.min(remaining)).await;
    !remaining.is_zero()
}

/// The answer when the leader `leader` never got its lease back before the deadline.
fn no_quorum(leader: Option<NodeId>) -> ProposeError {
    let who = leader.map_or_else(|| "the leader".to_owned(), |id| format!("node {id}"));
    ProposeError::Unavailable(format!(
        "{who} leads but its leader lease expired: no quorum"
    ))
}

/// The result of one try at a request.
enum Attempt<T> {
    /// Answered: the request's result.
    Done(Result<T, ProposeError>),
    /// Nothing was proposed, and no leader could take it (none known, not the leader any more,
    /// or unreachable): worth another try once a new leader is known.
    NotProposed(ProposeError),
}

/// What the replicator and read gate share.
pub(crate) struct Shared {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    pub(crate) peers: PeerClient,
    pub(crate) forward_writes: bool,
    /// Permits for writes in flight on this node: its clients' and those forwarded to it.
    pub(crate) outstanding: Arc<Semaphore>,
    pub(crate) max_outstanding: usize,
    pub(crate) applied: watch::Receiver<AppliedPosition>,
    pub(crate) reads: ReadOptions,
    pub(crate) contact: Arc<LeaderContact>,
    /// Upper bound of one forwarded write or read barrier.
    pub(crate) rpc_timeout: Duration,
    pub(crate) election_timeout: Duration,
    /// How long a request waits for a leader that can take it (`RaftNodeOptions::leader_wait`).
    pub(crate) leader_wait: Duration,
    /// On a follower: the members' health as the leader last reported it, and when.
    pub(crate) leader_view: parking_lot::Mutex<Option<(Instant, BTreeMap<NodeId, Seen>)>>,
    /// Shares one leadership confirmation among concurrent linearizable reads on the leader
    /// (this node's reads and followers' `ReadIndex` requests).
    pub(crate) local_reads: Arc<Coalescer>,
    /// Shares one `ReadIndex` RPC among concurrent linearizable reads on a follower.
    pub(crate) remote_reads: Arc<Coalescer>,
    /// How a write applied here as the leader is acknowledged (`replication_mode`); the peer
    /// handler shares it for forwarded writes.
    pub(crate) ack: Arc<WriteAck>,
    /// The group's oracle and sequencer: every write this node proposes as the leader, its
    /// own and forwarded ones, goes through it.
    pub(crate) sequencer: Arc<Sequencer>,
    /// A data group of a sharded node: group 0's oracle, which its commits draw from and its
    /// reads at a version check against (`None`: the group is its own oracle).
    pub(crate) oracle: Option<Arc<GroupZeroOracle>>,
    /// The group's engine handle (a covering barrier marks its reads complete).
    pub(crate) engine: Arc<dolmen_engine::Engine>,
    /// Wakes the group if it hibernates (a data group with hibernation on): called for every
    /// write and read barrier this node starts.
    pub(crate) wake: std::sync::OnceLock<Arc<dyn Fn() + Send + Sync>>,
    /// How this node, as the oracle's leader, confirmed the grants it answered.
    pub(crate) oracle_confirmations: Arc<Confirmations>,
    /// How this node, as the leader, confirmed the followers' `ReadIndex` requests it answered.
    pub(crate) read_index_confirmations: Arc<Confirmations>,
}

/// Leadership confirmations by each means, since the node started (oracle grants:
/// `dolmen_oracle_confirmations_total{by}`; followers' read indexes:
/// `dolmen_read_index_confirmations_total{by}`).
#[derive(Debug, Default)]
pub struct Confirmations {
    /// By a ReadIndex round.
    pub read_index: AtomicU64,
    /// By the leader lease (under `consistency_level = "lease"`).
    pub lease: AtomicU64,
}

impl Confirmations {
    /// Counts one confirmation, by the lease or by a round.
    fn count(&self, lease: bool) {
        let by = if lease { &self.lease } else { &self.read_index };
        by.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a read barrier or an oracle grant refused with `e` should wait for the next leader
/// and try again: the node asked is not the leader, could not be reached, knew no leader ("no
/// leader is known": an election, a leadership transfer) or could not confirm its leadership.
pub(crate) fn wait_for_next_leader(e: &ProposeError) -> bool {
    matches!(
        e,
        ProposeError::NotLeader { .. }
            | ProposeError::LeaderUnreachable(_)
            | ProposeError::Unavailable(_)
    )
}

/// The two read batchers of a [`Shared`] built with [`Arc::new_cyclic`]: they hold it weakly.
pub(crate) fn read_batchers(shared: &std::sync::Weak<Shared>) -> (Arc<Coalescer>, Arc<Coalescer>) {
    let local = shared.clone();
    let remote = shared.clone();
    let gone = || ProposeError::Unavailable("the node is shutting down".into());
    (
        Coalescer::new(Arc::new(move |_| {
            let shared = local.clone();
            Box::pin(async move {
                match shared.upgrade() {
                    Some(s) => s.local_read_index().await,
                    None => Err(gone()),
                }
            })
        })),
        Coalescer::new(Arc::new(move |covering| {
            let shared = remote.clone();
            Box::pin(async move {
                match shared.upgrade() {
                    Some(s) => s.remote_barrier(covering).await,
                    None => Err(gone()),
                }
            })
        })),
    )
}

impl Shared {
    /// On the group's leader: `commit_count` commit versions and, if `want_read`, a read
    /// version, after a leadership confirmation that started after the call (so a deposed
    /// leader hands out nothing: docs/sharding.md §3.2). `NotLeader` elsewhere.
    pub(crate) async fn grant_versions(
        &self,
        commit_count: u32,
        want_read: bool,
    ) -> Result<VersionGrant, ProposeError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let grant = self.sequencer.grant(commit_count, want_read).await;
        // Drawn before the confirmation, handed out only after it: versions of a confirmation
        // that fails are burned.
        self.confirm_oracle_leadership().await?;
        match grant {
            Ok(grant) => Ok(grant),
            Err(WriteError::NotLeader(_)) => Err(self.not_leader()),
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// This node's leadership, confirmed by a confirmation that started after the call: if
    /// `lease` (this node or the asker reads under `[reads] consistency_level = "lease"`) the
    /// leader lease while it holds (one heartbeat round when it does not), under the bounded
    /// clock-drift assumption of lease reads (docs/replication.md invariant 14); otherwise a
    /// ReadIndex round shared with the callers that arrived before it started. The read index;
    /// `NotLeader` elsewhere.
    async fn confirm_leadership(
        &self,
        lease: bool,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        if lease {
            let lease = self.leader_barrier(LinearizerOption::new(None, true));
            match tokio::time::timeout(timeout, lease).await {
                Ok(confirmed) => confirmed,
                Err(_elapsed) => Err(ProposeError::Timeout(timeout)),
            }
        } else {
            self.local_reads.read_index(timeout).await
        }
    }

    /// Whether this node's own confirmations take the leader lease (`[reads]
    /// consistency_level = "lease"`) rather than a ReadIndex round.
    fn confirms_by_lease(&self) -> bool {
        self.reads.consistency == ReadConsistency::Lease
    }

    /// The leadership confirmation of an oracle grant, started after the grant was drawn
    /// (docs/sharding.md §3.2), counted by how it was made.
    async fn confirm_oracle_leadership(&self) -> Result<(), ProposeError> {
        let lease = self.confirms_by_lease();
        self.confirm_leadership(lease, self.rpc_timeout).await?;
        self.oracle_confirmations.count(lease);
        Ok(())
    }

    /// Resolves once this node may read the group at `version` (`ReadGate::cover`). A group
    /// that is its own oracle applies its commits in version order: "applied ≥ `version`". A
    /// data group: an applied entry drawn at or above `version`, or else the oracle must have
    /// handed `version` out, then a barrier carrying it (docs/sharding.md §5.2, shard.rs).
    pub(crate) async fn cover(&self, version: Version, wait: Duration) -> Result<(), ReadError> {
        let Some(oracle) = &self.oracle else {
            if version <= self.applied_version() {
                return Ok(());
            }
            self.wake();
            return self.wait_applied(version, wait).await;
        };
        // An applied entry whose oracle version is at or above `version` was appended after
        // every commit at or below it was drawn, and after every prepare whose commit may be
        // at or below it applied (the oracle hands out versions in order): all of them are in
        // this replica, as commits or as locks (docs/sharding.md invariant 4). Not so for the
        // retention commands' versions, which no oracle drew.
        if version <= self.applied.borrow().drawn {
            return Ok(());
        }
        self.wake();
        oracle.check_issued(version, wait).await?;
        let index = self.covering_barrier(version).await?;
        self.wait_applied_index(index, self.rpc_timeout).await?;
        self.engine.mark_complete(version);
        Ok(())
    }

    /// A read index covering every commit of this group drawn at or below `covering`: on the
    /// leader, once its sequencer settled them, a ReadIndex round; on a follower, the same asked
    /// of the leader. Waits for a leader within the leader wait.
    async fn covering_barrier(&self, covering: Version) -> Result<u64, ProposeError> {
        let deadline = Instant::now() + self.leader_wait();
        loop {
            let seen = self.leadership();
            let refused = if seen.1.is_none() {
                // An election (a leadership transfer, a failover): wait for its winner.
                self.not_leader()
            } else if self.is_leader() {
                let lease = self.confirms_by_lease();
                match self
                    .covering_read_index(covering, lease, self.rpc_timeout)
                    .await
                {
                    Err(_) if !self.is_leader() => self.not_leader(),
                    // Deposed (a transfer) before the metrics say so: try again shortly.
                    Err(e) if wait_for_next_leader(&e) => e,
                    done => return done,
                }
            } else {
                // Concurrent reads on this follower share one request, covering the largest
                // version among them.
                match self
                    .remote_reads
                    .read_index_covering(covering, self.rpc_timeout)
                    .await
                {
                    Err(e) if wait_for_next_leader(&e) => e,
                    done => return done,
                }
            };
            self.before_next_try(seen, refused, deadline).await?;
        }
    }

    /// On the leader: the sequencer settles the commits drawn at or below `covering` (0: none;
    /// a read of a group that is its own oracle) that were registered before the call, then
    /// [`Self::confirm_leadership`] started after that, by the lease if `lease` (the reader is
    /// under lease reads: docs/sharding.md §5.2, docs/replication.md §7.2).
    pub(crate) async fn covering_read_index(
        &self,
        covering: Version,
        lease: bool,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        if covering > 0 {
            self.sequencer.settled(covering, timeout).await?;
        }
        self.confirm_leadership(lease, timeout).await
    }

    /// A follower's `ReadIndex` request answered on this node: [`Self::covering_read_index`]
    /// by the follower's level, counted by how it was confirmed
    /// (`dolmen_read_index_confirmations_total{by}`).
    pub(crate) async fn peer_read_index(
        &self,
        covering: Version,
        lease: bool,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        let index = self.covering_read_index(covering, lease, timeout).await?;
        self.read_index_confirmations.count(lease);
        Ok(index)
    }

    /// The leader as this node sees it: id and addresses.
    pub(crate) fn leader(&self) -> Option<(NodeId, NodeAddr)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, addr))
    }

    pub(crate) fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader
    }

    pub(crate) fn not_leader(&self) -> ProposeError {
        match self.leader() {
            Some((id, addr)) if id != self.node_id => ProposeError::NotLeader {
                leader_id: Some(id),
                leader_addr: Some(addr.client_addr),
            },
            _ => ProposeError::Unavailable(
                "no leader is known (an election may be in progress or a quorum is missing)".into(),
            ),
        }
    }

    /// Waits until `version` is applied here, at most `timeout`.
    async fn wait_applied(&self, version: Version, timeout: Duration) -> Result<(), ReadError> {
        let started = Instant::now();
        match self.wait_until(timeout, |p| p.version >= version).await {
            Some(reached) => reached,
            None => Err(ReadError::FutureVersion {
                version,
                applied: self.applied.borrow().version,
                waited: started.elapsed(),
            }),
        }
    }

    /// Waits until log index `index` (a read barrier's) is applied here, at most `timeout`.
    async fn wait_applied_index(&self, index: u64, timeout: Duration) -> Result<(), ReadError> {
        let started = Instant::now();
        match self.wait_until(timeout, |p| p.index >= index).await {
            Some(reached) => reached,
            None => Err(ReadError::Propose(ProposeError::Unavailable(format!(
                "this node applied up to log index {} of the read barrier's {index} in {:?}; it \
                 is behind the leader",
                self.applied.borrow().index,
                started.elapsed()
            )))),
        }
    }

    /// `Some(Ok)` once `reached` holds of the applied position, `Some(Err)` if the node shuts
    /// down first, `None` when `timeout` passes.
    async fn wait_until(
        &self,
        timeout: Duration,
        reached: impl Fn(&AppliedPosition) -> bool,
    ) -> Option<Result<(), ReadError>> {
        let mut rx = self.applied.clone();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|p| reached(p)).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Some(Ok(())),
            Ok(Err(_)) => Some(Err(ReadError::Propose(ProposeError::Unavailable(
                "the node is shutting down".into(),
            )))),
            Err(_) => None,
        }
    }

    /// The version applied here (at least 1: read versions are > 0).
    fn applied_version(&self) -> Version {
        self.applied.borrow().version.max(1)
    }

    /// How long a request waits for a leader that can take it: by default two election
    /// timeouts, enough for a failover (one to 1.2 election timeouts), short enough that a node
    /// cut off from the majority still refuses promptly with `UNAVAILABLE`
    /// (docs/replication.md §7.1).
    fn leader_wait(&self) -> Duration {
        self.leader_wait
    }

    /// The term and the leader this node knows of.
    pub(crate) fn leadership(&self) -> (u64, Option<NodeId>) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        (m.current_term, m.current_leader)
    }

    /// Waits until a leader other than `seen` is known (a new term or another node), at most
    /// until `deadline`; false if none is. A request that found no leader, or a leader that is
    /// gone, waits here for the election instead of failing at once (docs/replication.md,
    /// "Failover").
    async fn await_new_leader(&self, seen: (u64, Option<NodeId>), deadline: Instant) -> bool {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return false;
        }
        self.raft
            .wait(Some(remaining))
            .metrics(
                |m| m.current_leader.is_some() && (m.current_term, m.current_leader) != seen,
                "a new leader is known",
            )
            .await
            .is_ok()
    }

    /// Wakes the group if it hibernates (docs/sharding.md §8.3).
    pub(crate) fn wake(&self) {
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }

    async fn propose(&self, command: Command) -> Result<Applied, ProposeError> {
        self.wake();
        let _permit = self.outstanding.try_acquire().map_err(|_| {
            ProposeError::Unavailable(format!(
                "too many writes in flight on this node (consensus.max_outstanding_proposals = {})",
                self.max_outstanding
            ))
        })?;
        let started = Instant::now();
        let deadline = started + self.leader_wait();
        loop {
            let seen = self.leadership();
            let refused = match seen.1 {
                None => self.not_leader(),
                Some(_) => match self.propose_once(&command, started).await {
                    Attempt::Done(result) => return result,
                    Attempt::NotProposed(refusal) => refusal,
                },
            };
            self.before_next_try(seen, refused, deadline).await?;
        }
    }

    /// After a try refused by `refused` with `seen` the leadership: waits until another try is
    /// worth it, or gives the final answer once `deadline` passes. A leader (here or remote)
    /// that refused for want of its lease is asked again shortly (a new leader's lease starts
    /// with a quorum's first acknowledgement); otherwise the wait is for a new leader.
    pub(crate) async fn before_next_try(
        &self,
        seen: (u64, Option<NodeId>),
        refused: ProposeError,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let lease_pending = self.lease_pending(seen, &refused);
        let again = if lease_pending {
            pause_until(deadline, self.election_timeout / 20).await
        } else {
            self.await_new_leader(seen, deadline).await
        };
        match (again, lease_pending) {
            (true, _) => Ok(()),
            (false, true) => Err(no_quorum(seen.1)),
            (false, false) => Err(refused),
        }
    }

    /// One try at ordering `command`: here as the leader, or forwarded to the leader.
    async fn propose_once(&self, command: &Command, started: Instant) -> Attempt<Applied> {
        if self.is_leader() {
            return match self.sequencer.write(command.clone()).await {
                // Applied here; under `replication_mode = "all"` also on every voter.
                Ok(written) => {
                    let kind = CommandKind::of(command);
                    let acknowledged = self.ack.acknowledge(kind, written.index, written.applied);
                    Attempt::Done(acknowledged.await)
                }
                // Not the leader (any more) before anything was appended: nothing proposed.
                Err(
                    WriteError::NotLeader(_)
                    | WriteError::Raft(RaftError::APIError(ClientWriteError::ForwardToLeader(_))),
                ) => Attempt::NotProposed(self.not_leader()),
                // Appended, then lost its place or its leader: the outcome is unknown.
                Err(
                    WriteError::Raft(
                        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))
                        | RaftError::Fatal(_),
                    )
                    | WriteError::Unknown(_),
                ) => Attempt::Done(Err(ProposeError::Timeout(started.elapsed()))),
                Err(WriteError::Raft(RaftError::APIError(e))) => {
                    Attempt::Done(Err(ProposeError::Unavailable(e.to_string())))
                }
                Err(e @ (WriteError::Oracle(_) | WriteError::NotSequenced(_))) => {
                    Attempt::Done(Err(ProposeError::Unavailable(e.to_string())))
                }
            };
        }
        if !self.forward_writes {
            return Attempt::Done(Err(self.not_leader()));
        }
        // The leader this node knew was itself (stale), or none: wait for the election.
        let Some((leader, addr)) = self.leader().filter(|(id, _)| *id != self.node_id) else {
            return Attempt::NotProposed(self.not_leader());
        };
        match self.forward(command, leader, &addr).await {
            Ok(applied) => Attempt::Done(Ok(applied)),
            Err(e @ (ProposeError::NotLeader { .. } | ProposeError::LeaderUnreachable(_))) => {
                Attempt::NotProposed(e)
            }
            Err(e) => Attempt::Done(Err(e)),
        }
    }

    /// Passes `command` to the leader and waits until its outcome is applied here too.
    async fn forward(
        &self,
        command: &Command,
        leader: NodeId,
        addr: &NodeAddr,
    ) -> Result<Applied, ProposeError> {
        let applied = match self
            .peers
            .forward(leader, &addr.peer_addr, command, self.rpc_timeout)
            .await
        {
            // The leader we knew stepped down without proposing: try the one it names, once.
            Err(ProposeError::NotLeader {
                leader_id: Some(next),
                ..
            }) if next != leader && next != self.node_id => {
                let addr = self
                    .raft
                    .metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .get_node(&next)
                    .cloned()
                    .ok_or_else(|| self.not_leader())?;
                self.peers
                    .forward(next, &addr.peer_addr, command, self.rpc_timeout)
                    .await?
            }
            other => other?,
        };
        // A read that follows on this node must see the write. Every read that takes a barrier
        // does (the leader applied the write before answering, so the barrier's index covers
        // it, and the read waits until this node applied that index); only a read that may be
        // served from local state without one needs this node to have applied it first.
        if !self.reads.every_read_takes_a_barrier()
            && self
                .wait_applied(applied.version, self.rpc_timeout)
                .await
                .is_err()
        {
            return Err(ProposeError::Timeout(self.rpc_timeout));
        }
        Ok(applied)
    }

    async fn read_version(&self) -> Result<Version, ReadError> {
        self.wake();
        if self.reads.unsafe_stale_reads && !self.is_leader() {
            return Ok(self.applied_version());
        }
        let barrier = match self.reads.consistency {
            ReadConsistency::Stale => return self.stale_version(),
            // A ReadIndex round, or under lease the lease while a quorum acknowledged
            // recently, otherwise one heartbeat round (`confirm_leadership`).
            ReadConsistency::Linearizable | ReadConsistency::Lease => self.barrier().await,
        };
        let index = match barrier {
            Ok(index) => index,
            Err(e) if self.reads.allow_stale_reads => {
                tracing::debug!(error = %e, "no read barrier; serving a stale read (allow_stale_reads)");
                return self.stale_version();
            }
            Err(e) => return Err(e.into()),
        };
        self.wait_applied_index(index, self.rpc_timeout).await?;
        Ok(self.applied_version())
    }

    /// The read index: from the local leader, or from the leader over the peer transport. A
    /// read changes nothing, so while no leader can answer it waits for a new one and asks
    /// again, until the request deadline. Confirmed by this node's level
    /// ([`Self::confirm_leadership`] on the leader; on a follower one `ReadIndex` request to
    /// the leader, shared by concurrent reads, carrying the level).
    async fn barrier(&self) -> Result<Version, ProposeError> {
        let deadline = Instant::now() + self.leader_wait();
        loop {
            let seen = self.leadership();
            let refused = match seen.1 {
                None => self.not_leader(),
                Some(_) => match self.barrier_once().await {
                    Err(e) if wait_for_next_leader(&e) => e,
                    done => return done,
                },
            };
            self.before_next_try(seen, refused, deadline).await?;
        }
    }

    /// Whether `refused` came from the leader `seen` names, refusing without its lease (this
    /// node as the leader, or a remote leader naming itself): worth another try shortly, not a
    /// wait for a new leader.
    fn lease_pending(&self, seen: (u64, Option<NodeId>), refused: &ProposeError) -> bool {
        match (seen.1, refused) {
            (Some(me), _) if me == self.node_id => self.is_leader(),
            (Some(leader), ProposeError::NotLeader { leader_id, .. }) => *leader_id == Some(leader),
            _ => false,
        }
    }

    async fn barrier_once(&self) -> Result<Version, ProposeError> {
        if self.is_leader() {
            let local = self
                .confirm_leadership(self.confirms_by_lease(), self.rpc_timeout)
                .await;
            match local {
                // Lost leadership meanwhile: ask the new leader.
                Err(_) if !self.is_leader() => {}
                done => return done,
            }
        }
        // On a follower every level pays a request to the leader: concurrent reads share one
        // (the leader confirms it by its lease under lease reads: `remote_barrier`).
        self.remote_reads.read_index(self.rpc_timeout).await
    }

    /// A ReadIndex confirmation on this node as the leader (`NOT_LEADER` when it is not), for
    /// this node's reads and followers' `ReadIndex` requests; batched by `local_reads`.
    pub(crate) async fn local_read_index(&self) -> Result<Version, ProposeError> {
        match tokio::time::timeout(
            self.rpc_timeout,
            self.leader_barrier(ReadPolicy::ReadIndex.into()),
        )
        .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(ProposeError::Timeout(self.rpc_timeout)),
        }
    }

    /// One leadership confirmation under `policy` by the local Raft core.
    async fn leader_barrier(&self, policy: LinearizerOption) -> Result<Version, ProposeError> {
        match self.raft.get_read_log_id(policy).await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                Err(self.not_leader())
            }
            Err(RaftError::APIError(e)) => Err(ProposeError::Unavailable(format!(
                "cannot confirm leadership for a linearizable read: {e}"
            ))),
            Err(RaftError::Fatal(e)) => Err(ProposeError::Unavailable(format!(
                "the replication core stopped: {e}"
            ))),
        }
    }

    /// A read index from the leader over the peer transport, covering the commits drawn at or
    /// below `covering` (0: a plain one).
    async fn remote_barrier(&self, covering: Version) -> Result<Version, ProposeError> {
        let Some((leader, addr)) = self.leader().filter(|(id, _)| *id != self.node_id) else {
            return Err(self.not_leader());
        };
        let lease = self.confirms_by_lease();
        self.peers
            .read_index(leader, &addr.peer_addr, self.rpc_timeout, covering, lease)
            .await
    }

    fn stale_version(&self) -> Result<Version, ReadError> {
        let fresh = self.is_leader()
            || self
                .contact
                .since()
                .is_some_and(|since| since <= self.reads.max_staleness);
        if fresh {
            return Ok(self.applied_version());
        }
        Err(ReadError::Propose(ProposeError::Unavailable(format!(
            "this node has not heard from a leader within reads.max_staleness_ms = {} ms; \
             a stale read could be arbitrarily old",
            self.reads.max_staleness.as_millis()
        ))))
    }

    fn cluster(&self) -> ClusterView {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let leader = m.current_leader;
        let members = membership
            .nodes()
            .map(|(&id, addr)| {
                let role = if id == self.node_id {
                    role_of(m.state)
                } else if Some(id) == leader {
                    Role::Leader
                } else if voters.contains(&id) {
                    Role::Follower
                } else {
                    Role::Learner
                };
                let seen = self.seen(id, leader, &m);
                MemberView {
                    id,
                    client_addr: addr.client_addr.clone(),
                    role,
                    health: seen.health,
                    last_seen_unix_ms: seen.last_seen_unix_ms.unwrap_or(0),
                }
            })
            .collect();
        ClusterView {
            this_node: self.node_id,
            members,
            leader,
            term: m.current_term,
        }
    }

    /// A member's health and when this node last heard from it, or of it from the leader.
    fn seen(
        &self,
        id: NodeId,
        leader: Option<NodeId>,
        m: &openraft::RaftMetrics<DolmenRaft>,
    ) -> Seen {
        if id == self.node_id {
            let health = if m.running_state.is_ok() {
                Health::Healthy
            } else {
                Health::Unreachable
            };
            return Seen {
                health,
                last_seen_unix_ms: Some(now_unix_ms()),
            };
        }
        // The leader knows when each follower last acknowledged, and how far it lags.
        if let Some(health) = follower_health(m, id, self.election_timeout) {
            return Seen {
                health,
                last_seen_unix_ms: last_ack_unix_ms(m, id),
            };
        }
        // A follower knows only whether the leader is talking to it.
        if Some(id) == leader {
            let since = self.contact.since();
            let health = match since {
                Some(since) if since <= self.election_timeout => Health::Healthy,
                Some(_) => Health::Unreachable,
                None => Health::Unknown,
            };
            return Seen {
                health,
                last_seen_unix_ms: since.map(unix_ms_ago),
            };
        }
        // Other followers: what the leader last told us, while that is fresh.
        let view = self.leader_view.lock();
        match &*view {
            Some((at, seen)) if at.elapsed() <= self.election_timeout => {
                seen.get(&id).copied().unwrap_or(Seen::UNKNOWN)
            }
            _ => Seen::UNKNOWN,
        }
    }

    /// Refreshes a follower's view of the other members' health from the leader's status.
    pub(crate) async fn refresh_leader_view(&self) {
        let Some((leader, addr)) = self.leader().filter(|(id, _)| *id != self.node_id) else {
            return;
        };
        let probe = self
            .peers
            .probe(leader, &addr.peer_addr, self.election_timeout)
            .await;
        let Ok(info) = probe else { return };
        let Ok(status) = serde_json::from_str::<dolmen_admin::RaftStatus>(&info.status_json) else {
            return;
        };
        let seen = status
            .members
            .iter()
            .map(|m| {
                let seen = Seen {
                    health: m.health,
                    last_seen_unix_ms: m.last_seen_unix_ms,
                };
                (m.id, seen)
            })
            .collect();
        *self.leader_view.lock() = Some((Instant::now(), seen));
    }
}

/// A member's health and when it was last heard from (milliseconds since the Unix epoch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    health: Health,
    last_seen_unix_ms: Option<i64>,
}

impl Seen {
    const UNKNOWN: Seen = Seen {
        health: Health::Unknown,
        last_seen_unix_ms: None,
    };
}

/// The wall-clock time `ago` before now, in milliseconds since the Unix epoch.
pub(crate) fn unix_ms_ago(ago: Duration) -> i64 {
    now_unix_ms().saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}

/// On the leader: when follower `id` last acknowledged, in milliseconds since the Unix epoch.
pub(crate) fn last_ack_unix_ms(m: &openraft::RaftMetrics<DolmenRaft>, id: NodeId) -> Option<i64> {
    let acked = m.heartbeat.as_ref()?.get(&id).cloned().flatten()?;
    Some(unix_ms_ago(acked.elapsed()))
}

/// On the leader: a follower's health from its last acknowledgement and its lag; `None`
/// elsewhere (only the leader has replication metrics).
pub(crate) fn follower_health(
    m: &openraft::RaftMetrics<DolmenRaft>,
    id: NodeId,
    election_timeout: Duration,
) -> Option<Health> {
    let (heartbeat, replication) = (m.heartbeat.as_ref()?, m.replication.as_ref()?);
    if id == m.id {
        return Some(Health::Healthy);
    }
    let Some(acked) = heartbeat.get(&id).cloned().flatten() else {
        return Some(Health::Unreachable);
    };
    if acked.elapsed() > election_timeout {
        return Some(Health::Unreachable);
    }
    let matched = replication
        .get(&id)
        .cloned()
        .flatten()
        .map_or(0, |l| l.index);
    let last = m.last_log_index.unwrap_or(0);
    Some(if last.saturating_sub(matched) > LAG_DEGRADED {
        Health::Degraded
    } else {
        Health::Healthy
    })
}

/// A follower more than this many entries behind the leader is `degraded`.
const LAG_DEGRADED: u64 = 1000;

/// This node's role from its Raft server state.
pub(crate) fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// Orders writes through Raft (docs/ARCHITECTURE.md §4).
#[derive(Clone)]
pub struct RaftReplicator {
    pub(crate) shared: Arc<Shared>,
}

impl Replicator for RaftReplicator {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Applied, ProposeError>> {
        Box::pin(self.shared.propose(command))
    }

    fn cluster(&self) -> ClusterView {
        self.shared.cluster()
    }
}

/// Read versions under the configured consistency level.
#[derive(Clone)]
pub struct RaftReadGate {
    pub(crate) shared: Arc<Shared>,
}

impl ReadGate for RaftReadGate {
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        Box::pin(self.shared.read_version())
    }

    fn wait_applied(
        &self,
        version: Version,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(self.shared.wait_applied(version, timeout))
    }

    fn applied_version(&self) -> Version {
        self.shared.applied.borrow().version
    }

    fn cover(&self, version: Version, wait: Duration) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(self.shared.cover(version, wait))
    }

    fn admit_read_version(
        &self,
        version: Version,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(async move {
            match &self.shared.oracle {
                Some(oracle) if version > self.shared.applied_version() => {
                    oracle.check_issued(version, wait).await
                }
                _ => self.shared.cover(version, wait).await,
            }
        })
    }
}
