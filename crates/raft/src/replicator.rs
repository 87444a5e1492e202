//! The `Replicator` and `ReadGate` seams (docs/ARCHITECTURE.md §1): what the service core needs from
//! replication, and nothing about how it is done.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dolmen_engine::{Command, Outcome, Version};

/// A boxed, sendable future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node's id: its index in `replica_endpoints` (0 for a standalone node).
pub type NodeId = u64;

/// A command that was applied, with the outcome every replica computed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The version the command applied at.
    pub version: Version,
    /// What applying it produced.
    pub outcome: Outcome,
}

/// Why a proposal did not produce an outcome. Each variant maps to one WIRE error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// `NOT_LEADER`: this node cannot order writes and did not forward this one.
    #[error("Not leader, try leader at: {} (node {})",
            leader_addr.as_deref().unwrap_or("unknown"),
            leader_id.map_or_else(|| "unknown".to_string(), |id| id.to_string()))]
    NotLeader {
        /// The leader's id, when known.
        leader_id: Option<NodeId>,
        /// The leader's client (Thrift) address, when known.
        leader_addr: Option<String>,
    },
    /// `UNAVAILABLE`: no quorum, too many outstanding proposals, or shutting down.
    #[error("UNAVAILABLE: {0}")]
    Unavailable(String),
    /// `UNAVAILABLE`: the leader this node knew of could not be reached (no connection), so
    /// nothing was proposed; a new leader may be elected.
    #[error("UNAVAILABLE: {0}")]
    LeaderUnreachable(String),
    /// `TIMEOUT`: no outcome within the deadline; the command may still apply.
    #[error("TIMEOUT: no outcome known after {0:?} (deadline passed or the leader connection was lost); the commit may or may not have applied")]
    Timeout(Duration),
    /// `TIMEOUT` under `replication_mode = "all"`: the write is committed and applied on the
    /// leader, but voter `node` had not applied it when the wait ended. Not a refusal: WIRE
    /// promises that every code but `TIMEOUT` means "not applied".
    #[error("TIMEOUT: replication_mode = all: node {node} ({addr}) has applied up to index {applied} of {index} after {} ms; the write is committed on a majority and will apply there", waited.as_millis())]
    NotAppliedByAll {
        /// The voter with the lowest applied index.
        node: NodeId,
        /// Its peer address.
        addr: String,
        /// The index it had applied, as it last reported (0: never reported to this leader).
        applied: u64,
        /// The write's log index.
        index: u64,
        /// How long the leader waited.
        waited: Duration,
    },
}

/// Why a read barrier or an apply wait failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// `FUTURE_VERSION`: the version was not applied here within the wait bound.
    #[error("FUTURE_VERSION: version {version} is not applied on this node (applied: {applied}) after waiting {waited:?}")]
    FutureVersion {
        /// The requested version.
        version: Version,
        /// The node's applied version when the wait gave up.
        applied: Version,
        /// How long it waited.
        waited: Duration,
    },
    /// The barrier could not be obtained (no leader, no quorum).
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// Orders and applies commands: standalone directly, replicated through Raft.
pub trait Replicator: Send + Sync + 'static {
    /// Proposes `command` and resolves once it is applied, with the outcome every replica
    /// computed; a read on this node that follows sees it (applied here, or covered by the
    /// read's own barrier: docs/replication.md §7.1). Cancel-safe: dropping the future does not
    /// withdraw the command.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Applied, ProposeError>>;

    /// A snapshot of membership, roles and health, for diagnostics.
    fn cluster(&self) -> ClusterView;
}

/// Decides whether a client write may be proposed on this node now: the disk guard, which
/// refuses writes while the node's disk is full (docs/replication.md §7.1). A leader asks it
/// for every write a follower forwards; housekeeping commands (`Compact`, `Noop`) should pass.
pub trait WriteAdmission: std::fmt::Debug + Send + Sync + 'static {
    /// `Ok` to propose `command`; otherwise the refusal the writer gets (nothing was proposed,
    /// so it must be `Unavailable` or `NotLeader`, never `Timeout`).
    ///
    /// # Errors
    /// The refusal, when `command` may not be proposed now.
    fn admit(&self, command: &Command) -> Result<(), ProposeError>;
}

/// Decides which version reads may use (docs/ARCHITECTURE.md §1 ReadGate).
pub trait ReadGate: Send + Sync + 'static {
    /// A version ≥ every commit acknowledged before the call started, already applied on this
    /// node (a linearizable read barrier; weaker when configured `lease`/`stale`).
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>>;

    /// Waits until `version` is applied on this node, at most `timeout`.
    fn wait_applied(
        &self,
        version: Version,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>>;

    /// The version applied on this node right now (no barrier).
    fn applied_version(&self) -> Version;

    /// Resolves once this node may read the group's data at `version`: every commit of the
    /// group with a version ≤ `version` that will ever apply has applied here (docs/sharding.md
    /// §5.2). `wait` bounds the wait for a version nobody has reached yet (`FUTURE_VERSION`).
    ///
    /// A group whose commits all draw their versions on this group's own leader (a standalone
    /// node, the one group of an unsharded cluster) applies them in version order, so this is
    /// "applied here ≥ `version`". A data group of a sharded cluster draws from group 0's
    /// oracle and overrides it with a read barrier carrying `version`.
    fn cover(&self, version: Version, wait: Duration) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(async move {
            if version > self.applied_version() {
                self.wait_applied(version, wait).await?;
            }
            Ok(())
        })
    }
    /// One commit version from this source's oracle, unique (read versions may be shared by
    /// the reads batched with them: docs/sharding.md §3.3), for a commit across groups whose
    /// participants all prepared (§6.3 step 2). Only group 0's oracle hands them out; any other
    /// source refuses with `UNAVAILABLE`.
    fn commit_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        Box::pin(async {
            Err(ReadError::Propose(ProposeError::Unavailable(
                "this read-version source hands out no commit versions: commits across groups \
                 need group 0's oracle"
                    .into(),
            )))
        })
    }

    /// Resolves once a commit reading at `version` may be proposed to this group: `version` is
    /// not in the future (`FUTURE_VERSION` after `wait` otherwise). The group's conflict check
    /// at apply covers the rest, so a data group needs no read barrier here, only the oracle's
    /// word that `version` was handed out (every later commit version is above it).
    fn admit_read_version(
        &self,
        version: Version,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        self.cover(version, wait)
    }
}

/// A member's role, health and view: the same types the admin API serves (one vocabulary from
/// the Raft core to `dolmen cluster status`).
pub use dolmen_admin::{Health, MemberView, Role};

/// Membership, leadership and terms as seen from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// This node's id.
    pub this_node: NodeId,
    /// Every member, ordered by id.
    pub members: Vec<MemberView>,
    /// The leader, when known.
    pub leader: Option<NodeId>,
    /// The current term (1 for a standalone node, which is its own leader).
    pub term: u64,
}
