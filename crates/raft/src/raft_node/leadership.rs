//! Leadership as it changes, counted for `/metrics`: elections this node started, changes of
//! the leader it knows, and the time it knew no leader. A task follows openraft's server
//! metrics, which change only with the role, the leader or the membership (not per write).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;

use crate::types::Raft;
use crate::NodeId;

/// The counters, shared between the task and the scrapes.
#[derive(Debug, Default)]
pub(crate) struct LeadershipStats {
    elections: AtomicU64,
    leader_changes: AtomicU64,
    /// Time without a known leader in finished periods.
    leaderless: parking_lot::Mutex<Leaderless>,
}

#[derive(Debug, Default)]
struct Leaderless {
    finished: Duration,
    since: Option<Instant>,
}

/// One reading of [`LeadershipStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// Elections this node started (it became a candidate).
    pub elections: u64,
    /// Times the leader this node knows of became another node (a first leader included).
    pub leader_changes: u64,
    /// Total time this node knew no leader, the current period included.
    pub leaderless: Duration,
}

impl LeadershipStats {
    /// Records one observation of the role and the known leader.
    fn observe(
        &self,
        was: &mut Observed,
        state: ServerState,
        leader: Option<NodeId>,
        now: Instant,
    ) {
        if state == ServerState::Candidate && was.state != ServerState::Candidate {
            self.elections.fetch_add(1, Ordering::Relaxed);
        }
        if leader.is_some() && leader != was.leader {
            self.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        let mut l = self.leaderless.lock();
        match (leader, l.since) {
            (None, None) => l.since = Some(now),
            (Some(_), Some(since)) => {
                l.finished += now.saturating_duration_since(since);
                l.since = None;
            }
            _ => {}
        }
        *was = Observed { state, leader };
    }

    pub(crate) fn read(&self, now: Instant) -> Leadership {
        let l = self.leaderless.lock();
        let current = l
            .since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        Leadership {
            elections: self.elections.load(Ordering::Relaxed),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
            leaderless: l.finished + current,
        }
    }
}

/// The last role and leader seen.
struct Observed {
    state: ServerState,
    leader: Option<NodeId>,
}

/// Follows `raft`'s server metrics into `stats` until the core stops.
pub(crate) fn follow(raft: Raft, stats: Arc<LeadershipStats>) {
    tokio::spawn(async move {
        let mut server = raft.server_metrics();
        let mut was = Observed {
            state: ServerState::Follower,
            leader: None,
        };
        loop {
            let (state, leader) = {
                let m = server.borrow_watched();
                (m.state, m.current_leader)
            };
            stats.observe(&mut was, state, leader, Instant::now());
            if server.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_elections_leader_changes_and_leaderless_time() {
        let stats = LeadershipStats::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut was = Observed {
            state: ServerState::Follower,
            leader: None,
        };
        stats.observe(&mut was, ServerState::Follower, None, at(0));
        stats.observe(&mut was, ServerState::Follower, Some(1), at(100));
        stats.observe(&mut was, ServerState::Follower, Some(1), at(150));
        // Node 1 dies; this node campaigns and wins.
        stats.observe(&mut was, ServerState::Candidate, None, at(1000));
        stats.observe(&mut was, ServerState::Leader, Some(0), at(1300));
        let read = stats.read(at(2000));
        assert_eq!(read.elections, 1);
        assert_eq!(read.leader_changes, 2);
        assert_eq!(read.leaderless, Duration::from_millis(100 + 300));
        // A period still open counts up to the reading.
        stats.observe(&mut was, ServerState::Candidate, None, at(3000));
        assert_eq!(stats.read(at(3250)).leaderless, Duration::from_millis(650));
        assert_eq!(stats.read(at(3250)).elections, 2);
    }
}
