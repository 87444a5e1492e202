//! A live Raft behind the transport: RocksDB log store, a counting state machine whose
//! snapshots are files, `RaftPeerHandler`, and the gRPC network; and two Raft groups on three
//! nodes, each node one RocksDB and one peer server for both.

use super::*;
use dolmen_engine::{Engine, EngineOptions};
use dolmen_raft::network::RaftPeerHandler;
use dolmen_raft::state_machine::EntryReply;
use dolmen_raft::{LogFsync, LogStore};
use futures::{Stream, StreamExt};
use openraft::async_runtime::WatchReceiver;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Config, OptionalSend, Raft, ServerState};

#[derive(Default)]
pub(super) struct Inner {
    applied: Option<LogId>,
    membership: StoredMembership<LeaderId<u64, NodeId>, NodeId, NodeAddr>,
    pub(super) commands: u64,
    current: Option<Snapshot>,
}

#[derive(Clone)]
pub(super) struct CountingSm {
    pub(super) dir: PathBuf,
    pub(super) inner: Arc<Mutex<Inner>>,
}

impl RaftSnapshotBuilder<DolmenRaft> for CountingSm {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> std::io::Result<Snapshot> {
        let (meta, commands) = {
            let inner = self.inner.lock();
            let meta = SnapshotMeta {
                last_log_id: inner.applied,
                last_membership: inner.membership.clone(),
            };
            (meta, inner.commands)
        };
        let index = meta.last_log_id.map_or(0, |id| id.index);
        let path = self.dir.join(format!("built-{index}.snap"));
        std::fs::write(&path, commands.to_string())?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        };
        self.inner.lock().current = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<DolmenRaft> for CountingSm {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> std::io::Result<(
        Option<LogId>,
        StoredMembership<LeaderId<u64, NodeId>, NodeId, NodeAddr>,
    )> {
        let inner = self.inner.lock();
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> std::io::Result<()>
    where
        S: Stream<Item = std::io::Result<EntryResponder<DolmenRaft>>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            {
                let mut inner = self.inner.lock();
                inner.applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Normal(_) => inner.commands += 1,
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), m)
                    }
                    EntryPayload::Blank => {}
                }
            }
            if let Some(responder) = responder {
                responder.send(EntryReply::Applied(Applied {
                    version: entry.log_id.index,
                    outcome: Outcome::Applied,
                }));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> std::io::Result<()> {
        let commands = std::fs::read_to_string(&snapshot.path)?
            .parse::<u64>()
            .map_err(std::io::Error::other)?;
        let mut inner = self.inner.lock();
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.commands = commands;
        inner.current = Some(Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> std::io::Result<Option<Snapshot>> {
        Ok(self.inner.lock().current.clone())
    }
}

fn config() -> Config {
    Config {
        cluster_name: "network-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        install_snapshot_timeout: 2000,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
    .validate()
    .expect("valid config")
}

struct Node {
    raft: Raft<DolmenRaft, CountingSm>,
    addr: NodeAddr,
    factory: GrpcNetworkFactory,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(id: NodeId) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(&EngineOptions::new(
        dir.path().join("db"),
        vec!["default".into()],
    ))
    .expect("engine opens");
    let log_store = LogStore::new(&engine, dolmen_raft::types::GROUP_ID).expect("log store");
    let snap_dir = dir.path().join("snapshots");
    std::fs::create_dir_all(&snap_dir).expect("snapshot dir");
    let sm = CountingSm {
        dir: snap_dir.clone(),
        inner: Arc::new(Mutex::new(Inner::default())),
    };
    let config = config();
    let (listener, addr) = bind_peer(id).await;
    let factory = GrpcNetworkFactory::new(id, NetworkOptions::default());
    let raft = Raft::new(id, Arc::new(config), factory.clone(), log_store, sm)
        .await
        .expect("raft starts");
    let handler: Arc<dyn PeerHandler> =
        Arc::new(RaftPeerHandler::new(raft.clone(), id, "fp".into()));
    let counter = Arc::new(AtomicU64::new(0));
    let incoming: IncomingSnapshot = Arc::new(move || {
        let path = snap_dir.join(format!(
            "in-{}.snap",
            counter.fetch_add(1, Ordering::Relaxed)
        ));
        Ok((path.clone(), std::fs::File::create(path)?))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, handler, incoming, async move {
        let _ = stopped.await;
    }));
    Node {
        raft,
        addr,
        factory,
        stop,
        server,
        _dir: dir,
    }
}

/// A write through the leader after the learner joined; returns its version.
async fn client_a_forward(a: &Node, b: &Node) -> u64 {
    b.factory
        .peer_client()
        .forward(0, &a.addr.peer_addr, &Command::Noop, Duration::from_secs(5))
        .await
        .expect("the leader applies")
        .version
}

impl Node {
    async fn shutdown(self) {
        self.raft.shutdown().await.expect("raft shuts down");
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_raft_serves_forward_read_index_probe_and_replicates_to_a_learner() {
    let a = start(0).await;
    let b = start(1).await;
    let wait = Some(Duration::from_secs(10));
    let client = b.factory.peer_client();
    let t = Duration::from_secs(5);

    let probe = client
        .probe(0, &a.addr.peer_addr, t)
        .await
        .expect("probe a");
    assert_eq!(
        probe,
        ProbeInfo {
            node_id: 0,
            initialized: false,
            fingerprint: "fp".into(),
            status_json: String::new(),
        }
    );

    a.raft
        .initialize(BTreeMap::from([(0, a.addr.clone())]))
        .await
        .expect("initialize a");
    a.raft
        .wait(wait)
        .state(ServerState::Leader, "a leads")
        .await
        .expect("a becomes leader");
    assert!(
        client
            .probe(0, &a.addr.peer_addr, t)
            .await
            .expect("probe a")
            .initialized
    );

    let applied = client
        .forward(0, &a.addr.peer_addr, &Command::Noop, t)
        .await
        .expect("the leader applies a forwarded command");
    assert!(applied.version >= 2, "{applied:?}");
    assert_eq!(applied.outcome, Outcome::Applied);
    let index = client
        .read_index(0, &a.addr.peer_addr, t, 0, false)
        .await
        .expect("read index");
    assert!(
        index >= applied.version,
        "read index {index} < {}",
        applied.version
    );

    // Snapshot, purge the log, then add a learner: it can only catch up through
    // InstallSnapshot (the file streams over gRPC), then AppendEntries.
    // The metrics may still show an older applied entry than the forwarded one,
    // and the snapshot covers what the state machine applied when it was built:
    // wait for a snapshot at or past the applied index seen, then take its id.
    a.raft.trigger().snapshot().await.expect("trigger snapshot");
    let applied_seen = a
        .raft
        .metrics()
        .borrow_watched()
        .last_applied
        .expect("a applied something")
        .index;
    let last = a
        .raft
        .wait(wait)
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied_seen),
            "a snapshot",
        )
        .await
        .expect("a builds a snapshot")
        .snapshot
        .expect("a snapshot id");
    a.raft
        .trigger()
        .purge_log(last.index)
        .await
        .expect("trigger purge");
    a.raft
        .wait(wait)
        .purged(Some(last), "a purged")
        .await
        .expect("a purges its log");

    a.raft
        .add_learner(1, b.addr.clone(), true)
        .await
        .expect("add learner");
    b.raft
        .wait(wait)
        .applied_index_at_least(Some(last.index), "b catches up")
        .await
        .expect("b installs the snapshot");
    let b_snapshot = b.raft.metrics().borrow_watched().snapshot;
    assert_eq!(b_snapshot, Some(last), "b caught up by snapshot");
    let second = client_a_forward(&a, &b).await;
    b.raft
        .wait(wait)
        .applied_index_at_least(Some(second), "b replicates")
        .await
        .expect("b replicates by AppendEntries");

    // The learner is no leader: NOT_LEADER with the leader's client address.
    let client_a = a.factory.peer_client();
    let err = client_a
        .forward(1, &b.addr.peer_addr, &Command::Noop, t)
        .await
        .expect_err("b is a learner");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: Some(0),
            leader_addr: Some(a.addr.client_addr.clone())
        }
    );
    let err = client_a
        .read_index(1, &b.addr.peer_addr, t, 0, false)
        .await
        .expect_err("b is a learner");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: Some(0),
            leader_addr: Some(a.addr.client_addr.clone())
        }
    );

    b.shutdown().await;
    a.shutdown().await;
}

/// A group's Raft on one node, and its state machine's counters.
type GroupRaft = (Raft<DolmenRaft, CountingSm>, Arc<Mutex<Inner>>);

/// One node of several Raft groups: one RocksDB (each group's log under its own keys), one
/// peer server whose router holds every group, one channel cache for every group's network.
struct GroupsNode {
    /// Each group's Raft and its state machine's counters.
    groups: BTreeMap<u64, GroupRaft>,
    addr: NodeAddr,
    factory: GrpcNetworkFactory,
    /// The groups its peer server answers for.
    router: GroupRouter,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A peer listener on an ephemeral loopback port, and node `id`'s addresses with it.
pub(super) async fn bind_peer(id: NodeId) -> (tokio::net::TcpListener, NodeAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = NodeAddr {
        client_addr: format!("127.0.0.1:{}", 17000 + id),
        peer_addr: listener.local_addr().expect("addr").to_string(),
        admin_addr: String::new(),
    };
    (listener, addr)
}

async fn start_groups(id: NodeId, groups: &[u64]) -> GroupsNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(&EngineOptions::new(
        dir.path().join("db"),
        vec!["default".into()],
    ))
    .expect("engine opens");
    let (listener, addr) = bind_peer(id).await;
    let factory = GrpcNetworkFactory::new(id, NetworkOptions::default());
    let router = GroupRouter::new(id);
    let mut rafts = BTreeMap::new();
    for &group in groups {
        let log_store = LogStore::open(&engine, group, LogFsync::BeforeAck).expect("log store");
        let snap_dir = dir.path().join("snapshots").join(format!("g{group}"));
        std::fs::create_dir_all(&snap_dir).expect("snapshot dir");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let sm = CountingSm {
            dir: snap_dir.clone(),
            inner: Arc::clone(&inner),
        };
        let raft = Raft::new(
            id,
            Arc::new(config()),
            factory.for_group(group),
            log_store,
            sm,
        )
        .await
        .expect("raft starts");
        let handler = Arc::new(RaftPeerHandler::new(raft.clone(), id, "fp".into()));
        router.insert(group, handler, incoming_in(snap_dir));
        rafts.insert(group, (raft, inner));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_groups(listener, router.clone(), async move {
        let _ = stopped.await;
    }));
    GroupsNode {
        groups: rafts,
        addr,
        factory,
        router,
        stop,
        server,
        _dir: dir,
    }
}

impl GroupsNode {
    fn raft(&self, group: u64) -> &Raft<DolmenRaft, CountingSm> {
        &self.groups[&group].0
    }

    fn commands(&self, group: u64) -> u64 {
        self.groups[&group].1.lock().commands
    }

    async fn shutdown(self) {
        for (raft, _) in self.groups.into_values() {
            raft.shutdown().await.expect("raft shuts down");
        }
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

/// A write forwarded to `leader` at `addr`, tried again (at most 50 times, 100 ms apart) while
/// the answer is `NotLeader`, as a new leader answers until its lease is confirmed.
pub(super) async fn write_to(
    client: &dolmen_raft::network::PeerClient,
    leader: NodeId,
    addr: &str,
) -> Applied {
    for _ in 0..50 {
        match client
            .forward(leader, addr, &Command::Noop, Duration::from_secs(5))
            .await
        {
            Ok(applied) => return applied,
            Err(ProposeError::NotLeader { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!(
                "group {}'s leader {leader} refused a write: {e:?}",
                client.group()
            ),
        }
    }
    panic!(
        "group {}'s leader {leader} never took a write",
        client.group()
    )
}

/// The leader `group` elects among `nodes`, waiting for it.
async fn leader_of(nodes: &[GroupsNode], group: u64) -> NodeId {
    nodes[0]
        .raft(group)
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("the group elects a leader")
        .current_leader
        .expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_on_three_nodes_elect_and_replicate_independently_over_one_server_each() {
    const OTHER: u64 = 7;
    let mut nodes = Vec::new();
    for id in 0..3 {
        nodes.push(start_groups(id, &[0, OTHER]).await);
    }
    let members: BTreeMap<NodeId, NodeAddr> = (0..3)
        .map(|id| (id, nodes[id as usize].addr.clone()))
        .collect();
    // Each group is initialized from another node, so their first elections differ.
    nodes[0]
        .raft(0)
        .initialize(members.clone())
        .await
        .expect("initialize group 0");
    nodes[1]
        .raft(OTHER)
        .initialize(members)
        .await
        .expect("initialize group 7");
    let leaders = [
        (0, leader_of(&nodes, 0).await),
        (OTHER, leader_of(&nodes, OTHER).await),
    ];

    // Writes forwarded from a follower to each group's leader: 3 to group 0, 5 to group 7.
    let wait = Some(Duration::from_secs(10));
    for (group, leader) in leaders {
        let follower = (leader + 1) % 3;
        let client = nodes[follower as usize]
            .factory
            .for_group(group)
            .peer_client();
        let writes = if group == 0 { 3 } else { 5 };
        let mut last = 0;
        for _ in 0..writes {
            last = write_to(&client, leader, &nodes[leader as usize].addr.peer_addr)
                .await
                .version;
        }
        for node in &nodes {
            node.raft(group)
                .wait(wait)
                .applied_index_at_least(Some(last), "every replica applies")
                .await
                .expect("the group replicates to every node");
        }
    }
    // Each group's state machines hold its own writes only: the groups share the servers, the
    // connections and the databases, and nothing else.
    for node in &nodes {
        assert_eq!(node.commands(0), 3, "group 0's writes");
        assert_eq!(node.commands(OTHER), 5, "group 7's writes");
    }

    // Group 7's leader node stops running group 7 only (out of its router, then shut down):
    // group 7 elects another leader among the other two, and group 0 goes on writing.
    let (_, old) = leaders[1];
    let node = &mut nodes[old as usize];
    assert!(node.router.remove(OTHER));
    let (raft, _) = node.groups.remove(&OTHER).expect("group 7 runs there");
    raft.shutdown()
        .await
        .expect("group 7 shuts down on its leader");
    let survivor = &nodes[((old + 1) % 3) as usize];
    let new = survivor
        .raft(OTHER)
        .wait(wait)
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != old),
            "a new leader",
        )
        .await
        .expect("group 7 elects another leader")
        .current_leader
        .expect("a leader");
    let client = nodes[((new + 1) % 3) as usize]
        .factory
        .for_group(OTHER)
        .peer_client();
    write_to(&client, new, &nodes[new as usize].addr.peer_addr).await;
    let leader0 = leader_of(&nodes, 0).await;
    let client = nodes[((leader0 + 1) % 3) as usize].factory.peer_client();
    write_to(&client, leader0, &nodes[leader0 as usize].addr.peer_addr).await;

    for node in nodes {
        node.shutdown().await;
    }
}
