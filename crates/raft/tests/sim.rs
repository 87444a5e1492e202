//! Seeded fault simulation: three Raft members in one process (real `LogStore` and
//! `StateMachine` over RocksDB in temp dirs) connected by an in-memory transport that drops,
//! delays and partitions messages according to a seed. Clients write through whichever member
//! leads. After healing, the test checks the safety properties:
//!
//! 1. committed log entries never diverge: at every index that two members both hold, up to the
//!    lowest committed index, the entries are identical;
//! 2. every acknowledged write is in every replica's state at the version it was acknowledged
//!    with (no acknowledged write lost);
//! 3. replicas agree: the same digest at the same applied version.
//!
//! The fault schedule is a pure function of the seed; thread interleavings are not (RocksDB and
//! the log store use threads), so a failing seed reproduces its faults, not every timing.
//! `DOLMEN_SIM_SEEDS=<n>` runs more seeds (default 8); `DOLMEN_SIM_SEED=<s>` runs one seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::{Command, Engine, EngineOptions, Mutation, Outcome, Transaction};
use dolmen_raft::log_store::LogStore;
use dolmen_raft::network::Snapshot;
use dolmen_raft::state_machine::{EntryReply, StateMachine};
use dolmen_raft::types::{DolmenRaft, Entry, NodeAddr, Raft, SnapshotFile, Vote};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::RaftLogReader;
use parking_lot::Mutex;

const NODES: u64 = 3;

/// splitmix64: a tiny, well-distributed PRNG; the whole fault schedule comes from it.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The network's state: who is cut off from whom, and the per-message dice.
struct Faults {
    rng: Rng,
    /// Ordered pairs `(from, to)` whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    /// Percent of messages dropped outside partitions.
    drop_percent: u64,
    /// Largest one-way delay.
    max_delay_ms: u64,
    enabled: bool,
    delivered: u64,
    dropped: u64,
}

impl Faults {
    /// The fate of one message: `None` = dropped, else the delay.
    fn roll(&mut self, from: u64, to: u64) -> Option<Duration> {
        if !self.enabled {
            self.delivered += 1;
            return Some(Duration::ZERO);
        }
        if self.cut.contains(&(from, to)) || self.rng.below(100) < self.drop_percent {
            self.dropped += 1;
            return None;
        }
        self.delivered += 1;
        Some(Duration::from_millis(self.rng.below(self.max_delay_ms + 1)))
    }

    /// A new partition: nothing cut, one node isolated, or a one-way cut.
    fn repartition(&mut self) {
        self.cut.clear();
        match self.rng.below(4) {
            0 => {}
            1 | 2 => {
                let isolated = self.rng.below(NODES);
                for other in (0..NODES).filter(|&o| o != isolated) {
                    self.cut.insert((isolated, other));
                    self.cut.insert((other, isolated));
                }
            }
            _ => {
                let from = self.rng.below(NODES);
                let to = (from + 1 + self.rng.below(NODES - 1)) % NODES;
                self.cut.insert((from, to));
            }
        }
    }
}

struct Member {
    raft: Raft,
    engine: Arc<Engine>,
    log: LogStore,
    dir: tempfile::TempDir,
}

/// Routes messages between members through [`Faults`].
struct Router {
    members: Mutex<BTreeMap<u64, Raft>>,
    faults: Mutex<Faults>,
    incoming: Mutex<BTreeMap<u64, std::path::PathBuf>>,
}

impl Router {
    async fn pass(&self, from: u64, to: u64) -> Result<Raft, Unreachable<DolmenRaft>> {
        let fate = self.faults.lock().roll(from, to);
        let Some(delay) = fate else {
            return Err(Unreachable::new(&std::io::Error::other("message dropped")));
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.members
            .lock()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&std::io::Error::other("no such member")))
    }
}

struct SimFactory {
    from: u64,
    router: Arc<Router>,
}

struct SimConn {
    from: u64,
    to: u64,
    router: Arc<Router>,
}

impl RaftNetworkFactory<DolmenRaft> for SimFactory {
    type Network = SimConn;

    async fn new_client(&mut self, target: u64, _node: &NodeAddr) -> SimConn {
        SimConn {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

fn remote<E: std::error::Error + 'static>(e: &E) -> RPCError<DolmenRaft> {
    RPCError::Network(NetworkError::new(e))
}

impl SimConn {
    /// One request/response exchange: the request and the reply each cross the faulty network.
    async fn call<T, E, F, Fut>(&self, rpc: F) -> Result<T, RPCError<DolmenRaft>>
    where
        E: std::error::Error + 'static,
        F: FnOnce(Raft) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let target = self
            .router
            .pass(self.from, self.to)
            .await
            .map_err(RPCError::Unreachable)?;
        let response = rpc(target).await.map_err(|e| remote(&e))?;
        self.router
            .pass(self.to, self.from)
            .await
            .map_err(RPCError::Unreachable)?;
        Ok(response)
    }
}

impl RaftNetworkV2<DolmenRaft> for SimConn {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<DolmenRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<DolmenRaft>, RPCError<DolmenRaft>> {
        self.call(|target| async move { target.append_entries(rpc).await })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<DolmenRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<DolmenRaft>, RPCError<DolmenRaft>> {
        self.call(|target| async move { target.vote(rpc).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<DolmenRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<DolmenRaft>, RPCError<DolmenRaft>> {
        self.call(|target| async move { target.pre_vote(rpc).await })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<DolmenRaft>, StreamingError<DolmenRaft>> {
        let target = self
            .router
            .pass(self.from, self.to)
            .await
            .map_err(StreamingError::Unreachable)?;
        // The receiver gets its own copy, as over the wire.
        let incoming = self
            .router
            .incoming
            .lock()
            .get(&self.to)
            .cloned()
            .ok_or_else(|| {
                StreamingError::Unreachable(Unreachable::new(&std::io::Error::other("no dir")))
            })?;
        let copy = incoming.join(format!(
            "sim-{}-{}.incoming",
            self.from,
            snapshot.meta.last_log_id.map_or(0, |l| l.index)
        ));
        std::fs::copy(&snapshot.snapshot.path, &copy)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let received = Snapshot {
            meta: snapshot.meta,
            snapshot: SnapshotFile { path: copy },
        };
        let response = target
            .install_full_snapshot(vote, received)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        self.router
            .pass(self.to, self.from)
            .await
            .map_err(StreamingError::Unreachable)?;
        Ok(response)
    }
}

async fn start_member(id: u64, router: &Arc<Router>) -> Member {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Arc::new(
        Engine::open(&EngineOptions::new(
            dir.path().join("db"),
            vec!["default".into()],
        ))
        .expect("open engine"),
    );
    let log = LogStore::new(&engine, dolmen_raft::types::GROUP_ID).expect("log store");
    let (applied_tx, _applied_rx) =
        tokio::sync::watch::channel(dolmen_raft::state_machine::AppliedPosition::default());
    let snapshots = dir.path().join("snapshots");
    let state_machine =
        StateMachine::open(engine.clone(), snapshots.clone(), applied_tx).expect("state machine");
    router.incoming.lock().insert(id, snapshots);
    let config = openraft::Config {
        cluster_name: "sim".into(),
        election_timeout_min: 150,
        election_timeout_max: 300,
        heartbeat_interval: 30,
        install_snapshot_timeout: 5_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 5,
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    let raft = Raft::new(
        id,
        Arc::new(config),
        SimFactory {
            from: id,
            router: router.clone(),
        },
        log.clone(),
        state_machine,
    )
    .await
    .expect("start raft");
    router.members.lock().insert(id, raft.clone());
    Member {
        raft,
        engine,
        log,
        dir,
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::Commit(Transaction {
        mutations: vec![Mutation::Set {
            cf: "default".into(),
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }],
        ..Transaction::default()
    })
}

/// One acknowledged write.
#[derive(Debug)]
struct Ack {
    key: String,
    value: String,
    version: u64,
}

async fn run_seed(seed: u64) -> (u64, u64, usize) {
    let router = Arc::new(Router {
        members: Mutex::new(BTreeMap::new()),
        faults: Mutex::new(Faults {
            rng: Rng(seed),
            cut: BTreeSet::new(),
            drop_percent: 3,
            max_delay_ms: 15,
            enabled: false,
            delivered: 0,
            dropped: 0,
        }),
        incoming: Mutex::new(BTreeMap::new()),
    });
    let mut members = Vec::new();
    for id in 0..NODES {
        members.push(start_member(id, &router).await);
    }
    let initial: BTreeMap<u64, NodeAddr> = (0..NODES).map(|i| (i, NodeAddr::default())).collect();
    members[0]
        .raft
        .initialize(initial)
        .await
        .expect("initialize");
    members[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(0, "first leader")
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: no first leader: {e}"));
    router.faults.lock().enabled = true;

    // Clients: each write tries every member until one accepts it, retrying for a while when
    // none does (an election in progress); every few writes the partition changes.
    let mut acks: Vec<Ack> = Vec::new();
    let mut attempts = 0u64;
    for round in 0..10u64 {
        router.faults.lock().repartition();
        for i in 0..12u64 {
            let key = format!("k{}", (round * 12 + i) % 40);
            let value = format!("s{seed}-r{round}-i{i}");
            attempts += 1;
            'retry: for _ in 0..20 {
                for member in &members {
                    let write = member.raft.client_write(set(&key, &value));
                    match tokio::time::timeout(Duration::from_millis(400), write).await {
                        Ok(Ok(response)) => {
                            let EntryReply::Applied(applied) = response.data else {
                                panic!(
                                    "seed {seed}: an unsequenced commit applies: {:?}",
                                    response.data
                                );
                            };
                            assert!(
                                matches!(applied.outcome, Outcome::Committed { .. }),
                                "seed {seed}: a blind set must commit, got {:?}",
                                applied.outcome
                            );
                            acks.push(Ack {
                                key: key.clone(),
                                value: value.clone(),
                                version: applied.version,
                            });
                            break 'retry;
                        }
                        // Not leader, discarded, or slow: try the next member (the outcome of
                        // a timed-out write is unknown; it is not counted as acknowledged).
                        Ok(Err(_)) | Err(_) => continue,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // Heal and let every member catch up with a final write.
    {
        let mut faults = router.faults.lock();
        faults.cut.clear();
        faults.enabled = false;
    }
    let mut final_version = 0;
    for _ in 0..100 {
        let mut done = false;
        for member in &members {
            let write = member.raft.client_write(Command::Noop);
            if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), write).await {
                final_version = response.log_id.index;
                done = true;
                break;
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(final_version > 0, "seed {seed}: no leader after healing");
    for member in &members {
        member
            .raft
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(final_version), "caught up")
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: a member did not catch up: {e}"));
    }

    // 1. Committed entries never diverge.
    let mut logs: Vec<BTreeMap<u64, Entry>> = Vec::new();
    for member in &mut members {
        let entries = member
            .log
            .try_get_log_entries(0..=final_version)
            .await
            .expect("read log");
        logs.push(entries.into_iter().map(|e| (e.log_id.index, e)).collect());
    }
    for index in 1..=final_version {
        let held: Vec<&Entry> = logs.iter().filter_map(|l| l.get(&index)).collect();
        for pair in held.windows(2) {
            assert_eq!(
                pair[0], pair[1],
                "seed {seed}: committed entries differ at index {index}"
            );
        }
    }

    // 2. No acknowledged write lost: each is visible at its own version everywhere.
    for member in &members {
        for ack in &acks {
            let value = member
                .engine
                .get("default", ack.key.as_bytes(), ack.version)
                .expect("read");
            assert_eq!(
                value.as_deref(),
                Some(ack.value.as_bytes()),
                "seed {seed}: acknowledged write {ack:?} is missing"
            );
        }
    }

    // 3. Replicas reached the same version (versions are not log indexes) and agree there.
    let reached = members[0].engine.applied_version();
    let digests: Vec<(u64, u64)> = members
        .iter()
        .map(|m| {
            let applied = m.engine.applied_version();
            (applied, m.engine.digest_at(applied).expect("digest"))
        })
        .collect();
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "seed {seed}: replicas differ after index {final_version} (version {reached}): {digests:x?}"
    );

    let (delivered, dropped) = {
        let f = router.faults.lock();
        (f.delivered, f.dropped)
    };
    for member in members {
        member.raft.shutdown().await.expect("shutdown");
        drop(member.dir);
    }
    println!(
        "seed {seed}: {} of {attempts} writes acknowledged, final version {final_version}, \
         {delivered} messages delivered, {dropped} dropped",
        acks.len()
    );
    (delivered, dropped, acks.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_never_diverge_or_lose_acknowledged_writes() {
    let seeds: Vec<u64> = match std::env::var("DOLMEN_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("DOLMEN_SIM_SEED must be a number")],
        Err(_) => {
            let n: u64 = std::env::var("DOLMEN_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(8);
            (1..=n).collect()
        }
    };
    let mut total_dropped = 0;
    let mut total_acked = 0;
    for seed in seeds {
        println!("running seed {seed} (replay: DOLMEN_SIM_SEED={seed} cargo test --workspace -- seeded_faults)");
        let (_, dropped, acked) = run_seed(seed).await;
        total_dropped += dropped;
        total_acked += acked;
    }
    assert!(total_dropped > 0, "the fault layer never dropped a message");
    assert!(total_acked > 0, "no write was ever acknowledged");
}
