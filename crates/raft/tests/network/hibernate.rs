//! Hibernation of idle groups (docs/sharding.md §8.3) on three in-process nodes, each one
//! RocksDB, one peer server whose router holds every group and the node's `Hibernation`
//! controller, and one beat loop. Each group's network passes a counting fault hook, so the
//! Raft messages a group sends are counted per group; the beat client has its own hook, which
//! can drop beats to chosen nodes.

use super::live::{bind_peer, write_to, CountingSm, Inner};
use super::*;
use dolmen_engine::{Engine, EngineOptions};
use dolmen_raft::hibernate::{BeatLoop, HibernateOptions, Hibernation, Phase};
use dolmen_raft::network::RaftPeerHandler;
use dolmen_raft::{LogFsync, LogStore};
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, Raft};

/// Counts the Raft messages one group's networks send (every call passes the hook once).
#[derive(Debug, Default)]
struct Sent(AtomicU64);

impl PeerFaults for Sent {
    fn check(&self, _from: NodeId, _to: NodeId, _rpc: &'static str) -> FaultAction {
        self.0.fetch_add(1, Ordering::Relaxed);
        FaultAction::Deliver
    }
}

/// Drops the beats to the nodes in it.
#[derive(Debug, Default)]
struct BeatDrops(Mutex<BTreeSet<NodeId>>);

impl PeerFaults for BeatDrops {
    fn check(&self, _from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction {
        if rpc == "NodeBeat" && self.0.lock().contains(&to) {
            FaultAction::Drop
        } else {
            FaultAction::Deliver
        }
    }
}

/// Raft timers of the groups, and the controller's.
#[derive(Clone, Copy)]
struct Timers {
    heartbeat_ms: u64,
    election_ms: u64,
    /// Zero: never hibernate (beats flow all the same).
    hibernate_after_ms: u64,
}

/// Fast timers for the tests.
const FAST: Timers = Timers {
    heartbeat_ms: 100,
    election_ms: 400,
    hibernate_after_ms: 500,
};

fn config(t: Timers) -> Config {
    Config {
        cluster_name: "hibernate-test".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_ms,
        // As a node maps its settings (docs/replication.md §8): max = 3/2 × min.
        election_timeout_max: t.election_ms * 3 / 2,
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()
    .expect("valid config")
}

/// One node: every group's Raft, one peer server, one controller and its beat loop.
struct Node {
    id: NodeId,
    rafts: BTreeMap<u64, Raft<DolmenRaft, CountingSm>>,
    counts: BTreeMap<u64, Arc<Mutex<Inner>>>,
    sent: BTreeMap<u64, Arc<Sent>>,
    addr: NodeAddr,
    factory: GrpcNetworkFactory,
    hibernation: Arc<Hibernation>,
    beat_drops: Arc<BeatDrops>,
    beats: BeatLoop,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(id: NodeId, groups: &[u64], timers: Timers) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(&EngineOptions::new(
        dir.path().join("db"),
        vec!["default".into()],
    ))
    .expect("engine opens");
    let (listener, addr) = bind_peer(id).await;
    let factory = GrpcNetworkFactory::new(id, NetworkOptions::default());
    let router = GroupRouter::new(id);
    let hibernation = Hibernation::new(
        id,
        HibernateOptions {
            beat_interval: Duration::from_millis(timers.heartbeat_ms),
            election_timeout: Duration::from_millis(timers.election_ms),
            hibernate_after: Duration::from_millis(timers.hibernate_after_ms),
        },
    );
    assert!(router.set_beats(hibernation.clone()));
    let config = Arc::new(config(timers));
    let (mut rafts, mut counts, mut sent) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for &group in groups {
        let log_store = LogStore::open(&engine, group, LogFsync::BeforeAck).expect("log store");
        let snap_dir = dir.path().join("snapshots").join(format!("g{group}"));
        std::fs::create_dir_all(&snap_dir).expect("snapshot dir");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let sm = CountingSm {
            dir: snap_dir.clone(),
            inner: Arc::clone(&inner),
        };
        let counter = Arc::new(Sent::default());
        let network = factory.for_group(group).with_faults(counter.clone());
        let raft = Raft::new(id, Arc::clone(&config), network, log_store, sm)
            .await
            .expect("raft starts");
        let handler = Arc::new(RaftPeerHandler::new(raft.clone(), id, "fp".into()));
        router.insert(group, handler, incoming_in(snap_dir));
        hibernation.register(group, Arc::new(raft.clone()));
        rafts.insert(group, raft);
        counts.insert(group, inner);
        sent.insert(group, counter);
    }
    let beat_drops = Arc::new(BeatDrops::default());
    let beats = hibernation.spawn_beats(factory.peer_client().with_faults(beat_drops.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_groups(listener, router, async move {
        let _ = stopped.await;
    }));
    Node {
        id,
        rafts,
        counts,
        sent,
        addr,
        factory,
        hibernation,
        beat_drops,
        beats,
        stop,
        server,
        _dir: dir,
    }
}

impl Node {
    fn leader(&self, group: u64) -> Option<NodeId> {
        self.rafts[&group].metrics().borrow_watched().current_leader
    }

    fn sent(&self) -> BTreeMap<u64, u64> {
        self.sent
            .iter()
            .map(|(g, s)| (*g, s.0.load(Ordering::Relaxed)))
            .collect()
    }

    /// Stops everything the node runs: beats, every group, the peer server.
    async fn shutdown(self) {
        self.beats.shutdown().await;
        for raft in self.rafts.into_values() {
            raft.shutdown().await.expect("raft shuts down");
        }
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

/// Three nodes running `groups`, each group initialized from node `group % 3` (so leaders are
/// spread), every group with a leader.
async fn cluster(groups: &[u64], timers: Timers) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in 0..3 {
        nodes.push(start(id, groups, timers).await);
    }
    let members: BTreeMap<NodeId, NodeAddr> =
        nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    for &group in groups {
        nodes[(group % 3) as usize].rafts[&group]
            .initialize(members.clone())
            .await
            .expect("initialize");
    }
    wait_until(
        "every group elects a leader",
        Duration::from_secs(30),
        || {
            groups
                .iter()
                .all(|g| nodes.iter().all(|n| n.leader(*g).is_some()))
        },
    )
    .await;
    nodes
}

/// Polls `done` every 50 ms; panics naming `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_asleep(nodes: &[Node], groups: usize) -> bool {
    nodes.iter().all(|n| n.hibernation.asleep() == groups)
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_idle_groups_on_three_nodes_hibernate_and_then_send_no_raft_message() {
    let groups: Vec<u64> = (1..=64).collect();
    let nodes = cluster(&groups, FAST).await;
    wait_until(
        "all 64 groups sleep on all 3 nodes",
        Duration::from_secs(60),
        || all_asleep(&nodes, 64),
    )
    .await;
    // A few seconds of beats (each node ~30 to each peer): not one Raft message for any group.
    let before: Vec<_> = nodes.iter().map(Node::sent).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<_> = nodes.iter().map(Node::sent).collect();
    for (node, (before, after)) in before.iter().zip(&after).enumerate() {
        for (group, sent) in after {
            assert_eq!(
                sent - before[group],
                0,
                "node {node} sent Raft messages for hibernated group {group}"
            );
        }
    }
    assert!(all_asleep(&nodes, 64), "the groups still sleep");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hibernated_group_wakes_and_commits_a_write_through_its_leader() {
    let groups = [1, 2, 3];
    let nodes = cluster(&groups, FAST).await;
    wait_until("the groups sleep", Duration::from_secs(30), || {
        all_asleep(&nodes, 3)
    })
    .await;
    let group = 2;
    let leader = nodes[0].leader(group).expect("a leader");
    let follower = &nodes[((leader + 1) % 3) as usize];
    let client = follower.factory.for_group(group).peer_client();
    let applied = write_to(&client, leader, &nodes[leader as usize].addr.peer_addr).await;
    for node in &nodes {
        node.rafts[&group]
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(applied.version), "every replica applies")
            .await
            .expect("the woken group replicates");
        assert_eq!(node.counts[&group].lock().commands, 1);
        assert!(
            !node
                .hibernation
                .phase(group)
                .expect("registered")
                .is_asleep(),
            "group {group} is awake on node {}",
            node.id
        );
    }
    // Idle again, it hibernates again, at the new last log id; the others never woke.
    wait_until("the group sleeps again", Duration::from_secs(30), || {
        all_asleep(&nodes, 3)
    })
    .await;
    match nodes[leader as usize].hibernation.phase(group) {
        Some(Phase::LeaderAsleep { at }) => assert_eq!(at.last_log_index, applied.version),
        other => panic!("group {group} on its leader: {other:?}"),
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hibernated_group_elects_after_its_leader_node_is_killed() {
    let groups = [1, 2, 3];
    let mut nodes = cluster(&groups, FAST).await;
    wait_until("the groups sleep", Duration::from_secs(30), || {
        all_asleep(&nodes, 3)
    })
    .await;
    let group = 1;
    let old = nodes[0].leader(group).expect("a leader");
    let killed = nodes.remove(nodes.iter().position(|n| n.id == old).expect("its node"));
    killed.shutdown().await;
    // The survivors stop getting its beats, wake, and elect among themselves.
    let raft = &nodes[0].rafts[&group];
    let new = raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != old),
            "a new leader",
        )
        .await
        .expect("the hibernated group elects a new leader")
        .current_leader
        .expect("a leader");
    let follower = nodes.iter().find(|n| n.id != new).expect("a follower");
    let leader = nodes.iter().find(|n| n.id == new).expect("the leader");
    let client = follower.factory.for_group(group).peer_client();
    write_to(&client, new, &leader.addr.peer_addr).await;
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_stops_getting_beats_wakes_its_groups() {
    let groups = [1, 2, 3];
    let nodes = cluster(&groups, FAST).await;
    wait_until("the groups sleep", Duration::from_secs(30), || {
        all_asleep(&nodes, 3)
    })
    .await;
    let group = 3;
    let leader = nodes[0].leader(group).expect("a leader");
    let follower = (leader + 1) % 3;
    // The leader's node goes on running, but its beats to the follower are lost.
    nodes[leader as usize].beat_drops.0.lock().insert(follower);
    let led_by_leader: Vec<u64> = groups
        .iter()
        .copied()
        .filter(|g| nodes[follower as usize].leader(*g) == Some(leader))
        .collect();
    assert!(led_by_leader.contains(&group));
    wait_until(
        "the follower wakes every group led from the silent node",
        Duration::from_secs(10),
        || {
            led_by_leader.iter().all(|g| {
                !nodes[follower as usize]
                    .hibernation
                    .phase(*g)
                    .expect("registered")
                    .is_asleep()
            })
        },
    )
    .await;
    // The group still commits (its leader, told by the follower's beats, heartbeats again).
    let leader_now = nodes[follower as usize].rafts[&group]
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader")
        .current_leader
        .expect("a leader");
    let from = (leader_now + 1) % 3;
    let client = nodes[from as usize].factory.for_group(group).peer_client();
    write_to(
        &client,
        leader_now,
        &nodes[leader_now as usize].addr.peer_addr,
    )
    .await;
    shutdown(nodes).await;
}

/// This process's CPU time (user + system) from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // CLK_TCK is 100 on every Linux this runs on (getconf CLK_TCK).
    Duration::from_millis(ticks * 10)
}

/// docs/PERFORMANCE.md, "Idle groups": three in-process nodes with 64 idle groups each, with
/// a node's default timers (heartbeat 200 ms, `election_timeout_ms = 1000` which makes openraft's
/// 400–600 ms; hibernate after 2 s), the CPU this
/// process uses over 30 s with hibernation off (beats flow, timers stay on) and on. Run:
/// `cargo test --release --workspace --test network -- --ignored idle_groups_cpu --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a 70-second measurement; run by hand (docs/PERFORMANCE.md)"]
async fn idle_groups_cpu() {
    let groups: Vec<u64> = (1..=64).collect();
    let window = Duration::from_secs(30);
    for hibernate_after_ms in [0, 2000] {
        let timers = Timers {
            heartbeat_ms: 200,
            election_ms: 400,
            hibernate_after_ms,
        };
        let nodes = cluster(&groups, timers).await;
        if hibernate_after_ms > 0 {
            wait_until("all groups sleep", Duration::from_secs(60), || {
                all_asleep(&nodes, 64)
            })
            .await;
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let (cpu, wall) = (cpu_time(), Instant::now());
        tokio::time::sleep(window).await;
        let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
        let sent: u64 = nodes.iter().flat_map(|n| n.sent().into_values()).sum();
        println!(
            "hibernation {}: {:.1}% of one core over {:.1} s ({} ms CPU); asleep {}/192; Raft messages sent since start {}",
            if hibernate_after_ms > 0 { "on" } else { "off" },
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_millis(),
            nodes.iter().map(|n| n.hibernation.asleep()).sum::<usize>(),
            sent,
        );
        shutdown(nodes).await;
    }
}
