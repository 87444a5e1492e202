//! Hibernation of idle Raft groups (docs/sharding.md §8.3): a node's [`Hibernation`]
//! controller holds the timers of every group it runs, turns an idle group's timers off once all
//! its voters agree it is idle, and wakes it on any activity. Liveness between nodes rides on one
//! [`Beat`] per peer per heartbeat interval (`network/node_beat.rs`), whatever the number of
//! groups.
//!
//! ```text
//!  each interval: tick(now) ─▶ per group: view ─▶ phase ─▶ Beat { hibernating } ─▶ every peer
//!  peer server:   NodeBeat ─▶ receive(beat) ─▶ follower groups of its sender: sleep or wake
//!                 vote, entries, snapshot, forward, read index ─▶ touch(group) ─▶ wake
//!  replicator:    proposal, read barrier ─▶ touch(group) ─▶ wake
//! ```
//!
//! A group on this node is in one [`Phase`]:
//! - a leader idle for `hibernate_after` (no touch, its last log index unchanged), whose voters
//!   have all matched its last log id and which has applied it, **announces** `Hibernating
//!   { term, last log id }` in its beats; a follower whose term, last log index and applied log id
//!   are exactly those turns its timers off (**asleep**) and lists the group in its own beats,
//!   which is its acknowledgement; once every other voter has, the leader turns its own off;
//! - a follower wakes when the beats of the leader's node stop (none for `election_timeout`:
//!   timers on at once, the ordinary election follows) or no longer list the group at the same
//!   log id, or on a touch; a leader wakes on a touch, on a new entry, when it stops leading, or
//!   when a voter that beats no longer acknowledges (it restarted or woke: the leader's
//!   heartbeats resume before that voter's election timer can fire).
//!
//! A woken leader sends a heartbeat at once, which renews its followers' leases; a follower that
//! wakes for any reason but a lapse turns its election timer on only `election_timeout` later, so
//! a lease that went stale while asleep does not start an election against a live leader.
//!
//! **Safety.** Hibernation only switches timers (openraft's `RuntimeConfigHandle`: tick,
//! heartbeat, elect); it never touches a log, a vote or a state machine, and no message is
//! refused or altered because a group sleeps. Raft's safety (election safety, log matching,
//! leader completeness) holds under any timing, including timers that never fire, so nothing a
//! hibernated group does, or fails to do, can commit, lose or reorder an entry (docs/sharding.md
//! invariant 16). What a wrong decision here can cost is liveness: a group that sleeps too long
//! (bounded by the beat lapse) or wakes needlessly (an extra election).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{Raft, ServerState};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::log_store::GroupId;
use crate::network::{Beat, BeatReceiver, Hibernating, PeerClient};
use crate::types::DolmenRaft;
use crate::NodeId;

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct HibernateOptions {
    /// How often a beat goes to every peer, and how often the groups are looked at: the groups'
    /// `heartbeat_interval`.
    pub beat_interval: Duration,
    /// A follower whose leader's node sent no beat for this long wakes and may elect: the
    /// groups' smallest election timeout.
    pub election_timeout: Duration,
    /// A leader with no activity for this long may hibernate its group; zero: never.
    pub hibernate_after: Duration,
}

impl Default for HibernateOptions {
    fn default() -> Self {
        Self {
            beat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(400),
            hibernate_after: Duration::from_secs(2),
        }
    }
}

/// Where a group stands on this node, as the controller needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    /// The current term.
    pub term: u64,
    /// Whether this node leads the group.
    pub is_leader: bool,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The index of the last log entry.
    pub last_log_index: Option<u64>,
    /// The last applied log id, as (term, index).
    pub last_applied: Option<(u64, u64)>,
    /// The voters of the effective membership.
    pub voters: BTreeSet<NodeId>,
    /// Every member (voters and learners) with its peer address.
    pub members: BTreeMap<NodeId, String>,
    /// On the leader: each follower's matched log id, as (term, index).
    pub matched: BTreeMap<NodeId, Option<(u64, u64)>>,
}

/// What the controller reads and switches on one group's Raft. Implemented for
/// `openraft::Raft`; tests implement it without a network.
pub trait GroupTimers: Send + Sync + 'static {
    /// The group's state now (a copy out of its metrics; must not block).
    fn view(&self) -> GroupView;
    /// Turns the group's timers (tick, heartbeat, election) on or off.
    fn set_timers(&self, on: bool);
    /// Turns only the election timer on or off.
    fn set_elect(&self, on: bool);
    /// As leader, sends a heartbeat at once (whatever the timers), renewing the followers'
    /// leases.
    fn heartbeat_now(&self);
}

fn log_id(id: &crate::types::LogId) -> (u64, u64) {
    (id.leader_id.term, id.index)
}

impl<SM> GroupTimers for Raft<DolmenRaft, SM>
where
    SM: RaftStateMachine<DolmenRaft>,
{
    fn view(&self) -> GroupView {
        let metrics = self.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        GroupView {
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.as_ref().map(log_id),
            voters: membership.voter_ids().collect(),
            members: membership
                .nodes()
                .map(|(id, node)| (*id, node.peer_addr.clone()))
                .collect(),
            matched: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, matched)| (*id, matched.as_ref().map(log_id)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn set_timers(&self, on: bool) {
        let config = self.runtime_config();
        config.heartbeat(on);
        config.elect(on);
        config.tick(on);
    }

    fn set_elect(&self, on: bool) {
        self.runtime_config().elect(on);
    }

    fn heartbeat_now(&self) {
        let raft = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Fails only when the group has stopped, when no heartbeat is needed.
            drop(runtime.spawn(async move { raft.trigger().heartbeat().await }));
        }
    }
}

/// A group's hibernation state on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Timers on.
    Awake,
    /// A follower woke for another reason than a lapse: timers on but the election timer, which
    /// comes on at `elect_at` (its lease, stale while asleep, is renewed by then if the leader
    /// lives).
    Waking {
        /// When the election timer comes on.
        elect_at: Instant,
    },
    /// Leader: announcing `at`, timers on until every other voter acknowledges.
    Announcing {
        /// The announced term and last log id.
        at: Hibernating,
    },
    /// Leader: every voter acknowledged `at`; timers off.
    LeaderAsleep {
        /// The announced term and last log id.
        at: Hibernating,
    },
    /// Follower: timers off after `leader`'s node announced `at`.
    FollowerAsleep {
        /// The acknowledged term and last log id.
        at: Hibernating,
        /// The leader's node, whose beats keep it asleep.
        leader: NodeId,
    },
}

impl Phase {
    /// What this node lists in its beats for the group, if anything.
    fn listed(&self) -> Option<Hibernating> {
        match *self {
            Phase::Announcing { at }
            | Phase::LeaderAsleep { at }
            | Phase::FollowerAsleep { at, .. } => Some(at),
            Phase::Awake | Phase::Waking { .. } => None,
        }
    }

    /// Whether the group's timers are off.
    pub fn is_asleep(&self) -> bool {
        matches!(
            self,
            Phase::LeaderAsleep { .. } | Phase::FollowerAsleep { .. }
        )
    }
}

/// One group's timers and state.
struct Group {
    id: GroupId,
    timers: Arc<dyn GroupTimers>,
    phase: Phase,
    /// The last touch, or the last time the leader's log grew.
    active_at: Instant,
    /// The last log index seen at the previous look, to notice appends.
    seen_log: Option<u64>,
}

/// The last beat from a peer.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    incarnation: u64,
    hibernating: HashMap<GroupId, Hibernating>,
}

impl Seen {
    fn lists(&self, at: &Hibernating) -> bool {
        self.hibernating.get(&at.group) == Some(at)
    }
}

impl Group {
    fn wake(&mut self, now: Instant, options: &HibernateOptions) {
        match self.phase {
            Phase::Awake | Phase::Waking { .. } => {}
            Phase::Announcing { .. } => self.phase = Phase::Awake,
            Phase::LeaderAsleep { .. } => {
                self.timers.set_timers(true);
                self.timers.heartbeat_now();
                self.phase = Phase::Awake;
            }
            Phase::FollowerAsleep { .. } => {
                self.timers.set_timers(true);
                self.timers.set_elect(false);
                self.phase = Phase::Waking {
                    elect_at: now + options.election_timeout,
                };
            }
        }
    }

    /// Wakes at once, election timer included: the leader's node went silent.
    fn wake_to_elect(&mut self) {
        self.timers.set_timers(true);
        self.phase = Phase::Awake;
    }

    /// The leader's view of where it could hibernate: applied its last entry, which every
    /// other voter has matched.
    fn quiescent(&self, this: NodeId, view: &GroupView) -> Option<Hibernating> {
        let (last_log_term, last_log_index) = view.last_applied?;
        if view.last_log_index != Some(last_log_index) {
            return None;
        }
        let all_matched = view.voters.iter().filter(|v| **v != this).all(|v| {
            view.matched.get(v).copied().flatten() == Some((last_log_term, last_log_index))
        });
        all_matched.then_some(Hibernating {
            group: self.id,
            term: view.term,
            last_log_index,
            last_log_term,
        })
    }

    /// One look at the group (each beat interval).
    fn step(
        &mut self,
        this: NodeId,
        now: Instant,
        peers: &HashMap<NodeId, Seen>,
        options: &HibernateOptions,
    ) {
        let view = self.timers.view();
        if view.last_log_index != self.seen_log {
            self.seen_log = view.last_log_index;
            self.active_at = now;
            if view.is_leader {
                self.wake(now, options);
                return;
            }
        }
        match self.phase {
            Phase::Awake => {
                let idle = !options.hibernate_after.is_zero()
                    && now.saturating_duration_since(self.active_at) >= options.hibernate_after;
                if view.is_leader && idle {
                    if let Some(at) = self.quiescent(this, &view) {
                        self.phase = Phase::Announcing { at };
                    }
                }
            }
            Phase::Waking { elect_at } => {
                if now >= elect_at {
                    self.timers.set_elect(true);
                    self.phase = Phase::Awake;
                }
            }
            Phase::Announcing { at } | Phase::LeaderAsleep { at } => {
                if !view.is_leader || self.quiescent(this, &view) != Some(at) {
                    self.wake(now, options);
                    return;
                }
                let mut others = view.voters.iter().filter(|v| **v != this);
                if matches!(self.phase, Phase::Announcing { .. }) {
                    if others.all(|v| peers.get(v).is_some_and(|seen| seen.lists(&at))) {
                        self.timers.set_timers(false);
                        self.phase = Phase::LeaderAsleep { at };
                    }
                } else {
                    // A voter that beats but no longer acknowledges restarted or woke: its
                    // election timer runs, so this leader's heartbeats must too.
                    let withdrawn = others.any(|v| {
                        peers.get(v).is_some_and(|seen| {
                            now.saturating_duration_since(seen.at) < options.election_timeout
                                && !seen.lists(&at)
                        })
                    });
                    if withdrawn {
                        self.wake(now, options);
                    }
                }
            }
            Phase::FollowerAsleep { at, leader } => {
                let seen = peers.get(&leader);
                let lapsed = seen.is_none_or(|seen| {
                    now.saturating_duration_since(seen.at) >= options.election_timeout
                });
                if lapsed {
                    self.wake_to_elect();
                } else if view.is_leader
                    || view.leader != Some(leader)
                    || view.term != at.term
                    || !seen.is_some_and(|seen| seen.lists(&at))
                {
                    self.wake(now, options);
                }
            }
        }
    }

    /// `from`'s node announces `at` (or `at` is `None`: its beat does not list this group).
    fn offered(
        &mut self,
        from: NodeId,
        at: Option<Hibernating>,
        now: Instant,
        o: &HibernateOptions,
    ) {
        match (self.phase, at) {
            (Phase::FollowerAsleep { at: asleep, leader }, at)
                if leader == from && at != Some(asleep) =>
            {
                self.wake(now, o);
            }
            (Phase::FollowerAsleep { .. }, _) => {}
            (Phase::Awake | Phase::Waking { .. }, Some(at)) => {
                let view = self.timers.view();
                let matches = !view.is_leader
                    && view.leader == Some(from)
                    && view.term == at.term
                    && view.last_log_index == Some(at.last_log_index)
                    && view.last_applied == Some((at.last_log_term, at.last_log_index));
                if matches {
                    self.timers.set_timers(false);
                    self.seen_log = view.last_log_index;
                    self.phase = Phase::FollowerAsleep { at, leader: from };
                }
            }
            _ => {}
        }
    }
}

/// A node's hibernation controller: the timers of every group it runs, the last beat of every
/// peer, and the decisions of the module doc. Cheap to share (`Arc`); [`touch`](Self::touch)
/// is one map lookup and one uncontended lock.
pub struct Hibernation {
    this: NodeId,
    /// Tells this run of the controller apart from earlier ones of the same node.
    incarnation: u64,
    options: HibernateOptions,
    groups: RwLock<BTreeMap<GroupId, Arc<Mutex<Group>>>>,
    peers: Mutex<HashMap<NodeId, Seen>>,
}

impl Hibernation {
    /// The controller of node `this`, with no group yet. Nothing runs until
    /// [`spawn_beats`](Self::spawn_beats); set it on the node's router (`set_beats`) so that
    /// beats and touches reach it.
    pub fn new(this: NodeId, options: HibernateOptions) -> Arc<Self> {
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Arc::new(Self {
            this,
            incarnation,
            options,
            groups: RwLock::default(),
            peers: Mutex::default(),
        })
    }

    /// This controller's settings.
    pub fn options(&self) -> &HibernateOptions {
        &self.options
    }

    /// Starts looking after `group` (awake). Replaces an earlier registration of it.
    pub fn register(&self, group: GroupId, timers: Arc<dyn GroupTimers>) {
        let now = Instant::now();
        let seen_log = timers.view().last_log_index;
        let entry = Group {
            id: group,
            timers,
            phase: Phase::Awake,
            active_at: now,
            seen_log,
        };
        self.groups
            .write()
            .insert(group, Arc::new(Mutex::new(entry)));
    }

    /// Stops looking after `group`, turning its timers back on if it slept (a group that goes
    /// on running without the controller must elect as usual). Returns whether it was here.
    pub fn unregister(&self, group: GroupId) -> bool {
        let Some(entry) = self.groups.write().remove(&group) else {
            return false;
        };
        let entry = entry.lock();
        if entry.phase != Phase::Awake {
            entry.timers.set_timers(true);
        }
        true
    }

    /// The phase of `group`, when registered.
    pub fn phase(&self, group: GroupId) -> Option<Phase> {
        let entry = self.groups.read().get(&group).cloned()?;
        let phase = entry.lock().phase;
        Some(phase)
    }

    /// How many registered groups have their timers off.
    pub fn asleep(&self) -> usize {
        let groups: Vec<_> = self.groups.read().values().cloned().collect();
        groups.iter().filter(|g| g.lock().phase.is_asleep()).count()
    }

    /// Activity in `group` (a proposal, a read barrier, a forward, a read index or a Raft
    /// message other than a heartbeat): it wakes if it hibernates, and its leader waits
    /// `hibernate_after` again before announcing.
    pub fn touch(&self, group: GroupId) {
        self.touch_at(group, Instant::now());
    }

    /// [`touch`](Self::touch) at `now`.
    pub fn touch_at(&self, group: GroupId, now: Instant) {
        let Some(entry) = self.groups.read().get(&group).cloned() else {
            return;
        };
        let mut entry = entry.lock();
        entry.active_at = now;
        entry.wake(now, &self.options);
    }

    /// A beat from a peer, received at `now`: the groups its sender leads sleep or wake here.
    pub fn receive_at(&self, beat: Beat, now: Instant) {
        if beat.from == self.this {
            return;
        }
        let listed: HashMap<GroupId, Hibernating> =
            beat.hibernating.iter().map(|h| (h.group, *h)).collect();
        self.peers.lock().insert(
            beat.from,
            Seen {
                at: now,
                incarnation: beat.incarnation,
                hibernating: listed.clone(),
            },
        );
        let groups: Vec<_> = self.groups.read().values().cloned().collect();
        for entry in groups {
            let mut entry = entry.lock();
            let at = listed.get(&entry.id).copied();
            entry.offered(beat.from, at, now, &self.options);
        }
    }

    /// One look at every group at `now`; returns the beat to send to every peer.
    pub fn tick_at(&self, now: Instant) -> Beat {
        let peers = self.peers.lock().clone();
        let groups: Vec<_> = self.groups.read().values().cloned().collect();
        let mut hibernating = Vec::new();
        for entry in groups {
            let mut entry = entry.lock();
            entry.step(self.this, now, &peers, &self.options);
            hibernating.extend(entry.phase.listed());
        }
        Beat {
            from: self.this,
            incarnation: self.incarnation,
            hibernating,
        }
    }

    /// The peers of every registered group, with their peer addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let groups: Vec<_> = self.groups.read().values().cloned().collect();
        let mut peers = BTreeMap::new();
        for entry in groups {
            let timers = Arc::clone(&entry.lock().timers);
            peers.extend(timers.view().members);
        }
        peers.remove(&self.this);
        peers
    }

    /// The incarnation the peer `node` last beat with, if it did.
    pub fn incarnation_of(&self, node: NodeId) -> Option<u64> {
        self.peers.lock().get(&node).map(|seen| seen.incarnation)
    }

    /// Starts the beat loop: every `beat_interval`, one look at every group and its beat to
    /// every peer of them on one `NodeBeat` stream each (through `client`'s channels and fault
    /// hook), opened again at the next beat when it breaks.
    pub fn spawn_beats(self: &Arc<Self>, client: PeerClient) -> BeatLoop {
        let (stop, mut stopped) = watch::channel(false);
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut senders: HashMap<NodeId, Sender> = HashMap::new();
            let mut interval = tokio::time::interval(this.options.beat_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.wait_for(|stop| *stop) => break,
                }
                let beat = this.tick_at(Instant::now());
                let peers = this.peers();
                senders.retain(|id, sender| {
                    let keep = peers.get(id) == Some(&sender.addr) && !sender.task.is_finished();
                    if !keep {
                        sender.task.abort();
                    }
                    keep
                });
                for (id, addr) in peers {
                    let sender = senders
                        .entry(id)
                        .or_insert_with(|| Sender::open(&client, id, addr));
                    // A full queue means the stream is stuck: this beat is skipped, as a lost
                    // one would be.
                    let _ = sender.beats.try_send(beat.clone());
                }
            }
            for sender in senders.into_values() {
                sender.task.abort();
            }
        });
        BeatLoop {
            stop,
            task: Some(task),
        }
    }
}

impl BeatReceiver for Hibernation {
    fn receive(&self, beat: Beat) {
        self.receive_at(beat, Instant::now());
    }

    fn touch(&self, group: GroupId) {
        Hibernation::touch(self, group);
    }
}

/// The open beat stream to one peer.
struct Sender {
    addr: String,
    beats: mpsc::Sender<Beat>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    fn open(client: &PeerClient, to: NodeId, addr: String) -> Self {
        let (beats, queued) = mpsc::channel(1);
        let call = client.node_beat(to, &addr, ReceiverStream::new(queued).boxed());
        let task = tokio::spawn(async move {
            if let Err(e) = call.await {
                tracing::debug!(error = %e, "beat stream ended; opened again at the next beat");
            }
        });
        Self { addr, beats, task }
    }
}

/// The running beat loop of [`Hibernation::spawn_beats`]; stopped by
/// [`shutdown`](Self::shutdown) or when dropped.
pub struct BeatLoop {
    stop: watch::Sender<bool>,
    /// `None` once [`shutdown`](Self::shutdown) took it to wait for it.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BeatLoop {
    /// Stops sending beats (every stream closes) and waits for the loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BeatLoop {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
