//! The pieces a data group of a sharded node adds (docs/sharding.md §2, §5.2): group 0's
//! oracle as this node reaches it ([`GroupZeroOracle`]: in process when this node leads group
//! 0, else one batched `Timestamps` stream to its leader), the gateway's read-version source
//! over it ([`OracleGate`]), and the read barrier that carries a version (`Shared::cover`).
//!
//! ```text
//!  gateway read ─▶ OracleGate::read_version ─▶ GroupZeroOracle::grant(0, read) ─▶ R
//!     └▶ data group g: cover(R): applied_g ≥ R? done
//!          else R handed out by the oracle yet? (else wait, then FUTURE_VERSION)
//!               ─▶ barrier with R on g's leader: settled(R), then a ReadIndex round
//!               ─▶ wait applied index ≥ it ─▶ engine_g.mark_complete(R)
//! ```
//!
//! Why a read at `R` then sees exactly the group's commits at or below `R` (invariant 3 of
//! docs/sharding.md §13): a commit's version is drawn from the oracle after the commit was
//! registered in its leader's `pending`; `R` was drawn before the barrier started, so a commit
//! at or below `R` registered before the barrier did, and the barrier waits for it; one
//! registered later draws a version above `R`. A commit handed to an earlier leader's log is
//! either in the new leader's log before its blank entry (covered by every read index) or never
//! commits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::Version;

use crate::network::OracleClient;
use crate::oracle::VersionGrant;
use crate::raft_replicator::Shared;
use crate::replicator::{BoxFuture, ProposeError, ReadError, ReadGate};

/// Group 0's oracle as this node's data groups and gateway reach it.
pub struct GroupZeroOracle {
    /// Group 0 on this node.
    metadata: Arc<Shared>,
    /// The `Timestamps` streams to group 0's leader when it is another node.
    client: OracleClient,
    /// The highest version this node has seen the oracle hand out (every version up to it was
    /// handed out, or burned).
    issued: AtomicU64,
}

impl std::fmt::Debug for GroupZeroOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupZeroOracle")
            .field("issued", &self.issued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GroupZeroOracle {
    /// The oracle of group 0, whose member on this node is `metadata`.
    pub(crate) fn new(metadata: Arc<Shared>) -> Arc<Self> {
        let client = metadata.peers.oracle().clone();
        Arc::new(Self {
            metadata,
            client,
            issued: AtomicU64::new(0),
        })
    }

    /// `count` commit versions and, if `want_read`, a read version, from group 0's leader:
    /// waits for one (an election of group 0) within its leader wait.
    ///
    /// # Errors
    /// Nothing was committed: `NotLeader`/`LeaderUnreachable`/`Unavailable` when no leader of
    /// group 0 answered in time.
    ///
    /// A boxed future: group 0's sequencer is the same type as the data groups' that call
    /// this, so an `async fn` here would be a future containing itself.
    pub(crate) fn grant(
        &self,
        count: u32,
        want_read: bool,
    ) -> BoxFuture<'_, Result<VersionGrant, ProposeError>> {
        Box::pin(self.grant_inner(count, want_read))
    }

    async fn grant_inner(&self, count: u32, want_read: bool) -> Result<VersionGrant, ProposeError> {
        let group0 = &self.metadata;
        let deadline = Instant::now() + group0.leader_wait;
        loop {
            let seen = group0.leadership();
            let result = if group0.is_leader() {
                group0.grant_versions(count, want_read).await
            } else {
                match group0.leader().filter(|(id, _)| *id != group0.node_id) {
                    Some((leader, addr)) => {
                        self.client
                            .versions(
                                leader,
                                &addr.peer_addr,
                                count,
                                want_read,
                                group0.rpc_timeout,
                            )
                            .await
                    }
                    None => Err(group0.not_leader()),
                }
            };
            match result {
                Ok(grant) => {
                    let last = grant
                        .read_version
                        .unwrap_or(0)
                        .max((grant.first + u64::from(grant.count)).saturating_sub(1));
                    self.issued.fetch_max(last, Ordering::SeqCst);
                    return Ok(grant);
                }
                Err(refused) if crate::raft_replicator::wait_for_next_leader(&refused) => {
                    group0.before_next_try(seen, refused, deadline).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A read version: at least every version the oracle handed out before the call.
    pub(crate) async fn read_version(&self) -> Result<Version, ProposeError> {
        let grant = self.grant(0, true).await?;
        grant.read_version.ok_or_else(|| {
            ProposeError::Unavailable("group 0's oracle answered without a read version".into())
        })
    }

    /// Resolves once the oracle has handed out `version` (so no commit can be drawn at or
    /// below it any more without this node's barriers seeing it registered); asks again until
    /// `wait` passes, then `FUTURE_VERSION`.
    pub(crate) async fn check_issued(
        &self,
        version: Version,
        wait: Duration,
    ) -> Result<(), ReadError> {
        let start = Instant::now();
        loop {
            if version <= self.issued.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.read_version().await?;
            let issued = self.issued.load(Ordering::SeqCst);
            if version <= issued {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Err(ReadError::FutureVersion {
                    version,
                    applied: issued,
                    waited,
                });
            }
            // Versions are microseconds: the oracle reaches `version` in about that long.
            let ahead = Duration::from_micros(version - issued);
            tokio::time::sleep(ahead.min(wait - waited).min(Duration::from_millis(50))).await;
        }
    }
}

/// The gateway's read versions on a sharded node: group 0's oracle (docs/sharding.md §5.1).
/// Only [`ReadGate::read_version`] is meant for use; it holds no data, so its applied version is
/// the highest version it knows the oracle handed out.
#[derive(Clone, Debug)]
pub struct OracleGate {
    oracle: Arc<GroupZeroOracle>,
}

impl OracleGate {
    /// The read-version source over `oracle`.
    pub fn new(oracle: Arc<GroupZeroOracle>) -> Self {
        Self { oracle }
    }
}

impl ReadGate for OracleGate {
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        Box::pin(async move { Ok(self.oracle.read_version().await?) })
    }

    fn wait_applied(
        &self,
        version: Version,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(self.oracle.check_issued(version, timeout))
    }

    fn applied_version(&self) -> Version {
        self.oracle.issued.load(Ordering::SeqCst)
    }

    fn commit_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        Box::pin(async move { Ok(self.oracle.grant(1, false).await?.first) })
    }
}
