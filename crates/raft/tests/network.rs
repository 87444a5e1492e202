//! The peer transport end to end: a real tonic server on 127.0.0.1:0 with a mock
//! `PeerHandler`, driven through the real client side (openraft's network from
//! `GrpcNetworkFactory`, and `PeerClient`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Command, Outcome, Transaction};
use dolmen_raft::network::wire::pb;
use dolmen_raft::network::{
    serve, FaultAction, GrpcNetwork, GrpcNetworkFactory, IncomingSnapshot, NetworkOptions,
    PeerFaults, PeerHandler, ProbeInfo, Snapshot, SnapshotMeta,
};
use dolmen_raft::types::{
    DolmenRaft, Entry, EntryPayload, LogId, Membership, NodeAddr, SnapshotFile, Vote,
};
use dolmen_raft::{Applied, BoxFuture, NodeId, ProposeError};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use openraft::errors::{Fatal, RPCError, RaftError, ReplicationClosed, StreamingError};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderError, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::StoredMembership;
use parking_lot::Mutex;

const THIS_NODE: NodeId = 0;
const PEER: NodeId = 1;
const TTL: Duration = Duration::from_secs(2);

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id },
        index,
    }
}

fn vote(term: u64, node_id: u64, committed: bool) -> Vote {
    Vote {
        leader_id: LeaderId { term, node_id },
        committed,
    }
}

fn membership() -> Membership {
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
enum ReadMode {
    Index(u64),
    Fail(ProposeError),
    Hang,
}

/// One received snapshot: the leader's vote, the meta, where it was written, and its bytes.
type Received = (Vote, SnapshotMeta, PathBuf, Vec<u8>);

/// Records what arrived and answers from scripted values.
struct Mock {
    appends: Mutex<Vec<AppendEntriesRequest<DolmenRaft>>>,
    /// Requests that arrived on append streams.
    streamed: Arc<Mutex<Vec<AppendEntriesRequest<DolmenRaft>>>>,
    /// An append stream answers only once this many requests arrived (or the stream ended):
    /// a client that waits for each answer before sending the next never gets one.
    stream_hold: AtomicU64,
    snapshots: Mutex<Vec<Received>>,
    read_mode: Mutex<ReadMode>,
}

impl Mock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            appends: Mutex::new(Vec::new()),
            streamed: Arc::new(Mutex::new(Vec::new())),
            stream_hold: AtomicU64::new(1),
            snapshots: Mutex::new(Vec::new()),
            read_mode: Mutex::new(ReadMode::Index(0)),
        })
    }
}

/// The `prev_log_id` index at which the mock's log conflicts.
const CONFLICT_AT: u64 = 666;

impl PeerHandler for Mock {
    fn stream_append(
        &self,
        requests: BoxStream<'static, AppendEntriesRequest<DolmenRaft>>,
    ) -> BoxStream<'static, Result<StreamAppendResult<DolmenRaft>, Fatal<DolmenRaft>>> {
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
                Command::Compact { .. } => {
                    // Never answers in time: the caller's own deadline decides.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Err(ProposeError::Unavailable("too late".to_string()))
                }
                Command::Noop => Ok(Applied {
                    version: 7,
                    outcome: Outcome::Applied,
                }),
            }
        })
    }

    fn read_index(&self, timeout: Duration) -> BoxFuture<'_, Result<u64, ProposeError>> {
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

    fn probe(&self) -> BoxFuture<'_, ProbeInfo> {
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

/// A running server with its mock and snapshot directory.
struct Server {
    addr: String,
    mock: Arc<Mock>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let mock = Mock::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshot_dir = dir.path().to_path_buf();
        let counter = Arc::new(AtomicU64::new(0));
        let incoming: IncomingSnapshot = Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let path = snapshot_dir.join(format!("incoming-{n}.snap"));
            let file = std::fs::File::create(&path)?;
            Ok((path, file))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler: Arc<dyn PeerHandler> = mock.clone();
        let task = tokio::spawn(serve(listener, handler, incoming, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            mock,
            dir,
            stop: Some(stop),
            task,
        }
    }

    fn node(&self) -> NodeAddr {
        NodeAddr {
            client_addr: "127.0.0.1:1".to_string(),
            peer_addr: self.addr.clone(),
            admin_addr: String::new(),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .expect("read snapshot dir")
            .map(|e| e.expect("dir entry").path())
            .collect()
    }

    async fn stop(mut self) {
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

async fn network_to(server: &Server) -> (GrpcNetworkFactory, GrpcNetwork) {
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let network = factory.new_client(PEER, &server.node()).await;
    (factory, network)
}

/// An address nothing listens on: bound, then released.
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}

#[tokio::test]
async fn append_entries_round_trips_requests_and_responses() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let entries: Vec<Entry> = vec![
        Entry {
            log_id: log_id(3, 0, 11),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 0, 12),
            payload: EntryPayload::Normal(Command::Commit(Transaction::default())),
        },
        Entry {
            log_id: log_id(3, 0, 13),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    let req = AppendEntriesRequest::<DolmenRaft> {
        vote: vote(3, 0, true),
        prev_log_id: Some(log_id(2, 1, 10)),
        entries: entries.clone(),
        leader_commit: Some(log_id(2, 1, 9)),
    };
    let resp = RaftNetworkV2::append_entries(&mut net, req, RPCOption::new(TTL))
        .await
        .expect("append succeeds");
    assert_eq!(
        resp,
        AppendEntriesResponse::PartialSuccess(Some(log_id(3, 0, 13)))
    );

    // A heartbeat: no entries, no commit.
    let heartbeat = AppendEntriesRequest::<DolmenRaft> {
        vote: vote(3, 0, true),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let resp = RaftNetworkV2::append_entries(&mut net, heartbeat, RPCOption::new(TTL))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(resp, AppendEntriesResponse::PartialSuccess(None));

    let seen = server.mock.appends.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].vote, vote(3, 0, true));
    assert_eq!(seen[0].prev_log_id, Some(log_id(2, 1, 10)));
    assert_eq!(seen[0].entries, entries);
    assert_eq!(seen[0].leader_commit, Some(log_id(2, 1, 9)));
    assert!(
        seen[1].entries.is_empty()
            && seen[1].prev_log_id.is_none()
            && seen[1].leader_commit.is_none()
    );
    server.stop().await;
}

fn append_at(prev: u64, entries: u64) -> AppendEntriesRequest<DolmenRaft> {
    AppendEntriesRequest {
        vote: vote(3, 0, true),
        prev_log_id: Some(log_id(3, 0, prev)),
        entries: (prev + 1..=prev + entries)
            .map(|i| Entry {
                log_id: log_id(3, 0, i),
                payload: EntryPayload::Blank,
            })
            .collect(),
        leader_commit: Some(log_id(3, 0, prev)),
    }
}

/// Collects a stream's items, failing the test if it has not ended within `TTL`.
async fn all<T>(stream: impl futures::Stream<Item = T>) -> Vec<T> {
    tokio::time::timeout(TTL, stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends within the TTL")
}

/// Streams `input` over `net` and returns the answers, none of them a transport error.
async fn answers_to(
    net: &mut GrpcNetwork,
    input: impl futures::Stream<Item = AppendEntriesRequest<DolmenRaft>> + Send + Unpin + 'static,
) -> Vec<StreamAppendResult<DolmenRaft>> {
    let answers = RaftNetworkV2::stream_append(net, input, RPCOption::new(TTL))
        .await
        .expect("the stream opens");
    all(answers)
        .await
        .into_iter()
        .map(|a| a.expect("no transport error"))
        .collect()
}

#[tokio::test]
async fn append_stream_pipelines_requests_and_answers_in_order() {
    let server = Server::start().await;
    // The mock answers nothing before three requests arrived: a client that waited for each
    // answer would hang here.
    server.mock.stream_hold.store(3, Ordering::SeqCst);
    let (_factory, mut net) = network_to(&server).await;
    let input = stream::iter(vec![append_at(10, 2), append_at(12, 0), append_at(12, 3)]);
    let answers = answers_to(&mut net, input).await;
    assert_eq!(
        answers,
        vec![
            Ok(Some(log_id(3, 0, 12))),
            Ok(Some(log_id(3, 0, 12))),
            Ok(Some(log_id(3, 0, 15)))
        ]
    );
    // What arrived, as (prev index, entry indexes), in sending order.
    let seen: Vec<(u64, Vec<u64>)> = server
        .mock
        .streamed
        .lock()
        .iter()
        .map(|r| {
            let prev = r.prev_log_id.map_or(0, |id| id.index);
            (prev, r.entries.iter().map(|e| e.log_id.index).collect())
        })
        .collect();
    assert_eq!(
        seen,
        vec![(10, vec![11, 12]), (12, vec![]), (12, vec![13, 14, 15])]
    );
    server.stop().await;
}

#[tokio::test]
async fn append_stream_ends_at_the_first_refusal() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;
    let input = stream::iter(vec![
        append_at(1, 1),
        append_at(CONFLICT_AT, 1),
        append_at(2, 1),
    ]);
    let answers = answers_to(&mut net, input).await;
    assert_eq!(
        answers,
        vec![
            Ok(Some(log_id(3, 0, 2))),
            Err(StreamAppendError::Conflict(log_id(3, 0, CONFLICT_AT)))
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn append_stream_refuses_another_group_after_answering_the_requests_before_it() {
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let good = dolmen_raft::network::wire::append_request_to_pb(&append_at(4, 1)).expect("encode");
    let mut other_group = good.clone();
    other_group.group_id = 2;
    let answers = raw
        .append_stream(stream::iter(vec![good, other_group]))
        .await
        .expect("the stream opens")
        .into_inner();
    let answers = all(answers).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let first = answers[0]
        .as_ref()
        .expect("the first request is answered")
        .clone();
    assert_eq!(
        dolmen_raft::network::wire::stream_result_from_pb(first).expect("decodes"),
        Ok(Some(log_id(3, 0, 5)))
    );
    let status = answers[1].as_ref().expect_err("group 2 refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("group_id 2"),
        "{}",
        status.message()
    );
    server.stop().await;
}

/// Applies one action to every `AppendEntries`.
#[derive(Debug)]
struct EveryAppend(FaultAction);

impl PeerFaults for EveryAppend {
    fn check(&self, _from: NodeId, _to: NodeId, rpc: &'static str) -> FaultAction {
        if rpc == "AppendEntries" {
            self.0
        } else {
            FaultAction::Deliver
        }
    }
}

#[tokio::test]
async fn append_stream_faults_drop_as_a_timeout_and_duplicate_without_extra_answers() {
    let server = Server::start().await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default())
        .with_faults(Arc::new(EveryAppend(FaultAction::Duplicate)));
    let mut net = factory.network(PEER, &server.node());
    let input = stream::iter(vec![append_at(1, 1), append_at(2, 1)]);
    let answers = answers_to(&mut net, input).await;
    assert_eq!(
        answers,
        vec![Ok(Some(log_id(3, 0, 2))), Ok(Some(log_id(3, 0, 3)))]
    );
    assert_eq!(
        server.mock.streamed.lock().len(),
        4,
        "each request arrived twice"
    );

    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default())
        .with_faults(Arc::new(EveryAppend(FaultAction::Drop)));
    let mut net = factory.network(PEER, &server.node());
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let input = stream::iter(vec![append_at(3, 1)]);
    let answers = RaftNetworkV2::stream_append(&mut net, input, RPCOption::new(ttl))
        .await
        .expect("the stream opens");
    let answers = all(answers).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        matches!(answers[0], Err(RPCError::Timeout(_))),
        "{:?}",
        answers[0]
    );
    assert!(start.elapsed() < TTL, "took {:?}", start.elapsed());
    assert_eq!(
        server.mock.streamed.lock().len(),
        4,
        "the dropped request never arrived"
    );
    server.stop().await;
}

#[tokio::test]
async fn vote_pre_vote_and_transfer_leader_round_trip() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let mut req = VoteRequest::<DolmenRaft>::new(vote(5, 0, false), Some(log_id(4, 0, 20)));
    let resp = RaftNetworkV2::vote(&mut net, req.clone(), RPCOption::new(TTL))
        .await
        .expect("vote succeeds");
    assert_eq!(
        resp,
        VoteResponse {
            vote: vote(5, 0, false),
            vote_granted: true,
            last_log_id: Some(log_id(4, 0, 20))
        }
    );

    req.leadership_transfer = true;
    let resp = RaftNetworkV2::vote(&mut net, req.clone(), RPCOption::new(TTL))
        .await
        .expect("vote succeeds");
    assert!(
        !resp.vote_granted,
        "leadership_transfer reached the handler"
    );

    let resp = RaftNetworkV2::pre_vote(&mut net, req, RPCOption::new(TTL))
        .await
        .expect("pre-vote succeeds");
    assert_eq!(
        resp,
        VoteResponse {
            vote: vote(6, 2, true),
            vote_granted: false,
            last_log_id: Some(log_id(9, 2, 99))
        }
    );

    let transfer =
        TransferLeaderRequest::<DolmenRaft>::new(vote(5, 0, true), PEER, Some(log_id(5, 0, 30)));
    let resp = RaftNetworkV2::transfer_leader(&mut net, transfer, RPCOption::new(TTL))
        .await
        .expect("transfer call succeeds");
    assert_eq!(
        resp,
        Err(TransferLeaderError::LogNotFlushed {
            expected: Some(log_id(5, 0, 30)),
            actual: Some(log_id(1, PEER, 1)),
        })
    );
    server.stop().await;
}

/// Deterministic non-repeating bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn a_5_mib_snapshot_arrives_byte_identical_with_its_meta() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let source_dir = tempfile::tempdir().expect("temp dir");
    let path = source_dir.path().join("snapshot.bin");
    let data = pattern(5 * 1024 * 1024 + 123);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&data))
        .expect("write the snapshot file");
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(7, 0, 500)),
        last_membership: StoredMembership::new(Some(log_id(6, 0, 3)), membership()),
    };
    let snapshot = Snapshot {
        meta: meta.clone(),
        snapshot: SnapshotFile { path: path.clone() },
    };
    let leader_vote = vote(7, 0, true);
    let resp = RaftNetworkV2::full_snapshot(
        &mut net,
        leader_vote,
        snapshot,
        std::future::pending::<ReplicationClosed>(),
        RPCOption::new(TTL),
    )
    .await
    .expect("snapshot transfer succeeds");
    assert_eq!(resp.vote, leader_vote);

    let received = server.mock.snapshots.lock().clone();
    assert_eq!(received.len(), 1);
    let (got_vote, got_meta, got_path, got_bytes) = &received[0];
    assert_eq!(*got_vote, leader_vote);
    assert_eq!(*got_meta, meta);
    assert!(
        got_path.starts_with(server.dir.path()),
        "{}",
        got_path.display()
    );
    assert_eq!(got_bytes.len(), data.len());
    assert!(
        *got_bytes == data,
        "received bytes differ from the sent file"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_snapshot_transfer_reports_closed() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapshot.bin");
    std::fs::write(&path, pattern(1024)).expect("write");
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(1, 0, 1)),
            last_membership: StoredMembership::new(None, membership()),
        },
        snapshot: SnapshotFile { path },
    };
    let err = RaftNetworkV2::full_snapshot(
        &mut net,
        vote(1, 0, true),
        snapshot,
        std::future::ready(ReplicationClosed::new("test cancels")),
        RPCOption::new(TTL),
    )
    .await
    .expect_err("cancelled");
    assert!(matches!(err, StreamingError::Closed(_)), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_broken_snapshot_stream_is_refused_and_its_file_deleted() {
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(1, 0, 5)),
        last_membership: StoredMembership::new(None, membership()),
    };
    let header = dolmen_raft::network::wire::snapshot_header_to_pb(&vote(1, 0, true), &meta, 1000)
        .expect("header encodes");
    let chunks = vec![
        pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Header(header)),
        },
        pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Data(vec![1; 400])),
        },
    ];
    let status = raw
        .install_snapshot(tokio_stream::iter(chunks))
        .await
        .expect_err("a short stream is refused");
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("400 of 1000"),
        "{}",
        status.message()
    );
    // The partial file is deleted (on a blocking thread, so allow a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.files().is_empty(),
        "left behind: {:?}",
        server.files()
    );
    assert!(server.mock.snapshots.lock().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn requests_for_another_group_are_refused_naming_group_id() {
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let status = raw
        .vote(pb::VoteRequest {
            group_id: 3,
            vote: vec![],
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("group 3 refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("group_id"),
        "{}",
        status.message()
    );

    let status = raw
        .probe(pb::ProbeRequest { group_id: 1 })
        .await
        .expect_err("group 1 refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("group_id 1"),
        "{}",
        status.message()
    );

    let status = raw
        .forward(pb::ForwardRequest {
            group_id: 9,
            command: vec![],
            timeout_ms: 100,
        })
        .await
        .expect_err("group 9 refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("group_id"),
        "{}",
        status.message()
    );

    // Group 0 with a garbled value is refused naming that field instead.
    let status = raw
        .vote(pb::VoteRequest {
            group_id: 0,
            vote: vec![1, 2],
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("bad vote refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("vote:"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dead_peer_is_unreachable_within_the_ttl() {
    let addr = dead_addr().await;
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let node = NodeAddr {
        client_addr: String::new(),
        peer_addr: addr.clone(),
        admin_addr: String::new(),
    };
    let mut net = factory.new_client(PEER, &node).await;

    let ttl = Duration::from_millis(1500);
    let start = Instant::now();
    let err = RaftNetworkV2::vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(ttl),
    )
    .await
    .expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(start.elapsed() < ttl, "took {:?}", start.elapsed());

    let err = RaftNetworkV2::append_entries(
        &mut net,
        AppendEntriesRequest {
            vote: vote(1, 0, true),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        },
        RPCOption::new(ttl),
    )
    .await
    .expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    // The backoff openraft applies after Unreachable: 50 ms doubling to 1 s.
    let backoff: Vec<_> = RaftNetworkV2::backoff(&net)
        .expect("a backoff")
        .take(7)
        .collect();
    let ms: Vec<u128> = backoff.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![50, 100, 200, 400, 800, 1000, 1000]);

    // The follower-side calls: not connected means not proposed.
    let client = factory.peer_client();
    let err = client
        .forward(PEER, &addr, &Command::Noop, Duration::from_secs(1))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(err, ProposeError::Unavailable(ref m) if m.contains("not connected")),
        "{err:?}"
    );
    let err = client
        .read_index(PEER, &addr, Duration::from_secs(1))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");
    let err = client
        .probe(PEER, &addr, Duration::from_secs(1))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn forward_answers_and_errors_are_mapped() {
    let server = Server::start().await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let client = factory.peer_client();
    let t = Duration::from_secs(2);

    let applied = client
        .forward(
            PEER,
            &server.addr,
            &Command::Commit(Transaction::default()),
            t,
        )
        .await
        .expect("applied");
    assert_eq!(
        applied,
        Applied {
            version: 42,
            outcome: Outcome::Committed { version: 42 }
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 1 }, t)
        .await
        .expect_err("not leader");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".to_string())
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 2 }, t)
        .await
        .expect_err("not leader");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: None,
            leader_addr: None
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 3 }, t)
        .await
        .expect_err("unavailable");
    assert_eq!(
        err,
        ProposeError::Unavailable("no quorum (mock)".to_string())
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 4 }, t)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");

    // The leader never answers: the caller's deadline gives Timeout (outcome unknown).
    let short = Duration::from_millis(300);
    let start = Instant::now();
    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 5 }, short)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn read_index_and_probe_answers_and_errors() {
    let server = Server::start().await;
    let client = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).peer_client();
    let t = Duration::from_secs(2);

    *server.mock.read_mode.lock() = ReadMode::Index(1234);
    assert_eq!(client.read_index(PEER, &server.addr, t).await, Ok(1234));

    let hint = ProposeError::NotLeader {
        leader_id: Some(2),
        leader_addr: Some("127.0.0.1:7102".to_string()),
    };
    *server.mock.read_mode.lock() = ReadMode::Fail(hint.clone());
    assert_eq!(client.read_index(PEER, &server.addr, t).await, Err(hint));

    let unavailable = ProposeError::Unavailable("read index: no quorum".to_string());
    *server.mock.read_mode.lock() = ReadMode::Fail(unavailable.clone());
    assert_eq!(
        client.read_index(PEER, &server.addr, t).await,
        Err(unavailable)
    );

    *server.mock.read_mode.lock() = ReadMode::Fail(ProposeError::Timeout(t));
    let err = client
        .read_index(PEER, &server.addr, t)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");

    *server.mock.read_mode.lock() = ReadMode::Hang;
    let start = Instant::now();
    let err = client
        .read_index(PEER, &server.addr, Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    let info = client
        .probe(PEER, &server.addr, t)
        .await
        .expect("probe answers");
    assert_eq!(
        info,
        ProbeInfo {
            node_id: PEER,
            initialized: true,
            fingerprint: "cf=default,meta".to_string(),
            status_json: r#"{"role":"leader"}"#.to_string(),
        }
    );
    server.stop().await;
}

/// Drops every call named `drop_rpc` and delays the rest.
#[derive(Debug)]
struct Rules {
    drop_rpc: &'static str,
    delay: Duration,
    seen: Mutex<Vec<(NodeId, NodeId, &'static str)>>,
}

impl PeerFaults for Rules {
    fn check(&self, from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction {
        self.seen.lock().push((from, to, rpc));
        if rpc == self.drop_rpc {
            FaultAction::Drop
        } else {
            FaultAction::Delay(self.delay)
        }
    }
}

#[tokio::test]
async fn the_fault_hook_sees_every_outgoing_call() {
    let server = Server::start().await;
    let rules = Arc::new(Rules {
        drop_rpc: "Vote",
        delay: Duration::from_millis(150),
        seen: Mutex::new(Vec::new()),
    });
    let mut factory =
        GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).with_faults(rules.clone());
    let mut net = factory.new_client(PEER, &server.node()).await;

    let ttl = Duration::from_millis(400);
    let err = RaftNetworkV2::vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(ttl),
    )
    .await
    .expect_err("dropped");
    assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");

    let start = Instant::now();
    RaftNetworkV2::pre_vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(TTL),
    )
    .await
    .expect("delayed, then delivered");
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "took {:?}",
        start.elapsed()
    );

    let applied = factory
        .peer_client()
        .forward(PEER, &server.addr, &Command::Noop, TTL)
        .await
        .expect("delayed forward applies");
    assert_eq!(applied.version, 7);

    let seen = rules.seen.lock().clone();
    assert_eq!(
        seen,
        vec![
            (THIS_NODE, PEER, "Vote"),
            (THIS_NODE, PEER, "PreVote"),
            (THIS_NODE, PEER, "Forward")
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn channels_are_shared_per_address() {
    let server = Server::start().await;
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    // Many networks and clients to one address work side by side on the cached channel.
    let mut nets = Vec::new();
    for _ in 0..4 {
        nets.push(factory.new_client(PEER, &server.node()).await);
    }
    let client = factory.peer_client();
    let votes = nets.iter_mut().map(|net| {
        RaftNetworkV2::vote(
            net,
            VoteRequest::new(vote(2, 0, false), None),
            RPCOption::new(TTL),
        )
    });
    for resp in futures::future::join_all(votes).await {
        assert!(resp.expect("vote").vote_granted);
    }
    assert_eq!(client.read_index(PEER, &server.addr, TTL).await, Ok(0));
    server.stop().await;
}

/// A live Raft behind the transport: RocksDB log store, a counting state machine whose
/// snapshots are files, `RaftPeerHandler`, and the gRPC network.
mod live {
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
        let log_store = LogStore::new(&engine).expect("log store");
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
}
