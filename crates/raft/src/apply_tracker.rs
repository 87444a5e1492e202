//! `replication_mode = "all"` on the leader (docs/replication.md §7.5): how far each voter has
//! applied ([`ApplyTracker`]), and the one place a committed write waits until every voter has
//! applied it ([`WriteAck::acknowledge`]), for this node's writes and forwarded ones alike.
//!
//! ```text
//!  follower: applied index ─(AppliedStream, ≤ 1 report/ms)─▶ ApplyTracker::report ◀─ leader's own
//!  leader:   membership, new term ─▶ ApplyTracker::lead / set_voters
//!  propose | Forward ─client_write─▶ WriteAck::acknowledge ─quorum──────────────▶ Ok(Applied)
//!                                                          └─all: wait_all(index)─▶ Ok | TIMEOUT
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::Outcome;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::{Applied, NodeId, ProposeError};

/// When a client write is acknowledged (`[consensus] replication_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicationMode {
    /// Committed on a majority and applied on the leader: Raft's own acknowledgement.
    #[default]
    Quorum,
    /// Also applied on every voter of the current membership, waiting at most `wait`; past it
    /// the write answers `TIMEOUT` naming the voter that lags.
    All {
        /// `[consensus] all_wait_ms`.
        wait: Duration,
    },
}

/// Most distinct node ids the tracker remembers reports of (members are far fewer; this only
/// bounds what a misbehaving peer can make it hold).
const MAX_TRACKED_NODES: usize = 1024;

/// A voter that had not applied a write when the wait of `replication_mode = "all"` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lagging {
    /// The voter with the lowest applied index.
    pub node: NodeId,
    /// Its peer address, as the membership names it.
    pub addr: String,
    /// The index it had reported applying (0 when it never reported to this leader).
    pub applied: u64,
    /// The write's log index.
    pub index: u64,
    /// How long the write waited: the wait's bound (`all_wait_ms`).
    pub waited: Duration,
}

impl From<Lagging> for ProposeError {
    fn from(l: Lagging) -> Self {
        ProposeError::NotAppliedByAll {
            node: l.node,
            addr: l.addr,
            applied: l.applied,
            index: l.index,
            waited: l.waited,
        }
    }
}

/// On the leader: the latest applied index each member reported, and the writes waiting until
/// every voter has applied theirs. A waiter is woken once, when the lowest applied index among
/// the voters reaches its index (not on every report).
#[derive(Debug, Default)]
pub struct ApplyTracker {
    inner: Mutex<Inner>,
    /// Writes answered `TIMEOUT` because a voter had not applied them in time.
    timeouts: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The voters of the current membership and their peer addresses.
    voters: BTreeMap<NodeId, String>,
    /// The latest applied index each node reported (voters or not).
    applied: BTreeMap<NodeId, u64>,
    /// The lowest applied index among the voters (0 while one has not reported).
    floor: u64,
    /// Wakers of the writes waiting, by log index.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

impl Inner {
    /// Recomputes the floor and wakes every waiter at or below it.
    fn wake(&mut self) {
        self.floor = self
            .voters
            .keys()
            .map(|v| self.applied.get(v).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let pending = match self.floor.checked_add(1) {
            Some(above) => self.waiters.split_off(&above),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.waiters, pending);
        for waker in ready.into_values().flatten() {
            // The waiter may have given up meanwhile: nothing to wake then.
            let _ = waker.send(());
        }
    }

    /// The voter with the lowest applied index, with that index.
    fn laggard(&self) -> Option<(NodeId, &str, u64)> {
        self.voters
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    addr.as_str(),
                    self.applied.get(id).copied().unwrap_or(0),
                )
            })
            .min_by_key(|(id, _, applied)| (*applied, *id))
    }
}

impl ApplyTracker {
    /// An empty tracker: no voters, no reports.
    pub fn new() -> Self {
        Self::default()
    }

    /// This node became the leader of a new term with `voters`: every earlier report is
    /// forgotten (followers report to the new leader again). Waiting writes stay.
    pub fn lead(&self, voters: BTreeMap<NodeId, String>) {
        let mut inner = self.inner.lock();
        inner.applied.clear();
        inner.voters = voters;
        inner.wake();
    }

    /// The membership changed: waits are now for `voters`.
    pub fn set_voters(&self, voters: BTreeMap<NodeId, String>) {
        let mut inner = self.inner.lock();
        if inner.voters != voters {
            inner.voters = voters;
            inner.wake();
        }
    }

    /// Node `node` has applied up to `applied` (reports only move forward).
    pub fn report(&self, node: NodeId, applied: u64) {
        let mut inner = self.inner.lock();
        let known = inner.applied.len();
        match inner.applied.get_mut(&node) {
            Some(seen) if *seen >= applied => return,
            Some(seen) => *seen = applied,
            None if known >= MAX_TRACKED_NODES => return,
            None => {
                inner.applied.insert(node, applied);
            }
        }
        if inner.voters.contains_key(&node) {
            inner.wake();
        }
    }

    /// Waits until every voter has applied `index`, at most `limit`.
    ///
    /// # Errors
    /// [`Lagging`] naming the voter with the lowest applied index when `limit` passes first.
    pub async fn wait_all(&self, index: u64, limit: Duration) -> Result<(), Lagging> {
        let woken = {
            let mut inner = self.inner.lock();
            if inner.floor >= index {
                return Ok(());
            }
            let (waker, woken) = oneshot::channel();
            inner.waiters.entry(index).or_default().push(waker);
            woken
        };
        if let Ok(Ok(())) = tokio::time::timeout(limit, woken).await {
            return Ok(());
        }
        let mut inner = self.inner.lock();
        // Our waker's receiver is gone: drop it (and any other abandoned one at this index), so
        // a voter that never catches up does not make the map grow.
        if let Some(wakers) = inner.waiters.get_mut(&index) {
            wakers.retain(|w| !w.is_closed());
            if wakers.is_empty() {
                inner.waiters.remove(&index);
            }
        }
        if inner.floor >= index {
            return Ok(());
        }
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let (node, addr, applied) = inner
            .laggard()
            .map_or((0, String::new(), 0), |(id, addr, applied)| {
                (id, addr.to_owned(), applied)
            });
        // The bound, not the clock: the answer says which setting ran out.
        Err(Lagging {
            node,
            addr,
            applied,
            index,
            waited: limit,
        })
    }

    /// Each voter's applied index as reported to this node (0 = no report yet), by id.
    pub fn voters_applied(&self) -> Vec<(NodeId, u64)> {
        let inner = self.inner.lock();
        inner
            .voters
            .keys()
            .map(|id| (*id, inner.applied.get(id).copied().unwrap_or(0)))
            .collect()
    }

    /// Writes answered `TIMEOUT` because a voter had not applied them within the wait.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }
}

/// How a committed write is acknowledged on the leader: at once (`quorum`), or once every voter
/// has applied it (`all`). The one leader-side step every write path takes after
/// `client_write` (this node's writes and those followers forward), so the mode lives here and
/// nowhere else.
#[derive(Debug, Default)]
pub struct WriteAck {
    mode: ReplicationMode,
    tracker: Arc<ApplyTracker>,
}

impl WriteAck {
    /// Acknowledges under `mode`, with `tracker` holding the voters' reports.
    pub fn new(mode: ReplicationMode, tracker: Arc<ApplyTracker>) -> Self {
        Self { mode, tracker }
    }

    /// The mode.
    pub fn mode(&self) -> ReplicationMode {
        self.mode
    }

    /// The voters' reports.
    pub fn tracker(&self) -> &Arc<ApplyTracker> {
        &self.tracker
    }

    /// The answer to `command`, applied on this node (the leader) at log index `index`. Under
    /// `all`, what a client's commit writes waits until every voter has applied it: a
    /// transaction that committed, the resolve that writes a commit across groups in a
    /// participant, the decision group 0 records for one. One that changed nothing (conflict,
    /// too old, invalid), prepares, and housekeeping (`Compact`, `Noop`, expiry) do not wait.
    ///
    /// # Errors
    /// Under `all`, `NotAppliedByAll` (`TIMEOUT`: committed, not yet applied everywhere) when
    /// a voter has not applied the write within the wait.
    pub async fn acknowledge(
        &self,
        command: CommandKind,
        index: u64,
        applied: Applied,
    ) -> Result<Applied, ProposeError> {
        let ReplicationMode::All { wait } = self.mode else {
            return Ok(applied);
        };
        let waits = match command {
            CommandKind::Commit => matches!(applied.outcome, Outcome::Committed { .. }),
            CommandKind::Resolution => true,
            CommandKind::Other => false,
        };
        if !waits {
            return Ok(applied);
        }
        self.tracker.wait_all(index, wait).await?;
        Ok(applied)
    }
}

/// What [`WriteAck::acknowledge`] needs to know of a command, taken before it is proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// A transaction: waits under `all` when it committed.
    Commit,
    /// What writes or records a commit across groups (a `Resolve` with a commit version, a
    /// `Decide`): waits under `all` once applied.
    Resolution,
    /// Anything else (prepares, aborts, housekeeping): never waits.
    Other,
}

impl CommandKind {
    /// The kind of `command`.
    pub fn of(command: &dolmen_engine::Command) -> Self {
        use dolmen_engine::Command;
        match command {
            Command::Commit(_) => Self::Commit,
            Command::Resolve {
                commit: Some(_), ..
            }
            | Command::Decide(_) => Self::Resolution,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
        ids.iter()
            .map(|id| (*id, format!("127.0.0.1:{}", 9090 + id)))
            .collect()
    }

    #[tokio::test]
    async fn a_waiter_is_woken_only_once_every_voter_reached_its_index() {
        let tracker = Arc::new(ApplyTracker::new());
        tracker.lead(voters(&[0, 1, 2]));
        tracker.report(0, 10);
        let waiting = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.wait_all(10, Duration::from_secs(30)).await })
        };
        let later = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.wait_all(12, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        tracker.report(1, 12);
        tracker.report(2, 9);
        // Voter 2 is below both indexes: neither write is answered.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished() && !later.is_finished());
        // A node that is not a voter changes nothing.
        tracker.report(7, 100);
        tracker.report(2, 11);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!later.is_finished(), "node 0 is still at 10");
        tracker.report(0, 12);
        tracker.report(2, 12);
        assert_eq!(later.await.unwrap(), Ok(()));
        assert_eq!(tracker.voters_applied(), vec![(0, 12), (1, 12), (2, 12)]);
        assert_eq!(tracker.timeouts(), 0);
        // Already applied everywhere: no wait at all.
        assert_eq!(tracker.wait_all(5, Duration::ZERO).await, Ok(()));
    }

    #[tokio::test]
    async fn a_timeout_names_the_lowest_voter_with_its_applied_index() {
        let tracker = ApplyTracker::new();
        tracker.lead(voters(&[0, 1, 2]));
        tracker.report(0, 1045);
        tracker.report(1, 1045);
        tracker.report(2, 1041);
        let lagging = tracker
            .wait_all(1045, Duration::from_millis(30))
            .await
            .unwrap_err();
        assert_eq!(
            (
                lagging.node,
                lagging.addr.as_str(),
                lagging.applied,
                lagging.index
            ),
            (2, "127.0.0.1:9092", 1041, 1045)
        );
        assert_eq!(lagging.waited, Duration::from_millis(30));
        assert_eq!(tracker.timeouts(), 1);
        let message = ProposeError::from(lagging).to_string();
        assert!(
            message.starts_with(
                "TIMEOUT: replication_mode = all: node 2 (127.0.0.1:9092) has applied up to \
                 index 1041 of 1045 after "
            ),
            "{message}"
        );
        assert!(message.ends_with("the write is committed on a majority and will apply there"));
        // The abandoned waiter is gone.
        assert!(tracker.inner.lock().waiters.is_empty());
    }

    #[tokio::test]
    async fn a_new_term_forgets_reports_and_a_silent_voter_counts_as_zero() {
        let tracker = ApplyTracker::new();
        tracker.lead(voters(&[0, 1]));
        tracker.report(0, 5);
        tracker.report(1, 5);
        assert_eq!(tracker.wait_all(5, Duration::ZERO).await, Ok(()));
        tracker.lead(voters(&[0, 1]));
        tracker.report(0, 6);
        let lagging = tracker
            .wait_all(5, Duration::from_millis(1))
            .await
            .unwrap_err();
        assert_eq!((lagging.node, lagging.applied), (1, 0));
    }

    #[tokio::test]
    async fn removing_the_lagging_voter_releases_the_wait() {
        let tracker = Arc::new(ApplyTracker::new());
        tracker.lead(voters(&[0, 1, 2]));
        tracker.report(0, 3);
        tracker.report(1, 3);
        let waiting = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.wait_all(3, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        tracker.set_voters(voters(&[0, 1]));
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }
}
