//! The controller's decisions without a network: three controllers over fake groups, beats
//! handed from one to another by hand, time passed explicitly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;

const G: GroupId = 5;

/// A group's Raft as the controller sees it: a settable view and the switches it turned.
struct Fake {
    view: Mutex<GroupView>,
    timers: AtomicBool,
    elect: AtomicBool,
    heartbeats: AtomicU64,
}

impl Fake {
    fn new(view: GroupView) -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::new(view),
            timers: AtomicBool::new(true),
            elect: AtomicBool::new(true),
            heartbeats: AtomicU64::new(0),
        })
    }

    fn timers_on(&self) -> bool {
        self.timers.load(Ordering::SeqCst)
    }

    fn elect_on(&self) -> bool {
        self.timers_on() && self.elect.load(Ordering::SeqCst)
    }
}

impl GroupTimers for Fake {
    fn view(&self) -> GroupView {
        self.view.lock().clone()
    }
    fn set_timers(&self, on: bool) {
        self.timers.store(on, Ordering::SeqCst);
        self.elect.store(on, Ordering::SeqCst);
    }
    fn set_elect(&self, on: bool) {
        self.elect.store(on, Ordering::SeqCst);
    }
    fn heartbeat_now(&self) {
        self.heartbeats.fetch_add(1, Ordering::SeqCst);
    }
}

fn options() -> HibernateOptions {
    HibernateOptions {
        beat_interval: Duration::from_millis(100),
        election_timeout: Duration::from_millis(400),
        hibernate_after: Duration::from_secs(2),
    }
}

/// Node `id`'s view of group `G` led by node 0 in term 3, every log at (3, 10), all applied.
fn view(id: NodeId) -> GroupView {
    let members: BTreeMap<NodeId, String> = (0..3)
        .map(|n| (n, format!("127.0.0.1:{}", 9000 + n)))
        .collect();
    GroupView {
        term: 3,
        is_leader: id == 0,
        leader: Some(0),
        last_log_index: Some(10),
        last_applied: Some((3, 10)),
        voters: members.keys().copied().collect(),
        members,
        matched: if id == 0 {
            (1..3).map(|n| (n, Some((3, 10)))).collect()
        } else {
            BTreeMap::new()
        },
    }
}

/// Three nodes, each a controller over its replica of group `G`.
struct Cluster {
    nodes: Vec<(Arc<Hibernation>, Arc<Fake>)>,
    now: Instant,
}

impl Cluster {
    fn new() -> Self {
        let nodes = (0..3)
            .map(|id| {
                let controller = Hibernation::new(id, options());
                let fake = Fake::new(view(id));
                controller.register(G, fake.clone());
                (controller, fake)
            })
            .collect();
        Self {
            nodes,
            now: Instant::now(),
        }
    }

    /// `ms` pass, then every node looks at its groups and its beat reaches every other node
    /// (but not the nodes in `deaf`, and none from the nodes in `mute`).
    fn round(&mut self, ms: u64, mute: &[NodeId], deaf: &[NodeId]) {
        self.now += Duration::from_millis(ms);
        let beats: Vec<Beat> = self
            .nodes
            .iter()
            .map(|(c, _)| c.tick_at(self.now))
            .collect();
        for beat in beats {
            if mute.contains(&beat.from) {
                continue;
            }
            for (id, (controller, _)) in self.nodes.iter().enumerate() {
                if id as NodeId != beat.from && !deaf.contains(&(id as NodeId)) {
                    controller.receive_at(beat.clone(), self.now);
                }
            }
        }
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round(100, &[], &[]);
        }
    }

    fn phase(&self, id: usize) -> Phase {
        self.nodes[id].0.phase(G).expect("registered")
    }

    fn fake(&self, id: usize) -> &Fake {
        &self.nodes[id].1
    }

    /// Runs until every node sleeps (at most 40 rounds).
    fn hibernate(&mut self) {
        for _ in 0..40 {
            self.round(100, &[], &[]);
            if (0..3).all(|id| self.phase(id).is_asleep()) {
                return;
            }
        }
        panic!(
            "group never hibernated: {:?}",
            (0..3).map(|i| self.phase(i)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn an_idle_leader_announces_and_sleeps_once_every_voter_acknowledged() {
    let mut cluster = Cluster::new();
    // Idle for less than hibernate_after: nobody announces.
    cluster.rounds(19);
    assert!((0..3).all(|id| cluster.phase(id) == Phase::Awake));
    cluster.hibernate();
    for id in 0..3 {
        assert!(!cluster.fake(id).timers_on(), "node {id}'s timers are off");
    }
    let at = Hibernating {
        group: G,
        term: 3,
        last_log_index: 10,
        last_log_term: 3,
    };
    assert_eq!(cluster.phase(0), Phase::LeaderAsleep { at });
    assert_eq!(cluster.phase(1), Phase::FollowerAsleep { at, leader: 0 });
}

#[test]
fn the_leader_keeps_its_timers_until_the_last_voter_acknowledges() {
    let mut cluster = Cluster::new();
    // Node 2 has not applied the last entry: it does not acknowledge.
    cluster.fake(2).view.lock().last_applied = Some((3, 9));
    cluster.rounds(30);
    assert!(matches!(cluster.phase(0), Phase::Announcing { .. }));
    assert!(cluster.fake(0).timers_on(), "the leader still heartbeats");
    assert!(cluster.phase(1).is_asleep());
    assert_eq!(cluster.phase(2), Phase::Awake);
    // Once it applies, it acknowledges and the leader sleeps.
    cluster.fake(2).view.lock().last_applied = Some((3, 10));
    cluster.rounds(3);
    assert!(matches!(cluster.phase(0), Phase::LeaderAsleep { .. }));
}

#[test]
fn a_leader_whose_follower_has_not_matched_does_not_announce() {
    let mut cluster = Cluster::new();
    cluster.fake(0).view.lock().matched.insert(2, Some((3, 8)));
    cluster.rounds(40);
    assert!((0..3).all(|id| cluster.phase(id) == Phase::Awake));
}

#[test]
fn touches_and_appends_keep_a_leader_from_announcing() {
    let mut cluster = Cluster::new();
    for _ in 0..40 {
        cluster.round(100, &[], &[]);
        cluster.nodes[0].0.touch_at(G, cluster.now);
    }
    assert_eq!(cluster.phase(0), Phase::Awake);
    for i in 0..40 {
        cluster.round(100, &[], &[]);
        cluster.fake(0).view.lock().last_log_index = Some(10 + i);
    }
    assert_eq!(cluster.phase(0), Phase::Awake);
}

#[test]
fn a_touch_wakes_a_sleeping_leader_which_heartbeats_at_once_and_its_followers_follow() {
    let mut cluster = Cluster::new();
    cluster.hibernate();
    cluster.nodes[0].0.touch_at(G, cluster.now);
    assert_eq!(cluster.phase(0), Phase::Awake);
    assert!(cluster.fake(0).timers_on());
    assert_eq!(cluster.fake(0).heartbeats.load(Ordering::SeqCst), 1);
    // Its next beat no longer lists the group: the followers wake, their election timers an
    // election timeout later (the leader's heartbeats renew their leases meanwhile).
    cluster.round(100, &[], &[]);
    for id in 1..3 {
        assert!(matches!(cluster.phase(id), Phase::Waking { .. }));
        assert!(cluster.fake(id).timers_on() && !cluster.fake(id).elect_on());
    }
    cluster.rounds(4);
    for id in 1..3 {
        assert_eq!(cluster.phase(id), Phase::Awake);
        assert!(cluster.fake(id).elect_on());
    }
    // Recently touched: no announcement before hibernate_after again.
    cluster.rounds(10);
    assert_eq!(cluster.phase(0), Phase::Awake);
}

#[test]
fn a_follower_whose_leaders_beats_stop_wakes_to_elect() {
    let mut cluster = Cluster::new();
    cluster.hibernate();
    // Node 0 goes silent: within an election timeout its followers' timers are all on.
    for _ in 0..3 {
        cluster.round(100, &[0], &[]);
        assert!(cluster.phase(1).is_asleep());
    }
    cluster.round(100, &[0], &[]);
    for id in 1..3 {
        assert_eq!(cluster.phase(id), Phase::Awake);
        assert!(cluster.fake(id).elect_on(), "node {id} may elect");
    }
}

#[test]
fn a_sleeping_leader_wakes_when_a_voter_stops_acknowledging() {
    let mut cluster = Cluster::new();
    cluster.hibernate();
    // Node 2 is touched by a message (a vote from a restarted node, say) and wakes.
    cluster.nodes[2].0.touch_at(G, cluster.now);
    // Its next beat lists the group no more; the leader's look after that wakes it.
    cluster.rounds(2);
    assert_eq!(
        cluster.phase(0),
        Phase::Awake,
        "the leader heartbeats again"
    );
    assert!(cluster.fake(0).timers_on());
}

#[test]
fn a_follower_with_another_log_ignores_the_announcement() {
    let mut cluster = Cluster::new();
    {
        let mut view = cluster.fake(1).view.lock();
        view.last_log_index = Some(11);
    }
    cluster.rounds(30);
    assert_eq!(cluster.phase(1), Phase::Awake);
    assert!(!cluster.phase(0).is_asleep());
}

#[test]
fn a_new_leader_or_term_wakes_a_sleeping_follower() {
    let mut cluster = Cluster::new();
    cluster.hibernate();
    {
        let mut view = cluster.fake(1).view.lock();
        view.term = 4;
        view.leader = Some(2);
    }
    cluster.round(100, &[], &[]);
    assert!(!cluster.phase(1).is_asleep());
}

#[test]
fn unregistering_a_sleeping_group_turns_its_timers_on() {
    let mut cluster = Cluster::new();
    cluster.hibernate();
    assert!(cluster.nodes[1].0.unregister(G));
    assert!(cluster.fake(1).elect_on());
    assert!(!cluster.nodes[1].0.unregister(G));
    assert_eq!(cluster.nodes[1].0.phase(G), None);
}

#[test]
fn hibernate_after_zero_never_hibernates() {
    let controller = Hibernation::new(
        0,
        HibernateOptions {
            hibernate_after: Duration::ZERO,
            ..options()
        },
    );
    controller.register(G, Fake::new(view(0)));
    let mut now = Instant::now();
    for _ in 0..100 {
        now += Duration::from_millis(100);
        assert!(controller.tick_at(now).hibernating.is_empty());
    }
}
