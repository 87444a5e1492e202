//! Raft nodes in this process: each a [`RaftNode`] over its own engine in a temp dir, serving
//! the peer protocol on an ephemeral loopback port, with short timeouts so elections and
//! membership changes take well under a second.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Engine, EngineOptions};
use dolmen_raft::{NodeAddr, NodeId, RaftNode, RaftNodeOptions, ReadConsistency, ReadOptions};

/// The election timeout every test node uses; a restarted member is quiet for twice this.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);

/// The data-layout fingerprint of a node that serves only the default column family.
pub const FINGERPRINT: &str = "cf=default";

/// One node and the directory that holds its data.
pub struct TestNode {
    /// The running node.
    pub raft: RaftNode,
    /// Its addresses as members see them (the client address is never dialled).
    pub addr: NodeAddr,
    /// Its data; kept so the node can be restarted over the same state.
    pub dir: Arc<tempfile::TempDir>,
}

/// How to start a node; [`Spec::new`] gives the usual values.
#[derive(Clone)]
pub struct Spec {
    /// Node id.
    pub id: NodeId,
    /// The initial members (used only if the node initializes the cluster); this node's own
    /// entry is filled in with its peer address.
    pub members: BTreeMap<NodeId, NodeAddr>,
    /// Its data-layout fingerprint.
    pub fingerprint: String,
}

impl Spec {
    /// Node `id`, whose initial membership is itself plus `peers`.
    pub fn new(id: NodeId, peers: &[&TestNode]) -> Self {
        let members = peers
            .iter()
            .map(|p| (p.raft.node_id(), p.addr.clone()))
            .collect();
        Self {
            id,
            members,
            fingerprint: FINGERPRINT.to_owned(),
        }
    }
}

/// Starts a node as `spec` says, over a fresh temp dir.
pub async fn start(spec: Spec) -> TestNode {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    start_in(spec, dir).await
}

/// Starts a node as `spec` says over `dir` (a restart when `dir` holds a node's data).
pub async fn start_in(spec: Spec, dir: Arc<tempfile::TempDir>) -> TestNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a peer port");
    let addr = NodeAddr {
        client_addr: format!("127.0.0.1:{}", 19_000 + spec.id),
        peer_addr: listener.local_addr().expect("local addr").to_string(),
        admin_addr: String::new(),
    };
    let engine = open_engine(&dir).await;
    let mut initial_members = spec.members.clone();
    initial_members.insert(spec.id, addr.clone());
    let options = RaftNodeOptions {
        node_id: spec.id,
        this: addr.clone(),
        initial_members,
        snapshot_dir: dir.path().join("snapshots"),
        election_timeout: ELECTION_TIMEOUT,
        heartbeat_interval: Duration::from_millis(50),
        snapshot_interval_entries: 10_000,
        snapshot_keep_entries: 1_000,
        max_batch_entries: 64,
        max_outstanding_proposals: 64,
        leader_wait: ELECTION_TIMEOUT * 2,
        forward_writes: true,
        reads: ReadOptions {
            consistency: ReadConsistency::Linearizable,
            allow_stale_reads: false,
            max_staleness: Duration::from_secs(1),
            unsafe_stale_reads: false,
        },
        replication: dolmen_raft::ReplicationMode::Quorum,
        data_replication: dolmen_raft::ReplicationMode::Quorum,
        fingerprint: spec.fingerprint,
        faults: None,
        tls: None,
        admission: None,
        unsafe_skip_log_fsync: false,
        clock_offset_ms: 0,
        oracle_window: dolmen_raft::DEFAULT_ORACLE_WINDOW,
        hibernate_after: std::time::Duration::ZERO,
    };
    let raft = RaftNode::start(engine, options, listener)
        .await
        .expect("the node starts");
    TestNode { raft, addr, dir }
}

/// Waits until a stopped node's engine in `dir` can be opened again, so a restart's timing
/// measures the node, not the release of the last one.
pub async fn released(dir: &tempfile::TempDir) {
    drop(open_engine(dir).await);
}

/// Opens the engine in `dir`, retrying while a stopped node's last handles are released (its
/// background tasks end just after `shutdown` returns).
async fn open_engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    let options = EngineOptions::new(dir.path().join("db"), vec!["default".into()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Engine::open(&options) {
            Ok(engine) => return Arc::new(engine),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the engine does not open: {e}"),
        }
    }
}

impl TestNode {
    /// Stops the node and returns its directory, for a restart.
    pub async fn stop(self) -> Arc<tempfile::TempDir> {
        self.raft.shutdown().await;
        self.dir
    }

    /// The node's role as its status reports it (`leader`, `follower`, ...).
    pub fn role(&self) -> &'static str {
        self.raft.status().role.as_str()
    }
}

/// Polls `check` every 20 ms until it holds, failing with `what` after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A single-node cluster: node 0, initialized and leading.
pub async fn leader_alone() -> TestNode {
    let a = start(Spec::new(0, &[])).await;
    a.raft.init_guarded().await.expect("node 0 initializes");
    eventually("node 0 leads", || async { a.role() == "leader" }).await;
    a
}

/// A cluster of `n` voters: node 0 initializes alone and leads, and adds the others.
pub async fn cluster(n: u64) -> Vec<TestNode> {
    let mut nodes = vec![leader_alone().await];
    for id in 1..n {
        let node = start(Spec::new(id, &[])).await;
        nodes[0]
            .raft
            .add_node(id, node.addr.clone())
            .await
            .unwrap_or_else(|e| panic!("adding node {id}: {e}"));
        nodes.push(node);
    }
    for node in &nodes {
        let id = node.raft.node_id();
        // Its own view, promotions included: a node that has not yet applied the last
        // membership change still calls itself a learner.
        eventually(
            &format!("node {id} knows node 0 leads and all {n} voters"),
            || async {
                let status = node.raft.status();
                status.leader == Some(0) && status.voter_ids().len() == n as usize
            },
        )
        .await;
    }
    nodes
}
