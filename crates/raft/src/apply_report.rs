//! `replication_mode = "all"`: keeps the leader's [`ApplyTracker`] fed. Runs on every member
//! of an `all` group (and nowhere in `quorum` mode):
//! - while this node leads: the voters of the membership (every report forgotten at a new
//!   term, so followers re-report to the new leader) and this node's own applied index;
//! - while it follows: one `AppliedStream` to the current leader, carrying this node's applied
//!   index each time it changes, at most one report per [`COALESCE`]; re-opened when the
//!   leader changes or the stream breaks.
//!
//! ```text
//!  server metrics (role, leader, membership) ─▶ lead: tracker.lead/set_voters, report(self)
//!  applied index (watch) ──────────────────────▶ follow: PeerClient::applied_stream(leader)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use tokio::sync::watch;

use crate::apply_tracker::ApplyTracker;
use crate::network::PeerClient;
use crate::state_machine::AppliedPosition;
use crate::types::{voter_with_addr, Raft, Vote};
use crate::NodeId;

/// At most one report per this much time: a follower applying many small batches sends the
/// latest index once per interval, not one message per batch.
pub(crate) const COALESCE: Duration = Duration::from_millis(1);

/// What this node does for the tracker, from the Raft core's server metrics.
enum Part {
    /// It leads in the term of `vote`; the voters and their peer addresses.
    Lead {
        vote: Vote,
        voters: BTreeMap<NodeId, String>,
    },
    /// It follows `leader`, reachable at `addr`.
    Follow { leader: NodeId, addr: String },
    /// No leader is known (an election), or the leader is not in the membership.
    Wait,
}

/// The reporting task of one node.
pub(crate) struct ApplyReporting {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    pub(crate) peers: PeerClient,
    /// How far this node applied (the state machine publishes it); reports carry the index.
    pub(crate) applied: watch::Receiver<AppliedPosition>,
    pub(crate) tracker: Arc<ApplyTracker>,
    /// Pause before re-opening a stream that failed.
    pub(crate) retry: Duration,
}

impl ApplyReporting {
    /// Runs until `stop` turns true (or its sender is gone).
    pub(crate) fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                () = stopped => {}
                () = self.run() => {}
            }
        })
    }

    fn part(&self) -> Part {
        let server = self.raft.server_metrics();
        let m = server.borrow_watched();
        let membership = m.membership_config.membership();
        if m.state == ServerState::Leader {
            let voters = membership
                .voter_ids()
                .map(|id| voter_with_addr(membership, id))
                .collect();
            return Part::Lead {
                vote: m.vote,
                voters,
            };
        }
        match m.current_leader {
            Some(leader) if leader != self.node_id => match membership.get_node(&leader) {
                Some(node) => Part::Follow {
                    leader,
                    addr: node.peer_addr.clone(),
                },
                None => Part::Wait,
            },
            _ => Part::Wait,
        }
    }

    async fn run(self) {
        let mut server = self.raft.server_metrics();
        // The term this node last started tracking as the leader.
        let mut led: Option<Vote> = None;
        // What the running task does (`None`: leading), and the task.
        let mut task: Option<(Option<NodeId>, AbortOnDrop)> = None;
        loop {
            let part = self.part();
            let role = match &part {
                Part::Lead { .. } => Some(None),
                Part::Follow { leader, .. } => Some(Some(*leader)),
                Part::Wait => None,
            };
            if task.as_ref().map(|(r, _)| Some(*r)) != Some(role) {
                task = None;
            }
            match part {
                Part::Lead { vote, voters } => {
                    if led.as_ref() == Some(&vote) {
                        self.tracker.set_voters(voters);
                    } else {
                        self.tracker.lead(voters);
                        led = Some(vote);
                    }
                    if task.is_none() {
                        let own =
                            report_own(self.tracker.clone(), self.node_id, self.applied.clone());
                        task = Some((None, AbortOnDrop(tokio::spawn(own))));
                    }
                }
                Part::Follow { leader, addr } => {
                    led = None;
                    if task.is_none() {
                        let to = report_to(
                            self.peers.clone(),
                            leader,
                            addr,
                            self.applied.clone(),
                            self.retry,
                        );
                        task = Some((Some(leader), AbortOnDrop(tokio::spawn(to))));
                    }
                }
                Part::Wait => led = None,
            }
            if server.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A task that ends when its handle is dropped (a role this node no longer has, or shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// As the leader: this node's own applied index, as it changes.
async fn report_own(
    tracker: Arc<ApplyTracker>,
    me: NodeId,
    mut applied: watch::Receiver<AppliedPosition>,
) {
    loop {
        let index = applied.borrow_and_update().index;
        tracker.report(me, index);
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// As a follower of `leader` at `addr`: one stream of reports at a time; after one ends or
/// fails, a pause of `retry`, then another.
async fn report_to(
    peers: PeerClient,
    leader: NodeId,
    addr: String,
    applied: watch::Receiver<AppliedPosition>,
    retry: Duration,
) {
    loop {
        let reports = reports(applied.clone());
        if let Err(e) = peers.applied_stream(leader, &addr, reports).await {
            tracing::debug!(leader, addr, error = %e, "applied reports: the stream to the leader failed; re-opening");
        }
        tokio::time::sleep(retry).await;
    }
}

/// The applied index now, then each time it changes, at most once per [`COALESCE`].
fn reports(applied: watch::Receiver<AppliedPosition>) -> BoxStream<'static, u64> {
    Box::pin(futures::stream::unfold(
        (applied, true),
        |(mut rx, first)| async move {
            if !first {
                rx.changed().await.ok()?;
                tokio::time::sleep(COALESCE).await;
            }
            let index = rx.borrow_and_update().index;
            Some((index, (rx, false)))
        },
    ))
}
