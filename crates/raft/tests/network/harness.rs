//! The shared fixture: [`Mock`], a `PeerHandler` that records what arrives and answers from
//! scripted values; [`Server`], the real tonic server around it (or around one mock per Raft
//! group, behind a `GroupRouter`) on 127.0.0.1:0; and the log id, vote and membership builders.

use super::*;

pub(crate) fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id },
        index,
    }
}

pub(crate) fn vote(term: u64, node_id: u64, committed: bool) -> Vote {
    Vote {
        leader_id: LeaderId { term, node_id },
        committed,
    }
}

pub(crate) fn membership() -> Membership {
    let nodes = (0..3)
        .map(|i| {
            (
                i,
                NodeAddr {
                    client_addr: format!("127.0.0.1:{}", 7100 + i),
                    peer_addr: format!("127.0.0.1:{}", 7200 + i),
                    admin_addr: String::new(),
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    Membership::new(vec![BTreeSet::from([0, 1, 2])], nodes).expect("voters are in the address book")
}

/// What the mock's `read_index` answers next.
#[derive(Clone)]
pub(crate) enum ReadMode {
    Index(u64),
    Fail(ProposeError),
    Hang,
}

/// One received snapshot: the leader's vote, the meta, where it was written, and its bytes.
pub(crate) type Received = (Vote, SnapshotMeta, PathBuf, Vec<u8>);

/// Records what arrived and answers from scripted values.
pub(crate) struct Mock {
    /// Every call that reached it, by handler method name, in order.
    pub(crate) calls: Mutex<Vec<&'static str>>,
    /// The applied reports that reached it: `(from, applied)`.
    pub(crate) reports: Mutex<Vec<(NodeId, u64)>>,
    pub(crate) appends: Mutex<Vec<AppendEntriesRequest<DolmenRaft>>>,
    /// Requests that arrived on append streams.
    pub(crate) streamed: Arc<Mutex<Vec<AppendEntriesRequest<DolmenRaft>>>>,
    /// An append stream answers only once this many requests arrived (or the stream ended):
    /// a client that waits for each answer before sending the next never gets one.
    pub(crate) stream_hold: AtomicU64,
    pub(crate) snapshots: Mutex<Vec<Received>>,
    pub(crate) read_mode: Mutex<ReadMode>,
    /// What each `ReadIndex` asked: (covering version, whether by the lease).
    pub(crate) read_asks: Mutex<Vec<(u64, bool)>>,
    /// The mock oracle: the last version it handed out.
    pub(crate) oracle: AtomicU64,
    /// How long each oracle grant takes.
    pub(crate) oracle_delay: Mutex<Duration>,
}

/// Commit counts the mock oracle answers with a scripted refusal, or never.
pub(crate) const ORACLE_NOT_LEADER: u32 = 1_000_001;
pub(crate) const ORACLE_UNAVAILABLE: u32 = 1_000_002;
pub(crate) const ORACLE_HANG: u32 = 1_000_003;

impl Mock {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
            appends: Mutex::new(Vec::new()),
            streamed: Arc::new(Mutex::new(Vec::new())),
            stream_hold: AtomicU64::new(1),
            snapshots: Mutex::new(Vec::new()),
            read_mode: Mutex::new(ReadMode::Index(0)),
            read_asks: Mutex::new(Vec::new()),
            oracle: AtomicU64::new(1_000),
            oracle_delay: Mutex::new(Duration::ZERO),
        })
    }
}

/// The `prev_log_id` index at which the mock's log conflicts.
pub(crate) const CONFLICT_AT: u64 = 666;

impl PeerHandler for Mock {
    fn stream_append(
        &self,
        requests: BoxStream<'static, AppendEntriesRequest<DolmenRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<DolmenRaft>, Fatal<DolmenRaft>>> {
        self.calls.lock().push("stream_append");
        let streamed = Arc::clone(&self.streamed);
        let hold = usize::try_from(self.stream_hold.load(Ordering::SeqCst)).expect("small");
        let answers = requests.chunks(hold.max(1)).flat_map(move |held| {
            let answers: Vec<StreamAppendResult<DolmenRaft>> = held
                .into_iter()
                .map(|req| {
                    streamed.lock().push(req.clone());
                    match req.prev_log_id {
                        Some(prev) if prev.index == CONFLICT_AT => {
                            Err(StreamAppendError::Conflict(prev))
                        }
                        prev => Ok(req.entries.last().map(|e| e.log_id).or(prev)),
                    }
                })
                .collect();
            stream::iter(answers)
        });
        // Like openraft: nothing after the first refusal.
        Box::pin(answers.scan(false, |refused, answer| {
            let out = (!*refused).then(|| Ok(answer.clone()));
            *refused = answer.is_err();
            std::future::ready(out)
        }))
    }

    fn append_entries(
        &self,
        req: AppendEntriesRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<AppendEntriesResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        self.calls.lock().push("append_entries");
        Box::pin(async move {
            let matching = req.entries.last().map(|e| e.log_id).or(req.prev_log_id);
            self.appends.lock().push(req);
            Ok(AppendEntriesResponse::PartialSuccess(matching))
        })
    }

    fn vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        self.calls.lock().push("vote");
        Box::pin(async move {
            Ok(VoteResponse {
                vote: req.vote,
                vote_granted: !req.leadership_transfer,
                last_log_id: req.last_log_id,
            })
        })
    }

    fn pre_vote(
        &self,
        req: VoteRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<VoteResponse<DolmenRaft>, RaftError<DolmenRaft>>> {
        self.calls.lock().push("pre_vote");
        Box::pin(async move {
            // Refuses, answering with a higher vote of its own: distinguishable from `vote`.
            Ok(VoteResponse {
                vote: vote(req.vote.leader_id.term + 1, 2, true),
                vote_granted: false,
                last_log_id: Some(log_id(9, 2, 99)),
            })
        })
    }

    fn install_full_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'_, Result<SnapshotResponse<DolmenRaft>, Fatal<DolmenRaft>>> {
        self.calls.lock().push("install_full_snapshot");
        Box::pin(async move {
            let bytes =
                std::fs::read(&snapshot.snapshot.path).expect("the received file is readable");
            self.snapshots
                .lock()
                .push((vote, snapshot.meta, snapshot.snapshot.path, bytes));
            Ok(SnapshotResponse::new(vote))
        })
    }

    fn transfer_leader(
        &self,
        req: TransferLeaderRequest<DolmenRaft>,
    ) -> BoxFuture<'_, Result<TransferLeaderResponse<DolmenRaft>, Fatal<DolmenRaft>>> {
        self.calls.lock().push("transfer_leader");
        Box::pin(async move {
            Ok(Err(TransferLeaderError::LogNotFlushed {
                expected: req.last_log_id().copied(),
                actual: Some(log_id(1, *req.to_node_id(), 1)),
            }))
        })
    }

    fn forward(
        &self,
        command: Command,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Applied, ProposeError>> {
        self.calls.lock().push("forward");
        Box::pin(async move {
            // The compaction horizon picks the scripted answer.
            match command {
                Command::Commit(_) => Ok(Applied {
                    version: 42,
                    outcome: Outcome::Committed { version: 42 },
                }),
                Command::Compact { horizon: 1 } => Err(ProposeError::NotLeader {
                    leader_id: Some(2),
                    leader_addr: Some("127.0.0.1:7102".to_string()),
                }),
                Command::Compact { horizon: 2 } => Err(ProposeError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                }),
                Command::Compact { horizon: 3 } => {
                    Err(ProposeError::Unavailable("no quorum (mock)".to_string()))
                }
                Command::Compact { horizon: 4 } => Err(ProposeError::Timeout(timeout)),
                // Applied at its own horizon after a delay that varies with it, so concurrent
                // forwards finish out of order.
                Command::Compact { horizon } if (1000..100_000).contains(&horizon) => {
                    tokio::time::sleep(Duration::from_millis(horizon % 37)).await;
                    Ok(Applied {
                        version: horizon,
                        outcome: Outcome::Applied,
                    })
                }
                Command::Compact { .. } => {
                    // Never answers in time: the caller's own deadline decides.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Err(ProposeError::Unavailable("too late".to_string()))
                }
                Command::Noop
                | Command::ExpireIdempotency { .. }
                | Command::OracleBound { .. }
                | Command::Prepare(_)
                | Command::Resolve { .. }
                | Command::Decide(_)
                | Command::Forget { .. } => Ok(Applied {
                    version: 7,
                    outcome: Outcome::Applied,
                }),
            }
        })
    }

    fn read_index(
        &self,
        timeout: Duration,
        covering: u64,
        lease: bool,
    ) -> BoxFuture<'_, Result<u64, ProposeError>> {
        self.calls.lock().push("read_index");
        self.read_asks.lock().push((covering, lease));
        let mode = self.read_mode.lock().clone();
        Box::pin(async move {
            match mode {
                ReadMode::Index(i) => Ok(i),
                ReadMode::Fail(e) => Err(e),
                ReadMode::Hang => {
                    tokio::time::sleep(timeout * 20).await;
                    Ok(0)
                }
            }
        })
    }

    fn timestamps(
        &self,
        commit_count: u32,
        want_read: bool,
    ) -> BoxFuture<'_, Result<VersionGrant, ProposeError>> {
        self.calls.lock().push("timestamps");
        Box::pin(async move {
            // The commit count picks a scripted answer; any other draws from `oracle`.
            match commit_count {
                ORACLE_NOT_LEADER => {
                    return Err(ProposeError::NotLeader {
                        leader_id: Some(2),
                        leader_addr: Some("127.0.0.1:7102".to_string()),
                    })
                }
                ORACLE_UNAVAILABLE => {
                    return Err(ProposeError::Unavailable("no quorum (mock)".to_string()))
                }
                ORACLE_HANG => tokio::time::sleep(Duration::from_secs(30)).await,
                _ => {}
            }
            let delay = *self.oracle_delay.lock();
            tokio::time::sleep(delay).await;
            let n = u64::from(commit_count);
            // Read version: everything handed out before; commit versions above it.
            let last = self.oracle.fetch_add(n + 1, Ordering::SeqCst);
            Ok(VersionGrant {
                first: last + 2,
                count: commit_count,
                read_version: want_read.then_some(last + 1),
            })
        })
    }

    fn applied_report(&self, from: NodeId, applied: u64) {
        self.calls.lock().push("applied_report");
        self.reports.lock().push((from, applied));
    }

    fn probe(&self) -> BoxFuture<'_, ProbeInfo> {
        self.calls.lock().push("probe");
        Box::pin(async move {
            ProbeInfo {
                node_id: PEER,
                initialized: true,
                fingerprint: "cf=default,meta".to_string(),
                status_json: r#"{"role":"leader"}"#.to_string(),
            }
        })
    }
}

/// Creates `incoming-<n>.snap` files in `dir`.
pub(crate) fn incoming_in(dir: PathBuf) -> IncomingSnapshot {
    let counter = Arc::new(AtomicU64::new(0));
    Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("incoming-{n}.snap"));
        let file = std::fs::File::create(&path)?;
        Ok((path, file))
    })
}

/// A running server with its mock and snapshot directory.
pub(crate) struct Server {
    pub(crate) addr: String,
    /// The mock of the first (or only) group.
    pub(crate) mock: Arc<Mock>,
    /// Every group's mock, when started with [`Server::start_groups`].
    pub(crate) mocks: BTreeMap<u64, Arc<Mock>>,
    /// The router it serves, when started with [`Server::start_groups`].
    pub(crate) router: Option<GroupRouter>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start() -> Self {
        Self::start_with(ServeOptions::default()).await
    }

    pub(crate) async fn start_with(options: ServeOptions) -> Self {
        Self::start_on("127.0.0.1:0", options).await
    }

    /// A server on `addr` (for one restarted on the address of an earlier one).
    pub(crate) async fn start_on(addr: &str, options: ServeOptions) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let mock = Mock::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let incoming = incoming_in(dir.path().to_path_buf());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler: Arc<dyn PeerHandler> = mock.clone();
        let task = tokio::spawn(serve_with(
            options,
            listener,
            handler,
            incoming,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            mocks: BTreeMap::from([(0, mock.clone())]),
            mock,
            router: None,
            dir,
            stop: Some(stop),
            task,
        }
    }

    /// A server of node `node` on 127.0.0.1:0 for `groups` (at least one), a mock each, group
    /// `g`'s received snapshots in `<dir>/g<g>`.
    pub(crate) async fn start_groups(node: NodeId, groups: &[u64]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let router = GroupRouter::new(node);
        let mut mocks = BTreeMap::new();
        for &group in groups {
            let mock = Mock::new();
            let snapshots = dir.path().join(format!("g{group}"));
            std::fs::create_dir_all(&snapshots).expect("group snapshot dir");
            router.insert(group, mock.clone(), incoming_in(snapshots));
            mocks.insert(group, mock);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_groups(listener, router.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            mock: mocks.values().next().expect("at least one group").clone(),
            mocks,
            router: Some(router),
            dir,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn node(&self) -> NodeAddr {
        NodeAddr {
            client_addr: "127.0.0.1:1".to_string(),
            peer_addr: self.addr.clone(),
            admin_addr: String::new(),
        }
    }

    pub(crate) fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .expect("read snapshot dir")
            .map(|e| e.expect("dir entry").path())
            .collect()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
        result.expect("server ended cleanly");
    }
}

pub(crate) async fn network_to(server: &Server) -> (GrpcNetworkFactory, GrpcNetwork) {
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let network = factory.new_client(PEER, &server.node()).await;
    (factory, network)
}

/// An address nothing listens on: bound, then released.
pub(crate) async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}
