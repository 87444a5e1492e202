//! A live Raft behind the transport: RocksDB log store, a counting state machine whose
//! snapshots are files, `RaftPeerHandler`, and the gRPC network.

use super::*;
use dolmen_engine::{Engine, EngineOptions};
use dolmen_raft::network::RaftPeerHandler;
use dolmen_raft::LogStore;
use futures::{Stream, StreamExt};
use openraft::async_runtime::WatchReceiver;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Config, OptionalSend, Raft, ServerState};

#[derive(Default)]
struct Inner {
    applied: Option<LogId>,
    membership: StoredMembership<LeaderId<u64, NodeId>, NodeId, NodeAddr>,
    commands: u64,
    current: Option<Snapshot>,
}

#[derive(Clone)]
struct CountingSm {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
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
                responder.send(Applied {
                    version: entry.log_id.index,
                    outcome: Outcome::Applied,
                });
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
    let config = Config {
        cluster_name: "network-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        install_snapshot_timeout: 2000,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = NodeAddr {
        client_addr: format!("127.0.0.1:{}", 17000 + id),
        peer_addr: listener.local_addr().expect("addr").to_string(),
        admin_addr: String::new(),
    };
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
        .read_index(0, &a.addr.peer_addr, t)
        .await
        .expect("read index");
    assert!(
        index >= applied.version,
        "read index {index} < {}",
        applied.version
    );

    // Snapshot, purge the log, then add a learner: it can only catch up through
    // InstallSnapshot (the file streams over gRPC), then AppendEntries.
    a.raft.trigger().snapshot().await.expect("trigger snapshot");
    let last = a
        .raft
        .metrics()
        .borrow_watched()
        .last_applied
        .expect("a applied something");
    a.raft
        .wait(wait)
        .snapshot(last, "a snapshot")
        .await
        .expect("a builds a snapshot");
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
        .read_index(1, &b.addr.peer_addr, t)
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
