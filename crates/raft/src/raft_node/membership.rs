//! Membership changes on the leader: add a node (as a learner, promoted once caught up),
//! remove one (never the last voter, never leaving no reachable majority), hand the leadership
//! of group 0 or of a data group to another voter of it. Each refusal is a [`MembershipError`] the caller can act on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::metrics::WaitError;
use openraft::ChangeMembers;

use super::error::{CoreStopped, MembershipError, MembershipStep};
use super::{DataGroup, RaftNode};
use crate::apply_tracker::ReplicationMode;
use crate::log_store::GroupId;
use crate::raft_replicator::{follower_health, Shared};
use crate::replicator::Health;
use crate::types::{voter_with_addr, Membership, NodeAddr, Raft, GROUP_ID};
use crate::NodeId;

/// What a membership operation did: the admin API's own answer.
pub use dolmen_admin::MembershipOutcome;

impl RaftNode {
    /// Adds node `id` at `addr` as a voter: first as a learner, waiting until it has caught up
    /// with the log, then promoted. Idempotent: a voter already at `addr` is left alone. Only
    /// the leader can change the membership.
    pub async fn add_node(
        &self,
        id: NodeId,
        addr: NodeAddr,
    ) -> Result<MembershipOutcome, MembershipError> {
        self.require_unsharded()?;
        self.require_leader()?;
        // `all` waits for every voter: one that is not a configured node is refused up front,
        // as it would be at the next start (`startup.rs`).
        if matches!(self.options.replication, ReplicationMode::All { .. })
            && !self.options.initial_members.contains_key(&id)
        {
            return Err(MembershipError::UnconfiguredVoter {
                group: GROUP_ID,
                id,
                configured: self.options.initial_members.keys().copied().collect(),
            });
        }
        let (voters, known) = self.membership_of(id);
        if voters.contains(&id) {
            return match known {
                Some(current) if current.peer_addr == addr.peer_addr => {
                    Ok(MembershipOutcome::Unchanged)
                }
                Some(current) => Err(MembershipError::VoterElsewhere {
                    id,
                    current: current.peer_addr,
                    requested: addr.peer_addr,
                }),
                None => Ok(MembershipOutcome::Unchanged),
            };
        }
        self.raft
            .add_learner(id, addr, true)
            .await
            .map_err(|source| MembershipError::Raft {
                step: MembershipStep::AddLearner(id),
                source,
            })?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.bounded(MembershipStep::Promote(id), change).await?;
        Ok(MembershipOutcome::Changed)
    }

    /// Removes node `id` from the membership. Refuses to remove the last voter, and refuses a
    /// change that would leave the remaining voters without a reachable majority. Idempotent.
    pub async fn remove_node(&self, id: NodeId) -> Result<MembershipOutcome, MembershipError> {
        self.require_unsharded()?;
        self.require_leader()?;
        let (voters, known) = self.membership_of(id);
        if known.is_none() {
            return Ok(MembershipOutcome::Unchanged);
        }
        if voters.contains(&id) {
            let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            if remaining.is_empty() {
                return Err(MembershipError::LastVoter(id));
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
                return Err(MembershipError::NoMajority {
                    id,
                    remaining: remaining.len(),
                    reachable: healthy,
                });
            }
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.bounded(MembershipStep::RemoveVoter(id), change)
                .await?;
        } else {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.bounded(MembershipStep::RemoveLearner(id), change)
                .await?;
        }
        Ok(MembershipOutcome::Changed)
    }

    /// Hands group 0's leadership to voter `to` and waits (≤ 10 election timeouts) until it
    /// leads.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<MembershipOutcome, MembershipError> {
        self.transfer_group_leader(GROUP_ID, to).await
    }

    /// Hands the leadership of group `group` (0: the metadata group; a data group of a sharded
    /// node) to its voter `to` and waits (≤ 10 election timeouts) until it leads. Only that
    /// group's leader can; `unchanged` when `to` already leads it.
    pub async fn transfer_group_leader(
        &self,
        group: GroupId,
        to: NodeId,
    ) -> Result<MembershipOutcome, MembershipError> {
        let (node, limit) = (self.options.node_id, self.options.election_timeout * 10);
        if group == GROUP_ID {
            return transfer(&self.raft, &self.shared, group, node, to, limit).await;
        }
        let data = self.data_groups();
        let Some(data_group) = data.iter().find(|g| g.group == group) else {
            return Err(MembershipError::UnknownGroup {
                group,
                groups: std::iter::once(GROUP_ID)
                    .chain(data.iter().map(|g| g.group))
                    .collect(),
            });
        };
        data_group.transfer_leader(to, limit).await
    }

    /// Before this node stops: for group 0 and every data group it leads, hands leadership to
    /// the most up-to-date voter (etcd does the same on a graceful stop), so no group waits an
    /// election timeout for a new leader. The data groups go first, together; each waits at
    /// most `limit`. Returns group 0's new leader, or `None` when this node did not lead it,
    /// no other voter exists, or the transfer did not finish in time (then the others elect a
    /// leader when their election timeout passes, as after a crash).
    pub async fn hand_off_leadership(&self, limit: Duration) -> Option<NodeId> {
        let (node, election_timeout) = (self.options.node_id, self.options.election_timeout);
        let data_groups = self.data_groups();
        futures::future::join_all(
            data_groups
                .iter()
                .map(|g| hand_off(&g.raft, g.group, node, election_timeout, limit)),
        )
        .await;
        hand_off(&self.raft, GROUP_ID, node, election_timeout, limit).await
    }

    /// Proposes a membership change and waits for it, at most 20 election timeouts (a change
    /// whose new majority is unreachable cannot commit).
    async fn bounded(
        &self,
        step: MembershipStep,
        change: ChangeMembers<NodeId, NodeAddr>,
    ) -> Result<(), MembershipError> {
        let limit = self.options.election_timeout * 20;
        match tokio::time::timeout(limit, self.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(MembershipError::Raft { step, source }),
            Err(_) => Err(MembershipError::NotCommitted { step, limit }),
        }
    }

    /// Voter ids, and `id`'s addresses if it is a member.
    pub(super) fn membership_of(&self, id: NodeId) -> (BTreeSet<NodeId>, Option<NodeAddr>) {
        membership_of(&self.raft, id)
    }

    fn require_unsharded(&self) -> Result<(), MembershipError> {
        match self.data_groups.lock().len() {
            0 => Ok(()),
            groups => Err(MembershipError::Sharded { groups }),
        }
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        require_leader(&self.shared, GROUP_ID, self.options.node_id)
    }
}

impl DataGroup {
    /// Hands this group's leadership to its voter `to` and waits at most `limit` until it
    /// leads (on this group's leader only).
    pub(super) async fn transfer_leader(
        &self,
        to: NodeId,
        limit: Duration,
    ) -> Result<MembershipOutcome, MembershipError> {
        // A hibernating group's timers are off: the transfer wakes it here (the peer server
        // wakes the target's when the TransferLeader message arrives).
        self.shared.wake();
        transfer(&self.raft, &self.shared, self.group, self.this.0, to, limit).await
    }
}

/// Voter ids of `raft`'s membership, and `id`'s addresses if it is a member.
fn membership_of(raft: &Raft, id: NodeId) -> (BTreeSet<NodeId>, Option<NodeAddr>) {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let membership = m.membership_config.membership();
    (
        membership.voter_ids().collect(),
        membership.get_node(&id).cloned(),
    )
}

/// `Ok` when `node` leads group `group` (its `shared`), else the refusal naming the leader.
fn require_leader(shared: &Shared, group: GroupId, node: NodeId) -> Result<(), MembershipError> {
    if shared.is_leader() {
        return Ok(());
    }
    Err(MembershipError::NotLeader {
        node,
        group,
        leader: shared.leader().map(|(id, addr)| (id, addr.client_addr)),
    })
}

/// Hands the leadership of group `group` (`raft`, `shared`) on node `node` to its voter `to`
/// and waits at most `limit` until `to` leads. Refuses a target that is not a voter, and on a
/// node that does not lead the group; `unchanged` when `to` already leads it.
async fn transfer(
    raft: &Raft,
    shared: &Shared,
    group: GroupId,
    node: NodeId,
    to: NodeId,
    limit: Duration,
) -> Result<MembershipOutcome, MembershipError> {
    let (voters, known) = membership_of(raft, to);
    if !voters.contains(&to) {
        let voters = voters.into_iter().collect();
        return Err(match known {
            None => MembershipError::UnknownNode {
                id: to,
                group,
                voters,
            },
            Some(_) => MembershipError::NotVoter {
                id: to,
                group,
                voters,
            },
        });
    }
    if shared.leader().is_some_and(|(id, _)| id == to) {
        return Ok(MembershipOutcome::Unchanged);
    }
    require_leader(shared, group, node)?;
    raft.trigger()
        .transfer_leader(to)
        .await
        .map_err(CoreStopped)?;
    match raft
        .wait(Some(limit))
        .current_leader(to, "leader transfer")
        .await
    {
        Ok(_) => Ok(MembershipOutcome::Changed),
        // The timeout's own text carries openraft's whole metrics dump; say what matters.
        Err(WaitError::Timeout(..)) => Err(MembershipError::TransferTimedOut {
            group,
            to,
            limit,
            leader: shared.leader().map(|(id, _)| id),
        }),
        Err(WaitError::ShuttingDown) => Err(MembershipError::ShuttingDown),
    }
}

/// The first voter of `membership` that is not one of the `configured` nodes, with its peer
/// address: under `replication_mode = "all"` such a voter refuses the start.
pub(super) fn unconfigured_voter(
    membership: &Membership,
    configured: &BTreeMap<NodeId, NodeAddr>,
) -> Option<(NodeId, String)> {
    membership
        .voter_ids()
        .find(|id| !configured.contains_key(id))
        .map(|id| voter_with_addr(membership, id))
}

/// Hands the leadership of `raft` (group `group`) on node `node` to the most up-to-date voter
/// if this node leads it; waits at most `limit`. The new leader, or `None`.
async fn hand_off(
    raft: &Raft,
    group: crate::log_store::GroupId,
    node: NodeId,
    election_timeout: Duration,
    limit: Duration,
) -> Option<NodeId> {
    if raft.metrics().borrow_watched().state != openraft::ServerState::Leader {
        return None;
    }
    let to = most_up_to_date_voter(raft, node, election_timeout)?;
    tracing::info!(group, to, "stopping: handing leadership over");
    if let Err(e) = raft.trigger().transfer_leader(to).await {
        tracing::warn!(group, to, error = %e, "stopping: could not hand leadership over");
        return None;
    }
    match raft
        .wait(Some(limit))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != node),
            "leadership handed over",
        )
        .await
    {
        Ok(m) => m.current_leader,
        Err(e) => {
            tracing::warn!(group, to, error = %e, "stopping: leadership did not move in time");
            None
        }
    }
}

/// The other voter of `raft` with the highest replicated log index, among those its leader
/// (`node`) hears from.
fn most_up_to_date_voter(raft: &Raft, node: NodeId, election_timeout: Duration) -> Option<NodeId> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let replication = m.replication.as_ref()?;
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|&id| id != node)
        .filter(|&id| {
            follower_health(&m, id, election_timeout).is_some_and(|h| h != Health::Unreachable)
        })
        .max_by_key(|id| {
            replication
                .get(id)
                .cloned()
                .flatten()
                .map_or(0, |log_id| log_id.index)
        })
}
