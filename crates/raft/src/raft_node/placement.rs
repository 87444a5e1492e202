//! Leader placement (docs/sharding.md §4.5): each data group's leader hands the group's
//! leadership to the group's preferred node (node `(g − 1) mod N`, the first voter of its
//! range) when that node is a healthy, caught-up voter, so the groups' leaderships, and the
//! write work that comes with them, spread over the nodes instead of piling up on one.
//!
//! ```text
//!  every `interval`, for each data group this node leads (in order):
//!    preferred is another node ─▶ led here ≥ `settle` ─▶ not tried for `retry_after`
//!      ─▶ preferred is a voter, acknowledged within an election timeout, matched ≥ committed
//!      ─▶ transfer (bounded) ─▶ log ─▶ next pass   (one move at a time per node)
//! ```
//!
//! Every node runs this for the groups it leads: only a group's leader can hand its leadership
//! over, and it alone sees the preferred node's health and log position (its replication
//! metrics), so no node has to learn another group's leader or call it. A node that returns
//! after a crash or a partition gets its groups back once it has caught up. Bounded: each group
//! is tried at most once per `retry_after`, whatever came of the try, so placement never fights
//! an operator's transfer or the fault injector's more often than that.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;

use super::{DataGroup, MembershipOutcome, RaftNode};
use crate::log_store::GroupId;
use crate::raft_replicator::follower_health;
use crate::replicator::Health;
use crate::NodeId;

/// How leader placement runs on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementOptions {
    /// Each data group's preferred leader (the first voter of its range descriptor,
    /// `routing::Placement`). Groups not listed are left alone.
    pub preferred: BTreeMap<GroupId, NodeId>,
    /// How often the node looks at the groups it leads.
    pub interval: Duration,
    /// A group is moved only once this node has led it (in one term) this long: an election or
    /// a transfer settles first.
    pub settle: Duration,
    /// After a move of a group is tried, the next try of that group waits this long, whatever
    /// its outcome.
    pub retry_after: Duration,
}

impl PlacementOptions {
    /// Placement of `preferred` with timings derived from the election timeout: a look every
    /// election timeout (at least 200 ms), moves after leading for 3 election timeouts, retries
    /// after 20 (at least 5 s).
    pub fn new(preferred: BTreeMap<GroupId, NodeId>, election_timeout: Duration) -> Self {
        Self {
            preferred,
            interval: election_timeout.max(Duration::from_millis(200)),
            settle: election_timeout * 3,
            retry_after: (election_timeout * 20).max(Duration::from_secs(5)),
        }
    }
}

/// What one look at a group this node leads found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The preferred node leads it already, or the group has no preferred node.
    InPlace,
    /// Not now (led here too briefly, tried too recently, the preferred node not ready).
    Wait(&'static str),
    /// Hand the leadership to this node.
    Move(NodeId),
}

/// Per-group memory of the placement loop on one node.
#[derive(Default)]
struct Memory {
    /// The term in which this node was seen leading the group, and since when.
    leading: HashMap<GroupId, (u64, Instant)>,
    /// When a move of the group was last tried.
    tried: HashMap<GroupId, Instant>,
}

impl RaftNode {
    /// Runs leader placement for this node's data groups until `stop` resolves. A node that
    /// runs no data group returns at once.
    pub async fn place_leaders(
        self: Arc<Self>,
        options: PlacementOptions,
        stop: impl Future<Output = ()> + Send,
    ) {
        if options.preferred.is_empty() {
            return;
        }
        tokio::pin!(stop);
        let mut memory = Memory::default();
        // Bounded by `stop`; each pass is bounded by one transfer's wait.
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(options.interval) => {}
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.place_one(&options, &mut memory) => {}
            }
        }
    }

    /// One pass: moves the first group this node leads that should move, if any.
    async fn place_one(&self, options: &PlacementOptions, memory: &mut Memory) {
        let me = self.options.node_id;
        let now = Instant::now();
        for group in self.data_groups() {
            let verdict = verdict(
                &group,
                me,
                options,
                memory,
                now,
                self.options.election_timeout,
            );
            let Verdict::Move(to) = verdict else {
                if let Verdict::Wait(why) = verdict {
                    tracing::trace!(group = group.group, why, "placement: not moving yet");
                }
                continue;
            };
            memory.tried.insert(group.group, now);
            tracing::info!(
                group = group.group,
                from = me,
                to,
                "placement: moving the group's leadership to its preferred node"
            );
            let limit = self.options.election_timeout * 10;
            match group.transfer_leader(to, limit).await {
                Ok(MembershipOutcome::Changed) => tracing::info!(
                    group = group.group,
                    from = me,
                    to,
                    "placement: the preferred node leads the group"
                ),
                Ok(MembershipOutcome::Unchanged) => {}
                Err(e) => tracing::warn!(
                    group = group.group,
                    from = me,
                    to,
                    error = %e,
                    retry_after = ?options.retry_after,
                    "placement: the move did not happen"
                ),
            }
            // One move at a time: the next one waits for the next pass.
            return;
        }
    }
}

/// Whether group `group`, on node `me`, should hand its leadership to its preferred node now.
fn verdict(
    group: &DataGroup,
    me: NodeId,
    options: &PlacementOptions,
    memory: &mut Memory,
    now: Instant,
    election_timeout: Duration,
) -> Verdict {
    let metrics = group.raft.metrics();
    let m = metrics.borrow_watched();
    if m.state != ServerState::Leader {
        memory.leading.remove(&group.group);
        return Verdict::InPlace;
    }
    let Some(&preferred) = options.preferred.get(&group.group) else {
        return Verdict::InPlace;
    };
    if preferred == me {
        return Verdict::InPlace;
    }
    let since = memory
        .leading
        .entry(group.group)
        .and_modify(|(term, since)| {
            if *term != m.current_term {
                *term = m.current_term;
                *since = now;
            }
        })
        .or_insert((m.current_term, now))
        .1;
    if now.saturating_duration_since(since) < options.settle {
        return Verdict::Wait("led here too briefly");
    }
    if memory
        .tried
        .get(&group.group)
        .is_some_and(|at| now.saturating_duration_since(*at) < options.retry_after)
    {
        return Verdict::Wait("tried recently");
    }
    if !m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == preferred)
    {
        return Verdict::Wait("the preferred node is not a voter");
    }
    if follower_health(&m, preferred, election_timeout) != Some(Health::Healthy) {
        return Verdict::Wait("the preferred node is not healthy");
    }
    // Caught up to what is committed: the transfer pauses the group's proposals until the
    // target has the leader's whole log, so a lagging target would stall the group.
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&preferred).cloned().flatten())
        .map_or(0, |l| l.index);
    let committed = m.local_committed.as_ref().map_or(0, |l| l.index);
    if matched < committed {
        return Verdict::Wait("the preferred node is behind");
    }
    Verdict::Move(preferred)
}
